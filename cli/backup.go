package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ocmt/ocmt/backup"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/version"
)

// backupTimeout bounds one backup or restore.
const backupTimeout = 2 * time.Hour

// engineFor connects to the Docker engine for a deployment, for backup and
// restore: helper containers use a local agent image (built from binary,
// default this executable, when none exists), never a registry.
func engineFor(binary, image string) backup.Engine {
	return func(ctx context.Context, deployment string) (backup.Volumes, error) {
		if binary == "" {
			exe, err := os.Executable()
			if err != nil {
				return nil, err
			}
			binary = exe
		}
		return docker.New(ctx, docker.Options{Binary: binary, Image: image, Version: version.String(), Deployment: deployment})
	}
}

func newBackup() *cobra.Command {
	cfg := config.Default()
	var to string
	var force bool
	cmd := &cobra.Command{
		Use:   "backup --to FILE",
		Short: "Write the database, keys and every user's volume (ciphertext) to one archive; works while ocmt runs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			if to == "" {
				return &config.Error{Setting: "to", Msg: "required: the archive file to write"}
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), backupTimeout)
			defer cancel()
			var eng backup.Engine
			if cfg.Runtime != config.RuntimeProcess {
				eng = engineFor(cfg.AgentBinary, cfg.AgentImage)
			}
			start := time.Now()
			m, err := backup.Create(ctx, backup.CreateOptions{DataDir: cfg.DataDir, To: to, Force: force, Engine: eng,
				Version: version.String(), Log: cmd.ErrOrStderr()})
			if err != nil {
				return err
			}
			fi, err := os.Stat(to)
			if err != nil {
				return err
			}
			vols := 0
			for _, u := range m.Users {
				if u.Volume != "" {
					vols++
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s: %s, %s, %s, %d bytes, schema %d, in %s\n",
				to, backup.Count(len(m.Users), "user"), backup.Count(vols, "volume"), backup.Count(len(m.Entries), "entry"),
				fi.Size(), m.SchemaVersion, time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "archive file to write (gzip-compressed tar, mode 0600)")
	f.BoolVar(&force, "force", false, "replace an existing --to file")
	f.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory holding ocmt.db")
	f.StringVar((*string)(&cfg.Runtime), "runtime", string(cfg.Runtime), "auto or docker: read user volumes through the engine; process: the data directory only")
	f.StringVar(&cfg.AgentBinary, "agent-binary", cfg.AgentBinary, "ocmt binary to build a helper image from if no agent image exists (default: this executable)")
	f.StringVar(&cfg.AgentImage, "agent-image", cfg.AgentImage, "agent image for helper containers (default: the one user containers use)")
	return cmd
}

func newRestore() *cobra.Command {
	cfg := config.Default()
	var from, owner string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore --from FILE --data-dir DIR",
		Short: "Check a backup archive completely, then put the database, keys and volumes back; ocmt must not be running",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			if from == "" {
				return &config.Error{Setting: "from", Msg: "required: the archive to restore"}
			}
			if !cmd.Flags().Changed("data-dir") && os.Getenv(EnvName("data-dir")) == "" {
				return &config.Error{Setting: "data-dir", Msg: "required: the data directory to restore into"}
			}
			var own *backup.Owner
			if owner != "" {
				o, err := parseOwner(owner)
				if err != nil {
					return err
				}
				own = &o
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), backupTimeout)
			defer cancel()
			_, err := backup.Restore(ctx, backup.RestoreOptions{From: from, DataDir: cfg.DataDir, Force: force, Owner: own,
				Engine: engineFor(cfg.AgentBinary, cfg.AgentImage), Out: cmd.OutOrStdout()})
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "archive written by ocmt backup")
	f.BoolVar(&force, "force", false, "restore into a non-empty data directory and over existing volumes (replaces ocmt.db, the archived files and users' directories, and the archived users' volumes and containers)")
	// No default shown: restore requires --data-dir (or OCMT_DATA_DIR).
	f.StringVar(&cfg.DataDir, "data-dir", "", "data directory to restore into (required; empty or missing unless --force)")
	f.StringVar(&owner, "owner", "", "UID:GID (numbers) to own the restored data directory and its files, e.g. 65532:65532 for the server image; needs root")
	f.StringVar(&cfg.AgentBinary, "agent-binary", cfg.AgentBinary, "ocmt binary to build a helper image from if no agent image exists (default: this executable)")
	f.StringVar(&cfg.AgentImage, "agent-image", cfg.AgentImage, "agent image for helper containers")
	return cmd
}

// parseOwner parses restore's --owner "UID:GID" (decimal, 0 to 2^31-1).
func parseOwner(s string) (backup.Owner, error) {
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 31)
	gid, err2 := strconv.ParseUint(g, 10, 31)
	if !ok || err1 != nil || err2 != nil {
		return backup.Owner{}, &config.Error{Setting: "owner", Msg: fmt.Sprintf("%q is not UID:GID (two numbers, e.g. 65532:65532)", s)}
	}
	return backup.Owner{UID: int(uid), GID: int(gid)}, nil
}
