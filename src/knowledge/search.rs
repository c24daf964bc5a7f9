//! The query path shared by `/knowledge/search` and completions: user text becomes a safe FTS5
//! query, and BM25 ranks the chunks of the caller's organization (in the same WHERE clause as
//! the match, so it applies before the LIMIT). With an embedding model, the query's vector
//! finds the nearest chunks too (organization and scope inside the KNN), and the two rankings
//! are fused by reciprocal rank fusion.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::{
    api::knowledge::Passage,
    authz::Scope,
    db::Db,
    error::ApiResult,
    llm::embeddings::Embedder,
    store::documents::{SearchScope, nearest_chunks, passages_by_rowid, search_chunks, space_table},
};

/// The constant of reciprocal rank fusion: score = Σ 1 / (RRF_K + rank).
const RRF_K: f64 = 60.0;

/// Every token quoted (so `multi-agent`, `don't`, `NOT`, `*` and `(` are words, not syntax) and
/// ORed (a question ANDed finds nothing). `None` when no searchable word is left.
pub fn fts5_query(q: &str) -> Option<String> {
    let q: String = q.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let tokens: Vec<String> = q
        .split_whitespace()
        .filter(|t| t.chars().any(char::is_alphanumeric))
        .take(32)
        .map(|t| format!("\"{}\"", t.replace('"', "\"\"")))
        .collect();
    (!tokens.is_empty()).then(|| tokens.join(" OR "))
}

/// The best `limit` passages for `q` by full text alone, best first.
pub fn search(conn: &Connection, scope: &SearchScope<'_>, q: &str, limit: usize) -> ApiResult<Vec<Passage>> {
    match fts5_query(q) {
        Some(fts) => Ok(search_chunks(conn, scope, &fts, limit)?.into_iter().map(|(_, p)| p).collect()),
        None => Ok(vec![]),
    }
}

/// What a retrieval may reach; the organization is always part of it (`Scope::All` only for a
/// superuser's own search).
pub struct Query {
    pub scope: Scope,
    pub project_ids: Vec<String>,
    pub document_ids: Vec<String>,
    pub text: String,
    pub limit: usize,
}

/// Full text, and vectors when `embedder` is configured and answers: the best `limit` passages,
/// best first. `score` is −BM25 for full text alone, the RRF value when fused. An embedding
/// failure leaves full-text retrieval working.
pub async fn retrieve(db: &Db, embedder: Option<&Embedder>, q: Query) -> ApiResult<Vec<Passage>> {
    let vector = match embedder {
        Some(e) => match e.embed(std::slice::from_ref(&q.text)).await {
            Ok(mut v) => v.pop().map(|v| (e.model.clone(), v)),
            Err(error) => {
                tracing::warn!(%error, "embedding the query failed; full-text retrieval only");
                None
            }
        },
        None => None,
    };
    db.read(move |c| {
        let s = SearchScope { scope: &q.scope, project_ids: &q.project_ids, document_ids: &q.document_ids };
        let table = match &vector {
            Some((model, v)) => space_table(c, model, v.len())?,
            None => None,
        };
        let (Some(table), Some((_, v))) = (table, vector) else {
            return search(c, &s, &q.text, q.limit);
        };
        let n = (4 * q.limit).max(50);
        let text_hits = match fts5_query(&q.text) {
            Some(fts) => search_chunks(c, &s, &fts, n)?,
            None => vec![],
        };
        let vector_hits = nearest_chunks(c, &s, &table, &v, n)?;
        let fused = fuse(text_hits.iter().map(|(id, _)| *id), vector_hits.iter().copied(), q.limit);
        let mut known: HashMap<i64, Passage> = text_hits.into_iter().collect();
        let missing: Vec<i64> = fused.iter().map(|(id, _)| *id).filter(|id| !known.contains_key(id)).collect();
        known.extend(passages_by_rowid(c, &s, &missing)?);
        Ok(fused.into_iter().filter_map(|(id, score)| known.remove(&id).map(|p| Passage { score, ..p })).collect())
    })
    .await
}

/// Reciprocal rank fusion of two rankings (ranks from 1): best first, ties by id, `limit` long.
pub fn fuse(a: impl Iterator<Item = i64>, b: impl Iterator<Item = i64>, limit: usize) -> Vec<(i64, f64)> {
    let mut scores: HashMap<i64, f64> = HashMap::new();
    for ranking in [a.collect::<Vec<_>>(), b.collect()] {
        for (rank, id) in ranking.into_iter().enumerate() {
            *scores.entry(id).or_default() += 1.0 / (RRF_K + rank as f64 + 1.0);
        }
    }
    let mut fused: Vec<(i64, f64)> = scores.into_iter().collect();
    fused.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    fused.truncate(limit);
    fused
}

#[cfg(test)]
mod tests {
    use super::{fts5_query, fuse};

    #[test]
    fn fusion_rewards_agreement() {
        // 3 is second in both lists, 1 first in one only, 9 only in the vector list
        let f = fuse([1, 3, 5].into_iter(), [2, 3, 9].into_iter(), 3);
        assert_eq!(f.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 1, 2]);
        assert!((f[0].1 - 2.0 / 62.0).abs() < 1e-12);
    }

    #[test]
    fn user_text_cannot_break_the_query() {
        assert_eq!(
            fts5_query("What is the vacation policy?").unwrap(),
            r#""What" OR "is" OR "the" OR "vacation" OR "policy?""#
        );
        assert_eq!(fts5_query(r#"multi-agent "x"#).unwrap(), r#""multi-agent" OR """x""#);
        assert_eq!(fts5_query("* ( ) \" 🎉"), None);
        assert_eq!(fts5_query("  \n\0 "), None);
    }
}
