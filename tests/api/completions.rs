//! /conversations/{id}/completions and /usage, against a scripted OpenAI-compatible server that
//! each test starts on loopback.
pub(crate) mod mock;

use copilot::store::error::StoreResult;
use std::time::Duration;

use copilot::config::{Config, LlmProviderConfig};
use serde_json::{Value, json};

use crate::helpers::*;
use mock::{MODEL, Mock, Reply, chunk, spawn_mock};

/// Not `COPILOT_…`: the tests' process environment is inherited by the binaries other tests start
/// (backup, restore, serve), whose config loader refuses `COPILOT_` variables it does not know.
const KEY_ENV: &str = "TEST_LLM_KEY_OF_COPILOT_TESTS";
const KEY: &str = "sk-test-secret-4242";

fn provider(base_url: &str, timeout_seconds: u64, max_context_tokens: u64) -> LlmProviderConfig {
    LlmProviderConfig {
        name: "mock".into(),
        base_url: base_url.into(),
        api_key_env: KEY_ENV.into(),
        models: vec![MODEL.into()],
        timeout_seconds,
        max_context_tokens,
    }
}

fn set_key() {
    // the same value in every test, so the order of threads does not matter
    unsafe { std::env::set_var(KEY_ENV, KEY) };
}

/// A server whose `[llm]` points at a fresh scripted provider.
async fn spawn_with_llm(timeout_seconds: u64, max_context_tokens: u64) -> (TestApp, Mock) {
    spawn_with(timeout_seconds, max_context_tokens, |_| {}).await
}

async fn spawn_with(timeout: u64, budget: u64, change: impl FnOnce(&mut Config)) -> (TestApp, Mock) {
    set_key();
    let (mock, url) = spawn_mock().await;
    let app = spawn_app_with(|c| {
        c.llm.providers = vec![provider(&url, timeout, budget)];
        change(c);
    })
    .await;
    (app, mock)
}

// ---------------------------------------------------------------------------------------------
// Client helpers

/// An agent config serving the mock's model, with `body`'s fields on top.
pub async fn agent(app: &TestApp, admin: &str, body: Value) -> String {
    let mut b = json!({"name": "helper", "agent_type": "documentation", "llm_model": MODEL});
    b.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
    let r = app.post("/agent-configs", Some(admin), b).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.id()
}

/// A conversation of `token`'s user with the agent config `agent_id`.
pub async fn conversation(app: &TestApp, token: &str, agent_id: &str) -> String {
    let r = app.post("/conversations", Some(token), json!({"agent_config_id": agent_id})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.id()
}

/// A member `name` with a conversation on a new agent; returns (token, conversation id).
async fn chat_setup(app: &TestApp, name: &str) -> (String, String) {
    let admin = app.admin_token().await;
    let agent_id = agent(app, &admin, json!({})).await;
    let (_, token) = app.member(name).await;
    let conv = conversation(app, &token, &agent_id).await;
    (token, conv)
}

async fn complete(app: &TestApp, token: &str, conv: &str, content: &str) -> Resp {
    app.post(&format!("/conversations/{conv}/completions"), Some(token), json!({"content": content})).await
}

async fn messages(app: &TestApp, token: &str, conv: &str) -> Vec<Value> {
    let r = app.get(&format!("/conversations/{conv}/messages?limit=100"), Some(token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

async fn job_row(app: &TestApp, job_id: &str) -> (String, Option<String>, Option<String>, i64, i64) {
    let id = job_id.to_string();
    app.state
        .store
        .read(move |c| -> StoreResult<_> {
            let rows = sql_rows(
                c,
                "SELECT status, error, assistant_message_id, prompt_tokens, completion_tokens \
                 FROM completion_jobs WHERE id = ?1",
                &[&id],
            )?;
            let r = &rows[0];
            let text = |v: &Value| v.as_str().map(str::to_string);
            Ok((text(&r[0]).unwrap(), text(&r[1]), text(&r[2]), r[3].as_i64().unwrap(), r[4].as_i64().unwrap()))
        })
        .await
        .unwrap()
}

#[derive(Debug, Clone)]
pub(crate) struct Ev {
    pub(crate) id: i64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// Reads a Server-Sent Events answer block by block.
pub(crate) struct Sse {
    resp: reqwest::Response,
    buf: String,
    comments: usize,
}

impl Sse {
    pub(crate) async fn open(req: reqwest::RequestBuilder) -> Sse {
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Sse { resp, buf: String::new(), comments: 0 }
    }

    pub(crate) async fn next(&mut self) -> Option<Ev> {
        loop {
            while let Some(pos) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..pos + 2).collect();
                let (mut id, mut event, mut data) = (0, String::new(), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().unwrap();
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data.push_str(v);
                    } else if line.starts_with(':') {
                        self.comments += 1;
                    }
                }
                if !event.is_empty() {
                    return Some(Ev { id, event, data: serde_json::from_str(&data).unwrap() });
                }
            }
            match tokio::time::timeout(Duration::from_secs(20), self.resp.chunk()).await.expect("stream stalled") {
                Ok(Some(bytes)) => self.buf.push_str(&String::from_utf8_lossy(&bytes)),
                _ => return None,
            }
        }
    }

    pub(crate) async fn rest(&mut self) -> Vec<Ev> {
        let mut all = vec![];
        while let Some(e) = self.next().await {
            all.push(e);
        }
        all
    }
}

fn start_stream(app: &TestApp, token: &str, conv: &str, content: &str) -> reqwest::RequestBuilder {
    app.client
        .post(app.url(&format!("/api/v1/conversations/{conv}/completions")))
        .bearer_auth(token)
        .json(&json!({"content": content, "stream": true}))
}

fn follow(app: &TestApp, token: &str, conv: &str, job: &str) -> reqwest::RequestBuilder {
    app.client.get(app.url(&format!("/api/v1/conversations/{conv}/completions/{job}"))).bearer_auth(token)
}

fn text_of(events: &[Ev]) -> String {
    events.iter().filter(|e| e.event == "delta").map(|e| e.data["content"].as_str().unwrap()).collect()
}

fn slow(pieces: Vec<&'static str>, ms: u64) -> Reply {
    Reply::Stream { pieces, delay: Duration::from_millis(ms), usage: None }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn without_a_provider_nothing_is_called_and_nothing_is_stored() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({"llm_model": "gemini-pro"})).await;
    let (_, token) = app.member("mia").await;
    let conv = conversation(&app, &token, &agent_id).await;
    let r = complete(&app, &token, &conv, "Hello?").await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert!(r.detail().contains("\"gemini-pro\"") && r.detail().contains("llm.providers"), "{}", r.detail());
    // the endpoints are described
    let spec = app.get("/openapi.json", None).await.body;
    for path in [
        "/conversations/{id}/completions",
        "/conversations/{id}/completions/{job_id}",
        "/conversations/{id}/completions/{job_id}/cancel",
        "/usage",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} missing from the OpenAPI document");
    }
    assert!(messages(&app, &token, &conv).await.is_empty());

    // a conversation without an agent, or with an inactive one, is a 400
    let bare = app.post("/conversations", Some(&token), json!({})).await.id();
    let r = complete(&app, &token, &bare, "Hello?").await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("agent config"), "{}", r.detail());
    assert_eq!(app.delete(&format!("/agent-configs/{agent_id}"), Some(&admin)).await.status, 204);
    let r = complete(&app, &token, &conv, "Hello?").await;
    assert_eq!(r.status, 400);
    assert!(r.detail().contains("inactive"), "{}", r.detail());
    // validation as for messages
    for body in [json!({"content": "  "}), json!({"content": 5}), json!({}), json!({"content": "x".repeat(100_001)})] {
        let r = app.post(&format!("/conversations/{conv}/completions"), Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
    }
}

#[tokio::test]
async fn a_reply_is_generated_from_the_agent_and_stored_with_its_accounting() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let admin = app.admin_token().await;
    let agent_id =
        agent(&app, &admin, json!({"system_prompt": "You answer RFPs.", "temperature": 0.2, "max_tokens": 100})).await;
    let (user, token) = app.member("mia").await;
    let conv = app
        .post("/conversations", Some(&token), json!({"agent_config_id": agent_id, "context": {"customer": "ACME"}}))
        .await
        .id();
    mock.then(Reply::Stream { pieces: vec!["Hel", "lo", "!"], delay: Duration::ZERO, usage: Some((42, 3)) });

    let r = complete(&app, &token, &conv, "Hi there").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert_eq!(r.body["role"], "assistant");
    assert_eq!(r.body["content"], "Hello!");
    assert_eq!(r.body["conversation_id"], conv.as_str());
    let meta = &r.body["metadata"];
    assert_eq!(meta["model"], MODEL);
    assert_eq!(meta["provider"], "mock");
    assert_eq!(meta["finish_reason"], "stop");
    assert_eq!((meta["prompt_tokens"].as_i64(), meta["completion_tokens"].as_i64()), (Some(42), Some(3)));
    assert_eq!(meta["status"], "completed");
    assert!(meta["latency_ms"].is_i64() && meta["job_id"].is_string());
    let job = meta["job_id"].as_str().unwrap();
    let (status, error, assistant, p, c) = job_row(&app, job).await;
    assert_eq!((status.as_str(), error, assistant.as_deref(), p, c), ("completed", None, Some(r.id().as_str()), 42, 3));

    let all = messages(&app, &token, &conv).await;
    assert_eq!(all.len(), 2);
    assert_eq!((all[0]["role"].as_str(), all[0]["content"].as_str()), (Some("user"), Some("Hi there")));
    assert_eq!(all[0]["metadata"]["job_id"], job);
    assert_eq!(all[1]["id"], r.body["id"]);
    assert_eq!(app.get(&format!("/conversations/{conv}"), Some(&token)).await.body["message_count"], 2);

    let seen = mock.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].auth.as_deref(), Some(format!("Bearer {KEY}").as_str()));
    let b = &seen[0].body;
    assert_eq!(b["model"], MODEL);
    assert_eq!(b["temperature"], 0.2);
    assert_eq!(b["max_tokens"], 100);
    assert_eq!(b["stream"], true);
    let sent = b["messages"].as_array().unwrap();
    assert_eq!(sent[0], json!({"role": "system", "content": "You answer RFPs."}));
    assert_eq!(sent[1]["role"], "system");
    assert!(sent[1]["content"].as_str().unwrap().contains(r#""customer":"ACME""#));
    assert_eq!(sent[2], json!({"role": "user", "content": "Hi there"}));

    // the next turn carries the history
    let r = complete(&app, &token, &conv, "And then?").await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["content"], "Hello there");
    let sent = mock.seen()[1].body["messages"].as_array().unwrap().clone();
    let turns: Vec<(&str, &str)> =
        sent[2..].iter().map(|m| (m["role"].as_str().unwrap(), m["content"].as_str().unwrap())).collect();
    assert_eq!(turns, [("user", "Hi there"), ("assistant", "Hello!"), ("user", "And then?")]);
    assert!(user["id"].is_string());

    // a provider that answers plain JSON works too
    mock.then(Reply::Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "Plain."},
        "finish_reason": "stop"}], "usage": {"prompt_tokens": 5, "completion_tokens": 1}})));
    let r = complete(&app, &token, &conv, "Once more").await;
    assert_eq!((r.status, r.body["content"].as_str()), (201, Some("Plain.")));
    assert_eq!(r.body["metadata"]["prompt_tokens"], 5);
}

#[tokio::test]
async fn older_messages_are_left_out_to_fit_the_budget() {
    let (app, mock) = spawn_with_llm(10, 256).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    let path = format!("/conversations/{conv}/messages");
    let old = "o".repeat(2000); // ~500 tokens: over the budget on its own
    for (role, content) in [("user", old.as_str()), ("assistant", "recent answer"), ("user", "recent question")] {
        assert_eq!(app.post(&path, Some(&token), json!({"role": role, "content": content})).await.status, 201);
    }
    let r = complete(&app, &token, &conv, "newest").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let sent: Vec<String> = mock.seen()[0].body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["recent answer", "recent question", "newest"]);
    // without usage from the provider, tokens are estimated (characters / 4)
    mock.then(Reply::Stream { pieces: vec!["abcdefgh"], delay: Duration::ZERO, usage: None });
    let r = complete(&app, &token, &conv, "again").await;
    assert_eq!(r.body["metadata"]["completion_tokens"], 2);
    assert_eq!(r.body["metadata"]["usage_estimated"], true);
}

#[tokio::test]
async fn a_streamed_reply_sends_the_user_message_deltas_and_the_stored_reply() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    mock.then(Reply::Stream {
        pieces: vec!["One", " two", " three"],
        delay: Duration::from_millis(20),
        usage: Some((9, 3)),
    });
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Count")).await;
    let events = sse.rest().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["user_message", "delta", "delta", "delta", "done"]);
    assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_eq!(events[0].data["message"]["content"], "Count");
    assert_eq!(events[0].data["message"]["role"], "user");
    assert_eq!(text_of(&events), "One two three");
    let done = &events[4].data;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["message"]["content"], "One two three");
    assert_eq!(done["message"]["metadata"]["completion_tokens"], 3);
    let stored = messages(&app, &token, &conv).await;
    assert_eq!(stored[1]["id"], done["message"]["id"]);
    assert_eq!(stored[0]["id"], events[0].data["message"]["id"]);
}

#[tokio::test]
async fn long_pauses_get_keep_alive_comments() {
    let (app, mock) = spawn_with(10, 8192, |c| c.llm.keep_alive_seconds = 1).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    mock.then(slow(vec!["slow"], 2300));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Wait")).await;
    let events = sse.rest().await;
    assert_eq!(events.last().unwrap().event, "done");
    assert!(sse.comments >= 1, "no keep-alive comment");
}

#[tokio::test]
async fn a_client_that_disconnects_loses_nothing_and_can_resume() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    mock.then(slow(vec!["a", "b", "c", "d", "e"], 150));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Letters")).await;
    let first = sse.next().await.unwrap();
    let job = first.data["job_id"].as_str().unwrap().to_string();
    let second = sse.next().await.unwrap();
    assert_eq!((second.id, second.event.as_str()), (2, "delta"));
    drop(sse); // the client goes away

    // re-attach after event 2: the rest, without repeats
    let mut again = Sse::open(follow(&app, &token, &conv, &job).header("Last-Event-ID", "2")).await;
    let rest = again.rest().await;
    assert_eq!(rest.first().unwrap().id, 3);
    assert_eq!(rest.last().unwrap().event, "done");
    let text = format!("{}{}", second.data["content"].as_str().unwrap(), text_of(&rest));
    assert_eq!(text, "abcde");
    assert_eq!(rest.last().unwrap().data["message"]["content"], "abcde");

    // a whole replay with ?after=0, and a later one from where it ended
    let all = Sse::open(follow(&app, &token, &conv, &job).query(&[("after", "0")])).await.rest().await;
    assert_eq!(all.len(), 7);
    assert_eq!(text_of(&all), "abcde");
    let last = all.last().unwrap().id;
    let none =
        Sse::open(follow(&app, &token, &conv, &job).header("Last-Event-ID", last.to_string())).await.rest().await;
    assert!(none.is_empty());

    // a job that finished with nobody listening is stored all the same
    mock.then(slow(vec!["x", "y"], 100));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Again")).await;
    let job2 = sse.next().await.unwrap().data["job_id"].as_str().unwrap().to_string();
    drop(sse);
    for _ in 0..100 {
        if job_row(&app, &job2).await.0 != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _, assistant, _, _) = job_row(&app, &job2).await;
    assert_eq!(status, "completed");
    let stored = messages(&app, &token, &conv).await;
    assert_eq!(stored.len(), 4);
    assert_eq!(stored[3]["content"], "xy");
    assert_eq!(stored[3]["id"].as_str(), assistant.as_deref());
}

#[tokio::test]
async fn a_second_request_while_generating_is_a_conflict() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    mock.then(slow(vec!["a", "b", "c"], 200));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "First")).await;
    sse.next().await.unwrap();
    let r = complete(&app, &token, &conv, "Second").await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert_eq!(messages(&app, &token, &conv).await.len(), 1, "the refused message is not stored");
    // another conversation is not blocked
    let admin = app.admin_token().await;
    let other_agent = agent(&app, &admin, json!({"name": "other"})).await;
    let other = conversation(&app, &token, &other_agent).await;
    assert_eq!(complete(&app, &token, &other, "Elsewhere").await.status, 201);
    assert_eq!(sse.rest().await.last().unwrap().event, "done");
    assert_eq!(complete(&app, &token, &conv, "Second").await.status, 201);
    assert_eq!(messages(&app, &token, &conv).await.len(), 4);
}

#[tokio::test]
async fn cancelling_stores_the_partial_reply_marked_cancelled() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    mock.then(slow(vec!["part", "ial", " never", " ends", ".", ".", ".", ".", ".", "."], 300));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Go")).await;
    let job = sse.next().await.unwrap().data["job_id"].as_str().unwrap().to_string();
    assert_eq!(sse.next().await.unwrap().data["content"], "part");

    let r = app.post_empty(&format!("/conversations/{conv}/completions/{job}/cancel"), Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["status"], "cancelled");
    assert_eq!(r.body["id"], job.as_str());
    let rest = sse.rest().await;
    let last = rest.last().unwrap();
    assert_eq!(last.event, "cancelled");
    let partial = last.data["message"]["content"].as_str().unwrap().to_string();
    assert!(partial.starts_with("part"), "{partial}");
    let meta = &last.data["message"]["metadata"];
    assert_eq!((meta["status"].as_str(), meta["partial"].as_bool()), (Some("cancelled"), Some(true)));
    let stored = messages(&app, &token, &conv).await;
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1]["content"], partial.as_str());

    // again: still cancelled; DELETE works the same
    let again = app.delete(&format!("/conversations/{conv}/completions/{job}"), Some(&token)).await;
    assert_eq!((again.status, again.body["status"].as_str()), (200, Some("cancelled")));
    // a completed job cannot be cancelled
    let done = complete(&app, &token, &conv, "Quick").await;
    let done_job = done.body["metadata"]["job_id"].as_str().unwrap();
    let r = app.post_empty(&format!("/conversations/{conv}/completions/{done_job}/cancel"), Some(&token)).await;
    assert_eq!(r.status, 409);
}

#[tokio::test]
async fn every_failure_keeps_the_user_message_and_says_why() {
    let (app, mock) = spawn_with_llm(1, 8192).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    let leak = format!("{{\"error\": {{\"message\": \"Incorrect API key provided: {KEY}\"}}}}");
    // (script, expected status, words in the detail, partial text stored)
    let cases: Vec<(Reply, u16, &str, Option<&str>)> = vec![
        (Reply::Hang(Duration::from_millis(2500)), 504, "did not answer within 1 seconds", None),
        (Reply::Status(401, leak), 502, "HTTP 401", None),
        (Reply::Status(500, "upstream exploded".into()), 502, "upstream exploded", None),
        (
            Reply::Raw { data: vec![chunk("Hal", None), "{not json".into()], delay: Duration::ZERO },
            502,
            "malformed",
            Some("Hal"),
        ),
        (
            Reply::Raw { data: vec![chunk("Trun", None), chunk("cated", None)], delay: Duration::ZERO },
            502,
            "ended before",
            Some("Truncated"),
        ),
        (
            Reply::Raw { data: vec![json!({"error": {"message": "overloaded"}}).to_string()], delay: Duration::ZERO },
            502,
            "overloaded",
            None,
        ),
        (
            Reply::Stall { data: vec![chunk("Sl", None), chunk("ow", None)], pause: Duration::from_millis(2500) },
            504,
            "did not answer",
            Some("Slow"),
        ),
    ];
    let mut expected_messages = 0;
    for (i, (reply, status, words, partial)) in cases.into_iter().enumerate() {
        mock.then(reply);
        let content = format!("question {i}");
        let r = complete(&app, &token, &conv, &content).await;
        assert_eq!(r.status, status, "case {i}: {:?}", r.body);
        assert!(r.detail().contains(words), "case {i}: {}", r.detail());
        assert!(!r.detail().contains(KEY), "case {i} leaks the key: {}", r.detail());
        let stored = messages(&app, &token, &conv).await;
        expected_messages += 1 + usize::from(partial.is_some());
        assert_eq!(stored.len(), expected_messages, "case {i}");
        let user = stored.iter().rev().find(|m| m["role"] == "user").unwrap();
        assert_eq!(user["content"], content.as_str());
        let job = user["metadata"]["job_id"].as_str().unwrap();
        let (st, error, assistant, _, _) = job_row(&app, job).await;
        assert_eq!(st, "failed", "case {i}");
        assert!(error.as_deref().unwrap().contains(words), "case {i}: {error:?}");
        assert!(!error.unwrap().contains(KEY));
        match partial {
            Some(text) => {
                let last = stored.last().unwrap();
                assert_eq!(last["content"], text, "case {i}");
                assert_eq!(last["id"].as_str(), assistant.as_deref());
                assert_eq!(last["metadata"]["status"], "failed");
                assert_eq!(last["metadata"]["partial"], true);
                assert!(last["metadata"]["error"].as_str().unwrap().contains(words));
            }
            None => assert_eq!(assistant, None, "case {i}"),
        }
    }

    // streamed, a failure is an `error` event with a detail
    mock.then(Reply::Status(503, "{\"error\": \"busy\"}".into()));
    let events = Sse::open(start_stream(&app, &token, &conv, "stream it")).await.rest().await;
    let last = events.last().unwrap();
    assert_eq!(last.event, "error");
    assert!(last.data["detail"].as_str().unwrap().contains("HTTP 503: busy"), "{:?}", last.data);
    assert_eq!(last.data["message"], Value::Null);
}

#[tokio::test]
async fn an_unreachable_provider_is_a_bad_gateway() {
    set_key();
    // a port that nothing listens on
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{closed}/v1");
    let app = spawn_app_with(|c| c.llm.providers = vec![provider(&url, 2, 8192)]).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    let r = complete(&app, &token, &conv, "Anyone?").await;
    assert_eq!(r.status, 502, "{:?}", r.body);
    assert!(r.detail().contains("cannot reach the provider"), "{}", r.detail());
    assert_eq!(messages(&app, &token, &conv).await.len(), 1);
}

#[tokio::test]
async fn stopping_the_server_stores_partial_replies_and_a_restart_fails_leftovers() {
    set_key();
    let (mock, url) = spawn_mock().await;
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("shared.db");
    let config = |c: &mut Config| {
        c.database.path = db_path.clone();
        c.llm.providers = vec![provider(&url, 10, 8192)];
    };
    let app = spawn_app_with(config).await;
    let (token, conv) = chat_setup(&app, "mia").await;
    mock.then(slow(vec!["be", "fore", " stop", ".", ".", ".", "."], 300));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Go")).await;
    let job = sse.next().await.unwrap().data["job_id"].as_str().unwrap().to_string();
    sse.next().await.unwrap();
    app.state.jobs.shutdown(Duration::from_secs(5)).await;
    let last = sse.rest().await.pop().unwrap();
    assert_eq!(last.event, "error");
    assert!(last.data["detail"].as_str().unwrap().contains("server stopped"));
    let stored = messages(&app, &token, &conv).await;
    assert_eq!(stored.len(), 2);
    assert!(stored[1]["content"].as_str().unwrap().starts_with("be"));
    assert_eq!(stored[1]["metadata"]["error_kind"], "shutdown");
    assert_eq!(job_row(&app, &job).await.0, "failed");
    // a stopping server starts no new job and stores nothing for one
    let r = complete(&app, &token, &conv, "Late").await;
    assert_eq!(r.status, 503, "{:?}", r.body);
    assert_eq!(messages(&app, &token, &conv).await.len(), 2);

    // a job left running by a crashed process is failed at the next start; on PostgreSQL, where
    // other instances may be running theirs, a job whose lease is still renewed is left alone
    let alive = copilot::db::new_id();
    if on_postgres() {
        let agent_id = app.get(&format!("/conversations/{conv}"), Some(&token)).await.body["agent_config_id"]
            .as_str()
            .unwrap()
            .to_string();
        let other_conv = conversation(&app, &token, &agent_id).await;
        let (a, c3) = (alive.clone(), other_conv.clone());
        app.state
            .store
            .write(move |tx| -> StoreResult<_> {
                sql_exec(
                    tx,
                    "INSERT INTO completion_jobs (id, conversation_id, user_id, organization_id, provider, model, \
                     status, user_message_id, created_at, instance_id, lease_until) VALUES (?1, ?2, \
                     (SELECT user_id FROM conversations WHERE id = ?2), \
                     (SELECT organization_id FROM conversations WHERE id = ?2), 'mock', ?3, 'running', 'm', \
                     now(), 'another-instance', now() + interval '1 hour')",
                    &[&a, &c3, MODEL],
                )?;
                Ok(())
            })
            .await
            .unwrap();
    }
    let ghost = copilot::db::new_id();
    let (g, c2, user_msg) = (ghost.clone(), conv.clone(), stored[0]["id"].as_str().unwrap().to_string());
    app.state
        .store
        .write(move |tx| -> StoreResult<_> {
            sql_exec(
                tx,
                "INSERT INTO completion_jobs (id, conversation_id, user_id, organization_id, provider, model, status, \
                 user_message_id, created_at) VALUES (?1, ?2, (SELECT user_id FROM conversations WHERE id = ?2), \
                 (SELECT organization_id FROM conversations WHERE id = ?2), 'mock', ?3, 'running', ?4, \
                 '2026-01-01T00:00:00.000000Z')",
                &[&g, &c2, MODEL, &user_msg],
            )?;
            Ok(())
        })
        .await
        .unwrap();
    // the same database again (on PostgreSQL: the same URL)
    let same = app.state.config.database.url.clone();
    let restarted = spawn_app_with(|c| {
        config(c);
        c.database.url = same;
    })
    .await;
    let (status, error, _, _, _) = job_row(&restarted, &ghost).await;
    let why = if on_postgres() { copilot::llm::jobs::LEASE_EXPIRED } else { "server restarted" };
    assert_eq!((status.as_str(), error.as_deref()), ("failed", Some(why)));
    if on_postgres() {
        assert_eq!(job_row(&restarted, &alive).await.0, "running", "a job of a live instance is left alone");
    }
    // and a finished job replays on the new server: from the stored messages (on PostgreSQL,
    // within two minutes of its end, with the deltas its instance wrote to the database)
    let events = Sse::open(follow(&restarted, &token, &conv, &job)).await.rest().await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    let last = events.last().unwrap();
    if on_postgres() {
        assert_eq!((names[0], names[names.len() - 1]), ("user_message", "error"), "{names:?}");
        let deltas: String = events[1..events.len() - 1]
            .iter()
            .map(|e| {
                assert_eq!(e.event, "delta");
                e.data["content"].as_str().unwrap()
            })
            .collect();
        assert_eq!(deltas, stored[1]["content"].as_str().unwrap());
        let ids: Vec<i64> = events.iter().map(|e| e.id).collect();
        assert_eq!(ids, (1..=events.len() as i64).collect::<Vec<_>>(), "one event per id, in order");
    } else {
        assert_eq!(names, ["user_message", "error"]);
    }
    assert_eq!(last.data["message"]["content"], stored[1]["content"]);
    let ghost_events = Sse::open(follow(&restarted, &token, &conv, &ghost)).await.rest().await;
    assert_eq!(ghost_events.last().unwrap().data["detail"], why);
    // a new turn works there
    assert_eq!(complete(&restarted, &token, &conv, "Back?").await.status, 201);
}

#[tokio::test]
async fn only_the_owner_reaches_a_conversation_and_its_jobs() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let (token, conv) = chat_setup(&app, "owner").await;
    mock.then(slow(vec!["a", "b", "c", "d"], 200));
    let mut sse = Sse::open(start_stream(&app, &token, &conv, "Mine")).await;
    let job = sse.next().await.unwrap().data["job_id"].as_str().unwrap().to_string();
    let org = app.default_org_id().await;
    let (_, colleague) = app.member("colleague").await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let superuser = app.admin_token().await;
    let other = app.create_org("Other").await;
    let (_, outsider) = app.create_user_in(&other, "outsider", "admin").await;
    for t in [&colleague, &org_admin, &superuser, &outsider] {
        assert_eq!(complete(&app, t, &conv, "x").await.status, 404);
        assert_eq!(app.get(&format!("/conversations/{conv}/completions/{job}"), Some(t)).await.status, 404);
        let r = app.post_empty(&format!("/conversations/{conv}/completions/{job}/cancel"), Some(t)).await;
        assert_eq!(r.status, 404);
    }
    // a job id under another conversation of the owner is not found either
    let admin = app.admin_token().await;
    let a2 = agent(&app, &admin, json!({"name": "second"})).await;
    let conv2 = conversation(&app, &token, &a2).await;
    assert_eq!(app.get(&format!("/conversations/{conv2}/completions/{job}"), Some(&token)).await.status, 404);
    assert_eq!(app.get(&format!("/conversations/{conv}/completions/nope"), Some(&token)).await.status, 404);
    // without the permission: 403; without a token: 401
    let reader = app.create_role(&org, "reader", &["users:read"]).await;
    assert!(!reader.is_empty());
    let (_, no_perm) = app.create_user_in(&org, "reader1", "reader").await;
    assert_eq!(complete(&app, &no_perm, &conv, "x").await.status, 403);
    assert_eq!(
        app.post(&format!("/conversations/{conv}/completions"), None, json!({"content": "x"})).await.status,
        401
    );
    assert_eq!(sse.rest().await.last().unwrap().event, "done");
}

#[tokio::test]
async fn replies_that_take_longer_than_the_connection_timeouts_are_not_cut() {
    let (app, mock) = spawn_with(10, 8192, |c| {
        c.server.header_read_timeout_seconds = 1;
        c.server.idle_timeout_seconds = 1;
    })
    .await;
    let (token, conv) = chat_setup(&app, "mia").await;
    // a stream of 2.4 s, and a silent wait of 2.5 s for a stored reply: requests in flight
    mock.then(slow(vec!["a", "b", "c", "d", "e", "f", "g", "h"], 300));
    let events = Sse::open(start_stream(&app, &token, &conv, "Slowly")).await.rest().await;
    assert_eq!(events.last().unwrap().event, "done");
    assert_eq!(text_of(&events), "abcdefgh");
    mock.then(Reply::Hang(Duration::from_millis(2500)));
    let r = complete(&app, &token, &conv, "Take your time").await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn a_moved_user_keeps_nothing_of_the_old_organization() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({"system_prompt": "Secret prompt of Default."})).await;
    let (user, token) = app.member("mover").await;
    let conv = conversation(&app, &token, &agent_id).await;
    mock.then(Reply::Stream { pieces: vec!["ok"], delay: Duration::ZERO, usage: Some((3, 1)) });
    assert_eq!(complete(&app, &token, &conv, "Before the move").await.status, 201);
    assert_eq!(mock.seen().len(), 1);

    let other = app.create_org("Elsewhere").await;
    let r =
        app.post_empty(&format!("/organizations/{other}/members/{}", user["id"].as_str().unwrap()), Some(&admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = complete(&app, &token, &conv, "After the move").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.detail().contains("agent_config_id"), "{}", r.detail());
    assert_eq!(mock.seen().len(), 1, "the old organization's provider was sent nothing");
    assert_eq!(messages(&app, &token, &conv).await.len(), 2, "nothing was stored");
    let old_org = app.default_org_id().await;
    let r = app.get(&format!("/usage?organization_id={old_org}"), Some(&admin)).await;
    assert_eq!(r.body["totals"]["requests"], 1, "nothing more is billed to the old organization");
}

#[tokio::test]
async fn usage_sums_tokens_per_group_within_the_organization() {
    let (app, mock) = spawn_with_llm(10, 8192).await;
    let admin = app.admin_token().await;
    let agent_a = agent(&app, &admin, json!({"name": "A"})).await;
    let agent_b = agent(&app, &admin, json!({"name": "B"})).await;
    let (mia, mia_token) = app.member("mia").await;
    let (leo, leo_token) = app.member("leo").await;
    let mia_a = conversation(&app, &mia_token, &agent_a).await;
    let mia_b = conversation(&app, &mia_token, &agent_b).await;
    let leo_a = conversation(&app, &leo_token, &agent_a).await;
    for (token, conv, usage) in
        [(&mia_token, &mia_a, (10, 1)), (&mia_token, &mia_b, (20, 2)), (&leo_token, &leo_a, (40, 4))]
    {
        mock.then(Reply::Stream { pieces: vec!["ok"], delay: Duration::ZERO, usage: Some(usage) });
        assert_eq!(complete(&app, token, conv, "count me").await.status, 201);
    }
    mock.then(Reply::Status(500, "no".into()));
    assert_eq!(complete(&app, &leo_token, &leo_a, "fails").await.status, 502);

    let r = app.get("/usage?group_by=user", Some(&admin)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["user_id"], Value::Null);
    let totals = &r.body["totals"];
    assert_eq!(totals["completion_tokens"], 7);
    assert_eq!(totals["requests"], 4);
    assert!(totals["prompt_tokens"].as_i64().unwrap() > 70, "failed requests count their estimated prompt");
    let rows = r.body["data"].as_array().unwrap();
    let mia_row = rows.iter().find(|row| row["key"] == mia["id"]).unwrap();
    assert_eq!((mia_row["label"].as_str(), mia_row["prompt_tokens"].as_i64()), (Some("mia"), Some(30)));
    assert_eq!((mia_row["total_tokens"].as_i64(), mia_row["requests"].as_i64()), (Some(33), Some(2)));
    let leo_row = rows.iter().find(|row| row["key"] == leo["id"]).unwrap();
    assert_eq!(leo_row["requests"], 2);

    let r = app.get("/usage?group_by=agent_config", Some(&admin)).await;
    let a = r.body["data"].as_array().unwrap().iter().find(|row| row["key"] == agent_a.as_str()).unwrap().clone();
    assert_eq!(
        (a["label"].as_str(), a["requests"].as_i64(), a["completion_tokens"].as_i64()),
        (Some("A"), Some(3), Some(5))
    );
    let r = app.get("/usage?group_by=model", Some(&admin)).await;
    assert_eq!(r.body["data"][0]["key"], MODEL);
    assert_eq!(r.body["data"][0]["label"], "mock");
    let r = app.get("/usage", Some(&admin)).await;
    assert_eq!(r.body["group_by"], "day");
    let today = r.body["to"].as_str().unwrap().to_string();
    assert_eq!(r.body["data"][0]["key"], today.as_str());
    assert_eq!(r.body["data"][0]["requests"], 4);

    // a member sees only their own
    let r = app.get("/usage?group_by=user", Some(&mia_token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["user_id"], mia["id"]);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["totals"]["total_tokens"], 33);
    // another organization sees nothing of ours
    let other = app.create_org("Other").await;
    let (_, outsider) = app.create_user_in(&other, "outsider", "admin").await;
    let r = app.get("/usage", Some(&outsider)).await;
    assert_eq!(
        (r.body["totals"]["requests"].as_i64(), r.body["organization_id"].as_str()),
        (Some(0), Some(other.as_str()))
    );
    // a superuser may look at another organization
    let r = app.get(&format!("/usage?organization_id={other}"), Some(&admin)).await;
    assert_eq!(r.body["totals"]["requests"], 0);
    // date ranges
    let r = app.get("/usage?from=2020-01-01&to=2020-01-31", Some(&admin)).await;
    assert_eq!((r.status, r.body["totals"]["requests"].as_i64()), (200, Some(0)));
    let r = app.get(&format!("/usage?from={today}&to={today}"), Some(&admin)).await;
    assert_eq!(r.body["totals"]["requests"], 4);
    for bad in ["/usage?from=yesterday", "/usage?from=2026-02-01&to=2026-01-01", "/usage?group_by=planet"] {
        let r = app.get(bad, Some(&admin)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(r.body["detail"].is_string());
    }
    assert_eq!(app.get("/usage", None).await.status, 401);
}
