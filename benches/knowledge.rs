//! `cargo bench --bench knowledge`: the knowledge base's ingestion throughput and search latency
//! (issue 12, item 6), in this process on a temporary database.
//!
//! - ingestion: plain-text documents queued as uploads are, then the real background worker
//!   (extract → chunk → fenced commit, full text only) until all are ready: MB/s;
//! - search: p50/p99 of full-text retrieval (`knowledge::search::retrieve`, limit 10) at 10k and
//!   100k chunks, and of the database half of hybrid retrieval (`retrieve_hybrid`: BM25 top 50 and
//!   a KNN top 50 over 384-dimension vectors — 800 candidates by Hamming distance of their sign
//!   bits, re-ranked by exact cosine — on two connections at once, then fusion and passage fetch;
//!   the provider's embedding call for the question is not included, it depends on the provider),
//!   and how far the quantized KNN agrees with the exact one (recall@50 and recall@10).
//!
//! - memory: the peak RSS (VmHWM) of a fresh process of this benchmark that stores a text-layer
//!   PDF of about 25 MB (written here with lopdf) as an upload does and lets the real worker
//!   ingest it (extract → chunk → commit).
//!
//! ```text
//! cargo bench --bench knowledge                  # 20 MB ingested, 10k and 100k chunks, 25 MB PDF
//! cargo bench --bench knowledge -- --mb 5 --chunks 20000 --pdf-mb 0   # smaller, no PDF
//! cargo bench --bench knowledge -- --db /tmp/kb.store.sqlite().expect("SQLite")   # keep the database (the file must not exist)
//! ```

#[path = "common/corpus.rs"]
mod corpus;

use copilot::store::error::StoreResult;
use corpus::{vocabulary, word};
use std::time::{Duration, Instant};

use copilot::{
    AppState,
    authz::Scope,
    config::Config,
    db::{new_id, now},
    knowledge::search::{self, Query},
    store::documents::SearchScope,
};
use rand::{Rng, SeedableRng, rngs::StdRng};
use rusqlite::params;

const DIMS: usize = 384;
const QUERIES: usize = 300;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
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

fn str_arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn main() {
    if let Some(pdf) = str_arg("--ingest-pdf") {
        return ingest_pdf_child(&pdf);
    }
    let mb = arg("--mb", 20);
    let max_chunks = arg("--chunks", 100_000);
    let pdf_mb = arg("--pdf-mb", 25);
    if pdf_mb > 0 {
        pdf_memory(pdf_mb);
    }
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.path = str_arg("--db").map(Into::into).unwrap_or_else(|| dir.path().join("bench.db"));
    config.auth.pbkdf2_iterations = 1000;
    config.bootstrap.admin_password = "bench-password-123".into();
    let (state, _) = AppState::open(config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let vocab = vocabulary(&mut rng);
    let (org, admin): (String, String) = state
        .store
        .sqlite()
        .expect("SQLite")
        .write_blocking(|tx| -> StoreResult<_> {
            Ok((
                copilot::store::bootstrap::registration_org_id(&mut copilot::store::conn::Conn::Sqlite(tx))?.unwrap(),
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
        state
            .store
            .sqlite()
            .expect("SQLite")
            .write_blocking(|tx| {
                copilot::store::documents::insert_document(
                    &mut copilot::store::conn::Conn::Sqlite(tx),
                    &new,
                    text.as_bytes(),
                )
            })
            .unwrap();
    }
    let started = Instant::now();
    let cpu_before = process_cpu();
    runtime.block_on(async {
        state.start_background();
        loop {
            let left: i64 = state
                .store
                .sqlite()
                .expect("SQLite")
                .read(|c| {
                    StoreResult::Ok(
                        c.query_row("SELECT COUNT(*) FROM documents WHERE status <> 'ready'", [], |r| r.get(0))?,
                    )
                })
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
    let cpu = process_cpu() - cpu_before;
    let ingested: i64 = state
        .store
        .sqlite()
        .expect("SQLite")
        .write_blocking(|tx| StoreResult::Ok(tx.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?))
        .unwrap();
    let mbytes = total_bytes as f64 / 1048576.0;
    println!(
        "ingestion (plain text, full text only): {mbytes:.1} MB in {docs} documents, {ingested} chunks, {secs:.2} s: \
         {:.1} MB/s; CPU {cpu:.2} s: {:.1} MB per CPU-second",
        mbytes / secs,
        mbytes / cpu
    );

    // ---------------------------------------------------------------- search at 10k and 100k chunks
    // Vectors with the structure of real embeddings (uniformly random ones have no near
    // neighbours, which no index can find): 50 topics, a document near its topic, a chunk near
    // its document, a question near one chunk.
    let topics: Vec<Vec<f32>> = (0..50).map(|_| random_vector(&mut rng)).collect();
    let table = state
        .store
        .sqlite()
        .expect("SQLite")
        .write_blocking(|tx| -> StoreResult<_> {
            let table = copilot::store::documents::ensure_space(tx, "bench", DIMS, &now())?;
            // vectors for the chunks ingested above
            let ids: Vec<(i64, String)> = tx
                .prepare("SELECT id, document_id FROM chunks ORDER BY id")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut doc_vectors = std::collections::HashMap::new();
            for (id, doc) in ids {
                let dv = doc_vectors.entry(doc.clone()).or_insert_with(|| doc_vector(&topics, &mut rng)).clone();
                insert_vector(tx, &table, id, &org, &doc, &mix(&dv, &random_vector(&mut rng), 1.2))?;
            }
            Ok(table)
        })
        .unwrap();
    let queries: Vec<String> = (0..QUERIES)
        .map(|_| (0..rng.random_range(3..7)).map(|_| word(&vocab, &mut rng)).collect::<Vec<_>>().join(" "))
        .collect();
    let mut last = None;
    for target in [10_000usize, max_chunks] {
        fill_chunks(&state, &org, &admin, &table, target, &vocab, &topics, &mut rng);
        // The fill writes hundreds of MB of WAL within seconds; a server's checkpointer
        // ([database] checkpoint_interval_ms) keeps its WAL far shorter, and a reader of a long
        // WAL searches its index for every page it reads. Measured: the steady state.
        // (the state's own checkpointer thread may be in a PASSIVE checkpoint: then TRUNCATE
        // answers busy, and a retry a moment later completes)
        let checkpoint = rusqlite::Connection::open(&state.config.database.path).unwrap();
        let truncated = (0..50).any(|_| {
            let busy: i64 = checkpoint.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0)).unwrap();
            busy == 0 || {
                std::thread::sleep(std::time::Duration::from_millis(100));
                false
            }
        });
        assert!(truncated, "the checkpoint could not complete in 5 s");
        let n: i64 = state
            .store
            .sqlite()
            .expect("SQLite")
            .write_blocking(|tx| StoreResult::Ok(tx.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?))
            .unwrap();
        // a question's vector: near a random chunk's
        let vectors: Vec<Vec<f32>> = state
            .store
            .sqlite()
            .expect("SQLite")
            .write_blocking(|tx| -> StoreResult<_> {
                let floats = copilot::store::documents::floats_table(&table);
                let mut read = tx.prepare(&format!("SELECT embedding FROM {floats} WHERE chunk_id = ?1"))?;
                (0..QUERIES)
                    .map(|_| {
                        let id = rng.random_range(1..=n);
                        let blob: Vec<u8> = read.query_row(params![id], |r| r.get(0))?;
                        let v: Vec<f32> =
                            blob.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
                        Ok(mix(&v, &random_vector(&mut rng), 1.0))
                    })
                    .collect()
            })
            .unwrap();
        let mut text_times = vec![];
        let mut hybrid_times = vec![];
        let (mut text_cpu, mut hybrid_cpu) = (vec![], vec![]);
        runtime.block_on(async {
            for (q, vector) in queries.iter().zip(&vectors) {
                let t = Instant::now();
                let query = || Query {
                    scope: Scope::system(&org),
                    project_ids: vec![],
                    document_ids: vec![],
                    text: q.clone(),
                    limit: 10,
                };
                search::retrieve(&state.store, None, query()).await.unwrap();
                text_times.push(t.elapsed());
                // the same query again, timed by the CPU of the thread that runs it (the machine
                // is shared: wall time includes waiting for a core)
                let (q2, org2) = (q.clone(), org.clone());
                let cpu = state
                    .store
                    .sqlite()
                    .expect("SQLite")
                    .read_mapped(move |c| -> StoreResult<_> {
                        let t = thread_cpu();
                        let scope = Scope::system(&org2);
                        let s = SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
                        search::search(c, &s, &q2, 10)?;
                        Ok(thread_cpu() - t)
                    })
                    .await
                    .unwrap();
                text_cpu.push(cpu);
                // the database half of hybrid retrieval as the server runs it: BM25 and the KNN on
                // two read connections at once; CPU is the whole process's (both threads)
                let (t, cpu_before) = (Instant::now(), process_cpu());
                search::retrieve_hybrid(state.store.sqlite().expect("SQLite"), query(), "bench".into(), vector.clone())
                    .await
                    .unwrap();
                let cpu = Duration::from_secs_f64(process_cpu() - cpu_before);
                hybrid_times.push(t.elapsed());
                hybrid_cpu.push(cpu);
            }
        });
        let (t50, t99) = percentiles(text_times);
        let (h50, h99) = percentiles(hybrid_times);
        let (tc50, tc99) = percentiles(text_cpu);
        let (hc50, hc99) = percentiles(hybrid_cpu);
        let growth = last
            .map(|(m, p50, p99, c99): (i64, f64, f64, f64)| {
                format!(
                    ", growth from {m} chunks: p50 {:.2}x p99 {:.2}x (CPU p99 {:.2}x)",
                    t50 / p50,
                    t99 / p99,
                    tc99 / c99
                )
            })
            .unwrap_or_default();
        println!(
            "search over {n} chunks ({QUERIES} queries, limit 10): full text p50 {t50:.2} ms p99 {t99:.2} ms \
             (CPU p50 {tc50:.2} p99 {tc99:.2}){growth}; hybrid ({DIMS}-dim, database part) p50 {h50:.2} ms \
             p99 {h99:.2} ms (CPU p50 {hc50:.2} p99 {hc99:.2})"
        );
        last = Some((n, t50, t99, tc99));
        knn_agreement(&state, &org, &table, &vectors, &mut rng);
    }
}

/// How far the binary-quantized KNN (Hamming candidates, exact cosine re-rank) agrees with the
/// exact cosine KNN over every float vector: recall@k of the exact top k, for questions near a
/// chunk and for uniformly random ones (no near neighbours: the hard case), with both KNNs' CPU.
fn knn_agreement(state: &AppState, org: &str, table: &str, near: &[Vec<f32>], rng: &mut StdRng) {
    const K: usize = 50;
    const N: usize = 100;
    let random: Vec<Vec<f32>> = (0..N).map(|_| random_vector(rng)).collect();
    for (name, set) in [("near a chunk", &near[..N.min(near.len())]), ("uniformly random", &random[..])] {
        let (org, table, set) = (org.to_string(), table.to_string(), set.to_vec());
        let (r50, r10, exact_cpu, quant_cpu) = state
            .store
            .sqlite()
            .expect("SQLite")
            .write_blocking(move |c| -> StoreResult<_> {
                let scope = Scope::system(&org);
                let s = SearchScope { scope: &scope, project_ids: &[], document_ids: &[] };
                let (mut r50, mut r10, mut exact_cpu, mut quant_cpu) = (0.0, 0.0, vec![], vec![]);
                for v in &set {
                    let t = thread_cpu();
                    let exact = copilot::store::documents::nearest_chunks_exact(c, &org, &table, v, K)?;
                    exact_cpu.push(thread_cpu() - t);
                    let t = thread_cpu();
                    let quant = copilot::store::documents::nearest_chunks(c, &s, &table, v, K)?;
                    quant_cpu.push(thread_cpu() - t);
                    r50 += quant.iter().filter(|id| exact.contains(id)).count() as f64 / exact.len().max(1) as f64;
                    let top = &exact[..exact.len().min(10)];
                    r10 += quant.iter().take(10).filter(|id| top.contains(id)).count() as f64 / top.len().max(1) as f64;
                }
                let n = set.len() as f64;
                Ok((r50 / n, r10 / n, percentiles(exact_cpu), percentiles(quant_cpu)))
            })
            .unwrap();
        println!(
            "  KNN k={K}, {N} questions {name}: quantized agrees with exact cosine: recall@50 {r50:.3}, \
             recall@10 {r10:.3}; CPU p50/p99 exact {:.2}/{:.2} ms, quantized + re-rank {:.2}/{:.2} ms",
            exact_cpu.0, exact_cpu.1, quant_cpu.0, quant_cpu.1
        );
    }
}

/// `a + w·b`, normalized.
fn mix(a: &[f32], b: &[f32], w: f32) -> Vec<f32> {
    let v: Vec<f32> = a.iter().zip(b).map(|(x, y)| x + w * y).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn doc_vector(topics: &[Vec<f32>], rng: &mut StdRng) -> Vec<f32> {
    let topic = &topics[rng.random_range(0..topics.len())];
    mix(topic, &random_vector(rng), 1.0)
}

fn random_vector(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn insert_vector(tx: &rusqlite::Connection, table: &str, id: i64, org: &str, doc: &str, v: &[f32]) -> StoreResult<()> {
    copilot::store::documents::insert_vector(tx, table, id, org, doc, "", v)
}

/// Adds synthetic chunks (about 1,200 characters, 1,000 per document) and their vectors until
/// there are `target`.
#[allow(clippy::too_many_arguments)]
fn fill_chunks(
    state: &AppState,
    org: &str,
    admin: &str,
    table: &str,
    target: usize,
    vocab: &[String],
    topics: &[Vec<f32>],
    rng: &mut StdRng,
) {
    loop {
        let n: i64 = state
            .store
            .sqlite()
            .expect("SQLite")
            .write_blocking(|tx| StoreResult::Ok(tx.query_row("SELECT COUNT(*) FROM chunks", [], |r| r.get(0))?))
            .unwrap();
        if n as usize >= target {
            return;
        }
        let batch = (target - n as usize).min(1000);
        state
            .store
            .sqlite()
            .expect("SQLite")
            .write_blocking(|tx| -> StoreResult<_> {
                let doc = new_id();
                let dv = doc_vector(topics, rng);
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
                    insert_vector(tx, table, id, org, &doc, &mix(&dv, &random_vector(rng), 1.2))?;
                }
                Ok(())
            })
            .unwrap();
    }
}

/// CPU time (user + system) of this process so far, seconds.
fn process_cpu() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Writes a text-layer PDF of about `mb` MB (Courier, 60 lines per page) and ingests it in a
/// child process of this benchmark, whose peak RSS is the figure (issue 12: < 256 MiB).
fn pdf_memory(mb: usize) {
    let mut rng = StdRng::seed_from_u64(7);
    let vocab = vocabulary(&mut rng);
    let bytes = big_pdf(mb * 1024 * 1024 - 64 * 1024, &vocab, &mut rng);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.pdf");
    std::fs::write(&path, &bytes).unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe).arg("--ingest-pdf").arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    print!("{}", String::from_utf8_lossy(&out.stdout));
}

fn big_pdf(target: usize, vocab: &[String], rng: &mut StdRng) -> Vec<u8> {
    use lopdf::{
        Document, Object, Stream,
        content::{Content, Operation},
        dictionary,
    };
    let mut doc = Document::with_version("1.5");
    let pages_id = doc.new_object_id();
    let font_id = doc.add_object(dictionary! {"Type" => "Font", "Subtype" => "Type1", "BaseFont" => "Courier"});
    let resources_id = doc.add_object(dictionary! {"Font" => dictionary! {"F1" => font_id}});
    let mut kids: Vec<Object> = vec![];
    let mut size = 0;
    while size < target {
        let mut operations = vec![
            Operation::new("BT", vec![]),
            Operation::new("Tf", vec!["F1".into(), 9.into()]),
            Operation::new("TL", vec![12.into()]),
            Operation::new("Td", vec![40.into(), 800.into()]),
        ];
        for _ in 0..60 {
            let mut line = String::new();
            while line.len() < 90 {
                line.push_str(word(vocab, rng));
                line.push(' ');
            }
            operations.push(Operation::new("Tj", vec![Object::string_literal(line)]));
            operations.push(Operation::new("T*", vec![]));
        }
        operations.push(Operation::new("ET", vec![]));
        let content = Content { operations }.encode().unwrap();
        size += content.len() + 120;
        let content_id = doc.add_object(Stream::new(dictionary! {}, content));
        let page_id = doc.add_object(dictionary! {"Type" => "Page", "Parent" => pages_id, "Contents" => content_id});
        kids.push(page_id.into());
    }
    let count = kids.len() as i64;
    let pages = dictionary! {
        "Type" => "Pages",
        "Kids" => kids,
        "Count" => count,
        "Resources" => resources_id,
        "MediaBox" => vec![0.into(), 0.into(), 595.into(), 842.into()],
    };
    doc.objects.insert(pages_id, Object::Dictionary(pages));
    let catalog_id = doc.add_object(dictionary! {"Type" => "Catalog", "Pages" => pages_id});
    doc.trailer.set("Root", catalog_id);
    let mut out = vec![];
    doc.save_to(&mut out).unwrap();
    out
}

/// The child of [`pdf_memory`]: stores the PDF as an upload would and waits for the worker.
fn ingest_pdf_child(path: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.database.path = dir.path().join("pdf.db");
    config.auth.pbkdf2_iterations = 1000;
    config.bootstrap.admin_password = "bench-password-123".into();
    let (state, _) = AppState::open(config).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let bytes = std::fs::read(path).unwrap();
    let size = bytes.len();
    state
        .store
        .sqlite()
        .expect("SQLite")
        .write_blocking(|tx| -> StoreResult<_> {
            let org =
                copilot::store::bootstrap::registration_org_id(&mut copilot::store::conn::Conn::Sqlite(tx))?.unwrap();
            let admin: String = tx.query_row("SELECT id FROM users WHERE is_superuser = 1", [], |r| r.get(0))?;
            let new = copilot::store::documents::NewDocument {
                id: new_id(),
                organization_id: org,
                project_id: None,
                title: "big pdf".into(),
                filename: "big.pdf".into(),
                content_type: "application/pdf",
                sha256: "big-pdf".into(),
                metadata: "{}".into(),
                created_by: admin,
                now: now(),
            };
            copilot::store::documents::insert_document(&mut copilot::store::conn::Conn::Sqlite(tx), &new, &bytes)
        })
        .unwrap();
    drop(bytes);
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let (status, chunks, pages): (String, i64, i64) = runtime.block_on(async {
        state.start_background();
        loop {
            let row: (String, i64, Option<i64>) = state
                .store
                .sqlite()
                .expect("SQLite")
                .read(|c| -> StoreResult<_> {
                    Ok(c.query_row("SELECT status, chunk_count, page_count FROM documents", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?)
                })
                .await
                .unwrap();
            if row.0 == "ready" || row.0 == "failed" {
                state.ingest.shutdown(Duration::from_secs(10)).await;
                break (row.0, row.1, row.2.unwrap_or(0));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    println!(
        "PDF ingestion: {:.1} MB, {pages} pages, {chunks} chunks, {status} in {:.2} s; RSS before {:.1} MiB, \
         peak {:.1} MiB (target < 256 MiB)",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64(),
        before as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0
    );
}
