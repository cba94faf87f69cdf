package e2e

import (
	"context"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ocmt/ocmt/roles/agent/docker"
	"github.com/ocmt/ocmt/xtest"
)

// removeDockerAgentAtEnd makes sure the signed-in user's container and data
// volume do not outlive the test: ocmt keeps user containers running across
// server restarts by design, so a test server with a throwaway data
// directory would leak one container and one volume per run. The server is
// stopped first so it does not react to the removal.
func removeDockerAgentAtEnd(b *browser, env *xtest.Env) {
	b.t.Helper()
	ctx, cancel := b.stepCtx(stepTimeout)
	defer cancel()
	userID, err := chromedp.Run(ctx, chromedp.Evaluate[string](
		`fetch('/api/v1/me', {credentials: 'same-origin'}).then((r) => r.json()).then((u) => u.id || '')`,
		chromedp.EvalAwaitPromise))
	if err != nil || userID == "" {
		b.fatalf("read the signed-in user's id from /api/v1/me: %q, %v", userID, err)
	}
	t := b.t
	t.Cleanup(func() {
		env.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		d, err := docker.New(ctx, docker.Options{Binary: env.Cfg.AgentBinary})
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer d.Close()
		list, err := d.List(ctx)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, inst := range list {
			if inst.UserID != userID {
				continue
			}
			if err := d.Remove(ctx, inst.ID, false); err != nil {
				t.Errorf("cleanup: remove the container of %s: %v", userID, err)
			}
		}
	})
}
