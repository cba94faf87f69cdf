package ui

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ocmt/ocmt/crypto"
)

// kdfLimitsJS renders static/kdflimits.js from package crypto's bounds, so
// that the browser's check (vaultcrypto.js checkKDFParams) and the
// container's (crypto.KDFParams.Validate, crypto.CheckSalt) have one source.
func kdfLimitsJS() string {
	return fmt.Sprintf(`// kdflimits.js — the key derivation floor and ceiling (SPEC §5.1).
// Code generated from package crypto by ui/kdflimits_test.go; DO NOT EDIT.
// Regenerate with: OCMT_UPDATE_KDFLIMITS=1 go test ./ui -run TestKDFLimitsJS

/** kdfLimits are the bounds of crypto.KDFParams.Validate and crypto.CheckSalt. */
export const kdfLimits = Object.freeze({
  alg: %q,
  minMemoryKiB: %d,
  maxMemoryKiB: %d,
  minIterations: %d,
  maxIterations: %d,
  minParallelism: 1,
  maxParallelism: %d,
  minSaltBytes: %d,
  maxSaltBytes: %d,
});
`, crypto.KDFArgon2id, crypto.MinMemoryKiB, crypto.MaxMemoryKiB, crypto.MinIterations, crypto.MaxIterations,
		crypto.MaxParallelism, crypto.MinSaltSize, crypto.MaxSaltSize)
}

// TestKDFLimitsJS fails when static/kdflimits.js differs from what package
// crypto's bounds give; OCMT_UPDATE_KDFLIMITS=1 rewrites the file.
func TestKDFLimitsJS(t *testing.T) {
	path := filepath.Join("static", "kdflimits.js")
	want := kdfLimitsJS()
	if os.Getenv("OCMT_UPDATE_KDFLIMITS") == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s is stale (the KDF bounds in package crypto changed); run OCMT_UPDATE_KDFLIMITS=1 go test ./ui -run TestKDFLimitsJS\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
