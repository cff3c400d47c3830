// The rows of the tasks table: one page of the REST list, kept current by task updates.
//
// The page holds at most `limit` rows, in the REST list's order (newest enqueue first, then
// task id), each task once (by id). An update of a row on the page changes it in place; an
// update of a task not on the page is added only when it belongs there: it matches the
// filters and sorts within the page. So the first page shows new tasks as they come (the
// oldest row leaves for the next page), and a later page counts them instead ("N newer").
// The DOM stays as bounded as the rows.

/** a before b in the table's order: newer first, then the larger id (as the REST list). */
export function before(a, b) {
  if (a.created_at !== b.created_at) return a.created_at > b.created_at;
  return a.task_id > b.task_id;
}

export class TaskWindow {
  constructor() {
    this.rows = [];
    this.byId = new Map();
    this.limit = 50;
    this.offset = 0;
    this.filters = {};
    this.newer = 0; // tasks newer than the page, on a page after the first
    this.version = 0; // bumped on every change: the view renders when it moved
  }

  /** Start from a REST answer, for these filters (status, task_type, queue,
   * created_after, created_before, search) and this page. */
  reset(list, {limit, offset, filters}) {
    this.limit = limit;
    this.offset = offset;
    this.filters = filters;
    this.rows = list.slice(0, limit);
    this.byId = new Map(this.rows.map((row) => [row.task_id, row]));
    this.newer = 0;
    this.version += 1;
  }

  matches(task) {
    const f = this.filters;
    return (!f.status || task.status === f.status)
      && (!f.task_type || task.task_type === f.task_type)
      && (!f.queue || task.queue === f.queue)
      && (!f.created_after || task.created_at >= f.created_after)
      && (!f.created_before || task.created_at < f.created_before)
      // An idempotency key is not in an update: a search adds only tasks found by id.
      && (!f.search || task.task_id.startsWith(f.search));
  }

  /** Apply one task update; true when the page changed. */
  apply(task) {
    const row = this.byId.get(task.task_id);
    if (row) {
      if (task.updated_at < row.updated_at) return false; // older than what is shown
      Object.assign(row, task);
      this.version += 1;
      return true;
    }
    if (!this.matches(task)) return false;
    const rows = this.rows;
    const last = rows[rows.length - 1];
    if (this.offset > 0) {
      if (rows.length && before(task, rows[0])) {
        this.newer += 1;
        this.version += 1;
        return true;
      }
      if (!last || before(last, task) && rows.length >= this.limit) return false;
    } else if (rows.length >= this.limit && before(last, task)) {
      return false; // it belongs on a later page
    }
    let i = 0;
    while (i < rows.length && before(rows[i], task)) i += 1;
    rows.splice(i, 0, {...task});
    this.byId.set(task.task_id, rows[i]);
    if (rows.length > this.limit) this.byId.delete(rows.pop().task_id);
    this.version += 1;
    return true;
  }
}
