package cli

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles"
)

func newDoctor() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check this machine: container engine, data directory, agent image, listen address, reverse proxy",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfig(cmd, &cfg); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			checks := roles.Doctor(ctx, cfg)
			failed := 0
			for _, c := range checks {
				mark := "ok  "
				switch {
				case !c.OK && c.Warn:
					mark = "warn"
				case !c.OK:
					mark = "FAIL"
					failed++
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s  %-22s %s\n", mark, c.Name, c.Detail)
			}
			if failed > 0 {
				return fmt.Errorf("%d check(s) failed", failed)
			}
			return nil
		},
	}
	bindFlags(cmd.Flags(), &cfg)
	return cmd
}

// newInternal holds hidden diagnostics used by tests inside user containers
// (which have no shell): `ocmt internal dial ADDR` exits 0 if a connection to
// ADDR ("host:port" or "unix:/path") succeeds within 2 s, else 1.
func newInternal() *cobra.Command {
	cmd := &cobra.Command{Use: "internal", Hidden: true}
	cmd.AddCommand(&cobra.Command{
		Use:  "dial ADDR",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			network, addr := "tcp", args[0]
			if p, ok := strings.CutPrefix(addr, "unix:"); ok {
				network, addr = "unix", p
			}
			c, err := net.DialTimeout(network, addr, 2*time.Second)
			if err != nil {
				return fmt.Errorf("dial %s: unreachable", args[0])
			}
			c.Close()
			fmt.Fprintln(cmd.OutOrStdout(), "connected")
			return nil
		},
	})
	return cmd
}
