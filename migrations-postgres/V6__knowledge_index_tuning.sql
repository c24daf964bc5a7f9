-- SQLite's V6 raises FTS5's in-memory term buffer ('hashsize') so that a document is written as
-- one index segment. GIN has its own buffer for this (the pending list of fastupdate, merged in
-- bulk; gin_pending_list_limit, 4 MB by default), so nothing is tuned here: this version exists
-- so that the two migration histories stay aligned one-to-one.
SELECT 1;
