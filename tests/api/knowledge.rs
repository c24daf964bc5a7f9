//! `/knowledge/search` and cited answers (SPEC §7): BM25 passages with page and heading, the
//! organization and scope applied in the query, and completions that put exactly the cited
//! passages in the prompt, against the scripted provider of the completions tests.
use copilot::config::LlmProviderConfig;
use serde_json::{Value, json};

use crate::{
    completions::mock::{MODEL, spawn_mock},
    documents::{HANDBOOK_MD, pdf, upload, upload_text, wait_ingested},
    helpers::*,
};

async fn search(app: &TestApp, token: &str, query: &str) -> Resp {
    app.get(&format!("/knowledge/search?{query}"), Some(token)).await
}

fn passages(r: &Resp) -> Vec<Value> {
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn search_ranks_passages_with_their_page_and_heading() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let md = upload(&app, &admin, "handbook.md", "text/markdown", HANDBOOK_MD.into(), &[]).await;
    let report =
        upload(&app, &admin, "r.pdf", "application/pdf", pdf(&["Intro page.", "Vacation carry-over rules."]), &[])
            .await;
    let other = upload_text(&app, &admin, "Menu", "The canteen serves soup on Mondays.", "text/plain").await;
    for id in [md.id(), report.id(), other["id"].as_str().unwrap().to_string()] {
        wait_ingested(&app, &admin, &id).await;
    }

    let r = search(&app, &admin, "q=How%20many%20vacation%20days%3F").await;
    let found = passages(&r);
    assert_eq!(r.body["total"].as_i64(), Some(found.len() as i64));
    assert!(found.len() >= 2, "{found:?}");
    let best = &found[0];
    assert_eq!(best["document_id"], md.id().as_str());
    assert_eq!(best["document_title"], "handbook.md");
    assert_eq!(best["heading"], "Handbook > Vacation");
    assert!(best["text"].as_str().unwrap().contains("twenty-five vacation days"));
    assert!(best["chunk_id"].is_string() && best["page"].is_null());
    let scores: Vec<f64> = found.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "best first: {scores:?}");
    assert!(scores[0] > 0.0);
    let pdf_hit = found.iter().find(|p| p["document_id"] == report.id().as_str()).expect("the PDF page matches");
    assert_eq!(pdf_hit["page"], 2);
    assert!(!found.iter().any(|p| p["document_id"] == other["id"]), "no vacation in the menu");

    // scope filters
    let r = search(&app, &admin, &format!("q=vacation&document_id={}", report.id())).await;
    assert!(passages(&r).iter().all(|p| p["document_id"] == report.id().as_str()));
    assert_eq!(passages(&search(&app, &admin, "q=vacation&limit=1").await).len(), 1);
    let r = search(&app, &admin, &format!("q=vacation&project_id={}", copilot::db::new_id())).await;
    assert_eq!(passages(&r).len(), 0);

    // user text is never FTS5 syntax
    for q in ["multi-agent", "don't", "NOT", "*", "(vacation", "\"", "AND OR NEAR", "%F0%9F%8E%89"] {
        let r = search(&app, &admin, &format!("q={q}")).await;
        assert_eq!(r.status, 200, "{q}: {:?}", r.body);
    }
}

#[tokio::test]
async fn search_parameters_are_validated() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for (query, word) in [
        ("", "q"),
        ("q=%20%20", "q"),
        (&format!("q={}", "a".repeat(1001)), "q"),
        ("q=x&limit=0", "limit"),
        ("q=x&limit=51", "limit"),
    ] {
        let r = search(&app, &admin, query).await;
        assert_eq!(r.status, 400, "{query}: {:?}", r.body);
        assert!(r.detail().contains(word), "{query}: {}", r.detail());
    }
    assert_eq!(search(&app, &admin, &format!("q={}&limit=50", "a".repeat(1000))).await.status, 200);
    assert_eq!(search(&app, &admin, "q=x").await.body["limit"], 10);
}

#[tokio::test]
async fn agent_knowledge_base_ids_must_be_of_the_organization() {
    let app = spawn_app().await;
    let org_b = app.create_org("Org B").await;
    let admin_b = app.create_user_in(&org_b, "admin_b", "admin").await.1;
    let admin = app.admin_token().await;
    let mine = upload_text(&app, &admin, "Mine", "My words.", "text/plain").await["id"].as_str().unwrap().to_string();
    let theirs =
        upload_text(&app, &admin_b, "Theirs", "Their words.", "text/plain").await["id"].as_str().unwrap().to_string();
    let their_project = app.post("/projects", Some(&admin_b), json!({"name": "pb"})).await.id();
    let agent = |kb: Value| json!({"name": "a", "agent_type": "hr", "knowledge_base": kb});

    let r = app
        .post("/agent-configs", Some(&admin), agent(json!({"enabled": true, "document_ids": [mine], "top_k": 3})))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let id = r.id();
    for (kb, field) in [
        (json!({"enabled": true, "document_ids": [theirs]}), "knowledge_base.document_ids"),
        (json!({"enabled": true, "project_ids": [their_project]}), "knowledge_base.project_ids"),
        (json!({"enabled": true, "document_ids": ["nope"]}), "knowledge_base.document_ids"),
        (json!({"enabled": true, "top_k": 0}), "knowledge_base.top_k"),
        (json!({"enabled": true, "top_k": 21}), "knowledge_base.top_k"),
        (json!({"enabled": "yes"}), "knowledge_base.enabled"),
    ] {
        let r = app.post("/agent-configs", Some(&admin), agent(kb.clone())).await;
        assert_eq!(r.status, 400, "{kb}: {:?}", r.body);
        assert!(r.detail().contains(field), "{kb}: {}", r.detail());
        let r = app.put(&format!("/agent-configs/{id}"), Some(&admin), json!({"knowledge_base": kb})).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
    // nothing changed
    let r = app.get(&format!("/agent-configs/{id}"), Some(&admin)).await;
    assert_eq!(r.body["knowledge_base"], json!({"enabled": true, "document_ids": [mine], "top_k": 3}));
}

fn provider(url: &str) -> LlmProviderConfig {
    LlmProviderConfig {
        name: "mock".into(),
        base_url: url.into(),
        api_key_env: String::new(),
        models: vec![MODEL.into()],
        timeout_seconds: 10,
        max_context_tokens: 8192,
    }
}

/// The text of every message the provider was sent, joined.
fn sent_text(body: &Value) -> String {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn completions_cite_the_passages_they_send_and_only_their_organizations() {
    let (mock, url) = spawn_mock().await;
    let app = spawn_app_with(|c| c.llm.providers = vec![provider(&url)]).await;
    let org_a = app.create_org("Org A").await;
    let org_b = app.create_org("Org B").await;
    let admin_a = app.create_user_in(&org_a, "admin_a", "admin").await.1;
    let admin_b = app.create_user_in(&org_b, "admin_b", "admin").await.1;
    let doc_a = upload(&app, &admin_a, "handbook.md", "text/markdown", HANDBOOK_MD.into(), &[]).await.id();
    // org B has a document on the same subject: it must never reach org A's prompts
    let doc_b =
        upload_text(&app, &admin_b, "B handbook", "Org B staff get ninety vacation days (B-SECRET).", "text/plain")
            .await["id"]
            .as_str()
            .unwrap()
            .to_string();
    wait_ingested(&app, &admin_a, &doc_a).await;
    wait_ingested(&app, &admin_b, &doc_b).await;

    let agent = app
        .post(
            "/agent-configs",
            Some(&admin_a),
            json!({"name": "hr", "agent_type": "hr", "llm_model": MODEL, "system_prompt": "Be helpful.",
                   "knowledge_base": {"enabled": true, "top_k": 2}}),
        )
        .await
        .id();
    let conv = app.post("/conversations", Some(&admin_a), json!({"agent_config_id": agent})).await.id();

    // waiting for the stored reply
    let r = app
        .post(
            &format!("/conversations/{conv}/completions"),
            Some(&admin_a),
            json!({"content": "How many vacation days?"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let citations = r.body["metadata"]["citations"].as_array().expect("citations in the metadata").clone();
    assert!(!citations.is_empty() && citations.len() <= 2, "{citations:?}");
    assert_eq!(citations[0]["document_id"], doc_a.as_str());
    assert_eq!(citations[0]["document_title"], "handbook.md");
    assert!(citations[0]["snippet"].as_str().unwrap().contains("twenty-five vacation days"));
    assert!(citations[0]["chunk_id"].is_string() && citations[0]["score"].is_number());
    assert!(citations.iter().all(|c| c["document_id"] != doc_b.as_str()));
    let seen = mock.seen();
    let body = &seen.last().unwrap().body;
    let sent = sent_text(body);
    assert!(sent.contains("twenty-five vacation days") && sent.contains("<source id=\"1\""), "{sent}");
    assert!(!sent.contains("B-SECRET"), "another organization's passage was sent: {sent}");
    // the sources come right before the user's message
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs[msgs.len() - 1]["content"], "How many vacation days?");
    assert_eq!(msgs[msgs.len() - 2]["role"], "system");
    assert!(msgs[msgs.len() - 2]["content"].as_str().unwrap().contains("<source"));
    // stored with the message
    let r = app.get(&format!("/conversations/{conv}/messages"), Some(&admin_a)).await;
    assert_eq!(r.body["data"][1]["metadata"]["citations"], json!(citations));

    // streamed: `citations` comes before the first `delta`, and again in `done`
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/conversations/{conv}/completions")))
        .bearer_auth(&admin_a)
        .json(&json!({"content": "What about vacation days again?", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    let events: Vec<(String, Value)> = text
        .split("\n\n")
        .filter_map(|block| {
            let event = block.lines().find_map(|l| l.strip_prefix("event: "))?;
            let data: String = block.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
            Some((event.to_string(), serde_json::from_str(&data).unwrap()))
        })
        .collect();
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    let at = |name: &str| names.iter().position(|n| *n == name).unwrap_or_else(|| panic!("no {name} in {names:?}"));
    assert!(at("citations") < at("delta"), "{names:?}");
    let streamed = &events[at("citations")].1["citations"];
    assert_eq!(streamed[0]["document_id"], doc_a.as_str());
    let done = &events[at("done")].1;
    assert_eq!(&done["citations"], streamed);
    assert_eq!(&done["message"]["metadata"]["citations"], streamed);

    // an agent without the knowledge base sends no sources and stores no citations
    let plain = app
        .post("/agent-configs", Some(&admin_a), json!({"name": "plain", "agent_type": "hr", "llm_model": MODEL}))
        .await
        .id();
    let conv = app.post("/conversations", Some(&admin_a), json!({"agent_config_id": plain})).await.id();
    let r = app
        .post(
            &format!("/conversations/{conv}/completions"),
            Some(&admin_a),
            json!({"content": "How many vacation days?"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    assert!(r.body["metadata"].get("citations").is_none());
    assert!(!sent_text(&mock.seen().last().unwrap().body).contains("<source"));
}

#[tokio::test]
async fn an_agent_scoped_to_documents_cites_only_those() {
    let (mock, url) = spawn_mock().await;
    let app = spawn_app_with(|c| c.llm.providers = vec![provider(&url)]).await;
    let admin = app.admin_token().await;
    let a = upload_text(&app, &admin, "Alpha", "Parking spots are assigned by lottery.", "text/plain").await;
    let b = upload_text(&app, &admin, "Beta", "Parking is free on weekends.", "text/plain").await;
    let (a, b) = (a["id"].as_str().unwrap().to_string(), b["id"].as_str().unwrap().to_string());
    wait_ingested(&app, &admin, &a).await;
    wait_ingested(&app, &admin, &b).await;
    let agent = app
        .post(
            "/agent-configs",
            Some(&admin),
            json!({"name": "p", "agent_type": "hr", "llm_model": MODEL, "knowledge_base": {"enabled": true, "document_ids": [b]}}),
        )
        .await
        .id();
    let conv = app.post("/conversations", Some(&admin), json!({"agent_config_id": agent})).await.id();
    let r = app
        .post(&format!("/conversations/{conv}/completions"), Some(&admin), json!({"content": "parking rules"}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let cited: Vec<&str> = r.body["metadata"]["citations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["document_id"].as_str().unwrap())
        .collect();
    assert_eq!(cited, [b.as_str()]);
    assert!(!sent_text(&mock.seen().last().unwrap().body).contains("lottery"));
}

/// The retrieval evaluation shipped in tests/eval: twelve handbook pages and questions, each with
/// the page that answers it, run through full-text retrieval and through hybrid retrieval (the
/// scripted `/embeddings` serving [`HASH_MODEL`]). Prints recall@5 and MRR of both (`cargo test
/// --test api retrieval_quality -- --nocapture`); full text must find the right page in its top
/// 5 for 80% of the questions, and hybrid may lose at most [`HYBRID_MARGIN`] of full text's
/// recall@5.
#[tokio::test]
async fn retrieval_quality_on_the_evaluation_set() {
    let text = evaluate(&spawn_app().await).await;
    let (mock, url) = spawn_embedder().await;
    let mut p = provider(&url);
    p.name = "embedder".into();
    p.models = vec![HASH_MODEL.into()];
    let app = spawn_app_with(|c| {
        c.llm.providers = vec![p];
        c.knowledge.embedding_model = HASH_MODEL.into();
    })
    .await;
    let hybrid = evaluate(&app).await;
    // hybrid it was: every chunk has a vector, and the questions were embedded
    let chunks = count_rows(&app, "SELECT COUNT(*) FROM chunks").await;
    assert!(chunks > 12 && count_rows(&app, "SELECT COUNT(*) FROM chunk_vec_1").await == chunks);
    let asked = mock.inputs.lock().unwrap().iter().filter(|t| t.ends_with('?')).count();
    assert!(asked >= 20, "{asked} questions embedded");
    assert!(hybrid.best_score <= 2.0 / 61.0, "RRF scores, not BM25: {}", hybrid.best_score);
    for (name, e) in [("full text", &text), ("hybrid", &hybrid)] {
        println!(
            "retrieval evaluation, {name}: {} queries over {} documents: recall@5 = {:.3}, MRR = {:.3}; missed: {:?}",
            e.queries, e.documents, e.recall, e.mrr, e.misses
        );
    }
    assert!(text.recall >= 0.8, "full-text recall@5 {:.3} < 0.8; missed {:?}", text.recall, text.misses);
    assert!(
        hybrid.recall >= text.recall - HYBRID_MARGIN,
        "hybrid recall@5 {:.3} < full text's {:.3} - {HYBRID_MARGIN}; missed {:?}",
        hybrid.recall,
        text.recall,
        hybrid.misses
    );
}

/// How much recall@5 hybrid retrieval may lose against full text on the evaluation set: two
/// questions of 32. The embedder is lexical (hashed words and trigrams, no synonyms), so fusing
/// its ranking can move a page that BM25 ranked 4th or 5th just past the cut; more than two such
/// questions means the fusion, not the embedder, is at fault.
const HYBRID_MARGIN: f64 = 2.0 / 32.0;

struct Evaluation {
    queries: usize,
    documents: usize,
    recall: f64,
    mrr: f64,
    misses: Vec<String>,
    /// the highest `score` of any passage returned
    best_score: f64,
}

/// Uploads tests/eval/corpus, asks tests/eval/queries.json through `/knowledge/search` (limit
/// 5) and scores where the expected page comes first.
async fn evaluate(app: &TestApp) -> Evaluation {
    let admin = app.admin_token().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/eval");
    let mut names = std::collections::HashMap::new();
    for entry in std::fs::read_dir(dir.join("corpus")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        let r = upload(app, &admin, &name, "text/markdown", std::fs::read(&path).unwrap(), &[]).await;
        assert_eq!(r.status, 201, "{name}: {:?}", r.body);
        names.insert(r.id(), name);
    }
    for id in names.keys() {
        let d = wait_ingested(app, &admin, id).await;
        assert_eq!((d["status"].as_str(), &d["error"]), (Some("ready"), &Value::Null), "{d:?}");
    }
    let queries: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("queries.json")).unwrap()).unwrap();
    let (mut hits, mut reciprocal, mut misses, mut best_score) = (0usize, 0f64, vec![], f64::MIN);
    for q in &queries {
        let (question, expected) = (q["q"].as_str().unwrap(), q["doc"].as_str().unwrap());
        let req = app.client.get(app.url("/api/v1/knowledge/search")).bearer_auth(&admin);
        let r = app.send(req.query(&[("q", question), ("limit", "5")])).await;
        let found = passages(&r);
        best_score = found.iter().filter_map(|p| p["score"].as_f64()).fold(best_score, f64::max);
        let rank = found
            .iter()
            .position(|p| names.get(p["document_id"].as_str().unwrap()).map(String::as_str) == Some(expected));
        match rank {
            Some(i) => {
                hits += 1;
                reciprocal += 1.0 / (i + 1) as f64;
            }
            None => misses.push(question.to_string()),
        }
    }
    let n = queries.len() as f64;
    Evaluation {
        queries: queries.len(),
        documents: names.len(),
        recall: hits as f64 / n,
        mrr: reciprocal / n,
        misses,
        best_score,
    }
}

// ---------------------------------------------------------------------------------------------
// Embeddings against a scripted OpenAI-compatible /embeddings server

const EMBED_MODEL: &str = "mock-embed";
/// A second model, with vectors of another dimension.
const WIDE_MODEL: &str = "mock-embed-wide";

/// Words of one concept share a dimension, so "holiday" lands near "vacation" without sharing
/// a word with it; text of no concept points along the last dimension.
const CONCEPTS: [&[&str]; 3] = [
    &["vacation", "holiday", "holidays", "leave", "days"],
    &["parking", "car", "garage", "lottery"],
    &["canteen", "soup", "lunch", "food"],
];

fn concept_vector(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; CONCEPTS.len() + 1];
    for word in text.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
        for (i, words) in CONCEPTS.iter().enumerate() {
            if words.contains(&word) {
                v[i] += 1.0;
            }
        }
    }
    if v.iter().all(|x| *x == 0.0) {
        v[CONCEPTS.len()] = 1.0;
    }
    v
}

/// A model of the scripted server whose vectors carry (lexical) meaning: see [`hash_vector`].
const HASH_MODEL: &str = "hash-embed-384";
const HASH_DIMS: usize = 384;

/// Words too common to say what a text is about.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "can", "do", "does", "for", "from", "how", "i", "if", "in", "is",
    "it", "my", "of", "on", "or", "our", "should", "the", "to", "we", "what", "when", "where", "which", "who", "will",
    "with", "you", "your",
];

/// A deterministic embedding of `text` in [`HASH_DIMS`] dimensions: each word (lowercase,
/// stopwords left out) and each character trigram of a word (`#ho`, `hol`, …, `ys#`) adds ±1
/// (words) or ±0.5 (trigrams) to one dimension chosen by a hash, the sign by another bit of it
/// (feature hashing), and the vector is L2-normalized. Texts that share words or word parts
/// ("holiday" / "holidays", "reimbursed" / "reimbursement") point the same way; synonyms do not.
fn hash_vector(text: &str) -> Vec<f32> {
    fn fnv(s: &str) -> u64 {
        s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
    }
    let mut v = vec![0f32; HASH_DIMS];
    let mut add = |feature: &str, weight: f32| {
        let h = fnv(feature);
        let sign = if h >> 63 == 1 { -1.0 } else { 1.0 };
        v[(h % HASH_DIMS as u64) as usize] += sign * weight;
    };
    let lower = text.to_lowercase();
    for word in lower.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty() && !STOPWORDS.contains(w)) {
        add(&format!("w:{word}"), 1.0);
        let padded: Vec<char> = format!("#{word}#").chars().collect();
        for t in padded.windows(3) {
            add(&format!("t:{}", t.iter().collect::<String>()), 0.5);
        }
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    } else {
        v[0] = 1.0;
    }
    v
}

#[test]
fn the_hash_embedder_carries_lexical_meaning() {
    let cos = |a: &str, b: &str| hash_vector(a).iter().zip(hash_vector(b)).map(|(x, y)| x * y).sum::<f32>();
    assert_eq!(hash_vector("Holiday rules"), hash_vector("Holiday rules"));
    assert!((hash_vector("any text").iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    let near = cos("How many holidays do I get?", "Staff get 25 holiday days a year.");
    let far = cos("How many holidays do I get?", "The canteen serves soup on Mondays.");
    assert!(near > 0.3 && far.abs() < 0.2 && near > far + 0.2, "near {near}, far {far}");
}

#[derive(Clone, Default)]
struct EmbedMock {
    fail: std::sync::Arc<std::sync::atomic::AtomicBool>,
    inputs: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

async fn spawn_embedder() -> (EmbedMock, String) {
    use poem::listener::{Acceptor, Listener};
    let mock = EmbedMock::default();
    let m = mock.clone();
    let app = poem::Route::new().at(
        "/v1/embeddings",
        poem::endpoint::make(move |req: poem::Request| {
            let m = m.clone();
            async move {
                let body: Value = req.into_body().into_json().await.unwrap_or(Value::Null);
                let texts: Vec<String> =
                    body["input"].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect();
                m.inputs.lock().unwrap().extend(texts.clone());
                if m.fail.load(std::sync::atomic::Ordering::SeqCst) {
                    return poem::Response::builder()
                        .status(poem::http::StatusCode::SERVICE_UNAVAILABLE)
                        .content_type("application/json")
                        .body(json!({"error": {"message": "overloaded"}}).to_string());
                }
                let (wide, hashed) = (body["model"] == WIDE_MODEL, body["model"] == HASH_MODEL);
                assert!(wide || hashed || body["model"] == EMBED_MODEL, "{body}");
                let data: Vec<Value> = texts
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        let mut v = if hashed { hash_vector(t) } else { concept_vector(t) };
                        if wide {
                            v.extend([0.0; 4]);
                        }
                        json!({"object": "embedding", "index": i, "embedding": v})
                    })
                    .collect();
                poem::Response::builder()
                    .content_type("application/json")
                    .body(json!({"object": "list", "data": data, "model": EMBED_MODEL}).to_string())
            }
        }),
    );
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    (mock, format!("http://{addr}/v1"))
}

async fn spawn_with_embeddings(url: &str) -> TestApp {
    let mut p = provider(url);
    p.name = "embedder".into();
    p.models = vec![EMBED_MODEL.into(), WIDE_MODEL.into()];
    spawn_app_with(|c| {
        c.llm.providers = vec![p];
        c.knowledge.embedding_model = EMBED_MODEL.into();
    })
    .await
}

async fn count_rows(app: &TestApp, sql: &'static str) -> i64 {
    app.state.store.read(move |c| sql_i64(c, sql, &[])).await.unwrap()
}

#[tokio::test]
async fn embeddings_find_passages_that_share_no_word_with_the_question() {
    let (mock, url) = spawn_embedder().await;
    let app = spawn_with_embeddings(&url).await;
    let org_a = app.create_org("Org A").await;
    let org_b = app.create_org("Org B").await;
    let admin_a = app.create_user_in(&org_a, "admin_a", "admin").await.1;
    let admin_b = app.create_user_in(&org_b, "admin_b", "admin").await.1;
    let leave = upload_text(&app, &admin_a, "Leave", "Staff get twenty-five vacation days.", "text/plain").await;
    let menu = upload_text(&app, &admin_a, "Menu", "The canteen serves soup.", "text/plain").await;
    let theirs = upload_text(&app, &admin_b, "B leave", "Org B staff get ninety vacation days.", "text/plain").await;
    for (doc, token) in [(&leave, &admin_a), (&menu, &admin_a), (&theirs, &admin_b)] {
        let d = wait_ingested(&app, token, doc["id"].as_str().unwrap()).await;
        assert_eq!((d["status"].as_str(), &d["error"]), (Some("ready"), &Value::Null), "{d:?}");
    }
    assert!(mock.inputs.lock().unwrap().iter().any(|t| t.contains("twenty-five vacation days")));
    assert_eq!(count_rows(&app, "SELECT COUNT(*) FROM chunk_vec_1").await, 3);

    // no word in common: full text alone finds nothing, the vectors find the leave policy
    let r = search(&app, &admin_a, "q=holiday").await;
    let found = passages(&r);
    assert_eq!(found[0]["document_id"], leave["id"], "{found:?}");
    assert!(found[0]["score"].as_f64().unwrap() <= 2.0 / 61.0);
    // another organization's vectors are never neighbours
    assert!(found.iter().all(|p| p["document_id"] != theirs["id"]), "{found:?}");
    let r = search(&app, &admin_b, "q=holiday").await;
    assert!(passages(&r).iter().all(|p| p["document_id"] == theirs["id"]));
    // scope inside the KNN
    let r = search(&app, &admin_a, &format!("q=holiday&document_id={}", menu["id"].as_str().unwrap())).await;
    assert!(passages(&r).iter().all(|p| p["document_id"] == menu["id"]));

    // deleting a document takes its vectors
    assert_eq!(app.delete(&format!("/documents/{}", leave["id"].as_str().unwrap()), Some(&admin_a)).await.status, 204);
    assert_eq!(count_rows(&app, "SELECT COUNT(*) FROM chunk_vec_1").await, 2);
    let r = search(&app, &admin_a, "q=holiday").await;
    assert!(passages(&r).iter().all(|p| p["document_id"] != leave["id"]));
}

#[tokio::test]
async fn an_embedding_outage_leaves_full_text_working_and_marks_the_document() {
    let (mock, url) = spawn_embedder().await;
    let app = spawn_with_embeddings(&url).await;
    let admin = app.admin_token().await;
    mock.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let doc = upload_text(&app, &admin, "Leave", "Staff get twenty-five vacation days.", "text/plain").await;
    let id = doc["id"].as_str().unwrap();
    let d = wait_ingested(&app, &admin, id).await;
    assert_eq!(d["status"], "ready");
    assert!(d["error"].as_str().unwrap().contains("embedding failed"), "{d:?}");
    assert_eq!(passages(&search(&app, &admin, "q=vacation").await)[0]["document_id"], id);
    assert_eq!(passages(&search(&app, &admin, "q=holiday").await).len(), 0);

    // the provider is back: a reindex embeds the document
    mock.fail.store(false, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(app.post_empty(&format!("/documents/{id}/reindex"), Some(&admin)).await.status, 202);
    let d = wait_ingested(&app, &admin, id).await;
    assert_eq!((d["status"].as_str(), &d["error"]), (Some("ready"), &Value::Null), "{d:?}");
    assert_eq!(passages(&search(&app, &admin, "q=holiday").await)[0]["document_id"], id);
}

#[tokio::test]
async fn an_embedding_model_no_provider_serves_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(dir.path());
    config.knowledge.embedding_model = "nobody-serves-this".into();
    let e = open_state(config).err().expect("refused");
    assert!(e.contains("knowledge.embedding_model") && e.contains("nobody-serves-this"), "{e}");
}

#[tokio::test]
async fn changing_the_embedding_model_starts_a_new_space_that_a_reindex_fills() {
    let (_mock, url) = spawn_embedder().await;
    let first = spawn_with_embeddings(&url).await;
    let admin = first.admin_token().await;
    let doc = upload_text(&first, &admin, "Leave", "Staff get twenty-five vacation days.", "text/plain").await;
    let id = doc["id"].as_str().unwrap().to_string();
    wait_ingested(&first, &admin, &id).await;
    assert_eq!(passages(&search(&first, &admin, "q=holiday").await)[0]["document_id"], id.as_str());
    first.state.ingest.shutdown(std::time::Duration::from_secs(5)).await;

    // the same database, restarted with a model of another dimension
    let mut config = (*first.state.config).clone();
    config.knowledge.embedding_model = WIDE_MODEL.into();
    let app = spawn_on(tempfile::tempdir().unwrap(), config).await;
    let admin = app.admin_token().await;
    // the new model has no vectors yet: full text answers alone, the old vectors are not mixed in
    assert_eq!(passages(&search(&app, &admin, "q=holiday").await).len(), 0);
    assert_eq!(passages(&search(&app, &admin, "q=vacation").await)[0]["document_id"], id.as_str());
    assert_eq!(app.post_empty(&format!("/documents/{id}/reindex"), Some(&admin)).await.status, 202);
    let d = wait_ingested(&app, &admin, &id).await;
    assert_eq!((d["status"].as_str(), &d["error"]), (Some("ready"), &Value::Null), "{d:?}");
    assert_eq!(passages(&search(&app, &admin, "q=holiday").await)[0]["document_id"], id.as_str());
    let spaces =
        app.state.store.read(|c| sql_rows(c, "SELECT model, dims FROM embedding_spaces ORDER BY id", &[])).await;
    assert_eq!(spaces.unwrap(), [[json!(EMBED_MODEL), json!(4)], [json!(WIDE_MODEL), json!(8)]]);
    assert_eq!(count_rows(&app, "SELECT COUNT(*) FROM chunk_vec_2").await, 1);
    // the reindex replaced the chunk, so the first space keeps no vector of it
    assert_eq!(count_rows(&app, "SELECT COUNT(*) FROM chunk_vec_1").await, 0);
}
