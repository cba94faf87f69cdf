// Command fakevault stands in for `ocmt serve --role=vault` in the docker
// driver's tests and benchmarks when the ocmt main package cannot be built
// (other packages are still being written). It is a small HTTP server that
// answers GET /healthz with 200 when the X-Ocmt-Container-Secret header
// equals $OCMT_VAULT_SECRET and 401 otherwise. It takes the arguments the
// agent image's entrypoint passes ("serve --role=vault --listen=ADDR
// --data-dir=DIR"), uses --listen and ignores the rest. Build it with
// CGO_ENABLED=0 for a static binary, or with cgo for a dynamic one.
package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	fs := flag.NewFlagSet("fakevault", flag.ExitOnError)
	listen := fs.String("listen", "0.0.0.0:8080", "address to listen on")
	fs.String("role", "vault", "ignored")
	fs.String("data-dir", "/data", "ignored")
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		os.Exit(2)
	}
	secret := os.Getenv("OCMT_VAULT_SECRET")

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		got := r.Header.Get("X-Ocmt-Container-Secret")
		if secret == "" || subtle.ConstantTimeCompare([]byte(got), []byte(secret)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "fakevault:", err)
		os.Exit(1)
	}
}
