//! Server-side generation jobs. A job runs in its own task, independent of the HTTP request
//! that started it: a client that disconnects loses nothing, and may re-attach to the job's
//! event stream, which is kept in memory while the job runs (and a little after).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::Stream;
use poem_openapi::Object;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    FailureKind, Provider,
    client::{self, ChatRequest, Completion},
    context::estimate_tokens,
};
use crate::{
    db::{Db, now},
    model::{
        completions::{Job, JobStatus},
        conversations::{Message, MessageRole},
    },
    store::{self, completions::JobEnd, conversations::NewMessage, error::StoreResult},
};

/// How long a finished job's events stay in memory for late re-attaches; after that the stored
/// messages answer.
const RETAIN_FINISHED: Duration = Duration::from_secs(120);

/// One Server-Sent Event of a job. `id` is its position in the job's stream (1, 2, ...):
/// `user_message`, then `delta`s, then one of `done`, `cancelled`, `error`.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub id: i64,
    pub event: String,
    pub data: Value,
}

impl StreamEvent {
    pub fn to_sse(&self) -> poem::web::sse::Event {
        poem::web::sse::Event::message(self.data.to_string()).id(self.id.to_string()).event_type(self.event.clone())
    }
}

/// Why a job was stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The user asked: the job ends `cancelled`.
    Cancelled,
    /// The server is stopping: the job ends `failed`.
    Shutdown,
}

/// How a job ended, for a request that waits for it.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub status: JobStatus,
    pub message: Option<Message>,
    pub error: Option<String>,
    pub error_kind: Option<FailureKind>,
}

#[derive(Default)]
struct Buffer {
    events: Vec<StreamEvent>,
    text: String,
    outcome: Option<Outcome>,
}

/// A running (or just finished) job: its events so far and how to stop it.
pub struct JobHandle {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    buf: Mutex<Buffer>,
    changed: watch::Sender<u64>,
    stop: watch::Sender<Option<StopReason>>,
}

impl JobHandle {
    pub fn new(id: String, conversation_id: String, user_id: String) -> Arc<JobHandle> {
        Arc::new(JobHandle {
            id,
            conversation_id,
            user_id,
            buf: Mutex::default(),
            changed: watch::Sender::new(0),
            stop: watch::Sender::new(None),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_locked(&self, b: &mut Buffer, event: &str, data: Value) {
        let id = b.events.len() as i64 + 1;
        b.events.push(StreamEvent { id, event: event.to_string(), data });
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Appends an event.
    pub fn push(&self, event: &str, data: Value) {
        {
            let mut b = self.lock();
            self.push_locked(&mut b, event, data);
        }
        self.notify();
    }

    fn push_text(&self, text: &str) {
        {
            let mut b = self.lock();
            b.text.push_str(text);
            self.push_locked(&mut b, "delta", json!({ "content": text }));
        }
        self.notify();
    }

    fn text(&self) -> String {
        self.lock().text.clone()
    }

    fn next_event_id(&self) -> i64 {
        self.lock().events.len() as i64 + 1
    }

    fn finish(&self, event: &str, data: Value, outcome: Outcome) {
        {
            let mut b = self.lock();
            self.push_locked(&mut b, event, data);
            b.outcome = Some(outcome);
        }
        self.notify();
    }

    pub fn is_finished(&self) -> bool {
        self.lock().outcome.is_some()
    }

    /// Asks the job to stop; the first reason wins. The partial reply is stored.
    pub fn stop(&self, reason: StopReason) {
        self.stop.send_if_modified(|r| {
            if r.is_none() {
                *r = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Waits until the job has ended and its result is stored.
    pub async fn finished(&self) -> Outcome {
        let mut rx = self.changed.subscribe();
        loop {
            if let Some(o) = self.lock().outcome.clone() {
                return o;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// The events after position `after`, and whether the last one ends the stream.
    fn events_after(&self, after: i64) -> (Vec<StreamEvent>, bool) {
        let b = self.lock();
        let start = (after.max(0) as usize).min(b.events.len());
        (b.events[start..].to_vec(), b.outcome.is_some())
    }

    /// The job's events after position `after`: first the ones already there, then the rest as
    /// they come, until the job's last event.
    pub fn stream(self: Arc<Self>, after: i64) -> impl Stream<Item = StreamEvent> + Send + 'static {
        let rx = self.changed.subscribe();
        futures_util::stream::unfold(
            (self, rx, after, Vec::new(), false),
            |(h, mut rx, after, mut pending, mut ended)| async move {
                loop {
                    if !pending.is_empty() {
                        let e: StreamEvent = pending.remove(0);
                        let after = e.id;
                        return Some((e, (h, rx, after, pending, ended)));
                    }
                    if ended {
                        return None;
                    }
                    rx.borrow_and_update();
                    let (events, finished) = h.events_after(after);
                    ended = finished;
                    if events.is_empty() && !finished && rx.changed().await.is_err() {
                        return None;
                    }
                    pending = events;
                }
            },
        )
    }
}

/// The jobs of this process, by id.
#[derive(Default)]
pub struct Jobs {
    map: Mutex<HashMap<String, Arc<JobHandle>>>,
    closing: AtomicBool,
    /// What the jobs of this process did, for `/metrics`.
    pub tally: Tally,
}

/// Counts of finished jobs by status and of their tokens, since this process started.
#[derive(Default)]
pub struct Tally {
    pub completed: AtomicU64,
    pub cancelled: AtomicU64,
    pub failed: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
}

impl Tally {
    fn record(&self, status: JobStatus, prompt_tokens: i64, completion_tokens: i64) {
        let counter = match status {
            JobStatus::Completed => &self.completed,
            JobStatus::Cancelled => &self.cancelled,
            JobStatus::Failed | JobStatus::Running => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.prompt_tokens.fetch_add(prompt_tokens.max(0) as u64, Ordering::Relaxed);
        self.completion_tokens.fetch_add(completion_tokens.max(0) as u64, Ordering::Relaxed);
    }
}

impl Jobs {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<JobHandle>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the server is stopping: no new jobs then.
    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    pub fn get(&self, id: &str) -> Option<Arc<JobHandle>> {
        self.lock().get(id).cloned()
    }

    /// Stops the job `id` of this process as cancelled by its user and waits until its end is
    /// stored. A job this process does not run is left alone.
    pub async fn cancel(&self, id: &str) {
        if let Some(h) = self.get(id) {
            h.stop(StopReason::Cancelled);
            h.finished().await;
        }
    }

    /// Jobs of this process still generating.
    pub fn running(&self) -> usize {
        self.lock().values().filter(|h| !h.is_finished()).count()
    }

    fn insert(&self, h: Arc<JobHandle>) {
        self.lock().insert(h.id.clone(), h);
    }

    fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    /// Stops every running job (their partial replies are stored as failed) and waits up to
    /// `grace` for them to be stored.
    pub async fn shutdown(&self, grace: Duration) {
        self.closing.store(true, Ordering::SeqCst);
        let running: Vec<_> = self.lock().values().filter(|h| !h.is_finished()).cloned().collect();
        if running.is_empty() {
            return;
        }
        tracing::info!(jobs = running.len(), "stopping running completion jobs");
        for h in &running {
            h.stop(StopReason::Shutdown);
        }
        let all = futures_util::future::join_all(running.iter().map(|h| h.finished()));
        if tokio::time::timeout(grace, all).await.is_err() {
            tracing::warn!("some completion jobs did not stop in time");
        }
    }
}

/// Everything a job needs to run.
pub struct JobSpec {
    pub handle: Arc<JobHandle>,
    pub provider: Arc<Provider>,
    pub request: ChatRequest,
    pub estimated_prompt_tokens: u64,
    /// The knowledge base passages given to the model (SPEC §7), stored in the reply's metadata.
    pub citations: Option<Value>,
}

/// Registers the job and runs it in its own task.
pub fn spawn(jobs: Arc<Jobs>, db: Db, http: reqwest::Client, spec: JobSpec) {
    jobs.insert(spec.handle.clone());
    tokio::spawn(async move {
        let id = spec.handle.id.clone();
        run(db, http, spec, &jobs.tally).await;
        tokio::time::sleep(RETAIN_FINISHED).await;
        jobs.remove(&id);
    });
}

async fn run(db: Db, http: reqwest::Client, spec: JobSpec, tally: &Tally) {
    let JobSpec { handle: h, provider, request, estimated_prompt_tokens, citations } = spec;
    let started = Instant::now();
    let mut stop_rx = h.stop.subscribe();
    let result: Result<Completion, (String, FailureKind)> = tokio::select! {
        r = client::stream_chat(&http, &provider, &request, |t| h.push_text(t)) => {
            r.map_err(|f| (f.to_string(), f.kind()))
        }
        reason = stop_rx.wait_for(Option::is_some) => {
            match reason.ok().and_then(|r| *r) {
                Some(StopReason::Cancelled) => Err(("cancelled by the user".to_string(), FailureKind::Cancelled)),
                _ => Err(("the server stopped during generation".to_string(), FailureKind::Shutdown)),
            }
        }
    };
    let latency_ms = started.elapsed().as_millis() as i64;
    let text = h.text();
    let (status, error, error_kind, completion) = match result {
        Ok(c) => (JobStatus::Completed, None, None, c),
        Err((e, FailureKind::Cancelled)) => {
            (JobStatus::Cancelled, Some(e), Some(FailureKind::Cancelled), Completion::default())
        }
        Err((e, kind)) => (JobStatus::Failed, Some(e), Some(kind), Completion::default()),
    };
    let usage_estimated = completion.prompt_tokens.is_none() || completion.completion_tokens.is_none();
    let prompt_tokens = completion.prompt_tokens.unwrap_or(estimated_prompt_tokens as i64);
    let completion_tokens = completion.completion_tokens.unwrap_or(estimate_tokens(&text) as i64);
    let mut metadata = json!({
        "model": request.model,
        "provider": provider.name,
        "finish_reason": completion.finish_reason,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "usage_estimated": usage_estimated,
        "latency_ms": latency_ms,
        "job_id": h.id,
        "status": status.as_str(),
    });
    if let Some(c) = citations {
        metadata["citations"] = c;
    }
    if let Some(e) = &error {
        metadata["error"] = json!(e);
        metadata["error_kind"] = json!(error_kind.map(FailureKind::as_str));
        metadata["partial"] = json!(true);
    }
    // a failure before any text leaves only the user message and the job's error
    let store_message = status == JobStatus::Completed || !text.is_empty();
    let final_id = h.next_event_id();
    let (job_id, conversation_id, owner) = (h.id.clone(), h.conversation_id.clone(), h.user_id.clone());
    let (err, finish_reason) = (error.clone(), completion.finish_reason.clone());
    let stored = db
        .write(move |tx| -> StoreResult<_> {
            let now = now();
            let message = if store_message {
                let new = NewMessage { role: MessageRole::Assistant, content: text, metadata: metadata.to_string() };
                store::conversations::insert_message(tx, &owner, &conversation_id, &new, &now)?
            } else {
                None
            };
            let end = JobEnd {
                status,
                assistant_message_id: message.as_ref().map(|m| m.id.as_str()),
                error: err.as_deref(),
                finish_reason: finish_reason.as_deref(),
                prompt_tokens,
                completion_tokens,
                last_event_id: final_id,
            };
            store::completions::finish_job(tx, &job_id, &end, &now)?;
            Ok(message)
        })
        .await;
    tracing::info!(job_id = %h.id, provider = %provider.name, model = %request.model, status = status.as_str(), latency_ms,
        prompt_tokens, completion_tokens, "completion job finished");
    tally.record(status, prompt_tokens, completion_tokens);
    match stored {
        Ok(message) => {
            let outcome = Outcome { status, message, error, error_kind };
            let (event, data) = terminal_event(&h.id, &outcome);
            h.finish(event, data, outcome);
        }
        Err(e) => {
            tracing::error!(job_id = %h.id, error = %e, "storing the reply failed");
            let job_id = h.id.clone();
            let _ = db
                .write(move |tx| {
                    let end = JobEnd {
                        status: JobStatus::Failed,
                        assistant_message_id: None,
                        error: Some("the reply could not be stored"),
                        finish_reason: None,
                        prompt_tokens,
                        completion_tokens,
                        last_event_id: final_id,
                    };
                    store::completions::finish_job(tx, &job_id, &end, &now())
                })
                .await;
            let outcome = Outcome {
                status: JobStatus::Failed,
                message: None,
                error: Some("the reply could not be stored".into()),
                error_kind: Some(FailureKind::Storage),
            };
            let (event, data) = terminal_event(&h.id, &outcome);
            h.finish(event, data, outcome);
        }
    }
}

/// The events of a job no longer in memory, rebuilt from what is stored: its `user_message`
/// (event 1) and, once it ended, its last event, each only when after `after`.
pub fn replay_stored(job: &Job, user: Option<Message>, assistant: Option<Message>, after: i64) -> Vec<StreamEvent> {
    let mut events = vec![];
    if let Some(m) = user.filter(|_| after < 1) {
        events.push(StreamEvent {
            id: 1,
            event: "user_message".into(),
            data: json!({"job_id": job.id, "message": message_json(&m)}),
        });
    }
    if job.status != JobStatus::Running && after < job.last_event_id {
        let outcome = Outcome { status: job.status, message: assistant, error: job.error.clone(), error_kind: None };
        let (event, data) = terminal_event(&job.id, &outcome);
        events.push(StreamEvent { id: job.last_event_id, event: event.into(), data });
    }
    events
}

/// The last event of a job: `done`, `cancelled` or `error`, with the stored assistant message.
pub fn terminal_event(job_id: &str, o: &Outcome) -> (&'static str, Value) {
    let message = o.message.as_ref().map(message_json).unwrap_or(Value::Null);
    match o.status {
        JobStatus::Completed => {
            let citations = message.pointer("/metadata/citations").cloned();
            let mut data = json!({"job_id": job_id, "status": o.status.as_str(), "message": message});
            if let Some(c) = citations {
                data["citations"] = c;
            }
            ("done", data)
        }
        status => (
            if status == JobStatus::Cancelled { "cancelled" } else { "error" },
            json!({"job_id": job_id, "status": status.as_str(), "detail": o.error, "message": message}),
        ),
    }
}

pub fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "conversation_id": m.conversation_id,
        "role": m.role.as_str(),
        "content": m.content,
        "metadata": m.metadata,
        "created_at": m.created_at,
    })
}
