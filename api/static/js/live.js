// The one WebSocket of the page (/ws): subscriptions, the resume cursor, reconnection.
//
// Events (listen with live.on(name, fn), which returns a function that stops listening):
//   state           'connecting' | 'live' | 'reconnecting'
//   retry           {attempt, delayMs}: the connection was lost or refused; trying again
//   tasks-reset     the task updates start afresh (first connection, or the server asked
//                   for a resync): read the current state over REST; updates follow it
//   task            a task_update's task (a TaskSummary's fields)
//   stats           the stats channel's message
//   schedules-ready the schedules channel is subscribed: read the schedules over REST
//   schedule        a schedule_update's schedule
//   task-ready      the task channel is watching task id (detail): read the task
//   task-changed    the watched task changed: read it again
//   refused         the server closed the socket with 1008 (not signed in, or no longer):
//                   main.js asks who is signed in; reconnecting goes on meanwhile
//
// No update lost or repeated across a dropped connection: every task_update carries a
// cursor, the last one seen is kept, and a reconnect subscribes with resume_from it, so
// the server sends each task that changed since, once, then live updates. A cursor too
// old answers resync_required, and the page starts afresh (tasks-reset). Schedules and a
// watched task have no cursor: they are read again over REST once re-subscribed.

const BACKOFF_MS = [250, 500, 1000, 2000, 4000];
const BACKOFF_CAP_MS = 5000;
const PING_EVERY_MS = 20000; // a connection silent for 2.5 pings is taken for dead
const SILENT_MS = 50000;
const POLICY_VIOLATION = 1008; // the server's close of a socket it does not let in

export class Live {
  constructor(url) {
    this.url = url;
    this.cursor = null;
    this.state = 'connecting';
    this.tasksLive = false; // subscribed to task updates on the current connection
    this.schedulesLive = false;
    this.watching = null; // the task id of the task channel
    this.watchingLive = false;
    this.failures = 0;
    this.events = new EventTarget();
    this.ws = null;
    this.stats = null;
    this.lastHeard = Date.now();
    this.stopped = false;
    this.timer = setInterval(() => this.keepAlive(), PING_EVERY_MS);
  }

  /** Close for good (signed out): no reconnect, no more events. */
  stop() {
    this.stopped = true;
    clearInterval(this.timer);
    const ws = this.ws;
    this.ws = null;
    if (ws) ws.close();
  }

  on(name, fn) {
    const listener = (event) => fn(event.detail);
    this.events.addEventListener(name, listener);
    return () => this.events.removeEventListener(name, listener);
  }

  emit(name, detail) {
    this.events.dispatchEvent(new CustomEvent(name, {detail}));
  }

  setState(state) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', state);
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.opened();
    ws.onmessage = (event) => this.received(JSON.parse(event.data));
    ws.onclose = (event) => this.closed(ws, event);
  }

  opened() {
    this.lastHeard = Date.now();
    this.setState('live');
    this.send(this.cursor ? {type: 'subscribe', resume_from: this.cursor} : {type: 'subscribe'});
    // Resuming: the backlog follows with no acknowledgement, and the updates flow again.
    this.tasksLive = this.cursor !== null;
    this.send({type: 'subscribe', channel: 'stats'});
    this.send({type: 'subscribe', channel: 'schedules'});
    if (this.watching) this.send({type: 'subscribe', channel: 'task', task_id: this.watching});
  }

  closed(ws, event) {
    if (ws !== this.ws || this.stopped) return;
    if (event.code === POLICY_VIOLATION) this.emit('refused', event.reason);
    this.ws = null;
    this.tasksLive = this.schedulesLive = this.watchingLive = false;
    this.setState('reconnecting');
    const base = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    const delay = Math.min(BACKOFF_CAP_MS, base) * (0.75 + Math.random() / 2);
    this.failures += 1;
    this.emit('retry', {attempt: this.failures, delayMs: delay});
    setTimeout(() => this.stopped || this.connect(), delay);
  }

  received(message) {
    this.lastHeard = Date.now();
    this.failures = 0;
    switch (message.type) {
      case 'task_update':
        this.cursor = message.cursor;
        this.emit('task', message.task);
        break;
      case 'subscribed':
        this.acknowledged(message);
        break;
      case 'resync_required':
        this.cursor = null;
        this.send({type: 'subscribe'});
        break;
      case 'stats':
        this.stats = message; // for a view that opens before the next one
        this.emit('stats', message);
        break;
      case 'schedule_update':
        this.emit('schedule', message.schedule);
        break;
      case 'task_changed':
        if (message.task_id === this.watching) this.emit('task-changed', message.task_id);
        break;
      case 'error':
        console.warn('jobledger /ws:', message.code, message.error);
        break;
      default:
        break; // pong, and message types of later servers
    }
  }

  acknowledged(message) {
    if (message.channel === 'schedules') {
      this.schedulesLive = true;
      this.emit('schedules-ready');
    } else if (message.channel === 'task') {
      if (message.task_id !== this.watching) return;
      this.watchingLive = true;
      this.emit('task-ready', message.task_id);
    } else if (message.cursor) {
      this.cursor = message.cursor;
      this.tasksLive = true;
      this.emit('tasks-reset');
    }
  }

  /** Be told when this task changes (one at a time: the task page's). */
  watch(taskId) {
    this.watching = taskId;
    this.watchingLive = false;
    this.send({type: 'subscribe', channel: 'task', task_id: taskId});
  }

  unwatch() {
    if (!this.watching) return;
    this.watching = null;
    this.watchingLive = false;
    this.send({type: 'unsubscribe', channel: 'task'});
  }

  send(message) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  keepAlive() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastHeard > SILENT_MS) this.ws.close(); // reconnects in onclose
    else this.send({type: 'ping'});
  }
}

export function liveUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${scheme}//${location.host}/ws`;
}
