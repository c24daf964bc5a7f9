-- Knowledge base ingestion speed (issue 12): FTS5 keeps the terms of pending inserts in memory
-- and writes them out as a new segment whenever that buffer passes 'hashsize' (1 MB by
-- default), and every few segments of one level are merged. A 1 MB document made about a dozen
-- small segments, and their merging was the largest cost of an ingestion. With 16 MB a document
-- is flushed as one segment (at commit), so far fewer merges happen; the buffer is memory
-- of the writer only while a document is committed.
INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('hashsize', 16777216);
