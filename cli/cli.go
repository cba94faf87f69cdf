// Package cli is the ocmt command line (cobra): serve, version, doctor,
// audit verify, backup and restore (backup.go). Every serve flag also reads OCMT_<NAME> from the environment
// (dashes become underscores); secrets also read OCMT_<NAME>_FILE.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/roles"
	"github.com/ocmt/ocmt/version"
)

// Main runs the command line with args and returns the process exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(stderr, "ocmt:", err)
		return 1
	}
	return 0
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "ocmt",
		Short:         "A self-hosted, multi-tenant home for personal AI agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newServe(), newVersion(), newDoctor(), newAudit(), newBackup(), newRestore(), newInternal())
	root.SetFlagErrorFunc(flagError) // inherited by every subcommand
	return root
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "ocmt", version.String())
		},
	}
}

// flags binds cfg's fields to a flag set. Durations use Go syntax ("30m").
func bindFlags(fs *pflag.FlagSet, cfg *config.Config) {
	fs.StringVar((*string)(&cfg.Role), "role", string(cfg.Role), "what this process does: all, management, agent, relay, vault")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to listen on (host:port)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "directory for the database, keys and per-user data")
	fs.StringVar(&cfg.PublicURL, "public-url", cfg.PublicURL, "URL users open (default http://<listen>)")
	fs.StringSliceVar(&cfg.TrustedProxies, "trusted-proxies", cfg.TrustedProxies, "CIDRs of reverse proxies whose X-Forwarded-For is believed (comma-separated)")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", cfg.MetricsListen, "address (host:port) of a separate listener for Prometheus /metrics, /livez and /readyz (default: no metrics)")
	fs.StringVar((*string)(&cfg.LogFormat), "log-format", string(cfg.LogFormat), "log line format: text or json")
	fs.StringVar((*string)(&cfg.LogLevel), "log-level", string(cfg.LogLevel), "lowest level logged: debug, info, warn, error")
	fs.StringVar((*string)(&cfg.Runtime), "runtime", string(cfg.Runtime), "container runtime: auto, docker, process")
	fs.StringVar(&cfg.AgentImage, "agent-image", cfg.AgentImage, "image for user containers (default: built locally from --agent-binary)")
	fs.StringVar(&cfg.AgentBinary, "agent-binary", cfg.AgentBinary, "ocmt binary run in user containers (default: this executable)")
	fs.StringVar(&cfg.Network, "network", cfg.Network, "docker bridge network for user containers")
	fs.Int64Var(&cfg.MemoryMiB, "memory-mib", cfg.MemoryMiB, "memory limit per user container, MiB")
	fs.Var(&cpusValue{&cfg.NanoCPUs}, "cpus", "CPU limit per user container (e.g. 0.5)")
	fs.Int64Var(&cfg.PidsLimit, "pids-limit", cfg.PidsLimit, "process limit per user container")
	fs.DurationVar(&cfg.IdlePauseAfter, "idle-pause-after", cfg.IdlePauseAfter, "pause a container after this long without activity (0 = never)")
	fs.DurationVar(&cfg.PausedStopAfter, "paused-stop-after", cfg.PausedStopAfter, "stop a container after this long paused (0 = never)")
	fs.DurationVar(&cfg.WakeTimeout, "wake-timeout", cfg.WakeTimeout, "how long a request waits for its container to wake")
	fs.IntVar(&cfg.RelayPort, "relay-port", cfg.RelayPort, "port of the relay listener user containers reach on the agent network's gateway (0 = any)")
	fs.Var(&cfg.AllowPrivateTargets, "allow-private-targets", "let shared resources reach loopback and private network addresses: true (SSRF guard off) or only these CIDR prefixes, e.g. 192.168.1.0/24,10.0.0.7")
	fs.Lookup("allow-private-targets").NoOptDefVal = "true"
	fs.BoolVar(&cfg.HibernateUnlocked, "hibernate-unlocked", cfg.HibernateUnlocked, "a vault unlocked when its container is stopped for hibernation is unlocked again on wake, until its auto-lock time (false = a stop locks it)")
	fs.StringVar(&cfg.RelayURL, "relay-url", cfg.RelayURL, "relay WebSocket URL: --role=agent gives it to containers (relay run elsewhere); --role=vault dials it (set by the agent role)")
	fs.StringVar(&cfg.AgentURL, "agent-url", cfg.AgentURL, "agent role URL, for --role=management (and --role=relay, to wake recipients)")
	fs.StringVar(&cfg.ManagementURL, "management-url", cfg.ManagementURL, "management role URL, for --role=relay (key directory)")
	fs.StringVar(&cfg.ServiceSecret, "service-secret", cfg.ServiceSecret, "secret shared by split management and agent roles")
	fs.StringVar(&cfg.VaultSecret, "vault-secret", cfg.VaultSecret, "per-container secret, for --role=vault")
	fs.StringVar(&cfg.VaultUser, "vault-user", cfg.VaultUser, "owner's user id, for --role=vault")
	fs.DurationVar(&cfg.VaultAutoLock, "vault-auto-lock", cfg.VaultAutoLock, "lock a vault after this long unused (wall clock)")
	fs.StringVar(&cfg.SMTPHost, "smtp-host", cfg.SMTPHost, "SMTP server for sign-in mail (default: print links on the console)")
	fs.IntVar(&cfg.SMTPPort, "smtp-port", cfg.SMTPPort, "SMTP port")
	fs.StringVar(&cfg.SMTPUsername, "smtp-username", cfg.SMTPUsername, "SMTP user name")
	fs.StringVar(&cfg.SMTPPassword, "smtp-password", cfg.SMTPPassword, "SMTP password")
	fs.StringVar(&cfg.SMTPTLS, "smtp-tls", cfg.SMTPTLS, "SMTP transport security: starttls, tls, none")
	fs.StringVar(&cfg.SMTPCAFile, "smtp-ca-file", cfg.SMTPCAFile, "PEM file of CA certificates trusted (besides the system roots) to verify the SMTP server")
	fs.BoolVar(&cfg.SMTPTLSInsecure, "smtp-tls-insecure", cfg.SMTPTLSInsecure, "do not verify the SMTP server's certificate (tests only: anyone on the path can read sign-in links)")
	fs.StringVar(&cfg.MailFrom, "mail-from", cfg.MailFrom, "From address of ocmt's mail (sign-in links, invitations, share notices)")
	fs.DurationVar(&cfg.SessionTTL, "session-ttl", cfg.SessionTTL, "how long a sign-in lasts")
}

// secretFlags may also be read from a file named by OCMT_<NAME>_FILE.
var secretFlags = map[string]bool{"vault-secret": true, "service-secret": true, "smtp-password": true}

// EnvName returns the environment variable for a flag: "data-dir" → "OCMT_DATA_DIR".
func EnvName(flag string) string {
	return "OCMT_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable (or, for secrets, the file its _FILE variable names).
func applyEnv(fs *pflag.FlagSet, getenv func(string) string) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := EnvName(f.Name)
		v, from := getenv(name), name
		if secretFlags[f.Name] && v == "" {
			if path := getenv(name + "_FILE"); path != "" {
				b, rerr := os.ReadFile(path)
				if rerr != nil {
					err = fmt.Errorf("%s_FILE: cannot read %s", name, path)
					return
				}
				v, from = strings.TrimSpace(string(b)), name+"_FILE"
			}
		}
		if v == "" {
			return
		}
		if serr := f.Value.Set(v); serr != nil {
			err = fmt.Errorf("%s: %q is not %s (--%s: %s)", from, v, kindOf(f), f.Name, f.Usage)
		}
	})
	return err
}

// kindOf describes what a flag accepts, for error messages.
func kindOf(f *pflag.Flag) string {
	switch f.Value.Type() {
	case "duration":
		return "a duration (examples: 90s, 30m, 4h)"
	case "int", "int64":
		return "a whole number"
	case "float":
		return "a positive number"
	case "stringSlice":
		return "a comma-separated list"
	case "true|false|CIDRs":
		return "true, false or a comma-separated list of CIDR prefixes (e.g. 192.168.1.0/24)"
	}
	return "a valid value"
}

// flagError rewrites pflag's parse errors ("invalid argument "x" for
// "--memory-mib" flag: strconv.ParseInt: ...") into one plain line.
//
// An unknown flag ("unknown flag: --port") names the closest known one
// (closestFlag): "unknown flag --port; did you mean --listen?".
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if near := closestFlag(cmd.Flags(), name); near != "" {
			return fmt.Errorf("unknown flag --%s; did you mean --%s?", name, near)
		}
		return fmt.Errorf("unknown flag --%s (ocmt %s --help lists the flags)", name, cmd.Name())
	}
	if !strings.HasPrefix(msg, "invalid argument ") {
		return err
	}
	i := strings.Index(msg, `" for "`)
	j := strings.Index(msg, `" flag`)
	if i < 0 || j < i {
		return err
	}
	name := strings.TrimLeft(msg[i+len(`" for "`):j], "-")
	if k := strings.LastIndex(name, " --"); k >= 0 { // "-x, --name"
		name = name[k+3:]
	}
	value := strings.TrimPrefix(msg[:i], `invalid argument "`)
	if f := cmd.Flags().Lookup(name); f != nil {
		return fmt.Errorf("--%s: %q is not %s", name, value, kindOf(f))
	}
	return err
}

// flagAliases maps names people try, from other servers' command lines,
// to ocmt's flag for the same thing.
var flagAliases = map[string]string{
	"port": "listen", "addr": "listen", "address": "listen", "bind": "listen", "host": "listen",
	"data": "data-dir", "datadir": "data-dir", "dir": "data-dir", "state-dir": "data-dir",
	"url": "public-url", "base-url": "public-url", "external-url": "public-url",
	"image": "agent-image", "debug": "log-level", "verbose": "log-level",
}

// closestFlag returns the flag of fs that the unknown name most likely
// meant: its alias (flagAliases), else the one flag it is a prefix of
// ("data" → "data-dir"), else the nearest by edit distance if at most 2
// edits away ("relay-prot" → "relay-port"); "" when none is close.
// Hidden flags are never suggested.
func closestFlag(fs *pflag.FlagSet, name string) string {
	name = strings.ToLower(name)
	usable := func(n string) bool { f := fs.Lookup(n); return f != nil && !f.Hidden }
	if a, ok := flagAliases[name]; ok && usable(a) {
		return a
	}
	var prefixed []string
	best, bestD := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden {
			return
		}
		if strings.HasPrefix(f.Name, name) {
			prefixed = append(prefixed, f.Name)
		}
		if d := editDistance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	if len(prefixed) == 1 && best == "" {
		return prefixed[0]
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// loadConfig applies the environment to the flags not given and validates.
func loadConfig(cmd *cobra.Command, cfg *config.Config) error {
	if err := applyEnv(cmd.Flags(), os.Getenv); err != nil {
		return err
	}
	return cfg.Validate()
}

type cpusValue struct{ nano *int64 }

func (c *cpusValue) String() string {
	if c.nano == nil {
		return ""
	}
	return strconv.FormatFloat(float64(*c.nano)/1e9, 'f', -1, 64)
}
func (c *cpusValue) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 1024 {
		return errors.New("not a positive number of CPUs")
	}
	*c.nano = int64(f * 1e9)
	return nil
}
func (c *cpusValue) Type() string { return "float" }

func newServe() *cobra.Command {
	cfg := config.Default()
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run one role (default: all roles in one process)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := loadConfig(cmd, &cfg); err != nil {
				return err
			}
			if err := cfg.CheckDataDir(); err != nil {
				return err
			}
			log := cfg.Logger(cmd.ErrOrStderr())
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return roles.Run(ctx, cfg, roles.Options{Log: log, Out: cmd.OutOrStdout()})
		},
	}
	bindFlags(cmd.Flags(), &cfg)
	return cmd
}

func newAudit() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Work with the audit log"}
	cfg := config.Default()
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Check the audit log's hash chain; exits non-zero if any row was edited, deleted or reordered",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags(), os.Getenv); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			n, err := roles.VerifyAudit(ctx, cfg.DataDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "audit log ok: %d rows, chain intact\n", n)
			return nil
		},
	}
	verify.Flags().StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data directory holding ocmt.db")
	cmd.AddCommand(verify)
	return cmd
}
