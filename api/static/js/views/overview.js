// Overview: tasks per status now, workers live and lost, the last hour's runs and pending
// depth minute by minute, a card per task type and per queue. Everything comes from the
// stats channel (pushed at most once a second while anything changes).
import {post} from '../api.js';
import {can} from '../session.js';
import {timeChart} from '../charts.js';
import {duration, h, hashWith, num, pct, setText} from '../dom.js';
import {TASK_STATUSES, badge} from '../status.js';
import {perFrame, toast} from '../ui.js';

export function mount(root, {live}) {
  const totals = h('ul', {class: 'totals', 'aria-label': 'Tasks per status'});
  const workers = h('ul', {class: 'totals', 'aria-label': 'Workers and the last hour'});
  const runsBox = h('div');
  const depthBox = h('div');
  const types = h('div', {class: 'cards', id: 'task-types'});
  const queues = h('div', {class: 'cards', id: 'queues'});
  root.append(
    h('h1', {}, 'Overview'),
    h('section', {'aria-labelledby': 'h-now'}, h('h2', {id: 'h-now'}, 'Tasks now'), totals),
    h('section', {'aria-labelledby': 'h-hour'}, h('h2', {id: 'h-hour'}, 'Workers and the last hour'),
      workers),
    h('section', {class: 'charts', 'aria-label': 'Charts of the last hour'},
      h('figure', {class: 'chart'}, h('figcaption', {}, 'Runs ended per minute'), runsBox),
      h('figure', {class: 'chart'}, h('figcaption', {}, 'Pending tasks (queue depth)'), depthBox)),
    h('section', {'aria-labelledby': 'h-types'}, h('h2', {id: 'h-types'}, 'Task types'), types),
    h('section', {'aria-labelledby': 'h-queues'}, h('h2', {id: 'h-queues'}, 'Queues'), queues),
  );
  const runsChart = timeChart(runsBox, [
    {label: 'completed', color: '--green', fill: true},
    {label: 'failed', color: '--red', fill: true},
  ]);
  const depthChart = timeChart(depthBox, [{label: 'pending', color: '--amber', fill: true}]);
  const typeCards = new Keyed(types, typeCard);
  const queueCards = new Keyed(queues, queueCard);

  const render = perFrame(() => {
    const stats = live.stats;
    if (!stats) return;
    drawTotals(totals, stats);
    drawWorkers(workers, stats);
    const xs = stats.per_minute.map((m) => Date.parse(m.minute) / 1000);
    runsChart.update([xs, stats.per_minute.map((m) => m.completed),
      stats.per_minute.map((m) => m.failed)]);
    depthChart.update([xs, stats.per_minute.map((m) => m.pending)]);
    typeCards.draw(taskTypes(stats));
    queueCards.draw(Object.entries(stats.by_queue));
  });
  const off = live.on('stats', render);
  render();
  return () => {
    off();
    runsChart.destroy();
    depthChart.destroy();
  };
}

function drawTotals(list, stats) {
  list.replaceChildren(...TASK_STATUSES.map((status) => h('li', {},
    h('a', {href: hashWith('/tasks', {status}), 'aria-label': `${status}: show these tasks`},
      badge(status), h('span', {class: 'n', dataset: {count: status}},
        num(stats[`${status}_count`]))))));
}

function drawWorkers(list, stats) {
  const ended = stats.completed_last_hour + stats.failed_last_hour;
  list.replaceChildren(
    h('li', {}, h('a', {href: '#/workers'}, badge('alive'),
      h('span', {class: 'n', dataset: {count: 'workers'}}, num(stats.worker_count)))),
    h('li', {}, h('a', {href: '#/workers'}, badge('lost'),
      h('span', {class: 'n', dataset: {count: 'lost'}}, num(stats.lost_worker_count)))),
    h('li', {}, h('span', {class: 'muted'}, 'runs completed, last hour'),
      h('span', {class: 'n'}, num(stats.completed_last_hour))),
    h('li', {}, h('span', {class: 'muted'}, 'runs failed, last hour'),
      h('span', {class: 'n'}, num(stats.failed_last_hour))),
    h('li', {}, h('span', {class: 'muted'}, 'failure rate'),
      h('span', {class: 'n'}, pct(stats.failed_last_hour, ended))),
    h('li', {}, h('span', {class: 'muted'}, 'mean run time'),
      h('span', {class: 'n'}, duration(stats.avg_processing_time_ms))),
  );
}

/** [name, {counts, last_hour}] per task type: its counts now and its last hour's runs. */
function taskTypes(stats) {
  const names = new Set([...Object.keys(stats.by_task_type),
    ...Object.keys(stats.last_hour_by_task_type)]);
  const none = {completed: 0, failed: 0};
  return [...names].sort().map((name) => [name, {
    counts: stats.by_task_type[name] || {},
    last_hour: stats.last_hour_by_task_type[name] || none,
  }]);
}

/** Cards kept by name: an update changes a card in place, so the focus stays put. */
class Keyed {
  constructor(box, make) {
    this.box = box;
    this.make = make;
    this.cards = new Map();
  }

  draw(entries) {
    const seen = new Set();
    for (const [name, data] of entries) {
      seen.add(name);
      let card = this.cards.get(name);
      if (!card) {
        card = this.make(name);
        this.cards.set(name, card);
      }
      card.update(data);
    }
    for (const [name, card] of this.cards) {
      if (!seen.has(name)) {
        card.el.remove();
        this.cards.delete(name);
      }
    }
    const order = [...this.cards.keys()].sort().map((name) => this.cards.get(name).el);
    if (order.some((el, i) => this.box.children[i] !== el)) this.box.replaceChildren(...order);
    if (!order.length) this.box.replaceChildren(h('p', {class: 'muted'}, 'None yet.'));
  }
}

function countsList(counts) {
  const present = TASK_STATUSES.filter((s) => counts[s]);
  if (!present.length) return h('p', {class: 'muted'}, 'no tasks now');
  return h('ul', {class: 'counts'}, present.map((s) => h('li', {}, badge(s, counts[s]))));
}

function lastHour(ended) {
  const all = ended.completed + ended.failed;
  return [
    h('dt', {}, 'completed, last hour'), h('dd', {}, num(ended.completed)),
    h('dt', {}, 'failed, last hour'), h('dd', {}, num(ended.failed)),
    h('dt', {}, 'failure rate'), h('dd', {}, pct(ended.failed, all)),
    h('dt', {}, 'throughput'), h('dd', {}, rate(ended.completed)),
  ];
}

/** Completed runs in the last hour as a rate people read: per minute, or per hour. */
function rate(perHour) {
  return perHour >= 60 ? `${num(Math.round(perHour / 60))} /min` : `${num(perHour)} /h`;
}

function typeCard(name) {
  const state = h('span');
  const body = h('div');
  const facts = h('dl');
  const el = h('article', {class: 'card', dataset: {taskType: name}},
    h('header', {}, h('h3', {}, h('a', {href: hashWith('/tasks', {task_type: name})}, name)), state),
    body, facts);
  let last = '';
  return {
    el,
    update({counts, last_hour: ended}) {
      const key = JSON.stringify([counts, ended]);
      if (key === last) return;
      last = key;
      const running = counts.in_progress || 0;
      state.replaceChildren(running ? badge('running', running) : badge('idle'));
      body.replaceChildren(countsList(counts));
      facts.replaceChildren(...lastHour(ended));
    },
  };
}

function queueCard(name) {
  const state = h('span');
  const body = h('div');
  const facts = h('dl');
  // Pausing a queue needs admin (docs/security.md): hidden without it.
  const toggle = h('button', {class: 'small secondary', type: 'button', hidden: !can('admin')});
  const el = h('article', {class: 'card', dataset: {queue: name}},
    h('header', {}, h('h3', {}, h('a', {href: hashWith('/tasks', {queue: name})}, name)), state),
    body, facts, h('div', {class: 'toolbar'}, toggle));
  let paused = false;
  toggle.addEventListener('click', () => setPaused(name, !paused));
  return {
    el,
    update(queue) {
      paused = queue.paused;
      state.replaceChildren(badge(paused ? 'paused' : 'active'));
      setText(toggle, paused ? 'Resume' : 'Pause');
      toggle.setAttribute('aria-label', `${paused ? 'Resume' : 'Pause'} queue ${name}`);
      body.replaceChildren(countsList(queue.counts));
      facts.replaceChildren(...lastHour(queue.last_hour));
    },
  };
}

export async function setPaused(queue, paused) {
  const verb = paused ? 'pause' : 'resume';
  try {
    await post(`/api/v1/queues/${encodeURIComponent(queue)}/${verb}`);
    toast(`Queue ${queue} ${paused ? 'paused' : 'resumed'}.`, 'ok');
  } catch (error) {
    toast(`Could not ${verb} queue ${queue}: ${error.message}`, 'error');
  }
}
