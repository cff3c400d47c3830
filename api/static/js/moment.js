// The moment the dashboard shows: live (null), or a past time (an RFC 3339 string) the
// operator picked on the time bar. It lives in the URL hash (`as_of=` in the route's query,
// #/tasks?status=failed&as_of=2026-12-06T05:30:00.000Z), so a link to a past moment can be
// shared. While a past moment is shown every read passes it as `as_of` (the server folds
// the log up to then: docs/audit.md), the views take no live updates, and actions are off:
// the past cannot be cancelled. Back to live, the views are mounted again: they read the
// state now, then follow the WebSocket as on a first load (no update lost).
import {get} from './api.js';

let asOf = null;

export const pastMoment = () => asOf;

export function setMoment(value) {
  asOf = value || null;
}

/** An API path with the moment's as_of added (unchanged while live). */
export function atMoment(path) {
  if (!asOf) return path;
  return `${path}${path.includes('?') ? '&' : '?'}as_of=${encodeURIComponent(asOf)}`;
}

/** GET path as of the moment. */
export const getAt = (path) => get(atMoment(path));

export const PAST_TITLE = 'Showing a past moment: actions are off (back to live to act).';

/** Turn the action buttons off while a past moment is shown (they stay visible, so the
 * page looks as it did, with the reason as their title). */
export function offInThePast(...buttons) {
  if (!asOf) return;
  for (const button of buttons) {
    button.disabled = true;
    button.title = PAST_TITLE;
  }
}

/** A hash route (#/tasks?x=y) with the moment's as_of set, or removed for null. */
export function routeAt(hash, moment) {
  const [path, query = ''] = hash.replace(/^#/, '').split('?');
  const params = new URLSearchParams(query);
  if (moment) params.set('as_of', moment);
  else params.delete('as_of');
  const text = params.toString();
  return `#${path || '/'}${text ? `?${text}` : ''}`;
}

/** The as_of of a hash route, and its query without it (for the view). */
export function splitRoute(query) {
  const params = new URLSearchParams(query || '');
  const moment = params.get('as_of');
  params.delete('as_of');
  return {moment, query: params.toString()};
}
