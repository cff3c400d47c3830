// Rendering at most once per animation frame, toasts, and the confirmation dialog.
import {h} from './dom.js';

/** fn wrapped so that any number of calls within a frame run it once, before the paint:
 * a burst of a thousand updates a second costs one render per frame, not one per update.
 * With `everyMs`, renders are also at least that far apart (the next waits for the frame
 * after), for a view whose every frame would otherwise redraw under a burst. */
export function perFrame(fn, everyMs = 0) {
  let queued = false;
  let last = -Infinity;
  const run = (now) => {
    queued = false;
    last = now;
    fn();
  };
  return () => {
    if (queued) return;
    queued = true;
    const wait = last + everyMs - performance.now();
    if (wait > 0) setTimeout(() => requestAnimationFrame(run), wait);
    else requestAnimationFrame(run);
  };
}

/** An async fn wrapped so that one call runs at a time: a call while one runs asks for one
 * more run after it (any number of such calls, one run), so the last state is always read. */
export function oneAtATime(fn) {
  let running = false;
  let again = false;
  const run = async () => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        run();
      }
    }
  };
  return run;
}

const MAX_TOASTS = 4;

/** A message in the corner for a few seconds; kind: 'ok', 'error' or 'info'. Read out by
 * screen readers (the region is aria-live). */
export function toast(message, kind = 'info', link = null) {
  const region = document.getElementById('toasts');
  const item = h('div', {class: `toast ${kind}`}, message,
    link ? [' ', h('a', {href: link.href}, link.text)] : null);
  region.append(item);
  while (region.children.length > MAX_TOASTS) region.firstElementChild.remove();
  setTimeout(() => item.remove(), kind === 'error' ? 9000 : 5000);
}

/** Ask before doing something that cannot be undone; resolves to true on confirm. */
export function confirmAction(title, text, confirmLabel = 'Confirm') {
  const dialog = document.getElementById('confirm');
  dialog.querySelector('#confirm-title').textContent = title;
  dialog.querySelector('#confirm-text').textContent = text;
  dialog.querySelector('#confirm-ok').textContent = confirmLabel;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'ok'), {once: true});
    dialog.showModal();
  });
}

/** Run an action once confirmed, then say how it went in a toast. done(result) gives the
 * toast's text, or [text, {href, text}] for a text with a link. */
export async function confirmThen({title, text, confirmLabel, action, done}) {
  if (!(await confirmAction(title, text, confirmLabel))) return;
  try {
    const said = done(await action());
    const [message, link] = Array.isArray(said) ? said : [said, null];
    toast(message, 'ok', link);
  } catch (error) {
    toast(`${title}: ${error.message}`, 'error');
  }
}
