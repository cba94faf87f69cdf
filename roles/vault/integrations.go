package vault

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/web"
)

// Integrations API (SPEC §11), below /vault:
//
//	PUT    /integrations/{name} {"type":"http","baseUrl","authHeader","authValue"} → 200 {name,type,baseUrl,authHeader,addedAt}
//	GET    /integrations → {"integrations":[{name,type,baseUrl,authHeader,addedAt}]} (never the secret)
//	DELETE /integrations/{name} → 204
//
// Names are 1–64 of [a-z0-9_-], starting with a letter. The credential is
// sealed in the vault; listing shows which header carries it, not its value.

var integrationRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

type integrationJSON struct {
	Name       string    `json:"name"`
	Type       string    `json:"type"`
	BaseURL    string    `json:"baseUrl"`
	AuthHeader string    `json:"authHeader,omitempty"`
	AddedAt    time.Time `json:"addedAt"`
	// Warning (PUT only) says why calls through a share of it will be
	// refused: {"code":"private_target","message":…,"address":…}.
	Warning *targetWarning `json:"warning,omitempty"`
}

// targetWarning is a save-time warning about a base URL.
type targetWarning struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Address string `json:"address"`
}

// privateTargetWarning resolves baseURL's host (2 s at most) and returns a
// warning if a shared call would be refused by the SSRF guard (an address
// that is not public and not allowed by --allow-private-targets), or nil.
// A host that does not resolve gets no warning here: the call will say so.
func (s *Server) privateTargetWarning(ctx context.Context, baseURL string) *targetWarning {
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", u.Hostname())
	if err != nil {
		return nil
	}
	for _, ip := range ips {
		if publicAddr(ip) || s.allowPrivate.Allows(ip) {
			continue
		}
		ip = ip.Unmap()
		bits := 24
		if ip.Is6() {
			bits = 64
		}
		suggest := netip.PrefixFrom(ip, bits).Masked().String()
		return &targetWarning{Code: "private_target", Address: ip.String(), Message: fmt.Sprintf(
			"Saved, but %s is a private network address (%s): people you share this API with will have their calls refused, "+
				"to protect the networks around this server. Your administrator can allow it by starting ocmt with "+
				"--allow-private-targets=%s (or a narrower range).", u.Hostname(), ip, suggest)}
	}
	return nil
}

func (s *Server) listIntegrations(c echo.Context) error {
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	out := []integrationJSON{}
	for n, in := range k.sec.Integrations {
		out = append(out, integrationJSON{Name: n, Type: in.Type, BaseURL: in.BaseURL, AuthHeader: in.AuthHeader, AddedAt: in.AddedAt})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return c.JSON(http.StatusOK, map[string]any{"integrations": out})
}

// reservedHeaders are set by the HTTP client or the vault itself; a secret
// put there would be dropped or break the request.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Content-Type": true, "Transfer-Encoding": true, "Connection": true,
	"Keep-Alive": true, "Te": true, "Trailer": true, "Upgrade": true, "Proxy-Authorization": true,
	"Proxy-Connection": true, "Expect": true, "User-Agent": true,
}

func (s *Server) putIntegration(c echo.Context) error {
	name := c.Param("name")
	if !integrationRE.MatchString(name) {
		return api.BadRequest("invalid_name", "name must be 1 to 64 of a-z, 0-9, _ and -, starting with a letter")
	}
	var req struct {
		Type       string `json:"type"`
		BaseURL    string `json:"baseUrl"`
		AuthHeader string `json:"authHeader"`
		AuthValue  string `json:"authValue"`
	}
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	switch {
	case req.Type != "http":
		return api.BadRequest("invalid_type", `type must be "http"`)
	case !baseURLOK(req.BaseURL):
		return api.BadRequest("invalid_base_url", "baseUrl must be an http(s) URL without credentials")
	case req.AuthHeader != "" && (len(req.AuthHeader) > 64 || textproto.CanonicalMIMEHeaderKey(req.AuthHeader) == "" || strings.ContainsAny(req.AuthHeader, " :\r\n")):
		return api.BadRequest("invalid_auth_header", "authHeader must be a header name such as Authorization")
	case reservedHeaders[textproto.CanonicalMIMEHeaderKey(req.AuthHeader)]:
		return api.BadRequest("invalid_auth_header", "authHeader cannot be a header HTTP itself controls (Host, Content-Length, Connection…); use e.g. Authorization or X-Api-Key")
	case len(req.AuthValue) > maxProviderBytes || strings.ContainsAny(req.AuthValue, "\r\n"):
		return api.BadRequest("invalid_auth_value", "authValue is too long or has line breaks")
	case (req.AuthHeader == "") != (req.AuthValue == ""):
		return api.BadRequest("invalid_auth", "give both authHeader and authValue, or neither")
	}
	warn := s.privateTargetWarning(c.Request().Context(), req.BaseURL) // before the lock: it may wait for DNS
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	in := integration{Type: req.Type, BaseURL: strings.TrimRight(req.BaseURL, "/"), AuthHeader: textproto.CanonicalMIMEHeaderKey(req.AuthHeader), AuthValue: req.AuthValue, AddedAt: k.wall().UTC()}
	if err := k.updateLocked(func(sec *secrets) error {
		if sec.Integrations == nil {
			sec.Integrations = map[string]integration{}
		}
		sec.Integrations[name] = in
		return nil
	}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, integrationJSON{Name: name, Type: in.Type, BaseURL: in.BaseURL, AuthHeader: in.AuthHeader, AddedAt: in.AddedAt,
		Warning: warn})
}

func (s *Server) deleteIntegration(c echo.Context) error {
	name := c.Param("name")
	if !integrationRE.MatchString(name) {
		return api.BadRequest("invalid_name", "invalid integration name")
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	if _, had := k.sec.Integrations[name]; !had {
		return api.NotFound("no such integration")
	}
	if err := k.updateLocked(func(sec *secrets) error { delete(sec.Integrations, name); return nil }); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
