import assert from 'node:assert/strict';
import { test } from 'node:test';

import { inline, parse, render, safeHref, textOf, toDOM } from '../../static/markdown.js';
import { doc, html } from './fakedom.mjs';

const md = (s) => html(render(s, doc));

test('paragraphs, line breaks and emphasis', () => {
  assert.equal(md('Hello **bold**, *it*, _it2_, ~~gone~~ and `x < y`'),
    '<p>Hello <strong>bold</strong>, <em>it</em>, <em>it2</em>, <del>gone</del> and <code>x &lt; y</code></p>');
  assert.equal(md('one\ntwo\n\nthree'), '<p>one<br>two</p><p>three</p>');
  assert.equal(md('***both***'), '<p><strong><em>both</em></strong></p>');
  assert.equal(md('snake_case_name and 2 * 3 * 4'), '<p>snake_case_name and 2 * 3 * 4</p>');
  assert.equal(md('\\*not em\\*'), '<p>*not em*</p>');
});

test('unclosed markers stay text (streaming)', () => {
  assert.equal(md('**half'), '<p>**half</p>');
  assert.equal(md('`code'), '<p>`code</p>');
  assert.equal(md('[link](htt'), '<p>[link](htt</p>');
  assert.equal(md('```py\nprint(1)'), '<pre data-lang="py"><code class="language-py">print(1)</code></pre>');
});

test('headings map below the page headings', () => {
  assert.equal(md('# A\n## B\n### C\n###### F'), '<h3>A</h3><h4>B</h4><h5>C</h5><h6>F</h6>');
  assert.equal(md('#no space'), '<p>#no space</p>');
});

test('fenced code keeps content verbatim', () => {
  assert.equal(md('```html\n<script>alert(1)</script>\n**no**\n```\nafter'),
    '<pre data-lang="html"><code class="language-html">&lt;script&gt;alert(1)&lt;/script&gt;\n**no**</code></pre><p>after</p>');
  assert.equal(md('~~~\na\n~~~'), '<pre><code>a</code></pre>');
  // An unsafe info string is dropped, not put into an attribute.
  assert.equal(md('```"><img src=x onerror=alert(1)>\nx\n```'), '<pre><code>x</code></pre>');
});

test('lists: bullets, numbers, nesting, tasks, loose items', () => {
  assert.equal(md('- a\n- b\n  - c\n* d'), '<ul><li>a</li><li>b<ul><li>c</li></ul></li></ul><ul><li>d</li></ul>');
  assert.equal(md('1. one\n2. two'), '<ol><li>one</li><li>two</li></ol>');
  assert.equal(md('3. three\n4. four'), '<ol start="3"><li>three</li><li>four</li></ol>');
  assert.equal(md('- [ ] todo\n- [x] done'), '<ul><li>☐ todo</li><li>☑ done</li></ul>');
  assert.equal(md('- a\n\n- b'), '<ul><li><p>a</p></li><li><p>b</p></li></ul>');
  assert.equal(md('Steps:\n1. go\n2. stop'), '<p>Steps:</p><ol><li>go</li><li>stop</li></ol>');
  assert.equal(md('In\n2024. we'), '<p>In<br>2024. we</p>');
});

test('blockquotes, rules and tables', () => {
  assert.equal(md('> quoted **text**\n> more'), '<blockquote><p>quoted <strong>text</strong><br>more</p></blockquote>');
  assert.equal(md('a\n\n---\n\nb'), '<p>a</p><hr><p>b</p>');
  assert.equal(md('| a | b |\n|:--|--:|\n| 1 | `x|y` |'),
    '<div class="md-table"><table><thead><tr><th data-align="left">a</th><th data-align="right">b</th></tr></thead>'
    + '<tbody><tr><td data-align="left">1</td><td data-align="right"><code>x|y</code></td></tr></tbody></table></div>');
});

test('links only for http(s), with noopener and a new tab', () => {
  assert.equal(md('[site](https://example.com/a?b=1)'),
    '<p><a href="https://example.com/a?b=1" rel="noopener noreferrer" target="_blank">site</a></p>');
  for (const bad of ['javascript:alert(1)', 'JaVaScRiPt:alert(1)', 'data:text/html,<b>x</b>', 'vbscript:x', '//evil.example', '/relative', 'ftp://x.y']) {
    const out = md(`[click](${bad})`);
    assert.ok(!out.includes('<a'), `${bad} became a link: ${out}`);
    assert.ok(out.includes('click'));
  }
  assert.equal(md('see https://go.dev/doc. and <https://a.b/c>'),
    '<p>see <a href="https://go.dev/doc" rel="noopener noreferrer" target="_blank">https://go.dev/doc</a>. and '
    + '<a href="https://a.b/c" rel="noopener noreferrer" target="_blank">https://a.b/c</a></p>');
  assert.equal(md('(https://en.wikipedia.org/wiki/Go_(language))'),
    '<p>(<a href="https://en.wikipedia.org/wiki/Go_(language)" rel="noopener noreferrer" target="_blank">https://en.wikipedia.org/wiki/Go_(language)</a>)</p>');
  assert.equal(md('![alt](https://x.y/i.png)'), '<p><a href="https://x.y/i.png" rel="noopener noreferrer" target="_blank">alt</a></p>');
  assert.equal(safeHref('https://exa mple.com'), '');
  assert.equal(safeHref('http://x.y'), 'http://x.y/');
});

test('raw HTML is text, never markup', () => {
  const out = md('<img src=x onerror="alert(1)"> <script>alert(2)</script> <b onclick=x>b</b>');
  assert.ok(!/<(img|script|b)\b/.test(out), out);
  assert.ok(out.includes('&lt;script&gt;'));
  // Only allow-listed tags were ever created.
  const allowed = new Set(['p', 'br', 'hr', 'h3', 'h4', 'h5', 'h6', 'strong', 'em', 'del', 'code', 'pre', 'blockquote', 'ul', 'ol', 'li', 'a', 'div', 'table', 'thead', 'tbody', 'tr', 'th', 'td']);
  for (const t of doc.created) assert.ok(allowed.has(t), `created <${t}>`);
});

test('toDOM re-checks hand-made trees', () => {
  const tree = [
    { tag: 'script', children: ['alert(1)'] },
    { tag: 'a', attrs: { href: 'javascript:alert(1)', onclick: 'x', style: 'color:red', rel: 'noopener noreferrer' }, children: ['x'] },
    { tag: 'img', attrs: { src: 'x', onerror: 'alert(1)' } },
    { tag: 'div', attrs: { class: 'evil' }, children: [{ tag: 'iframe', children: ['in'] }] },
    { tag: 'pre', attrs: { 'data-lang': '"><x' }, children: [] },
  ];
  assert.equal(html(toDOM(tree, doc)), 'alert(1)<a rel="noopener noreferrer">x</a><div>in</div><pre></pre>');
});

test('parse returns a plain tree; textOf flattens it', () => {
  const tree = parse('**a** b\nc');
  assert.deepEqual(tree, [{ tag: 'p', children: [{ tag: 'strong', children: ['a'] }, ' b', { tag: 'br' }, 'c'] }]);
  assert.equal(textOf(tree), 'a b\nc');
  assert.deepEqual(inline('`a`'), [{ tag: 'code', children: ['a'] }]);
  assert.deepEqual(parse(''), []);
  assert.deepEqual(parse(null), []);
});

test('pathological input stays fast', () => {
  const inputs = ['*'.repeat(50000), '_a'.repeat(30000), '[a]('.repeat(20000), '`'.repeat(20000) + 'x', '> '.repeat(5000) + 'x',
    Array.from({ length: 3000 }, (_, i) => `${' '.repeat(i % 30)}- x`).join('\n')];
  for (const s of inputs) {
    const t0 = Date.now();
    parse(s);
    assert.ok(Date.now() - t0 < 2000, `slow on ${JSON.stringify(s.slice(0, 12))}…`);
  }
});
