// fakedom.mjs — a tiny stand-in for document, enough for markdown.toDOM:
// createElement, createTextNode, createDocumentFragment, setAttribute and
// appendChild, plus an html() serializer for assertions.

class Node {
  constructor() {
    this.childNodes = [];
  }

  appendChild(n) {
    this.childNodes.push(n);
    return n;
  }
}

class Text extends Node {
  constructor(text) {
    super();
    this.nodeType = 3;
    this.data = text;
  }
}

class Element extends Node {
  constructor(tag) {
    super();
    this.nodeType = 1;
    this.tagName = tag.toUpperCase();
    this.attrs = new Map();
  }

  setAttribute(k, v) {
    this.attrs.set(k, String(v));
  }

  getAttribute(k) {
    return this.attrs.has(k) ? this.attrs.get(k) : null;
  }
}

class Fragment extends Node {
  constructor() {
    super();
    this.nodeType = 11;
  }
}

export const doc = {
  created: [],
  createElement(tag) {
    const el = new Element(tag);
    this.created.push(tag);
    return el;
  },
  createTextNode: (t) => new Text(t),
  createDocumentFragment: () => new Fragment(),
};

const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** html serializes a fake node (escaping text, so markup in text stays visible as text). */
export function html(n) {
  if (n.nodeType === 3) return esc(n.data);
  const inner = n.childNodes.map(html).join('');
  if (n.nodeType === 11) return inner;
  const tag = n.tagName.toLowerCase();
  const attrs = [...n.attrs].map(([k, v]) => ` ${k}="${esc(v)}"`).join('');
  return ['br', 'hr'].includes(tag) ? `<${tag}${attrs}>` : `<${tag}${attrs}>${inner}</${tag}>`;
}
