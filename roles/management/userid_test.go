package management_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/xtest"
)

// TestInternalDirectoryRefusesBadUserIDs: the relay's directory route (split
// mode, behind the service secret) answers 400 invalid_user_id for anything
// that is not a user id, before looking it up; a well-formed unknown id is
// still 404.
func TestInternalDirectoryRefusesBadUserIDs(t *testing.T) {
	env := xtest.NewSplitEnv(t)
	get := func(id string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", env.URL+"/internal/v1/directory/"+id, nil)
		req.Header.Set(api.AgentServiceHeader, env.Cfg.ServiceSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, id := range []string{"..%2f..%2fetc", "ocmt-agents", "usr_bob", "usr_" + strings.Repeat("a", 200), "usr_" + strings.Repeat("A", 26)} {
		if st, b := get(id); st != http.StatusBadRequest || !strings.Contains(b, `"invalid_user_id"`) {
			t.Errorf("%q: %d %s, want 400 invalid_user_id", id, st, b)
		}
	}
	if st, b := get("usr_" + strings.Repeat("a", 26)); st != http.StatusNotFound {
		t.Errorf("unknown well-formed id: %d %s, want 404", st, b)
	}
}
