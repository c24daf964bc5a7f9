//! The query path shared by `/knowledge/search` and completions: user text becomes a safe FTS5
//! query, and BM25 ranks the chunks of the caller's organization (in the same WHERE clause as
//! the match, so it applies before the LIMIT). With an embedding model, the query's vector
//! finds the nearest chunks too (organization and scope inside the KNN), and the two rankings
//! are fused by reciprocal rank fusion.

use std::collections::HashMap;

use rusqlite::Connection;

use crate::{
    authz::Scope,
    db::Db,
    llm::embeddings::Embedder,
    model::knowledge::Passage,
    store::conn::Store,
    store::documents::{
        SearchScope, match_count, nearest_chunks, newest_window, passages_by_rowid, rank_chunks, space_table,
    },
    store::error::StoreResult,
};

/// The constant of reciprocal rank fusion: score = Σ 1 / (RRF_K + rank).
const RRF_K: f64 = 60.0;

/// A word that more chunks than this match (in the whole index) is "common": ranking every
/// chunk it matches would cost time in proportion to the index, and its BM25 weight (IDF) is
/// low anyway. Counting stops here, so finding out costs at most this many rowids per word.
pub const COMMON_DF: usize = 1000;

/// How many matching chunks (summed over the words kept) BM25 ranks at most, short of the
/// rarest word alone: the less rare words beyond it are left out (they weigh least).
pub const RANK_BUDGET: usize = 1500;

/// When every word of a question is common, only the newest this many matching chunks of the
/// scope are ranked (a bound on the work; such questions say little about where to look).
pub const COMMON_WINDOW: usize = 2000;

/// The query's words, each quoted (so `multi-agent`, `don't`, `NOT`, `*` and `(` are words,
/// not syntax), without repeats, at most 32.
pub fn fts5_terms(q: &str) -> Vec<String> {
    let q: String = q.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut terms: Vec<String> = vec![];
    for t in q.split_whitespace().filter(|t| t.chars().any(char::is_alphanumeric)) {
        let quoted = format!("\"{}\"", t.replace('"', "\"\""));
        if !terms.iter().any(|have| have.eq_ignore_ascii_case(&quoted)) {
            terms.push(quoted);
        }
        if terms.len() == 32 {
            break;
        }
    }
    terms
}

/// Every word quoted and ORed (a question ANDed finds nothing). `None` when no searchable word
/// is left.
pub fn fts5_query(q: &str) -> Option<String> {
    let terms = fts5_terms(q);
    (!terms.is_empty()).then(|| terms.join(" OR "))
}

/// The best `limit` chunks for `q` by BM25, as (rowid, bm25), best first.
///
/// The words that match few chunks decide: the rarest of them (within [`RANK_BUDGET`]) are ORed
/// and every chunk they match is ranked (common words, such as "the" or "is", are left out of
/// the match: they would make BM25 rank most of the index for a weight near zero). When every
/// word is common, all of them are ORed over the newest [`COMMON_WINDOW`] matching chunks of the
/// scope. Either way the work is bounded by the number of words, not by the size of the index.
pub fn rank_text(conn: &Connection, scope: &SearchScope<'_>, q: &str, limit: usize) -> StoreResult<Vec<(i64, f64)>> {
    let terms = fts5_terms(q);
    if terms.is_empty() {
        return Ok(vec![]);
    }
    let mut counted = vec![];
    for t in &terms {
        let n = match_count(conn, t, COMMON_DF)?;
        if n < COMMON_DF {
            counted.push((n, t.as_str()));
        }
    }
    // the rarest words first, as many as fit in the budget of chunks to rank (at least one)
    counted.sort_by_key(|(n, _)| *n);
    let (mut rare, mut budget) = (vec![], 0);
    for (n, t) in counted {
        if !rare.is_empty() && budget + n > RANK_BUDGET {
            break;
        }
        budget += n;
        rare.push(t);
    }
    if !rare.is_empty() {
        return rank_chunks(conn, scope, &rare.join(" OR "), None, limit);
    }
    let all = terms.join(" OR ");
    let from = newest_window(conn, scope, &all, COMMON_WINDOW)?;
    rank_chunks(conn, scope, &all, from, limit)
}

/// The best `limit` passages for `q` by full text alone, best first; `score` is −bm25.
pub fn search(conn: &Connection, scope: &SearchScope<'_>, q: &str, limit: usize) -> StoreResult<Vec<Passage>> {
    let ranked = rank_text(conn, scope, q, limit)?.into_iter().map(|(id, bm25)| (id, -bm25)).collect();
    ranked_passages(conn, scope, ranked)
}

/// The passages of `ranked` (rowid, score), in that order, each with its score; only the winners'
/// rows are read.
fn ranked_passages(conn: &Connection, s: &SearchScope<'_>, ranked: Vec<(i64, f64)>) -> StoreResult<Vec<Passage>> {
    let ids: Vec<i64> = ranked.iter().map(|(id, _)| *id).collect();
    let mut found: HashMap<i64, Passage> = passages_by_rowid(conn, s, &ids)?.into_iter().collect();
    Ok(ranked.into_iter().filter_map(|(id, score)| found.remove(&id).map(|p| Passage { score, ..p })).collect())
}

/// What a retrieval may reach; the organization is always part of it (every organization only for a
/// superuser's own search).
pub struct Query {
    pub scope: Scope,
    pub project_ids: Vec<String>,
    pub document_ids: Vec<String>,
    pub text: String,
    pub limit: usize,
}

impl Query {
    fn search_scope(&self) -> SearchScope<'_> {
        SearchScope { scope: &self.scope, project_ids: &self.project_ids, document_ids: &self.document_ids }
    }
}

/// Full text, and vectors when `embedder` is configured and answers: the best `limit` passages,
/// best first. `score` is −BM25 (SQLite) or `ts_rank_cd` (PostgreSQL) for full text alone, the
/// RRF value when fused. An embedding failure leaves full-text retrieval working. On
/// PostgreSQL without pgvector there is no embedder (`AppState::open` says so at start): full
/// text answers alone, as on SQLite without an embedding model.
pub async fn retrieve(store: &Store, embedder: Option<&Embedder>, q: Query) -> StoreResult<Vec<Passage>> {
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
    match (store, vector) {
        (Store::Sqlite(db), Some((model, v))) => retrieve_hybrid(db, q, model, v).await,
        (Store::Sqlite(db), None) => db.read_mapped(move |c| search(c, &q.search_scope(), &q.text, q.limit)).await,
        (Store::Postgres(_), vector) => {
            store
                .read(move |c| {
                    let vector = vector.as_ref().map(|(model, v)| (model.as_str(), v.as_slice()));
                    crate::store::documents::search_passages(c, &q.search_scope(), &q.text, vector, q.limit)
                })
                .await
        }
    }
}

/// [`retrieve_hybrid`] in one snapshot, one ranking after the other (SQLite's side of
/// `store::documents::search_passages`): full text alone without `vector` (the question's
/// embedding and its model) or without a vector space of that model and dimension.
pub fn search_in_snapshot(
    conn: &Connection,
    s: &SearchScope<'_>,
    q: &str,
    vector: Option<(&str, &[f32])>,
    limit: usize,
) -> StoreResult<Vec<Passage>> {
    let n = (4 * limit).max(50);
    let nearest = match vector {
        Some((model, v)) => {
            space_table(conn, model, v.len())?.map(|t| nearest_chunks(conn, s, &t, v, n)).transpose()?
        }
        None => None,
    };
    let text = rank_text(conn, s, q, if nearest.is_some() { n } else { limit })?;
    ranked_passages(conn, s, fused(text, nearest, limit))
}

/// The `limit` best of full text's ranking (rowid, bm25) alone (`score` −bm25), or of its fusion
/// with the vector ranking when there is one (`score` the RRF value).
fn fused(text: Vec<(i64, f64)>, nearest: Option<Vec<i64>>, limit: usize) -> Vec<(i64, f64)> {
    match nearest {
        Some(v) => fuse(text.iter().map(|(id, _)| *id), v.into_iter(), limit),
        None => text.into_iter().take(limit).map(|(id, bm25)| (id, -bm25)).collect(),
    }
}

/// The database half of hybrid retrieval, for a question already embedded by `model`: BM25 top
/// N and the KNN top N (N = max(50, 4·limit)) at the same time, on two read connections (they
/// are independent, and the machine has more than one core), then reciprocal rank fusion, and
/// the passages of the `limit` winners alone are read. Without vectors of that model and
/// dimension, full text answers alone.
pub async fn retrieve_hybrid(db: &Db, q: Query, model: String, vector: Vec<f32>) -> StoreResult<Vec<Passage>> {
    let n = (4 * q.limit).max(50);
    let q = std::sync::Arc::new(q);
    let text = {
        let q = q.clone();
        db.read_mapped(move |c| rank_text(c, &q.search_scope(), &q.text, n))
    };
    let knn = {
        let q = q.clone();
        db.read_mapped(move |c| {
            let Some(table) = space_table(c, &model, vector.len())? else { return Ok(None) };
            Ok(Some(nearest_chunks(c, &q.search_scope(), &table, &vector, n)?))
        })
    };
    let (text_hits, vector_hits) = tokio::try_join!(text, knn)?;
    let ranked = fused(text_hits, vector_hits, q.limit);
    db.read_mapped(move |c| ranked_passages(c, &q.search_scope(), ranked)).await
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
    /// The SQLite database of a test state (these tests fill its tables with SQL).
    fn sqlite(state: &crate::AppState) -> &crate::db::Db {
        state.store.sqlite().expect("a SQLite store")
    }

    use super::{COMMON_DF, StoreResult, fts5_query, fts5_terms, fuse, search};
    use crate::{
        authz::Scope,
        db::{new_id, now},
        knowledge::chunk::ChunkDraft,
        store::documents::{SearchScope, Vectors, commit_chunks},
    };

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

    #[test]
    fn repeated_words_are_searched_once() {
        assert_eq!(fts5_terms("Vacation vacation VACATION days"), [r#""Vacation""#, r#""days""#]);
    }

    /// A document of more chunks than one INSERT batch, where "the" is in every chunk and
    /// "vacation" in one: the chunks keep their order and vectors, a question with a rare word
    /// ranks only the chunks with that word, and one of common words alone still answers.
    #[test]
    fn common_words_do_not_pull_in_the_whole_index() {
        let (_dir, state, org) = state();
        let n = COMMON_DF + 300;
        let drafts: Vec<ChunkDraft> = (0..n)
            .map(|i| {
                let text = if i == 1234 { "the vacation policy".to_string() } else { format!("the rule number {i}") };
                ChunkDraft { page: Some(i as i64 + 1), heading: String::new(), text, token_count: 4 }
            })
            .collect();
        let vectors: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32, 1.0, 0.5]).collect();
        sqlite(&state)
            .write_blocking(|tx| -> StoreResult<_> {
                tx.execute(
                    "INSERT INTO documents (id, organization_id, title, filename, content_type, size_bytes, sha256, \
                     status, lease_token, created_at, updated_at) VALUES ('d', ?1, 'Rules', 'rules.txt', 'text/plain', \
                     1, 'x', 'processing', 'lease', ?2, ?2)",
                    rusqlite::params![org, now()],
                )?;
                let v = Vectors { model: "m", vectors: &vectors };
                assert!(commit_chunks(
                    &mut crate::store::conn::Conn::Sqlite(tx),
                    "d",
                    "lease",
                    &drafts,
                    Some(v),
                    None,
                    None,
                    "k",
                    &now()
                )?);
                Ok(())
            })
            .unwrap();
        sqlite(&state)
            .write_blocking(|tx| -> StoreResult<_> {
                let rows: Vec<(i64, i64, String, String)> = tx
                    .prepare(
                        "SELECT c.ordinal, c.page, c.text, vec_to_json(f.embedding) FROM chunks c \
                         JOIN chunk_vec_1 v ON v.chunk_id = c.id JOIN chunk_vec_1_floats f ON f.chunk_id = c.id \
                         ORDER BY c.ordinal",
                    )?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                assert_eq!(rows.len(), n);
                for (i, (ordinal, page, text, vector)) in rows.into_iter().enumerate() {
                    assert_eq!((ordinal, page), (i as i64, i as i64 + 1));
                    assert_eq!(text, drafts[i].text);
                    assert_eq!(vector, format!("[{:.6},1.000000,0.500000]", i as f32));
                }
                let scope = Scope::system(&org);
                let s = SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
                let found = search(tx, &s, "What is the vacation policy?", 10)?;
                assert_eq!(found.len(), 1, "only the chunk with the rare word is ranked");
                assert_eq!((found[0].text.as_str(), found[0].page), ("the vacation policy", Some(1235)));
                // only common words: the newest matching chunks answer
                let found = search(tx, &s, "the", 10)?;
                assert_eq!(found.len(), 10);
                let other = Scope::system(&new_id());
                let s = SearchScope { scope: &other, project_ids: &[], document_ids: &[] };
                assert!(search(tx, &s, "the vacation", 10)?.is_empty());
                assert!(search(tx, &s, "the", 10)?.is_empty());
                Ok(())
            })
            .unwrap();
    }

    /// A state on a temporary database with the registration organization's id.
    fn state() -> (tempfile::TempDir, crate::AppState, String) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::config::Config::default();
        config.database.path = dir.path().join("sqlite(&knn)");
        config.auth.pbkdf2_iterations = 1000;
        config.bootstrap.admin_password = "search-password-123".into();
        let (state, _) = crate::AppState::open(config).unwrap();
        let org = sqlite(&state)
            .write_blocking(|tx| {
                StoreResult::Ok(
                    crate::store::bootstrap::registration_org_id(&mut crate::store::conn::Conn::Sqlite(tx))?.unwrap(),
                )
            })
            .unwrap();
        (dir, state, org)
    }

    fn pseudo_random_vectors(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                (0..dims)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (x % 2001) as f32 / 1000.0 - 1.0
                    })
                    .collect()
            })
            .collect()
    }

    /// The binary KNN (sqlite-vec with copilot's top-k selection, vendor/sqlite-vec) returns the
    /// k smallest Hamming distances, for k above and below the chunk size, over several chunks
    /// and two organizations (the other one never answers); the re-rank orders them by cosine.
    #[test]
    fn the_binary_knn_finds_the_nearest_bits_of_the_organization_only() {
        use crate::store::documents::{
            RERANK_FACTOR, SearchScope, VEC_CHUNK_SIZE, ensure_space, insert_vector, nearest_chunks, quantize,
        };
        let (_dir, state, org) = state();
        let n = 2 * VEC_CHUNK_SIZE + 300;
        let vectors = pseudo_random_vectors(n + 200, 24, 7);
        let table = sqlite(&state)
            .write_blocking(|tx| -> StoreResult<_> {
                let table = ensure_space(tx, "m", 24, &now())?;
                for (i, v) in vectors.iter().enumerate() {
                    // the first n in the organization, the rest in another one
                    let o = if i < n { org.clone() } else { "other".to_string() };
                    insert_vector(tx, &table, i as i64 + 1, &o, "d", "", v)?;
                }
                Ok(table)
            })
            .unwrap();
        let query = pseudo_random_vectors(1, 24, 99).pop().unwrap();
        let bits = quantize(&query);
        let hamming = |v: &[f32]| quantize(v).iter().zip(&bits).map(|(a, b)| (a ^ b).count_ones()).sum::<u32>() as f64;
        let mut expected: Vec<f64> = vectors[..n].iter().map(|v| hamming(v)).collect();
        expected.sort_by(f64::total_cmp);
        sqlite(&state)
            .write_blocking(|tx| -> StoreResult<_> {
                let scope = Scope::system(&org);
                let s = SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
                for k in [1, 10, 100, VEC_CHUNK_SIZE + 5, 3000] {
                    let found: Vec<(i64, f64)> = tx
                        .prepare(&format!(
                            "SELECT chunk_id, distance FROM {table} WHERE embedding_bits MATCH vec_bit(?1) AND k = ?2 \
                             AND organization_id = ?3 ORDER BY distance"
                        ))?
                        .query_map(rusqlite::params![bits, k as i64, org], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    assert_eq!(found.len(), k.min(n), "k = {k}");
                    let distances: Vec<f64> = found.iter().map(|(_, d)| *d).collect();
                    assert_eq!(distances, expected[..k.min(n)], "k = {k}");
                    for (id, d) in &found {
                        assert!(*id as usize <= n, "another organization's vector");
                        assert_eq!(*d, hamming(&vectors[*id as usize - 1]));
                    }
                }
                // every vector of the organization is a candidate here (RERANK_FACTOR·k ≥ n):
                // the result is the exact cosine top k
                let k = n.div_ceil(RERANK_FACTOR);
                let found = nearest_chunks(tx, &s, &table, &query, k)?;
                let cosine = |id: i64| {
                    let v = &vectors[id as usize - 1];
                    let dot: f32 = v.iter().zip(&query).map(|(a, b)| a * b).sum();
                    dot / v.iter().map(|x| x * x).sum::<f32>().sqrt()
                };
                let mut expected: Vec<i64> = (1..=n as i64).collect();
                expected.sort_by(|a, b| cosine(*b).total_cmp(&cosine(*a)));
                assert_eq!(found, expected[..k]);
                assert!(found.windows(2).all(|w| cosine(w[0]) >= cosine(w[1])), "nearest first");
                Ok(())
            })
            .unwrap();
    }

    /// A vector space of the layout before binary quantization (one vec0 table of float
    /// vectors) is rebuilt at start: same vectors, their bits, and search keeps working.
    #[test]
    fn an_old_vector_space_is_rebuilt_at_start() {
        let (dir, state, org) = state();
        sqlite(&state)
            .write_blocking(|tx| -> StoreResult<_> {
                tx.execute(
                    "INSERT INTO embedding_spaces (model, dims, table_name, created_at) VALUES ('m', 3, 'chunk_vec_1', ?1)",
                    rusqlite::params![now()],
                )?;
                tx.execute_batch(
                    "CREATE VIRTUAL TABLE chunk_vec_1 USING vec0(chunk_id INTEGER PRIMARY KEY, organization_id TEXT \
                     PARTITION KEY, document_id TEXT, project_id TEXT, embedding float[3] distance_metric=cosine)",
                )?;
                for (id, v) in [(1, "[1, 0, 0]"), (2, "[0, 1, 0]"), (3, "[-1, 0.1, 0]")] {
                    tx.execute(
                        "INSERT INTO chunk_vec_1 (chunk_id, organization_id, document_id, project_id, embedding) \
                         VALUES (?1, ?2, 'd', '', ?3)",
                        rusqlite::params![id, org, v],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        let config = (*state.config).clone();
        drop(state);
        let (state, _) = crate::AppState::open(config).unwrap();
        sqlite(&state)
            .write_blocking(|tx| -> StoreResult<_> {
                let table = crate::store::documents::space_table(tx, "m", 3)?.unwrap();
                assert_eq!(table, "chunk_vec_1_b");
                let old: i64 =
                    tx.query_row("SELECT COUNT(*) FROM sqlite_master WHERE name = 'chunk_vec_1'", [], |r| r.get(0))?;
                assert_eq!(old, 0);
                let rows: Vec<(i64, String, String)> = tx
                    .prepare(
                        "SELECT v.chunk_id, vec_to_json(v.embedding_bits), vec_to_json(f.embedding) FROM chunk_vec_1_b v \
                         JOIN chunk_vec_1_b_floats f ON f.chunk_id = v.chunk_id ORDER BY v.chunk_id",
                    )?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?;
                assert_eq!(rows.len(), 3);
                assert_eq!(rows[0].2, "[1.000000,0.000000,0.000000]");
                assert!(rows[0].1.starts_with("[1,0,0,") && rows[2].1.starts_with("[0,1,0,"), "{rows:?}");
                let scope = Scope::system(&org);
                let s = crate::store::documents::SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
                let found = crate::store::documents::nearest_chunks(tx, &s, &table, &[0.9, 0.2, 0.0], 3)?;
                assert_eq!(found, [1, 2, 3]);
                Ok(())
            })
            .unwrap();
        drop(dir);
    }
}
