-- Request rate limits (`[limits]`) shared by several instances on one PostgreSQL (issue 13): per
-- caller (API key, user or client address), the theoretical arrival time of the cell rate
-- algorithm (GCRA, what governor counts in memory on SQLite). UNLOGGED: no WAL for a counter
-- written on every request; a crash empties it, which only gives every caller a full allowance.
CREATE UNLOGGED TABLE rate_limits (
    key                    text PRIMARY KEY,
    theoretical_arrival_at timestamptz NOT NULL
);
