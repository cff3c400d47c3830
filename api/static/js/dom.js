// Building the DOM without innerHTML (no markup from data can ever run) and formatting
// times, durations and numbers for people.

/** An element: h('a', {href: '#/', class: 'x', onclick: fn}, 'text', child, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') el.className = value;
    else if (name.startsWith('on')) el.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name === 'value' || name === 'checked' || name === 'indeterminate') el[name] = value;
    else el.setAttribute(name, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Set an element's text only when it differs (no layout work for an unchanged cell). */
export function setText(el, text) {
  const value = String(text ?? '');
  if (el.textContent !== value) el.textContent = value;
}

const NUMBER = new Intl.NumberFormat();
export const num = (n) => (n === null || n === undefined ? '–' : NUMBER.format(n));

export function pct(part, whole) {
  if (!whole) return '–';
  const value = (100 * part) / whole;
  return `${value < 10 && value > 0 ? value.toFixed(1) : Math.round(value)} %`;
}

// Formatters made once: toLocaleTimeString builds one per call, which was most of a
// render's time in a burst of task updates.
const TIME = new Intl.DateTimeFormat([], {hour: '2-digit', minute: '2-digit', second: '2-digit'});
const DATE = new Intl.DateTimeFormat([], {year: 'numeric', month: 'short', day: 'numeric'});

/** A time as the reader's local clock shows it: the time of day today, else the date too. */
export function when(iso) {
  if (!iso) return '–';
  const d = new Date(iso);
  const time = TIME.format(d);
  const today = new Date();
  if (d.getFullYear() === today.getFullYear() && d.getMonth() === today.getMonth()
    && d.getDate() === today.getDate()) return time;
  return `${DATE.format(d)} ${time}`;
}

/** A <time> element: the local time shown, the exact ISO time as its title. */
export function timeEl(iso, text) {
  if (!iso) return h('span', {class: 'muted'}, '–');
  return h('time', {datetime: iso, title: iso}, text ?? when(iso));
}

/** Make the <time> element `el` show `iso` as timeEl does, in place. */
export function setTime(el, iso) {
  if (el.dateTime === (iso || '')) return;
  el.dateTime = iso || '';
  el.title = iso || '';
  setText(el, when(iso));
}

/** "5 s ago", "in 3 min". */
export function ago(iso, now = Date.now()) {
  if (!iso) return '–';
  const seconds = Math.round((now - Date.parse(iso)) / 1000);
  const text = duration(Math.abs(seconds) * 1000, true);
  return seconds >= 0 ? `${text} ago` : `in ${text}`;
}

/** "5 s ago" that tickAgo keeps current. */
export function agoEl(iso) {
  return h('div', {class: 'muted', dataset: {ago: iso}}, ago(iso));
}

/** Bring every agoEl in box up to now (a timer calls it: relative times move without data). */
export function tickAgo(box) {
  const now = Date.now();
  for (const el of box.querySelectorAll('[data-ago]')) setText(el, ago(el.dataset.ago, now));
}

/** "850 ms", "12.3 s", "4 min 5 s", "2 h 3 min", "3 d 4 h". */
export function duration(ms, coarse = false) {
  if (ms === null || ms === undefined) return '–';
  if (ms < 1000) return coarse ? `${Math.round(ms / 1000)} s` : `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return coarse || s >= 10 ? `${Math.round(s)} s` : `${s.toFixed(1)} s`;
  const units = [[86400, 'd'], [3600, 'h'], [60, 'min'], [1, 's']];
  let rest = Math.round(s);
  const parts = [];
  for (const [size, name] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)} ${name}`);
      rest %= size;
    } else if (parts.length) break;
  }
  return parts.join(' ');
}

/** JSON for reading: pretty-printed, "null" for nothing. */
export const pretty = (value) => JSON.stringify(value ?? null, null, 2);

/** The hash route's query as an object, and back. */
export function queryOf(search) {
  return Object.fromEntries(new URLSearchParams(search || ''));
}
export function hashWith(path, query) {
  const params = new URLSearchParams(
    Object.entries(query).filter(([, v]) => v !== '' && v !== undefined && v !== null));
  const text = params.toString();
  return `#${path}${text ? `?${text}` : ''}`;
}
