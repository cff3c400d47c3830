// Schedules: seed 001's table of scheduled jobs with seed 002's fields (trigger, state,
// next and last run, last result, running or not); pause, resume, trigger now, delete.
// Kept live by the schedules channel; read over REST whenever it is (re)subscribed.
import {del, get, post} from '../api.js';
import {can} from '../session.js';
import {agoEl, h, tickAgo, timeEl} from '../dom.js';
import {FINISHED, badge} from '../status.js';
import {confirmThen, perFrame, toast} from '../ui.js';

export function mount(root, {live}) {
  const schedules = new Map(); // id -> the schedule as GET /api/v1/schedules/{id} shows it
  const tbody = h('tbody');
  const note = h('p', {class: 'empty'}, 'Loading…');
  root.append(h('h1', {}, 'Schedules'),
    h('div', {class: 'table-wrap'}, h('table', {id: 'schedules-table'},
      h('caption', {class: 'visually-hidden'}, 'Schedules by id'),
      h('thead', {}, h('tr', {}, ...['Schedule', 'Task type', 'Trigger', 'State', 'Next run',
        'Last run', 'Last result', 'Running', 'Actions'].map((t) => h('th', {scope: 'col'}, t)))),
      tbody), note));

  const drawn = new Map(); // id -> {key, tr}: a row is rebuilt only when its schedule changed
  const render = perFrame(() => {
    const rows = [...schedules.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
    const focused = document.activeElement?.dataset?.action;
    const focusedRow = document.activeElement?.closest?.('tr')?.dataset?.scheduleId;
    const trs = rows.map((schedule) => {
      const key = JSON.stringify(schedule);
      let entry = drawn.get(schedule.id);
      if (!entry || entry.key !== key) {
        entry = {key, tr: row(schedule)};
        drawn.set(schedule.id, entry);
      }
      return entry.tr;
    });
    for (const id of drawn.keys()) if (!schedules.has(id)) drawn.delete(id);
    if (trs.some((tr, i) => tbody.children[i] !== tr) || tbody.children.length !== trs.length) {
      tbody.replaceChildren(...trs);
    }
    if (focused && focusedRow && !tbody.contains(document.activeElement)) {
      // The row the focus was in was drawn again: the focus goes to the same button.
      drawn.get(focusedRow)?.tr.querySelector(`[data-action="${focused}"]`)?.focus();
    }
    note.hidden = rows.length > 0;
    note.textContent = 'No schedules. Define one with `jobledger schedules add` or POST /api/v1/schedules.';
    tickAgo(tbody);
  });

  async function load() {
    try {
      const list = await get('/api/v1/schedules');
      schedules.clear();
      for (const s of list) schedules.set(s.id, s);
      render();
    } catch (error) {
      note.hidden = false;
      note.textContent = `Could not read the schedules: ${error.message}`;
    }
  }

  const offs = [
    live.on('schedules-ready', load),
    // A schedule's last result is its last task's status, which changes on the jobs topic,
    // not the schedules one: follow that task's updates. (Running is taken to be its last
    // task's state; earlier ones still running, max_instances > 1, show on the next read.)
    live.on('task', (task) => {
      for (const schedule of schedules.values()) {
        if (schedule.last_task_id !== task.task_id || schedule.last_status === task.status) continue;
        schedules.set(schedule.id, {...schedule, last_status: task.status,
          is_running: !FINISHED.has(task.status)});
        render();
      }
    }),
    live.on('schedule', (schedule) => {
      if (schedule.state === 'removed') schedules.delete(schedule.id);
      else schedules.set(schedule.id, schedule);
      render();
    }),
  ];
  // Relative times ("in 3 min") move on without any message.
  const tick = setInterval(() => tickAgo(tbody), 1000);
  load();
  return () => {
    offs.forEach((off) => off());
    clearInterval(tick);
  };
}

function row(s) {
  const base = `/api/v1/schedules/${encodeURIComponent(s.id)}`;
  const paused = s.state === 'paused';
  const toggle = h('button', {type: 'button', class: 'small secondary',
    'aria-label': `${paused ? 'Resume' : 'Pause'} schedule ${s.id}`, dataset: {action: 'toggle'}}, paused ? 'Resume' : 'Pause');
  toggle.addEventListener('click', async () => {
    try {
      await post(`${base}/${paused ? 'resume' : 'pause'}`);
      toast(`Schedule ${s.id} ${paused ? 'resumed' : 'paused'}.`, 'ok');
    } catch (error) {
      toast(`Schedule ${s.id}: ${error.message}`, 'error');
    }
  });
  const trigger = h('button', {type: 'button', class: 'small',
    'aria-label': `Trigger schedule ${s.id} now`, dataset: {action: 'trigger'}}, 'Trigger now');
  trigger.addEventListener('click', () => confirmThen({
    title: `Run ${s.id} now?`,
    text: `Enqueues one ${s.task_type} task now, whatever the schedule's state.`,
    confirmLabel: 'Trigger now',
    action: () => post(`${base}/trigger`),
    done: (answer) => [`Triggered ${s.id}.`, {href: `#/tasks/${encodeURIComponent(answer.data.task_id)}`,
      text: 'Follow its task.'}],
  }));
  const remove = h('button', {type: 'button', class: 'small danger',
    'aria-label': `Delete schedule ${s.id}`, dataset: {action: 'delete'}}, 'Delete');
  remove.addEventListener('click', () => confirmThen({
    title: `Delete schedule ${s.id}?`,
    text: 'It fires no more. Tasks it enqueued stay.',
    confirmLabel: 'Delete',
    action: () => del(base),
    done: () => `Schedule ${s.id} deleted.`,
  }));
  for (const button of [toggle, trigger, remove]) button.hidden = !can('admin');
  return h('tr', {dataset: {scheduleId: s.id, state: s.state}},
    h('td', {}, h('strong', {}, s.id), s.name && s.name !== s.id ? h('div', {class: 'muted'}, s.name) : null),
    h('td', {}, s.task_type, s.queue !== 'default' ? h('div', {class: 'muted'}, `queue ${s.queue}`) : null),
    h('td', {}, describe(s.trigger), h('div', {class: 'muted'}, s.timezone)),
    h('td', {}, badge(s.state)),
    h('td', {}, s.next_run_time ? [timeEl(s.next_run_time), agoEl(s.next_run_time)]
      : h('span', {class: 'muted'}, s.state === 'paused' ? 'paused' : 'none')),
    h('td', {}, s.last_run_at ? [timeEl(s.last_run_at), agoEl(s.last_run_at)]
      : h('span', {class: 'muted'}, 'never')),
    h('td', {}, s.last_status
      ? h('a', {href: `#/tasks/${encodeURIComponent(s.last_task_id)}`}, badge(s.last_status))
      : h('span', {class: 'muted'}, '–')),
    h('td', {}, s.is_running ? badge('running') : badge('idle')),
    h('td', {}, h('div', {class: 'toolbar'}, toggle, trigger, remove)));
}

/** A trigger in words: "cron 0 3 * * *", "every 5 min", "once at …", "manual". */
export function describe(trigger) {
  const t = trigger || {};
  if (t.type === 'cron') {
    if (t.expression) return `cron ${t.expression}`;
    const fields = ['second', 'minute', 'hour', 'day', 'month', 'day_of_week']
      .filter((f) => t[f] !== undefined && t[f] !== null).map((f) => `${f}=${t[f]}`);
    return `cron ${fields.join(' ')}`;
  }
  if (t.type === 'interval') {
    const parts = [['weeks', 'w'], ['days', 'd'], ['hours', 'h'], ['minutes', 'min'], ['seconds', 's']]
      .filter(([f]) => t[f]).map(([f, unit]) => `${t[f]} ${unit}`);
    return `every ${parts.join(' ')}`;
  }
  if (t.type === 'date') return `once at ${t.run_date}`;
  if (t.type === 'manual') return 'manual: by trigger only';
  return JSON.stringify(t);
}
