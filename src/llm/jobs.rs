//! Server-side generation jobs. A job runs in its own task, independent of the HTTP request
//! that started it: a client that disconnects loses nothing, and may re-attach to the job's
//! event stream, which is kept in memory while the job runs (and a little after). On PostgreSQL,
//! where several instances share the database, the jobs are shared too ([`Jobs::start_sync`]):
//! their events go to the database, and any instance follows, cancels or outlives any job.
//!
//! A job's whole life is here: [`start`] (the user message, the job row, the prompt), [`spawn`]
//! and its run, cancellation ([`Jobs::cancel`]), its end, and the replay of a finished job from
//! storage ([`replay_stored`]). `api/completions.rs` keeps the HTTP shapes only. llm imports
//! `model`, `store`, `db` and the knowledge base's prompt; never `api`.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use futures_util::Stream;
use poem_openapi::Object;
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{
    FailureKind, Provider, Providers,
    client::{self, ChatRequest, Completion},
    context::{PromptBuilder, estimate_tokens},
    embeddings::Embedder,
};
use crate::{
    authz::Scope,
    config::LimitsConfig,
    db::{DbError, new_id, now},
    model::{
        audit::Actor,
        completions::{Job, JobStatus},
        conversations::{Message, MessageRole},
    },
    store::{
        self,
        audit::Event,
        completions::{JobEnd, JobEventRow, NewJob},
        conn::Store,
        conversations::{MessageKey, NewMessage},
        error::{StoreError, StoreResult},
    },
};

/// How long a finished job's events stay in memory for late re-attaches; after that the stored
/// messages answer.
const RETAIN_FINISHED: Duration = Duration::from_secs(120);

/// How often an instance among several writes its jobs' new events and hears of cancellations
/// (the delay a follower through another instance sees, at most).
const SYNC_EVERY: Duration = Duration::from_millis(200);

/// The error of a job whose instance stopped renewing its lease (crashed or cut off).
pub const LEASE_EXPIRED: &str = "the server running it stopped";

/// One Server-Sent Event of a job. `id` is its position in the job's stream (1, 2, ...):
/// `user_message`, then `delta`s, then one of `done`, `cancelled`, `error`. `data` is the JSON
/// text, encoded once: a running job keeps every event in memory for its followers (a `Value`
/// of one delta took ~750 bytes, its text takes ~40), and each follower sends it as it is.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub id: i64,
    pub event: String,
    pub data: String,
}

impl StreamEvent {
    pub fn to_sse(self) -> poem::web::sse::Event {
        poem::web::sse::Event::message(self.data).id(self.id.to_string()).event_type(self.event)
    }
}

/// The `data` of a job's events (SPEC §6), each event's name decided by its kind.
#[derive(serde::Serialize, Debug)]
#[serde(untagged)]
pub enum Payload<'a> {
    /// `user_message`: the stored user message, first.
    UserMessage { job_id: &'a str, message: &'a Message },
    /// `citations`: the knowledge base passages given to the model, before the first delta.
    Citations { job_id: &'a str, citations: &'a Value },
    /// `delta`: the next piece of the reply.
    Delta { content: &'a str },
    /// `done`: the stored assistant message (and its citations).
    Done {
        job_id: &'a str,
        status: JobStatus,
        message: Option<&'a Message>,
        #[serde(skip_serializing_if = "Option::is_none")]
        citations: Option<&'a Value>,
    },
    /// `cancelled` or `error`: why, and the partial reply if one was stored.
    Ended { job_id: &'a str, status: JobStatus, detail: Option<&'a str>, message: Option<&'a Message> },
}

impl Payload<'_> {
    pub fn event(&self) -> &'static str {
        match self {
            Payload::UserMessage { .. } => "user_message",
            Payload::Citations { .. } => "citations",
            Payload::Delta { .. } => "delta",
            Payload::Done { .. } => "done",
            Payload::Ended { status: JobStatus::Cancelled, .. } => "cancelled",
            Payload::Ended { .. } => "error",
        }
    }

    /// The event at position `id` of a job's stream.
    fn at(&self, id: i64) -> StreamEvent {
        // serializing borrowed strings, numbers and `Value`s cannot fail
        let data = serde_json::to_string(self).unwrap_or_else(|_| "null".into());
        StreamEvent { id, event: self.event().to_string(), data }
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
    /// How many of the events are in the database, for followers through other instances (when
    /// several share it: see [`Jobs::start_sync`]).
    flushed: AtomicUsize,
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
            flushed: AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buf.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push_locked(&self, b: &mut Buffer, payload: &Payload<'_>) {
        let id = b.events.len() as i64 + 1;
        b.events.push(payload.at(id));
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n += 1);
    }

    /// Appends an event.
    pub fn push(&self, payload: &Payload<'_>) {
        {
            let mut b = self.lock();
            self.push_locked(&mut b, payload);
        }
        self.notify();
    }

    fn push_text(&self, text: &str) {
        {
            let mut b = self.lock();
            b.text.push_str(text);
            self.push_locked(&mut b, &Payload::Delta { content: text });
        }
        self.notify();
    }

    fn text(&self) -> String {
        self.lock().text.clone()
    }

    fn next_event_id(&self) -> i64 {
        self.lock().events.len() as i64 + 1
    }

    /// Appends the job's last event, made from how it ended.
    fn finish(&self, outcome: Outcome) {
        {
            let mut b = self.lock();
            self.push_locked(&mut b, &terminal_payload(&self.id, &outcome));
            b.outcome = Some(outcome);
        }
        self.notify();
    }

    pub fn is_finished(&self) -> bool {
        self.lock().outcome.is_some()
    }

    /// The events not yet in the database, without the last one of an ended job (that one is
    /// rebuilt from the stored job: [`replay_stored`]), and how many there are up to them.
    fn unflushed(&self) -> (Vec<JobEventRow>, usize) {
        let b = self.lock();
        let end = if b.outcome.is_some() { b.events.len() - 1 } else { b.events.len() };
        let from = self.flushed.load(Ordering::SeqCst).min(end);
        let rows = b.events[from..end]
            .iter()
            .map(|e| JobEventRow { job_id: self.id.clone(), seq: e.id, event: e.event.clone(), data: e.data.clone() })
            .collect();
        (rows, end)
    }

    fn mark_flushed(&self, upto: usize) {
        self.flushed.fetch_max(upto, Ordering::SeqCst);
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
    /// This instance's id when several instances share the jobs (PostgreSQL): its jobs hold
    /// leases under it, and their events go to the database for the others.
    instance_id: Option<String>,
    syncing: AtomicBool,
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
    /// The jobs of an instance among several (`Some` id: the jobs are shared through the
    /// database), or of the one process of a SQLite file (`None`).
    pub fn new(instance_id: Option<String>) -> Jobs {
        Jobs { instance_id, ..Jobs::default() }
    }

    pub fn is_shared(&self) -> bool {
        self.instance_id.is_some()
    }

    /// Starts, once, what keeps this instance's jobs visible to the others: every
    /// [`SYNC_EVERY`] it writes their new events, hears of cancellations asked through another
    /// instance, renews their leases every few seconds and fails jobs whose lease ran out. A
    /// no-op unless the jobs are shared; it stops when the jobs are dropped.
    pub fn start_sync(self: &Arc<Self>, store: Store) {
        let Some(instance) = self.instance_id.clone() else { return };
        if self.syncing.swap(true, Ordering::SeqCst) {
            return;
        }
        let jobs = Arc::downgrade(self);
        tokio::spawn(async move {
            let renew_every = Duration::from_secs(store::completions::LEASE_RENEW_SECONDS);
            let (mut renewed, mut swept) = (Instant::now(), Instant::now());
            let mut tick = tokio::time::interval(SYNC_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(jobs) = jobs.upgrade() else { return };
                let running: Vec<_> = jobs.lock().values().filter(|h| !h.is_finished()).cloned().collect();
                let (renew, sweep) = (renewed.elapsed() >= renew_every, swept.elapsed() >= renew_every);
                if running.is_empty() && !sweep {
                    continue;
                }
                let mut events = vec![];
                let marks: Vec<_> = running
                    .iter()
                    .map(|h| {
                        let (rows, upto) = h.unflushed();
                        events.extend(rows);
                        (h.clone(), upto)
                    })
                    .collect();
                let instance = instance.clone();
                let synced = store
                    .write(move |c| -> StoreResult<_> {
                        let cancels = store::completions::sync_instance_jobs(c, &instance, &events, renew)?;
                        let expired = if sweep { expire_leases(c)? } else { 0 };
                        Ok((cancels, expired))
                    })
                    .await;
                match synced {
                    Ok((cancels, expired)) => {
                        for (h, upto) in marks {
                            h.mark_flushed(upto);
                        }
                        for id in cancels {
                            if let Some(h) = jobs.get(&id) {
                                h.stop(StopReason::Cancelled);
                            }
                        }
                        if expired > 0 {
                            tracing::warn!(
                                jobs = expired,
                                "failed completion jobs whose instance stopped renewing them"
                            );
                        }
                        renewed = if renew { Instant::now() } else { renewed };
                        swept = if sweep { Instant::now() } else { swept };
                    }
                    // the next tick tries again; a lease outlives a few missed renewals
                    Err(e) => tracing::warn!(error = %e, "sharing the completion jobs failed"),
                }
            }
        });
    }

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

// ---------------------------------------------------------------------------------------------
// Starting a job

/// What starting a reply needs of the server, owned: a start runs to its end in a task of its
/// own, also when the request that asked for it goes away (a half-done start would leave a job
/// row blocking the conversation).
#[derive(Clone)]
pub struct Starter {
    pub jobs: Arc<Jobs>,
    pub store: Store,
    pub providers: Arc<Providers>,
    pub limits: LimitsConfig,
    pub embedder: Option<Arc<Embedder>>,
}

/// A user's message that asks the conversation's agent for a reply.
pub struct NewReply {
    pub owner: String,
    pub home: Scope,
    pub conversation_id: String,
    pub content: String,
    pub actor: Actor,
}

/// Why a reply could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No provider serves the agent's model, or the server is stopping.
    #[error("{0}")]
    Unavailable(String),
}

impl From<DbError> for StartError {
    fn from(e: DbError) -> Self {
        Self::Store(e.into())
    }
}

/// Stores the user message and the job, then starts the job; the caller's right to ask has been
/// checked. The reply's `home` is the caller's current organization: the agent config must be of
/// it, and the job's usage is billed to it.
pub async fn start(s: Starter, reply: NewReply) -> Result<Arc<JobHandle>, StartError> {
    let NewReply { owner, home, conversation_id, content, actor } = reply;
    if s.jobs.is_closing() {
        return Err(StartError::Unavailable("The server is shutting down; try again shortly".into()));
    }
    let org_id = home.org().unwrap_or_default().to_string();
    let providers = s.providers.clone();
    let job_id = new_id();
    let jid = job_id.clone();
    let user_id = owner.clone();
    let limits = s.limits.clone();
    let instance_id = s.jobs.instance_id.clone();
    let prepared = s
        .store
        .write(move |tx| -> Result<_, StartError> {
            let owner = user_id;
            let conversation = store::conversations::get_conversation(tx, &owner, &conversation_id)?
                .ok_or(StoreError::NotFound("Conversation not found"))?;
            let agent_id = conversation.agent_config_id.clone().ok_or_else(|| {
                StoreError::invalid("The conversation has no agent config; set agent_config_id on it first")
            })?;
            // of the caller's current organization: a user moved elsewhere keeps nothing of the old one
            let agent = match store::agents::get_agent_config(tx, &home, &agent_id)? {
                Some(a) if a.is_active => a,
                Some(_) => {
                    let why = "agent_config_id of the conversation names an inactive agent config; activate it first";
                    return Err(StoreError::invalid(why).into());
                }
                None => {
                    let why = "agent_config_id of the conversation names no agent config of your organization";
                    return Err(StoreError::invalid(why).into());
                }
            };
            let provider = providers.for_model(&agent.llm_model).ok_or_else(|| {
                StartError::Unavailable(format!(
                    "No LLM provider serves the model {:?} of this agent config; list it in `models` of a \
                         provider under [[llm.providers]] in copilot.toml (or COPILOT_LLM__PROVIDERS)",
                    agent.llm_model
                ))
            })?;
            store::limits::admit_job(tx, &limits, &org_id, &owner, time::OffsetDateTime::now_utc())?;
            let now = now();
            let metadata = json!({"job_id": jid}).to_string();
            let new = NewMessage { id: new_id(), role: MessageRole::User, content, metadata };
            let user_message = store::conversations::insert_message(tx, &owner, &conversation_id, &new, &now)?
                .ok_or(StoreError::NotFound("Conversation not found"))?;
            let job = NewJob {
                id: jid,
                conversation_id: conversation_id.clone(),
                user_id: owner,
                organization_id: org_id,
                agent_config_id: Some(agent.id.clone()),
                provider: provider.name.clone(),
                model: agent.llm_model.clone(),
                user_message_id: user_message.id.clone(),
                instance_id: instance_id.clone(),
            };
            store::completions::insert_job(tx, &job, &now)?;
            let event = Event::new("completion.create", &job.organization_id, "completion_job", &job.id).changes(Some(
                json!({"user_message_id": user_message.id, "agent_config_id": agent.id, "model": agent.llm_model}),
            ));
            store::audit::record(tx, &actor, &event)?;
            Ok((conversation, agent, provider, user_message))
        })
        .await?;
    let (conversation, agent, provider, user_message) = prepared;

    // knowledge base passages (SPEC §7) take at most half of the budget; history gets the rest
    let knowledge = crate::knowledge::prompt::for_completion(
        &s.store,
        s.embedder.as_deref(),
        &agent.organization_id,
        &agent.knowledge_base,
        &user_message.content,
        provider.max_context_tokens / 2,
    )
    .await;
    let knowledge_tokens = knowledge.as_ref().map_or(0, |k| k.tokens);
    // the history is read after the write, on a read connection, newest first and only as far
    // as the budget goes: a long conversation costs neither memory nor the writer's time
    let mut prompt = PromptBuilder::new(
        agent.system_prompt.as_deref(),
        &conversation.context,
        provider.max_context_tokens.saturating_sub(knowledge_tokens),
    );
    let (conversation_id, until) = (conversation.id.clone(), MessageKey::of(&user_message));
    let prompt = s
        .store
        .read(move |c| -> StoreResult<_> {
            store::conversations::newest_messages(c, &conversation_id, &until, |m| prompt.offer(m))?;
            Ok(prompt.finish())
        })
        .await;
    let mut prompt = match prompt {
        Ok(p) => p,
        Err(e) => {
            // the job row exists: fail it, or it would block the conversation until a restart
            let (jid, now) = (job_id.clone(), now());
            let _ = s
                .store
                .write(move |tx| {
                    let end = JobEnd {
                        status: JobStatus::Failed,
                        assistant_message_id: None,
                        error: Some("reading the conversation failed"),
                        finish_reason: None,
                        prompt_tokens: 0,
                        completion_tokens: 0,
                        last_event_id: 2,
                    };
                    store::completions::finish_job(tx, &jid, &end, &now)
                })
                .await;
            return Err(e.into());
        }
    };
    let handle = JobHandle::new(job_id.clone(), conversation.id.clone(), owner.clone());
    handle.push(&Payload::UserMessage { job_id: &job_id, message: &user_message });
    let citations = knowledge.map(|k| {
        // the sources go just before the user's message
        prompt.messages.insert(prompt.messages.len().saturating_sub(1), k.message);
        prompt.estimated_tokens += k.tokens;
        handle.push(&Payload::Citations { job_id: &job_id, citations: &k.citations });
        k.citations
    });
    let spec = JobSpec {
        handle: handle.clone(),
        request: ChatRequest {
            model: agent.llm_model.clone(),
            messages: prompt.messages,
            temperature: agent.temperature,
            max_tokens: agent.max_tokens,
        },
        provider,
        estimated_prompt_tokens: prompt.estimated_tokens,
        citations,
    };
    spawn(s.jobs.clone(), s.store.clone(), s.providers.http.clone(), spec);
    Ok(handle)
}

/// Registers the job and runs it in its own task.
pub fn spawn(jobs: Arc<Jobs>, store: Store, http: reqwest::Client, spec: JobSpec) {
    jobs.insert(spec.handle.clone());
    tokio::spawn(async move {
        let id = spec.handle.id.clone();
        run(store, http, spec, &jobs).await;
        tokio::time::sleep(RETAIN_FINISHED).await;
        jobs.remove(&id);
    });
}

async fn run(store: Store, http: reqwest::Client, spec: JobSpec, jobs: &Jobs) {
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
    let metadata = reply_metadata(ReplyMeta {
        model: &request.model,
        provider: &provider.name,
        finish_reason: completion.finish_reason.as_deref(),
        prompt_tokens,
        completion_tokens,
        usage_estimated,
        latency_ms,
        job_id: &h.id,
        status,
        failure: error.as_deref().zip(error_kind),
        citations,
    });
    // a failure before any text leaves only the user message and the job's error
    let store_message = status == JobStatus::Completed || !text.is_empty();
    let final_id = h.next_event_id();
    let (job_id, conversation_id, owner) = (h.id.clone(), h.conversation_id.clone(), h.user_id.clone());
    let (err, finish_reason) = (error.clone(), completion.finish_reason.clone());
    // shared jobs: the events the others have not seen go in the transaction that ends the job
    let shared = jobs.is_shared();
    let (unflushed, upto) = if shared { h.unflushed() } else { (vec![], 0) };
    let stored = store
        .write(move |tx| -> StoreResult<_> {
            let now = now();
            if !unflushed.is_empty() {
                store::completions::append_job_events(tx, &unflushed)?;
            }
            // shared jobs: another instance failed the job meanwhile (this one's lease ran out:
            // a process frozen for longer than a lease) and stored what it saw of the reply,
            // which stands. (One process serves a SQLite file: nobody else ends its jobs.)
            if shared && !store::completions::hold_running_job(tx, &job_id)? {
                return Ok(Err(()));
            }
            let message = if store_message {
                let new = NewMessage {
                    id: new_id(),
                    role: MessageRole::Assistant,
                    content: text,
                    metadata: metadata.to_string(),
                };
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
            Ok(Ok(message))
        })
        .await;
    // the status the job ended with: not this one's when it could not be stored, or another
    // instance ended it
    let ended = if matches!(stored, Ok(Ok(_))) { status } else { JobStatus::Failed };
    tracing::info!(job_id = %h.id, provider = %provider.name, model = %request.model, status = ended.as_str(), latency_ms,
        prompt_tokens, completion_tokens, "completion job finished");
    jobs.tally.record(ended, prompt_tokens, completion_tokens);
    match stored {
        Ok(Ok(message)) => {
            h.mark_flushed(upto);
            h.finish(Outcome { status, message, error, error_kind });
        }
        Ok(Err(())) => {
            tracing::warn!(job_id = %h.id, "another instance ended this job after its lease ran out; its reply stands");
            h.mark_flushed(upto);
            h.finish(Outcome {
                status: JobStatus::Failed,
                message: None,
                error: Some(LEASE_EXPIRED.into()),
                error_kind: Some(FailureKind::Shutdown),
            });
        }
        Err(e) => {
            tracing::error!(job_id = %h.id, error = %e, "storing the reply failed");
            let job_id = h.id.clone();
            let _ = store
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
            h.finish(Outcome {
                status: JobStatus::Failed,
                message: None,
                error: Some("the reply could not be stored".into()),
                error_kind: Some(FailureKind::Storage),
            });
        }
    }
}

/// What an assistant message's metadata says of the reply (README, "Talking to an LLM").
struct ReplyMeta<'a> {
    model: &'a str,
    provider: &'a str,
    finish_reason: Option<&'a str>,
    prompt_tokens: i64,
    completion_tokens: i64,
    usage_estimated: bool,
    latency_ms: i64,
    job_id: &'a str,
    status: JobStatus,
    /// why the reply did not complete: its text is partial
    failure: Option<(&'a str, FailureKind)>,
    citations: Option<Value>,
}

fn reply_metadata(r: ReplyMeta<'_>) -> Value {
    let mut metadata = json!({
        "model": r.model,
        "provider": r.provider,
        "finish_reason": r.finish_reason,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "usage_estimated": r.usage_estimated,
        "latency_ms": r.latency_ms,
        "job_id": r.job_id,
        "status": r.status.as_str(),
    });
    if let Some(c) = r.citations {
        metadata["citations"] = c;
    }
    if let Some((error, kind)) = r.failure {
        metadata["error"] = json!(error);
        metadata["error_kind"] = json!(kind.as_str());
        metadata["partial"] = json!(true);
    }
    metadata
}

/// Fails the shared jobs (PostgreSQL) whose instance stopped renewing their lease, each with what
/// that instance had written of the reply (its `delta` events, up to its last sync) stored as the
/// partial assistant message, marked as a stopped server's would be (`error_kind: shutdown`,
/// `partial: true`); a job with no text yet stores none. Also forgets the events of jobs that
/// ended a while ago. Returns how many jobs it failed.
pub fn expire_leases(c: &mut store::conn::Conn<'_, '_>) -> StoreResult<usize> {
    let expired = store::completions::take_expired_jobs(c)?;
    let now = now();
    for job in &expired {
        let completion_tokens = estimate_tokens(&job.text) as i64;
        let message = if job.text.is_empty() {
            None
        } else {
            let metadata = reply_metadata(ReplyMeta {
                model: &job.model,
                provider: &job.provider,
                finish_reason: None,
                // the prompt's size died with the instance that built it
                prompt_tokens: 0,
                completion_tokens,
                usage_estimated: true,
                latency_ms: job.latency_ms,
                job_id: &job.id,
                status: JobStatus::Failed,
                failure: Some((LEASE_EXPIRED, FailureKind::Shutdown)),
                citations: job.citations.as_deref().and_then(|c| serde_json::from_str(c).ok()),
            });
            let new = NewMessage {
                id: new_id(),
                role: MessageRole::Assistant,
                content: job.text.clone(),
                metadata: metadata.to_string(),
            };
            // a deleted conversation takes no message
            store::conversations::insert_message(c, &job.user_id, &job.conversation_id, &new, &now)?
        };
        let end = JobEnd {
            status: JobStatus::Failed,
            assistant_message_id: message.as_ref().map(|m| m.id.as_str()),
            error: Some(LEASE_EXPIRED),
            finish_reason: None,
            prompt_tokens: 0,
            completion_tokens,
            last_event_id: job.last_event_id,
        };
        store::completions::finish_job(c, &job.id, &end, &now)?;
    }
    Ok(expired.len())
}

/// The events after `after` of a job of `owner` that this process does not hold (`None`: no such
/// job). A job that another instance runs (shared jobs) is followed from the events it writes to
/// the database, until its end; a job that ended replays from there while its events are kept,
/// then from the stored messages ([`replay_stored`]).
pub async fn follow_elsewhere(
    store: Store,
    shared: bool,
    owner: String,
    conversation_id: String,
    job_id: String,
    after: i64,
) -> StoreResult<Option<futures_util::stream::BoxStream<'static, StreamEvent>>> {
    use futures_util::StreamExt;
    let read = move |after: i64| {
        let (owner, conversation_id, job_id) = (owner.clone(), conversation_id.clone(), job_id.clone());
        let store = store.clone();
        async move { stored_events(&store, owner, conversation_id, job_id, after).await }
    };
    let Some((first, running)) = read(after).await? else { return Ok(None) };
    if !(running && shared) {
        return Ok(Some(futures_util::stream::iter(first).boxed()));
    }
    let next_after = first.last().map_or(after, |e| e.id);
    let rest = futures_util::stream::unfold((next_after, false), move |(after, ended)| {
        let read = read.clone();
        async move {
            if ended {
                return None;
            }
            tokio::time::sleep(SYNC_EVERY).await;
            match read(after).await {
                Ok(Some((events, running))) => {
                    let next = events.last().map_or(after, |e| e.id);
                    Some((events, (next, !running)))
                }
                // the job is gone (its conversation deleted) or unreadable: the stream ends, and
                // the client may re-attach from its last event
                Ok(None) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "following a job of another instance failed");
                    None
                }
            }
        }
    });
    Ok(Some(futures_util::stream::iter(first).chain(rest.flat_map(futures_util::stream::iter)).boxed()))
}

/// The stored events after `after` of a job of `owner`, in one snapshot, and whether it is still
/// running: those its instance wrote (shared jobs), else the ones [`replay_stored`] rebuilds.
async fn stored_events(
    store: &Store,
    owner: String,
    conversation_id: String,
    job_id: String,
    after: i64,
) -> StoreResult<Option<(Vec<StreamEvent>, bool)>> {
    store
        .read(move |c| {
            let Some(job) = store::completions::get_job(c, &owner, &conversation_id, &job_id)? else {
                return Ok(None);
            };
            let running = job.status == JobStatus::Running;
            let rows = store::completions::job_events(c, &job.id, after)?;
            let mut message = |id: &str| store::conversations::get_message(c, &owner, &conversation_id, id);
            let assistant = match job.assistant_message_id.as_deref() {
                Some(id) if !running => message(id)?,
                _ => None,
            };
            if rows.is_empty() {
                let user = if after < 1 { message(&job.user_message_id)? } else { None };
                return Ok(Some((replay_stored(&job, user, assistant, after), running)));
            }
            let last = rows.last().map_or(after, |r| r.seq);
            let mut events: Vec<StreamEvent> =
                rows.into_iter().map(|r| StreamEvent { id: r.seq, event: r.event, data: r.data }).collect();
            events.extend(replay_stored(&job, None, assistant, last));
            Ok(Some((events, running)))
        })
        .await
}

/// Cancels the job `job_id` of `owner`: stops it when this process runs it, or (shared jobs)
/// asks the instance that runs it, and waits until its end is stored. Answers the job as stored
/// afterwards and whether it was running before (`None`: no such job). A job that is still running
/// then (its instance did not answer within a lease) is answered as it is.
pub async fn cancel(
    jobs: &Jobs,
    store: &Store,
    owner: String,
    conversation_id: String,
    job_id: String,
) -> StoreResult<Option<(Job, bool)>> {
    let read = || {
        let (owner, conversation_id, job_id) = (owner.clone(), conversation_id.clone(), job_id.clone());
        store.read(move |c| store::completions::get_job(c, &owner, &conversation_id, &job_id))
    };
    let Some(job) = read().await? else { return Ok(None) };
    let was_running = job.status == JobStatus::Running;
    if was_running && jobs.get(&job_id).is_some() {
        jobs.cancel(&job_id).await;
    } else if was_running && jobs.is_shared() {
        let id = job_id.clone();
        store.write(move |c| store::completions::request_cancel(c, &id)).await?;
        // its instance hears of it within SYNC_EVERY; one that stopped has its lease run out,
        // and the sweep of any instance fails the job then
        let wait =
            Duration::from_secs(store::completions::LEASE_SECONDS as u64 + 2 * store::completions::LEASE_RENEW_SECONDS);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            tokio::time::sleep(SYNC_EVERY / 2).await;
            match read().await? {
                Some(j) if j.status == JobStatus::Running => continue,
                other => return Ok(other.map(|j| (j, true))),
            }
        }
    }
    Ok(read().await?.map(|job| (job, was_running)))
}

/// The events of a job no longer in memory, rebuilt from what is stored: its `user_message`
/// (event 1) and, once it ended, its last event, each only when after `after`.
pub fn replay_stored(job: &Job, user: Option<Message>, assistant: Option<Message>, after: i64) -> Vec<StreamEvent> {
    let mut events = vec![];
    if let Some(m) = user.filter(|_| after < 1) {
        events.push(Payload::UserMessage { job_id: &job.id, message: &m }.at(1));
    }
    if job.status != JobStatus::Running && after < job.last_event_id {
        let outcome = Outcome { status: job.status, message: assistant, error: job.error.clone(), error_kind: None };
        events.push(terminal_payload(&job.id, &outcome).at(job.last_event_id));
    }
    events
}

/// The last event of a job: `done`, `cancelled` or `error`, with the stored assistant message.
fn terminal_payload<'a>(job_id: &'a str, o: &'a Outcome) -> Payload<'a> {
    let message = o.message.as_ref();
    match o.status {
        JobStatus::Completed => Payload::Done {
            job_id,
            status: o.status,
            message,
            citations: message.and_then(|m| m.metadata.get("citations")),
        },
        status => Payload::Ended { job_id, status, detail: o.error.as_deref(), message },
    }
}
