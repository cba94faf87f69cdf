package cli

import (
	"bytes"
	"context"
	"database/sql"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/datadir"
	"github.com/ocmt/ocmt/store"
	"github.com/spf13/pflag"
)

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
	var out, errb bytes.Buffer
	code := Main(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestServeRejectsBadConfig(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, nil, 0o600)
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"unknown role", nil, []string{"serve", "--role=boss"}, "accepted: all, management, agent, relay, vault"},
		{"unknown role from env", map[string]string{"OCMT_ROLE": "boss"}, []string{"serve"}, "--role: unknown role"},
		{"bad runtime", nil, []string{"serve", "--runtime=kvm"}, "accepted: auto, docker, process"},
		{"bad duration", nil, []string{"serve", "--idle-pause-after=soon"}, `--idle-pause-after: "soon" is not a duration`},
		{"bad number", nil, []string{"serve", "--memory-mib=abc"}, `--memory-mib: "abc" is not a whole number`},
		{"bad duration from env", map[string]string{"OCMT_IDLE_PAUSE_AFTER": "soon"}, []string{"serve"}, `OCMT_IDLE_PAUSE_AFTER: "soon" is not a duration`},
		{"zero session ttl", nil, []string{"serve", "--session-ttl=0"}, "--session-ttl: must be at least 1m"},
		{"bad proxy cidr", nil, []string{"serve", "--trusted-proxies=10.0.0.1"}, "--trusted-proxies"},
		{"bad listen", nil, []string{"serve", "--listen=nowhere"}, "--listen"},
		{"unwritable data dir", nil, []string{"serve", "--data-dir=" + filepath.Join(notDir, "sub")}, "--data-dir"},
		{"vault without secret", nil, []string{"serve", "--role=vault"}, "--vault-secret"},
		{"management without agent url", nil, []string{"serve", "--role=management", "--service-secret=0123456789abcdef"}, "--agent-url"},
		{"relay without management url", nil, []string{"serve", "--role=relay", "--service-secret=0123456789abcdef"}, "--management-url"},
		{"bad log format", nil, []string{"serve", "--log-format=xml"}, "--log-format: unknown format \"xml\"; accepted: text, json"},
		{"bad log level from env", map[string]string{"OCMT_LOG_LEVEL": "loud"}, []string{"serve"}, "--log-level: unknown level \"loud\"; accepted: debug, info, warn, error"},
		{"bad metrics listen", nil, []string{"serve", "--metrics-listen=9464"}, "--metrics-listen"},
		{"metrics on the public listener", nil, []string{"serve", "--listen=127.0.0.1:8080", "--metrics-listen=127.0.0.1:8080"}, "--metrics-listen: must differ from --listen"},
		{"unknown flag", nil, []string{"serve", "--colour=blue"}, "unknown flag"},
		{"bad private target", nil, []string{"serve", "--allow-private-targets=10.0.0.0/33"}, `--allow-private-targets: "10.0.0.0/33" is not true, false or a comma-separated list of CIDR prefixes`},
		{"bad private target from env", map[string]string{"OCMT_ALLOW_PRIVATE_TARGETS": "the lan"}, []string{"serve"}, "OCMT_ALLOW_PRIVATE_TARGETS"},
		{"smtp auth in clear", nil, []string{"serve", "--smtp-host=mail.example.org", "--smtp-tls=none", "--smtp-username=u"}, "--smtp-username: SMTP AUTH needs --smtp-tls=starttls or tls"},
		{"smtp port too big", nil, []string{"serve", "--smtp-port=99999"}, "--smtp-port: must be a port number, 1 to 65535"},
		{"smtp port zero", nil, []string{"serve", "--smtp-port=0"}, "--smtp-port: must be a port number"},
		{"missing smtp ca file", nil, []string{"serve", "--smtp-ca-file=/nonexistent/ca.pem"}, "--smtp-ca-file: cannot read"},
		{"smtp ca file without PEM", nil, []string{"serve", "--smtp-ca-file=" + notDir}, "--smtp-ca-file: " + notDir + " holds no PEM certificate"},
		{"bad mail from", map[string]string{"OCMT_MAIL_FROM": "ocmt at example"}, []string{"serve"}, "--mail-from: not an address"},
		{"missing secret file", map[string]string{"OCMT_VAULT_SECRET_FILE": "/nonexistent/secret"}, []string{"serve", "--role=vault"}, "OCMT_VAULT_SECRET_FILE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, tc.env, tc.args...)
			if code == 0 {
				t.Fatal("exit code 0")
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 1 || !strings.Contains(errOut, tc.want) {
				t.Fatalf("stderr = %q; want one line containing %q", errOut, tc.want)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := run(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "ocmt ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("idle-pause-after"); got != "OCMT_IDLE_PAUSE_AFTER" {
		t.Fatal(got)
	}
}

// TestAuditVerifyDetectsTampering edits, deletes and reorders rows behind the
// store's back and checks that `ocmt audit verify` fails each time.
func TestAuditVerifyDetectsTampering(t *testing.T) {
	tamper := map[string]string{
		"edit action":    `UPDATE audit_log SET action = 'auth.nothing' WHERE seq = 2`,
		"edit detail":    `UPDATE audit_log SET detail = '{"ip":"10.0.0.1"}' WHERE seq = 3`,
		"edit time":      `UPDATE audit_log SET ts = ts + 1 WHERE seq = 1`,
		"delete middle":  `DELETE FROM audit_log WHERE seq = 3`,
		"delete first":   `DELETE FROM audit_log WHERE seq = 1`,
		"delete last":    `DELETE FROM audit_log WHERE seq = 5`,
		"delete all":     `DELETE FROM audit_log`,
		"reorder":        `UPDATE audit_log SET actor = CASE seq WHEN 2 THEN (SELECT actor FROM audit_log WHERE seq = 4) ELSE (SELECT actor FROM audit_log WHERE seq = 2) END, action = CASE seq WHEN 2 THEN (SELECT action FROM audit_log WHERE seq = 4) ELSE (SELECT action FROM audit_log WHERE seq = 2) END WHERE seq IN (2, 4)`,
		"swap sequence":  `UPDATE audit_log SET seq = CASE seq WHEN 2 THEN 102 WHEN 4 THEN 2 END WHERE seq IN (2, 4); UPDATE audit_log SET seq = 4 WHERE seq = 102`,
		"rehash one row": `UPDATE audit_log SET action = 'x', hash = 'deadbeef' WHERE seq = 2`,
		"empty the log":  `DELETE FROM audit_log; DELETE FROM kv WHERE k = 'audit.head'`,
	}
	for name, q := range tamper {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			ctx := context.Background()
			st, err := store.Open(ctx, filepath.Join(dir, store.FileName), nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.CreateUser(ctx, "a@example.org", false); err != nil {
				t.Fatal(err)
			}
			for i, a := range []string{"auth.signin", "agent.provisioned", "auth.signout", "admin.invite", "agent.wake"} {
				if _, err := st.Audit(ctx, "usr_a", a, "usr_b", map[string]string{"n": string(rune('0' + i))}); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			if code, out, errOut := run(t, nil, "audit", "verify", "--data-dir", dir); code != 0 || !strings.Contains(out, "5 rows") {
				t.Fatalf("untouched log: %d %q %q", code, out, errOut)
			}
			db, err := sql.Open("sqlite3", filepath.Join(dir, store.FileName))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
			db.Close()
			code, _, errOut := run(t, nil, "audit", "verify", "--data-dir", dir)
			if code == 0 || !strings.Contains(errOut, "audit chain broken") {
				t.Fatalf("tampering (%s) not detected: exit %d, stderr %q", name, code, errOut)
			}
		})
	}
}

func TestDoctor(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := run(t, nil, "doctor", "--data-dir", dir, "--listen", "127.0.0.1:0", "--runtime", "process")
	if code != 0 {
		t.Fatalf("doctor: exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"container engine", "data directory", "agent image", "listen address", dir + " is writable"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	// A taken address is reported as a failure.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, out, _ = run(t, nil, "doctor", "--data-dir", dir, "--listen", ln.Addr().String(), "--runtime", "process")
	if code == 0 || !strings.Contains(out, "FAIL  listen address") {
		t.Errorf("doctor passed with a taken listen address:\n%s", out)
	}

	// A data directory held by a running ocmt: doctor names it, and the
	// address that ocmt listens on is not a failure.
	lock, err := datadir.Lock(dir, datadir.Holder{PID: 4242, Listen: ln.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	code, out, _ = run(t, nil, "doctor", "--data-dir", dir, "--listen", ln.Addr().String(), "--runtime", "process")
	for _, want := range []string{
		"is writable but readable by others (mode -rwxr-xr-x); chmod 700 it; in use by a running ocmt (pid 4242, listening on " + ln.Addr().String() + ")",
		"ok    listen address         " + ln.Addr().String() + " is in use by the ocmt holding the data directory (pid 4242, listening on " + ln.Addr().String() + ")",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("doctor: exit %d with the data directory held by a running ocmt:\n%s", code, out)
	}
}

// TestDoctorNoSocket: with DOCKER_HOST naming a socket that is not there,
// doctor says so (the image case: no socket mounted).
func TestDoctorNoSocket(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
	_, out, _ := run(t, nil, "doctor", "--data-dir", t.TempDir(), "--listen", "127.0.0.1:0")
	if want := "no engine answers (no Docker socket at /nonexistent/docker.sock; in a container, mount it with -v /var/run/docker.sock:/var/run/docker.sock)"; !strings.Contains(out, want) {
		t.Errorf("doctor output lacks %q:\n%s", want, out)
	}
}

// TestUnknownFlagSuggests: an unknown flag names the known one meant, by
// alias, by prefix or by a small typo; a name close to nothing gets none.
func TestUnknownFlagSuggests(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--port=8080"}, "unknown flag --port; did you mean --listen?"},
		{[]string{"doctor", "--port", "8080"}, "unknown flag --port; did you mean --listen?"},
		{[]string{"serve", "--data=/tmp/x"}, "unknown flag --data; did you mean --data-dir?"},
		{[]string{"serve", "--relay-prot=9000"}, "unknown flag --relay-prot; did you mean --relay-port?"},
		{[]string{"serve", "--netwrok=n"}, "unknown flag --netwrok; did you mean --network?"},
		{[]string{"audit", "verify", "--datadir=/tmp/x"}, "unknown flag --datadir; did you mean --data-dir?"},
		{[]string{"serve", "--colour=blue"}, "unknown flag --colour (ocmt serve --help lists the flags)"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errOut := run(t, nil, tc.args...)
			if code == 0 || strings.TrimSpace(errOut) != "ocmt: "+tc.want {
				t.Errorf("exit %d, stderr %q; want %q", code, errOut, tc.want)
			}
		})
	}
}

// readmeSection returns the text of the README section under heading,
// up to the next heading of any level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no %q section", heading)
	}
	if i := strings.Index(rest, "\n#"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// TestReadmeSecondInstance: the README's second-instance command names
// the flags a second ocmt on one host needs, and they parse (run through
// doctor, which takes the same flags).
func TestReadmeSecondInstance(t *testing.T) {
	sec := readmeSection(t, "### A second instance on one host")
	_, block, _ := strings.Cut(sec, "```sh\n")
	block, _, _ = strings.Cut(block, "```")
	args := strings.Fields(strings.ReplaceAll(block, "\\\n", " "))
	if len(args) < 2 || args[0] != "ocmt" || args[1] != "serve" {
		t.Fatalf("README second-instance command %q is not `ocmt serve …`", block)
	}
	for _, f := range []string{"--data-dir", "--listen", "--relay-port", "--network"} {
		if !slices.Contains(args, f) {
			t.Errorf("README second-instance command lacks %s", f)
		}
	}
	args = append([]string{"doctor"}, args[2:]...)
	_, out, errOut := run(t, nil, append(args, "--runtime", "process")...)
	if strings.Contains(errOut, "unknown flag") || !strings.Contains(out, "listen address") {
		t.Errorf("doctor %v: %s%s", args, out, errOut)
	}
}

// TestReadmeRestarts: the README says which vaults are unlocked after a
// restart of ocmt and why the others are locked (the behaviour
// e2e.TestConfigChangeDocker checks).
func TestReadmeRestarts(t *testing.T) {
	sec := strings.Join(strings.Fields(readmeSection(t, "### Restarts")), " ")
	for _, want := range []string{
		"a **running** or **paused** container keeps its vault in its own memory, so an unlocked vault is still unlocked",
		"**stopped** for hibernation before the restart comes up **locked**",
		"its hibernation key lived only in the old process's memory",
		"on the **process** runtime every agent ends with ocmt, so every vault is locked",
	} {
		if !strings.Contains(sec, want) {
			t.Errorf("README Restarts section lacks %q", want)
		}
	}
}

// TestAllowPrivateTargetsFlag: the bare flag turns the SSRF guard off (as
// when it was a boolean), a list allows those prefixes only, and the
// environment variable takes the same text.
func TestAllowPrivateTargetsFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  string
		want string
	}{
		{nil, "", "false"},
		{[]string{"--allow-private-targets"}, "", "true"},
		{[]string{"--allow-private-targets=false"}, "", "false"},
		{[]string{"--allow-private-targets=192.168.1.0/24,10.0.0.7"}, "", "192.168.1.0/24,10.0.0.7/32"},
		{nil, "fd00::/8", "fd00::/8"},
	} {
		cfg := config.Default()
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		bindFlags(fs, &cfg)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		if err := applyEnv(fs, func(k string) string {
			if k == "OCMT_ALLOW_PRIVATE_TARGETS" {
				return tc.env
			}
			return ""
		}); err != nil {
			t.Fatal(err)
		}
		if got := cfg.AllowPrivateTargets.String(); got != tc.want {
			t.Errorf("%v env %q: %s, want %s", tc.args, tc.env, got, tc.want)
		}
	}
}
