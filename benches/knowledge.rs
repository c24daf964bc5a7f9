//! `cargo bench --bench knowledge`: the knowledge base's ingestion throughput and search latency
//! (issue 12, item 6), in this process on a temporary database.
//!
//! - ingestion: plain-text documents queued as uploads are, then the real background worker
//!   (extract → chunk → fenced commit, full text only) until all are ready: MB/s;
//! - search: p50/p99 of full-text retrieval (`knowledge::search::retrieve`, limit 10) at 10k and
//!   100k chunks, and of the database half of hybrid retrieval (BM25 top 50 + a KNN top 50 over
//!   384-dimension vectors in sqlite-vec + fusion + passage fetch; the provider's embedding call
//!   for the question is not included, it depends on the provider).
//!
//! ```text
//! cargo bench --bench knowledge                  # 20 MB ingested, 10k and 100k chunks
//! cargo bench --bench knowledge -- --mb 5 --chunks 20000
//! ```

use std::time::{Duration, Instant};

use copilot::{
    AppState,
    authz::Scope,
    config::Config,
    db::{new_id, now},
    knowledge::search::{self, Query, fts5_query, fuse},
    store::documents::{SearchScope, nearest_chunks, passages_by_rowid, search_chunks},
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rusqlite::params;

const DIMS: usize = 384;
const QUERIES: usize = 300;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A vocabulary of made-up words; texts draw from it with a skew, like natural language.
fn vocabulary(rng: &mut StdRng) -> Vec<String> {
    (0..20_000)
        .map(|_| {
            let len = rng.random_range(3..10);
            (0..len).map(|_| (b'a' + rng.random_range(0..26u8)) as char).collect()
        })
        .collect()
}

fn word<'v>(vocab: &'v [String], rng: &mut StdRng) -> &'v str {
    // squares the uniform draw: low indexes (common words) come up far more often
    let u: f64 = rng.random();
    &vocab[((u * u) * vocab.len() as f64) as usize % vocab.len()]
}

fn sentence(vocab: &[String], rng: &mut StdRng) -> String {
    let n = rng.random_range(8..20);
    let mut s: Vec<&str> = (0..n).map(|_| word(vocab, rng)).collect();
    s.push(".");
    s.join(" ")
}

fn percentiles(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let at = |p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)].as_secs_f64() * 1000.0;
    (at(0.50), at(0.99))
}

fn main() {
    let mb = arg("--mb", 20);
    let max_chunks = arg("--chunks", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.path = dir.path().join("bench.db");
    config.auth.pbkdf2_iterations = 1000;
    config.bootstrap.admin_password = "bench-password-123".into();
    let (state, _) = AppState::open(config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let vocab = vocabulary(&mut rng);
    let (org, admin): (String, String) = state
        .db
        .write_blocking(|tx| {
            Ok((
                copilot::store::bootstrap::registration_org_id(tx)?.unwrap(),
                tx.query_row("SELECT id FROM users WHERE is_superuser = 1", [], |r| r.get(0))?,
            ))
        })
        .unwrap();

    // ---------------------------------------------------------------- ingestion (full text)
    let docs = mb.max(1);
    let mut total_bytes = 0usize;
    for d in 0..docs {
        let mut text = String::new();
        while text.len() < 1024 * 1024 {
            for _ in 0..5 {
                text.push_str(&sentence(&vocab, &mut rng));
                text.push(' ');
            }
            text.push_str("\n\n");
        }
        total_bytes += text.len();
        let new = copilot::store::documents::NewDocument {
            id: new_id(),
            organization_id: org.clone(),
            project_id: None,
            title: format!("bench {d}"),
            filename: format!("bench-{d}.txt"),
            content_type: "text/plain",
            sha256: format!("bench-{d}"),
            metadata: "{}".into(),
            created_by: admin.clone(),
            now: now(),
        };
        state.db.write_blocking(|tx| copilot::store::documents::insert_document(tx, &new, text.as_bytes())).unwrap();
    }
    let started = Instant::now();
    runtime.block_on(async {
        state.start_background();
        loop {
            let left: i64 = state
                .db
                .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM documents WHERE status <> 'ready'", [], |r| r.get(0))?))
                .await
                .unwrap();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        state.ingest.shutdown(Duration::from_secs(10)).await;
    });
    let secs = started.elapsed().as_secs_f64();
    let ingested: i64 =
        state.db.write_blocking(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?)).unwrap();
    println!(
        "ingestion (plain text, full text only): {:.1} MB in {docs} documents, {ingested} chunks, {secs:.2} s: {:.1} MB/s",
        total_bytes as f64 / 1048576.0,
        total_bytes as f64 / 1048576.0 / secs
    );

    // ---------------------------------------------------------------- search at 10k and 100k chunks
    state
        .db
        .write_blocking(|tx| {
            tx.execute(
                "INSERT INTO embedding_spaces (model, dims, table_name, created_at) VALUES ('bench', ?1, 'chunk_vec_bench', ?2)",
                params![DIMS as i64, now()],
            )?;
            tx.execute_batch(&format!(
                "CREATE VIRTUAL TABLE chunk_vec_bench USING vec0(chunk_id INTEGER PRIMARY KEY, \
                 organization_id TEXT PARTITION KEY, document_id TEXT, project_id TEXT, \
                 embedding float[{DIMS}] distance_metric=cosine)"
            ))?;
            // vectors for the chunks ingested above
            let ids: Vec<(i64, String)> = tx
                .prepare("SELECT id, document_id FROM chunks")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, doc) in ids {
                insert_vector(tx, id, &org, &doc, &mut rng)?;
            }
            Ok(())
        })
        .unwrap();
    let queries: Vec<String> = (0..QUERIES)
        .map(|_| (0..rng.random_range(3..7)).map(|_| word(&vocab, &mut rng)).collect::<Vec<_>>().join(" "))
        .collect();
    let mut last_p99 = None;
    for target in [10_000usize, max_chunks] {
        fill_chunks(&state, &org, &admin, target, &vocab, &mut rng);
        let n: i64 =
            state.db.write_blocking(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?)).unwrap();
        let mut text_times = vec![];
        let mut hybrid_times = vec![];
        runtime.block_on(async {
            for q in &queries {
                let t = Instant::now();
                let query = Query {
                    scope: Scope::Org(org.clone()),
                    project_ids: vec![],
                    document_ids: vec![],
                    text: q.clone(),
                    limit: 10,
                };
                search::retrieve(&state.db, None, query).await.unwrap();
                text_times.push(t.elapsed());
                let (q, org) = (q.clone(), org.clone());
                let vector = random_vector(&mut rng);
                let t = Instant::now();
                state
                    .db
                    .read(move |c| {
                        let scope = Scope::Org(org);
                        let s = SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
                        let text = search_chunks(c, &s, &fts5_query(&q).unwrap(), 50)?;
                        let near = nearest_chunks(c, &s, "chunk_vec_bench", &vector, 50)?;
                        let fused = fuse(text.iter().map(|(id, _)| *id), near.into_iter(), 10);
                        let ids: Vec<i64> = fused.iter().map(|(id, _)| *id).collect();
                        passages_by_rowid(c, &s, &ids)
                    })
                    .await
                    .unwrap();
                hybrid_times.push(t.elapsed());
            }
        });
        let (t50, t99) = percentiles(text_times);
        let (h50, h99) = percentiles(hybrid_times);
        let growth = last_p99.map(|p: f64| format!(", p99 growth from 10k: {:.2}x", t99 / p)).unwrap_or_default();
        println!(
            "search over {n} chunks ({QUERIES} queries, limit 10): full text p50 {t50:.2} ms p99 {t99:.2} ms{growth}; \
             hybrid ({DIMS}-dim, database part) p50 {h50:.2} ms p99 {h99:.2} ms"
        );
        last_p99 = Some(t99);
    }
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn insert_vector(tx: &rusqlite::Connection, id: i64, org: &str, doc: &str, rng: &mut StdRng) -> rusqlite::Result<()> {
    let blob: Vec<u8> = random_vector(rng).iter().flat_map(|f| f.to_le_bytes()).collect();
    tx.prepare_cached(
        "INSERT INTO chunk_vec_bench (chunk_id, organization_id, document_id, project_id, embedding) VALUES (?1, ?2, ?3, '', ?4)",
    )?
    .execute(params![id, org, doc, blob])?;
    Ok(())
}

/// Adds synthetic chunks (about 1,200 characters, 1,000 per document) and their vectors until
/// there are `target`.
fn fill_chunks(state: &AppState, org: &str, admin: &str, target: usize, vocab: &[String], rng: &mut StdRng) {
    loop {
        let n: i64 =
            state.db.write_blocking(|tx| Ok(tx.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?)).unwrap();
        if n as usize >= target {
            return;
        }
        let batch = (target - n as usize).min(1000);
        state
            .db
            .write_blocking(|tx| {
                let doc = new_id();
                tx.execute(
                    "INSERT INTO documents (id, organization_id, title, filename, content_type, size_bytes, sha256, status, \
                     chunk_count, created_by, created_at, updated_at) VALUES (?1, ?2, 'filler', 'filler.txt', 'text/plain', 0, \
                     ?1, 'ready', ?3, ?4, ?5, ?5)",
                    params![doc, org, batch as i64, admin, now()],
                )?;
                for i in 0..batch {
                    let mut text = String::new();
                    while text.len() < 1200 {
                        text.push_str(&sentence(vocab, rng));
                        text.push(' ');
                    }
                    tx.prepare_cached(
                        "INSERT INTO chunks (public_id, document_id, organization_id, ordinal, heading, text, token_count) \
                         VALUES (?1, ?2, ?3, ?4, '', ?5, 300)",
                    )?
                    .execute(params![new_id(), doc, org, i as i64, text])?;
                    let id = tx.last_insert_rowid();
                    insert_vector(tx, id, org, &doc, rng)?;
                }
                Ok(())
            })
            .unwrap();
    }
}
