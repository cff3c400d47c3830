-- Secondary indexes of the read models. A replay into a fresh file creates them after
-- loading, which is much faster than maintaining them row by row.

CREATE INDEX IF NOT EXISTS jobs_by_created ON jobs (created_at DESC);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, created_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_job ON runs (job_id, attempt);
CREATE INDEX IF NOT EXISTS run_logs_by_run ON run_logs (run_id, partition, offset);
CREATE INDEX IF NOT EXISTS jobs_by_change ON jobs (partition, last_offset);
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at DESC);
CREATE INDEX IF NOT EXISTS runs_by_type ON runs (task_type, status, started_at DESC);
-- Tasks found by a prefix of their idempotency key (GET /api/v1/tasks?search=); only the
-- jobs that have one are indexed.
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
