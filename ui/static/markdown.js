// markdown.js — a small, safe Markdown renderer for assistant messages.
//
// parse(text) turns Markdown into a plain tree: an array of nodes, where a
// node is a string (text) or {tag, attrs?, children?}. toDOM(tree, doc)
// turns that tree into DOM nodes with createElement, createTextNode and
// setAttribute only, re-checking every tag and attribute against an allow
// list, so model output can never become markup or script (never HTML strings;
// the CSP's Trusted Types would refuse it anyway). Links are kept only for
// http(s) URLs and open in a new tab with rel="noopener noreferrer".
//
// Supported: paragraphs (single newlines become <br>), ATX headings (mapped
// to h3–h6 so they stay below the page's own headings), **bold**, *italic*,
// ~~strike~~, `inline code`, fenced code blocks (an unclosed fence runs to
// the end, which suits streaming), bullet and numbered lists (nested by
// indentation, task boxes shown as ☐/☑), blockquotes, horizontal rules,
// GFM tables, [links](https://…), <https://…> and bare https:// URLs.
// The module has no DOM dependency at import time, so node --test can
// exercise it with a fake document.

const maxDepth = 12; // nesting limit for blocks and inline spans

/** parse returns the tree for Markdown src. */
export function parse(src) {
  const text = String(src ?? '').replace(/\r\n?/g, '\n').replace(/\0/g, '\uFFFD');
  const lines = text.split('\n').map(expandTabs);
  return parseBlocks(lines, 0);
}

/** render returns a DocumentFragment for Markdown src. */
export function render(src, doc = globalThis.document) {
  return toDOM(parse(src), doc);
}

// ---- blocks ----

function expandTabs(line) {
  const m = /^[ \t]+/.exec(line);
  if (!m || !m[0].includes('\t')) return line;
  let col = 0;
  for (const ch of m[0]) col = ch === '\t' ? col + 4 - (col % 4) : col + 1;
  return ' '.repeat(col) + line.slice(m[0].length);
}

const isBlank = (l) => /^\s*$/.test(l);
const indentOf = (l) => /^ */.exec(l)[0].length;

const fenceRe = /^( {0,3})(`{3,}|~{3,})[ \t]*([^\s`]*)[^`]*$/;
const headingRe = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const hrRe = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const quoteRe = /^ {0,3}>/;
const listRe = /^( {0,3})([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*)|$)/;

function listMarker(line) {
  const m = listRe.exec(line);
  if (!m) return null;
  const ordered = /\d/.test(m[2]);
  const gap = m[3] ? Math.min(m[3].length, 4) : 1;
  return {
    indent: m[1].length,
    ordered,
    delim: m[2].slice(-1),
    start: ordered ? parseInt(m[2], 10) : 1,
    contentIndent: m[1].length + m[2].length + gap,
    text: m[4] || '',
  };
}

function startsBlock(line) {
  return fenceRe.test(line) || headingRe.test(line) || hrRe.test(line) || quoteRe.test(line) || listMarker(line) !== null;
}

// interruptsParagraph is startsBlock with CommonMark's list rule: only a
// bullet with text or a list numbered 1 may interrupt a paragraph (so a
// line such as "2024. was a good year" stays text).
function interruptsParagraph(line) {
  const m = listMarker(line);
  if (m) return m.ordered ? m.start === 1 && m.text !== '' : m.text !== '';
  return startsBlock(line);
}

function headingTag(level) {
  return `h${Math.min(6, level + 2)}`;
}

function parseBlocks(lines, depth) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (isBlank(line)) { i++; continue; }

    let m = fenceRe.exec(line);
    if (m) {
      const fence = m[2];
      const pad = m[1].length;
      const lang = m[3].toLowerCase();
      const body = [];
      i++;
      while (i < lines.length) {
        const l = lines[i];
        const close = /^ {0,3}(`{3,}|~{3,})[ \t]*$/.exec(l);
        if (close && close[1][0] === fence[0] && close[1].length >= fence.length) { i++; break; }
        body.push(l.slice(Math.min(pad, indentOf(l))));
        i++;
      }
      out.push(codeBlock(body.join('\n'), lang));
      continue;
    }

    m = headingRe.exec(line);
    if (m) {
      out.push({ tag: headingTag(m[1].length), children: inline(m[2] || '', depth) });
      i++;
      continue;
    }

    if (hrRe.test(line)) {
      out.push({ tag: 'hr' });
      i++;
      continue;
    }

    if (quoteRe.test(line)) {
      const inner = [];
      while (i < lines.length && !isBlank(lines[i])) {
        if (quoteRe.test(lines[i])) inner.push(lines[i].replace(/^ {0,3}> ?/, ''));
        else if (inner.length && !startsBlock(lines[i])) inner.push(lines[i]); // lazy continuation
        else break;
        i++;
      }
      out.push({ tag: 'blockquote', children: depth < maxDepth ? parseBlocks(inner, depth + 1) : [inner.join('\n')] });
      continue;
    }

    const marker = listMarker(line);
    if (marker) {
      i = parseList(lines, i, marker, out, depth);
      continue;
    }

    if (i + 1 < lines.length && line.includes('|') && isTableSep(lines[i + 1])) {
      i = parseTable(lines, i, out, depth);
      continue;
    }

    const para = [line.trim()];
    i++;
    while (i < lines.length && !isBlank(lines[i]) && !interruptsParagraph(lines[i])) {
      para.push(lines[i].trim());
      i++;
    }
    out.push({ tag: 'p', children: inline(para.join('\n'), depth) });
  }
  return out;
}

function codeBlock(code, lang) {
  const safeLang = /^[a-z0-9][a-z0-9+#._-]{0,31}$/.test(lang) ? lang : '';
  const codeNode = { tag: 'code', children: code ? [code] : [] };
  if (safeLang) codeNode.attrs = { class: `language-${safeLang}` };
  return safeLang ? { tag: 'pre', attrs: { 'data-lang': safeLang }, children: [codeNode] } : { tag: 'pre', children: [codeNode] };
}

function parseList(lines, i, first, out, depth) {
  const items = [];
  let loose = false;
  let gapBefore = false; // a blank line preceded the current item
  while (i < lines.length) {
    const m = listMarker(lines[i]);
    if (!m || m.ordered !== first.ordered || m.delim !== first.delim || m.indent > first.indent + 1 || hrRe.test(lines[i])) break;
    if (gapBefore) loose = true;
    const body = [m.text];
    i++;
    let blanks = 0;
    while (i < lines.length) {
      const l = lines[i];
      if (isBlank(l)) { body.push(''); blanks++; i++; continue; }
      const ind = indentOf(l);
      if (ind > m.indent) {
        body.push(l.slice(Math.min(ind, m.contentIndent)));
        blanks = 0;
        i++;
        continue;
      }
      if (blanks || startsBlock(l)) break;
      body.push(l.trim()); // lazy paragraph continuation
      i++;
    }
    while (body.length > 1 && body[body.length - 1] === '') body.pop();
    gapBefore = blanks > 0;
    let task = null;
    const t = /^\[([ xX])\][ \t]+/.exec(body[0]);
    if (t) {
      task = t[1] !== ' ';
      body[0] = body[0].slice(t[0].length);
    }
    const children = depth < maxDepth ? parseBlocks(body, depth + 1) : [body.join('\n')];
    items.push({ children, task });
  }
  const list = { tag: first.ordered ? 'ol' : 'ul', children: [] };
  if (first.ordered && first.start !== 1) list.attrs = { start: String(first.start) };
  for (const it of items) {
    let kids = it.children;
    if (!loose && kids.filter((c) => c && c.tag === 'p').length <= 1) kids = kids.flatMap((c) => (c && c.tag === 'p' ? c.children : [c]));
    if (it.task !== null) kids = [it.task ? '☑ ' : '☐ ', ...kids];
    list.children.push({ tag: 'li', children: kids });
  }
  out.push(list);
  return i;
}

function isTableSep(line) {
  return line.includes('|') && /^ {0,3}\|?[ \t]*:?-+:?[ \t]*(\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$/.test(line);
}

function splitRow(line) {
  let s = line.trim();
  if (s.startsWith('|')) s = s.slice(1);
  if (s.endsWith('|') && !s.endsWith('\\|')) s = s.slice(0, -1);
  const cells = [];
  let cur = '';
  let tick = 0;
  for (let k = 0; k < s.length; k++) {
    const ch = s[k];
    if (ch === '\\' && s[k + 1] === '|') { cur += '|'; k++; continue; }
    if (ch === '`') tick ^= 1;
    if (ch === '|' && !tick) { cells.push(cur.trim()); cur = ''; continue; }
    cur += ch;
  }
  cells.push(cur.trim());
  return cells;
}

function parseTable(lines, i, out, depth) {
  const head = splitRow(lines[i]);
  const aligns = splitRow(lines[i + 1]).map((c) => {
    const l = c.startsWith(':');
    const r = c.endsWith(':');
    return l && r ? 'center' : r ? 'right' : l ? 'left' : '';
  });
  i += 2;
  const rows = [];
  while (i < lines.length && !isBlank(lines[i]) && lines[i].includes('|') && !startsBlock(lines[i])) {
    rows.push(splitRow(lines[i]));
    i++;
  }
  const cols = head.length;
  const cell = (tag, text, k) => {
    const node = { tag, children: inline(text || '', depth) };
    if (aligns[k]) node.attrs = { 'data-align': aligns[k] };
    return node;
  };
  const table = {
    tag: 'table',
    children: [
      { tag: 'thead', children: [{ tag: 'tr', children: head.map((c, k) => cell('th', c, k)) }] },
      { tag: 'tbody', children: rows.map((r) => ({ tag: 'tr', children: Array.from({ length: cols }, (_, k) => cell('td', r[k], k)) })) },
    ],
  };
  out.push({ tag: 'div', attrs: { class: 'md-table' }, children: [table] });
  return i;
}

// ---- inline ----

const punct = /[!-/:-@[-`{-~]/;
const wordChar = /[\p{L}\p{N}]/u;

/** safeHref returns the normalized URL if u is an absolute http(s) URL, else "". */
export function safeHref(u) {
  const s = String(u ?? '').trim();
  if (!/^https?:\/\//i.test(s) || /[\s\u0000-\u001f\u007f]/.test(s)) return '';
  try {
    const url = new URL(s);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return '';
    return url.href;
  } catch {
    return '';
  }
}

function link(href, children) {
  return { tag: 'a', attrs: { href, rel: 'noopener noreferrer', target: '_blank' }, children };
}

/** inline parses span-level Markdown in text into an array of nodes. */
export function inline(text, depth = 0) {
  const nodes = [];
  let buf = '';
  const failed = new Set(); // delimiters with no closer after some position (no closer later either)
  const flush = () => {
    if (buf) { nodes.push(buf); buf = ''; }
  };
  const push = (node) => { flush(); nodes.push(node); };
  const s = text;
  const n = s.length;
  let i = 0;
  while (i < n) {
    const ch = s[i];

    if (ch === '\\' && i + 1 < n && punct.test(s[i + 1])) { buf += s[i + 1]; i += 2; continue; }
    if (ch === '\n') { push({ tag: 'br' }); i++; continue; }

    if (ch === '`') {
      let run = 1;
      while (s[i + run] === '`') run++;
      const key = `\`${run}`;
      if (!failed.has(key)) {
        const close = findTicks(s, i + run, run);
        if (close >= 0) {
          let code = s.slice(i + run, close).replace(/\n/g, ' ');
          if (code.length > 2 && code[0] === ' ' && code[code.length - 1] === ' ' && code.trim()) code = code.slice(1, -1);
          push({ tag: 'code', children: [code] });
          i = close + run;
          continue;
        }
        failed.add(key);
      }
      buf += s.slice(i, i + run);
      i += run;
      continue;
    }

    if ((ch === '*' || ch === '_' || ch === '~') && depth < maxDepth) {
      const dbl = s[i + 1] === ch;
      if (ch === '~' && !dbl) { buf += ch; i++; continue; }
      const delim = dbl ? ch + ch : ch;
      const prev = i > 0 ? s[i - 1] : ' ';
      const next = s[i + delim.length] ?? ' ';
      const opens = !/\s/.test(next) && !(ch === '_' && wordChar.test(prev));
      if (opens && !failed.has(delim)) {
        const close = findCloser(s, i + delim.length, delim);
        if (close >= 0) {
          const tag = ch === '~' ? 'del' : dbl ? 'strong' : 'em';
          push({ tag, children: inline(s.slice(i + delim.length, close), depth + 1) });
          i = close + delim.length;
          continue;
        }
        failed.add(delim);
      }
      buf += delim;
      i += delim.length;
      continue;
    }

    if ((ch === '!' && s[i + 1] === '[') || ch === '[') {
      const img = ch === '!';
      const open = img ? i + 1 : i;
      const res = failed.has('[') ? null : parseLink(s, open);
      if (res) {
        const label = s.slice(open + 1, res.labelEnd);
        const href = safeHref(res.url);
        if (img) {
          const alt = label || 'image';
          if (href) push(link(href, [alt]));
          else buf += alt;
        } else if (href) {
          push(link(href, depth < maxDepth ? inline(label, depth + 1) : [label]));
        } else {
          flush();
          nodes.push(...inline(label, depth + 1));
        }
        i = res.end;
        continue;
      }
      if (res === null && !s.includes('](', open)) failed.add('[');
      buf += ch;
      i++;
      continue;
    }

    if (ch === '<') {
      const m = /^<(https?:\/\/[^\s<>]+)>/i.exec(s.slice(i, i + 2048));
      if (m && safeHref(m[1])) {
        push(link(safeHref(m[1]), [m[1]]));
        i += m[0].length;
        continue;
      }
    }

    if ((ch === 'h' || ch === 'H') && !(i > 0 && wordChar.test(s[i - 1]))) {
      const m = /^https?:\/\/[^\s<>]+/i.exec(s.slice(i, i + 2048));
      if (m) {
        const url = trimURL(m[0]);
        const href = safeHref(url);
        if (href && url.length > 8) {
          push(link(href, [url]));
          i += url.length;
          continue;
        }
      }
    }

    buf += ch;
    i++;
  }
  flush();
  return nodes;
}

function findTicks(s, from, run) {
  let k = from;
  while (k < s.length) {
    const j = s.indexOf('`', k);
    if (j < 0) return -1;
    let r = 1;
    while (s[j + r] === '`') r++;
    if (r === run) return j;
    k = j + r;
  }
  return -1;
}

// findCloser returns the index of the delimiter that closes an emphasis
// opened before from: not preceded by whitespace, and for single * or _
// not part of a double run. -1 if there is none.
function findCloser(s, from, delim) {
  const ch = delim[0];
  let k = from;
  while (k < s.length) {
    const j = s.indexOf(delim, k);
    if (j < 0) return -1;
    if (s[j - 1] === '\\') { k = j + 1; continue; }
    if (j === from) { k = j + 1; continue; }
    if (/\s/.test(s[j - 1])) { k = j + 1; continue; }
    if (delim.length === 1) {
      if (s[j + 1] === ch) {
        // Skip a whole run (e.g. a nested **strong**).
        let e = j;
        while (s[e] === ch) e++;
        k = e;
        continue;
      }
      if (s[j - 1] === ch) { k = j + 1; continue; }
    } else if (s[j + 2] === ch && s[j + 3] !== ch) {
      // "***": let the outer double close after an inner single.
      return j + 1;
    }
    if (ch === '_' && j + delim.length < s.length && wordChar.test(s[j + delim.length])) { k = j + 1; continue; }
    return j;
  }
  return -1;
}

// parseLink parses [label](url "title") starting at the "[" at open. It
// returns {labelEnd, url, end} or null.
function parseLink(s, open) {
  let depth = 0;
  let k = open;
  let labelEnd = -1;
  for (; k < s.length && k < open + 4096; k++) {
    const c = s[k];
    if (c === '\\') { k++; continue; }
    if (c === '`') {
      const j = s.indexOf('`', k + 1);
      if (j > 0) k = j;
      continue;
    }
    if (c === '[') depth++;
    else if (c === ']') {
      depth--;
      if (depth === 0) { labelEnd = k; break; }
    }
  }
  if (labelEnd < 0 || s[labelEnd + 1] !== '(') return null;
  let p = labelEnd + 2;
  while (s[p] === ' ') p++;
  let url = '';
  if (s[p] === '<') {
    const j = s.indexOf('>', p);
    if (j < 0 || j > p + 2048) return null;
    url = s.slice(p + 1, j);
    p = j + 1;
  } else {
    let paren = 0;
    const st = p;
    const stop = Math.min(s.length, p + 2048); // URLs longer than this stay text
    for (; p < stop; p++) {
      const c = s[p];
      if (c === '\\') { p++; continue; }
      if (c <= ' ') break;
      if (c === '(') paren++;
      else if (c === ')') {
        if (paren === 0) break;
        paren--;
      }
    }
    url = s.slice(st, p);
  }
  while (s[p] === ' ') p++;
  if (s[p] === '"' || s[p] === "'") {
    const j = s.indexOf(s[p], p + 1);
    if (j < 0 || j > p + 512) return null;
    p = j + 1;
    while (s[p] === ' ') p++;
  }
  if (s[p] !== ')') return null;
  return { labelEnd, url, end: p + 1 };
}

// trimURL drops trailing punctuation that belongs to the sentence, keeping
// balanced closing parentheses (https://en.wikipedia.org/wiki/Go_(language)).
function trimURL(u) {
  let url = u;
  for (;;) {
    const last = url[url.length - 1];
    if (/[.,;:!?'"*_~]/.test(last)) { url = url.slice(0, -1); continue; }
    if (last === ')') {
      const opens = (url.match(/\(/g) || []).length;
      const closes = (url.match(/\)/g) || []).length;
      if (closes > opens) { url = url.slice(0, -1); continue; }
    }
    return url;
  }
}

// ---- DOM ----

const allowedTags = new Set([
  'p', 'br', 'hr', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 'del', 'code', 'pre', 'blockquote',
  'ul', 'ol', 'li', 'a', 'div', 'table', 'thead', 'tbody', 'tr', 'th', 'td',
]);

function allowedAttr(tag, name, value) {
  const v = String(value);
  switch (name) {
    case 'href': return tag === 'a' && safeHref(v) === v;
    case 'rel': return tag === 'a' && v === 'noopener noreferrer';
    case 'target': return tag === 'a' && v === '_blank';
    case 'start': return tag === 'ol' && /^\d{1,9}$/.test(v);
    case 'class': return (tag === 'code' && /^language-[a-z0-9][a-z0-9+#._-]{0,31}$/.test(v)) || (tag === 'div' && v === 'md-table');
    case 'data-lang': return tag === 'pre' && /^[a-z0-9][a-z0-9+#._-]{0,31}$/.test(v);
    case 'data-align': return (tag === 'th' || tag === 'td') && /^(left|center|right)$/.test(v);
    default: return false;
  }
}

/**
 * toDOM builds a DocumentFragment from a tree made by parse. Unknown tags
 * and attributes are dropped (their text children are kept), so even a
 * hand-made tree cannot produce script, style, event handlers or unsafe URLs.
 */
export function toDOM(nodes, doc = globalThis.document) {
  const frag = doc.createDocumentFragment();
  for (const n of nodes || []) append(frag, n, doc, 0);
  return frag;
}

function append(parent, node, doc, depth) {
  if (node === null || node === undefined || node === false) return;
  if (typeof node === 'string' || typeof node === 'number') {
    parent.appendChild(doc.createTextNode(String(node)));
    return;
  }
  if (typeof node !== 'object' || depth > 64) return;
  const kids = Array.isArray(node.children) ? node.children : [];
  if (!allowedTags.has(node.tag)) {
    for (const c of kids) append(parent, c, doc, depth + 1);
    return;
  }
  const el = doc.createElement(node.tag);
  for (const [k, v] of Object.entries(node.attrs || {})) {
    if (allowedAttr(node.tag, k, v)) el.setAttribute(k, String(v));
  }
  for (const c of kids) append(el, c, doc, depth + 1);
  parent.appendChild(el);
}

/** textOf returns the plain text of a tree (for previews and tests). */
export function textOf(nodes) {
  let out = '';
  for (const n of nodes || []) {
    if (typeof n === 'string') out += n;
    else if (n && n.tag === 'br') out += '\n';
    else if (n) out += textOf(n.children);
  }
  return out;
}
