//! Two server processes on one PostgreSQL database (README, Operations, "Several instances on
//! one PostgreSQL"): a reply started through one is followed (`Last-Event-ID`) and cancelled
//! through the other, the start of one leaves the other's running jobs alone, a job whose
//! instance is killed is failed by the other once its lease runs out, and the per-minute rate
//! limits count a caller's requests through both. The provider is the
//! scripted one of the completions tests, in this process; the servers are the real binary.

use std::{process::Child, time::Duration};

use serde_json::{Value, json};

use crate::{
    cli::start_with,
    completions::{
        Ev, Sse,
        mock::{MODEL, Reply, spawn_mock},
    },
    postgres::test_db,
};

/// The test database, dropped off the runtime (the synchronous client cannot run inside it).
struct Database(Option<crate::postgres::TestDb>);

impl Drop for Database {
    fn drop(&mut self) {
        let db = self.0.take();
        let _ = std::thread::spawn(move || drop(db)).join();
    }
}

struct Instance {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on `url`, with the scripted provider at `provider`; the lines it printed.
fn instance(url: &str, provider: &str) -> (Instance, Vec<String>) {
    instance_with(url, provider, "")
}

fn instance_with(url: &str, provider: &str, more_toml: &str) -> (Instance, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let more = more_toml.to_string()
        + &format!(
            "[database]\nurl = \"{url}\"\n[llm]\nkeep_alive_seconds = 5\n[[llm.providers]]\nname = \"mock\"\nbase_url = \"{provider}\"\n\
         api_key_env = \"\"\nmodels = [\"{MODEL}\"]\ntimeout_seconds = 60\n"
        );
    let (child, base, lines) = start_with(dir.path(), &more, &[]);
    (Instance { child, base, _dir: dir }, lines)
}

impl Instance {
    fn url(&self, path: &str) -> String {
        format!("{}/api/v1{path}", self.base)
    }
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn text_of(events: &[Ev]) -> String {
    events.iter().filter(|e| e.event == "delta").map(|e| e.data["content"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn postgres_two_instances_share_running_jobs() {
    let Some(db) = std::thread::spawn(|| test_db("two instances")).join().unwrap() else { return };
    let url = db.url.clone();
    // declared before the instances, so dropped after them
    let _db = Database(Some(db));
    let (mock, provider) = spawn_mock().await;
    let http = reqwest::Client::new();

    let (a, lines) = instance(&url, &provider);
    let password = lines.iter().find_map(|l| l.trim().strip_prefix("password: ")).expect("password line").to_string();
    let (status, login) =
        send(http.post(a.url("/auth/login")).json(&json!({"username": "admin", "password": password}))).await;
    assert_eq!(status, 200, "{login:?}");
    let token = login["access_token"].as_str().unwrap().to_string();
    let (status, agent) = send(
        http.post(a.url("/agent-configs"))
            .bearer_auth(&token)
            .json(&json!({"name": "helper", "agent_type": "documentation", "llm_model": MODEL})),
    )
    .await;
    assert_eq!(status, 201, "{agent:?}");
    let conversation = |at: &Instance| {
        let req =
            http.post(at.url("/conversations")).bearer_auth(&token).json(&json!({"agent_config_id": agent["id"]}));
        async move {
            let (status, c) = send(req).await;
            assert_eq!(status, 201, "{c:?}");
            c["id"].as_str().unwrap().to_string()
        }
    };
    let start = |at: &Instance, conv: &str| {
        let req = http
            .post(at.url(&format!("/conversations/{conv}/completions")))
            .bearer_auth(&token)
            .json(&json!({"content": "Go", "stream": true}));
        async move {
            let mut sse = Sse::open(req).await;
            let first = sse.next().await.unwrap();
            assert_eq!(first.event, "user_message");
            (first.data["job_id"].as_str().unwrap().to_string(), sse)
        }
    };
    let pieces = vec!["one", " two", " three", " four", " five", " six", " seven", " eight"];
    let whole: String = pieces.concat();

    // 1. a reply started through A; B starts meanwhile and leaves it running; followed through B
    let conv = conversation(&a).await;
    mock.then(Reply::Stream { pieces: pieces.clone(), delay: Duration::from_millis(250), usage: Some((5, 8)) });
    let (job, mut on_a) = start(&a, &conv).await;
    let (b, _) = instance(&url, &provider);
    let follow = |at: &Instance, conv: &str, job: &str, last: i64| {
        http.get(at.url(&format!("/conversations/{conv}/completions/{job}")))
            .bearer_auth(&token)
            .header("Last-Event-ID", last.to_string())
    };
    let on_b = Sse::open(follow(&b, &conv, &job, 1)).await.rest().await;
    let on_a = on_a.rest().await;
    assert_eq!(text_of(&on_a), whole);
    assert_eq!(text_of(&on_b), whole, "B relays A's deltas: {:?}", on_b.iter().map(|e| &e.event).collect::<Vec<_>>());
    let ids: Vec<i64> = on_b.iter().map(|e| e.id).collect();
    assert_eq!(ids, (2..2 + on_b.len() as i64).collect::<Vec<_>>(), "every event after 1, once, in order");
    let (done_a, done_b) = (on_a.last().unwrap(), on_b.last().unwrap());
    assert_eq!((done_a.event.as_str(), done_b.event.as_str()), ("done", "done"));
    assert_eq!((done_a.id, &done_a.data), (done_b.id, &done_b.data), "the same last event through both");
    assert_eq!(done_b.data["message"]["content"], whole.as_str());
    // a late follower through B from an event in the middle gets the rest, then the end
    let late = Sse::open(follow(&b, &conv, &job, 4)).await.rest().await;
    assert_eq!(late.first().unwrap().id, 5);
    assert_eq!(late.last().unwrap().data, done_a.data);

    // 2. a reply started through A, cancelled through B: A's stream ends cancelled with the partial text
    mock.then(Reply::Stream { pieces: pieces.clone(), delay: Duration::from_millis(400), usage: None });
    let (job, mut on_a) = start(&a, &conv).await;
    assert_eq!(on_a.next().await.unwrap().event, "delta");
    let (status, cancelled) =
        send(http.post(b.url(&format!("/conversations/{conv}/completions/{job}/cancel"))).bearer_auth(&token)).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled:?}");
    let rest = on_a.rest().await;
    let end = rest.last().unwrap();
    assert_eq!(end.event, "cancelled");
    assert!(!end.data["message"]["content"].as_str().unwrap().is_empty());
    assert!(text_of(&rest).len() < whole.len() - "one".len(), "stopped before the end");
    // the audit log names the cancel, through whichever instance
    let (_, audit) = send(http.get(a.url("/audit-events?action=completion.cancel")).bearer_auth(&token)).await;
    assert_eq!(audit["total"], 1, "{audit:?}");

    // 2b. A stalls with the job (frozen, while its lease is kept alive, as a runner that is alive
    // but stuck would): the cancel through B waits as long as a lease can last, then answers 503
    // and the job is still running; A resumes, hears the request, and the job ends cancelled, which
    // the cancel, asked again, answers
    mock.then(Reply::Stream { pieces: vec!["slow"; 200], delay: Duration::from_millis(200), usage: None });
    let (job, mut on_a) = start(&a, &conv).await;
    assert_eq!(on_a.next().await.unwrap().event, "delta");
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill").args([sig, &a.child.id().to_string()]).status().unwrap();
        assert!(ok.success(), "kill {sig}");
    };
    signal("-STOP");
    let renewing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let renewer = {
        let (url, job, renewing) = (url.clone(), job.clone(), renewing.clone());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            while renewing.load(std::sync::atomic::Ordering::SeqCst) {
                c.execute(
                    "UPDATE completion_jobs SET lease_until = now() + interval '15 seconds' WHERE id = $1",
                    &[&job],
                )
                .unwrap();
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    let cancel =
        || send(http.post(b.url(&format!("/conversations/{conv}/completions/{job}/cancel"))).bearer_auth(&token));
    let asked = std::time::Instant::now();
    let (status, stuck) = cancel().await;
    assert_eq!(status, 503, "{stuck:?}");
    assert!(stuck["detail"].as_str().unwrap().contains("did not stop it in time"), "{stuck:?}");
    assert!(asked.elapsed() >= Duration::from_secs(15), "B waited as long as a lease lasts: {:?}", asked.elapsed());
    renewing.store(false, std::sync::atomic::Ordering::SeqCst);
    let status: String = {
        let (url, job) = (url.clone(), job.clone());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.query_one("SELECT status FROM completion_jobs WHERE id = $1", &[&job]).unwrap().get(0)
        })
        .join()
        .unwrap()
    };
    assert_eq!(status, "running", "a 503 changes nothing");
    renewer.join().unwrap();
    signal("-CONT");
    let end = on_a.rest().await.pop().unwrap();
    assert_eq!(end.event, "cancelled", "A stopped the job once it resumed: {:?}", end.data);
    let (status, cancelled) = cancel().await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled:?}");

    // 2c. A freezes with the job and its lease runs out: B's sweep fails the job and stores the
    // text A had written; A, resumed, finds the job ended and stores nothing more (no second
    // reply, no event after the end)
    let conv3 = conversation(&b).await;
    mock.then(Reply::Stream { pieces: vec!["late "; 20], delay: Duration::from_millis(200), usage: None });
    let (job, mut on_a) = start(&a, &conv3).await;
    let mut on_b = Sse::open(follow(&b, &conv3, &job, 0)).await;
    assert_eq!(on_b.next().await.unwrap().event, "user_message");
    let first = on_b.next().await.unwrap();
    assert_eq!(first.event, "delta", "{:?}", first.data);
    signal("-STOP");
    {
        let (url, job) = (url.clone(), job.clone());
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            c.execute("UPDATE completion_jobs SET lease_until = now() - interval '1 second' WHERE id = $1", &[&job])
                .unwrap();
        })
        .join()
        .unwrap();
    }
    let mut rest = on_b.rest().await;
    let end = rest.pop().unwrap();
    assert_eq!((end.event.as_str(), &end.data["detail"]), ("error", &json!(copilot::llm::jobs::LEASE_EXPIRED)));
    assert!(rest.iter().all(|e| e.event == "delta"), "only deltas before the end: {rest:?}");
    let seen = text_of(&[vec![first], rest].concat());
    assert_eq!(end.data["message"]["content"].as_str(), Some(seen.as_str()), "{:?}", end.data);
    signal("-CONT");
    let on_a_end = on_a.rest().await.pop().unwrap();
    assert_eq!(
        (on_a_end.event.as_str(), &on_a_end.data["detail"]),
        ("error", &json!(copilot::llm::jobs::LEASE_EXPIRED))
    );
    assert!(on_a_end.data["message"].is_null(), "A stored no reply of its own: {:?}", on_a_end.data);
    let (status, listed) = send(http.get(b.url(&format!("/conversations/{conv3}/messages"))).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    let roles: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["user", "assistant"], "one reply: the one B stored");
    assert_eq!(listed["data"][1]["content"].as_str(), Some(seen.as_str()));
    // a follow from the start replays the same events, the end last
    let replay = Sse::open(follow(&b, &conv3, &job, 0)).await.rest().await;
    let ids: Vec<i64> = replay.iter().map(|e| e.id).collect();
    assert_eq!(ids, (1..=replay.len() as i64).collect::<Vec<_>>(), "{replay:?}");
    assert_eq!(replay.last().unwrap().data["message"]["content"].as_str(), Some(seen.as_str()));

    // 3. A is killed while generating: B fails the job once A's lease runs out, and B's follower
    // sees the end (the instance that runs a job renews its lease every 5 s; it lasts 15 s). What
    // A had written of the reply is stored as the partial assistant message
    let conv2 = conversation(&b).await;
    mock.then(Reply::Stream { pieces: vec!["slow "; 200], delay: Duration::from_millis(300), usage: None });
    let (job, mut on_a) = start(&a, &conv2).await;
    assert_eq!(on_a.next().await.unwrap().event, "delta");
    let mut on_b = Sse::open(follow(&b, &conv2, &job, 0)).await;
    assert_eq!(on_b.next().await.unwrap().event, "user_message");
    // B has a delta from the table: A has written some of the reply
    let first = on_b.next().await.unwrap();
    assert_eq!(first.event, "delta", "{:?}", first.data);
    drop(a);
    let started = std::time::Instant::now();
    let mut rest = on_b.rest().await;
    let end = rest.pop().unwrap();
    assert_eq!(end.event, "error", "{:?}", end.data);
    assert_eq!(end.data["detail"], copilot::llm::jobs::LEASE_EXPIRED);
    assert!(started.elapsed() < Duration::from_secs(40), "{:?}", started.elapsed());
    assert!(rest.iter().all(|e| e.event == "delta"), "only deltas before the end: {rest:?}");
    let seen = text_of(&[vec![first], rest].concat());
    let partial = &end.data["message"];
    assert_eq!(partial["role"], "assistant", "{:?}", end.data);
    assert_eq!(partial["content"].as_str(), Some(seen.as_str()), "every delta written, nothing else");
    let meta = &partial["metadata"];
    assert_eq!(
        (&meta["status"], &meta["partial"], &meta["error_kind"], &meta["job_id"]),
        (&json!("failed"), &json!(true), &json!("shutdown"), &json!(job)),
        "{meta:?}"
    );
    assert_eq!(meta["error"], copilot::llm::jobs::LEASE_EXPIRED);
    assert_eq!(meta["completion_tokens"], json!(seen.chars().count().div_ceil(4)), "{meta:?}");
    let (status, listed) = send(http.get(b.url(&format!("/conversations/{conv2}/messages"))).bearer_auth(&token)).await;
    assert_eq!(status, 200);
    let contents: Vec<&str> =
        listed["data"].as_array().unwrap().iter().map(|m| m["content"].as_str().unwrap()).collect();
    assert_eq!(contents.len(), 2, "the user message and the partial reply: {contents:?}");
    assert_eq!((contents[1], listed["data"][1]["id"].clone()), (seen.as_str(), partial["id"].clone()));
    // and the conversation takes a new reply through B
    let (status, reply) = send(
        http.post(b.url(&format!("/conversations/{conv2}/completions")))
            .bearer_auth(&token)
            .json(&json!({"content": "Again"})),
    )
    .await;
    assert_eq!(status, 201, "{reply:?}");
}

#[tokio::test]
async fn postgres_two_instances_count_one_rate_limit() {
    let Some(db) = std::thread::spawn(|| test_db("two instances, one rate")).join().unwrap() else { return };
    let url = db.url.clone();
    let _db = Database(Some(db));
    let limits = "[limits]\nrequests_per_minute = 6\nanonymous_requests_per_minute = 4\n";
    let (a, lines) = instance_with(&url, "http://127.0.0.1:9/v1", limits);
    let password = lines.iter().find_map(|l| l.trim().strip_prefix("password: ")).expect("password line").to_string();
    let (b, _) = instance_with(&url, "http://127.0.0.1:9/v1", limits);
    let http = reqwest::Client::new();
    // the anonymous limit: 4 logins from this address in all, through either instance
    let login =
        |at: &Instance| http.post(at.url("/auth/login")).json(&json!({"username": "admin", "password": password}));
    let mut answers = vec![];
    for at in [&a, &b, &a, &b, &a, &b] {
        answers.push(send(login(at)).await);
    }
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 429, 429], "{answers:?}");
    let token = answers[0].1["access_token"].as_str().unwrap().to_string();
    // the caller's limit: 6 requests in all, alternating
    let mut statuses = vec![];
    for at in [&a, &b, &a, &b, &a, &b, &a, &b] {
        let r = http.get(at.url("/auth/me")).bearer_auth(&token).send().await.unwrap();
        if r.status() == 429 {
            let wait: u64 = r.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=10).contains(&wait), "one request every 10 s: {wait}");
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429]);
}
