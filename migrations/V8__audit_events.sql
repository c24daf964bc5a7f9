-- The audit log (SPEC §8, issue 14): one row per successful write and per authentication event,
-- inserted in the same transaction as the write. Rows are only ever appended and pruned by age
-- (`[audit] retention_days`); the rowid is the order of events, newest first is rowid DESC.
-- No foreign keys: an event outlives the user, key or row it names.
CREATE TABLE audit_events (
    seq              INTEGER PRIMARY KEY,
    -- a UUID like every id; nothing looks an event up by it, so it has no index of its own
    id               TEXT NOT NULL,
    at               TEXT NOT NULL,
    organization_id  TEXT,
    actor_user_id    TEXT,
    actor_api_key_id TEXT,
    action           TEXT NOT NULL,
    target_type      TEXT,
    target_id        TEXT,
    ip               TEXT,
    user_agent       TEXT,
    -- JSON object: field -> new value (secrets never; long content as its length)
    changes          TEXT
);
-- an org admin's view, newest first; the other filters scan within it
CREATE INDEX audit_events_org ON audit_events (organization_id, seq);
