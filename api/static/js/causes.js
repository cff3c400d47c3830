// Why an event happened. In a task's timeline each event says what directly caused it (its
// causation_id: an event of the same timeline, another task's event, a request or a
// schedule fire; docs/events.md "Causal ids"), and a "why?" button reads the whole chain
// (GET /api/v1/events/{id}/causes) and shows it back to its origin, with a link to each
// other task on the way (a child job's parent).
import {get} from './api.js';
import {h, timeEl} from './dom.js';
import {icon} from './status.js';

/** What a causation id that is no job event names: [words, link or null]. */
export function origin(id) {
  if (!id) return ['no recorded cause: enqueued by code or a producer that named none', null];
  const fire = /^schedule:([^:]+):(.+)$/.exec(id);
  if (fire) {
    const manual = fire[1].startsWith('manual-');
    const at = manual ? 'triggered by hand' : `due ${new Date(Number(fire[1])).toISOString()}`;
    return [`a fire of schedule ${fire[2]} (${at})`, {href: '#/schedules', text: 'Schedules'}];
  }
  return [`the request ${id} (its X-Request-ID)`, null];
}

const short = (id) => (id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id);

/** The "why?" of one task's timeline: the chains read so far and which are open, kept
 * across the timeline's redraws (a chain of past events never changes). */
export class Why {
  constructor(taskId) {
    this.taskId = taskId;
    this.chains = new Map(); // event id -> the causes answer
    this.open = new Set();
  }

  /** "caused by …" for an entry of a timeline whose entries are `byId` (event id -> entry). */
  causedBy(entry, byId) {
    const cause = entry.causation_id;
    const known = cause && byId.get(cause);
    let what;
    if (known) {
      what = `${known.type}${known.attempt !== null ? ` (attempt ${known.attempt})` : ''}`;
    } else if (!cause || cause.startsWith('schedule:')) {
      what = origin(cause)[0];
    } else {
      // A request's id and another task's event id look alike: the chain tells which.
      what = `${short(cause)}, outside this task (why? says what)`;
    }
    return h('span', {class: 'cause', dataset: {causationId: cause || ''},
      title: `causation id ${cause || 'none'}; correlation id ${entry.correlation_id || 'none'}`},
    'caused by ', what);
  }

  /** The "why?" button and the box the chain shows in, under it: {button, box}. */
  button(entry) {
    const id = `causes-${entry.event_id}`;
    const box = h('div', {id, class: 'causes-box', hidden: !this.open.has(entry.event_id)});
    const button = h('button', {type: 'button', class: 'small secondary why',
      dataset: {eventId: entry.event_id},
      'aria-expanded': String(this.open.has(entry.event_id)), 'aria-controls': id,
      'aria-label': `why? The causes of ${entry.type} (log ${entry.partition}:${entry.offset}) back to its origin`},
    icon('info'), 'why?');
    const show = async () => {
      box.hidden = false;
      button.setAttribute('aria-expanded', 'true');
      this.open.add(entry.event_id);
      if (!this.chains.has(entry.event_id)) {
        box.replaceChildren(h('p', {class: 'muted'}, 'Reading the causes…'));
        try {
          this.chains.set(entry.event_id,
            await get(`/api/v1/events/${encodeURIComponent(entry.event_id)}/causes`));
        } catch (error) {
          box.replaceChildren(h('p', {class: 'error'}, `Could not read the causes: ${error.message}`));
          return;
        }
      }
      box.replaceChildren(this.chain(this.chains.get(entry.event_id)));
    };
    button.addEventListener('click', () => {
      if (!this.open.has(entry.event_id)) {
        show();
        return;
      }
      this.open.delete(entry.event_id);
      box.hidden = true;
      button.setAttribute('aria-expanded', 'false');
    });
    if (this.open.has(entry.event_id)) show();
    return {button, box};
  }

  /** The chain: the event, its cause, its cause's cause…, then the origin. */
  chain(entries) {
    const last = entries[entries.length - 1];
    const [words, link] = origin(last?.causation_id);
    return h('ol', {class: 'causes', 'aria-label': 'Causes, from this event back to the origin'},
      entries.map((e) => {
        const taskId = e.event?.job_id;
        return h('li', {dataset: {type: e.type, eventId: e.event_id, taskId: taskId || ''}},
          h('strong', {}, e.type), ' ', timeEl(e.time),
          e.attempt !== null ? ` attempt ${e.attempt}` : '',
          taskId && taskId !== this.taskId
            ? [' of task ', h('a', {href: `#/tasks/${encodeURIComponent(taskId)}`, class: 'mono'},
              short(taskId))] : null,
          h('span', {class: 'muted mono'}, ` log ${e.partition}:${e.offset}`));
      }),
      h('li', {class: 'origin', dataset: {origin: last?.causation_id || ''}}, 'origin: ', words,
        link ? [' ', h('a', {href: link.href}, link.text)] : null));
  }
}
