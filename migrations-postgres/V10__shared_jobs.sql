-- Completion jobs shared by several instances on one PostgreSQL (issue 13): the instance that
-- runs a job holds a lease it renews; another instance fails a job whose lease ran out, asks its
-- runner to stop it (`cancel_requested`), and follows it from its events, which the runner
-- writes as they come and which are kept until a little after the job's end.
ALTER TABLE completion_jobs ADD COLUMN instance_id text;
ALTER TABLE completion_jobs ADD COLUMN lease_until timestamptz;
ALTER TABLE completion_jobs ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;
CREATE TABLE completion_job_events (
    job_id text NOT NULL REFERENCES completion_jobs (id) ON DELETE CASCADE,
    seq    bigint NOT NULL,
    event  text NOT NULL,
    data   text NOT NULL,
    PRIMARY KEY (job_id, seq)
);
-- the sweep for jobs whose lease ran out
CREATE INDEX completion_jobs_lease ON completion_jobs (lease_until) WHERE status = 'running';
