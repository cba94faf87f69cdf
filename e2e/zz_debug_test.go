package e2e

import (
	"testing"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/ocmt/ocmt/xtest"
)

func TestZZDebug(t *testing.T) {
	env := xtest.NewEnv(t)
	b := newBrowser(t, env, 60e9)
	reqs := chromedp.Events(b.ctx, network.RequestWillBeSent)
	b.open("/auth/verify?token=" + env.BootstrapToken())
	b.do("fill", chromedp.SendKeys(chromedp.ID("bootstrap-email"), "a@b.c"))
	ctx, cancel := b.stepCtx(stepTimeout)
	defer cancel()
	chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("continue")))
	t.Log(mustEval[string](b, `document.body.innerText`))
	for ev, err := range reqs {
		if err != nil { break }
		if ev.Request.Method == "POST" {
			t.Logf("%s %s headers %v", ev.Request.Method, ev.Request.URL, ev.Request.Headers)
			break
		}
	}
}
