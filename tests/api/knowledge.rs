//! `/knowledge/search` (SPEC §7): BM25 passages with page and heading, the organization and
//! scope applied in the query.
use serde_json::Value;

use crate::{
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
