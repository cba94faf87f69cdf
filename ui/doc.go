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
// so there is no inline <script> or <style>, no style= or on*= attribute and
// no javascript: URL. The one entry module, static/app.js, imports the page
// modules (signin.js, agent.js, admin.js) and the helpers (api.js for fetch,
// CSRF header and error parsing; dom.js for building elements), picks the
// page code by document.body.dataset.page and routes clicks and submits on
// [data-action] elements through delegated listeners. DOM is built with
// createElement and textContent only; innerHTML and friends would be blocked
// by Trusted Types anyway. Tests scan templates, static files and rendered
// pages for violations and run `node --check` on every module.
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
