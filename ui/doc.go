// Package ui is ocmt's web UI: HTML templates and static files embedded in
// the binary (go:embed), with no build step (SPEC §9, STYLE "UI: embedded,
// build-free, strict CSP").
//
// The management role calls [Render] for pages ("signin", "verify",
// "message", "app", "admin") and mounts [Assets] at /static/. Templates use
// html/template (contextual auto-escaping); page data travels to scripts in
// data-* attributes on <body> (data-page, data-csrf and one data-<key> per
// [Page].Data entry), never in inline script.
//
// # Strict CSP
//
// Pages must run under
//
//	default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;
//	connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none';
//	require-trusted-types-for 'script'
//
// (plus 'wasm-unsafe-eval' in script-src on the "app" page, see below) so
// there is no inline <script> or <style>, no style= or on*= attribute and
// no javascript: URL. The one entry module, static/app.js, imports the page
// modules (signin.js, agent.js, admin.js) and the helpers (api.js for fetch,
// CSRF header and error parsing; dom.js for building elements), picks the
// page code by document.body.dataset.page and routes clicks and submits on
// [data-action] elements through delegated listeners. DOM is built with
// createElement and textContent only; innerHTML and friends would be blocked
// by Trusted Types anyway. Tests scan templates, static files and rendered
// pages for violations and run `node --check` on every module.
//
// # Vault and chat ("app" page)
//
// Once the container runs, agent.js hands over to workspace.js: the vault
// bar, lock/extend and the unlock dialog (vault.js), the first-run wizard
// (onboarding.js), the "Vault & keys" tab with providers and the password
// change (settings.js), the encrypted vault backup card there and the
// restore offer in the wizard's first step (vaultbackup.js), the "Sharing" tab (sharing.js, its plain-language
// texts in sharetext.js: HTTP API integrations, the Share dialog granting a
// capability on one of them, and the shares issued and received), and the chat (chat.js over gateway.js and
// protocol.js, the OpenClaw gateway v3 subset of SPEC §5.5, with assistant
// Markdown rendered to DOM nodes by markdown.js). The vault password is
// stretched in the browser (SPEC §5.1): kdf.js starts kdf-worker.js as a
// module Web Worker, which loads Go's wasm/wasm_exec.js and the project's
// wasm/kdf.wasm (crypto/wasm) and calls ocmtDeriveKey. The worker URL is a
// TrustedScriptURL from the page's one Trusted Types policy, "ocmt"
// (trusted.js), which allows only same-origin /static/ URLs. Compiling the
// wasm needs 'wasm-unsafe-eval': browsers following CSP Level 3 (Chromium,
// checked) take a dedicated worker's policy from the worker script's
// response, so [Assets] sends [WorkerCSP]
// with every JS file; browsers that let workers inherit the page's policy
// need it on the page too, so Render's default for "app" includes it and a
// caller that sets its own CSP for "app" should add it. The pure modules
// (markdown.js, password.js, protocol.js, gateway.js, vaultcrypto.js,
// trusted.js, sharetext.js) have node unit tests in testdata/js, run by TestJSUnits.
//
// # Asset URLs
//
// Every file below static/ is served at a content-hashed URL,
// /static/<name>.<hash>.<ext>, where <hash> is the first 8 hex digits of the
// SHA-256 of the served bytes, with "Cache-Control: public, max-age=31536000,
// immutable". [AssetURL] maps a plain name to that URL; templates use it
// through the "asset" template function.
//
// ES module imports between static files also use hashed names: when the
// package initializes, relative specifiers in JS (`from "./api.js"`,
// `import("./x.js")`) and url(./...) in CSS are rewritten to the hashed
// names of their targets, dependencies first. A file's hash therefore covers
// everything it imports, so app.js gets a new URL whenever any module it pulls
// in changes, and a browser never mixes modules from two releases. The
// source files keep plain relative imports, so they also work when opened
// unbundled. An import of a missing file or an import cycle fails package
// initialization (the tests catch it).
//
// The plain name (/static/app.js) is served as well, with a short
// "public, max-age=300", for humans and outside links; pages never
// reference it. Any other name, including an outdated hash, is 404.
package ui
