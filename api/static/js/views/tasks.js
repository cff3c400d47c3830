// Tasks: a table of one page of tasks, filtered by status, type, queue and enqueue time, or
// found by a prefix of the id or idempotency key; kept live by task updates; bulk cancel,
// and requeue of dead-letter tasks, on a selection.
import {each, get, post} from '../api.js';
import {h, hashWith, num, queryOf, setText, timeEl} from '../dom.js';
import {FINISHED, TASK_STATUSES, badge, statusLabel} from '../status.js';
import {TaskWindow} from '../taskwindow.js';
import {confirmAction, perFrame, toast} from '../ui.js';

const PAGE = 50;
const RANGES = [['', 'any time'], ['15m', 'last 15 minutes'], ['1h', 'last hour'],
  ['24h', 'last 24 hours'], ['7d', 'last 7 days']];
const RANGE_MS = {'15m': 900e3, '1h': 3600e3, '24h': 86400e3, '7d': 604800e3};

export function mount(root, {live, query}) {
  const state = {status: '', task_type: '', queue: '', range: '', search: '', page: 1,
    ...queryOf(query)};
  state.page = Math.max(1, parseInt(state.page, 10) || 1);
  const win = new TaskWindow();
  const selected = new Set();
  const rowEls = new Map(); // task id -> its row's elements
  let buffer = null; // updates that came while the page was being read
  let loadToken = 0;
  let drawn = -1;

  // -- the filters ------------------------------------------------------------------------
  const status = h('select', {name: 'status'}, h('option', {value: ''}, 'any'),
    TASK_STATUSES.map((s) => h('option', {value: s}, statusLabel(s))));
  const taskType = h('input', {name: 'task_type', list: 'known-types', autocomplete: 'off',
    placeholder: 'any'});
  const queue = h('input', {name: 'queue', list: 'known-queues', autocomplete: 'off',
    placeholder: 'any'});
  const range = h('select', {name: 'range'}, RANGES.map(([v, text]) => h('option', {value: v}, text)));
  const search = h('input', {name: 'search', type: 'search',
    placeholder: 'a task id or an idempotency key (or its start)'});
  const types = h('datalist', {id: 'known-types'});
  const queues = h('datalist', {id: 'known-queues'});
  for (const [el, key] of [[status, 'status'], [taskType, 'task_type'], [queue, 'queue'],
    [range, 'range'], [search, 'search']]) el.value = state[key];
  const form = h('form', {class: 'filters', role: 'search', 'aria-label': 'Filter tasks'},
    h('label', {}, 'Status', status), h('label', {}, 'Task type', taskType),
    h('label', {}, 'Queue', queue), h('label', {}, 'Enqueued', range),
    h('label', {}, 'Search', search), h('button', {type: 'submit'}, 'Apply'), types, queues);
  let typing = null;
  const apply = () => {
    clearTimeout(typing);
    Object.assign(state, {status: status.value, task_type: taskType.value.trim(),
      queue: queue.value.trim(), range: range.value, search: search.value.trim(), page: 1});
    load();
  };
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    apply();
  });
  for (const el of [status, range]) el.addEventListener('change', apply);
  for (const el of [taskType, queue]) el.addEventListener('change', apply);
  search.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(apply, 350);
  });

  // -- the table, the selection's actions, the pager ---------------------------------------
  const all = h('input', {type: 'checkbox', 'aria-label': 'Select every task on this page'});
  const tbody = h('tbody');
  const note = h('p', {class: 'empty', hidden: true});
  const table = h('div', {class: 'table-wrap'}, h('table', {id: 'tasks-table'},
    h('caption', {class: 'visually-hidden'}, 'Tasks, newest first'),
    h('thead', {}, h('tr', {},
      h('th', {scope: 'col'}, all), h('th', {scope: 'col'}, 'Status'),
      h('th', {scope: 'col'}, 'Task'), h('th', {scope: 'col'}, 'Type'),
      h('th', {scope: 'col'}, 'Queue'), h('th', {scope: 'col', class: 'num'}, 'Priority'),
      h('th', {scope: 'col', class: 'num'}, 'Failed attempts'),
      h('th', {scope: 'col'}, 'Progress'), h('th', {scope: 'col'}, 'Enqueued'),
      h('th', {scope: 'col'}, 'Updated'))),
    tbody), note);
  const chosen = h('span', {class: 'muted', 'aria-live': 'polite'});
  const cancel = h('button', {type: 'button', class: 'danger'}, 'Cancel selected');
  const requeue = h('button', {type: 'button'}, 'Requeue selected dead letters');
  const newer = h('button', {type: 'button', class: 'secondary', hidden: true});
  const older = h('button', {type: 'button', class: 'secondary'}, 'Older');
  const newerPage = h('button', {type: 'button', class: 'secondary'}, 'Newer');
  const pageNo = h('span', {class: 'muted'});
  root.append(h('h1', {}, 'Tasks'), form,
    h('div', {class: 'toolbar', 'aria-label': 'Actions on the selected tasks', role: 'group'},
      chosen, cancel, requeue, h('span', {class: 'grow'}), newer),
    table, h('nav', {class: 'pager', 'aria-label': 'Pages'}, newerPage, pageNo, older));

  all.addEventListener('change', () => {
    for (const row of win.rows) {
      if (all.checked) selected.add(row.task_id);
      else selected.delete(row.task_id);
    }
    selectionChanged = true;
    render();
  });
  cancel.addEventListener('click', () => bulk('cancel'));
  requeue.addEventListener('click', () => bulk('requeue'));
  newer.addEventListener('click', () => go(1));
  newerPage.addEventListener('click', () => go(state.page - 1));
  older.addEventListener('click', () => go(state.page + 1));

  function go(page) {
    state.page = Math.max(1, page);
    load();
  }

  // -- reading a page, and keeping it live ---------------------------------------------------
  function filters() {
    const f = {status: state.status, task_type: state.task_type, queue: state.queue,
      search: state.search};
    if (RANGE_MS[state.range]) f.created_after = new Date(Date.now() - RANGE_MS[state.range]).toISOString();
    return f;
  }

  async function load() {
    const token = ++loadToken;
    const f = filters();
    const offset = (state.page - 1) * PAGE;
    history.replaceState(null, '', hashWith('/tasks', {status: state.status,
      task_type: state.task_type, queue: state.queue, range: state.range, search: state.search,
      page: state.page > 1 ? state.page : ''}));
    buffer = [];
    const params = new URLSearchParams(Object.entries({...f, limit: PAGE, offset})
      .filter(([, v]) => v !== '' && v !== undefined));
    try {
      const list = await get(`/api/v1/tasks?${params}`);
      if (token !== loadToken) return;
      win.reset(list, {limit: PAGE, offset, filters: f});
      for (const task of buffer) win.apply(task);
      note.hidden = true;
    } catch (error) {
      if (token !== loadToken) return;
      win.reset([], {limit: PAGE, offset, filters: f});
      note.hidden = false;
      note.textContent = `Could not read the tasks: ${error.message}`;
    }
    buffer = null;
    selected.clear();
    render();
  }

  let selectionChanged = false;
  const render = perFrame(() => {
    if (drawn === win.version && !selectionChanged) return;
    drawn = win.version;
    selectionChanged = false;
    drawRows();
    drawActions();
  });

  function drawRows() {
    const keep = new Set();
    win.rows.forEach((task, i) => {
      keep.add(task.task_id);
      let row = rowEls.get(task.task_id);
      if (!row) {
        row = makeRow(task.task_id);
        rowEls.set(task.task_id, row);
      }
      row.update(task, selected.has(task.task_id));
      if (tbody.children[i] !== row.tr) tbody.insertBefore(row.tr, tbody.children[i] || null);
    });
    for (const [id, row] of rowEls) {
      if (!keep.has(id)) {
        row.tr.remove();
        rowEls.delete(id);
        selected.delete(id);
      }
    }
    if (!win.rows.length && note.hidden) {
      note.hidden = false;
      note.textContent = 'No tasks match.';
    } else if (win.rows.length && note.textContent === 'No tasks match.') note.hidden = true;
  }

  function drawActions() {
    const picked = win.rows.filter((t) => selected.has(t.task_id));
    setText(chosen, picked.length ? `${picked.length} selected` : 'Select tasks for bulk actions');
    cancel.disabled = !picked.some((t) => !FINISHED.has(t.status));
    requeue.disabled = !picked.some((t) => t.status === 'dead_letter');
    all.checked = win.rows.length > 0 && picked.length === win.rows.length;
    all.indeterminate = picked.length > 0 && picked.length < win.rows.length;
    newer.hidden = !win.newer;
    setText(newer, `${num(win.newer)} newer ${win.newer === 1 ? 'task' : 'tasks'}: show them`);
    newerPage.disabled = state.page === 1;
    older.disabled = win.rows.length < PAGE;
    setText(pageNo, `page ${state.page}`);
  }

  function makeRow(taskId) {
    const box = h('input', {type: 'checkbox', 'aria-label': `Select task ${taskId}`});
    box.addEventListener('change', () => {
      if (box.checked) selected.add(taskId);
      else selected.delete(taskId);
      selectionChanged = true;
      render();
    });
    const cells = Array.from({length: 9}, () => h('td'));
    cells[1].className = 'id mono';
    cells[4].className = 'num';
    cells[5].className = 'num';
    cells[1].append(h('a', {href: `#/tasks/${encodeURIComponent(taskId)}`, title: taskId}, taskId));
    const tr = h('tr', {dataset: {taskId}}, h('td', {}, box), cells);
    let last = '';
    return {
      tr,
      update(task, isSelected) {
        box.checked = isSelected;
        tr.classList.toggle('selected', isSelected);
        const p = task.progress;
        const key = [task.status, task.task_type, task.queue, task.priority, task.retry_count,
          p.processed, p.total, p.failed, task.created_at, task.updated_at].join('\u0000');
        if (key === last) return;
        last = key;
        tr.dataset.status = task.status;
        cells[0].replaceChildren(badge(task.status));
        setText(cells[2], task.task_type);
        setText(cells[3], task.queue);
        setText(cells[4], task.priority);
        setText(cells[5], task.retry_count);
        cells[6].replaceChildren(...progressCell(p));
        cells[7].replaceChildren(timeEl(task.created_at));
        cells[8].replaceChildren(timeEl(task.updated_at));
      },
    };
  }

  async function bulk(action) {
    const picked = win.rows.filter((t) => selected.has(t.task_id)
      && (action === 'cancel' ? !FINISHED.has(t.status) : t.status === 'dead_letter'));
    const words = action === 'cancel' ? 'Cancel' : 'Requeue';
    const ok = await confirmAction(`${words} ${picked.length} ${picked.length === 1 ? 'task' : 'tasks'}?`,
      action === 'cancel'
        ? 'Waiting tasks are cancelled; running ones are asked to stop.'
        : 'Each dead-letter task starts over with a fresh retry budget.',
      words);
    if (!ok) return;
    const outcomes = await each(picked, (t) => post(
      `/api/v1/tasks/${encodeURIComponent(t.task_id)}/${action}`));
    const failed = outcomes.filter((o) => !o.ok);
    const done = outcomes.length - failed.length;
    toast(`${words === 'Cancel' ? 'Cancelled' : 'Requeued'} ${done} of ${outcomes.length}.`
      + (failed.length ? ` Refused: ${failed[0].error.message}` : ''), failed.length ? 'error' : 'ok');
    selected.clear();
    selectionChanged = true;
    render();
  }

  // -- known task types and queues for the filters ----------------------------------------
  function fillLists(stats) {
    if (!stats) return;
    types.replaceChildren(...Object.keys(stats.by_task_type).sort().map((t) => h('option', {value: t})));
    queues.replaceChildren(...Object.keys(stats.by_queue).sort().map((q) => h('option', {value: q})));
  }

  const offs = [
    live.on('task', (task) => {
      if (buffer) buffer.push(task);
      else if (win.apply(task)) render();
    }),
    live.on('tasks-reset', load),
    live.on('stats', fillLists),
  ];
  fillLists(live.stats);
  load();
  return () => offs.forEach((off) => off());
}

export function progressCell(p) {
  if (!p.total && !p.processed && !p.failed) return [h('span', {class: 'muted'}, '–')];
  const text = `${num(p.processed)}${p.total ? ` / ${num(p.total)}` : ''}`
    + (p.failed ? `, ${num(p.failed)} failed` : '');
  if (!p.total) return [text];
  return [h('progress', {max: p.total, value: p.processed, 'aria-label': text}), ' ', text];
}
