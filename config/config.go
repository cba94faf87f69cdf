// Package config holds ocmt's one Config struct: every setting a role reads,
// with its default, its flag name and its OCMT_<NAME> environment variable.
//
// A Config is loaded once at start (see [Config.Validate]) and passed down;
// nothing in ocmt reads the environment or a global after that.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Role names one job of the ocmt binary (SPEC §2).
type Role string

// The roles. RoleAll runs management, agent and relay in one process.
const (
	RoleAll        Role = "all"
	RoleManagement Role = "management"
	RoleAgent      Role = "agent"
	RoleRelay      Role = "relay"
	RoleVault      Role = "vault"
)

// Roles lists the accepted --role values, in the order shown to users.
var Roles = []Role{RoleAll, RoleManagement, RoleAgent, RoleRelay, RoleVault}

// Runtime names a container runtime driver of the agent role.
type Runtime string

// The runtimes. RuntimeAuto picks docker when an engine answers, else process.
const (
	RuntimeAuto    Runtime = "auto"
	RuntimeDocker  Runtime = "docker"
	RuntimeProcess Runtime = "process"
)

// Runtimes lists the accepted --runtime values.
var Runtimes = []Runtime{RuntimeAuto, RuntimeDocker, RuntimeProcess}

// Defaults. Durations are Go durations; sizes carry their unit in the name.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultIdlePauseAfter  = 30 * time.Minute
	DefaultPausedStopAfter = 4 * time.Hour
	DefaultWakeTimeout     = 60 * time.Second
	DefaultMemoryMiB       = 256
	DefaultNanoCPUs        = 1_000_000_000 // one CPU
	DefaultPidsLimit       = 256
	DefaultNetwork         = "ocmt-agents"
	DefaultSessionTTL      = 7 * 24 * time.Hour
	DefaultMagicLinkTTL    = 15 * time.Minute
	DefaultMailFrom        = "ocmt <ocmt@localhost>"
	DefaultSMTPPort        = 587
	DefaultVaultAutoLock   = 30 * time.Minute
	DefaultRelayPort       = 8091
)

// LogFormat names the format of ocmt's log lines.
type LogFormat string

// The log formats: logfmt-style key=value text, or one JSON object a line.
const (
	LogText LogFormat = "text"
	LogJSON LogFormat = "json"
)

// LogFormats lists the accepted --log-format values.
var LogFormats = []LogFormat{LogText, LogJSON}

// LogLevel names the lowest level logged.
type LogLevel string

// The log levels. Debug adds, among others, the access log lines of
// probes and scrapes (/livez, /readyz, /healthz, /metrics).
const (
	LogDebug LogLevel = "debug"
	LogInfo  LogLevel = "info"
	LogWarn  LogLevel = "warn"
	LogError LogLevel = "error"
)

// LogLevels lists the accepted --log-level values.
var LogLevels = []LogLevel{LogDebug, LogInfo, LogWarn, LogError}

// Config is every setting of every role. The zero value is not usable; start
// from [Default] and then apply flags and environment.
type Config struct {
	Role      Role
	Listen    string // host:port
	DataDir   string // directory for the SQLite database, keys and per-user data
	PublicURL string // base URL users open, e.g. "https://ocmt.example.org"; "" = http://<Listen>
	// TrustedProxies are CIDRs whose X-Forwarded-For is believed (a reverse
	// proxy in front of ocmt); empty = use the connection's address.
	TrustedProxies []string
	// MetricsListen is the host:port of a second listener serving only
	// /metrics, /livez and /readyz (Prometheus); "" = no metrics endpoint.
	// Never the public listener: it may be scraped without a sign-in.
	MetricsListen string
	LogFormat     LogFormat // text or json
	LogLevel      LogLevel  // debug, info, warn or error

	// Agent role.
	Runtime         Runtime
	AgentImage      string        // operator-chosen image; "" = build one from AgentBinary
	AgentBinary     string        // binary put into agent images and run by the process driver; "" = this executable
	Network         string        // docker bridge network for user containers
	MemoryMiB       int64         // per-container memory limit, MiB
	NanoCPUs        int64         // per-container CPU limit, 1e-9 CPUs
	PidsLimit       int64         // per-container process limit
	IdlePauseAfter  time.Duration // pause a running container after this long without activity; 0 = never
	PausedStopAfter time.Duration // stop a paused container after this long paused; 0 = never
	WakeTimeout     time.Duration // how long a proxied request waits for its container to wake
	// RelayPort is the port of the relay listener on the agent network's
	// gateway, the only host address user containers reach (docker
	// runtime); 0 = any free port.
	RelayPort int
	// RelayURL is the relay WebSocket URL a vault connects to (set by the
	// agent role for each container; "" = no relay).
	RelayURL string
	// AllowPrivateTargets lets shared resources reach loopback and private
	// addresses (SPEC §7.3 SSRF guard): all of them, or listed prefixes;
	// none by default.
	AllowPrivateTargets PrivateTargets
	// HibernateUnlocked keeps a vault that is unlocked when its container
	// is stopped for hibernation unlocked after the next wake, until its own
	// auto-lock time; the key for that is held only in the agent role's
	// memory. false = stopping a container locks its vault.
	HibernateUnlocked bool

	// Service-to-service.
	AgentURL      string // management or relay → agent base URL in split mode; "" in all mode
	ManagementURL string // relay → management base URL (key directory) when the relay runs alone
	ServiceSecret string // shared by management and agent roles in split mode

	// Vault role.
	VaultSecret   string        // per-container secret the proxy presents; required for --role=vault
	VaultUser     string        // owner's user id (set by the agent role)
	VaultAutoLock time.Duration // lock the vault after this long unused

	// Management role.
	SMTPHost     string // "" = console mailer
	SMTPPort     int
	SMTPUsername string
	SMTPPassword string
	SMTPTLS      string // "starttls" (default), "tls" or "none"
	// SMTPCAFile, if set, is a PEM file of CA certificates trusted (besides
	// the system roots) to verify the SMTP server.
	SMTPCAFile string
	// SMTPTLSInsecure skips verifying the SMTP server's certificate: for
	// tests only (anyone on the path can read the mail, sign-in links
	// included).
	SMTPTLSInsecure bool
	MailFrom        string
	SessionTTL      time.Duration
	MagicLinkTTL    time.Duration
}

// Default returns the embedded default configuration: role all, loopback
// listener, data in the user's data directory, automatic runtime.
func Default() Config {
	return Config{
		Role:              RoleAll,
		Listen:            DefaultListen,
		LogFormat:         LogText,
		LogLevel:          LogInfo,
		DataDir:           defaultDataDir(),
		Runtime:           RuntimeAuto,
		Network:           DefaultNetwork,
		MemoryMiB:         DefaultMemoryMiB,
		NanoCPUs:          DefaultNanoCPUs,
		PidsLimit:         DefaultPidsLimit,
		IdlePauseAfter:    DefaultIdlePauseAfter,
		PausedStopAfter:   DefaultPausedStopAfter,
		WakeTimeout:       DefaultWakeTimeout,
		SMTPPort:          DefaultSMTPPort,
		SMTPTLS:           "starttls",
		MailFrom:          DefaultMailFrom,
		SessionTTL:        DefaultSessionTTL,
		MagicLinkTTL:      DefaultMagicLinkTTL,
		VaultAutoLock:     DefaultVaultAutoLock,
		RelayPort:         DefaultRelayPort,
		HibernateUnlocked: true,
	}
}

func defaultDataDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "ocmt")
	}
	if h, err := os.UserHomeDir(); err == nil {
		return filepath.Join(h, ".local", "share", "ocmt")
	}
	return "ocmt-data"
}

// Error is a configuration problem, naming the setting and what it accepts.
type Error struct {
	Setting string // flag name, e.g. "role"
	Msg     string
}

func (e *Error) Error() string { return fmt.Sprintf("--%s: %s", e.Setting, e.Msg) }

func bad(setting, format string, args ...any) error {
	return &Error{Setting: setting, Msg: fmt.Sprintf(format, args...)}
}

// Has reports whether the config runs role r (directly or through "all").
func (c *Config) Has(r Role) bool {
	if c.Role == r {
		return true
	}
	return c.Role == RoleAll && (r == RoleManagement || r == RoleAgent || r == RoleRelay)
}

// Validate checks every setting and fills derived defaults (PublicURL).
// It returns an *Error naming the first bad setting.
func (c *Config) Validate() error {
	var errs []error
	if !oneOf(c.Role, Roles) {
		errs = append(errs, bad("role", "unknown role %q; accepted: %s", c.Role, join(Roles)))
	}
	if !oneOf(c.Runtime, Runtimes) {
		errs = append(errs, bad("runtime", "unknown runtime %q; accepted: %s", c.Runtime, join(Runtimes)))
	}
	if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
		errs = append(errs, bad("listen", "%q is not host:port (example: 127.0.0.1:8080)", c.Listen))
	}
	if c.MetricsListen != "" {
		if _, port, err := net.SplitHostPort(c.MetricsListen); err != nil || port == "" {
			errs = append(errs, bad("metrics-listen", "%q is not host:port (example: 127.0.0.1:9464)", c.MetricsListen))
		} else if c.MetricsListen == c.Listen {
			errs = append(errs, bad("metrics-listen", "must differ from --listen (metrics stay off the public listener)"))
		}
	}
	if !oneOf(c.LogFormat, LogFormats) {
		errs = append(errs, bad("log-format", "unknown format %q; accepted: %s", c.LogFormat, join(LogFormats)))
	}
	if !oneOf(c.LogLevel, LogLevels) {
		errs = append(errs, bad("log-level", "unknown level %q; accepted: %s", c.LogLevel, join(LogLevels)))
	}
	if c.DataDir == "" {
		errs = append(errs, bad("data-dir", "must not be empty"))
	}
	if c.PublicURL == "" {
		host, port, _ := net.SplitHostPort(c.Listen)
		if host == "" || host == "0.0.0.0" || host == "::" {
			host = "127.0.0.1"
		}
		c.PublicURL = "http://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, bad("public-url", "%q is not an http(s) URL", c.PublicURL))
	} else {
		c.PublicURL = u.Scheme + c.PublicURL[len(u.Scheme):] // "HTTPS://…" is https too (Secure)
	}
	c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	for _, p := range c.TrustedProxies {
		if _, _, err := net.ParseCIDR(p); err != nil {
			errs = append(errs, bad("trusted-proxies", "%q is not a CIDR (example: 127.0.0.1/32)", p))
		}
	}
	if c.SessionTTL < time.Minute {
		errs = append(errs, bad("session-ttl", "must be at least 1m"))
	}
	if c.MagicLinkTTL <= 0 {
		errs = append(errs, bad("magic-link-ttl", "must be positive"))
	}
	if c.MemoryMiB < 16 {
		errs = append(errs, bad("memory-mib", "must be at least 16"))
	}
	if c.NanoCPUs < 10_000_000 {
		errs = append(errs, bad("cpus", "must be at least 0.01"))
	}
	if c.PidsLimit < 16 {
		errs = append(errs, bad("pids-limit", "must be at least 16"))
	}
	if c.IdlePauseAfter < 0 || c.PausedStopAfter < 0 {
		errs = append(errs, bad("idle-pause-after", "durations must not be negative"))
	}
	if c.RelayPort < 0 || c.RelayPort > 65535 {
		errs = append(errs, bad("relay-port", "must be a port number (0 = any free port)"))
	}
	if c.VaultAutoLock < time.Minute || c.VaultAutoLock > 24*time.Hour {
		errs = append(errs, bad("vault-auto-lock", "must be between 1m and 24h"))
	}
	if c.WakeTimeout <= 0 {
		errs = append(errs, bad("wake-timeout", "must be positive"))
	}
	switch c.SMTPTLS {
	case "starttls", "tls", "none":
	default:
		errs = append(errs, bad("smtp-tls", "unknown mode %q; accepted: starttls, tls, none", c.SMTPTLS))
	}
	if c.SMTPTLS == "none" && c.SMTPUsername != "" {
		errs = append(errs, bad("smtp-username", "SMTP AUTH needs --smtp-tls=starttls or tls (the password is never sent in clear)"))
	}
	if c.SMTPPort < 1 || c.SMTPPort > 65535 {
		errs = append(errs, bad("smtp-port", "must be a port number, 1 to 65535 (usually 587 for starttls, 465 for tls)"))
	}
	if c.SMTPCAFile != "" {
		if b, err := os.ReadFile(c.SMTPCAFile); err != nil {
			errs = append(errs, bad("smtp-ca-file", "cannot read %s: %v", c.SMTPCAFile, errors.Unwrap(err)))
		} else if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
			errs = append(errs, bad("smtp-ca-file", "%s holds no PEM certificate", c.SMTPCAFile))
		}
	}
	if _, err := mail.ParseAddress(c.MailFrom); err != nil {
		errs = append(errs, bad("mail-from", "not an address like \"ocmt <ocmt@example.org>\""))
	}
	if c.Role == RoleVault && len(c.VaultSecret) < 16 {
		errs = append(errs, bad("vault-secret", "the vault role needs a per-container secret of at least 16 characters (OCMT_VAULT_SECRET or OCMT_VAULT_SECRET_FILE)"))
	}
	if c.Role == RoleManagement && c.AgentURL == "" {
		errs = append(errs, bad("agent-url", "the management role alone needs the agent role's URL"))
	}
	if c.Role == RoleRelay && c.ManagementURL == "" {
		errs = append(errs, bad("management-url", "the relay role alone needs the management role's URL (for the key directory)"))
	}
	if (c.Role == RoleManagement || c.Role == RoleAgent || c.Role == RoleRelay) && len(c.ServiceSecret) < 16 {
		errs = append(errs, bad("service-secret", "split roles need a shared service secret of at least 16 characters (OCMT_SERVICE_SECRET or OCMT_SERVICE_SECRET_FILE)"))
	}
	if c.AgentURL != "" {
		if u, err := url.Parse(c.AgentURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, bad("agent-url", "%q is not an http(s) URL", c.AgentURL))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Logger returns the slog.Logger LogFormat and LogLevel ask for, writing
// to w. Validate must have passed (an unknown format gives text, an
// unknown level info).
func (c *Config) Logger(w io.Writer) *slog.Logger {
	lvl := slog.LevelInfo
	switch c.LogLevel {
	case LogDebug:
		lvl = slog.LevelDebug
	case LogWarn:
		lvl = slog.LevelWarn
	case LogError:
		lvl = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if c.LogFormat == LogJSON {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// TrustedProxyNets parses TrustedProxies (Validate has checked them).
func (c *Config) TrustedProxyNets() []*net.IPNet {
	var out []*net.IPNet
	for _, p := range c.TrustedProxies {
		if _, n, err := net.ParseCIDR(p); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// Secure reports whether the public URL is https (cookies get Secure, HSTS is sent).
func (c *Config) Secure() bool { return strings.HasPrefix(c.PublicURL, "https://") }

// CheckDataDir creates the data directory (0700) and proves it is writable.
func (c *Config) CheckDataDir() error {
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return bad("data-dir", "cannot create %s: %v", c.DataDir, errors.Unwrap(err))
	}
	f, err := os.CreateTemp(c.DataDir, ".write-check-*")
	if err != nil {
		return bad("data-dir", "%s is not writable", c.DataDir)
	}
	name := f.Name()
	f.Close()
	os.Remove(name)
	return nil
}

func oneOf[T comparable](v T, set []T) bool {
	for _, s := range set {
		if v == s {
			return true
		}
	}
	return false
}

func join[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
