//! The scenarios the ceiling has no equivalent of, so copilot runs them alone (issue 15, part 3),
//! each on a fresh server and database of its own (so that one's memory peak is not another's):
//!
//! - `relay`: a streamed completion relayed from the scripted provider (`provider.rs`), beside a
//!   client of the provider itself: latency to the first token and per token that copilot adds;
//! - `followers`: 1,000 Server-Sent Events followers of running jobs: RSS, CPU per delivered
//!   event, and whether every follower got every event;
//! - `knowledge_search`, `knowledge_hybrid`: `GET /knowledge/search` over 100,000 chunks from 32
//!   connections, full text, and full text fused with vectors (the query embedded by the
//!   scripted provider's `/embeddings`).

use std::{
    net::SocketAddr,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use hdrhistogram::Histogram;
use rand::{Rng, SeedableRng, rngs::StdRng};
use rusqlite::params;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{
    Conn, LoadResult, Opts, Server, call,
    corpus::{vocabulary, word},
    id, load_each, login, median_spread, open, provider, request, seed_copilot, start_copilot_with, tmp_dir_of, vm_kib,
};
use provider::ScriptedProvider;

/// The model the scripted provider serves for chat, and the one for embeddings.
const CHAT_MODEL: &str = "bench-model";
const EMBED_MODEL: &str = "bench-embed";

fn hist() -> Histogram<u64> {
    Histogram::<u64>::new_with_bounds(1, 600_000_000, 3).unwrap()
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() { f64::NAN } else { h.value_at_quantile(q) as f64 / 1000.0 }
}

// ------------------------------------------------------------------------------------ SSE client

/// One Server-Sent Event as the client saw it: `at` is the end of the read that completed it.
pub struct Ev {
    pub at: Instant,
    pub id: Option<i64>,
    pub event: String,
    pub data: String,
}

/// A response read as an event stream (HTTP/1.1, chunked or not), event by event.
pub struct Sse {
    stream: TcpStream,
    raw: Vec<u8>,
    body: Vec<u8>,
    chunked: bool,
    ended: bool,
    last_read: Instant,
}

impl Sse {
    /// Sends `req` on a new connection and reads the answer's head.
    pub async fn open(addr: SocketAddr, req: &[u8]) -> std::io::Result<(u16, Sse)> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let mut s = Sse {
            stream,
            raw: Vec::with_capacity(8192),
            body: Vec::with_capacity(8192),
            chunked: false,
            ended: false,
            last_read: Instant::now(),
        };
        s.stream.write_all(req).await?;
        let head_end = loop {
            if let Some(p) = s.raw.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            s.read_more().await?;
            if s.ended {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        };
        let head = String::from_utf8_lossy(&s.raw[..head_end]).into_owned();
        let status: u16 =
            head.get(9..12).and_then(|v| v.parse().ok()).ok_or_else(|| std::io::Error::other("status"))?;
        s.chunked = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked"));
        s.raw.drain(..head_end);
        s.dechunk()?;
        Ok((status, s))
    }

    async fn read_more(&mut self) -> std::io::Result<()> {
        self.raw.reserve(16 * 1024);
        let n = self.stream.read_buf(&mut self.raw).await?;
        self.last_read = Instant::now();
        if n == 0 {
            self.ended = true;
        }
        Ok(())
    }

    /// Moves the complete chunks of `raw` into `body`.
    fn dechunk(&mut self) -> std::io::Result<()> {
        if !self.chunked {
            self.body.append(&mut self.raw);
            return Ok(());
        }
        let mut pos = 0;
        while let Some(line) = self.raw[pos..].windows(2).position(|w| w == b"\r\n") {
            let text = std::str::from_utf8(&self.raw[pos..pos + line]).map_err(std::io::Error::other)?;
            let size = usize::from_str_radix(text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(std::io::Error::other)?;
            let data = pos + line + 2;
            if self.raw.len() < data + size + 2 {
                break;
            }
            if size == 0 {
                self.ended = true;
                pos = self.raw.len();
                break;
            }
            self.body.extend_from_slice(&self.raw[data..data + size]);
            pos = data + size + 2;
        }
        self.raw.drain(..pos);
        Ok(())
    }

    /// The next event; `None` at the end of the answer. Comments (keep-alives) are skipped.
    pub async fn next(&mut self) -> std::io::Result<Option<Ev>> {
        loop {
            if let Some(p) = self.body.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.body.drain(..p + 2).collect();
                let text = String::from_utf8_lossy(&block);
                let mut ev = Ev { at: self.last_read, id: None, event: String::new(), data: String::new() };
                let mut any = false;
                for line in text.lines() {
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => ev.id = value.parse().ok(),
                        "event" => ev.event = value.to_string(),
                        "data" => {
                            if !ev.data.is_empty() {
                                ev.data.push('\n');
                            }
                            ev.data.push_str(value);
                        }
                        _ => continue, // a comment
                    }
                    any = true;
                }
                if any {
                    return Ok(Some(ev));
                }
                continue;
            }
            if self.ended {
                return Ok(None);
            }
            self.read_more().await?;
            self.dechunk()?;
        }
    }
}

// ------------------------------------------------------------------------------------ servers

/// A fresh copilot on its own database (migrations, `Default`, then the benchmark's data set),
/// with the scripted provider configured, no job limit per user; `extra` more settings.
fn fresh_copilot(
    tmp: &Path,
    name: &str,
    bench_hash: &str,
    provider: &ScriptedProvider,
    extra: &[(&str, String)],
    prepare: impl FnOnce(&Path),
) -> (Server, std::path::PathBuf, String) {
    let db = tmp.join(format!("{name}.db"));
    let base = vec![
        (
            "COPILOT_LLM__PROVIDERS",
            format!(
                "[{{name = \"scripted\", base_url = \"{}\", models = [\"{CHAT_MODEL}\", \"{EMBED_MODEL}\"], \
                 timeout_seconds = 120}}]",
                provider.base_url()
            ),
        ),
        ("COPILOT_LIMITS__MAX_JOBS_PER_USER", "0".to_string()),
    ];
    let mut envs = base.clone();
    envs.extend(extra.iter().cloned());
    start_copilot_with(tmp, &db, &base).stop();
    seed_copilot(&db, bench_hash);
    prepare(&db);
    let server = start_copilot_with(tmp, &db, &envs);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let token = rt.block_on(login(server.addr));
    (server, db, token)
}

async fn post_json(addr: SocketAddr, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(addr, &request("POST", addr, path, Some(token), Some(&body.to_string()))).await
}

/// An agent config of the scripted provider's chat model.
async fn agent(addr: SocketAddr, token: &str) -> String {
    let (status, v) = post_json(
        addr,
        token,
        "/api/v1/agent-configs",
        json!({"name": format!("bench {}", id()), "agent_type": "documentation", "llm_model": CHAT_MODEL,
               "max_tokens": 4096}),
    )
    .await;
    assert_eq!(status, 201, "agent config: {v}");
    v["id"].as_str().unwrap().to_string()
}

fn conversation_req(addr: SocketAddr, token: &str, agent_id: &str) -> Arc<Vec<u8>> {
    let body = json!({"title": "bench stream", "agent_config_id": agent_id}).to_string();
    request("POST", addr, "/api/v1/conversations", Some(token), Some(&body))
}

/// A new conversation with the agent, on a keep-alive connection.
async fn new_conversation(conn: &mut Conn, req: &[u8]) -> Result<String, String> {
    let status = conn.send(req, true).await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_slice(&conn.body).unwrap_or(Value::Null);
    match (status, v["id"].as_str()) {
        (201, Some(id)) => Ok(id.to_string()),
        _ => Err(format!("conversation: {status} {v}")),
    }
}

fn completion_req(addr: SocketAddr, token: &str, conversation: &str, tokens: usize, gap: Duration) -> Vec<u8> {
    let body = json!({"content": provider::script(tokens, gap), "stream": true}).to_string();
    request("POST", addr, &format!("/api/v1/conversations/{conversation}/completions"), Some(token), Some(&body))
        .to_vec()
}

/// The token numbers and provider time stamps in a delta's text (` t{k}@{µs}` each).
fn tokens_in(text: &str) -> impl Iterator<Item = Option<(usize, u64)>> + '_ {
    text.split(' ').filter(|p| !p.is_empty()).map(|p| {
        let (k, us) = p.strip_prefix('t')?.split_once('@')?;
        Some((k.parse().ok()?, us.parse().ok()?))
    })
}

/// The peak resident memory, and what is resident now: anonymous (heap, stacks) and file pages.
fn memory(pid: u32) -> String {
    let mib = |f: &str| vm_kib(pid, f) as f64 / 1024.0;
    format!(
        "peak memory (VmHWM) {:>7.1} MiB; resident now {:.1} MiB (RssAnon {:.1}, RssFile {:.1}); {} threads",
        mib("VmHWM:"),
        mib("VmRSS:"),
        mib("RssAnon:"),
        mib("RssFile:"),
        vm_kib(pid, "Threads:")
    )
}

// ------------------------------------------------------------------------------------ relay

/// What one stream gave: time to the first token, and per token the time from the provider's
/// write to the client's read and the gap since the previous token.
struct StreamSample {
    ttft: Duration,
    delivery: Vec<Duration>,
    gaps: Vec<Duration>,
}

/// Records one stream's tokens (in order, all of them) from its events.
#[derive(Default)]
struct TokenLog {
    next: usize,
    text: String,
    first: Option<Instant>,
    last: Option<Instant>,
    delivery: Vec<Duration>,
    gaps: Vec<Duration>,
}

impl TokenLog {
    fn add(&mut self, content: &str, at: Instant) -> Result<(), String> {
        self.text.push_str(content);
        for t in tokens_in(content) {
            let (k, us) = t.ok_or_else(|| format!("not a scripted token: {content:?}"))?;
            if k != self.next {
                return Err(format!("token {k} where {} was due", self.next));
            }
            self.next += 1;
            self.delivery.push(at.saturating_duration_since(provider::at_micros(us)));
            if let Some(prev) = self.last {
                self.gaps.push(at - prev);
            }
            self.first.get_or_insert(at);
            self.last = Some(at);
        }
        Ok(())
    }
}

/// A stream straight from the scripted provider.
async fn direct_stream(addr: SocketAddr, tokens: usize, gap: Duration) -> Result<StreamSample, String> {
    let body = json!({"model": CHAT_MODEL, "stream": true,
                      "messages": [{"role": "user", "content": provider::script(tokens, gap)}]})
    .to_string();
    let req = request("POST", addr, "/v1/chat/completions", None, Some(&body));
    let t0 = Instant::now();
    let (status, mut sse) = Sse::open(addr, &req).await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("provider answered {status}"));
    }
    let mut log = TokenLog::default();
    let mut done = false;
    while let Some(ev) = sse.next().await.map_err(|e| e.to_string())? {
        if ev.data == "[DONE]" {
            done = true;
            break;
        }
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| e.to_string())?;
        if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
            log.add(c, ev.at)?;
        }
    }
    finish_sample(log, t0, tokens, done)
}

fn finish_sample(log: TokenLog, t0: Instant, tokens: usize, done: bool) -> Result<StreamSample, String> {
    if !done || log.next != tokens {
        return Err(format!("{} of {tokens} tokens, end seen: {done}", log.next));
    }
    Ok(StreamSample { ttft: log.first.unwrap() - t0, delivery: log.delivery, gaps: log.gaps })
}

/// A streamed completion through copilot (`POST …/completions`, `stream: true`): `user_message`,
/// the deltas, and `done` with the stored message, whose content must be the deltas' text.
async fn copilot_stream(
    addr: SocketAddr,
    req: &[u8],
    tokens: usize,
) -> Result<(StreamSample, String, Option<String>), String> {
    let t0 = Instant::now();
    let (status, mut sse) = Sse::open(addr, req).await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("completion answered {status}"));
    }
    let mut log = TokenLog::default();
    let (mut done, mut job) = (false, None);
    while let Some(ev) = sse.next().await.map_err(|e| e.to_string())? {
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| format!("{e}: {}", ev.data))?;
        match ev.event.as_str() {
            "user_message" => job = v["job_id"].as_str().map(str::to_string),
            "delta" => log.add(v["content"].as_str().unwrap_or(""), ev.at)?,
            "done" => {
                if v["message"]["content"].as_str() != Some(log.text.as_str()) {
                    return Err("the stored reply is not the text streamed".into());
                }
                done = true;
                break;
            }
            "citations" => {}
            other => return Err(format!("event {other}: {}", ev.data)),
        }
    }
    let text = log.text.clone();
    finish_sample(log, t0, tokens, done).map(|s| (s, text, job))
}

#[derive(Clone)]
pub struct RelayFigures {
    streams: u64,
    errors: u64,
    tokens: u64,
    ttft: Histogram<u64>,
    delivery: Histogram<u64>,
    gap: Histogram<u64>,
    cpu_us_per_token: Option<f64>,
}

/// `n` clients stream back to back for `duration` (each one's first stream is a warm-up), through
/// copilot (`Some((server, token, agent))`) or straight from the provider.
async fn relay_round(
    provider: SocketAddr,
    copilot: Option<(&Server, &str, &str)>,
    n: usize,
    tokens: usize,
    gap: Duration,
    duration: Duration,
) -> RelayFigures {
    let until = Instant::now() + duration;
    let cpu_before = copilot.and_then(|c| c.0.cpu());
    let mut tasks = vec![];
    for _ in 0..n {
        let target = copilot.map(|(s, t, a)| (s.addr, t.to_string(), conversation_req(s.addr, t, a)));
        tasks.push(tokio::spawn(async move {
            let mut out: Vec<Result<StreamSample, String>> = vec![];
            let mut warm_tokens = 0u64;
            let mut conn = None;
            let mut warm = true;
            loop {
                if !warm && Instant::now() >= until {
                    break;
                }
                let r = match &target {
                    None => direct_stream(provider, tokens, gap).await,
                    Some((addr, token, conv_req)) => {
                        // a fresh conversation per stream (untimed), so every prompt is the same
                        if conn.is_none() {
                            conn = Conn::connect(*addr).await.ok();
                        }
                        match conn.as_mut() {
                            None => Err("connect".to_string()),
                            Some(c) => match new_conversation(c, conv_req).await {
                                Err(e) => {
                                    conn = None;
                                    Err(e)
                                }
                                Ok(conv) => {
                                    copilot_stream(*addr, &completion_req(*addr, token, &conv, tokens, gap), tokens)
                                        .await
                                        .map(|(s, _, _)| s)
                                }
                            },
                        }
                    }
                };
                if warm {
                    warm_tokens += r.as_ref().map_or(0, |s| s.delivery.len() as u64);
                } else {
                    out.push(r);
                }
                warm = false;
            }
            (out, warm_tokens)
        }));
    }
    let mut f = RelayFigures {
        streams: 0,
        errors: 0,
        tokens: 0,
        ttft: hist(),
        delivery: hist(),
        gap: hist(),
        cpu_us_per_token: None,
    };
    let mut first_error = None;
    let mut all_tokens = 0;
    for t in tasks {
        let (runs, warm_tokens) = t.await.unwrap();
        all_tokens += warm_tokens;
        for r in runs {
            match r {
                Ok(s) => {
                    f.streams += 1;
                    f.tokens += s.delivery.len() as u64;
                    f.ttft.saturating_record(s.ttft.as_micros() as u64);
                    for d in s.delivery {
                        f.delivery.saturating_record(d.as_micros() as u64);
                    }
                    for g in s.gaps {
                        f.gap.saturating_record(g.as_micros() as u64);
                    }
                }
                Err(e) => {
                    f.errors += 1;
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("  (relay: first error: {e})");
    }
    // the CPU of the whole round (warm-up streams and the conversations made for each stream
    // included) over every token relayed in it
    all_tokens += f.tokens;
    if let (Some(b), Some(a)) = (cpu_before, copilot.and_then(|c| c.0.cpu()))
        && all_tokens > 0
    {
        f.cpu_us_per_token = Some((a - b).as_secs_f64() * 1e6 / all_tokens as f64);
    }
    f
}

const RELAY_TOKENS: usize = 200;
const RELAY_GAP: Duration = Duration::from_millis(5);

fn relay_line(n: usize, path: &str, f: &RelayFigures) {
    println!(
        "{n:>7} {path:<9} {:>7} {:>6} | {:>9.2} {:>9.2} | {:>8.2} {:>8.2} | {:>8.3} {:>8.3} | {:>8}",
        f.streams,
        f.errors,
        ms(&f.ttft, 0.5),
        ms(&f.ttft, 0.99),
        ms(&f.gap, 0.5),
        ms(&f.gap, 0.99),
        ms(&f.delivery, 0.5),
        ms(&f.delivery, 0.99),
        f.cpu_us_per_token.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into())
    );
}

/// Added latency through copilot: first token p50 and p99, per token p50 and p99 (ms).
fn added(direct: &RelayFigures, via: &RelayFigures) -> [f64; 4] {
    [
        ms(&via.ttft, 0.5) - ms(&direct.ttft, 0.5),
        ms(&via.ttft, 0.99) - ms(&direct.ttft, 0.99),
        ms(&via.delivery, 0.5) - ms(&direct.delivery, 0.5),
        ms(&via.delivery, 0.99) - ms(&direct.delivery, 0.99),
    ]
}

/// The relay scenario: for 1 and 32 concurrent streams, the provider alone then through
/// copilot, `opts.repeat` times interleaved. Returns per concurrency the runs' added latencies.
pub fn relay(opts: &Opts, tmp: &Path, bench_hash: &str, provider: &ScriptedProvider) -> Vec<(usize, Vec<[f64; 4]>)> {
    let (server, _db, token) = fresh_copilot(tmp, "relay", bench_hash, provider, &[], |_| {});
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let agent_id = rt.block_on(agent(server.addr, &token));
    println!();
    println!(
        "streamed completion relay (copilot alone: the ceiling has no equivalent): {RELAY_TOKENS} tokens {} ms apart \
         from the scripted provider, N clients streaming back to back for {:.1} s; \"provider\" reads the provider \
         itself, \"copilot\" reads POST …/completions (stream: true) relaying it; delivery: provider's write → \
         client's read; copilot pid {}",
        RELAY_GAP.as_millis(),
        opts.duration.as_secs_f64(),
        server.pid()
    );
    println!(
        "{:>7} {:<9} {:>7} {:>6} | {:>9} {:>9} | {:>8} {:>8} | {:>8} {:>8} | {:>8}",
        "streams", "path", "n", "errors", "1st p50", "1st p99", "gap p50", "gap p99", "dlv p50", "dlv p99", "cpu µs/t"
    );
    let mut out = vec![];
    for n in [1usize, 32] {
        let mut runs = vec![];
        for _ in 0..opts.repeat {
            let direct = rt.block_on(relay_round(provider.addr, None, n, RELAY_TOKENS, RELAY_GAP, opts.duration));
            relay_line(n, "provider", &direct);
            let via = rt.block_on(relay_round(
                provider.addr,
                Some((&server, &token, &agent_id)),
                n,
                RELAY_TOKENS,
                RELAY_GAP,
                opts.duration,
            ));
            relay_line(n, "copilot", &via);
            let a = added(&direct, &via);
            println!(
                "{n:>7} added     first token {:+.2} ms p50, {:+.2} ms p99; per token {:+.3} ms p50, {:+.3} ms p99 \
                 (copilot's percentile minus the provider's)",
                a[0], a[1], a[2], a[3]
            );
            runs.push(a);
        }
        out.push((n, runs));
    }
    println!("  copilot  {}", memory(server.pid()));
    server.stop();
    out
}

// ------------------------------------------------------------------------------------ followers

pub struct FollowerFigures {
    followers: usize,
    complete: usize,
    errors: usize,
    attached_live: usize,
    events: u64,
    rss_before_kib: u64,
    rss_peak_kib: u64,
    hwm_kib: u64,
    cpu_us_per_event: Option<f64>,
    attach_secs: f64,
}

/// Starts a job per conversation (`stream: true`) and keeps reading its stream to the end in a
/// task; returns (job id, task giving the end's instant and the streamed text).
async fn start_jobs(
    server: &Server,
    token: &str,
    conversations: &[String],
    tokens: usize,
    gap: Duration,
) -> Vec<(String, tokio::task::JoinHandle<Result<(Instant, String), String>>)> {
    let mut jobs = vec![];
    for conv in conversations {
        let req = completion_req(server.addr, token, conv, tokens, gap);
        let (status, mut sse) = Sse::open(server.addr, &req).await.expect("start a job");
        assert_eq!(status, 200, "start a job");
        let first = sse.next().await.expect("first event").expect("first event");
        assert_eq!(first.event, "user_message");
        let v: Value = serde_json::from_str(&first.data).unwrap();
        let job = v["job_id"].as_str().expect("job_id").to_string();
        let task = tokio::spawn(async move {
            let mut text = String::new();
            while let Some(ev) = sse.next().await.map_err(|e| e.to_string())? {
                let v: Value = serde_json::from_str(&ev.data).map_err(|e| e.to_string())?;
                match ev.event.as_str() {
                    "delta" => text.push_str(v["content"].as_str().unwrap_or("")),
                    "done" => return Ok((ev.at, text)),
                    "citations" => {}
                    other => return Err(format!("job ended with {other}: {}", ev.data)),
                }
            }
            Err("the stream ended without `done`".into())
        });
        jobs.push((job, task));
    }
    jobs
}

/// What one follower saw.
struct Followed {
    events: u64,
    first_at: Option<Instant>,
    text: String,
    done: bool,
}

/// `GET …/completions/{job}` with `Last-Event-ID: 1` (after `user_message`): the events must
/// come with consecutive ids from 2 to the last, `done`'s message holding the deltas' text.
async fn follow(addr: SocketAddr, token: &str, conversation: &str, job: &str) -> Result<Followed, String> {
    let req = format!(
        "GET /api/v1/conversations/{conversation}/completions/{job} HTTP/1.1\r\nHost: {addr}\r\n\
         Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\nLast-Event-ID: 1\r\n\r\n"
    );
    let (status, mut sse) = Sse::open(addr, req.as_bytes()).await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("follow answered {status}"));
    }
    let mut f = Followed { events: 0, first_at: None, text: String::new(), done: false };
    let mut next_id = 2;
    while let Some(ev) = sse.next().await.map_err(|e| e.to_string())? {
        f.first_at.get_or_insert(ev.at);
        if ev.id != Some(next_id) {
            return Err(format!("event id {:?} where {next_id} was due", ev.id));
        }
        next_id += 1;
        f.events += 1;
        let v: Value = serde_json::from_str(&ev.data).map_err(|e| e.to_string())?;
        match ev.event.as_str() {
            "delta" => f.text.push_str(v["content"].as_str().unwrap_or("")),
            "done" => {
                if v["message"]["content"].as_str() != Some(f.text.as_str()) {
                    return Err("done's message is not the deltas' text".into());
                }
                f.done = true;
                break;
            }
            "citations" => {}
            other => return Err(format!("event {other}")),
        }
    }
    Ok(f)
}

/// This process holds a socket per follower: a soft limit of 1,024 open files would not do.
fn raise_open_file_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// The followers scenario: `jobs` slow jobs (200 tokens, `duration / 200` apart), first with
/// only their starting streams (the baseline CPU), then again with `followers` more connections
/// following them, spread evenly.
pub fn followers(opts: &Opts, tmp: &Path, bench_hash: &str, provider: &ScriptedProvider) -> Vec<FollowerFigures> {
    const JOBS: usize = 20;
    const TOKENS: usize = 200;
    let gap = (opts.duration / TOKENS as u32).max(Duration::from_millis(10));
    raise_open_file_limit();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!();
    println!(
        "{} SSE followers of {JOBS} running jobs (copilot alone: the ceiling has no equivalent): {TOKENS} tokens {} ms \
         apart per job, each follower GETs …/completions/{{job}} with Last-Event-ID: 1 and reads to `done`; CPU per \
         delivered event = (CPU with followers - CPU of the same jobs without) / events the followers got; a fresh \
         server per run",
        opts.followers,
        gap.as_millis(),
    );
    println!(
        "{:>9} {:>9} {:>6} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9}",
        "followers",
        "complete",
        "errors",
        "attached",
        "events",
        "RSS before",
        "RSS peak",
        "VmHWM",
        "cpu µs/ev",
        "attach s"
    );
    let mut out = vec![];
    for run in 0..opts.repeat {
        // a fresh server each run: finished jobs stay in memory for two minutes, and freed memory
        // is not always given back, so a second run on the same server would start higher
        let (server, _db, token) = fresh_copilot(tmp, &format!("followers-{run}"), bench_hash, provider, &[], |_| {});
        let agent_id = rt.block_on(agent(server.addr, &token));
        eprintln!("  (followers run {}: copilot pid {})", run + 1, server.pid());
        let f = rt.block_on(async {
            let conv_req = conversation_req(server.addr, &token, &agent_id);
            let mut conn = Conn::connect(server.addr).await.unwrap();
            let mut conversations = vec![];
            for _ in 0..2 * JOBS {
                conversations.push(new_conversation(&mut conn, &conv_req).await.unwrap());
            }
            // baseline: the jobs and their starting streams only
            let cpu0 = server.cpu();
            let jobs = start_jobs(&server, &token, &conversations[..JOBS], TOKENS, gap).await;
            for (_, t) in jobs {
                t.await.unwrap().expect("baseline job");
            }
            let baseline = server.cpu().zip(cpu0).map(|(a, b)| a - b);

            // the same again, with the followers
            let rss_before = vm_kib(server.pid(), "VmRSS:");
            let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
            let sampler = {
                let (pid, on) = (server.pid(), sampling.clone());
                tokio::spawn(async move {
                    let mut peak = 0;
                    while on.load(Ordering::Relaxed) {
                        peak = peak.max(vm_kib(pid, "VmRSS:"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    peak
                })
            };
            let cpu1 = server.cpu();
            let began = Instant::now();
            let jobs = start_jobs(&server, &token, &conversations[JOBS..], TOKENS, gap).await;
            let mut tasks = vec![];
            for i in 0..opts.followers {
                let j = i % JOBS;
                let (addr, token, conv, job) =
                    (server.addr, token.clone(), conversations[JOBS + j].clone(), jobs[j].0.clone());
                tasks.push((j, tokio::spawn(async move { follow(addr, &token, &conv, &job).await })));
            }
            let mut ends = vec![];
            for (_, t) in jobs {
                ends.push(t.await.unwrap().expect("job with followers"));
            }
            let mut f = FollowerFigures {
                followers: opts.followers,
                complete: 0,
                errors: 0,
                attached_live: 0,
                events: 0,
                rss_before_kib: rss_before,
                rss_peak_kib: 0,
                hwm_kib: 0,
                cpu_us_per_event: None,
                attach_secs: 0.0,
            };
            let mut last_attach = began;
            let mut first_error = None;
            for (j, t) in tasks {
                match t.await.unwrap() {
                    Ok(r) => {
                        f.events += r.events;
                        // every event after the user message, and the same text as the job's own stream
                        if r.done && r.events == TOKENS as u64 + 1 && r.text == ends[j].1 {
                            f.complete += 1;
                        } else {
                            f.errors += 1;
                            first_error.get_or_insert(format!("{} events, done {}", r.events, r.done));
                        }
                        if let Some(at) = r.first_at {
                            last_attach = last_attach.max(at);
                            f.attached_live += usize::from(at < ends[j].0);
                        }
                    }
                    Err(e) => {
                        f.errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = first_error {
                eprintln!("  (followers: first error: {e})");
            }
            let with = server.cpu().zip(cpu1).map(|(a, b)| a - b);
            sampling.store(false, Ordering::Relaxed);
            f.rss_peak_kib = sampler.await.unwrap();
            f.hwm_kib = vm_kib(server.pid(), "VmHWM:");
            f.attach_secs = (last_attach - began).as_secs_f64();
            if let (Some(w), Some(b)) = (with, baseline)
                && f.events > 0
            {
                f.cpu_us_per_event = Some(w.saturating_sub(b).as_secs_f64() * 1e6 / f.events as f64);
            }
            f
        });
        println!(
            "{:>9} {:>9} {:>6} {:>9} {:>10} {:>6.1} MiB {:>6.1} MiB {:>6.1} MiB {:>10} {:>9.2}",
            f.followers,
            f.complete,
            f.errors,
            f.attached_live,
            f.events,
            f.rss_before_kib as f64 / 1024.0,
            f.rss_peak_kib as f64 / 1024.0,
            f.hwm_kib as f64 / 1024.0,
            f.cpu_us_per_event.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into()),
            f.attach_secs
        );
        println!("  copilot  {}", memory(server.pid()));
        server.stop();
        out.push(f);
    }
    println!(
        "  (complete: every event after Last-Event-ID, ids consecutive, `done` holding the deltas' text, the same text \
         as the job's own stream; attached: first event read before the job's `done`; attach s: last follower's first \
         event after the jobs started)"
    );
    out
}

// ------------------------------------------------------------------------------------ knowledge

/// `chunks` passages of about 1,200 characters in documents of 1,000 (`ready`, as the worker
/// leaves them), written straight into the file while the server is stopped (the FTS index by
/// the schema's triggers); with `vectors`, a 384-dimension vector each in the vector space of
/// the scripted embedding model, as ingestion would have made it. Returns 300 queries.
fn seed_chunks(db: &Path, chunks: usize, vectors: bool) -> Vec<String> {
    let started = Instant::now();
    copilot::db::register_sqlite_vec().expect("sqlite-vec");
    let mut rng = StdRng::seed_from_u64(12);
    let vocab = vocabulary(&mut rng);
    let mut c = open(db);
    let (org, admin): (String, String) = c
        .query_row("SELECT organization_id, id FROM users WHERE username = 'bench'", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap();
    let tx = c.transaction().unwrap();
    let table = "chunk_vec_1";
    if vectors {
        tx.execute(
            "INSERT INTO embedding_spaces (id, model, dims, table_name, created_at) VALUES (1, ?1, ?2, ?3, ?4)",
            params![EMBED_MODEL, provider::DIMS as i64, table, super::ts(0)],
        )
        .unwrap();
        tx.execute_batch(&format!(
            "CREATE VIRTUAL TABLE {table} USING vec0(chunk_id INTEGER PRIMARY KEY, organization_id TEXT PARTITION KEY, \
             document_id TEXT, project_id TEXT, embedding float[{}] distance_metric=cosine)",
            provider::DIMS
        ))
        .unwrap();
    }
    let mut done = 0;
    let mut d = 0;
    while done < chunks {
        let batch = (chunks - done).min(1000);
        let doc = id();
        tx.execute(
            "INSERT INTO documents (id, organization_id, title, filename, content_type, size_bytes, sha256, status, \
             chunk_count, created_by, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, 'text/plain', 0, ?1, 'ready', \
             ?5, ?6, ?7, ?7)",
            params![
                doc,
                org,
                format!("bench document {d}"),
                format!("bench-{d}.txt"),
                batch as i64,
                admin,
                super::ts(d)
            ],
        )
        .unwrap();
        for i in 0..batch {
            let mut text = String::new();
            while text.len() < 1200 {
                let n = rng.random_range(8..20);
                for _ in 0..n {
                    text.push_str(word(&vocab, &mut rng));
                    text.push(' ');
                }
                text.push_str(". ");
            }
            tx.prepare_cached(
                "INSERT INTO chunks (public_id, document_id, organization_id, ordinal, heading, text, token_count) \
                 VALUES (?1, ?2, ?3, ?4, '', ?5, 300)",
            )
            .unwrap()
            .execute(params![id(), doc, org, i as i64, text])
            .unwrap();
            if vectors {
                let rowid = tx.last_insert_rowid();
                let blob: Vec<u8> = provider::random_unit(&mut rng).iter().flat_map(|f| f.to_le_bytes()).collect();
                tx.prepare_cached(&format!(
                    "INSERT INTO {table} (chunk_id, organization_id, document_id, project_id, embedding) \
                     VALUES (?1, ?2, ?3, '', ?4)"
                ))
                .unwrap()
                .execute(params![rowid, org, doc, blob])
                .unwrap();
            }
        }
        done += batch;
        d += 1;
    }
    tx.commit().unwrap();
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
    drop(c);
    std::fs::File::open(db).and_then(|f| f.sync_all()).unwrap();
    eprintln!(
        "  (seeded {chunks} chunks{} in {:.1} s)",
        if vectors { " with vectors" } else { "" },
        started.elapsed().as_secs_f64()
    );
    (0..300)
        .map(|_| (0..rng.random_range(3..7)).map(|_| word(&vocab, &mut rng)).collect::<Vec<_>>().join(" "))
        .collect()
}

fn search_reqs(addr: SocketAddr, token: &str, queries: &[String]) -> Arc<Vec<Arc<Vec<u8>>>> {
    Arc::new(
        queries
            .iter()
            .map(|q| {
                request(
                    "GET",
                    addr,
                    &format!("/api/v1/knowledge/search?q={}&limit=10", q.replace(' ', "+")),
                    Some(token),
                    None,
                )
            })
            .collect(),
    )
}

/// One timed load of the queries (each connection its own rotation), with CPU per request.
async fn measure_each(server: &Server, reqs: Arc<Vec<Arc<Vec<u8>>>>, opts: &Opts) -> LoadResult {
    load_each(server.addr, reqs.clone(), 200, opts.connections, Duration::ZERO, opts.warmup).await;
    let before = server.cpu();
    let mut r = load_each(server.addr, reqs, 200, opts.connections, Duration::ZERO, opts.duration).await;
    if let (Some(b), Some(a)) = (before, server.cpu())
        && r.requests > 0
    {
        r.cpu_us = Some((a - b).as_secs_f64() * 1e6 / r.requests as f64);
    }
    r
}

/// The knowledge search scenarios: full text (`knowledge_search`), then, on a restart with
/// `[knowledge] embedding_model` set, hybrid (`knowledge_hybrid`). Returns each one's runs.
pub fn knowledge(
    opts: &Opts,
    tmp: &Path,
    bench_hash: &str,
    provider: &ScriptedProvider,
) -> Vec<(&'static str, Vec<LoadResult>)> {
    let (full, hybrid) = (opts.wants("knowledge_search"), opts.wants("knowledge_hybrid"));
    let mut queries = vec![];
    let (server, db, token) = fresh_copilot(tmp, "knowledge", bench_hash, provider, &[], |db| {
        queries = seed_chunks(db, opts.knowledge_chunks, hybrid);
    });
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!();
    println!(
        "GET /knowledge/search over {} chunks of ~1,200 characters (copilot alone: the ceiling has no equivalent), \
         {} connections, {} queries of 3-6 words in rotation, limit 10; hybrid: the query embedded by the scripted \
         provider (in this process), BM25 and KNN over {}-dimension vectors fused; copilot pid {}",
        opts.knowledge_chunks,
        opts.connections,
        queries.len(),
        provider::DIMS,
        server.pid()
    );
    println!("{:<20} {:>10} {:>9} {:>9} {:>7} {:>8}", "scenario", "copilot/s", "p50 ms", "p99 ms", "errors", "cpu µs");
    let check = |server: &Server, token: &str, name: &str| {
        let reqs = search_reqs(server.addr, token, &queries);
        let (status, v) = rt.block_on(call(server.addr, &reqs[0]));
        let data = v["data"].as_array().cloned().unwrap_or_default();
        assert!(
            status == 200
                && !data.is_empty()
                && data.len() <= 10
                && data.iter().all(|p| p["chunk_id"].is_string() && p["text"].is_string() && p["score"].is_number()),
            "{name}: unexpected answer {status}: {}",
            v.to_string().chars().take(400).collect::<String>()
        );
        reqs
    };
    let mut out = vec![];
    let mut server = Some(server);
    if full {
        let s = server.as_ref().unwrap();
        let reqs = check(s, &token, "knowledge_search");
        let mut runs = vec![];
        for _ in 0..opts.repeat {
            let r = rt.block_on(measure_each(s, reqs.clone(), opts));
            super::print_row("knowledge_search", std::slice::from_ref(&r));
            runs.push(r);
        }
        out.push(("knowledge_search", runs));
    }
    if full {
        let s = server.as_ref().unwrap();
        println!("  copilot  full text: {}", memory(s.pid()));
    }
    if hybrid {
        server.take().unwrap().stop();
        let envs = [
            (
                "COPILOT_LLM__PROVIDERS",
                format!(
                    "[{{name = \"scripted\", base_url = \"{}\", models = [\"{CHAT_MODEL}\", \"{EMBED_MODEL}\"]}}]",
                    provider.base_url()
                ),
            ),
            ("COPILOT_KNOWLEDGE__EMBEDDING_MODEL", EMBED_MODEL.to_string()),
        ];
        let s = start_copilot_with(tmp_dir_of(&db), &db, &envs);
        let token = rt.block_on(login(s.addr));
        let reqs = check(&s, &token, "knowledge_hybrid");
        let mut runs = vec![];
        for _ in 0..opts.repeat {
            let before = provider.counts.embeddings.load(Ordering::Relaxed);
            let r = rt.block_on(measure_each(&s, reqs.clone(), opts));
            let embedded = provider.counts.embeddings.load(Ordering::Relaxed) - before;
            super::print_row("knowledge_hybrid", std::slice::from_ref(&r));
            // every search asked the provider for the query's vector (warm-up included)
            assert!(embedded >= r.requests, "hybrid: {embedded} embeddings for {} searches", r.requests);
            runs.push(r);
        }
        out.push(("knowledge_hybrid", runs));
        println!("  copilot  hybrid: {}", memory(s.pid()));
        s.stop();
    } else if let Some(s) = server {
        s.stop();
    }
    out
}

// ------------------------------------------------------------------------------------ summary

/// Everything the copilot-alone scenarios measured, for the summary of `--repeat`.
#[derive(Default)]
pub struct Alone {
    pub relay: Vec<(usize, Vec<[f64; 4]>)>,
    pub followers: Vec<FollowerFigures>,
    pub knowledge: Vec<(&'static str, Vec<LoadResult>)>,
}

impl Alone {
    pub fn is_empty(&self) -> bool {
        self.relay.is_empty() && self.followers.is_empty() && self.knowledge.is_empty()
    }

    /// Medians (and min..max) of the runs, copilot alone.
    pub fn print_summary(&self) {
        // one run: its figures; more: the median and (min..max)
        let f = |(m, lo, hi): (f64, f64, f64), d: usize| {
            if lo == hi { format!("{m:.d$}") } else { format!("{m:.d$} ({lo:.d$}..{hi:.d$})") }
        };
        let signed = |(m, lo, hi): (f64, f64, f64), d: usize| {
            if lo == hi { format!("{m:+.d$}") } else { format!("{m:+.d$} ({lo:+.d$}..{hi:+.d$})") }
        };
        println!();
        println!("copilot alone (no ceiling equivalent): medians (min..max) of the runs, or the one run's figures");
        for (n, runs) in &self.relay {
            let col = |i: usize| median_spread(runs.iter().map(|a| a[i]).collect());
            println!(
                "  relay, {n:>2} streams: added first token p50 {} p99 {} ms; added per token p50 {} p99 {} ms",
                signed(col(0), 2),
                signed(col(1), 2),
                signed(col(2), 3),
                signed(col(3), 3)
            );
        }
        if !self.followers.is_empty() {
            let v = &self.followers;
            let errors: usize = v.iter().map(|x| x.errors).sum();
            let cpu: Vec<f64> = v.iter().filter_map(|x| x.cpu_us_per_event).collect();
            println!(
                "  followers, {}: cpu µs/event {}; RSS peak {} MiB (before {} MiB); errors {errors} in all runs",
                v[0].followers,
                if cpu.is_empty() { "-".into() } else { f(median_spread(cpu), 1) },
                f(median_spread(v.iter().map(|x| x.rss_peak_kib as f64 / 1024.0).collect()), 1),
                f(median_spread(v.iter().map(|x| x.rss_before_kib as f64 / 1024.0).collect()), 1),
            );
        }
        for (name, runs) in &self.knowledge {
            let cpu: Vec<f64> = runs.iter().filter_map(|r| r.cpu_us).collect();
            println!(
                "  {name}: req/s {}; p50 {} ms; p99 {} ms; cpu µs/request {}",
                f(median_spread(runs.iter().map(LoadResult::rps).collect()), 0),
                f(median_spread(runs.iter().map(|r| r.ms(0.5)).collect()), 2),
                f(median_spread(runs.iter().map(|r| r.ms(0.99)).collect()), 2),
                if cpu.is_empty() { "-".into() } else { f(median_spread(cpu), 0) }
            );
        }
    }
}

/// Runs the copilot-alone scenarios that `opts` selects: `relay` and `followers` by default,
/// the knowledge ones with `--knowledge` or when `--only` names them.
pub fn run(opts: &Opts, tmp: &Path, bench_hash: &str) -> Alone {
    let mut alone = Alone::default();
    let wanted = |n: &str| opts.wants(n);
    // opt-in: seeding 100,000 chunks takes a while
    let with_knowledge =
        (opts.knowledge && opts.only.is_empty()) || opts.only.iter().any(|o| o.starts_with("knowledge_"));
    if !(wanted("relay") || wanted("followers") || with_knowledge) {
        return alone;
    }
    let provider = ScriptedProvider::spawn();
    if wanted("relay") {
        alone.relay = relay(opts, tmp, bench_hash, &provider);
    }
    if wanted("followers") {
        alone.followers = followers(opts, tmp, bench_hash, &provider);
    }
    if with_knowledge {
        alone.knowledge = knowledge(opts, tmp, bench_hash, &provider);
    }
    alone
}
