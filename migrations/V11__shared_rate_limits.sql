-- Request rate limits (`[limits]`) shared by several instances on one PostgreSQL (issue 13): per
-- caller (API key, user or client address), the theoretical arrival time of the cell rate
-- algorithm (GCRA, what governor counts in memory). One process serves a SQLite file and counts
-- in memory, so the table stays empty here; the schema is the same on both.
CREATE TABLE rate_limits (
    key                    TEXT PRIMARY KEY,
    theoretical_arrival_at TEXT NOT NULL
) WITHOUT ROWID;
