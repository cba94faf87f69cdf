package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"time"
)

// AgentServiceHeader carries the service secret from the management role to
// a separate agent role.
const AgentServiceHeader = "X-Ocmt-Service-Secret"

// AgentClient reaches a separate agent role over HTTP (see the agent
// package's Routes for the paths). It satisfies Agent.
type AgentClient struct {
	base   *url.URL
	secret string
	hc     *http.Client
}

// NewAgentClient returns a client for the agent role at baseURL (e.g.
// "http://agent:8081"), authenticating with the service secret.
func NewAgentClient(baseURL, serviceSecret string) (*AgentClient, error) {
	u, err := url.Parse(strings.TrimRight(baseURL, "/"))
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("agent client: bad URL %q", baseURL)
	}
	return &AgentClient{base: u, secret: serviceSecret, hc: &http.Client{Timeout: 2 * time.Minute}}, nil
}

func (c *AgentClient) url(p string) string { return c.base.String() + "/internal/v1/agent" + p }

func (c *AgentClient) do(ctx context.Context, method, p string, out any) error {
	return c.doJSON(ctx, method, p, nil, out)
}

// doJSON is do with a JSON request body in (nil = none).
func (c *AgentClient) doJSON(ctx context.Context, method, p string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(p), body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set(AgentServiceHeader, c.secret)
	resp, err := c.hc.Do(req)
	if err != nil {
		return Unavailable("agent_unreachable", "the agent service is unreachable", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var b struct {
			Error ErrorDetail `json:"error"`
		}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&b)
		if b.Error.Code == "" {
			b.Error.Code, b.Error.Message = "agent_error", "the agent service failed"
		}
		return E(resp.StatusCode, b.Error.Code, b.Error.Message)
	}
	if out != nil {
		return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(out)
	}
	return nil
}

// Provision implements Agent.
func (c *AgentClient) Provision(ctx context.Context, userID string) error {
	return c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(userID), nil)
}

// Status implements Agent.
func (c *AgentClient) Status(ctx context.Context, userID string) (AgentStatus, error) {
	var s AgentStatus
	err := c.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(userID), &s)
	return s, err
}

// List implements Agent.
func (c *AgentClient) List(ctx context.Context) ([]AgentStatus, error) {
	var out struct {
		Containers []AgentStatus `json:"containers"`
	}
	err := c.do(ctx, http.MethodGet, "/containers", &out)
	return out.Containers, err
}

// Touch records activity for the user's container (a relay delivery), so
// hibernation does not count it as idle.
func (c *AgentClient) Touch(ctx context.Context, userID string) error {
	return c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(userID)+"/activity", nil)
}

// Do implements Agent.
func (c *AgentClient) Do(ctx context.Context, userID, action string) error {
	return c.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(userID)+"/actions/"+url.PathEscape(action), nil)
}

// SessionCloseGrace is how long a proxied WebSocket whose session ended is
// given to finish its close handshake (through the agent role) before the
// connection is cut.
const SessionCloseGrace = 5 * time.Second

// Proxy implements Agent with a reverse proxy (WebSocket upgrades included)
// to the agent role's proxy route. The answer's headers are merged into
// the ResponseWriter's (MergeProxiedHeader), so the caller's win.
//
// A WebSocket gets a random StreamHeader id. When r's context ends with a
// SessionEnded cause, the agent role, which holds the WebSocket, is asked
// to close it with StatusSessionEnded (its close frame travels through
// this proxy to the browser); the connection is cut after
// SessionCloseGrace, or at once if the agent role cannot be asked.
func (c *AgentClient) Proxy(userID string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(StreamHeader)
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			c.reverseProxy(w, userID).ServeHTTP(w, r)
			return
		}
		id := newStreamID()
		// The reverse proxy cuts the upstream connection when its request's
		// context ends; a session's end must reach the agent role first.
		in := r.Context()
		ctx, cancel := context.WithCancel(context.WithoutCancel(in))
		defer cancel()
		stop := context.AfterFunc(in, func() {
			if e, ok := SessionEndedCause(in); ok {
				cctx, ccancel := context.WithTimeout(ctx, SessionCloseGrace)
				err := c.doJSON(cctx, http.MethodPost, "/streams/"+id+"/close", map[string]string{"reason": e.Reason}, nil)
				if err == nil {
					<-cctx.Done() // the proxy returns (cancelling ctx) once the agent role has closed
				}
				ccancel()
			}
			cancel()
		})
		defer stop()
		r = r.WithContext(ctx)
		r.Header.Set(StreamHeader, id)
		c.reverseProxy(w, userID).ServeHTTP(w, r)
	})
}

// newStreamID returns 16 random bytes, hex (a StreamHeader id).
func newStreamID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func (c *AgentClient) reverseProxy(w http.ResponseWriter, userID string) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			inner := pr.In.URL.Path
			pr.Out.URL.Scheme, pr.Out.URL.Host = c.base.Scheme, c.base.Host
			pr.Out.URL.Path = "/internal/v1/agent/containers/" + url.PathEscape(userID) + "/proxy" + inner
			pr.Out.URL.RawPath = ""
			pr.Out.Host = c.base.Host
			pr.Out.Header.Del("Cookie")
			pr.Out.Header.Del("Authorization")
			pr.Out.Header.Set(AgentServiceHeader, c.secret)
		},
		ModifyResponse: func(resp *http.Response) error { // upgrades too
			MergeProxiedHeader(w.Header(), resp.Header)
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			e := E(http.StatusBadGateway, "agent_unreachable", "the agent service is unreachable")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(e.Status)
			_ = json.NewEncoder(w).Encode(e.Body())
		},
	}
}
