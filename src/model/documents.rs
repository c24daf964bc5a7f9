//! Knowledge-base documents and their chunks.

use poem_openapi::Object;

/// A document of the knowledge base.
#[derive(Object, Debug, Clone)]
pub struct Document {
    pub id: String,
    pub organization_id: String,
    pub project_id: Option<String>,
    pub title: String,
    pub filename: String,
    /// The sniffed type: `text/plain`, `text/markdown`, `text/html`, `application/pdf` or the DOCX type
    pub content_type: String,
    pub size_bytes: i64,
    /// Of the original bytes, hex
    pub sha256: String,
    /// `pending`, `processing`, `ready` or `failed`
    pub status: String,
    /// Why ingestion failed
    pub error: Option<String>,
    pub chunk_count: i64,
    /// Pages of a PDF
    pub page_count: Option<i64>,
    pub metadata: serde_json::Value,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A passage of a document, as indexed.
#[derive(Object, Debug, Clone)]
pub struct Chunk {
    pub id: String,
    /// Position in the document, from 0
    pub ordinal: i64,
    pub text: String,
    /// 1-based physical page (PDF)
    pub page: Option<i64>,
    /// Heading path, "H1 > H2"; empty when none
    pub heading: String,
    /// Estimated (characters / 4)
    pub token_count: i64,
}
