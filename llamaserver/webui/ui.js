// Small DOM helpers shared by the views: element building, icons, clipboard, toasts.

// The page's elements by id: elements({ name: 'element-id', ... }) -> { name: element, ... }.
export function elements(ids) {
  return Object.fromEntries(Object.entries(ids).map(([name, id]) => [name, document.getElementById(id)]));
}

/**
 * Make an element. `props`: className, text (as a text node), attrs, on (event listeners).
 * @returns {HTMLElement}
 */
export function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  if (props.className) node.className = props.className;
  if (props.text !== undefined) node.textContent = props.text;
  for (const [name, value] of Object.entries(props.attrs ?? {})) {
    if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? '' : value);
  }
  for (const [event, listener] of Object.entries(props.on ?? {})) node.addEventListener(event, listener);
  node.append(...children);
  return node;
}

// 24x24 stroke icons, drawn for this page
const ICONS = {
  copy: 'M9 9h10v12H9zM5 15H4V3h11v1',
  check: 'M4 12l5 5L20 6',
  trash: 'M4 7h16M9 7V4h6v3M6 7l1 14h10l1-14M10 11v6M14 11v6',
  plus: 'M12 5v14M5 12h14',
  send: 'M12 20V5M5 11l7-7 7 7',
  stop: 'M7 7h10v10H7z',
  menu: 'M4 6h16M4 12h16M4 18h16',
  close: 'M6 6l12 12M18 6L6 18',
  sliders: 'M4 7h9M17 7h3M4 17h3M11 17h9M15 5v4M9 15v4',
  sun: 'M12 8a4 4 0 1 0 0 8a4 4 0 1 0 0-8M12 2v2M12 20v2M2 12h2M20 12h2M5 5l1.5 1.5M17.5 17.5L19 19M5 19l1.5-1.5M17.5 6.5L19 5',
  moon: 'M20 14.5A8 8 0 0 1 9.5 4a8 8 0 1 0 10.5 10.5z',
  auto: 'M12 3a9 9 0 1 0 0 18a9 9 0 1 0 0-18M12 3v18',
  image: 'M4 5h16v14H4zM4 16l5-5 4 4 2-2 5 5M15 9.5a1 1 0 1 0 0 .1',
  retry: 'M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7',
  chat: 'M4 5h16v11H9l-5 4z',
  text: 'M5 6h14M5 10h14M5 14h10M5 18h7',
};

/** An inline SVG icon (decorative: the button around it carries the label). */
export function icon(name) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('class', 'icon');
  const path = document.createElementNS(ns, 'path');
  path.setAttribute('d', ICONS[name] ?? '');
  svg.append(path);
  return svg;
}

/** Put an icon (and optionally a visible label) into a button that has an aria-label. */
export function iconButton(name, label, { className = 'icon-button', text = '', on = {} } = {}) {
  const button = h('button', { className, attrs: { type: 'button', 'aria-label': label, title: label }, on });
  button.append(icon(name));
  if (text) button.append(h('span', { text }));
  return button;
}

/** Copy text to the clipboard, and say so on the button for a moment. */
export async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // no Clipboard API outside secure contexts (http://LAN-address): the old way still works
    const area = h('textarea', { className: 'offscreen', attrs: { readonly: true } });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    area.remove();
  }
  if (button) {
    // icon buttons show a check mark, text buttons say it
    const svg = button.querySelector('svg');
    const before = svg ? svg.cloneNode(true) : button.textContent;
    if (svg) svg.replaceWith(icon(ok ? 'check' : 'close'));
    else button.textContent = ok ? 'Copied' : 'Copy failed';
    button.classList.add(ok ? 'copied' : 'copy-failed');
    setTimeout(() => {
      button.classList.remove('copied', 'copy-failed');
      if (svg) button.querySelector('svg')?.replaceWith(before);
      else button.textContent = before;
    }, 1500);
  }
  return ok;
}

/** A short notice at the bottom; `action` adds a button (e.g. Undo). */
export function toast(message, { action = null, timeout = 5000 } = {}) {
  const host = document.getElementById('toasts');
  const node = h('div', { className: 'toast', attrs: { role: 'status' } }, [h('span', { text: message })]);
  const close = () => node.remove();
  if (action) {
    node.append(h('button', { text: action.label, attrs: { type: 'button' }, on: { click: () => { close(); action.run(); } } }));
  }
  host.append(node);
  setTimeout(close, timeout);
  return close;
}

/** Grow a textarea with its content (up to its CSS max-height). */
export function autoGrow(area) {
  area.style.height = 'auto';
  area.style.height = `${area.scrollHeight + 2}px`;
}

/** "12 tokens · 48.2 tokens/s" from the server's timings object. */
export function describeTimings(timings) {
  if (!timings || !Number.isFinite(timings.predicted_per_second)) return '';
  const n = timings.predicted_n ?? 0;
  return `${n} token${n === 1 ? '' : 's'} · ${timings.predicted_per_second.toFixed(1)} tokens/s`;
}

export function timingsDetail(timings) {
  if (!timings) return '';
  const fmt = (x) => (Number.isFinite(x) ? x.toFixed(1) : '?');
  return `prompt: ${timings.prompt_n ?? '?'} tokens in ${fmt(timings.prompt_ms)} ms (${fmt(timings.prompt_per_second)} tokens/s)\n`
    + `generation: ${timings.predicted_n ?? '?'} tokens in ${fmt(timings.predicted_ms)} ms (${fmt(timings.predicted_per_second)} tokens/s)`;
}
