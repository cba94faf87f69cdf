package roles

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/moby/moby/client"

	"github.com/ocmt/ocmt/config"
	"github.com/ocmt/ocmt/datadir"
	"github.com/ocmt/ocmt/roles/agent/docker"
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
// version, data directory writable, agent image present, listen address free.
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

	lc := Check{Name: "listen address"}
	if ln, err := net.Listen("tcp", cfg.Listen); err != nil && held && holder.Listen == cfg.Listen {
		lc.OK, lc.Detail = true, fmt.Sprintf("%s is in use by the ocmt holding the data directory (%s)", cfg.Listen, holder)
	} else if err != nil {
		lc.Detail = fmt.Sprintf("%s is not free: %v", cfg.Listen, err)
	} else {
		ln.Close()
		lc.OK, lc.Detail = true, cfg.Listen+" is free"
	}
	return append(out, lc)
}

// defaultDockerSocket is where the engine listens when DOCKER_HOST is unset.
const defaultDockerSocket = "/var/run/docker.sock"

// engineHint says why no engine answered, for the two usual causes when
// ocmt itself runs in a container as uid 65532: the socket is not mounted,
// or it is mounted but its group is not one of the process's (docker run
// --group-add). Otherwise it is err's text.
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
	return fmt.Sprintf("uid %d may not use %s, which belongs to group %d: add that group (docker run --group-add %d)", os.Getuid(), sock, gid, gid)
}
