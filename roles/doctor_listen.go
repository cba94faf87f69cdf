package roles

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ocmt/ocmt/api"
	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/datadir"
)

// probeTimeout bounds doctor's GET /healthz to a taken listen address.
const probeTimeout = 2 * time.Second

// listenCheck is doctor's "listen address" line: cfg.Listen is free, or it
// is taken by the ocmt holding the data directory (OK: that is this
// instance, running), by another running ocmt (named with its version, as
// its GET /healthz answers, and its pid), or by another program (its pid
// and command name when /proc tells them).
func listenCheck(ctx context.Context, cfg config.Config, holder datadir.Holder, held bool) Check {
	lc := Check{Name: "listen address"}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err == nil {
		ln.Close()
		lc.OK, lc.Detail = true, cfg.Listen+" is free"
		return lc
	}
	if held && holder.Listen == cfg.Listen {
		lc.OK, lc.Detail = true, fmt.Sprintf("%s is in use by the ocmt holding the data directory (%s)", cfg.Listen, holder)
		return lc
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		lc.Detail = fmt.Sprintf("%s is not free: %v", cfg.Listen, err)
		return lc
	}
	who := ""
	_, port, _ := net.SplitHostPort(cfg.Listen)
	if n, perr := strconv.Atoi(port); perr == nil {
		if pid, name := portOwner(n); pid != 0 {
			who = " (pid " + strconv.Itoa(pid)
			if name != "" {
				who += ", " + name
			}
			who += ")"
		}
	}
	if h, ok := probeOcmt(ctx, cfg.Listen); ok {
		lc.Detail = fmt.Sprintf("%s is held by a running ocmt %s%s with another data directory; stop it, or give this one "+
			"another --listen (a second ocmt on one host also needs its own --data-dir, --relay-port and --network)",
			cfg.Listen, h.Version, who)
		return lc
	}
	lc.Detail = fmt.Sprintf("%s is held by another program%s, not an ocmt; stop it or pick another --listen", cfg.Listen, who)
	return lc
}

// probeOcmt asks addr (host:port; an empty or unspecified host means this
// machine) for GET /healthz and reports whether an ocmt answered, with its
// api.Health.
func probeOcmt(ctx context.Context, addr string) (api.Health, bool) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return api.Health{}, false
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return api.Health{}, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return api.Health{}, false
	}
	defer resp.Body.Close()
	var h api.Health
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&h) != nil ||
		h.Version == "" || len(h.Roles) == 0 {
		return api.Health{}, false
	}
	return h, true
}

// portOwner returns the pid and command name of the process listening on
// TCP port, from /proc (Linux; it sees other users' processes only as
// root), or 0 and "" when it cannot tell.
func portOwner(port int) (pid int, name string) {
	inodes := map[string]bool{}
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) > 9 && fs[3] == "0A" && strings.HasSuffix(fs[1], want) { // 0A = LISTEN
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
		fh.Close()
	}
	if len(inodes) == 0 {
		return 0, ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		fds, _ := os.ReadDir(filepath.Join(p, "fd"))
		for _, fd := range fds {
			if link, err := os.Readlink(filepath.Join(p, "fd", fd.Name())); err == nil && inodes[link] {
				pid, _ = strconv.Atoi(filepath.Base(p))
				comm, _ := os.ReadFile(filepath.Join(p, "comm"))
				return pid, strings.TrimSpace(string(comm))
			}
		}
	}
	return 0, ""
}
