// Command ocmt is a self-hosted, multi-tenant home for personal AI agents.
// See README.md; `ocmt --help` lists the commands.
package main

import (
	"os"

	_ "golang.org/x/crypto/x509roots/fallback" // CA roots inside scratch images

	"github.com/ocmt/ocmt/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
