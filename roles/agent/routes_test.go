package agent

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/roles/agent/process"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
)

// routeSecret is the service secret of routeServer.
const routeSecret = "0123456789abcdef0123"

// routeServer serves an agent role's service routes (process driver, fresh
// store, both closed when the test ends) under /internal/v1/agent with
// routeSecret.
func routeServer(t *testing.T) (*Server, *store.Store, *httptest.Server) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), store.FileName), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := New(ctx, Options{Driver: process.New(log), Store: st, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	e := web.New(log, false)
	s.Routes(e.Group("/internal/v1/agent"), routeSecret)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return s, st, srv
}

// TestServiceActivityRoute: a separate relay reports deliveries as activity
// through the service API; without the service secret it is refused.
func TestServiceActivityRoute(t *testing.T) {
	ctx := context.Background()
	s, st, srv := routeServer(t)
	old := time.Now().Add(-time.Hour)
	if err := st.PutContainer(ctx, store.Container{UserID: "usr_bobaaaaaaaaaaaaaaaaaaaaaaa", Runtime: "process", State: store.StateStopped, LastActivityAt: old}); err != nil {
		t.Fatal(err)
	}

	resp, err := http.Post(srv.URL+"/internal/v1/agent/containers/usr_bob/activity", "", nil)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without secret: %v %v", resp, err)
	}
	ac, _ := api.NewAgentClient(srv.URL, routeSecret)
	if err := ac.Touch(ctx, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa"); err != nil {
		t.Fatal(err)
	}
	stt, err := s.Status(ctx, "usr_bobaaaaaaaaaaaaaaaaaaaaaaa")
	if err != nil || !stt.LastActivityAt.After(old.Add(30*time.Minute)) {
		t.Fatalf("activity not recorded: %+v %v", stt, err)
	}
}

// TestStreamCloseRoute: the stream close route is behind the service
// secret, takes only the documented reasons and answers 404 for a stream
// that is not open.
func TestStreamCloseRoute(t *testing.T) {
	ctx := context.Background()
	s, _, srv := routeServer(t)
	id := "0123456789abcdef0123456789abcdef"
	cancelled := make(chan error, 1)
	sctx, cancel := context.WithCancelCause(ctx)
	s.streams.Store(id, context.CancelCauseFunc(func(err error) { cancel(err); cancelled <- err }))
	for _, tc := range []struct {
		name, secret, id, body string
		want                   int
	}{
		{"no secret", "", id, `{"reason":"signed out"}`, http.StatusUnauthorized},
		{"unknown reason", routeSecret, id, `{"reason":"because"}`, http.StatusBadRequest},
		{"unknown stream", routeSecret, "ffffffffffffffffffffffffffffffff", `{"reason":"signed out"}`, http.StatusNotFound},
		{"ok", routeSecret, id, `{"reason":"signed out"}`, http.StatusNoContent},
		{"again", routeSecret, id, `{"reason":"signed out"}`, http.StatusNotFound},
	} {
		req, _ := http.NewRequest("POST", srv.URL+"/internal/v1/agent/streams/"+tc.id+"/close", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		if tc.secret != "" {
			req.Header.Set(ServiceHeader, tc.secret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	select {
	case <-cancelled:
	default:
		t.Fatal("the stream was not ended")
	}
	if e, ok := api.SessionEndedCause(sctx); !ok || e.Reason != api.CloseReasonSignedOut {
		t.Fatalf("cause %v", context.Cause(sctx))
	}
}

// TestInternalRoutesRefuseBadUserIDs: every service route that takes a user
// id answers 400 invalid_user_id, for every method, unless the id has the
// shape store.ParseUserID accepts; nothing is provisioned or echoed.
func TestInternalRoutesRefuseBadUserIDs(t *testing.T) {
	ctx := context.Background()
	_, st, srv := routeServer(t)

	ids := map[string]string{
		"escaped traversal":   "..%2f..%2fetc",
		"dot dot":             "..",
		"network name":        "ocmt-agents",
		"empty":               "",
		"too long":            "usr_" + strings.Repeat("a", 200),
		"short name":          "usr_bob",
		"one short":           "usr_" + strings.Repeat("a", 25),
		"one long":            "usr_" + strings.Repeat("a", 27),
		"upper case":          "usr_" + strings.Repeat("A", 26),
		"not base32":          "usr_" + strings.Repeat("1", 26),
		"wrong prefix":        "ses_" + strings.Repeat("a", 26),
		"escaped slash":       "usr_" + strings.Repeat("a", 24) + "%2f",
		"trailing dash":       "usr_" + strings.Repeat("a", 26) + "-",
		"underscore in body":  "usr_" + strings.Repeat("a", 25) + "_",
		"percent-encoded dot": "%2e%2e",
	}
	routes := []struct{ method, path string }{
		{"GET", "/containers/%s"},
		{"POST", "/containers/%s"},
		{"PUT", "/containers/%s"},
		{"DELETE", "/containers/%s"},
		{"POST", "/containers/%s/activity"},
		{"POST", "/containers/%s/actions/wake"},
		{"POST", "/containers/%s/actions/remove"},
		{"GET", "/containers/%s/proxy/healthz"},
		{"POST", "/containers/%s/proxy/x"},
		{"DELETE", "/containers/%s/proxy/"},
	}
	for name, id := range ids {
		for _, rt := range routes {
			path := "/internal/v1/agent" + strings.Replace(rt.path, "%s", id, 1)
			t.Run(name+" "+rt.method+" "+rt.path, func(t *testing.T) {
				req, _ := http.NewRequest(rt.method, srv.URL+path, nil)
				req.Header.Set(ServiceHeader, routeSecret)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				unrouted := rt.path == "/containers/%s" && (rt.method == "PUT" || rt.method == "DELETE" || id == "")
				if unrouted && (resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed) {
					return // no handler for this method/path; nothing ran
				}
				if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"invalid_user_id"`) {
					t.Fatalf("%s %s: %d %s, want 400 invalid_user_id", rt.method, path, resp.StatusCode, b)
				}
			})
		}
	}
	if l, err := st.Containers(ctx); err != nil || len(l) != 0 {
		t.Fatalf("containers recorded for bad ids: %+v %v", l, err)
	}
	// A well-formed id still gets through.
	good := store.NewID("usr")
	req, _ := http.NewRequest("GET", srv.URL+"/internal/v1/agent/containers/"+good, nil)
	req.Header.Set(ServiceHeader, routeSecret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("good id: %v %v", resp, err)
	}
	resp.Body.Close()
}
