// Markdown to DOM for untrusted text (model output). Every node is made with createElement
// and every piece of text goes in as a text node: markup in the source stays text, always.
// Link targets are limited to http(s) and mailto; images are never fetched (a model could
// be steered into loading a tracking URL), they become links instead.
//
// Covers what chat models write: headings, paragraphs with line breaks, **strong**, *em*,
// ~~del~~, `code`, fenced code blocks, lists (nested, ordered with start), block quotes,
// tables, rules, links and bare URLs. An unclosed fence (mid-stream) renders as code so far.

const MAX_DEPTH = 8; // nesting of quotes/lists/emphasis beyond this is shown as text
const MAX_INLINE = 50_000; // longer paragraphs are shown as plain text (bounded work)

const FENCE = /^( {0,3})(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])(?:([ \t]+)(.*)|$)/;
const TABLE_DELIM = /^\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*$/;
const PUNCT = /[!-/:-@[-`{-~]/;
const BLANK = /^\s*$/;

/**
 * Render Markdown text as DOM nodes.
 * @param {string} source untrusted text
 * @param {{copy?: (text: string, button: HTMLElement) => void}} [options] `copy` is called by
 *   the copy button of each code block
 * @returns {DocumentFragment}
 */
export function renderMarkdown(source, options = {}) {
  const fragment = document.createDocumentFragment();
  renderBlocks(String(source).replace(/\r\n?/g, '\n').split('\n'), fragment, options, 0);
  return fragment;
}

function el(tag, text) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  return node;
}

function startsBlock(lines, i) {
  const line = lines[i];
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line)
    || ITEM.test(line) || isTableStart(lines, i);
}

function renderBlocks(lines, parent, options, depth) {
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i += 1;
    } else if (depth >= MAX_DEPTH) {
      parent.append(el('p', lines.slice(i).join('\n')));
      return;
    } else if (FENCE.test(line)) {
      i = codeBlock(lines, i, parent, options);
    } else if (HEADING.test(line)) {
      const [, hashes, text = ''] = HEADING.exec(line);
      const h = el(`h${hashes.length}`);
      renderInline(text, h, 0);
      parent.append(h);
      i += 1;
    } else if (RULE.test(line)) {
      parent.append(el('hr'));
      i += 1;
    } else if (QUOTE.test(line)) {
      const inner = [];
      while (i < lines.length && !BLANK.test(lines[i])) {
        const m = QUOTE.exec(lines[i]);
        if (!m && startsBlock(lines, i)) break;
        inner.push(m ? m[1] : lines[i]); // a line without '>' continues the quote's paragraph
        i += 1;
      }
      const quote = el('blockquote');
      renderBlocks(inner, quote, options, depth + 1);
      parent.append(quote);
    } else if (ITEM.test(line)) {
      i = list(lines, i, parent, options, depth);
    } else if (isTableStart(lines, i)) {
      i = table(lines, i, parent);
    } else {
      const start = i;
      i += 1;
      while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines, i)) i += 1;
      const p = el('p');
      renderInline(lines.slice(start, i).join('\n'), p, 0);
      parent.append(p);
    }
  }
}

function codeBlock(lines, i, parent, options) {
  const [, indent, fence, info] = FENCE.exec(lines[i]);
  const close = new RegExp(`^ {0,3}${fence[0] === '`' ? '`' : '~'}{${fence.length},}\\s*$`);
  const body = [];
  let j = i + 1;
  for (; j < lines.length && !close.test(lines[j]); j += 1) {
    body.push(lines[j].replace(new RegExp(`^ {0,${indent.length}}`), ''));
  }
  const language = info.replace(/[^\w+#.-]/g, '').slice(0, 32);
  const text = body.join('\n');
  const block = el('div');
  block.className = 'code-block';
  const head = el('div');
  head.className = 'code-head';
  head.append(el('span', language || 'text'));
  if (options.copy) {
    const button = el('button', 'Copy');
    button.type = 'button';
    button.className = 'copy-code';
    button.setAttribute('aria-label', 'Copy code');
    button.addEventListener('click', () => options.copy(text, button));
    head.append(button);
  }
  const pre = el('pre');
  const code = el('code', text);
  if (language) code.className = `language-${language}`;
  pre.append(code);
  block.append(head, pre);
  parent.append(block);
  return j + 1; // past the closing fence (or the end)
}

function list(lines, i, parent, options, depth) {
  const first = ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const node = el(ordered ? 'ol' : 'ul');
  const start = Number.parseInt(first[2], 10);
  if (ordered && start !== 1) node.start = start;
  const items = [];
  let item = null;
  while (i < lines.length) {
    const line = lines[i];
    const m = ITEM.exec(line);
    if (m && /\d/.test(m[2]) === ordered && (!item || m[1].length < item.indent)) {
      const gap = m[3] ? Math.min(m[3].length, 4) : 1;
      item = { indent: m[1].length + m[2].length + gap, lines: [m[4] ?? ''] };
      items.push(item);
    } else if (BLANK.test(line)) {
      let j = i + 1;
      while (j < lines.length && BLANK.test(lines[j])) j += 1;
      const next = lines[j];
      const sameKind = next !== undefined && ITEM.test(next)
        && /\d/.test(ITEM.exec(next)[2]) === ordered && ITEM.exec(next)[1].length < item.indent;
      const indented = next !== undefined && /^\s+/.exec(next)?.[0].length >= Math.min(item.indent, 4);
      if (!sameKind && !indented) break;
      item.lines.push('');
    } else if (/^\s/.test(line) || !startsBlock(lines, i)) {
      item.lines.push(line.replace(new RegExp(`^ {0,${item.indent}}`), ''));
    } else {
      break;
    }
    i += 1;
  }
  for (const { lines: body } of items) {
    const li = el('li');
    const task = /^\[([ xX])\]\s+/.exec(body[0]);
    if (task) body[0] = body[0].slice(task[0].length);
    renderBlocks(body, li, options, depth + 1);
    if (task) {
      const box = el('input');
      box.type = 'checkbox';
      box.checked = task[1] !== ' ';
      box.disabled = true;
      li.className = 'task';
      const first = li.firstElementChild?.tagName === 'P' ? li.firstElementChild : li;
      first.prepend(box, ' ');
    }
    node.append(li);
  }
  parent.append(node);
  return i;
}

function isTableStart(lines, i) {
  const next = lines[i + 1];
  return next !== undefined && lines[i].includes('|') && TABLE_DELIM.test(next)
    && next.includes('-') && (next.includes('|') || lines[i].trim().startsWith('|'));
}

function cells(line) {
  let text = line.trim();
  if (text.startsWith('|')) text = text.slice(1);
  if (text.endsWith('|') && !text.endsWith('\\|')) text = text.slice(0, -1);
  return text.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, '|'));
}

function table(lines, i, parent) {
  const header = cells(lines[i]);
  const align = cells(lines[i + 1]).map((c) => {
    if (c.startsWith(':') && c.endsWith(':')) return 'center';
    if (c.endsWith(':')) return 'right';
    return c.startsWith(':') ? 'left' : '';
  });
  const wrap = el('div');
  wrap.className = 'table-wrap';
  const tableNode = el('table');
  const row = (texts, tag) => {
    const tr = el('tr');
    header.forEach((_, k) => {
      const cell = el(tag);
      if (align[k]) cell.className = `align-${align[k]}`;
      renderInline(texts[k] ?? '', cell, 0);
      tr.append(cell);
    });
    return tr;
  };
  const thead = el('thead');
  thead.append(row(header, 'th'));
  const tbody = el('tbody');
  let j = i + 2;
  for (; j < lines.length && !BLANK.test(lines[j]) && lines[j].includes('|'); j += 1) {
    tbody.append(row(cells(lines[j]), 'td'));
  }
  tableNode.append(thead, tbody);
  wrap.append(tableNode);
  parent.append(wrap);
  return j;
}

/**
 * A URL that is safe to put in href (http, https, mailto), or null.
 * @param {string} raw
 * @returns {string|null}
 */
export function safeHref(raw) {
  try {
    const url = new URL(raw, document.baseURI);
    return ['http:', 'https:', 'mailto:'].includes(url.protocol) ? url.href : null;
  } catch {
    return null;
  }
}

function link(href, label) {
  const a = el('a', label);
  a.href = href;
  a.target = '_blank';
  a.rel = 'noopener noreferrer nofollow';
  return a;
}

// [label](url "title") starting at text[i] === '['; returns {label, url, end} or null
function parseLink(text, i) {
  let depth = 0;
  let j = i;
  for (; j < text.length; j += 1) {
    if (text[j] === '\\') j += 1;
    else if (text[j] === '[') depth += 1;
    else if (text[j] === ']' && --depth === 0) break;
  }
  if (j >= text.length || text[j + 1] !== '(') return null;
  const m = /^\(\s*<?((?:[^\s()<>\\]|\\.|\([^\s()]*\))*)>?(?:\s+(?:"[^"]*"|'[^']*'))?\s*\)/.exec(text.slice(j + 1));
  if (!m) return null;
  return { label: text.slice(i + 1, j), url: m[1], end: j + 1 + m[0].length };
}

const DELIMS = [['***', 'strong-em'], ['**', 'strong'], ['__', 'strong'], ['~~', 'del'], ['*', 'em'], ['_', 'em']];

function findClose(text, delim, from) {
  for (let j = text.indexOf(delim, from); j >= 0; j = text.indexOf(delim, j + 1)) {
    if (/\s/.test(text[j - 1])) continue;
    if (delim.length === 1 && (text[j + 1] === delim || text[j - 1] === delim)) continue;
    if (delim[0] === '_' && /[\p{L}\p{N}]/u.test(text[j + delim.length] ?? '')) continue;
    return j;
  }
  return -1;
}

function renderInline(text, parent, depth) {
  if (text.length > MAX_INLINE || depth >= MAX_DEPTH) {
    parent.append(text);
    return;
  }
  const noClose = new Set(); // a delimiter with no closer after i has none after any later i
  let buffer = '';
  const flush = () => {
    if (buffer) parent.append(buffer); // a string becomes a text node: never parsed as HTML
    buffer = '';
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    const rest = text.slice(i, i + 8);
    if (c === '\\' && PUNCT.test(text[i + 1] ?? '')) {
      buffer += text[i + 1];
      i += 2;
      continue;
    }
    if (c === '\n') {
      flush();
      parent.append(el('br'));
      i += 1;
      continue;
    }
    if (c === '`') {
      const run = /^`+/.exec(text.slice(i))[0];
      let end = text.indexOf(run, i + run.length);
      while (end >= 0 && text[end + run.length] === '`') end = text.indexOf(run, end + run.length + 1);
      if (end < 0) {
        buffer += run;
        i += run.length;
        continue;
      }
      flush();
      let code = text.slice(i + run.length, end).replace(/\n/g, ' ');
      if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
      parent.append(el('code', code));
      i = end + run.length;
      continue;
    }
    if ('*_~'.includes(c)) {
      const delim = DELIMS.find(([d]) => rest.startsWith(d));
      const prevWordChar = /[\p{L}\p{N}]/u.test(text[i - 1] ?? '');
      if (delim && !noClose.has(delim[0]) && !/\s/.test(text[i + delim[0].length] ?? ' ')
          && !(c === '_' && prevWordChar)) {
        const [d, kind] = delim;
        const end = findClose(text, d, i + d.length + 1);
        if (end < 0) {
          noClose.add(d);
        } else {
          flush();
          const outer = el(kind === 'del' ? 'del' : kind === 'em' ? 'em' : 'strong');
          let inner = outer;
          if (kind === 'strong-em') {
            inner = el('em');
            outer.append(inner);
          }
          renderInline(text.slice(i + d.length, end), inner, depth + 1);
          parent.append(outer);
          i = end + d.length;
          continue;
        }
      }
      buffer += c;
      i += 1;
      continue;
    }
    if (c === '[' || (c === '!' && text[i + 1] === '[')) {
      const image = c === '!';
      const parsed = parseLink(text, image ? i + 1 : i);
      if (parsed) {
        const href = safeHref(parsed.url.replace(/\\(.)/g, '$1'));
        flush();
        if (image) {
          const label = `[image: ${parsed.label || parsed.url}]`;
          parent.append(href ? link(href, label) : label);
        } else if (href) {
          const a = link(href, '');
          renderInline(parsed.label, a, depth + 1);
          parent.append(a);
        } else {
          renderInline(parsed.label, parent, depth + 1);
        }
        i = parsed.end;
        continue;
      }
    }
    if ((c === 'h' || c === '<') && (i === 0 || /[\s(*_]/.test(text[i - 1]) || c === '<')) {
      const m = /^<?(https?:\/\/[^\s<>"'`]+)/.exec(text.slice(i));
      if (m) {
        let url = m[1];
        let consumed = m[0].length;
        if (c === '<' && url.endsWith('>')) url = url.slice(0, -1);
        const trailing = /[.,;:!?'")\]]+$/.exec(url);
        if (c !== '<' && trailing) {
          let cut = trailing[0];
          if (cut.startsWith(')') && url.includes('(')) cut = cut.slice(1);
          url = url.slice(0, url.length - cut.length);
          consumed -= cut.length;
        }
        const href = safeHref(url);
        if (href) {
          flush();
          parent.append(link(href, url));
          i += consumed + (c === '<' && text[i + consumed] === '>' ? 1 : 0);
          continue;
        }
      }
    }
    buffer += c;
    i += 1;
  }
  flush();
}
