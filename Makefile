# The README's commands. `make test` is what CI runs (through .ci/run).
GO ?= go
STATIC_TAGS = osusergo netgo sqlite_omit_load_extension
STATIC_LDFLAGS = -s -w -linkmode external -extldflags -static

.PHONY: test vet build static image bench bench-http clean

# The browser tests (in e2e) run after the other packages, not beside them:
# every container the Docker tests start or stop adds or removes a veth
# interface, and Chromium then fails in-flight page loads with
# net::ERR_NETWORK_CHANGED.
test: vet
	$(GO) test -count=1 -timeout 25m $$($(GO) list ./... | grep -v '/e2e$$')
	$(GO) test -count=1 -timeout 25m ./e2e

vet:
	@test -z "$$(gofmt -l .)" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...

build:
	$(GO) build -o ocmt .

# A statically linked binary: goes into agent images as is.
static:
	CGO_ENABLED=1 $(GO) build -tags '$(STATIC_TAGS)' -ldflags '$(STATIC_LDFLAGS)' -o ocmt .

# The server image, FROM scratch (no registry needed): the static binary
# plus .image/, whose empty data/ (0700) and tmp/ (1777) directories become
# /data and /tmp owned by 65532. IMAGE names the tag.
IMAGE ?= ocmt
image: static
	rm -rf .image
	mkdir -p .image/data .image/tmp
	chmod 0700 .image/data
	chmod 1777 .image/tmp
	docker build -t $(IMAGE) .

# Performance tables (needs a Docker engine); see README "Performance".
bench:
	$(GO) run ./cmd/ocmt-bench

# Cost of the access log and HTTP metrics per request (no Docker needed).
bench-http:
	$(GO) test -run '^$$' -bench BenchmarkObserve -count 3 ./roles/web/

clean:
	rm -f ocmt
	rm -rf .image
