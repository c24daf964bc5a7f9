-- Expired failed-login records and dead sessions are pruned in bounded batches (oldest first).
CREATE INDEX login_failures_time ON login_failures (failed_at);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_revoked ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;
