// Workers and queues: each worker's current tasks and last heartbeat, lost ones first to
// the eye; each queue's tasks, pause and last hour, with pause and resume. The queues come
// with the stats channel; the workers are read again whenever it says something changed
// (a stats message: at most once a second, and on every worker start, heartbeat and loss).
import {get} from '../api.js';
import {agoEl, h, num, pct, tickAgo, timeEl} from '../dom.js';
import {can} from '../session.js';
import {TASK_STATUSES, badge} from '../status.js';
import {oneAtATime, perFrame} from '../ui.js';
import {setPaused} from './overview.js';

const SHOWN = 100; // workers drawn at most; the rest are counted
const ORDER = {lost: 0, alive: 1, stopped: 2};

export function mount(root, {live}) {
  const workersBody = h('tbody');
  const workersNote = h('p', {class: 'empty'}, 'Loading…');
  const queuesBody = h('tbody');
  const queuesNote = h('p', {class: 'empty', hidden: true}, 'No queues yet.');
  root.append(h('h1', {}, 'Workers & queues'),
    h('section', {'aria-labelledby': 'h-workers'}, h('h2', {id: 'h-workers'}, 'Workers'),
      h('div', {class: 'table-wrap'}, h('table', {id: 'workers-table'},
        h('caption', {class: 'visually-hidden'}, 'Workers: lost first, then alive, then stopped'),
        h('thead', {}, h('tr', {}, ...['Status', 'Worker', 'Host', 'Current tasks', 'Last heartbeat',
          'Slots', 'CPU', 'Memory', 'Registered'].map((t) => h('th', {scope: 'col'}, t)))),
        workersBody), workersNote)),
    h('section', {'aria-labelledby': 'h-queues'}, h('h2', {id: 'h-queues'}, 'Queues'),
      h('div', {class: 'table-wrap'}, h('table', {id: 'queues-table'},
        h('caption', {class: 'visually-hidden'}, 'Queues by name'),
        h('thead', {}, h('tr', {}, ...['Queue', 'State', 'Tasks now', 'Completed, last hour',
          'Failed, last hour', 'Failure rate', 'Actions'].map((t) => h('th', {scope: 'col'}, t)))),
        queuesBody), queuesNote)));

  let workers = [];
  const render = perFrame(() => {
    drawWorkers(workersBody, workersNote, workers);
    drawQueues(queuesBody, queuesNote, live.stats);
  });

  const load = oneAtATime(async () => {
    try {
      workers = await get('/api/v1/workers');
      render();
    } catch (error) {
      workersNote.hidden = false;
      workersNote.textContent = `Could not read the workers: ${error.message}`;
    }
  });

  const off = live.on('stats', () => {
    load();
    render();
  });
  const tick = setInterval(() => tickAgo(workersBody), 1000);
  load();
  return () => {
    off();
    clearInterval(tick);
  };
}

function drawWorkers(tbody, note, workers) {
  const sorted = [...workers].sort((a, b) => (ORDER[a.status] ?? 3) - (ORDER[b.status] ?? 3)
    || (a.last_heartbeat < b.last_heartbeat ? 1 : -1));
  const rows = sorted.slice(0, SHOWN).map((w) => h('tr',
    {class: w.status === 'lost' ? 'lost' : '', dataset: {workerId: w.worker_id, status: w.status}},
    h('td', {}, badge(w.status)),
    h('td', {class: 'mono'}, w.worker_id),
    h('td', {}, `${w.hostname} (pid ${w.pid})`),
    h('td', {}, w.current_tasks.length
      ? h('ul', {class: 'counts'}, w.current_tasks.slice(0, 10).map((id) => h('li', {},
        h('a', {href: `#/tasks/${encodeURIComponent(id)}`, class: 'mono', title: id}, id.slice(0, 13)))),
      w.current_tasks.length > 10 ? h('li', {class: 'muted'}, `${w.current_tasks.length - 10} more`) : null)
      : h('span', {class: 'muted'}, 'none')),
    h('td', {}, timeEl(w.last_heartbeat), agoEl(w.last_heartbeat)),
    h('td', {class: 'num'}, num(w.concurrency)),
    h('td', {class: 'num'}, `${w.cpu_usage_percent.toFixed(1)} %`),
    h('td', {class: 'num'}, `${Math.round(w.memory_usage_mb)} MB`),
    h('td', {}, timeEl(w.registered_at))));
  if (sorted.length > SHOWN) {
    rows.push(h('tr', {}, h('td', {colspan: 9, class: 'muted'},
      `${num(sorted.length - SHOWN)} more workers (stopped long ago) not shown`)));
  }
  tbody.replaceChildren(...rows);
  note.hidden = workers.length > 0;
  note.textContent = 'No workers have registered.';
}

function drawQueues(tbody, note, stats) {
  if (!stats) return;
  const focused = document.activeElement?.dataset?.queue;
  const entries = Object.entries(stats.by_queue);
  tbody.replaceChildren(...entries.map(([name, q]) => {
    const toggle = h('button', {type: 'button', class: 'small secondary', dataset: {queue: name},
      hidden: !can('admin'),
      'aria-label': `${q.paused ? 'Resume' : 'Pause'} queue ${name}`}, q.paused ? 'Resume' : 'Pause');
    toggle.addEventListener('click', () => setPaused(name, !q.paused));
    const present = TASK_STATUSES.filter((s) => q.counts[s]);
    const ended = q.last_hour.completed + q.last_hour.failed;
    return h('tr', {dataset: {queue: name}},
      h('td', {}, h('a', {href: `#/tasks?queue=${encodeURIComponent(name)}`}, name)),
      h('td', {}, badge(q.paused ? 'paused' : 'active')),
      h('td', {}, present.length ? h('ul', {class: 'counts'}, present.map((s) => h('li', {}, badge(s, q.counts[s]))))
        : h('span', {class: 'muted'}, 'none')),
      h('td', {class: 'num'}, num(q.last_hour.completed)),
      h('td', {class: 'num'}, num(q.last_hour.failed)),
      h('td', {class: 'num'}, pct(q.last_hour.failed, ended)),
      h('td', {}, toggle));
  }));
  if (focused) tbody.querySelector(`button[data-queue="${CSS.escape(focused)}"]`)?.focus();
  note.hidden = entries.length > 0;
}
