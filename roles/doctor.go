package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/datadir"
	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/roles/web"
	"github.com/ocmt/ocmt/store"
	"github.com/ocmt/ocmt/version"
)

// Check is one line of `ocmt doctor`.
type Check struct {
	Name   string
	OK     bool
	Warn   bool // not OK, but ocmt still works (e.g. the image is built on first use)
	Detail string
}

// Doctor checks this machine for cfg: container engine reachable and its
// version, data directory writable, agent image present, listen address free (or
// who holds it: listenCheck), reverse proxy set up.
func Doctor(ctx context.Context, cfg config.Config) []Check {
	var out []Check
	engine := Check{Name: "container engine"}
	ver, err := docker.Ping(ctx)
	switch {
	case err == nil:
		engine.OK, engine.Detail = true, "docker "+ver+" answers"
	case cfg.Runtime == config.RuntimeDocker:
		engine.Detail = "no engine answers: " + engineHint(err)
	default:
		engine.Warn, engine.Detail = true, "no engine answers ("+engineHint(err)+"); agents would run as processes (weaker isolation)"
	}
	out = append(out, engine)

	dd := Check{Name: "data directory"}
	if fi, err := os.Stat(cfg.DataDir); errors.Is(err, os.ErrNotExist) {
		dd.OK, dd.Detail = true, cfg.DataDir+" does not exist yet; serve creates it (0700)"
	} else if err != nil || !fi.IsDir() {
		dd.Detail = cfg.DataDir + " is not a usable directory"
	} else if err := cfg.CheckDataDir(); err != nil {
		dd.Detail = err.Error()
	} else if fi.Mode().Perm()&0o077 != 0 {
		dd.Warn, dd.Detail = true, fmt.Sprintf("%s is writable but readable by others (mode %v); chmod 700 it", cfg.DataDir, fi.Mode().Perm())
	} else {
		dd.OK, dd.Detail = true, cfg.DataDir+" is writable"
	}
	holder, held, herr := datadir.HolderOf(cfg.DataDir)
	held = held && herr == nil
	if held {
		dd.Detail += "; in use by a running ocmt"
		if who := holder.String(); who != "" {
			dd.Detail += " (" + who + ")"
		}
	}
	out = append(out, dd)

	img := Check{Name: "agent image"}
	switch {
	case cfg.Runtime == config.RuntimeProcess:
		img.OK, img.Detail = true, "not needed (process runtime)"
	case engine.OK:
		ref := cfg.AgentImage
		if ref == "" {
			bin, berr := agentBinary(cfg)
			if berr == nil {
				ref, berr = docker.ImageTag(bin, version.String())
			}
			if berr != nil {
				img.Detail = berr.Error()
				break
			}
		}
		cli, cerr := client.New(client.FromEnv)
		if cerr != nil {
			img.Detail = cerr.Error()
			break
		}
		defer cli.Close()
		if _, err := cli.ImageInspect(ctx, ref); err == nil {
			img.OK, img.Detail = true, ref+" is present"
		} else if cfg.AgentImage != "" {
			img.Detail = ref + " is missing (it was named with --agent-image, so it is not built)"
		} else {
			img.Warn, img.Detail = true, ref+" is missing; it is built on the first sign-in (about a few seconds)"
		}
	default:
		img.Warn, img.Detail = true, "skipped: no engine"
	}
	out = append(out, img)

	out = append(out, listenCheck(ctx, cfg, holder, held))
	return append(out, proxyChecks(ctx, cfg)...)
}

// proxyChecks are doctor's reverse proxy lines. ocmt serves no TLS itself,
// so an https public URL means a proxy in front: it should be listed in
// --trusted-proxies (else every user counts as the proxy's address in rate
// limits and audit), and what the running server saw of it
// (web.ProxyReport, read from the data directory without writing) should
// show no problem.
func proxyChecks(ctx context.Context, cfg config.Config) []Check {
	conf := Check{Name: "reverse proxy"}
	if !cfg.Secure() {
		conf.OK, conf.Detail = true, "public URL "+cfg.PublicURL+" is http: no TLS proxy expected"
		return []Check{conf}
	}
	if len(cfg.TrustedProxies) == 0 {
		conf.Warn, conf.Detail = true, "--public-url is https but --trusted-proxies is empty: ocmt serves no TLS itself, "+
			"so a proxy is in front, and every user counts as the proxy's address (one shared sign-in rate limit, "+
			"the proxy's address in the audit log); "+web.ProxyFix(web.ProxyUntrustedPeer)
	} else if wide := wideProxyNets(cfg); len(wide) > 0 {
		conf.Warn, conf.Detail = true, "--trusted-proxies "+strings.Join(wide, ", ")+" trusts far more than a proxy: "+
			"every client in it can write its own X-Forwarded-For and pick the address ocmt rate-limits and audits; "+
			"list only the proxy's own address (e.g. 127.0.0.1/32 for a proxy on this machine)"
	} else {
		conf.OK, conf.Detail = true, "https through proxies at "+strings.Join(cfg.TrustedProxies, ", ")
	}
	seen := Check{Name: "proxied requests"}
	path := filepath.Join(cfg.DataDir, store.FileName)
	if _, err := os.Stat(path); err != nil {
		seen.OK, seen.Detail = true, "nothing seen yet: ocmt has not run with this data directory"
		return []Check{conf, seen}
	}
	st, err := store.OpenReadOnly(ctx, path)
	if err != nil {
		seen.Warn, seen.Detail = true, "cannot read what the server saw: "+err.Error()
		return []Check{conf, seen}
	}
	defer st.Close()
	b, err := st.GetKV(ctx, web.ProxyReportKey)
	switch {
	case errors.Is(err, store.ErrNotFound):
		seen.OK, seen.Detail = true, "no request came past the proxy or without its headers since ocmt last started"
		return []Check{conf, seen}
	case err != nil:
		seen.Warn, seen.Detail = true, "cannot read what the server saw: "+err.Error()
		return []Check{conf, seen}
	}
	rep, err := web.ParseProxyReport(b)
	if err != nil {
		seen.Warn, seen.Detail = true, "the server's reverse proxy report is unreadable; it is rewritten when ocmt runs"
		return []Check{conf, seen}
	}
	seen.Warn, seen.Detail = true, describeProxyReport(rep)
	if seen.Detail == "" {
		seen.Warn, seen.OK, seen.Detail = false, true, "no request came past the proxy or without its headers since ocmt last started"
	}
	return []Check{conf, seen}
}

// describeProxyReport says what went wrong in rep, one clause per problem
// with its fix, or "" when nothing did.
func describeProxyReport(rep web.ProxyReport) string {
	var parts []string
	at := func(ms int64) string { return time.UnixMilli(ms).UTC().Format("2006-01-02 15:04 UTC") }
	for _, p := range web.ProxyProblems {
		s := rep.Problems[p]
		if s == nil || s.Count == 0 {
			continue
		}
		what := map[web.ProxyProblem]string{
			web.ProxyUntrustedPeer:    "came from a peer outside --trusted-proxies",
			web.ProxyNoForwardedProto: "came from a trusted proxy without X-Forwarded-Proto",
			web.ProxyPlainHTTP:        "came through the proxy over plain http",
		}[p]
		parts = append(parts, fmt.Sprintf("%d request(s) %s (%s address; last %s): %s", s.Count, what,
			strings.Join(s.Peers, "/"), at(s.LastMS), web.ProxyFix(p)))
	}
	if len(parts) == 0 {
		return ""
	}
	trusted := "none"
	if len(rep.TrustedProxies) > 0 {
		trusted = strings.Join(rep.TrustedProxies, ",")
	}
	return fmt.Sprintf("since ocmt started at %s with --public-url %s and --trusted-proxies %s, %s "+
		"(a running ocmt saves these counts at most once a minute, and at shutdown)",
		at(rep.SinceMS), rep.PublicURL, trusted, strings.Join(parts, "; "))
}

// wideProxyNets returns the --trusted-proxies CIDRs wider than a proxy
// needs: shorter than /16 for IPv4 (65,536 addresses) or /48 for IPv6,
// which includes 0.0.0.0/0 and ::/0 (everyone).
func wideProxyNets(cfg config.Config) []string {
	var wide []string
	for _, n := range cfg.TrustedProxyNets() {
		ones, bits := n.Mask.Size()
		if (bits == 32 && ones < 16) || (bits == 128 && ones < 48) {
			wide = append(wide, n.String())
		}
	}
	return wide
}

// defaultDockerSocket is where the engine listens when DOCKER_HOST is unset.
const defaultDockerSocket = "/var/run/docker.sock"

// engineHint says why no engine answered, for the two usual causes when
// ocmt itself runs in a container as uid 65532: the socket is not mounted,
// or it is mounted but its group is not one of the process's (docker run
// --group-add); on a host, that last is fixed by joining the group or using
// rootless Docker (docker.PermissionFix). Otherwise it is err's text.
func engineHint(err error) string {
	sock := defaultDockerSocket
	if h := os.Getenv("DOCKER_HOST"); h != "" {
		p, ok := strings.CutPrefix(h, "unix://")
		if !ok {
			return err.Error()
		}
		sock = p
	}
	fi, serr := os.Stat(sock)
	if errors.Is(serr, os.ErrNotExist) {
		return "no Docker socket at " + sock + "; in a container, mount it with -v /var/run/docker.sock:/var/run/docker.sock"
	}
	c, derr := net.Dial("unix", sock)
	if derr == nil {
		c.Close()
		return err.Error()
	}
	if !errors.Is(derr, os.ErrPermission) {
		return err.Error()
	}
	gid := -1
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		gid = int(st.Gid)
	}
	return fmt.Sprintf("uid %d may not use %s, which belongs to group %d: add that group (docker run --group-add %d) "+
		"when ocmt runs in a container; on a host, %s", os.Getuid(), sock, gid, gid, docker.PermissionFix)
}
