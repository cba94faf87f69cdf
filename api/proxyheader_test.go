package api_test

import (
	"net/http"
	"reflect"
	"testing"

	"github.com/ocmt/ocmt/api"
)

func TestMergeProxiedHeader(t *testing.T) {
	for _, tc := range []struct {
		name               string
		own, upstream, out http.Header
	}{
		{"ours win, upstream id kept aside",
			http.Header{"X-Request-Id": {"mine"}, "Content-Security-Policy": {"a"}, "Cache-Control": {"no-store"}},
			http.Header{"X-Request-Id": {"theirs"}, "Content-Security-Policy": {"b"}, "Cache-Control": {"max-age=60"}, "Content-Type": {"application/json"}},
			http.Header{"X-Upstream-Request-Id": {"theirs"}, "Content-Type": {"application/json"}}},
		{"an id from further in stays",
			http.Header{"X-Request-Id": {"mgmt"}},
			http.Header{"X-Request-Id": {"agent"}, "X-Upstream-Request-Id": {"vault"}},
			http.Header{"X-Upstream-Request-Id": {"vault"}}},
		{"nothing of ours: upstream kept",
			http.Header{},
			http.Header{"X-Frame-Options": {"DENY"}, "X-Request-Id": {"theirs"}},
			http.Header{"X-Frame-Options": {"DENY"}, "X-Upstream-Request-Id": {"theirs"}}},
	} {
		api.MergeProxiedHeader(tc.own, tc.upstream)
		if !reflect.DeepEqual(tc.upstream, tc.out) {
			t.Errorf("%s: upstream after merge = %v, want %v", tc.name, tc.upstream, tc.out)
		}
	}
}
