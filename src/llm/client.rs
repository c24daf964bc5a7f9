//! One OpenAI-compatible `POST {base_url}/chat/completions`, streamed. Text is handed out as it
//! arrives; every way the call can go wrong becomes a [`Failure`] that never contains the key.

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{Provider, context::ChatMessage};

/// What is asked of the model.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub temperature: f64,
    pub max_tokens: i64,
}

/// How a finished answer ended, with the usage the provider reported (if any).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Completion {
    pub finish_reason: Option<String>,
    pub prompt_tokens: Option<i64>,
    pub completion_tokens: Option<i64>,
}

/// Why an answer did not finish.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("the provider did not answer within {0} seconds")]
    Timeout(u64),
    #[error("the provider answered HTTP {status}: {detail}")]
    Http { status: u16, detail: String },
    #[error("cannot reach the provider: {0}")]
    Transport(String),
    #[error("the provider sent a malformed chunk: {0}")]
    Malformed(String),
    #[error("the provider's stream ended before the answer was complete")]
    Truncated,
    #[error("the provider reported an error: {0}")]
    Provider(String),
}

impl Failure {
    /// A short machine-readable class, stored in message metadata.
    pub fn kind(&self) -> super::FailureKind {
        use super::FailureKind as K;
        match self {
            Failure::Timeout(_) => K::Timeout,
            Failure::Http { .. } => K::HttpError,
            Failure::Transport(_) => K::Transport,
            Failure::Malformed(_) => K::Malformed,
            Failure::Truncated => K::Truncated,
            Failure::Provider(_) => K::ProviderError,
        }
    }
}

const DETAIL_MAX: usize = 300;
/// Most of an error body that is read.
const ERROR_BODY_MAX: usize = 64 * 1024;
/// Longest stream line accepted.
const LINE_MAX: usize = 4 * 1024 * 1024;

/// Up to `max` bytes of the body, as text; a broken body ends the text early.
async fn read_limited(mut resp: reqwest::Response, max: usize) -> String {
    let mut bytes = vec![];
    while bytes.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(max);
    String::from_utf8_lossy(&bytes).into_owned()
}

fn clip(s: &str) -> String {
    let s = s.trim();
    if s.chars().count() <= DETAIL_MAX {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(DETAIL_MAX).collect::<String>())
    }
}

/// The `message` of an OpenAI-style `{"error": ...}` body, or the body itself.
fn error_message(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| match &v["error"] {
            Value::String(s) => Some(s.clone()),
            e => e["message"].as_str().map(str::to_string),
        })
        .unwrap_or_else(|| body.to_string())
}

/// Sends `req` and feeds every piece of text to `on_text` as it arrives. A JSON (non-streamed)
/// answer is accepted too.
pub async fn stream_chat(
    http: &reqwest::Client,
    provider: &Provider,
    req: &ChatRequest,
    mut on_text: impl FnMut(&str),
) -> Result<Completion, Failure> {
    let secs = provider.timeout.as_secs();
    let url = format!("{}/chat/completions", provider.base_url);
    let body = json!({
        "model": req.model,
        "messages": req.messages,
        "temperature": req.temperature,
        "max_tokens": req.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let mut builder = http.post(url).json(&body);
    if let Some(key) = &provider.api_key {
        builder = builder.bearer_auth(&key.0);
    }
    let transport = |e: reqwest::Error| Failure::Transport(provider.redact(&clip(&e.without_url().to_string())));
    let resp = tokio::time::timeout(provider.timeout, builder.send())
        .await
        .map_err(|_| Failure::Timeout(secs))?
        .map_err(transport)?;
    let status = resp.status();
    if !status.is_success() {
        let text = tokio::time::timeout(provider.timeout, read_limited(resp, ERROR_BODY_MAX)).await.unwrap_or_default();
        return Err(Failure::Http { status: status.as_u16(), detail: provider.redact(&clip(&error_message(&text))) });
    }
    let is_json = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if is_json {
        let text = tokio::time::timeout(provider.timeout, resp.text())
            .await
            .map_err(|_| Failure::Timeout(secs))?
            .map_err(transport)?;
        let v: Value = serde_json::from_str(&text).map_err(|_| Failure::Malformed(provider.redact(&clip(&text))))?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(Failure::Provider(provider.redact(&clip(&error_message(&text)))));
        }
        let choice = &v["choices"][0];
        let content = choice["message"]["content"]
            .as_str()
            .ok_or_else(|| Failure::Malformed("no choices[0].message.content".into()))?;
        on_text(content);
        return Ok(Completion {
            finish_reason: choice["finish_reason"].as_str().map(str::to_string),
            prompt_tokens: v["usage"]["prompt_tokens"].as_i64(),
            completion_tokens: v["usage"]["completion_tokens"].as_i64(),
        });
    }

    let mut parser = StreamParser::default();
    let mut chunks = resp.bytes_stream();
    let mut buf: Vec<u8> = vec![];
    while !parser.done {
        let next = tokio::time::timeout(provider.timeout, chunks.next()).await.map_err(|_| Failure::Timeout(secs))?;
        let Some(bytes) = next else { break };
        buf.extend_from_slice(&bytes.map_err(transport)?);
        if buf.len() > LINE_MAX {
            return Err(Failure::Malformed(format!("a line longer than {LINE_MAX} bytes")));
        }
        while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            parser.line(&line, &mut on_text).map_err(|f| redact_failure(provider, f))?;
            if parser.done {
                break;
            }
        }
    }
    if !parser.done && !buf.is_empty() {
        let rest = std::mem::take(&mut buf);
        parser.line(&rest, &mut on_text).map_err(|f| redact_failure(provider, f))?;
    }
    if parser.done || parser.completion.finish_reason.is_some() {
        Ok(parser.completion)
    } else {
        Err(Failure::Truncated)
    }
}

fn redact_failure(provider: &Provider, f: Failure) -> Failure {
    match f {
        Failure::Malformed(s) => Failure::Malformed(provider.redact(&s)),
        Failure::Provider(s) => Failure::Provider(provider.redact(&s)),
        other => other,
    }
}

/// Reads `data:` lines of an OpenAI-style event stream.
#[derive(Default)]
struct StreamParser {
    completion: Completion,
    done: bool,
}

impl StreamParser {
    fn line(&mut self, raw: &[u8], on_text: &mut impl FnMut(&str)) -> Result<(), Failure> {
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches(['\r', '\n']);
        let Some(data) = line.strip_prefix("data:") else {
            return Ok(()); // blank lines, comments, `event:` and `id:` lines
        };
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let v: Value = serde_json::from_str(data).map_err(|_| Failure::Malformed(clip(data)))?;
        if v.get("error").is_some_and(|e| !e.is_null()) {
            return Err(Failure::Provider(clip(&error_message(data))));
        }
        if let Some(choice) = v["choices"].get(0) {
            if let Some(text) = choice["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                on_text(text);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                self.completion.finish_reason = Some(reason.to_string());
            }
        } else if !v["choices"].is_array() && v.get("usage").is_none() {
            return Err(Failure::Malformed(clip(data)));
        }
        if let Some(p) = v["usage"]["prompt_tokens"].as_i64() {
            self.completion.prompt_tokens = Some(p);
        }
        if let Some(c) = v["usage"]["completion_tokens"].as_i64() {
            self.completion.completion_tokens = Some(c);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_deltas_usage_and_done() {
        let mut p = StreamParser::default();
        let mut text = String::new();
        let mut feed = |l: &str, p: &mut StreamParser| p.line(l.as_bytes(), &mut |t: &str| text.push_str(t));
        feed(": keep-alive\n", &mut p).unwrap();
        feed("data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n", &mut p).unwrap();
        feed("data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\r\n", &mut p).unwrap();
        feed("data:{\"choices\":[{\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n", &mut p).unwrap();
        feed("data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":2}}\n", &mut p).unwrap();
        assert!(!p.done);
        feed("data: [DONE]\n", &mut p).unwrap();
        assert!(p.done);
        assert_eq!(text, "Hello");
        assert_eq!(
            p.completion,
            Completion { finish_reason: Some("stop".into()), prompt_tokens: Some(7), completion_tokens: Some(2) }
        );
        let mut p = StreamParser::default();
        assert!(matches!(p.line(b"data: {oops\n", &mut |_: &str| {}), Err(Failure::Malformed(_))));
        let err = p.line(b"data: {\"error\":{\"message\":\"overloaded\"}}\n", &mut |_: &str| {}).unwrap_err();
        assert_eq!(err, Failure::Provider("overloaded".into()));
    }
}
