//! A scripted OpenAI-compatible chat-completions server on loopback: streamed `data:` chunks,
//! delays, HTTP errors, malformed and cut-off streams. It records what it was sent.
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use poem::{
    Body, Request, Response, Route,
    listener::{Acceptor, Listener, TcpListener},
};
use serde_json::{Value, json};

pub const MODEL: &str = "mock-model";

/// What the provider does with the next request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Streams the pieces (one chunk each, `delay` apart), then `finish_reason: stop`, the usage
    /// and `[DONE]`.
    Stream { pieces: Vec<&'static str>, delay: Duration, usage: Option<(i64, i64)> },
    /// Streams these raw `data:` payloads, `delay` apart, and closes.
    Raw { data: Vec<String>, delay: Duration },
    /// Answers with this status and body.
    Status(u16, String),
    /// Waits before answering with the default reply.
    Hang(Duration),
    /// Streams these payloads at once, then stays silent for a while before the end.
    Stall { data: Vec<String>, pause: Duration },
    /// A non-streamed JSON completion.
    Json(Value),
}

#[derive(Debug, Clone)]
pub struct Seen {
    pub auth: Option<String>,
    pub body: Value,
}

#[derive(Clone, Default)]
pub struct Mock {
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Mock {
    pub fn then(&self, r: Reply) {
        self.script.lock().unwrap().push_back(r);
    }
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

pub fn chunk(content: &str, finish: Option<&str>) -> String {
    json!({"id": "c1", "object": "chat.completion.chunk", "model": MODEL,
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]})
    .to_string()
}

pub fn sse_body(data: Vec<String>, delay: Duration) -> Response {
    timed_sse_body(data.into_iter().map(|d| (delay, d)).collect())
}

/// Each payload after its pause.
pub fn timed_sse_body(data: Vec<(Duration, String)>) -> Response {
    let stream = futures_util::stream::unfold(data.into_iter(), move |mut it| async move {
        let (delay, next) = it.next()?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Some((Ok::<_, std::io::Error>(format!("data: {next}\n\n")), it))
    });
    Response::builder().content_type("text/event-stream").body(Body::from_bytes_stream(stream))
}

pub fn stream_reply(pieces: &[&str], delay: Duration, usage: Option<(i64, i64)>) -> Response {
    let mut data = vec![json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}).to_string()];
    data.extend(pieces.iter().map(|p| chunk(p, None)));
    data.push(chunk("", Some("stop")));
    if let Some((p, c)) = usage {
        data.push(json!({"choices": [], "usage": {"prompt_tokens": p, "completion_tokens": c}}).to_string());
    }
    data.push("[DONE]".into());
    sse_body(data, delay)
}

pub async fn answer(mock: Mock, req: Request) -> Response {
    let auth = req.headers().get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    let body: Value = req.into_body().into_json().await.unwrap_or(Value::Null);
    mock.seen.lock().unwrap().push(Seen { auth, body: body.clone() });
    let next = mock.script.lock().unwrap().pop_front();
    match next {
        Some(Reply::Stream { pieces, delay, usage }) => stream_reply(&pieces, delay, usage),
        Some(Reply::Raw { data, delay }) => sse_body(data, delay),
        Some(Reply::Stall { data, pause }) => {
            let mut timed: Vec<_> = data.into_iter().map(|d| (Duration::ZERO, d)).collect();
            timed.push((pause, chunk("late", Some("stop"))));
            timed.push((Duration::ZERO, "[DONE]".into()));
            timed_sse_body(timed)
        }
        Some(Reply::Status(status, text)) => Response::builder()
            .status(poem::http::StatusCode::from_u16(status).unwrap())
            .content_type("application/json")
            .body(text),
        Some(Reply::Json(v)) => Response::builder().content_type("application/json").body(v.to_string()),
        Some(Reply::Hang(d)) => {
            tokio::time::sleep(d).await;
            stream_reply(&["late"], Duration::ZERO, None)
        }
        None => stream_reply(&["Hello", " there"], Duration::ZERO, Some((11, 2))),
    }
}

/// Starts the scripted provider; returns it and its base URL.
pub async fn spawn_mock() -> (Mock, String) {
    let mock = Mock::default();
    let m = mock.clone();
    let app = Route::new().at(
        "/v1/chat/completions",
        poem::endpoint::make(move |req| {
            let m = m.clone();
            async move { answer(m, req).await }
        }),
    );
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    (mock, format!("http://{addr}/v1"))
}
