// Package version reports the ocmt version: the string set at link time with
// -ldflags "-X github.com/ocmt/ocmt/version.version=v1.2.3", else the module
// version from the build info, else "dev".
package version

import "runtime/debug"

var version = ""

// String returns the version, e.g. "v0.1.0" or "dev".
func String() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
