-- The knowledge base (SPEC §7, issue 12). V1's `documents` table was never used; it is replaced
-- by documents that carry their ingestion state, their original bytes, and their indexed chunks.
DROP TABLE documents;

-- One row per uploaded document. The row is also the ingestion queue: `pending` rows wait for the
-- worker, which claims one (`processing`, with a lease), and commits its chunks only while it
-- still holds that lease (`lease_token`), so a worker that lost its lease changes nothing.
CREATE TABLE documents (
    id              TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    project_id      TEXT REFERENCES projects (id) ON DELETE CASCADE,
    title           TEXT NOT NULL,
    filename        TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL,
    sha256          TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'processing', 'ready', 'failed')),
    error           TEXT,
    chunk_count     INTEGER NOT NULL DEFAULT 0,
    page_count      INTEGER,
    metadata        TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    created_by      TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    lease_token     TEXT,
    lease_until     TEXT,
    -- what the live chunks were built from: sha256, pipeline version, embedding model
    indexed_key     TEXT
);
-- the same bytes twice in one organization and project: 409 naming the existing id
CREATE UNIQUE INDEX documents_sha ON documents (organization_id, ifnull(project_id, ''), sha256);
CREATE INDEX documents_org_created ON documents (organization_id, created_at DESC, id DESC);
CREATE INDEX documents_queue ON documents (status, lease_until);

-- The original bytes, in the same database file: one file to back up, and a delete or a
-- rollback takes the bytes with the row.
CREATE TABLE document_files (
    document_id TEXT PRIMARY KEY REFERENCES documents (id) ON DELETE CASCADE,
    bytes       BLOB NOT NULL
);

-- The indexed passages. `id` is the rowid shared with chunks_fts; `public_id` is the UUID shown.
CREATE TABLE chunks (
    id              INTEGER PRIMARY KEY,
    public_id       TEXT NOT NULL UNIQUE,
    document_id     TEXT NOT NULL REFERENCES documents (id) ON DELETE CASCADE,
    organization_id TEXT NOT NULL,
    project_id      TEXT,
    ordinal         INTEGER NOT NULL,
    page            INTEGER,
    heading         TEXT NOT NULL DEFAULT '',
    text            TEXT NOT NULL,
    token_count     INTEGER NOT NULL,
    UNIQUE (document_id, ordinal)
);
CREATE INDEX chunks_org ON chunks (organization_id);

CREATE VIRTUAL TABLE chunks_fts USING fts5 (
    heading, text, content = 'chunks', content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, heading, text) VALUES (new.id, new.heading, new.text);
END;
CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, heading, text) VALUES ('delete', old.id, old.heading, old.text);
END;
CREATE TRIGGER chunks_au AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, heading, text) VALUES ('delete', old.id, old.heading, old.text);
    INSERT INTO chunks_fts (rowid, heading, text) VALUES (new.id, new.heading, new.text);
END;

-- One vector space per (embedding model, dimension): its vectors live in the vec0 table named
-- here, created at run time once the first /embeddings answer gives the dimension (a vec0
-- table's dimension is fixed). `state`: the model of [knowledge] embedding_model is `active`.
CREATE TABLE embedding_spaces (
    id         INTEGER PRIMARY KEY,
    model      TEXT NOT NULL,
    dims       INTEGER NOT NULL,
    table_name TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    UNIQUE (model, dims)
);
