package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"
)

// Client is a typed client of the browser-facing management API (SPEC §11).
// It keeps cookies like a browser and sends the CSRF token from the
// ocmt_csrf cookie on state-changing requests.
type Client struct {
	Base string // e.g. "http://127.0.0.1:8080"
	HC   *http.Client
}

// NewClient returns a client with its own cookie jar.
func NewClient(base string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{Base: strings.TrimRight(base, "/"), HC: &http.Client{
		Jar: jar, Timeout: 2 * time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// Cookie returns the value of the named cookie for Base, or "".
func (c *Client) Cookie(name string) string {
	u, _ := url.Parse(c.Base)
	for _, ck := range c.HC.Jar.Cookies(u) {
		if ck.Name == name {
			return ck.Value
		}
	}
	return ""
}

// Response is a raw answer: status, headers and body.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// ErrorCode returns the "error.code" of a JSON error body, or "".
func (r *Response) ErrorCode() string {
	var b ErrorBody
	_ = json.Unmarshal(r.Body, &b)
	return b.Error.Code
}

// Do sends a request. body, if not nil, is sent as JSON (or as is when it
// is an io.Reader with contentType set). State-changing methods carry the
// CSRF token; call EnsureCSRF first (Do does it when the cookie is missing).
func (c *Client) Do(ctx context.Context, method, path string, body any) (*Response, error) {
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ct = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd, ct = bytes.NewReader(buf), "application/json"
	}
	if method != http.MethodGet && method != http.MethodHead && c.Cookie("ocmt_csrf") == "" {
		if err := c.EnsureCSRF(ctx); err != nil {
			return nil, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, err
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if _, form := body.(url.Values); !form {
		req.Header.Set("Accept", "application/json")
	}
	if method != http.MethodGet && method != http.MethodHead {
		req.Header.Set("X-CSRF-Token", c.Cookie("ocmt_csrf"))
	}
	resp, err := c.HC.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return nil, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// EnsureCSRF fetches the sign-in page, which sets the ocmt_csrf cookie.
func (c *Client) EnsureCSRF(ctx context.Context) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/signin", nil)
	resp, err := c.HC.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// JSON sends a request and decodes a 2xx JSON answer into out (if not nil);
// any other status becomes an *Error with the body's code and message.
func (c *Client) JSON(ctx context.Context, method, path string, body, out any) error {
	r, err := c.Do(ctx, method, path, body)
	if err != nil {
		return err
	}
	if r.Status < 200 || r.Status > 299 {
		var b ErrorBody
		_ = json.Unmarshal(r.Body, &b)
		return &Error{Status: r.Status, Code: b.Error.Code, Msg: b.Error.Message}
	}
	if out != nil && len(r.Body) > 0 {
		if err := json.Unmarshal(r.Body, out); err != nil {
			return fmt.Errorf("decode %s %s: %w", method, path, err)
		}
	}
	return nil
}

// RequestLink asks for a magic link for email.
func (c *Client) RequestLink(ctx context.Context, email string) error {
	return c.JSON(ctx, http.MethodPost, "/api/v1/auth/magic-link", MagicLinkRequest{Email: email}, nil)
}

// Verify consumes a magic-link token and signs the client in. email is
// needed only for the first start's bootstrap link.
func (c *Client) Verify(ctx context.Context, token, email string) (User, error) {
	var out struct {
		User User `json:"user"`
	}
	err := c.JSON(ctx, http.MethodPost, "/auth/verify", map[string]string{"token": token, "email": email}, &out)
	return out.User, err
}

// Me returns the signed-in user.
func (c *Client) Me(ctx context.Context) (User, error) {
	var u User
	err := c.JSON(ctx, http.MethodGet, "/api/v1/me", nil, &u)
	return u, err
}

// Agent returns the caller's container status.
func (c *Client) Agent(ctx context.Context) (AgentStatus, error) {
	var s AgentStatus
	err := c.JSON(ctx, http.MethodGet, "/api/v1/me/agent", nil, &s)
	return s, err
}

// ProvisionAgent provisions or wakes the caller's container.
func (c *Client) ProvisionAgent(ctx context.Context) error {
	return c.JSON(ctx, http.MethodPost, "/api/v1/me/agent", nil, nil)
}

// WaitAgent polls until the caller's container is in state want, or the
// state is "error", or ctx ends.
func (c *Client) WaitAgent(ctx context.Context, want string) (AgentStatus, error) {
	for {
		s, err := c.Agent(ctx)
		if err != nil {
			return s, err
		}
		if s.State == want {
			return s, nil
		}
		if s.State == StateError {
			return s, fmt.Errorf("agent in error state: %s", s.Error)
		}
		select {
		case <-ctx.Done():
			return s, fmt.Errorf("agent state %q, want %q: %w", s.State, want, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// AdminAction runs a container action as an admin.
func (c *Client) AdminAction(ctx context.Context, userID, action string) error {
	return c.JSON(ctx, http.MethodPost, "/api/v1/admin/containers/"+url.PathEscape(userID)+"/"+url.PathEscape(action), nil, nil)
}

// Logout signs out.
func (c *Client) Logout(ctx context.Context) error {
	return c.JSON(ctx, http.MethodPost, "/api/v1/auth/logout", nil, nil)
}
