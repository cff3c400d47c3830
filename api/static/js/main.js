// The dashboard: a hash router over five views, one live connection, the connection state;
// with auth on, the sign-in page first, and back to it whenever the session ends.
import {onUnauthorized} from './api.js';
import {Live, liveUrl} from './live.js';
import * as session from './session.js';
import * as overview from './views/overview.js';
import * as schedules from './views/schedules.js';
import * as signin from './views/signin.js';
import * as task from './views/task.js';
import * as tasks from './views/tasks.js';
import * as workers from './views/workers.js';

const VIEWS = {overview, tasks, task, schedules, workers};
const TITLES = {overview: 'Overview', tasks: 'Tasks', task: 'Task', schedules: 'Schedules',
  workers: 'Workers & queues'};
const STATES = {connecting: 'connecting…', live: 'live', reconnecting: 'reconnecting…'};
const ENDED = 'Your session has ended (signed out elsewhere, expired, or its key or user '
  + 'no longer valid): sign in again.';

const main = document.getElementById('main');
const nav = document.querySelector('header.top nav');
const connection = document.getElementById('connection');
const account = document.getElementById('account');
let live = null; // while the dashboard runs (signed in, or auth off)
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
  if (!live) return; // the sign-in page stays until signed in
  const route = parse(location.hash);
  if (current) current();
  for (const link of nav.querySelectorAll('a')) {
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

function startDashboard(signedIn) {
  showAccount(signedIn);
  nav.hidden = connection.hidden = false;
  live = new Live(liveUrl());
  live.on('state', (state) => {
    connection.dataset.state = state;
    connection.textContent = STATES[state];
    if (state === 'live') delete connection.dataset.attempts;
  });
  live.on('retry', ({attempt, delayMs}) => {
    connection.dataset.attempts = attempt;
    connection.title = `attempt ${attempt} in ${Math.round(delayMs / 100) / 10} s`;
  });
  live.on('refused', async () => {
    if (live && !(await session.load())) showSignIn(ENDED);
  });
  live.connect();
  first = true;
  show();
}

function showSignIn(note) {
  if (current) current();
  if (live) live.stop();
  live = null;
  nav.hidden = connection.hidden = account.hidden = true;
  main.replaceChildren();
  document.title = 'Sign in · jobledger';
  current = signin.mount(main, {note, done: (signedIn) => {
    current = null;
    main.replaceChildren();
    startDashboard(signedIn);
  }});
}

/** The signed-in principal's name and permissions, and the sign-out button (auth on). */
function showAccount(signedIn) {
  account.hidden = !signedIn.auth;
  if (!signedIn.auth) return;
  const who = document.getElementById('who');
  who.textContent = signedIn.actor.name || signedIn.actor.id;
  who.title = `${signedIn.actor.kind} ${signedIn.actor.id}: ${signedIn.permissions.join(', ')}`;
  document.getElementById('permissions').textContent = signedIn.permissions.join(' · ');
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await session.signOut();
  } finally {
    showSignIn('Signed out.');
  }
});
onUnauthorized(() => {
  if (live) showSignIn(ENDED);
});
window.addEventListener('hashchange', show);

async function start() {
  const signedIn = await session.load();
  if (signedIn) startDashboard(signedIn);
  else showSignIn(null);
}
start().catch((error) => {
  main.replaceChildren(`Could not start the dashboard: ${error.message}`);
});
