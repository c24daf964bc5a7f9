//! A passage found by knowledge retrieval.

use poem_openapi::Object;

/// A passage found by a search.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct Passage {
    pub chunk_id: String,
    pub document_id: String,
    pub document_title: String,
    /// 1-based physical page (PDF)
    pub page: Option<i64>,
    /// Heading path, "H1 > H2"; empty when none
    pub heading: String,
    pub text: String,
    /// Higher is better: −BM25 for full-text ranking alone, the reciprocal rank fusion of the
    /// full-text and vector rankings when an embedding model is configured
    pub score: f64,
}
