//! The knowledge base's storage: documents and their files, the ingestion queue on the documents
//! table, chunks and their full-text index, and search, on both backends (issue 13).
//!
//! The pub functions that take `c: &mut Conn` dispatch once to `mod sqlite` (the SQL of before,
//! unchanged: chunks_fts (FTS5, kept by triggers), sqlite-vec vector spaces) or `mod pg` (the
//! generated `tsvector` column `chunks.search_vector` with its GIN index, ranked by `ts_rank_cd`;
//! the queue claimed with `FOR UPDATE SKIP LOCKED`, since several instances share one database).
//! SQLite's search building blocks (the BM25 budget of `knowledge::search`, the vec0 vector
//! spaces) keep taking a `&Connection`; PostgreSQL's retrieval is [`search_passages`]: its full
//! text and, where the pgvector extension is installed ([`enable_vectors`]), the nearest chunks
//! of a pgvector space (a table per model and dimension with an HNSW index), fused in one
//! snapshot.

use crate::{
    authz::Scope,
    knowledge::chunk::ChunkDraft,
    model::{
        documents::{Chunk, Document},
        knowledge::Passage,
    },
    pagination::Page,
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};
pub use sqlite::{
    Claimed, DocumentFilter, NewDocument, RERANK_FACTOR, SearchScope, VEC_CHUNK_SIZE, Vectors, bit_dims, duplicate,
    ensure_space, floats_table, insert_vector, match_count, nearest_chunks, nearest_chunks_exact, newest_window,
    not_found, passages_by_rowid, quantize, rank_chunks, search_chunks, space_table,
};

/// One page of the scope's documents, newest first, and the total of matches.
pub fn list_documents(
    c: &mut Conn,
    scope: &Scope,
    f: &DocumentFilter,
    page: Page,
) -> StoreResult<(Vec<Document>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_documents(c, scope, f, page),
        Conn::Postgres(t) => pg::list_documents(t, scope, f, page),
    }
}

/// A document of the scope, or 404.
pub fn find_document(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Document> {
    match c {
        Conn::Sqlite(c) => sqlite::find_document(c, scope, id),
        Conn::Postgres(t) => pg::find_document(t, scope, id),
    }
}

/// The id of a document with these bytes in the same organization and project, if any.
pub fn find_same_bytes(
    c: &mut Conn,
    organization_id: &str,
    project_id: Option<&str>,
    sha256: &str,
) -> StoreResult<Option<String>> {
    match c {
        Conn::Sqlite(c) => sqlite::find_same_bytes(c, organization_id, project_id, sha256),
        Conn::Postgres(t) => pg::find_same_bytes(t, organization_id, project_id, sha256),
    }
}

/// Whether `project_id` names a project (active or not) of `organization_id`.
pub fn project_in_org(c: &mut Conn, organization_id: &str, project_id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::project_in_org(c, organization_id, project_id),
        Conn::Postgres(t) => pg::project_in_org(t, organization_id, project_id),
    }
}

/// Whether `document_id` names a document of `organization_id`.
pub fn document_in_org(c: &mut Conn, organization_id: &str, document_id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::document_in_org(c, organization_id, document_id),
        Conn::Postgres(t) => pg::document_in_org(t, organization_id, document_id),
    }
}

/// Stores a `pending` document and its bytes; the same bytes in the same organization and
/// project answer 409 naming the existing document.
pub fn insert_document(c: &mut Conn, d: &NewDocument, bytes: &[u8]) -> StoreResult<Document> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_document(c, d, bytes),
        Conn::Postgres(t) => pg::insert_document(t, d, bytes),
    }
}

/// The original bytes of a document of the scope: (filename, content type, bytes).
pub fn document_file(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<(String, String, Vec<u8>)> {
    match c {
        Conn::Sqlite(c) => sqlite::document_file(c, scope, id),
        Conn::Postgres(t) => pg::document_file(t, scope, id),
    }
}

/// One page of a document's chunks, in document order.
pub fn list_chunks(c: &mut Conn, scope: &Scope, document_id: &str, page: Page) -> StoreResult<(Vec<Chunk>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_chunks(c, scope, document_id, page),
        Conn::Postgres(t) => pg::list_chunks(t, scope, document_id, page),
    }
}

/// Puts a document of the scope back in the queue; its current chunks stay searchable until
/// the new ones replace them.
pub fn request_reindex(c: &mut Conn, scope: &Scope, id: &str, now: &str) -> StoreResult<Document> {
    match c {
        Conn::Sqlite(c) => sqlite::request_reindex(c, scope, id, now),
        Conn::Postgres(t) => pg::request_reindex(t, scope, id, now),
    }
}

/// Deletes a document of the scope with its file, chunks and vectors; returns it as it was.
pub fn delete_document(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Document> {
    match c {
        Conn::Sqlite(c) => sqlite::delete_document(c, scope, id),
        Conn::Postgres(t) => pg::delete_document(t, scope, id),
    }
}

/// The ids of an agent config's `knowledge_base` must be of its organization: else 400 naming
/// the field.
pub fn check_knowledge_scope(
    c: &mut Conn,
    organization_id: &str,
    kb: &crate::knowledge::KnowledgeScope,
) -> StoreResult<()> {
    for p in &kb.project_ids {
        if !project_in_org(c, organization_id, p)? {
            return Err(StoreError::invalid(format!(
                "knowledge_base.project_ids: {p} does not name a project of this organization"
            )));
        }
    }
    for d in &kb.document_ids {
        if !document_in_org(c, organization_id, d)? {
            return Err(StoreError::invalid(format!(
                "knowledge_base.document_ids: {d} does not name a document of this organization"
            )));
        }
    }
    Ok(())
}

/// At start-up: work that a stopped process held goes back to the queue. Returns how many
/// documents. SQLite (one process serves the file): every `processing` document. PostgreSQL
/// (other instances may be ingesting right now): only those whose lease has expired.
pub fn requeue_interrupted(c: &mut Conn, now: &str) -> StoreResult<usize> {
    match c {
        Conn::Sqlite(c) => sqlite::requeue_interrupted(c, now),
        Conn::Postgres(t) => pg::requeue_interrupted(t, now),
    }
}

/// Claims the oldest pending document (or one whose lease expired) for `token` until
/// `lease_until`; documents interrupted `max_attempts` times fail instead. On PostgreSQL a
/// document is claimed by one instance only (`FOR UPDATE SKIP LOCKED`).
pub fn claim(
    c: &mut Conn,
    token: &str,
    lease_until: &str,
    now: &str,
    max_attempts: i64,
) -> StoreResult<Option<Claimed>> {
    match c {
        Conn::Sqlite(c) => sqlite::claim(c, token, lease_until, now, max_attempts),
        Conn::Postgres(t) => pg::claim(t, token, lease_until, now, max_attempts),
    }
}

/// Extends a lease that `token` still holds.
pub fn renew_lease(c: &mut Conn, id: &str, token: &str, lease_until: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::renew_lease(c, id, token, lease_until),
        Conn::Postgres(t) => pg::renew_lease(t, id, token, lease_until),
    }
}

/// Replaces the document's chunks with `chunks` and marks it ready, only while `token` holds
/// the lease (fenced): `false` means the lease was lost and nothing was written. `vectors` go
/// into the vector space of their model and dimension (created on first use): sqlite-vec on
/// SQLite, pgvector on PostgreSQL (whose ingestor embeds only where the extension is enabled).
#[allow(clippy::too_many_arguments)]
pub fn commit_chunks(
    c: &mut Conn,
    id: &str,
    token: &str,
    chunks: &[ChunkDraft],
    vectors: Option<Vectors<'_>>,
    error: Option<&str>,
    page_count: Option<i64>,
    indexed_key: &str,
    now: &str,
) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::commit_chunks(c, id, token, chunks, vectors, error, page_count, indexed_key, now),
        Conn::Postgres(t) => pg::commit_chunks(t, id, token, chunks, vectors, error, page_count, indexed_key, now),
    }
}

/// Marks the document failed with `error` (fenced like [`commit_chunks`]); its chunks go.
pub fn commit_failure(c: &mut Conn, id: &str, token: &str, error: &str, now: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::commit_failure(c, id, token, error, now),
        Conn::Postgres(t) => pg::commit_failure(t, id, token, error, now),
    }
}

/// At start-up: rebuilds SQLite vector spaces of an older layout (see the SQLite twin). Returns
/// how many vectors were copied; PostgreSQL's spaces have had one layout: 0.
pub fn upgrade_spaces(c: &mut Conn) -> StoreResult<usize> {
    match c {
        Conn::Sqlite(c) => sqlite::upgrade_spaces(c),
        Conn::Postgres(_) => Ok(0),
    }
}

/// At start-up: whether vectors can be stored and searched, and by what. SQLite: sqlite-vec,
/// compiled in. PostgreSQL: the pgvector extension, created here when the server has it but the
/// database does not (which needs the right to create it: a superuser, or the database owner
/// where pgvector is trusted); `None` where the server lacks it. An `Err` is a server that has
/// pgvector but would not create it.
pub fn enable_vectors(c: &mut Conn) -> StoreResult<Option<String>> {
    match c {
        Conn::Sqlite(_) => Ok(Some("sqlite-vec".into())),
        Conn::Postgres(t) => pg::enable_vectors(t),
    }
}

/// The best `limit` passages for the user text `q`, best first, in one snapshot. Without
/// `vector` (the question's embedding and its model), or without a vector space of that model
/// and dimension, full text alone: SQLite's `knowledge::search::search` (BM25 within its budgets;
/// `score` is −bm25), PostgreSQL's every word ORed as a `tsquery` over `chunks.search_vector`,
/// ranked by `ts_rank_cd` with the heading weighted 2 (`score` is that rank). With one, the full
/// text top N and the vector top N (N = max(50, 4·limit)) fused by reciprocal rank fusion
/// (`score` is the fused value). Higher is better on both backends. (SQLite serves questions with
/// `knowledge::search::retrieve_hybrid`, which runs the two rankings on two connections at once.)
pub fn search_passages(
    c: &mut Conn,
    s: &SearchScope<'_>,
    q: &str,
    vector: Option<(&str, &[f32])>,
    limit: usize,
) -> StoreResult<Vec<Passage>> {
    match c {
        Conn::Sqlite(c) => crate::knowledge::search::search_in_snapshot(c, s, q, vector, limit),
        Conn::Postgres(t) => pg::search_passages(t, s, q, vector, limit),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter, types::Value as SqlValue};

    use crate::{
        authz::Scope,
        db::{json_col, new_id, search_needle},
        knowledge::chunk::ChunkDraft,
        model::{
            documents::{Chunk, Document},
            knowledge::Passage,
        },
        pagination::Page,
        store::error::{StoreError, StoreResult},
    };

    const COLS: &str = "d.id, d.organization_id, d.project_id, d.title, d.filename, d.content_type, d.size_bytes, \
                    d.sha256, d.status, d.error, d.chunk_count, d.page_count, d.metadata, d.created_by, \
                    d.created_at, d.updated_at";

    fn from_row(r: &Row<'_>) -> rusqlite::Result<Document> {
        Ok(Document {
            id: r.get(0)?,
            organization_id: r.get(1)?,
            project_id: r.get(2)?,
            title: r.get(3)?,
            filename: r.get(4)?,
            content_type: r.get(5)?,
            size_bytes: r.get(6)?,
            sha256: r.get(7)?,
            status: r.get(8)?,
            error: r.get(9)?,
            chunk_count: r.get(10)?,
            page_count: r.get(11)?,
            metadata: json_col(r, 12)?,
            created_by: r.get(13)?,
            created_at: r.get(14)?,
            updated_at: r.get(15)?,
        })
    }

    pub fn not_found() -> StoreError {
        StoreError::NotFound("Document not found")
    }

    pub struct DocumentFilter {
        pub search: Option<String>,
        pub project_id: Option<String>,
        pub status: Option<&'static str>,
    }

    /// One page of the scope's documents, newest first, and the total of matches.
    pub fn list_documents(
        conn: &Connection,
        scope: &Scope,
        f: &DocumentFilter,
        page: Page,
    ) -> StoreResult<(Vec<Document>, i64)> {
        const WHERE: &str = "WHERE (?1 IS NULL OR d.organization_id = ?1) AND (?2 IS NULL OR d.project_id = ?2) \
                         AND (?3 IS NULL OR d.status = ?3) \
                         AND (?4 IS NULL OR instr(lower(d.title), ?4) > 0 OR instr(lower(d.filename), ?4) > 0)";
        let pattern = f.search.as_deref().map(search_needle);
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM documents d {WHERE}"))?
            .query_row(params![scope.org(), f.project_id, f.status, pattern], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {COLS} FROM documents d {WHERE} ORDER BY d.created_at DESC, d.id DESC LIMIT ?5 OFFSET ?6"
            ))?
            .query_map(params![scope.org(), f.project_id, f.status, pattern, page.limit, page.skip], from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// A document of the scope, or 404.
    pub fn find_document(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Document> {
        conn.prepare_cached(&format!(
            "SELECT {COLS} FROM documents d WHERE d.id = ?1 AND (?2 IS NULL OR d.organization_id = ?2)"
        ))?
        .query_row(params![id, scope.org()], from_row)
        .optional()?
        .ok_or_else(not_found)
    }

    /// The id of a document with these bytes in the same organization and project, if any.
    pub fn find_same_bytes(
        conn: &Connection,
        organization_id: &str,
        project_id: Option<&str>,
        sha256: &str,
    ) -> StoreResult<Option<String>> {
        Ok(conn
            .prepare_cached(
                "SELECT id FROM documents WHERE organization_id = ?1 AND ifnull(project_id, '') = ifnull(?2, '') \
             AND sha256 = ?3",
            )?
            .query_row(params![organization_id, project_id, sha256], |r| r.get(0))
            .optional()?)
    }

    /// Whether `project_id` names a project (active or not) of `organization_id`.
    pub fn project_in_org(conn: &Connection, organization_id: &str, project_id: &str) -> StoreResult<bool> {
        Ok(conn
            .prepare_cached("SELECT 1 FROM projects WHERE id = ?1 AND organization_id = ?2")?
            .query_row(params![project_id, organization_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Whether `document_id` names a document of `organization_id`.
    pub fn document_in_org(conn: &Connection, organization_id: &str, document_id: &str) -> StoreResult<bool> {
        Ok(conn
            .prepare_cached("SELECT 1 FROM documents WHERE id = ?1 AND organization_id = ?2")?
            .query_row(params![document_id, organization_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    pub struct NewDocument {
        pub id: String,
        pub organization_id: String,
        pub project_id: Option<String>,
        pub title: String,
        pub filename: String,
        pub content_type: &'static str,
        pub sha256: String,
        /// JSON object text
        pub metadata: String,
        pub created_by: String,
        pub now: String,
    }

    /// Stores a `pending` document and its bytes; the same bytes in the same organization and
    /// project answer 409 naming the existing document.
    pub fn insert_document(conn: &Connection, d: &NewDocument, bytes: &[u8]) -> StoreResult<Document> {
        if let Some(existing) = find_same_bytes(conn, &d.organization_id, d.project_id.as_deref(), &d.sha256)? {
            return Err(duplicate(&existing));
        }
        conn.prepare_cached(
        "INSERT INTO documents (id, organization_id, project_id, title, filename, content_type, size_bytes, sha256, \
         status, metadata, created_by, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10, ?11, ?11)",
    )?
    .execute(params![
        d.id,
        d.organization_id,
        d.project_id,
        d.title,
        d.filename,
        d.content_type,
        bytes.len() as i64,
        d.sha256,
        d.metadata,
        d.created_by,
        d.now
    ])?;
        conn.prepare_cached("INSERT INTO document_files (document_id, bytes) VALUES (?1, ?2)")?
            .execute(params![d.id, bytes])?;
        find_document(conn, &Scope::system_all(), &d.id)
    }

    pub fn duplicate(existing: &str) -> StoreError {
        StoreError::conflict(format!(
            "A document with the same content already exists in this organization and project: {existing}"
        ))
    }

    /// The original bytes of a document of the scope: (filename, content type, bytes).
    pub fn document_file(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<(String, String, Vec<u8>)> {
        conn.prepare_cached(
            "SELECT d.filename, d.content_type, f.bytes FROM documents d JOIN document_files f ON f.document_id = d.id \
         WHERE d.id = ?1 AND (?2 IS NULL OR d.organization_id = ?2)",
        )?
        .query_row(params![id, scope.org()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?
        .ok_or_else(not_found)
    }

    /// One page of a document's chunks, in document order.
    pub fn list_chunks(
        conn: &Connection,
        scope: &Scope,
        document_id: &str,
        page: Page,
    ) -> StoreResult<(Vec<Chunk>, i64)> {
        let org = scope.org();
        let total: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM chunks WHERE document_id = ?1 AND (?2 IS NULL OR organization_id = ?2)",
            )?
            .query_row(params![document_id, org], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(
                "SELECT public_id, ordinal, text, page, heading, token_count FROM chunks WHERE document_id = ?1 \
             AND (?4 IS NULL OR organization_id = ?4) ORDER BY ordinal LIMIT ?2 OFFSET ?3",
            )?
            .query_map(params![document_id, page.limit, page.skip, org], |r| {
                Ok(Chunk {
                    id: r.get(0)?,
                    ordinal: r.get(1)?,
                    text: r.get(2)?,
                    page: r.get(3)?,
                    heading: r.get(4)?,
                    token_count: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// Puts a document of the scope back in the queue; its current chunks stay searchable until
    /// the new ones replace them.
    pub fn request_reindex(conn: &Connection, scope: &Scope, id: &str, now: &str) -> StoreResult<Document> {
        let n = conn
            .prepare_cached(
                "UPDATE documents SET status = 'pending', error = NULL, attempts = 0, lease_token = NULL, \
             lease_until = NULL, updated_at = ?3 WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)",
            )?
            .execute(params![id, scope.org(), now])?;
        if n == 0 {
            return Err(not_found());
        }
        find_document(conn, scope, id)
    }

    /// Deletes a document of the scope with its file and chunks (the FTS rows follow by trigger);
    /// returns it as it was.
    pub fn delete_document(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Document> {
        let doc = find_document(conn, scope, id)?;
        delete_vectors(conn, id)?;
        conn.prepare_cached("DELETE FROM chunks WHERE document_id = ?1")?.execute(params![id])?;
        conn.prepare_cached("DELETE FROM document_files WHERE document_id = ?1")?.execute(params![id])?;
        conn.prepare_cached("DELETE FROM documents WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)")?
            .execute(params![id, scope.org()])?;
        Ok(doc)
    }

    // ---------------------------------------------------------------------------------------------
    // The ingestion queue

    /// A document the worker holds a lease on.
    pub struct Claimed {
        pub id: String,
        pub content_type: String,
        pub sha256: String,
        pub bytes: Vec<u8>,
    }

    /// At start-up (one process serves the SQLite file): work that a stopped process held goes
    /// back to the queue. Returns how many documents.
    pub fn requeue_interrupted(conn: &Connection, now: &str) -> StoreResult<usize> {
        Ok(conn
            .prepare_cached(
                "UPDATE documents SET status = 'pending', lease_token = NULL, lease_until = NULL, updated_at = ?1 \
             WHERE status = 'processing'",
            )?
            .execute(params![now])?)
    }

    /// Claims the oldest pending document (or one whose lease expired) for `token` until
    /// `lease_until`; documents interrupted `max_attempts` times fail instead.
    pub fn claim(
        conn: &Connection,
        token: &str,
        lease_until: &str,
        now: &str,
        max_attempts: i64,
    ) -> StoreResult<Option<Claimed>> {
        conn.prepare_cached(
        "UPDATE documents SET status = 'failed', error = ?3, lease_token = NULL, lease_until = NULL, updated_at = ?1 \
         WHERE attempts >= ?2 AND (status = 'pending' OR (status = 'processing' AND lease_until < ?1))",
    )?
    .execute(params![
        now,
        max_attempts,
        format!("ingestion was interrupted {max_attempts} times; reindex to retry")
    ])?;
        let claimed: Option<(String, String, String)> = conn
        .prepare_cached(
            "UPDATE documents SET status = 'processing', attempts = attempts + 1, lease_token = ?1, lease_until = ?2, \
             updated_at = ?3 WHERE id = (SELECT id FROM documents WHERE status = 'pending' \
             OR (status = 'processing' AND lease_until < ?3) ORDER BY created_at, id LIMIT 1) \
             RETURNING id, content_type, sha256",
        )?
        .query_row(params![token, lease_until, now], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
        let Some((id, content_type, sha256)) = claimed else { return Ok(None) };
        let bytes: Vec<u8> = conn
            .prepare_cached("SELECT bytes FROM document_files WHERE document_id = ?1")?
            .query_row(params![id], |r| r.get(0))?;
        Ok(Some(Claimed { id, content_type, sha256, bytes }))
    }

    /// Extends a lease that `token` still holds.
    pub fn renew_lease(conn: &Connection, id: &str, token: &str, lease_until: &str) -> StoreResult<bool> {
        Ok(conn
            .prepare_cached("UPDATE documents SET lease_until = ?3 WHERE id = ?1 AND lease_token = ?2")?
            .execute(params![id, token, lease_until])?
            == 1)
    }

    /// Chunks per INSERT statement of [`commit_chunks`] (about 1.4 MB of text).
    pub(super) const INSERT_BATCH: usize = 1024;

    /// Replaces the document's chunks with `chunks` and marks it ready, only while `token` holds
    /// the lease (fenced): `false` means the lease was lost and nothing was written.
    #[allow(clippy::too_many_arguments)]
    pub fn commit_chunks(
        conn: &Connection,
        id: &str,
        token: &str,
        chunks: &[ChunkDraft],
        vectors: Option<Vectors<'_>>,
        error: Option<&str>,
        page_count: Option<i64>,
        indexed_key: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let owner: Option<(String, Option<String>)> = conn
        .prepare_cached(
            "UPDATE documents SET status = 'ready', error = ?7, chunk_count = ?3, page_count = ?4, indexed_key = ?5, \
             lease_token = NULL, lease_until = NULL, updated_at = ?6 WHERE id = ?1 AND lease_token = ?2 \
             AND status = 'processing' RETURNING organization_id, project_id",
        )?
        .query_row(params![id, token, chunks.len() as i64, page_count, indexed_key, now, error], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
        let Some((organization_id, project_id)) = owner else { return Ok(false) };
        delete_vectors(conn, id)?;
        conn.prepare_cached("DELETE FROM chunks WHERE document_id = ?1")?.execute(params![id])?;
        // Many chunks per statement: each statement that writes through the FTS5 trigger opens a
        // statement savepoint, and FTS5 writes its pending terms out as a new segment at every
        // savepoint, so one INSERT per chunk made one tiny segment per chunk and most of an
        // ingestion's time went into merging them.
        let mut insert = conn.prepare_cached(
            "INSERT INTO chunks (public_id, document_id, organization_id, project_id, ordinal, page, heading, text, \
         token_count) SELECT j.value ->> 0, ?1, ?2, ?3, ?4 + j.key, j.value ->> 1, j.value ->> 2, j.value ->> 3, \
         j.value ->> 4 FROM json_each(?5) j ORDER BY j.key RETURNING ordinal, id",
        )?;
        let mut rowids = vec![0i64; chunks.len()];
        for (b, batch) in chunks.chunks(INSERT_BATCH).enumerate() {
            let rows: Vec<serde_json::Value> =
                batch.iter().map(|c| serde_json::json!([new_id(), c.page, c.heading, c.text, c.token_count])).collect();
            let first = b * INSERT_BATCH;
            let json = serde_json::Value::Array(rows).to_string();
            let mut inserted = insert.query(params![id, organization_id, project_id, first as i64, json])?;
            while let Some(r) = inserted.next()? {
                let ordinal: i64 = r.get(0)?;
                rowids[ordinal as usize] = r.get(1)?;
            }
        }
        if let Some(v) = vectors.filter(|v| v.vectors.len() == rowids.len() && !v.vectors.is_empty()) {
            let table = ensure_space(conn, v.model, v.vectors[0].len(), now)?;
            for (rowid, vector) in rowids.iter().zip(v.vectors) {
                insert_vector(conn, &table, *rowid, &organization_id, id, project_id.as_deref().unwrap_or(""), vector)?;
            }
        }
        Ok(true)
    }

    /// The embeddings of a document's chunks, in chunk order, from `model`.
    #[derive(Clone, Copy)]
    pub struct Vectors<'a> {
        pub model: &'a str,
        pub vectors: &'a [Vec<f32>],
    }

    fn vector_blob(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|f| f.to_le_bytes()).collect()
    }

    /// The vec0 table of the vector space (model, dims), if it exists.
    pub fn space_table(conn: &Connection, model: &str, dims: usize) -> StoreResult<Option<String>> {
        Ok(conn
            .prepare_cached("SELECT table_name FROM embedding_spaces WHERE model = ?1 AND dims = ?2")?
            .query_row(params![model, dims as i64], |r| r.get(0))
            .optional()?)
    }

    /// Vectors per chunk of a vec0 table: its unit of storage and of a KNN scan (sqlite-vec's
    /// default; each organization's partition preallocates one chunk, about 90 KiB at 384 dims).
    pub const VEC_CHUNK_SIZE: usize = 1024;

    /// The binary KNN asks for this many candidates per result wanted; exact cosine re-ranks them.
    pub const RERANK_FACTOR: usize = 16;

    /// The bits of a vector's binary quantization: one bit per dimension (set when it is > 0),
    /// padded with zero bits to a multiple of 64 (sqlite-vec then counts bits a word at a time).
    pub fn bit_dims(dims: usize) -> usize {
        dims.div_ceil(64) * 64
    }

    /// A vector's sign bits (dimension i is bit i % 8 of byte i / 8), [`bit_dims`] long.
    pub fn quantize(v: &[f32]) -> Vec<u8> {
        let mut bits = vec![0u8; bit_dims(v.len()) / 8];
        for (i, x) in v.iter().enumerate() {
            if *x > 0.0 {
                bits[i / 8] |= 1 << (i % 8);
            }
        }
        bits
    }

    /// The plain table beside a space's vec0 table that keeps its float vectors (for the exact
    /// re-rank: point reads by rowid, one page each, where a vec0 chunk is a blob of a megabyte).
    pub fn floats_table(table: &str) -> String {
        format!("{table}_floats")
    }

    /// The tables of a vector space of `dims` dimensions: the vec0 table of the sign bits (the
    /// Hamming KNN), with the organization as partition key and the scope as metadata columns
    /// (project_id '' = none: vec0 rejects NULL), and the float vectors by chunk rowid.
    fn space_sql(table: &str, dims: usize) -> String {
        format!(
            "CREATE VIRTUAL TABLE {table} USING vec0(chunk_id INTEGER PRIMARY KEY, organization_id TEXT PARTITION KEY, \
         document_id TEXT, project_id TEXT, embedding_bits bit[{bits}], chunk_size={VEC_CHUNK_SIZE}); \
         CREATE TABLE {floats} (chunk_id INTEGER PRIMARY KEY, embedding BLOB NOT NULL);",
            bits = bit_dims(dims),
            floats = floats_table(table),
        )
    }

    /// Stores one chunk's vector in a space: its bits in the vec0 table, the floats beside.
    pub fn insert_vector(
        conn: &Connection,
        table: &str,
        chunk_id: i64,
        organization_id: &str,
        document_id: &str,
        project_id: &str,
        vector: &[f32],
    ) -> StoreResult<()> {
        conn.prepare_cached(&format!(
            "INSERT INTO {table} (chunk_id, organization_id, document_id, project_id, embedding_bits) \
         VALUES (?1, ?2, ?3, ?4, vec_bit(?5))"
        ))?
        .execute(params![chunk_id, organization_id, document_id, project_id, quantize(vector)])?;
        conn.prepare_cached(&format!("INSERT INTO {} (chunk_id, embedding) VALUES (?1, ?2)", floats_table(table)))?
            .execute(params![chunk_id, vector_blob(vector)])?;
        Ok(())
    }

    /// The vec0 table of (model, dims), created on first use: a vec0 table's dimension is fixed, so
    /// each model (and dimension) gets its own, and changing the model never mixes vectors.
    pub fn ensure_space(conn: &Connection, model: &str, dims: usize, now: &str) -> StoreResult<String> {
        if let Some(table) = space_table(conn, model, dims)? {
            return Ok(table);
        }
        conn.prepare_cached(
            "INSERT INTO embedding_spaces (model, dims, table_name, created_at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![model, dims as i64, format!("pending-{}", new_id()), now])?;
        let table = format!("chunk_vec_{}", conn.last_insert_rowid());
        conn.prepare_cached("UPDATE embedding_spaces SET table_name = ?1 WHERE id = ?2")?
            .execute(params![table, conn.last_insert_rowid()])?;
        // partitioned by organization only: each partition value preallocates a block of vectors
        conn.execute_batch(&space_sql(&table, dims))?;
        Ok(table)
    }

    /// At start-up: rebuilds the vector spaces made before binary quantization (one vec0 table of
    /// float vectors) into the current layout, in the caller's transaction: every vector is copied
    /// with its bits, the old table dropped, and the space names the new one. Returns how many
    /// vectors were copied.
    pub fn upgrade_spaces(conn: &Connection) -> StoreResult<usize> {
        let spaces: Vec<(i64, usize, String)> = conn
            .prepare("SELECT id, dims, table_name FROM embedding_spaces ORDER BY id")?
            .query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as usize, r.get(2)?)))?
            .collect::<rusqlite::Result<_>>()?;
        let mut copied = 0;
        for (id, dims, table) in spaces {
            let sql: Option<String> = conn
                .prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?1")?
                .query_row(params![table], |r| r.get(0))
                .optional()?;
            if sql.as_deref().is_none_or(|s| s.contains("embedding_bits")) {
                continue;
            }
            let new_table = format!("chunk_vec_{id}_b");
            conn.execute_batch(&space_sql(&new_table, dims))?;
            let mut read = conn.prepare(&format!(
                "SELECT chunk_id, organization_id, document_id, project_id, embedding FROM {table}"
            ))?;
            let mut rows = read.query([])?;
            while let Some(r) = rows.next()? {
                let blob: Vec<u8> = r.get(4)?;
                let vector = floats(&blob);
                let (chunk_id, org, doc, project): (i64, String, String, String) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                insert_vector(conn, &new_table, chunk_id, &org, &doc, &project, &vector)?;
                copied += 1;
            }
            drop(rows);
            conn.execute_batch(&format!("DROP TABLE {table}"))?;
            conn.prepare("UPDATE embedding_spaces SET table_name = ?1 WHERE id = ?2")?
                .execute(params![new_table, id])?;
        }
        Ok(copied)
    }

    fn floats(blob: &[u8]) -> Vec<f32> {
        blob.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    }

    /// Removes the vectors of a document's current chunks from every vector space (vec0 rows have
    /// no foreign key; deleting by primary key avoids a scan of the metadata column).
    fn delete_vectors(conn: &Connection, document_id: &str) -> StoreResult<()> {
        let tables: Vec<String> = conn
            .prepare_cached("SELECT table_name FROM embedding_spaces")?
            .query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        if tables.is_empty() {
            return Ok(());
        }
        let ids: Vec<i64> = conn
            .prepare_cached("SELECT id FROM chunks WHERE document_id = ?1")?
            .query_map(params![document_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        for table in &tables {
            for t in [table.clone(), floats_table(table)] {
                let mut delete = conn.prepare_cached(&format!("DELETE FROM {t} WHERE chunk_id = ?1"))?;
                for id in &ids {
                    delete.execute(params![id])?;
                }
            }
        }
        Ok(())
    }

    /// Marks the document failed with `error` (fenced like [`commit_chunks`]); its chunks go.
    pub fn commit_failure(conn: &Connection, id: &str, token: &str, error: &str, now: &str) -> StoreResult<bool> {
        let n = conn
            .prepare_cached(
                "UPDATE documents SET status = 'failed', error = ?3, chunk_count = 0, lease_token = NULL, \
             lease_until = NULL, updated_at = ?4 WHERE id = ?1 AND lease_token = ?2 AND status = 'processing'",
            )?
            .execute(params![id, token, error, now])?;
        if n == 1 {
            delete_vectors(conn, id)?;
            conn.prepare_cached("DELETE FROM chunks WHERE document_id = ?1")?.execute(params![id])?;
        }
        Ok(n == 1)
    }

    // ---------------------------------------------------------------------------------------------
    // Full-text search

    /// What a search may reach: always one organization (or all of them, for a superuser's own
    /// search), narrowed to projects and documents when given.
    pub struct SearchScope<'a> {
        pub scope: &'a Scope,
        pub project_ids: &'a [String],
        pub document_ids: &'a [String],
    }

    /// How many chunks (of every organization) the FTS5 query `fts` matches, counted no further
    /// than `cap`: reading a doclist up to `cap` rowids is cheap, ranking all of it is not.
    pub fn match_count(conn: &Connection, fts: &str, cap: usize) -> StoreResult<usize> {
        let n: i64 = conn
            .prepare_cached("SELECT count(*) FROM (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ?1 LIMIT ?2)")?
            .query_row(params![fts, cap as i64], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// The chunk rowid at or above which the `window` newest chunks of the scope matching `fts`
    /// lie, or `None` when fewer match. Bounds the ranking of a query made only of common words.
    pub fn newest_window(conn: &Connection, s: &SearchScope<'_>, fts: &str, window: usize) -> StoreResult<Option<i64>> {
        let mut sql = String::from(
            "SELECT chunks_fts.rowid FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid WHERE chunks_fts MATCH ?1",
        );
        let mut args: Vec<SqlValue> = vec![SqlValue::Text(fts.to_string())];
        scope_filters(&mut sql, &mut args, s, "c.organization_id", "c.project_id", "c.document_id");
        args.push(SqlValue::Integer(window.saturating_sub(1) as i64));
        sql.push_str(&format!(" ORDER BY chunks_fts.rowid DESC LIMIT 1 OFFSET ?{}", args.len()));
        Ok(conn.prepare_cached(&sql)?.query_row(params_from_iter(args), |r| r.get(0)).optional()?)
    }

    /// The best `limit` chunks for the FTS5 query `fts` (see `knowledge::search`), as (rowid,
    /// bm25) with the heading weighted 2, best (lowest) first; only chunks with rowid ≥ `from`
    /// when given. The organization and scope are in the same WHERE as the MATCH, so they apply
    /// before the LIMIT; only the rowid and the score go through the sort (the passages are read
    /// for the winners alone, by [`passages_by_rowid`]).
    pub fn rank_chunks(
        conn: &Connection,
        s: &SearchScope<'_>,
        fts: &str,
        from: Option<i64>,
        limit: usize,
    ) -> StoreResult<Vec<(i64, f64)>> {
        let mut sql = String::from(
            "SELECT chunks_fts.rowid, bm25(chunks_fts, 2.0, 1.0) AS s FROM chunks_fts JOIN chunks c \
         ON c.id = chunks_fts.rowid WHERE chunks_fts MATCH ?1",
        );
        let mut args: Vec<SqlValue> = vec![SqlValue::Text(fts.to_string())];
        if let Some(from) = from {
            args.push(SqlValue::Integer(from));
            sql.push_str(&format!(" AND chunks_fts.rowid >= ?{}", args.len()));
        }
        scope_filters(&mut sql, &mut args, s, "c.organization_id", "c.project_id", "c.document_id");
        args.push(SqlValue::Integer(limit as i64));
        sql.push_str(&format!(" ORDER BY s, chunks_fts.rowid LIMIT ?{}", args.len()));
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params_from_iter(args), |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The best `limit` passages for the FTS5 query `fts`, best first; `score` is −bm25 (higher
    /// is better).
    pub fn search_chunks(
        conn: &Connection,
        s: &SearchScope<'_>,
        fts: &str,
        limit: usize,
    ) -> StoreResult<Vec<(i64, Passage)>> {
        let ranked = rank_chunks(conn, s, fts, None, limit)?;
        let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
        let mut found: std::collections::HashMap<i64, Passage> =
            passages_by_rowid(conn, s, &ids)?.into_iter().collect();
        Ok(ranked
            .into_iter()
            .filter_map(|(id, bm25)| found.remove(&id).map(|p| (id, Passage { score: -bm25, ..p })))
            .collect())
    }

    fn passage_from_row(r: &Row<'_>) -> rusqlite::Result<Passage> {
        Ok(Passage {
            chunk_id: r.get(0)?,
            document_id: r.get(1)?,
            document_title: r.get(2)?,
            page: r.get(3)?,
            heading: r.get(4)?,
            text: r.get(5)?,
            score: 0.0,
        })
    }

    /// Appends the organization and the project/document scope to a WHERE clause.
    fn scope_filters(
        sql: &mut String,
        args: &mut Vec<SqlValue>,
        s: &SearchScope<'_>,
        org_col: &str,
        project_col: &str,
        document_col: &str,
    ) {
        if let Some(org) = s.scope.org() {
            args.push(SqlValue::Text(org.to_string()));
            sql.push_str(&format!(" AND {org_col} = ?{}", args.len()));
        }
        for (column, ids) in [(project_col, s.project_ids), (document_col, s.document_ids)] {
            if ids.is_empty() {
                continue;
            }
            let mut marks = vec![];
            for id in ids {
                args.push(SqlValue::Text(id.clone()));
                marks.push(format!("?{}", args.len()));
            }
            sql.push_str(&format!(" AND {column} IN ({})", marks.join(", ")));
        }
    }

    /// The `k` nearest chunks (rowids, nearest first, by cosine) to `query` in the vector space
    /// `table`: the [`RERANK_FACTOR`]·k nearest by Hamming distance of the sign bits (sqlite-vec's
    /// KNN), then exact cosine over their float vectors. The organization and scope are
    /// constraints of the KNN itself, so they apply before `k`.
    pub fn nearest_chunks(
        conn: &Connection,
        s: &SearchScope<'_>,
        table: &str,
        query: &[f32],
        k: usize,
    ) -> StoreResult<Vec<i64>> {
        let mut sql = format!("SELECT chunk_id FROM {table} WHERE embedding_bits MATCH vec_bit(?1) AND k = ?2");
        let candidates = (k * RERANK_FACTOR).clamp(1, 4096);
        let mut args: Vec<SqlValue> = vec![SqlValue::Blob(quantize(query)), SqlValue::Integer(candidates as i64)];
        scope_filters(&mut sql, &mut args, s, "organization_id", "project_id", "document_id");
        sql.push_str(" ORDER BY distance");
        let ids: Vec<i64> =
            conn.prepare(&sql)?.query_map(params_from_iter(args), |r| r.get(0))?.collect::<rusqlite::Result<_>>()?;
        let mut read =
            conn.prepare_cached(&format!("SELECT embedding FROM {} WHERE chunk_id = ?1", floats_table(table)))?;
        let mut scored = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(blob) = read.query_row(params![id], |r| r.get::<_, Vec<u8>>(0)).optional()? {
                scored.push((cosine(&floats(&blob), query), id));
            }
        }
        Ok(best(scored, k))
    }

    /// The `k` nearest chunks of the organization by exact cosine over every float vector: what
    /// [`nearest_chunks`] approximates (the benchmark measures their agreement; not used to serve).
    pub fn nearest_chunks_exact(
        conn: &Connection,
        organization_id: &str,
        table: &str,
        query: &[f32],
        k: usize,
    ) -> StoreResult<Vec<i64>> {
        let mut stmt = conn.prepare(&format!(
            "SELECT f.chunk_id, f.embedding FROM {} f JOIN chunks c ON c.id = f.chunk_id WHERE c.organization_id = ?1",
            floats_table(table)
        ))?;
        let mut rows = stmt.query(params![organization_id])?;
        let mut scored = vec![];
        while let Some(r) = rows.next()? {
            let blob: Vec<u8> = r.get(1)?;
            scored.push((cosine(&floats(&blob), query), r.get(0)?));
        }
        Ok(best(scored, k))
    }

    /// Cosine similarity; 0 for a zero vector.
    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
        for (x, y) in a.iter().zip(b) {
            dot += x * y;
            na += x * x;
            nb += y * y;
        }
        let c = dot / (na.sqrt() * nb.sqrt());
        if c.is_finite() { c } else { 0.0 }
    }

    /// The ids of the `k` highest similarities, highest first (ties by id).
    fn best(mut scored: Vec<(f32, i64)>, k: usize) -> Vec<i64> {
        scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        scored.into_iter().take(k).map(|(_, id)| id).collect()
    }

    /// Passages by chunk rowid, checked against the scope's organization a second time.
    pub fn passages_by_rowid(conn: &Connection, s: &SearchScope<'_>, ids: &[i64]) -> StoreResult<Vec<(i64, Passage)>> {
        let mut out = vec![];
        let mut stmt = conn.prepare_cached(
            "SELECT c.public_id, c.document_id, d.title, c.page, c.heading, c.text, c.id FROM chunks c \
         JOIN documents d ON d.id = c.document_id WHERE c.id = ?1 AND (?2 IS NULL OR c.organization_id = ?2) \
         AND d.organization_id = c.organization_id",
        )?;
        for id in ids {
            if let Some(p) = stmt.query_row(params![id, s.scope.org()], passage_from_row).optional()? {
                out.push((*id, p));
            }
        }
        Ok(out)
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{
        Claimed, DocumentFilter, NewDocument, SearchScope, Vectors, duplicate, not_found, sqlite::INSERT_BATCH,
    };
    use crate::{
        authz::Scope,
        db::{new_id, search_needle},
        knowledge::chunk::ChunkDraft,
        model::{
            documents::{Chunk, Document},
            knowledge::Passage,
        },
        pagination::Page,
        store::{
            conn::{holds_nul, pg_json_col, pg_ts, pg_ts_col},
            error::{StoreResult, pg_conflict_on_unique},
        },
    };

    /// A second upload of the same bytes that lost the race with the first (both checked
    /// `find_same_bytes` before either committed): the unique index `documents_sha` answers.
    const SAME_BYTES: &str = "A document with the same content already exists in this organization and project";

    // metadata as text (parsed by serde_json, as on SQLite); timestamps formatted by pg_ts_col
    const COLS: &str = "d.id, d.organization_id, d.project_id, d.title, d.filename, d.content_type, d.size_bytes, \
                        d.sha256, d.status, d.error, d.chunk_count, d.page_count, d.metadata::text, d.created_by, \
                        d.created_at, d.updated_at";

    fn from_row(r: &Row) -> StoreResult<Document> {
        Ok(Document {
            id: r.try_get(0)?,
            organization_id: r.try_get(1)?,
            project_id: r.try_get(2)?,
            title: r.try_get(3)?,
            filename: r.try_get(4)?,
            content_type: r.try_get(5)?,
            size_bytes: r.try_get(6)?,
            sha256: r.try_get(7)?,
            status: r.try_get(8)?,
            error: r.try_get(9)?,
            chunk_count: r.try_get(10)?,
            page_count: r.try_get(11)?,
            metadata: pg_json_col(r, 12)?,
            created_by: r.try_get(13)?,
            created_at: pg_ts_col(r, 14)?,
            updated_at: pg_ts_col(r, 15)?,
        })
    }

    // nocase() folds ASCII letters only, like the needle and SQLite's lower(); strpos, not
    // LIKE, so that %, _ and \ in the search are themselves
    const LIST_WHERE: &str = "WHERE ($1::text IS NULL OR d.organization_id = $1) \
                              AND ($2::text IS NULL OR d.project_id = $2) AND ($3::text IS NULL OR d.status = $3) \
                              AND ($4::text IS NULL OR strpos(nocase(d.title), $4) > 0 \
                              OR strpos(nocase(d.filename), $4) > 0)";

    pub(super) fn list_documents(
        t: &mut Transaction,
        scope: &Scope,
        f: &DocumentFilter,
        page: Page,
    ) -> StoreResult<(Vec<Document>, i64)> {
        if holds_nul([f.search.as_deref(), f.project_id.as_deref()]) {
            return Ok((vec![], 0));
        }
        let pattern = f.search.as_deref().map(search_needle);
        let total: i64 = t
            .query_one(
                &format!("SELECT COUNT(*) FROM documents d {LIST_WHERE}"),
                &[&scope.org(), &f.project_id, &f.status, &pattern],
            )?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT {COLS} FROM documents d {LIST_WHERE} ORDER BY d.created_at DESC, d.id DESC \
                     LIMIT $5 OFFSET $6"
                ),
                &[&scope.org(), &f.project_id, &f.status, &pattern, &page.limit, &page.skip],
            )?
            .iter()
            .map(from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn find_document(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Document> {
        t.query_opt(
            &format!("SELECT {COLS} FROM documents d WHERE d.id = $1 AND ($2::text IS NULL OR d.organization_id = $2)"),
            &[&id, &scope.org()],
        )?
        .as_ref()
        .map(from_row)
        .transpose()?
        .ok_or_else(not_found)
    }

    pub(super) fn find_same_bytes(
        t: &mut Transaction,
        organization_id: &str,
        project_id: Option<&str>,
        sha256: &str,
    ) -> StoreResult<Option<String>> {
        Ok(t.query_opt(
            "SELECT id FROM documents WHERE organization_id = $1 AND coalesce(project_id, '') = coalesce($2, '') \
             AND sha256 = $3",
            &[&organization_id, &project_id, &sha256],
        )?
        .map(|r| r.try_get(0))
        .transpose()?)
    }

    pub(super) fn project_in_org(t: &mut Transaction, organization_id: &str, project_id: &str) -> StoreResult<bool> {
        Ok(t.query_opt(
            "SELECT 1 FROM projects WHERE id = $1 AND organization_id = $2",
            &[&project_id, &organization_id],
        )?
        .is_some())
    }

    pub(super) fn document_in_org(t: &mut Transaction, organization_id: &str, document_id: &str) -> StoreResult<bool> {
        Ok(t.query_opt(
            "SELECT 1 FROM documents WHERE id = $1 AND organization_id = $2",
            &[&document_id, &organization_id],
        )?
        .is_some())
    }

    pub(super) fn insert_document(t: &mut Transaction, d: &NewDocument, bytes: &[u8]) -> StoreResult<Document> {
        if let Some(existing) = find_same_bytes(t, &d.organization_id, d.project_id.as_deref(), &d.sha256)? {
            return Err(duplicate(&existing));
        }
        let now = pg_ts(&d.now)?;
        t.execute(
            "INSERT INTO documents (id, organization_id, project_id, title, filename, content_type, size_bytes, \
             sha256, status, metadata, created_by, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'pending', $9::text::jsonb, $10, $11, $11)",
            &[
                &d.id,
                &d.organization_id,
                &d.project_id,
                &d.title,
                &d.filename,
                &d.content_type,
                &(bytes.len() as i64),
                &d.sha256,
                &d.metadata,
                &d.created_by,
                &now,
            ],
        )
        .map_err(pg_conflict_on_unique(SAME_BYTES))?;
        t.execute("INSERT INTO document_files (document_id, bytes) VALUES ($1, $2)", &[&d.id, &bytes])?;
        find_document(t, &Scope::system_all(), &d.id)
    }

    pub(super) fn document_file(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
    ) -> StoreResult<(String, String, Vec<u8>)> {
        let row = t
            .query_opt(
                "SELECT d.filename, d.content_type, f.bytes FROM documents d \
                 JOIN document_files f ON f.document_id = d.id \
                 WHERE d.id = $1 AND ($2::text IS NULL OR d.organization_id = $2)",
                &[&id, &scope.org()],
            )?
            .ok_or_else(not_found)?;
        Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
    }

    pub(super) fn list_chunks(
        t: &mut Transaction,
        scope: &Scope,
        document_id: &str,
        page: Page,
    ) -> StoreResult<(Vec<Chunk>, i64)> {
        let org = scope.org();
        let total: i64 = t
            .query_one(
                "SELECT COUNT(*) FROM chunks WHERE document_id = $1 AND ($2::text IS NULL OR organization_id = $2)",
                &[&document_id, &org],
            )?
            .try_get(0)?;
        let rows = t
            .query(
                "SELECT public_id, ordinal, text, page, heading, token_count FROM chunks WHERE document_id = $1 \
                 AND ($2::text IS NULL OR organization_id = $2) ORDER BY ordinal LIMIT $3 OFFSET $4",
                &[&document_id, &org, &page.limit, &page.skip],
            )?
            .iter()
            .map(|r| {
                Ok(Chunk {
                    id: r.try_get(0)?,
                    ordinal: r.try_get(1)?,
                    text: r.try_get(2)?,
                    page: r.try_get(3)?,
                    heading: r.try_get(4)?,
                    token_count: r.try_get(5)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn request_reindex(t: &mut Transaction, scope: &Scope, id: &str, now: &str) -> StoreResult<Document> {
        let n = t.execute(
            "UPDATE documents SET status = 'pending', error = NULL, attempts = 0, lease_token = NULL, \
             lease_until = NULL, updated_at = $3 WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)",
            &[&id, &scope.org(), &pg_ts(now)?],
        )?;
        if n == 0 {
            return Err(not_found());
        }
        find_document(t, scope, id)
    }

    pub(super) fn delete_document(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Document> {
        let doc = find_document(t, scope, id)?;
        // the file and the chunks (with their search_vector) follow by ON DELETE CASCADE
        t.execute(
            "DELETE FROM documents WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)",
            &[&id, &scope.org()],
        )?;
        Ok(doc)
    }

    // Several instances share the queue: a `processing` document with a live lease belongs to
    // one of them, so a start takes back only the expired ones (what `claim` would take anyway).
    pub(super) fn requeue_interrupted(t: &mut Transaction, now: &str) -> StoreResult<usize> {
        Ok(t.execute(
            "UPDATE documents SET status = 'pending', lease_token = NULL, lease_until = NULL, updated_at = $1 \
             WHERE status = 'processing' AND lease_until < $1",
            &[&pg_ts(now)?],
        )? as usize)
    }

    // The claimable rows: pending, or processing with an expired lease. SKIP LOCKED: a row
    // another instance is claiming (or failing) right now is not waited for and not taken twice;
    // the lock holds until this transaction commits its lease.
    const CLAIMABLE: &str = "(status = 'pending' OR (status = 'processing' AND lease_until < $1))";

    pub(super) fn claim(
        t: &mut Transaction,
        token: &str,
        lease_until: &str,
        now: &str,
        max_attempts: i64,
    ) -> StoreResult<Option<Claimed>> {
        let (now, lease_until) = (pg_ts(now)?, pg_ts(lease_until)?);
        t.execute(
            &format!(
                "UPDATE documents SET status = 'failed', error = $3, lease_token = NULL, lease_until = NULL, \
                 updated_at = $1 WHERE id IN (SELECT id FROM documents WHERE attempts >= $2 AND {CLAIMABLE} \
                 FOR UPDATE SKIP LOCKED)"
            ),
            &[&now, &max_attempts, &format!("ingestion was interrupted {max_attempts} times; reindex to retry")],
        )?;
        let claimed = t.query_opt(
            &format!(
                "UPDATE documents SET status = 'processing', attempts = attempts + 1, lease_token = $2, \
                 lease_until = $3, updated_at = $1 WHERE id = (SELECT id FROM documents WHERE {CLAIMABLE} \
                 ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, content_type, sha256"
            ),
            &[&now, &token, &lease_until],
        )?;
        let Some(r) = claimed else { return Ok(None) };
        let (id, content_type, sha256): (String, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
        let bytes: Vec<u8> =
            t.query_one("SELECT bytes FROM document_files WHERE document_id = $1", &[&id])?.try_get(0)?;
        Ok(Some(Claimed { id, content_type, sha256, bytes }))
    }

    pub(super) fn renew_lease(t: &mut Transaction, id: &str, token: &str, lease_until: &str) -> StoreResult<bool> {
        Ok(t.execute(
            "UPDATE documents SET lease_until = $3 WHERE id = $1 AND lease_token = $2",
            &[&id, &token, &pg_ts(lease_until)?],
        )? == 1)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn commit_chunks(
        t: &mut Transaction,
        id: &str,
        token: &str,
        chunks: &[ChunkDraft],
        vectors: Option<Vectors<'_>>,
        error: Option<&str>,
        page_count: Option<i64>,
        indexed_key: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let owner = t.query_opt(
            "UPDATE documents SET status = 'ready', error = $7, chunk_count = $3, page_count = $4, \
             indexed_key = $5, lease_token = NULL, lease_until = NULL, updated_at = $6 \
             WHERE id = $1 AND lease_token = $2 AND status = 'processing' RETURNING organization_id, project_id",
            &[&id, &token, &(chunks.len() as i64), &page_count, &indexed_key, &pg_ts(now)?, &error],
        )?;
        let Some(owner) = owner else { return Ok(false) };
        let (organization_id, project_id): (String, Option<String>) = (owner.try_get(0)?, owner.try_get(1)?);
        t.execute("DELETE FROM chunks WHERE document_id = $1", &[&id])?;
        // one statement per batch, the columns as arrays; search_vector is generated
        let insert = "INSERT INTO chunks (public_id, document_id, organization_id, project_id, ordinal, page, \
                      heading, text, token_count) \
                      SELECT u.public_id, $1, $2, $3, $4 + u.n - 1, u.page, u.heading, u.text, u.token_count \
                      FROM unnest($5::text[], $6::bigint[], $7::text[], $8::text[], $9::bigint[]) \
                      WITH ORDINALITY AS u (public_id, page, heading, text, token_count, n) ORDER BY u.n \
                      RETURNING ordinal, id";
        let mut chunk_ids = vec![0i64; chunks.len()];
        for (b, batch) in chunks.chunks(INSERT_BATCH).enumerate() {
            let public_ids: Vec<String> = batch.iter().map(|_| new_id()).collect();
            let pages: Vec<Option<i64>> = batch.iter().map(|c| c.page).collect();
            let headings: Vec<&str> = batch.iter().map(|c| c.heading.as_str()).collect();
            let texts: Vec<&str> = batch.iter().map(|c| c.text.as_str()).collect();
            let tokens: Vec<i64> = batch.iter().map(|c| c.token_count).collect();
            let first = (b * INSERT_BATCH) as i64;
            let rows = t.query(
                insert,
                &[&id, &organization_id, &project_id, &first, &public_ids, &pages, &headings, &texts, &tokens],
            )?;
            for r in rows {
                chunk_ids[r.try_get::<_, i64>(0)? as usize] = r.try_get(1)?;
            }
        }
        if let Some(v) = vectors.filter(|v| v.vectors.len() == chunk_ids.len()) {
            let scope = (organization_id.as_str(), project_id.as_deref(), id);
            insert_vectors(t, v.model, &chunk_ids, v.vectors, scope, now)?;
        }
        Ok(true)
    }

    pub(super) fn commit_failure(
        t: &mut Transaction,
        id: &str,
        token: &str,
        error: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let n = t.execute(
            "UPDATE documents SET status = 'failed', error = $3, chunk_count = 0, lease_token = NULL, \
             lease_until = NULL, updated_at = $4 WHERE id = $1 AND lease_token = $2 AND status = 'processing'",
            &[&id, &token, &error, &pg_ts(now)?],
        )?;
        if n == 1 {
            t.execute("DELETE FROM chunks WHERE document_id = $1", &[&id])?;
        }
        Ok(n == 1)
    }

    /// The query's words (what SQLite's FTS5 query quotes, unquoted): each becomes a
    /// `plainto_tsquery` (stemmed, unaccented, stop words dropped; never syntax) and they are
    /// ORed, as on SQLite. A question of stop words alone matches nothing.
    fn words(q: &str) -> Vec<String> {
        crate::knowledge::search::fts5_terms(q).into_iter().map(|t| t[1..t.len() - 1].replace("\"\"", "\"")).collect()
    }

    // Each word a plainto_tsquery, ORed; NULL when no word is left (stop words only). Asked first,
    // on its own: a query that is a constant when RANK is planned lets the planner estimate its
    // matches and take the GIN index (within one statement it could not, and scanned the table).
    const QUERY: &str = "SELECT string_agg('(' || w.q::text || ')', ' | ') \
         FROM (SELECT plainto_tsquery('copilot_english', w) AS q FROM unnest($1::text[]) AS w) AS w \
         WHERE numnode(w.q) > 0";

    // The organization is in the same WHERE as the match, so it applies before the LIMIT.
    // Weights {D, C, B, A}: the heading (A) counts twice the text (B), FTS5's bm25 weights.
    const RANK: &str = "SELECT c.id, ts_rank_cd('{0.1, 0.2, 0.5, 1.0}', c.search_vector, $1::text::tsquery)::float8 \
         AS score FROM chunks c WHERE c.search_vector @@ $1::text::tsquery \
         AND ($2::text IS NULL OR c.organization_id = $2) \
         AND (cardinality($3::text[]) = 0 OR c.project_id = ANY ($3)) \
         AND (cardinality($4::text[]) = 0 OR c.document_id = ANY ($4)) \
         ORDER BY score DESC, c.id LIMIT $5";

    /// The best `limit` chunks for the user text `q` by full text, as (id, ts_rank_cd), best first.
    fn rank_text(t: &mut Transaction, s: &SearchScope<'_>, q: &str, limit: usize) -> StoreResult<Vec<(i64, f64)>> {
        let words = words(q);
        if words.is_empty() {
            return Ok(vec![]);
        }
        let Some(query): Option<String> = t.query_one(QUERY, &[&words])?.try_get(0)? else { return Ok(vec![]) };
        t.query(RANK, &[&query, &s.scope.org(), &s.project_ids, &s.document_ids, &(limit as i64)])?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// The passages of `ranked` (chunk id, score), in that order, each with its score. The
    /// chunk's organization is checked a second time, and its document must be of it.
    fn ranked_passages(t: &mut Transaction, s: &SearchScope<'_>, ranked: &[(i64, f64)]) -> StoreResult<Vec<Passage>> {
        let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
        let rows = t.query(
            "SELECT c.id, c.public_id, c.document_id, d.title, c.page, c.heading, c.text FROM chunks c \
             JOIN documents d ON d.id = c.document_id AND d.organization_id = c.organization_id \
             WHERE c.id = ANY ($1) AND ($2::text IS NULL OR c.organization_id = $2)",
            &[&ids, &s.scope.org()],
        )?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for r in rows {
            let passage = Passage {
                chunk_id: r.try_get(1)?,
                document_id: r.try_get(2)?,
                document_title: r.try_get(3)?,
                page: r.try_get(4)?,
                heading: r.try_get(5)?,
                text: r.try_get(6)?,
                score: 0.0,
            };
            found.insert(r.try_get::<_, i64>(0)?, passage);
        }
        Ok(ranked.iter().filter_map(|(id, score)| found.remove(id).map(|p| Passage { score: *score, ..p })).collect())
    }

    pub(super) fn search_passages(
        t: &mut Transaction,
        s: &SearchScope<'_>,
        q: &str,
        vector: Option<(&str, &[f32])>,
        limit: usize,
    ) -> StoreResult<Vec<Passage>> {
        let space = match vector {
            Some((model, v)) => vectors::space(t, model, v.len())?.map(|space| (space, v)),
            None => None,
        };
        let ranked = match space {
            None => rank_text(t, s, q, limit)?,
            Some((space, v)) => {
                let n = (4 * limit).max(50);
                let text = rank_text(t, s, q, n)?;
                let nearest = vectors::nearest(t, s, &space, v, n)?;
                crate::knowledge::search::fuse(text.iter().map(|(id, _)| *id), nearest.into_iter(), limit)
            }
        };
        ranked_passages(t, s, &ranked)
    }

    pub(super) use vectors::enable_vectors;
    use vectors::insert_vectors;

    /// pgvector: one table per vector space (model, dimension), named in `embedding_spaces` as on
    /// SQLite, made at run time (a `vector(n)` column has a fixed dimension, and the extension is
    /// optional, so no migration can name it).
    mod vectors {
        use super::{SearchScope, StoreResult, Transaction};
        use crate::store::conn::pg_ts;

        /// Held while a space is made, so that instances ingesting at once make it once (an
        /// arbitrary constant, "spaces" in ASCII).
        const SPACES_LOCK: i64 = 0x7370_6163_6573;

        /// pgvector's HNSW index takes at most this many dimensions of `vector`; a wider space is
        /// searched exactly (every vector of the scope), without an index.
        const HNSW_MAX_DIMS: usize = 2000;

        /// A vector space's table and the pgvector version of the database.
        pub struct Space {
            table: String,
            version: String,
        }

        pub fn enable_vectors(t: &mut Transaction) -> StoreResult<Option<String>> {
            let Some(row) =
                t.query_opt("SELECT installed_version FROM pg_available_extensions WHERE name = 'vector'", &[])?
            else {
                return Ok(None);
            };
            if row.try_get::<_, Option<String>>(0)?.is_none() {
                // instances starting together: one creates it, the others find it
                t.execute("SELECT pg_advisory_xact_lock($1)", &[&SPACES_LOCK])?;
                t.batch_execute("CREATE EXTENSION IF NOT EXISTS vector")?;
            }
            Ok(Some(t.query_one("SELECT extversion FROM pg_extension WHERE extname = 'vector'", &[])?.try_get(0)?))
        }

        /// The space of (model, dims), if it exists (and pgvector with it).
        pub fn space(t: &mut Transaction, model: &str, dims: usize) -> StoreResult<Option<Space>> {
            let row = t.query_opt(
                "SELECT s.table_name, e.extversion FROM embedding_spaces s \
                 JOIN pg_extension e ON e.extname = 'vector' WHERE s.model = $1 AND s.dims = $2",
                &[&model, &(dims as i64)],
            )?;
            row.map(|r| Ok(Space { table: r.try_get(0)?, version: r.try_get(1)? })).transpose()
        }

        /// The space of (model, dims), made on first use: its table, the scope's columns copied from
        /// the chunk (the KNN filters on them), the chunk's row owning the vector (a chunk deleted
        /// takes its vector along), and an HNSW index by cosine distance.
        fn ensure_space(t: &mut Transaction, model: &str, dims: usize, now: &str) -> StoreResult<Space> {
            if let Some(space) = space(t, model, dims)? {
                return Ok(space);
            }
            t.execute("SELECT pg_advisory_xact_lock($1)", &[&SPACES_LOCK])?;
            if let Some(space) = space(t, model, dims)? {
                return Ok(space); // made by another instance while this one waited
            }
            let id: i64 = t
                .query_one(
                    "INSERT INTO embedding_spaces (model, dims, table_name, created_at) \
                     VALUES ($1, $2, 'pending-' || gen_random_uuid(), $3) RETURNING id",
                    &[&model, &(dims as i64), &pg_ts(now)?],
                )?
                .try_get(0)?;
            let table = format!("chunk_vec_{id}");
            t.execute("UPDATE embedding_spaces SET table_name = $1 WHERE id = $2", &[&table, &id])?;
            let mut ddl = format!(
                "CREATE TABLE {table} (chunk_id bigint PRIMARY KEY REFERENCES chunks (id) ON DELETE CASCADE, \
                 organization_id text NOT NULL, project_id text, document_id text NOT NULL, \
                 embedding vector({dims}) NOT NULL); \
                 CREATE INDEX {table}_org ON {table} (organization_id, document_id);"
            );
            if dims <= HNSW_MAX_DIMS {
                ddl.push_str(&format!(
                    "CREATE INDEX {table}_hnsw ON {table} USING hnsw (embedding vector_cosine_ops);"
                ));
            }
            t.batch_execute(&ddl)?;
            Ok(space(t, model, dims)?.expect("the space was made in this transaction"))
        }

        /// A vector as pgvector's text form, `[x,y,…]` (a float's shortest exact decimal).
        fn text(v: &[f32]) -> String {
            let parts: Vec<String> = v.iter().map(f32::to_string).collect();
            format!("[{}]", parts.join(","))
        }

        /// Stores the vectors of a document's chunks (`chunk_ids` in chunk order) in the space of
        /// their model and dimension, a batch per statement.
        pub fn insert_vectors(
            t: &mut Transaction,
            model: &str,
            chunk_ids: &[i64],
            vectors: &[Vec<f32>],
            scope: (&str, Option<&str>, &str),
            now: &str,
        ) -> StoreResult<()> {
            let Some(dims) = vectors.first().map(Vec::len) else { return Ok(()) };
            let space = ensure_space(t, model, dims, now)?;
            let (organization_id, project_id, document_id) = scope;
            let insert = format!(
                "INSERT INTO {} (chunk_id, organization_id, project_id, document_id, embedding) \
                 SELECT u.id, $1, $2, $3, u.v::vector FROM unnest($4::bigint[], $5::text[]) AS u (id, v)",
                space.table
            );
            for (ids, batch) in chunk_ids.chunks(super::INSERT_BATCH).zip(vectors.chunks(super::INSERT_BATCH)) {
                let texts: Vec<String> = batch.iter().map(|v| text(v)).collect();
                t.execute(&insert, &[&organization_id, &project_id, &document_id, &ids, &texts])?;
            }
            Ok(())
        }

        /// Whether pgvector `version` (`major.minor.patch`) has HNSW iterative scans (0.8 and later).
        fn iterates(version: &str) -> bool {
            let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (0, 8)
        }

        /// The `k` nearest chunks of the scope to `query` by cosine distance, nearest first. The
        /// organization and scope are in the WHERE of the KNN, so they apply before `k`; the HNSW
        /// scan looks at `k` candidates at least (`hnsw.ef_search`) and, on pgvector 0.8 and later,
        /// goes on scanning until `k` rows of the scope are found (`hnsw.iterative_scan`).
        pub fn nearest(
            t: &mut Transaction,
            s: &SearchScope<'_>,
            space: &Space,
            query: &[f32],
            k: usize,
        ) -> StoreResult<Vec<i64>> {
            let ef_search = k.clamp(40, 1000).to_string();
            let settings = match iterates(&space.version) {
                true => {
                    "SELECT set_config('hnsw.ef_search', $1, true), \
                         set_config('hnsw.iterative_scan', 'relaxed_order', true)"
                }
                false => "SELECT set_config('hnsw.ef_search', $1, true)",
            };
            t.query_one(settings, &[&ef_search])?;
            // relaxed order: the HNSW scan may yield slightly out of order; the outer query sorts
            let sql = format!(
                "SELECT n.chunk_id FROM (SELECT v.chunk_id, v.embedding <=> $1::text::vector AS distance \
                 FROM {} v WHERE ($2::text IS NULL OR v.organization_id = $2) \
                 AND (cardinality($3::text[]) = 0 OR v.project_id = ANY ($3)) \
                 AND (cardinality($4::text[]) = 0 OR v.document_id = ANY ($4)) \
                 ORDER BY distance LIMIT $5) AS n ORDER BY n.distance, n.chunk_id",
                space.table
            );
            t.query(&sql, &[&text(query), &s.scope.org(), &s.project_ids, &s.document_ids, &(k as i64)])?
                .iter()
                .map(|r| Ok(r.try_get(0)?))
                .collect()
        }

        #[cfg(test)]
        mod tests {
            #[test]
            fn versions_with_iterative_scans() {
                assert!(!super::iterates("0.6.2"));
                assert!(!super::iterates("0.7.4"));
                assert!(super::iterates("0.8.0"));
                assert!(super::iterates("1.0"));
            }

            #[test]
            fn vectors_are_written_in_pgvector_text() {
                assert_eq!(super::text(&[0.5, -1.0, 1e-7]), "[0.5,-1,0.0000001]");
            }
        }
    }
}
