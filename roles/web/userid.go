package web

import (
	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/store"
)

// UserParam is the name of the path parameter that carries a user id in
// every route that takes one ("/containers/:user/...").
const UserParam = "user"

// CheckUserParam is echo middleware for a group or route whose paths take a
// user id as :user. When the matched route has that parameter and
// store.ParseUserID refuses it, the request is answered with 400
// invalid_user_id (api.InvalidUserID) and the handler never runs, whatever
// the method. Routes without the parameter pass through.
func CheckUserParam(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		for _, n := range c.ParamNames() {
			if n != UserParam {
				continue
			}
			if _, err := store.ParseUserID(c.Param(UserParam)); err != nil {
				return api.InvalidUserID()
			}
		}
		return next(c)
	}
}
