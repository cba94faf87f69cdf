package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyDirection keeps the package graph pointing one way: roles
// use store/crypto/config/api, never each other (only the roles composer
// and each role's own subpackages), the lower layers never import roles,
// the vault (inside user containers) never links the Docker client, and no
// production package imports testing.
func TestDependencyDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{join .Deps ","}}`, "./...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	const mod = "github.com/ocmt/ocmt/"
	roleOf := func(p string) string {
		rest, ok := strings.CutPrefix(p, mod+"roles/")
		if !ok {
			return ""
		}
		return strings.SplitN(rest, "/", 2)[0]
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, depList, _ := strings.Cut(line, ":")
		deps := strings.Split(depList, ",")
		name := strings.TrimPrefix(pkg, mod)
		isTestPkg := strings.HasPrefix(name, "xtest") || strings.HasPrefix(name, "testdata") || strings.HasPrefix(name, "e2e")
		for _, d := range deps {
			if d == "testing" && !isTestPkg {
				t.Errorf("%s imports testing", name)
			}
			if !strings.HasPrefix(d, mod) {
				if strings.HasPrefix(name, "roles/vault") && strings.HasPrefix(d, "github.com/moby/") {
					t.Errorf("%s (runs in user containers) links the Docker client %s", name, d)
				}
				continue
			}
			dn := strings.TrimPrefix(d, mod)
			if strings.HasPrefix(dn, "xtest") || strings.HasPrefix(dn, "testdata") {
				if !isTestPkg {
					t.Errorf("%s imports test helper %s", name, dn)
				}
			}
			for _, low := range []string{"store", "crypto", "config", "api", "mail", "version"} {
				if (name == low || strings.HasPrefix(name, low+"/")) && strings.HasPrefix(dn, "roles") {
					t.Errorf("%s (a lower layer) imports %s", name, dn)
				}
			}
			r, dr := roleOf(pkg), roleOf(d)
			if r != "" && dr != "" && r != dr && dr != "web" {
				t.Errorf("role %s imports role %s (%s → %s); talk through api instead", r, dr, name, dn)
			}
		}
	}
}
