// trusted.js — the page's one Trusted Types policy, "ocmt". The CSP has
// require-trusted-types-for 'script', so script URLs (new Worker) must be
// TrustedScriptURL values; this policy mints them only for same-origin
// /static/ URLs. HTML is never needed: the UI builds DOM nodes.

/**
 * staticURL returns the absolute URL of u (resolved against base) if it is
 * on base's origin below /static/, else "". No query, no fragment, no
 * credentials.
 */
export function staticURL(u, base) {
  let url;
  let origin;
  try {
    url = new URL(String(u), base);
    origin = new URL(base).origin;
  } catch {
    return '';
  }
  if (url.origin !== origin || !url.pathname.startsWith('/static/')) return '';
  if (url.search || url.hash || url.username || url.password) return '';
  return url.href;
}

let policy; // undefined: not created yet; null: Trusted Types unsupported

function getPolicy() {
  if (policy !== undefined) return policy;
  policy = null;
  const tt = globalThis.trustedTypes;
  if (tt && typeof tt.createPolicy === 'function') {
    policy = tt.createPolicy('ocmt', {
      createScriptURL(u) {
        const ok = staticURL(u, globalThis.location.href);
        if (!ok) throw new TypeError(`ocmt: script URL not allowed: ${u}`);
        return ok;
      },
    });
  }
  return policy;
}

/** scriptURL returns u as a TrustedScriptURL (or a checked string where Trusted Types are not supported); it throws for other URLs. */
export function scriptURL(u) {
  const p = getPolicy();
  if (p) return p.createScriptURL(u);
  const ok = staticURL(u, globalThis.location.href);
  if (!ok) throw new TypeError(`ocmt: script URL not allowed: ${u}`);
  return ok;
}
