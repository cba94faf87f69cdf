package ui

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"net/http"
	"regexp"
	"sort"
)

//go:embed templates/*.html
var templateFS embed.FS

// Page is the data a page template gets.
type Page struct {
	Title string            // page title suffix ("ocmt · <Title>"); "" = the page's default
	CSRF  string            // CSRF token; put on <body data-csrf="..."> and in forms as hidden field "_csrf"
	User  *User             // signed-in user or nil
	Data  map[string]string // page-specific values, rendered as data-* attributes on <body> (keys are lower-case-with-dashes) and usable in templates
}

// User is the signed-in user as the layout shows it.
type User struct {
	ID, Email string
	Admin     bool
}

// pageDefaults maps every page name Render knows to its default title.
var pageDefaults = map[string]string{
	"signin":  "Sign in",
	"verify":  "Continue signing in",
	"message": "Notice",
	"app":     "My agent",
	"admin":   "Admin",
}

// pages holds one parsed template set (layout + page) per page name.
var pages = mustParsePages()

func mustParsePages() map[string]*template.Template {
	funcs := template.FuncMap{"asset": AssetURL}
	m := make(map[string]*template.Template, len(pageDefaults))
	for name := range pageDefaults {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			panic("ui: parse templates: " + err.Error()) // programming error; tests catch it
		}
		m[name] = t
	}
	return m
}

// dataKey is the allowed form of Page.Data keys (they become data-<key>).
var dataKey = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)*$`)

// view is what templates execute with.
type view struct {
	Page
	Name  string              // page name, also <body data-page>
	Attrs []template.HTMLAttr // data-<key>="<escaped value>" for each Page.Data entry, sorted by key
}

// D returns Data[key] ("" if absent); templates use {{.D "link-href"}}.
func (v view) D(key string) string { return v.Data[key] }

// contentSecurityPolicy is sent by Render only when the caller has not set a
// policy (the management role's middleware normally has).
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'"

// appContentSecurityPolicy is contentSecurityPolicy plus 'wasm-unsafe-eval',
// for the "app" page, whose key derivation worker compiles WebAssembly
// (browsers that give a worker its owner's policy need it on the page).
const appContentSecurityPolicy = "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'; " +
	"require-trusted-types-for 'script'"

// Render writes the named page with status. Pages: "signin", "verify",
// "message", "app", "admin" (see the templates for the Data keys each
// uses). It sets Content-Type text/html; charset=utf-8 and Cache-Control
// no-store, and CSP, nosniff and no-referrer when not already set.
//
// The page is rendered into memory first, so on error (unknown page, a Data
// key that is not lower-case-with-dashes or is "page"/"csrf", a template
// failure) nothing has been written and the caller can answer otherwise.
// Render never panics on bad input.
func Render(w http.ResponseWriter, status int, page string, p Page) error {
	t, ok := pages[page]
	if !ok {
		return fmt.Errorf("ui: unknown page %q", page)
	}
	if p.Title == "" {
		p.Title = pageDefaults[page]
		if page == "message" && p.Data["heading"] != "" {
			p.Title = p.Data["heading"]
		}
	}
	v := view{Page: p, Name: page}
	keys := make([]string, 0, len(p.Data))
	for k := range p.Data {
		if !dataKey.MatchString(k) || k == "page" || k == "csrf" {
			return fmt.Errorf("ui: invalid data key %q", k)
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		// Safe: k matched dataKey above and the value is HTML-escaped and quoted.
		v.Attrs = append(v.Attrs, template.HTMLAttr("data-"+k+`="`+template.HTMLEscapeString(p.Data[k])+`"`))
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		return fmt.Errorf("ui: render %s: %w", page, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if h.Get("Content-Security-Policy") == "" {
		if page == "app" {
			h.Set("Content-Security-Policy", appContentSecurityPolicy)
		} else {
			h.Set("Content-Security-Policy", contentSecurityPolicy)
		}
	}
	if h.Get("X-Content-Type-Options") == "" {
		h.Set("X-Content-Type-Options", "nosniff")
	}
	if h.Get("Referrer-Policy") == "" {
		h.Set("Referrer-Policy", "no-referrer")
	}
	w.WriteHeader(status)
	_, err := w.Write(buf.Bytes())
	return err
}
