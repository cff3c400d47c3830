-- The read models. Every table here is derived from the log and can be rebuilt by
-- `jobledger replay`. Times are Unix milliseconds.

CREATE TABLE IF NOT EXISTS checkpoints (
    model TEXT NOT NULL,          -- jobs | run_logs | workers | schedules | keys
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL, -- every record before it has been applied
    PRIMARY KEY (model, partition)
) WITHOUT ROWID;

-- The identity of the log the read models are folded from (one row; the log's id and
-- epoch, services/log/protocol.py:LogIdentity). A start refuses or rebuilds read models
-- of another log (services/node/read_model_check.py). Not a read model: checksums skip it.
CREATE TABLE IF NOT EXISTS log_source (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_id TEXT NOT NULL,
    epoch INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    task_type TEXT NOT NULL,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL,
    payload BLOB NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    run_at INTEGER,
    timeout_seconds REAL,
    max_retries INTEGER,
    idempotency_key TEXT,
    partition INTEGER NOT NULL,
    created_offset INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    retry_count INTEGER NOT NULL,
    worker_id TEXT,
    lease_expires_at INTEGER,
    started_at INTEGER,
    finished_at INTEGER,
    result BLOB,
    error TEXT,
    stack TEXT,
    cancel_requested INTEGER NOT NULL,
    run_status TEXT,
    run_started_at INTEGER,
    run_ended_at INTEGER,
    processed INTEGER NOT NULL,
    total INTEGER,
    failed INTEGER NOT NULL,
    correlation_id TEXT,          -- the chain the job belongs to (docs/events.md)
    cause_id TEXT,                -- the event that last changed its status or asked to cancel
    trace TEXT,                   -- its enqueue's W3C trace context (jobs.packed_trace)
    last_offset INTEGER NOT NULL  -- offset of the job's latest event in its partition: the
                                  -- WebSocket resume cursor finds what changed after a point
) WITHOUT ROWID;

-- Where each event of a job sits in the jobs topic: the audit trail (GET .../history)
-- reads exactly these records back from the log.
CREATE TABLE IF NOT EXISTS job_events (
    job_id TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    PRIMARY KEY (job_id, offset)
) WITHOUT ROWID;

-- Where each job event sits in the jobs topic, by its event id: GET
-- /api/v1/events/{id}/causes follows causation ids through it (a chain may cross jobs).
-- Queue events are left out: one is written to every partition under one id.
CREATE TABLE IF NOT EXISTS job_event_ids (
    event_id TEXT PRIMARY KEY,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,      -- "<job_id>.<attempt>"
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    task_type TEXT NOT NULL,
    status TEXT NOT NULL,         -- RUNNING | COMPLETED | FAILED | CANCELLED
    worker_id TEXT,
    started_at INTEGER,
    ended_at INTEGER,
    processed INTEGER NOT NULL,
    total INTEGER,
    failed INTEGER NOT NULL,
    error TEXT,
    stack TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS run_logs (
    log_id TEXT PRIMARY KEY,      -- the JobLogged event's id: a redelivery is ignored
    run_id TEXT NOT NULL,
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    details BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS job_counts (
    task_type TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (task_type, status)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queue_counts (
    queue TEXT NOT NULL,
    status TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (queue, status)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS queue_depth (
    band TEXT PRIMARY KEY,        -- high | normal | low: pending jobs per priority band
    count INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS runs_ended (
    minute INTEGER NOT NULL,      -- start of the minute the run ended in
    outcome TEXT NOT NULL,        -- COMPLETED | FAILED
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, outcome)
) WITHOUT ROWID;

-- The same per task type and queue: the dashboard's throughput and failure rate per task
-- type and per queue over the last hour, and its charts.
CREATE TABLE IF NOT EXISTS runs_ended_by (
    minute INTEGER NOT NULL,
    task_type TEXT NOT NULL,
    queue TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (minute, task_type, queue, outcome)
) WITHOUT ROWID;

-- The net change of each queue's pending jobs per minute, by the time of each event that
-- moved a job into or out of pending: the depth at the end of minute M is the depth now
-- less the changes after M. Rows that sum to zero are deleted.
CREATE TABLE IF NOT EXISTS pending_moves (
    minute INTEGER NOT NULL,
    queue TEXT NOT NULL,
    delta INTEGER NOT NULL,
    PRIMARY KEY (minute, queue)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS processing (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    total_ms INTEGER NOT NULL,    -- summed duration of completed runs
    runs INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS queues (
    queue TEXT PRIMARY KEY,
    paused INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY,
    hostname TEXT NOT NULL,
    pid INTEGER NOT NULL,
    concurrency INTEGER NOT NULL,
    registered_at INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    status TEXT NOT NULL,         -- alive | stopped | lost
    current_jobs BLOB NOT NULL,   -- JSON array of job ids
    cpu_percent REAL NOT NULL,
    memory_mb REAL NOT NULL,
    partitions BLOB NOT NULL,     -- JSON array: the jobs partitions it decides for
    started_event_id TEXT         -- its WorkerStarted's event id (a WorkerLost's causal ids)
) WITHOUT ROWID;

-- The task types each worker declared in its latest WorkerStarted. A type is known (the
-- Kafka mode's API nodes accept tasks of it) once any worker ever declared it.
CREATE TABLE IF NOT EXISTS worker_task_types (
    worker_id TEXT NOT NULL,
    task_type TEXT NOT NULL,
    PRIMARY KEY (worker_id, task_type)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS quarantine (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset INTEGER NOT NULL,
    key TEXT NOT NULL,
    error TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (topic, partition, offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS schedules (
    schedule_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,         -- active | paused | removed
    definition BLOB NOT NULL,     -- JSON of the ScheduleDefinition (trigger, job template)
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    defined_at INTEGER NOT NULL,  -- when the current trigger took effect
    fire_after INTEGER NOT NULL,  -- timed fires are searched strictly after this
    next_run_time INTEGER,        -- NULL: paused, removed, manual, or no fire time left
    last_fire_time INTEGER,
    last_run_at INTEGER,
    last_job_id TEXT,
    fire_count INTEGER NOT NULL,
    skip_count INTEGER NOT NULL,
    last_skip_reason TEXT,
    partition INTEGER NOT NULL,
    defined_offset INTEGER NOT NULL
) WITHOUT ROWID;

-- API keys (projections/keys.py): their digests, never the keys. Who created and revoked
-- each (JSON actors) and when come from the envelopes of its events.
CREATE TABLE IF NOT EXISTS api_keys (
    key_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,         -- the key's first characters, for people to tell keys apart
    digest TEXT NOT NULL,         -- hex SHA-256 of the key
    permissions BLOB NOT NULL,    -- JSON array, sorted
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL,     -- JSON actor
    expires_at INTEGER,
    revoked_at INTEGER,
    revoked_by BLOB               -- JSON actor
) WITHOUT ROWID;

-- Users (projections/users.py), by username: the current or last registration of each.
-- The password's argon2id hash, never the password (docs/security.md says why the hash
-- is here at all).
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,        -- this registration's id: what tokens name (sub)
    password_hash TEXT NOT NULL,  -- argon2id PHC string
    permissions BLOB NOT NULL,    -- JSON array, sorted
    created_at INTEGER NOT NULL,
    created_by BLOB NOT NULL,     -- JSON actor
    changed_at INTEGER,           -- the last change of permissions
    changed_by BLOB,
    removed_at INTEGER,
    removed_by BLOB,
    revision INTEGER NOT NULL     -- events of the username applied: a newer state is higher
) WITHOUT ROWID;
