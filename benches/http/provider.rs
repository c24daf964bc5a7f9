//! A scripted OpenAI-compatible provider on loopback, inside the benchmark process, on a thread
//! and a single-threaded tokio runtime of its own (so that its timing does not wait for the load
//! generator's tasks).
//!
//! - `POST /v1/chat/completions`: an event stream (`stream: true` chunks, HTTP/1.1 chunked, one
//!   write per chunk, TCP_NODELAY). The last message's content says what to stream:
//!   `tokens=N gap_us=G` (defaults 20 and 5,000). The first chunk (`role`) goes at once, token k
//!   (0-based) at `(k + 1) · G` after the request arrived (an absolute schedule, so that timer
//!   lateness does not add up), then `finish_reason: stop`, the usage and `[DONE]`. Token k's text
//!   is ` t{k}@{µs}`: the microseconds since [`epoch`] at which it was written, so that a client
//!   in this process can tell how long each token took to reach it, whichever way it came.
//! - `POST /v1/embeddings`: one deterministic unit vector of [`DIMS`] numbers per input text.
//!
//! Keep-alive connections; anything else answers 404.

use std::{
    hash::{Hash, Hasher},
    net::SocketAddr,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rand::{Rng, SeedableRng, rngs::StdRng};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Dimensions of the scripted embeddings.
pub const DIMS: usize = 384;

/// The instant token time stamps count from (the same clock as the benchmark's clients).
pub fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// `epoch() + µs`.
pub fn at_micros(us: u64) -> Instant {
    epoch() + Duration::from_micros(us)
}

/// What the provider has been asked, for checks.
#[derive(Default)]
pub struct Counts {
    pub chat: AtomicU64,
    pub embeddings: AtomicU64,
}

pub struct ScriptedProvider {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
}

impl ScriptedProvider {
    /// The API root to configure, `/chat/completions` and `/embeddings` below it.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Starts it; it runs until the benchmark ends.
    pub fn spawn() -> ScriptedProvider {
        epoch();
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the scripted provider");
        std_listener.set_nonblocking(true).unwrap();
        let addr = std_listener.local_addr().unwrap();
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        std::thread::Builder::new()
            .name("scripted-provider".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                rt.block_on(async move {
                    let listener = TcpListener::from_std(std_listener).unwrap();
                    loop {
                        let Ok((stream, _)) = listener.accept().await else { continue };
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve(stream, c.clone()));
                    }
                });
            })
            .unwrap();
        ScriptedProvider { addr, counts }
    }
}

/// The numbers after `tokens=` and `gap_us=` in `text`.
pub fn script_of(text: &str) -> (usize, Duration) {
    let num = |key: &str| -> Option<u64> {
        let at = text.find(key)? + key.len();
        let digits: String = text[at..].chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    };
    (num("tokens=").unwrap_or(20) as usize, Duration::from_micros(num("gap_us=").unwrap_or(5000)))
}

/// The script's words for a chat request, e.g. `"tokens=200 gap_us=5000"`.
pub fn script(tokens: usize, gap: Duration) -> String {
    format!("tokens={tokens} gap_us={}", gap.as_micros())
}

async fn serve(mut stream: TcpStream, counts: Arc<Counts>) {
    let mut buf: Vec<u8> = Vec::with_capacity(8192);
    loop {
        // one request: head, then a Content-Length body
        let head_end = loop {
            if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            buf.reserve(8192);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
        let length = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < head_end + length {
            buf.reserve(8192);
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        let arrived = Instant::now();
        let body: Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
        buf.drain(..head_end + length);
        let ok = match path.as_str() {
            "/v1/chat/completions" => {
                counts.chat.fetch_add(1, Ordering::Relaxed);
                chat(&mut stream, &body, arrived).await
            }
            "/v1/embeddings" => {
                counts.embeddings.fetch_add(1, Ordering::Relaxed);
                embeddings(&mut stream, &body).await
            }
            _ => {
                let text = "{\"error\":{\"message\":\"not here\"}}";
                let r = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                    text.len()
                );
                stream.write_all(r.as_bytes()).await.is_ok()
            }
        };
        if !ok {
            return;
        }
    }
}

/// One HTTP/1.1 chunk holding one `data:` event.
fn frame(data: &str) -> Vec<u8> {
    let event = format!("data: {data}\n\n");
    let mut out = format!("{:x}\r\n", event.len()).into_bytes();
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn chunk(content: &str, finish: Option<&str>) -> String {
    json!({"id": "bench", "object": "chat.completion.chunk", "model": "bench",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
    .to_string()
}

async fn chat(stream: &mut TcpStream, body: &Value, arrived: Instant) -> bool {
    let last = body["messages"].as_array().and_then(|m| m.last()).and_then(|m| m["content"].as_str()).unwrap_or("");
    let (tokens, gap) = script_of(last);
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n\
                transfer-encoding: chunked\r\n\r\n";
    let mut first = head.as_bytes().to_vec();
    first.extend(frame(&json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).to_string()));
    if stream.write_all(&first).await.is_err() {
        return false;
    }
    for k in 0..tokens {
        tokio::time::sleep_until((arrived + gap * (k as u32 + 1)).into()).await;
        let us = epoch().elapsed().as_micros() as u64;
        if stream.write_all(&frame(&chunk(&format!(" t{k}@{us}"), None))).await.is_err() {
            return false;
        }
    }
    let mut end = frame(&chunk("", Some("stop")));
    end.extend(frame(&json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": tokens}}).to_string()));
    end.extend(frame("[DONE]"));
    end.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&end).await.is_ok()
}

/// A unit vector that depends on the text only.
pub fn vector_of(text: &str) -> Vec<f32> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut h);
    random_unit(&mut StdRng::seed_from_u64(h.finish()))
}

pub fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

async fn embeddings(stream: &mut TcpStream, body: &Value) -> bool {
    let inputs: Vec<String> = match &body["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or("").to_string()).collect(),
        _ => vec![],
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector_of(t)}))
        .collect();
    let text = json!({"object": "list", "data": data, "model": body["model"],
                      "usage": {"prompt_tokens": 1, "total_tokens": 1}})
    .to_string();
    let r =
        format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}", text.len());
    stream.write_all(r.as_bytes()).await.is_ok()
}
