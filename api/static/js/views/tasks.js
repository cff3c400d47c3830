// Tasks: a table of one page of tasks, filtered by status, type, queue and enqueue time, or
// found by a prefix of the id or idempotency key; kept live by task updates; bulk cancel,
// and requeue of dead-letter tasks, on a selection.
import {each, get, post} from '../api.js';
import {can} from '../session.js';
import {h, hashWith, num, queryOf, setText, setTime} from '../dom.js';
import {FINISHED, TASK_STATUSES, badge, setBadge, statusLabel} from '../status.js';
import {TaskWindow} from '../taskwindow.js';
import {confirmAction, perFrame, toast} from '../ui.js';

const PAGE = 50;
const ROW_PX = 34; // a row's height, as app.css gives it (.grid-row)
const OVERSCAN = 3; // rows drawn beyond the view on each side
// At most ten redraws a second: under a burst every frame would redraw the window, and no
// one reads rows changing faster (a new task still shows within a tenth of a second).
const RENDER_EVERY_MS = 100;
const RANGES = [['', 'any time'], ['15m', 'last 15 minutes'], ['1h', 'last hour'],
  ['24h', 'last 24 hours'], ['7d', 'last 7 days']];
const RANGE_MS = {'15m': 900e3, '1h': 3600e3, '24h': 86400e3, '7d': 604800e3};

export function mount(root, {live, query}) {
  const state = {status: '', task_type: '', queue: '', range: '', search: '', page: 1,
    ...queryOf(query)};
  state.page = Math.max(1, parseInt(state.page, 10) || 1);
  const win = new TaskWindow();
  const selected = new Set();
  const slots = []; // the window's rows, each showing the task at its place
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
  // A grid of rows, not a <table>: a table is laid out as a whole, so each row a burst
  // adds relaid out and repainted all of them (about 1,500 boxes a frame). Each row here is
  // contained and of a fixed height, and rows out of view are skipped (content-visibility).
  const shown = h('div', {class: 'shown'});
  const before = h('div', {'aria-hidden': 'true'});
  const after = h('div', {'aria-hidden': 'true'});
  const tbody = h('div', {role: 'rowgroup', class: 'rows'}, before, shown, after);
  const note = h('p', {class: 'empty', hidden: true});
  const header = (text, extra = {}) => h('div', {role: 'columnheader', ...extra}, text);
  const table = h('div', {class: 'table-wrap'}, h('div', {id: 'tasks-table', class: 'grid',
    role: 'table', 'aria-label': 'Tasks, newest first'},
  h('div', {role: 'rowgroup'}, h('div', {role: 'row', class: 'grid-row head'},
    header(all), header('Status'), header('Task'), header('Type'), header('Queue'),
    header('Priority', {class: 'num'}), header('Failures', {class: 'num', title: 'Failed attempts'}),
    header('Progress'), header('Enqueued'), header('Updated'))),
  tbody), note);
  const chosen = h('span', {class: 'muted', 'aria-live': 'polite'});
  const mayCancel = can('cancel_tasks'); // cancel and requeue: hidden without it
  const cancel = h('button', {type: 'button', class: 'danger', hidden: !mayCancel},
    'Cancel selected');
  const requeue = h('button', {type: 'button', hidden: !mayCancel},
    'Requeue selected dead letters');
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
    drawNow();
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
  const draw = () => {
    if (drawn === win.version && !selectionChanged) return;
    drawn = win.version;
    selectionChanged = false;
    drawRows();
    drawActions();
  };
  const render = perFrame(draw, RENDER_EVERY_MS);
  const drawNow = perFrame(draw); // scrolling: the rows coming into view, in this frame

  // Windowed: only the rows in view (and a few around) are in the DOM; spacers of the
  // others' height keep the scrollbar true. A frame of a burst then redraws about twenty
  // rows, not the whole page.
  function drawRows() {
    const rows = win.rows;
    const top = tbody.getBoundingClientRect().top; // read before any write: no forced layout
    const first = Math.max(0, Math.floor(-top / ROW_PX) - OVERSCAN);
    const last = Math.min(rows.length, Math.ceil((innerHeight - top) / ROW_PX) + OVERSCAN);
    before.style.height = `${first * ROW_PX}px`;
    after.style.height = `${Math.max(0, rows.length - last) * ROW_PX}px`;
    tbody.dataset.rows = rows.length;
    const count = Math.max(0, last - first);
    while (slots.length < count) slots.push(makeRow());
    for (let i = 0; i < count; i += 1) {
      const task = rows[first + i];
      slots[i].update(task, selected.has(task.task_id));
      if (shown.children[i] !== slots[i].tr) shown.insertBefore(slots[i].tr, shown.children[i] || null);
    }
    while (shown.children.length > count) shown.lastElementChild.remove();
    for (const id of selected) if (!win.byId.has(id)) selected.delete(id);
    if (!rows.length && note.hidden) {
      note.hidden = false;
      note.textContent = 'No tasks match.';
    } else if (rows.length && note.textContent === 'No tasks match.') note.hidden = true;
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

  // A slot of the window: the same elements show whichever task is at its place, changed
  // field by field, so a burst moves text, not elements (creating elements was the most of
  // a frame's style and layout work).
  function makeRow() {
    const box = h('input', {type: 'checkbox'});
    const link = h('a');
    const status = badge('pending');
    const created = h('time');
    const updated = h('time');
    const cells = [status, link, '', '', '', '', '', created, updated].map(
      (child) => h('div', {role: 'cell'}, child));
    cells[1].className = 'id mono';
    cells[4].className = 'num';
    cells[5].className = 'num';
    const tr = h('div', {role: 'row', class: 'grid-row'}, h('div', {role: 'cell'}, box), cells);
    const row = {tr, taskId: null, progress: ''};
    box.addEventListener('change', () => {
      if (box.checked) selected.add(row.taskId);
      else selected.delete(row.taskId);
      selectionChanged = true;
      drawNow();
    });
    row.update = (task, isSelected) => {
      box.checked = isSelected;
      tr.classList.toggle('selected', isSelected);
      if (row.taskId !== task.task_id) {
        row.taskId = task.task_id;
        tr.dataset.taskId = task.task_id;
        box.setAttribute('aria-label', `Select task ${task.task_id}`);
        link.href = `#/tasks/${encodeURIComponent(task.task_id)}`;
        link.title = task.task_id;
        setText(link, task.task_id);
      }
      if (tr.dataset.status !== task.status) {
        tr.dataset.status = task.status;
        setBadge(status, task.status);
      }
      setText(cells[2], task.task_type);
      setText(cells[3], task.queue);
      setText(cells[4], task.priority);
      setText(cells[5], task.retry_count);
      const p = task.progress;
      const progress = `${p.processed}/${p.total}/${p.failed}`;
      if (row.progress !== progress) {
        row.progress = progress;
        cells[6].replaceChildren(...progressCell(p));
      }
      setTime(created, task.created_at);
      setTime(updated, task.updated_at);
    };
    return row;
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
    drawNow();
  }

  // -- known task types and queues for the filters ----------------------------------------
  function fillLists(stats) {
    if (!stats) return;
    types.replaceChildren(...Object.keys(stats.by_task_type).sort().map((t) => h('option', {value: t})));
    queues.replaceChildren(...Object.keys(stats.by_queue).sort().map((q) => h('option', {value: q})));
  }

  const redraw = () => {
    drawn = -1;
    drawNow();
  };
  addEventListener('scroll', redraw, {passive: true});
  addEventListener('resize', redraw);
  const offs = [
    () => removeEventListener('scroll', redraw),
    () => removeEventListener('resize', redraw),
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
