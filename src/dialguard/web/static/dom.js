// Tiny DOM helpers: elements are built with textContent only, never from HTML strings.

const SVG = 'http://www.w3.org/2000/svg';

function fill(el, attrs, children) {
  for (const [k, v] of Object.entries(attrs ?? {})) {
    if (v == null || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

/** h('a', {href: '#/live', class: 'x'}, 'text', child) */
export function h(tag, attrs, ...children) {
  return fill(document.createElement(tag), attrs, children);
}

export function s(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG, tag), attrs, children);
}

export const $ = (selector, root = document) => root.querySelector(selector);

/** Show a message in an element made for it (role=alert or status), or hide it when empty. */
export function say(el, message) {
  el.textContent = message ?? '';
  el.hidden = !message;
}

/** Replace an element's children, leaving out the null and false ones (replaceChildren writes "null"). */
export function put(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c != null && c !== false));
}
