-- Token budgets (SPEC §8) sum the tokens of an organization's jobs of this month and of a user's
-- jobs of today before every completion: covering indexes answer that from the index alone. They
-- replace the two indexes of V3 that they start with (the usage reports use them the same way).
DROP INDEX completion_jobs_org_created;
DROP INDEX completion_jobs_user_created;
CREATE INDEX completion_jobs_org_spend ON completion_jobs (organization_id, created_at, prompt_tokens, completion_tokens);
CREATE INDEX completion_jobs_user_spend
    ON completion_jobs (user_id, created_at, organization_id, prompt_tokens, completion_tokens);
-- the job limit counts a user's running jobs
CREATE INDEX completion_jobs_user_running ON completion_jobs (user_id) WHERE status = 'running';
