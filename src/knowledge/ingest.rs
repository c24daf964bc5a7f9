//! The background worker that turns pending documents into chunks (SPEC §7 "Ingestion").
//!
//! The queue is the documents table: the worker claims one document with a lease, extracts and
//! chunks it outside any transaction (on the blocking pool, panics caught), and commits the
//! whole chunk set in one write transaction that is fenced by the lease token. A stop or crash
//! loses nothing: the document is still `processing` and goes back to `pending` at the next
//! start; a commit replaces the chunk set at once, so nothing is indexed twice. One document at
//! a time (the machine this serves has few cores, and a large PDF needs its memory).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::{Notify, watch};

use super::{Format, PIPELINE_VERSION, chunk, extract};
use crate::{
    db::{self, new_id, now},
    llm::embeddings::Embedder,
    store::error::StoreResult,
    store::{self, conn::Store, documents::Vectors},
};

const LEASE: Duration = Duration::from_secs(300);
const RENEW_EVERY: Duration = Duration::from_secs(60);
/// How often an idle worker looks at the queue without being woken.
const POLL: Duration = Duration::from_secs(5);
const MAX_ATTEMPTS: i64 = 3;

pub struct Ingestor {
    store: Store,
    /// `[knowledge] embedding_model`, when a provider serves it: chunks are embedded too (on
    /// SQLite only: `None` on PostgreSQL, see [`Ingestor::new`]).
    pub embedder: Option<Arc<Embedder>>,
    wake: Notify,
    stop: watch::Sender<bool>,
    started: AtomicBool,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lease_until() -> String {
    db::format_ts(time::OffsetDateTime::now_utc() + LEASE)
}

impl Ingestor {
    /// The worker of `store`; with `embedder`, chunks are embedded too (`AppState::open` gives
    /// none on PostgreSQL without pgvector).
    pub fn new(store: Store, embedder: Option<Arc<Embedder>>) -> Arc<Ingestor> {
        Arc::new(Ingestor {
            store,
            embedder,
            wake: Notify::new(),
            stop: watch::Sender::new(false),
            started: AtomicBool::new(false),
            task: Mutex::new(None),
        })
    }

    /// Starts the worker on the current runtime; later calls do nothing.
    pub fn start(self: &Arc<Self>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let me = self.clone();
        let task = tokio::spawn(async move { me.run().await });
        *self.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
    }

    /// Tells the worker that a document is waiting.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Stops the worker and waits up to `grace` for the document in hand; what is unfinished
    /// stays `processing` and is redone at the next start.
    pub async fn shutdown(&self, grace: Duration) {
        self.stop.send_replace(true);
        self.wake.notify_one();
        let task = self.task.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(task) = task
            && tokio::time::timeout(grace, task).await.is_err()
        {
            tracing::warn!("document ingestion did not stop in time; it resumes at the next start");
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        while !self.stopping() {
            let idle = match self.run_one().await {
                Ok(worked) => !worked,
                Err(e) => {
                    tracing::error!(error = %e, "document ingestion");
                    true
                }
            };
            if idle {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Ingests one document; `false` when the queue was empty.
    async fn run_one(&self) -> StoreResult<bool> {
        let token = new_id();
        let t = token.clone();
        let claimed =
            self.store.write(move |c| store::documents::claim(c, &t, &lease_until(), &now(), MAX_ATTEMPTS)).await?;
        let Some(doc) = claimed else { return Ok(false) };
        let (id, sha256) = (doc.id.clone(), doc.sha256.clone());
        tracing::info!(document_id = %id, "ingesting document");
        let format = Format::from_content_type(&doc.content_type);
        let work = db::blocking(move || -> StoreResult<_> { Ok(process(format, &doc.bytes)) });
        tokio::pin!(work);
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + RENEW_EVERY, RENEW_EVERY);
        let result = loop {
            tokio::select! {
                r = &mut work => break r?,
                _ = renew.tick() => {
                    let (id, t) = (id.clone(), token.clone());
                    self.store.write(move |c| store::documents::renew_lease(c, &id, &t, &lease_until())).await?;
                }
            }
        };
        let model = self.embedder.as_ref().map(|e| e.model.clone()).unwrap_or_default();
        let (doc_id, t) = (id.clone(), token.clone());
        let committed = match result {
            Ok(out) => {
                let chunks = out.chunks.len();
                // a provider outage leaves the document searchable by full text, and says so
                let (vectors, error) = match &self.embedder {
                    None => (None, None),
                    Some(e) => match e.embed(&embedding_texts(&out.chunks)).await {
                        Ok(v) => (Some(v), None),
                        Err(why) => {
                            tracing::warn!(document_id = %id, error = %why, "embedding the chunks failed");
                            (None, Some(format!("embedding failed ({why}); full-text search only until reindexed")))
                        }
                    },
                };
                let indexed_key = match &vectors {
                    Some(_) => format!("{sha256}:{PIPELINE_VERSION}:{model}"),
                    None => format!("{sha256}:{PIPELINE_VERSION}:"),
                };
                let ok = self
                    .store
                    .write(move |c| {
                        let vectors = vectors.as_deref().map(|v| Vectors { model: &model, vectors: v });
                        store::documents::commit_chunks(
                            c,
                            &doc_id,
                            &t,
                            &out.chunks,
                            vectors,
                            error.as_deref(),
                            out.page_count,
                            &indexed_key,
                            &now(),
                        )
                    })
                    .await?;
                tracing::info!(document_id = %id, chunks, committed = ok, "document ingested");
                ok
            }
            Err(error) => {
                tracing::warn!(document_id = %id, %error, "document ingestion failed");
                self.store.write(move |c| store::documents::commit_failure(c, &doc_id, &t, &error, &now())).await?
            }
        };
        if !committed {
            tracing::warn!(document_id = %id, "lost the lease (deleted or reindexed meanwhile); result discarded");
        }
        Ok(true)
    }
}

/// What is embedded for a chunk: its heading path, then its text.
fn embedding_texts(chunks: &[chunk::ChunkDraft]) -> Vec<String> {
    chunks
        .iter()
        .map(|c| if c.heading.is_empty() { c.text.clone() } else { format!("{}\n\n{}", c.heading, c.text) })
        .collect()
}

pub struct Processed {
    pub chunks: Vec<chunk::ChunkDraft>,
    pub page_count: Option<i64>,
}

/// Extraction and chunking of one document. `Err` is the document's `error`.
pub fn process(format: Option<Format>, bytes: &[u8]) -> Result<Processed, String> {
    let format = format.ok_or("the stored content type is not one that can be read")?;
    let extracted = extract::extract(format, bytes)?;
    if !extracted.has_text() {
        return Err(no_text_error(format));
    }
    let chunks = chunk::chunk(&extracted.sections);
    Ok(Processed { chunks, page_count: extracted.page_count })
}

pub fn no_text_error(format: Format) -> String {
    match format {
        Format::Pdf => "The PDF has no extractable text (a scanned PDF without a text layer?)".into(),
        _ => "The document has no extractable text".into(),
    }
}
