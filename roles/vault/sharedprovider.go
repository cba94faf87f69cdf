package vault

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/capability"
	"github.com/ocmt/ocmt/roles/vault/llm"
	"github.com/ocmt/ocmt/roles/web"
)

// Chat on a shared model provider key (SPEC §7.1; "a household can share
// one API key with a call budget without revealing it").
//
// Alice shares "provider:anthropic" (or "provider:openai") with Bob. In
// Bob's vault the received capability can be chosen as the chat provider:
// the default-provider setting then holds "shared:<jti>" instead of a
// provider name. Bob's model requests go through the capability call path:
// the llm client's HTTP transport (sharedTransport) sends the SDK's request
// (method, path below the provider's API root, JSON body) as a
// capability.call through the relay; Alice's vault checks it, counts one
// call against max_calls, sends it to the provider with her key and
// returns the answer, which becomes the SDK's *http.Response. Bob's vault
// never holds Alice's key and sends no credential of its own.
//
// Relay envelopes hold at most 64 KiB, so the request asks for a whole
// (non-streaming) reply (llm.Config.NoStream): it arrives in one piece,
// not token by token. The history sent is trimmed to sharedHistoryBytes.
//
// API (below /vault):
//
//	GET /apikeys → {"providers":[…],"defaultProvider":"anthropic"|"shared:<jti>"|"",
//	               "shared":[{"jti","provider","issuerUserId","model"?,"maxCalls"?,
//	                          "calls","remainingCalls"?,"expiresAt","status"}]}
//	PUT /default-provider {"provider":"anthropic"|"openai"|"shared:<jti>"} → {"defaultProvider"}
//
// The management role adds "issuerEmail" to each "shared" entry.

const (
	// sharedProviderPrefix marks a received capability as the chat
	// provider in Settings["defaultProvider"]: "shared:<jti>".
	sharedProviderPrefix = "shared:"
	// sharedHistoryBytes bounds the conversation text sent through a shared
	// key, so that a request fits a relay envelope with the system prompt,
	// tool descriptions and token.
	sharedHistoryBytes = 40 << 10
	// sharedBaseHost is the placeholder API root given to the SDK; requests
	// never reach it (sharedTransport sends only the path).
	sharedBaseHost = "http://shared-provider.invalid"
)

// sharedProviderName returns the provider of a shareable provider resource
// ("provider:anthropic" → "anthropic"), if the chat can use it.
func sharedProviderName(resource string) (string, bool) {
	p, ok := strings.CutPrefix(resource, providerResourcePrefix)
	if !ok || (p != llm.Anthropic && p != llm.OpenAI) {
		return "", false
	}
	return p, true
}

// providerDisplay is a provider's name in messages: "Anthropic", "OpenAI".
func providerDisplay(p string) string {
	switch p {
	case llm.Anthropic:
		return "Anthropic"
	case llm.OpenAI:
		return "OpenAI"
	}
	return p
}

// sharedChoice is a received provider capability chosen for chat.
type sharedChoice struct {
	jti          string
	provider     string // llm.Anthropic or llm.OpenAI
	model        string // "" = the provider's default
	customServer bool
	maxCalls     int
	status       string // active, revoked, expired, exhausted; "gone" if the record is missing
}

// chatProvider is what a chat run uses: an own key, or a shared one.
type chatProvider struct {
	name   string        // provider name of an own key
	key    apiKey        // own key; zero when shared
	shared *sharedChoice // nil for an own key
}

// chatProviderLocked resolves the defaultProvider record: a received
// capability ("shared:<jti>"), an own key by name, or else any own key.
// It returns nil when there is none. k.mu held, unlocked.
func (s *Server) chatProviderLocked() *chatProvider {
	k := s.keys
	sel := k.sec.DefaultProvider
	if jti, ok := strings.CutPrefix(sel, sharedProviderPrefix); ok {
		ch := &sharedChoice{jti: jti, status: "gone"}
		if rc := s.receivedCapsLocked()[jti]; rc != nil {
			p, _ := sharedProviderName(rc.Resource)
			ch.provider, ch.model, ch.customServer, ch.maxCalls = p, rc.Model, rc.CustomServer, rc.MaxCalls
			ch.status = rc.status(s.capNow().Unix())
		}
		return &chatProvider{shared: ch}
	}
	key, ok := k.sec.APIKeys[sel]
	if !ok {
		names := make([]string, 0, len(k.sec.APIKeys))
		for n := range k.sec.APIKeys {
			names = append(names, n)
		}
		if len(names) == 0 {
			return nil
		}
		sort.Strings(names)
		sel, key = names[0], k.sec.APIKeys[names[0]]
	}
	return &chatProvider{name: sel, key: key}
}

// unusable returns a readable reason why a shared choice cannot serve chat
// now, or "".
func (c *sharedChoice) unusable() string {
	what := "The " + providerDisplay(c.provider) + " key shared with you"
	switch c.status {
	case "active":
		return ""
	case "revoked":
		return what + " was revoked by its owner. Choose another provider in Vault & keys."
	case "expired":
		return what + " has expired. Ask its owner to share it again, or choose another provider in Vault & keys."
	case "exhausted":
		return fmt.Sprintf("%s has used up its call budget (%d calls). Ask its owner for a new share, or choose another provider in Vault & keys.", what, c.maxCalls)
	}
	return "The shared key chosen for chat is no longer there. Choose another provider in Vault & keys."
}

// sharedLLMConfig is the llm configuration of a chat on the shared key: no key
// of our own, a whole (non-streaming) reply, and requests carried by
// sharedTransport as capability calls.
func (s *Server) sharedLLMConfig(c *sharedChoice) llm.Config {
	cfg := llm.Config{Provider: c.provider, Model: c.model, NoStream: true}
	prefix := ""
	if c.provider == llm.OpenAI {
		// The issuer's root for OpenAI ends in /v1 (its own or the public
		// API's); the SDK's path below "<root>/v1/" is what follows it.
		prefix = "/v1"
		if c.customServer {
			// A custom root makes llm send max_tokens, which compatible
			// servers know, instead of max_completion_tokens.
			cfg.BaseURL = sharedBaseHost + "/v1"
		}
	}
	cfg.HTTPClient = &http.Client{Transport: &sharedTransport{s: s, jti: c.jti, prefix: prefix}}
	return cfg
}

// sharedTransport is an http.RoundTripper that carries one model provider
// request as a capability call on a received provider capability: POST
// (operation write) to the request's path with prefix removed, and the
// JSON body. Headers are not sent, so no credential of ours (the SDKs get
// none) or theirs ever travels; the issuer's vault adds its own key and
// the provider's fixed headers. The result (status, Content-Type, body)
// becomes the *http.Response. A refusal (revoked, budget used up, expired,
// relay down, too large) is returned as a *sharedCallError.
type sharedTransport struct {
	s      *Server
	jti    string
	prefix string // removed from the SDK's path: "" (Anthropic) or "/v1" (OpenAI)
}

// sharedCallError is a capability call refusal met by sharedTransport.
type sharedCallError struct{ err *api.Error }

func (e *sharedCallError) Error() string { return "shared provider call: " + e.err.Code }
func (e *sharedCallError) Unwrap() error { return e.err }

func (t *sharedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	refuse := func(status int, code, msg string) (*http.Response, error) {
		return nil, &sharedCallError{err: api.E(status, code, msg)}
	}
	if req.Method != http.MethodPost {
		return refuse(http.StatusBadRequest, "invalid_method", "only model requests (POST) go through a shared key")
	}
	path, ok := strings.CutPrefix(req.URL.Path, t.prefix)
	if !ok || path == "" {
		return refuse(http.StatusBadRequest, "invalid_path", "unexpected model request path")
	}
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	var body []byte
	if req.Body != nil {
		b, err := io.ReadAll(io.LimitReader(req.Body, relayMaxPayloadRaw+1))
		if err != nil {
			return nil, err
		}
		body = b
	}
	if len(body) > relayMaxPayloadRaw {
		return refuse(http.StatusRequestEntityTooLarge, "too_large", "the request is too large to send through the relay")
	}
	if len(body) > 0 && !json.Valid(body) {
		return refuse(http.StatusBadRequest, "invalid_body", "the model request is not JSON")
	}
	res, err := t.s.sendCall(req.Context(), t.jti, callReq{Operation: string(capability.OpWrite), Method: http.MethodPost, Path: path, Body: body})
	if err != nil {
		if ae, ok := api.AsError(err); ok {
			return nil, &sharedCallError{err: ae}
		}
		return nil, err
	}
	status := res.Status
	if status < 100 || status > 599 {
		status = http.StatusBadGateway
	}
	h := http.Header{}
	for name, v := range res.Headers {
		h.Set(name, v)
	}
	return &http.Response{
		Status: fmt.Sprintf("%d %s", status, http.StatusText(status)), StatusCode: status,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(res.Body)), ContentLength: int64(len(res.Body)),
		Request: req,
	}, nil
}

// sharedChatError turns the failure of a run on a shared key into a
// readable sentence: capability refusals by code, provider errors by kind.
func sharedChatError(err error, c *sharedChoice) string {
	what := "The " + providerDisplay(c.provider) + " key shared with you"
	var ae *api.Error
	if errors.As(err, &ae) {
		switch ae.Code {
		case capability.ErrRevoked.Code():
			return (&sharedChoice{provider: c.provider, status: "revoked"}).unusable()
		case capability.ErrBudgetExhausted.Code():
			return (&sharedChoice{provider: c.provider, status: "exhausted", maxCalls: c.maxCalls}).unusable()
		case capability.ErrExpired.Code():
			return (&sharedChoice{provider: c.provider, status: "expired"}).unusable()
		case capability.ErrRateLimited.Code(), "rate_limited":
			return what + " is being used too often right now; try again in a while."
		case "too_large":
			return "This conversation is too long to send through a shared key (the relay carries at most 64 KiB). Start a new chat."
		case "timeout":
			return "The vault of the key's owner did not answer in time; try again."
		case "upstream_timeout":
			return "The model did not finish its reply within the owner's time limit for shared calls (2 minutes); try again or ask for a shorter answer."
		case "relay_unavailable":
			return "The relay that carries shared keys cannot be reached right now; try again later."
		case "result_too_large":
			return "The model's reply is too large to send back through the relay; ask for a shorter answer."
		case "resource_unavailable":
			return "Its owner no longer has this key in their vault. Choose another provider in Vault & keys."
		case "vault_locked":
			return ae.Msg
		}
		return what + " could not be used: " + ae.Msg
	}
	var le *llm.Error
	if errors.As(err, &le) {
		if le.Kind == llm.KindAuth {
			return fmt.Sprintf("%s refused the key shared with you (HTTP %d); its owner needs to check it.", providerDisplay(c.provider), le.Status)
		}
		return le.Message
	}
	return "the model provider failed; try again"
}

// fitHistory drops the oldest messages until the texts of msgs (and their
// tool calls) add up to at most maxBytes, keeping at least the last one, and
// never starts with a tool result.
func fitHistory(msgs []llm.Message, maxBytes int) []llm.Message {
	size := func(m llm.Message) int {
		n := len(m.Text) + 64
		for _, tc := range m.ToolCalls {
			n += len(tc.Input) + len(tc.Name) + len(tc.ID) + 32
		}
		return n
	}
	total := 0
	for _, m := range msgs {
		total += size(m)
	}
	for len(msgs) > 1 && total > maxBytes {
		total -= size(msgs[0])
		msgs = msgs[1:]
	}
	for len(msgs) > 1 && msgs[0].Role == llm.RoleTool {
		msgs = msgs[1:]
	}
	return msgs
}

// sharedProviderJSON is one received provider capability in GET /apikeys.
type sharedProviderJSON struct {
	JTI            string `json:"jti"`
	Provider       string `json:"provider"`
	IssuerUserID   string `json:"issuerUserId"`
	Model          string `json:"model,omitempty"`
	MaxCalls       int    `json:"maxCalls,omitempty"`
	Calls          int    `json:"calls"`
	RemainingCalls *int   `json:"remainingCalls,omitempty"` // absent without a budget
	ExpiresAt      int64  `json:"expiresAt"`                // unix seconds
	Status         string `json:"status"`
}

// sharedProvidersLocked lists the received provider capabilities the chat
// can use (active, with write scope), plus the one chosen for chat whatever
// its status, soonest expiry first. k.mu held, unlocked.
func (s *Server) sharedProvidersLocked(chosen string) []sharedProviderJSON {
	out := []sharedProviderJSON{}
	now := s.capNow().Unix()
	for _, rc := range s.receivedCapsLocked() {
		p, ok := sharedProviderName(rc.Resource)
		if !ok || !hasOp(rc.Scope, string(capability.OpWrite)) {
			continue
		}
		st := rc.status(now)
		if st != "active" && sharedProviderPrefix+rc.JTI != chosen {
			continue
		}
		e := sharedProviderJSON{JTI: rc.JTI, Provider: p, IssuerUserID: rc.IssuerUserID, Model: rc.Model, MaxCalls: rc.MaxCalls,
			Calls: rc.Calls, ExpiresAt: rc.Exp, Status: st}
		if rc.MaxCalls > 0 {
			left := max(0, rc.MaxCalls-rc.Calls)
			e.RemainingCalls = &left
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].ExpiresAt < out[j].ExpiresAt || out[i].ExpiresAt == out[j].ExpiresAt && out[i].JTI < out[j].JTI
	})
	return out
}

func hasOp(scope []string, op string) bool {
	for _, o := range scope {
		if o == op {
			return true
		}
	}
	return false
}

// putDefaultProvider handles PUT /vault/default-provider {"provider"}: the
// provider the chat uses, an own key by name or a received provider
// capability as "shared:<jti>" (which must be active and allow write).
func (s *Server) putDefaultProvider(c echo.Context) error {
	var req struct {
		Provider string `json:"provider"`
	}
	if err := web.Bind(c, &req); err != nil {
		return err
	}
	if req.Provider == "" || len(req.Provider) > 128 {
		return api.BadRequest("invalid_provider", `provider must name one of your keys, or "shared:<id>" for a key shared with you`)
	}
	k := s.keys
	k.mu.Lock()
	defer k.mu.Unlock()
	if err := k.useLocked(s.publicURL); err != nil {
		return err
	}
	if jti, ok := strings.CutPrefix(req.Provider, sharedProviderPrefix); ok {
		cs, err := s.loadCapsLocked()
		if err != nil {
			return err
		}
		rc := cs.Received[jti]
		if rc == nil {
			return api.NotFound("no key with this id is shared with you")
		}
		p, ok := sharedProviderName(rc.Resource)
		if !ok || !hasOp(rc.Scope, string(capability.OpWrite)) {
			return api.BadRequest("not_a_provider", "this share is not a model provider key that chat can use")
		}
		ch := &sharedChoice{provider: p, maxCalls: rc.MaxCalls, status: rc.status(s.capNow().Unix())}
		if msg := ch.unusable(); msg != "" {
			return api.Conflict("share_unavailable", msg)
		}
	} else if !knownProvider(req.Provider) {
		return api.BadRequest("invalid_provider", `provider must be "anthropic", "openai", or "shared:<id>" for a key shared with you`)
	} else if _, ok := k.sec.APIKeys[req.Provider]; !ok {
		return api.NotFound("no key for this provider")
	}
	if err := k.updateLocked(func(sec *secrets) error {
		sec.DefaultProvider = req.Provider
		return nil
	}); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]string{"defaultProvider": req.Provider})
}
