//! SQL for the knowledge base: documents and their files, the ingestion queue on the documents
//! table, chunks (with their FTS5 index kept by triggers) and full-text search.

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
pub fn list_chunks(conn: &Connection, scope: &Scope, document_id: &str, page: Page) -> StoreResult<(Vec<Chunk>, i64)> {
    let org = scope.org();
    let total: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM chunks WHERE document_id = ?1 AND (?2 IS NULL OR organization_id = ?2)")?
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

/// The ids of an agent config's `knowledge_base` must be of its organization: else 400 naming
/// the field.
pub fn check_knowledge_scope(
    conn: &Connection,
    organization_id: &str,
    kb: &crate::knowledge::KnowledgeScope,
) -> StoreResult<()> {
    for p in &kb.project_ids {
        if !project_in_org(conn, organization_id, p)? {
            return Err(StoreError::invalid(format!(
                "knowledge_base.project_ids: {p} does not name a project of this organization"
            )));
        }
    }
    for d in &kb.document_ids {
        if !document_in_org(conn, organization_id, d)? {
            return Err(StoreError::invalid(format!(
                "knowledge_base.document_ids: {d} does not name a document of this organization"
            )));
        }
    }
    Ok(())
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
const INSERT_BATCH: usize = 1024;

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
    conn.prepare_cached("INSERT INTO embedding_spaces (model, dims, table_name, created_at) VALUES (?1, ?2, ?3, ?4)")?
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
        let mut read = conn
            .prepare(&format!("SELECT chunk_id, organization_id, document_id, project_id, embedding FROM {table}"))?;
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
        conn.prepare("UPDATE embedding_spaces SET table_name = ?1 WHERE id = ?2")?.execute(params![new_table, id])?;
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
    let mut found: std::collections::HashMap<i64, Passage> = passages_by_rowid(conn, s, &ids)?.into_iter().collect();
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
