// Statuses and log levels shown by an icon, their name in words and a colour (app.css):
// never by colour alone.

const SVG = 'http://www.w3.org/2000/svg';

// 16 x 16 line drawings: [elements], each [tag, attributes].
const SHAPES = {
  check: [['path', {d: 'M3 8.5l3.2 3.2L13 4.8'}]],
  cross: [['path', {d: 'M4 4l8 8M12 4l-8 8'}]],
  clock: [['circle', {cx: 8, cy: 8, r: 6.2}], ['path', {d: 'M8 4.6V8l2.4 1.6'}]],
  hourglass: [['path', {d: 'M4.5 2h7M4.5 14h7M5.5 2c0 3.2 5 3.8 5 6s-5 2.8-5 6M10.5 2c0 3.2-5 3.8-5 6s5 2.8 5 6'}]],
  spinner: [['path', {d: 'M8 1.8a6.2 6.2 0 1 1-6.2 6.2'}]],
  skull: [['path', {d: 'M8 1.8l6.4 11.4H1.6z'}], ['path', {d: 'M8 6.3v3.3M8 11.4v.2'}]],
  ban: [['circle', {cx: 8, cy: 8, r: 6.2}], ['path', {d: 'M3.6 3.6l8.8 8.8'}]],
  pause: [['path', {d: 'M5.8 3.5v9M10.2 3.5v9'}]],
  play: [['path', {d: 'M5 3.2l7.5 4.8L5 12.8z'}]],
  dot: [['circle', {cx: 8, cy: 8, r: 3.2, fill: 'currentColor'}]],
  heart: [['path', {d: 'M1.5 8.5h3l1.5-3.5 2.5 7 2-5 1 1.5h3'}]],
  unplugged: [['path', {d: 'M2 14l3-3M14 2l-3 3M6 6l4 4M4.5 7.5l4 4 1.5-1.5M7.5 4.5l4 4 1.5-1.5'}]],
  square: [['rect', {x: 4, y: 4, width: 8, height: 8}]],
  info: [['circle', {cx: 8, cy: 8, r: 6.2}], ['path', {d: 'M8 7.3v3.9M8 4.9v.2'}]],
  trace: [['path', {d: 'M2.5 8h2M7 8h2M11.5 8h2'}]],
  warn: [['path', {d: 'M8 1.8l6.4 11.4H1.6z'}], ['path', {d: 'M8 6.3v3.3M8 11.4v.2'}]],
  fatal: [['path', {d: 'M5.4 1.8h5.2l3.6 3.6v5.2l-3.6 3.6H5.4l-3.6-3.6V5.4z'}],
          ['path', {d: 'M8 5v3.6M8 10.8v.2'}]],
};

export function icon(name, spinning = false) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('viewBox', '0 0 16 16');
  svg.setAttribute('class', spinning ? 'icon spin' : 'icon');
  svg.setAttribute('aria-hidden', 'true');
  for (const [tag, attrs] of SHAPES[name] || SHAPES.dot) {
    const part = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) part.setAttribute(k, v);
    svg.append(part);
  }
  return svg;
}

// Every status of tasks, runs, workers and schedules: its icon and the words shown.
const LOOK = {
  scheduled: ['clock', 'scheduled'],
  pending: ['hourglass', 'pending'],
  in_progress: ['spinner', 'in progress'],
  completed: ['check', 'completed'],
  failed: ['cross', 'failed'],
  dead_letter: ['skull', 'dead letter'],
  cancelled: ['ban', 'cancelled'],
  RUNNING: ['spinner', 'running'],
  COMPLETED: ['check', 'completed'],
  FAILED: ['cross', 'failed'],
  CANCELLED: ['ban', 'cancelled'],
  alive: ['heart', 'alive'],
  stopped: ['square', 'stopped'],
  lost: ['unplugged', 'lost'],
  active: ['play', 'active'],
  paused: ['pause', 'paused'],
  running: ['spinner', 'running'],
  idle: ['dot', 'idle'],
};
const LEVELS = {TRACE: 'trace', INFO: 'info', WARN: 'warn', ERROR: 'cross', FATAL: 'fatal'};

export const TASK_STATUSES = ['scheduled', 'pending', 'in_progress', 'completed', 'failed',
  'dead_letter', 'cancelled'];
export const FINISHED = new Set(['completed', 'failed', 'dead_letter', 'cancelled']);
export const statusLabel = (status) => (LOOK[status] || ['dot', status])[1];

/** A status badge: icon, words, colour; `count` adds a number after the words. */
export function badge(status, count) {
  const el = document.createElement('span');
  el.append(document.createTextNode(''), document.createTextNode(''));
  setBadge(el, status);
  if (count !== undefined) {
    const n = document.createElement('span');
    n.className = 'n';
    n.textContent = new Intl.NumberFormat().format(count);
    el.append(' ', n);
  }
  return el;
}

/** Make the badge `el` (made by badge(), without a count) show `status`, in place. */
export function setBadge(el, status) {
  const [shape, words] = LOOK[status] || ['dot', String(status)];
  el.className = `badge s-${status}`;
  el.dataset.status = status;
  if (el.dataset.shape !== shape) {
    el.dataset.shape = shape;
    el.firstChild.replaceWith(icon(shape, shape === 'spinner'));
  }
  el.childNodes[1].nodeValue = words;
}

/** A log level badge: TRACE gray, INFO blue, WARN yellow, ERROR red, FATAL purple. */
export function levelBadge(level) {
  const el = document.createElement('span');
  el.className = `badge l-${level}`;
  el.dataset.level = level;
  el.append(icon(LEVELS[level] || 'dot'), level);
  return el;
}
