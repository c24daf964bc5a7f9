-- Completion jobs shared by several instances on one PostgreSQL (issue 13): the instance that
-- runs a job holds a lease it renews; another instance fails a job whose lease ran out, asks its
-- runner to stop it (`cancel_requested`), and follows it from its events, which the runner
-- writes as they come and which are kept until a little after the job's end. One process serves
-- a SQLite file, so these columns and the table stay empty here; the schema is the same on both.
ALTER TABLE completion_jobs ADD COLUMN instance_id TEXT;
ALTER TABLE completion_jobs ADD COLUMN lease_until TEXT;
ALTER TABLE completion_jobs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1));
CREATE TABLE completion_job_events (
    job_id TEXT NOT NULL REFERENCES completion_jobs (id) ON DELETE CASCADE,
    seq    INTEGER NOT NULL,
    event  TEXT NOT NULL,
    data   TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
-- the sweep for jobs whose lease ran out
CREATE INDEX completion_jobs_lease ON completion_jobs (lease_until) WHERE status = 'running';
