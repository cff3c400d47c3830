// The time bar: a slider over the log's time span (GET /api/v1/history/span: its oldest
// record to the server's time now), a date-and-time field for an exact moment, and a Live
// button back to now; and the banner that says a past moment is shown. Choosing a moment
// changes the URL hash (moment.js), which the router follows like any other link.
import {get} from './api.js';
import {h, when} from './dom.js';
import {routeAt} from './moment.js';
import {icon} from './status.js';
import {toast} from './ui.js';

const STEPS = 600; // the slider's positions across the span (at least a second apart)
const SETTLE_MS = 350; // arrow keys held on the slider: one moment read, where it stops

const bar = document.getElementById('timebar');
const range = document.getElementById('as-of-range');
const field = document.getElementById('as-of-input');
const liveButton = document.getElementById('as-of-live');
const banner = document.getElementById('as-of-banner');
let shown = null; // the moment shown (null: live)

/** 'YYYY-MM-DDTHH:MM:SS' in the reader's time zone, as a datetime-local field holds it. */
function localField(ms) {
  const d = new Date(ms);
  return new Date(ms - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
}

function go(moment) {
  location.hash = routeAt(location.hash, moment);
}

function choose(ms) {
  if (!Number.isFinite(ms)) {
    toast('As of: give a date and a time.', 'error');
    return;
  }
  if (ms > Date.now()) {
    toast('As of: that moment is in the future; the past only.', 'error');
    return;
  }
  go(new Date(ms).toISOString());
}

/** Stretch the slider over the log's span, now included (read again on each use); with
 * `place`, put its thumb at the moment shown (the right end: now). */
async function readSpan(place = false) {
  try {
    const span = await get('/api/v1/history/span');
    const now = Date.parse(span.now);
    let first = span.first_time ? Date.parse(span.first_time) : now - 3600e3;
    if (shown) first = Math.min(first, Date.parse(shown));
    const step = Math.max(1000, Math.round((now - first) / STEPS / 1000) * 1000);
    // The steps count back from now, so that the right end (now, live) is one of them.
    range.min = String(now - Math.ceil((now - first) / step) * step);
    range.max = String(now);
    range.step = String(step);
    if (place) range.value = String(shown ? Date.parse(shown) : now);
    describe();
  } catch (error) {
    range.disabled = true; // no read_tasks, or the server is away: the field still works
  }
}

function describe() {
  const ms = Number(range.value);
  range.setAttribute('aria-valuetext', shown || ms < Number(range.max) ? when(new Date(ms).toISOString())
    : 'now (live)');
}

/** Set up the bar once the dashboard starts. */
export function start() {
  bar.hidden = false;
  liveButton.prepend(icon('play'));
  document.getElementById('as-of-go').prepend(icon('clock'));
  range.addEventListener('pointerdown', () => readSpan());
  range.addEventListener('focus', () => readSpan());
  range.addEventListener('input', () => {
    field.value = localField(Number(range.value));
    describe();
  });
  let settling = null;
  range.addEventListener('change', () => {
    clearTimeout(settling);
    settling = setTimeout(() => {
      const ms = Number(range.value);
      // The right end is now: live (within a step, as now moves on while it is read).
      if (ms >= Number(range.max) - Number(range.step)) go(null);
      else choose(ms);
    }, SETTLE_MS);
  });
  bar.addEventListener('submit', (event) => {
    event.preventDefault();
    choose(field.value ? new Date(field.value).getTime() : NaN);
  });
  liveButton.addEventListener('click', () => go(null));
  readSpan(true);
}

export function stop() {
  bar.hidden = banner.hidden = true;
  document.body.classList.remove('past');
}

/** Show the moment of the route: the banner, the fields, the Live button's state. */
export function render(moment) {
  const changed = moment !== shown;
  shown = moment;
  document.body.classList.toggle('past', Boolean(moment));
  liveButton.setAttribute('aria-pressed', moment ? 'false' : 'true');
  banner.hidden = !moment;
  if (moment) {
    banner.replaceChildren(icon('clock'), h('span', {},
      'Viewing ', h('time', {datetime: moment, title: moment}, when(moment)), ', not live: ',
      'live updates are paused and actions are off. '),
    h('button', {type: 'button', class: 'small'}, icon('play'), 'Back to live'));
    banner.querySelector('button').addEventListener('click', () => go(null));
    field.value = localField(Date.parse(moment));
  } else if (changed) {
    field.value = '';
  }
  if (changed) readSpan(true);
}
