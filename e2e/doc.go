// Package e2e holds end-to-end tests that drive the web UI in a real
// headless Chromium (chromedp) against an in-process ocmt server
// (xtest.NewEnv). The package has no non-test code besides this comment.
//
// Run: go test ./e2e/ -v. Without Chromium (or, for the docker test, without
// a Docker engine) the tests skip, or fail when CI=true. Set
// OCMT_SCREENSHOT_DIR to keep the full-page screenshots the tests take.
package e2e
