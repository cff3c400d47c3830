// Rendering at most once per animation frame, toasts, and the confirmation dialog.
import {h} from './dom.js';

/** fn wrapped so that any number of calls within a frame run it once, before the paint:
 * a burst of a thousand updates a second costs one render per frame, not one per update. */
export function perFrame(fn) {
  let queued = false;
  return () => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn();
    });
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

/** A button that runs an action once confirmed, then says how it went in a toast. */
export async function confirmThen({title, text, confirmLabel, action, done}) {
  if (!(await confirmAction(title, text, confirmLabel))) return;
  try {
    const result = await action();
    toast(done(result), 'ok');
  } catch (error) {
    toast(`${title}: ${error.message}`, 'error');
  }
}
