// Task detail: the task's fields, payload, result, error and stack; every run (attempt)
// with its levelled log lines; progress; the whole history (every event of the task on the
// log) as a timeline; cancel and requeue. Kept live by the task channel: the server says
// when the task, its runs or its log lines change, and the page reads them again.
import {ApiError, get, post} from '../api.js';
import {can} from '../session.js';
import {ago, duration, h, num, pretty, setText, timeEl} from '../dom.js';
import {FINISHED, badge, levelBadge} from '../status.js';
import {progressCell} from './tasks.js';
import {confirmThen, oneAtATime, perFrame} from '../ui.js';

const RUNS_WITH_LOGS = 20; // the latest runs whose log lines are read

export function mount(root, {live, arg: taskId}) {
  const path = `/api/v1/tasks/${encodeURIComponent(taskId)}`;
  const head = h('div', {class: 'detail-head'});
  const status = h('span', {id: 'task-status'});
  const cancel = h('button', {type: 'button', class: 'danger', hidden: true}, 'Cancel task');
  const requeue = h('button', {type: 'button', hidden: true}, 'Requeue task');
  const facts = h('dl', {class: 'facts'});
  const progress = h('p');
  const payload = h('pre', {id: 'payload', tabindex: 0});
  const result = h('pre', {id: 'result', tabindex: 0});
  const error = h('section', {'aria-labelledby': 'h-error', hidden: true});
  const runs = h('div', {id: 'runs'});
  const runsTitle = h('h2', {id: 'h-runs'}, 'Runs');
  const timeline = h('ol', {class: 'timeline', id: 'history'});
  head.append(h('h1', {}, 'Task ', h('span', {class: 'mono'}, taskId)), status, cancel, requeue);
  root.append(
    h('p', {}, h('a', {href: '#/tasks'}, '← Tasks')), head, facts,
    h('section', {'aria-labelledby': 'h-progress'}, h('h2', {id: 'h-progress'}, 'Progress'), progress),
    h('div', {class: 'two'},
      h('section', {'aria-labelledby': 'h-payload'}, h('h2', {id: 'h-payload'}, 'Payload'), payload),
      h('section', {'aria-labelledby': 'h-result'}, h('h2', {id: 'h-result'}, 'Result'), result)),
    error,
    h('section', {'aria-labelledby': 'h-runs'}, runsTitle, runs),
    h('section', {'aria-labelledby': 'h-history'},
      h('h2', {id: 'h-history'}, 'History'),
      h('p', {class: 'muted'}, 'Every event of this task on the log, in log order.'), timeline),
  );

  let data = null;
  const open = new Set(); // run ids whose panel the reader opened (the latest is by default)
  const closed = new Set();
  const render = perFrame(() => data && draw(data));

  cancel.addEventListener('click', () => confirmThen({
    title: 'Cancel this task?',
    text: 'A waiting task is cancelled; a running one is asked to stop.',
    confirmLabel: 'Cancel task',
    action: () => post(`${path}/cancel`),
    done: (answer) => (answer.status === 204 ? 'Task cancelled.'
      : 'Cancel requested: the running handler was asked to stop.'),
  }));
  requeue.addEventListener('click', () => confirmThen({
    title: 'Requeue this task?',
    text: 'It starts over as pending, with a fresh retry budget.',
    confirmLabel: 'Requeue',
    action: () => post(`${path}/requeue`),
    done: () => 'Task requeued: it is pending again.',
  }));

  // One read at a time; a change told meanwhile reads again once it is done.
  const load = oneAtATime(async () => {
    try {
      data = await read(path);
      render();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) {
        root.replaceChildren(h('h1', {}, 'No such task'),
          h('p', {}, `There is no task ${taskId}. `, h('a', {href: '#/tasks'}, 'Back to the tasks.')));
      }
    }
  });

  function draw({task, runList, details, history}) {
    status.replaceChildren(badge(task.status));
    const mayCancel = can('cancel_tasks'); // else hidden: the server would refuse (403)
    cancel.hidden = !mayCancel || FINISHED.has(task.status);
    cancel.disabled = task.cancel_requested && task.status === 'in_progress';
    requeue.hidden = !mayCancel || !FINISHED.has(task.status);
    facts.replaceChildren(...fact('task type', task.task_type), ...fact('queue', task.queue),
      ...fact('priority', task.priority), ...fact('attempt', task.attempt),
      ...fact('failed attempts', `${task.retry_count} (retries allowed: ${task.max_retries ?? '–'})`),
      ...fact('timeout', task.timeout_seconds === null ? '–' : duration(task.timeout_seconds * 1000)),
      ...fact('worker', task.worker_id || '–'), ...fact('idempotency key', task.idempotency_key || '–'),
      ...fact('enqueued', timeEl(task.created_at)), ...fact('run at', timeEl(task.scheduled_at)),
      ...fact('started', timeEl(task.started_at)), ...fact('finished', timeEl(task.finished_at)),
      ...fact('updated', timeEl(task.updated_at, ago(task.updated_at))),
      ...fact('cancel requested', task.cancel_requested ? 'yes' : 'no'));
    progress.replaceChildren(...progressCell(task.progress));
    setText(payload, pretty(task.payload));
    setText(result, task.result === null ? 'no result yet' : pretty(task.result));
    drawError(task, runList, details);
    setText(runsTitle, `Runs (${runList.length})`);
    drawRuns(runList, details);
    timeline.replaceChildren(...history.map(historyItem));
  }

  function drawError(task, runList, details) {
    const last = runList[runList.length - 1];
    const stack = last && details.get(last.run_id)?.stack;
    error.hidden = !task.error;
    if (!task.error) return;
    error.replaceChildren(h('h2', {id: 'h-error'}, 'Error'),
      h('div', {class: 'error-box'}, h('p', {id: 'task-error'}, task.error),
        stack ? h('details', {}, h('summary', {}, 'Stack trace'), h('pre', {}, stack)) : null));
  }

  function drawRuns(runList, details) {
    if (!runList.length) {
      runs.replaceChildren(h('p', {class: 'muted'}, 'Not picked yet: no runs.'));
      return;
    }
    const latest = runList[runList.length - 1].run_id;
    runs.replaceChildren(...[...runList].reverse().map((run) => {
      const isOpen = open.has(run.run_id) || (run.run_id === latest && !closed.has(run.run_id));
      const panel = h('details', {class: 'run', open: isOpen, dataset: {runId: run.run_id}},
        h('summary', {}, h('strong', {}, `Attempt ${run.attempt}`), badge(run.status),
          h('span', {class: 'muted'}, run.worker_id || 'no worker'),
          h('span', {}, 'started ', timeEl(run.started_at)),
          h('span', {}, 'took ', run.duration_ms === null ? '–' : duration(run.duration_ms)),
          h('span', {}, ...progressCell(run.progress))),
        runBody(run, details.get(run.run_id)));
      panel.addEventListener('toggle', () => {
        (panel.open ? open : closed).add(run.run_id);
        (panel.open ? closed : open).delete(run.run_id);
      });
      return panel;
    }));
  }

  const offs = [
    live.on('task-ready', load),
    live.on('task-changed', load),
  ];
  live.watch(taskId);
  load();
  return () => {
    offs.forEach((off) => off());
    live.unwatch();
  };
}

async function read(path) {
  const [task, runList, history] = await Promise.all([
    get(path), get(`${path}/runs`), get(`${path}/history`)]);
  const wanted = runList.slice(-RUNS_WITH_LOGS);
  const details = new Map((await Promise.all(wanted.map(
    (run) => get(`/api/v1/runs/${encodeURIComponent(run.run_id)}`)))).map((d) => [d.run_id, d]));
  return {task, runList, details, history};
}

function fact(name, value) {
  return [h('div', {}, h('dt', {}, name), h('dd', {}, value))];
}

function runBody(run, detail) {
  const parts = [];
  if (run.error) parts.push(h('div', {class: 'error-box'}, h('p', {}, run.error),
    detail?.stack ? h('details', {}, h('summary', {}, 'Stack trace'), h('pre', {}, detail.stack)) : null));
  if (!detail) {
    parts.push(h('p', {class: 'muted'}, 'Log lines of older runs are not shown.'));
  } else if (!detail.logs.length) {
    parts.push(h('p', {class: 'muted'}, 'No log lines.'));
  } else {
    parts.push(h('table', {class: 'logs'},
      h('caption', {class: 'visually-hidden'}, `Log lines of attempt ${run.attempt}`),
      h('thead', {}, h('tr', {}, h('th', {scope: 'col'}, 'Time'), h('th', {scope: 'col'}, 'Level'),
        h('th', {scope: 'col'}, 'Message'), h('th', {scope: 'col'}, 'Details'))),
      h('tbody', {}, detail.logs.map(logRow))));
  }
  return h('div', {}, parts);
}

function logRow(line) {
  const hasDetails = line.details && Object.keys(line.details).length > 0;
  return h('tr', {dataset: {level: line.level}},
    h('td', {class: 'when'}, timeEl(line.created_at)),
    h('td', {}, levelBadge(line.level)),
    h('td', {}, line.message),
    h('td', {}, hasDetails
      ? h('details', {}, h('summary', {}, plural(Object.keys(line.details).length, 'field')),
        h('pre', {}, pretty(line.details)))
      : h('span', {class: 'muted'}, '–')));
}

function plural(n, word) {
  return `${num(n)} ${word}${n === 1 ? '' : 's'}`;
}

function historyItem(entry) {
  const actor = entry.actor ? `${entry.actor.kind}${entry.actor.id ? `: ${entry.actor.id}` : ''}` : '–';
  return h('li', {class: `t-${entry.type}`, dataset: {type: entry.type}},
    h('span', {class: 'what'}, entry.type), ' ',
    h('div', {class: 'meta'},
      h('span', {}, timeEl(entry.time)),
      h('span', {}, `by ${actor}`),
      entry.attempt !== null ? h('span', {}, `attempt ${entry.attempt}`) : null,
      entry.worker_id ? h('span', {}, `worker ${entry.worker_id}`) : null,
      h('span', {class: 'mono', title: 'partition and offset of the event in the jobs topic'},
        `log ${entry.partition}:${entry.offset}`)),
    eventDetails(entry.event));
}

function eventDetails(event) {
  const rest = Object.fromEntries(Object.entries(event || {})
    .filter(([k]) => !['type', 'job_id', 'attempt', 'worker_id', 'v'].includes(k)));
  if (!Object.keys(rest).length) return null;
  return h('details', {}, h('summary', {class: 'muted'}, 'event fields'), h('pre', {}, pretty(rest)));
}
