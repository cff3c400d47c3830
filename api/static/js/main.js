// The dashboard: a hash router over five views, one live connection, the connection state.
import {Live, liveUrl} from './live.js';
import * as overview from './views/overview.js';
import * as schedules from './views/schedules.js';
import * as task from './views/task.js';
import * as tasks from './views/tasks.js';
import * as workers from './views/workers.js';

const VIEWS = {overview, tasks, task, schedules, workers};
const TITLES = {overview: 'Overview', tasks: 'Tasks', task: 'Task', schedules: 'Schedules',
  workers: 'Workers & queues'};
const STATES = {connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…'};

const live = new Live(liveUrl());
const main = document.getElementById('main');
let current = null;
let first = true;

/** #/tasks/ID?x=y -> {view: 'task', arg: 'ID', query: 'x=y'} */
function parse(hash) {
  const [path, query = ''] = hash.replace(/^#/, '').split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'tasks' && parts[1]) return {view: 'task', arg: parts[1], query};
  return {view: VIEWS[parts[0]] ? parts[0] : 'overview', arg: null, query};
}

function show() {
  const route = parse(location.hash);
  if (current) current();
  for (const link of document.querySelectorAll('nav a')) {
    const here = link.dataset.view === (route.view === 'task' ? 'tasks' : route.view);
    if (here) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  main.replaceChildren();
  document.title = `${TITLES[route.view]} · jobledger`;
  current = VIEWS[route.view].mount(main, {live, arg: route.arg, query: route.query});
  if (!first) main.focus({preventScroll: true}); // where a screen reader goes on
  first = false;
}

const connection = document.getElementById('connection');
live.on('state', (state) => {
  connection.dataset.state = state;
  connection.textContent = STATES[state];
  if (state === 'live') delete connection.dataset.attempts;
});
live.on('retry', ({attempt, delayMs}) => {
  connection.dataset.attempts = attempt;
  connection.title = `attempt ${attempt} in ${Math.round(delayMs / 100) / 10} s`;
});

window.addEventListener('hashchange', show);
live.connect();
show();
