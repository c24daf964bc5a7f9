//! /agent-configs
use copilot::{
    authz::Scope,
    store::{error::StoreResult, projects::NewProject},
};
use serde_json::{Value, json};

use crate::helpers::*;

/// A project row of `org_id`, inserted directly (projects are another area).
pub async fn insert_project(app: &TestApp, org_id: &str, name: &str, active: bool) -> String {
    let (org_id, name) = (org_id.to_string(), name.to_string());
    app.state
        .store
        .write(move |tx| -> StoreResult<_> {
            let now = copilot::db::now();
            let new = NewProject {
                id: copilot::db::new_id(),
                organization_id: org_id.clone(),
                name,
                description: None,
                settings: "{}".into(),
                created_by: None,
                now: now.clone(),
            };
            let id = copilot::store::projects::insert_project(tx, &new)?.id;
            if !active {
                copilot::store::projects::deactivate_project(tx, &Scope::system(&org_id), &id, &now)?;
            }
            Ok(id)
        })
        .await
        .unwrap()
}

async fn create_config(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.post("/agent-configs", Some(token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn count_all(app: &TestApp) -> i64 {
    app.state.store.read(|c| sql_i64(c, "SELECT COUNT(*) FROM agent_configs", &[])).await.unwrap()
}

#[tokio::test]
async fn create_applies_defaults_and_records_creator() {
    let app = spawn_app().await;
    let org = app.create_org("Acme").await;
    let (uid, token) = app.create_user_in(&org, "acme_admin", "admin").await;

    let r = app.post("/agent-configs", Some(&token), json!({"name": "  RFP helper ", "agent_type": "rfp"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let c = &r.body;
    assert_eq!(c["name"], "RFP helper");
    assert_eq!(c["organization_id"], org.as_str());
    assert_eq!(c["created_by"], uid.as_str());
    assert_eq!(c["agent_type"], "rfp");
    assert_eq!(c["llm_model"], "gemini-pro");
    assert_eq!(c["temperature"], 0.7);
    assert_eq!(c["max_tokens"], 2048);
    assert_eq!(c["tools"], json!([]));
    assert_eq!(c["knowledge_base"], json!({}));
    assert_eq!(c["settings"], json!({}));
    assert_eq!(c["is_active"], true);
    assert_eq!(c["project_id"], Value::Null);
    assert_eq!(c["description"], Value::Null);

    let got = app.get(&format!("/agent-configs/{}", r.id()), Some(&token)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);

    let full = create_config(
        &app,
        &token,
        json!({
            "name": "Jira bot", "description": "files tickets", "agent_type": "jira", "llm_model": "gpt-x",
            "temperature": 2, "max_tokens": 128000, "system_prompt": "be brief", "tools": ["search", "jira"],
            "knowledge_base": {"docs": [1, 2]}, "settings": {"a": true}
        }),
    )
    .await;
    assert_eq!(full["temperature"], 2.0);
    assert_eq!(full["max_tokens"], 128000);
    assert_eq!(full["tools"], json!(["search", "jira"]));
    assert_eq!(full["knowledge_base"], json!({"docs": [1, 2]}));
    assert_eq!(full["settings"], json!({"a": true}));
    assert_eq!(full["system_prompt"], "be brief");
    assert_eq!(full["llm_model"], "gpt-x");
}

#[tokio::test]
async fn create_validates_every_field_and_writes_nothing_on_failure() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let default_org = app.default_org_id().await;
    let other_org = app.create_org("Other").await;
    let foreign_project = insert_project(&app, &other_org, "theirs", true).await;
    let dead_project = insert_project(&app, &default_org, "dead", false).await;

    let base = json!({"name": "x", "agent_type": "hr"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = vec![
        (json!({"agent_type": "hr"}), ""),
        (json!({"name": "x"}), ""),
        (with("name", json!("   ")), "name"),
        (with("name", json!("n".repeat(256))), "name"),
        (with("agent_type", json!("sales")), ""),
        (with("temperature", json!(2.01)), "temperature"),
        (with("temperature", json!(-0.1)), "temperature"),
        (with("temperature", json!("hot")), ""),
        (with("max_tokens", json!(0)), "max_tokens"),
        (with("max_tokens", json!(128001)), "max_tokens"),
        (with("max_tokens", json!(1.5)), ""),
        (with("llm_model", json!("m".repeat(256))), "llm_model"),
        (with("description", json!("d".repeat(10_001))), "description"),
        (with("system_prompt", json!("p".repeat(100_001))), "system_prompt"),
        (with("tools", json!("search")), ""),
        (with("tools", json!(["ok", " "])), "tools"),
        (with("knowledge_base", json!([1])), "knowledge_base"),
        (with("settings", json!("s")), "settings"),
        (with("project_id", json!("not-a-uuid")), "project_id"),
        (with("project_id", json!(foreign_project)), "project_id"),
        (with("project_id", json!(dead_project)), "project_id"),
        (with("project_id", json!(uuid_like())), "project_id"),
    ];
    for (body, field) in cases {
        let r = app.post("/agent-configs", Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.detail().contains(field), "{body}: {}", r.detail());
    }
    assert_eq!(count_all(&app).await, 0);

    // the edges are allowed
    let ok = create_config(&app, &token, with("temperature", json!(0))).await;
    assert_eq!(ok["temperature"], 0.0);
    let ok = create_config(&app, &token, with("max_tokens", json!(1))).await;
    assert_eq!(ok["max_tokens"], 1);
    let ok = create_config(&app, &token, with("system_prompt", json!("p".repeat(100_000)))).await;
    assert_eq!(ok["system_prompt"].as_str().unwrap().len(), 100_000);
    let own_project = insert_project(&app, &default_org, "ours", true).await;
    let ok = create_config(&app, &token, with("project_id", json!(own_project))).await;
    assert_eq!(ok["project_id"], own_project.as_str());
}

fn uuid_like() -> String {
    "0190a0a0-0000-7000-8000-000000000000".to_string()
}

#[tokio::test]
async fn permissions_are_checked_on_every_endpoint() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let org = app.default_org_id().await;
    let id = create_config(&app, &admin, json!({"name": "a", "agent_type": "finance"})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, member) = app.member("mia").await; // agents:read only
    app.create_role(&org, "nobody", &["users:read"]).await;
    let (_, nobody) = app.create_user_in(&org, "nobody1", "nobody").await;
    app.create_role(&org, "agent_writer", &["agents:write"]).await;
    let (_, writer) = app.create_user_in(&org, "writer1", "agent_writer").await;

    let body = json!({"name": "b", "agent_type": "hr"});
    let path = format!("/agent-configs/{id}");
    let activate = format!("{path}/activate");

    // reading needs agents:read
    assert_eq!(app.get("/agent-configs", Some(&member)).await.status, 200);
    assert_eq!(app.get(&path, Some(&member)).await.status, 200);
    assert_eq!(app.get("/agent-configs", Some(&nobody)).await.status, 403);
    assert_eq!(app.get(&path, Some(&nobody)).await.status, 403);
    assert_eq!(app.get("/agent-configs", None).await.status, 401);
    assert_eq!(app.get(&path, None).await.status, 401);

    // writing needs agents:write
    for t in [&member, &nobody] {
        assert_eq!(app.post("/agent-configs", Some(t), body.clone()).await.status, 403);
        assert_eq!(app.put(&path, Some(t), json!({"name": "z"})).await.status, 403);
        assert_eq!(app.delete(&path, Some(t)).await.status, 403);
        assert_eq!(app.post_empty(&activate, Some(t)).await.status, 403);
    }
    assert_eq!(app.post("/agent-configs", None, body.clone()).await.status, 401);
    assert_eq!(app.put(&path, None, json!({"name": "z"})).await.status, 401);
    assert_eq!(app.delete(&path, None).await.status, 401);
    assert_eq!(app.post_empty(&activate, None).await.status, 401);
    assert_eq!(app.get(&path, Some(&admin)).await.body["name"], "a", "nothing changed");

    assert_eq!(app.post("/agent-configs", Some(&writer), body).await.status, 201);
    assert_eq!(app.put(&path, Some(&writer), json!({"name": "z"})).await.status, 200);
    assert_eq!(app.delete(&path, Some(&writer)).await.status, 204);
    assert_eq!(app.post_empty(&activate, Some(&writer)).await.status, 200);
}

#[tokio::test]
async fn another_organizations_config_is_not_found() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let org = app.create_org("Acme").await;
    let (_, acme_admin) = app.create_user_in(&org, "acme_admin", "admin").await;
    let theirs = create_config(&app, &admin, json!({"name": "default's", "agent_type": "rfp"})).await;
    let id = theirs["id"].as_str().unwrap();
    let path = format!("/agent-configs/{id}");

    assert_eq!(app.get(&path, Some(&acme_admin)).await.status, 404);
    assert_eq!(app.put(&path, Some(&acme_admin), json!({"name": "mine"})).await.status, 404);
    assert_eq!(app.delete(&path, Some(&acme_admin)).await.status, 404);
    assert_eq!(app.post_empty(&format!("{path}/activate"), Some(&acme_admin)).await.status, 404);
    let list = app.get("/agent-configs", Some(&acme_admin)).await;
    assert_eq!(list.body["total"], 0);
    // asking for another organization does not widen an ordinary caller's scope
    let default_org = app.default_org_id().await;
    let list = app.get(&format!("/agent-configs?organization_id={default_org}"), Some(&acme_admin)).await;
    assert_eq!(list.status, 403, "{:?}", list.body);
    let after = app.get(&path, Some(&admin)).await;
    assert_eq!(after.body["name"], "default's");
    assert_eq!(after.body["is_active"], true);

    // malformed and unknown ids are plain 404s
    for bad in ["nope", "0190a0a0-0000-7000-8000-000000000000"] {
        let r = app.get(&format!("/agent-configs/{bad}"), Some(&admin)).await;
        assert_eq!(r.status, 404);
        assert!(!r.detail().is_empty());
        assert_eq!(app.put(&format!("/agent-configs/{bad}"), Some(&admin), json!({})).await.status, 404);
        assert_eq!(app.delete(&format!("/agent-configs/{bad}"), Some(&admin)).await.status, 404);
    }

    // the superuser reaches every organization and may narrow the list to one
    let acme_config = create_config(&app, &acme_admin, json!({"name": "acme's", "agent_type": "hr"})).await;
    assert_eq!(
        app.get(&format!("/agent-configs/{}", acme_config["id"].as_str().unwrap()), Some(&admin)).await.status,
        200
    );
    assert_eq!(app.get("/agent-configs", Some(&admin)).await.body["total"], 2);
    let narrowed = app.get(&format!("/agent-configs?organization_id={org}"), Some(&admin)).await;
    assert_eq!(narrowed.body["total"], 1);
    assert_eq!(narrowed.body["data"][0]["name"], "acme's");
}

#[tokio::test]
async fn update_changes_only_the_fields_sent() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let org = app.default_org_id().await;
    let p1 = insert_project(&app, &org, "p1", true).await;
    let p2 = insert_project(&app, &org, "p2", true).await;
    let foreign = insert_project(&app, &app.create_org("Other").await, "theirs", true).await;
    let c = create_config(
        &app,
        &token,
        json!({"name": "a", "description": "d", "agent_type": "rfp", "project_id": p1, "tools": ["t"],
               "system_prompt": "sp", "settings": {"k": 1}}),
    )
    .await;
    let path = format!("/agent-configs/{}", c["id"].as_str().unwrap());

    let r = app.put(&path, Some(&token), json!({"temperature": 1.5})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["temperature"], 1.5);
    for k in ["name", "description", "agent_type", "project_id", "tools", "system_prompt", "settings", "created_at"] {
        assert_eq!(r.body[k], c[k], "{k} kept");
    }
    assert_ne!(r.body["updated_at"], c["updated_at"]);

    let r = app
        .put(
            &path,
            Some(&token),
            json!({"name": "b", "agent_type": "documentation", "project_id": p2, "tools": [], "max_tokens": 10,
                   "llm_model": "m2", "knowledge_base": {"x": 1}, "settings": {}}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["name"], "b");
    assert_eq!(r.body["agent_type"], "documentation");
    assert_eq!(r.body["project_id"], p2.as_str());
    assert_eq!(r.body["tools"], json!([]));
    assert_eq!(r.body["max_tokens"], 10);
    assert_eq!(r.body["llm_model"], "m2");
    assert_eq!(r.body["knowledge_base"], json!({"x": 1}));
    assert_eq!(r.body["settings"], json!({}));
    assert_eq!(r.body["description"], "d");

    // null clears the nullable fields
    let r = app.put(&path, Some(&token), json!({"project_id": null, "description": null, "system_prompt": null})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["project_id"], Value::Null);
    assert_eq!(r.body["description"], Value::Null);
    assert_eq!(r.body["system_prompt"], Value::Null);
    assert_eq!(r.body["name"], "b");

    // failures change nothing
    let before = app.get(&path, Some(&token)).await.body;
    for (body, field) in [
        (json!({"name": "c", "temperature": 3}), "temperature"),
        (json!({"name": "c", "max_tokens": 0}), "max_tokens"),
        (json!({"name": "c", "project_id": foreign}), "project_id"),
        (json!({"name": "c", "project_id": "xyz"}), "project_id"),
        (json!({"name": ""}), "name"),
        (json!({"name": "c", "settings": [1]}), "settings"),
        (json!({"name": "c", "agent_type": "nope"}), ""),
    ] {
        let r = app.put(&path, Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.detail().contains(field), "{body}: {}", r.detail());
    }
    assert_eq!(app.get(&path, Some(&token)).await.body, before);
}

#[tokio::test]
async fn delete_is_soft_and_activate_restores() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let c = create_config(&app, &token, json!({"name": "gone soon", "agent_type": "hr"})).await;
    let keep = create_config(&app, &token, json!({"name": "stays", "agent_type": "hr"})).await;
    let id = c["id"].as_str().unwrap();
    let path = format!("/agent-configs/{id}");

    let r = app.delete(&path, Some(&token)).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);

    let active = app.get("/agent-configs", Some(&token)).await;
    assert_eq!(active.body["total"], 1);
    assert_eq!(active.body["data"][0]["id"], keep["id"]);
    assert_eq!(app.get("/agent-configs?is_active=true", Some(&token)).await.body["total"], 1);
    let inactive = app.get("/agent-configs?is_active=false", Some(&token)).await;
    assert_eq!(inactive.body["total"], 1);
    assert_eq!(inactive.body["data"][0]["id"], id);

    let got = app.get(&path, Some(&token)).await;
    assert_eq!(got.status, 200, "still readable by id");
    assert_eq!(got.body["is_active"], false);

    let r = app.post_empty(&format!("{path}/activate"), Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["is_active"], true);
    assert_eq!(app.get("/agent-configs", Some(&token)).await.body["total"], 2);
}

#[tokio::test]
async fn list_pages_searches_and_filters() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let org = app.default_org_id().await;
    let project = insert_project(&app, &org, "p", true).await;

    let mut ids = Vec::new();
    for i in 0..23 {
        let agent_type = if i % 2 == 0 { "rfp" } else { "jira" };
        let mut body = json!({"name": format!("agent {i:02}"), "agent_type": agent_type});
        if i < 3 {
            body["project_id"] = json!(project);
        }
        ids.push(create_config(&app, &token, body).await["id"].as_str().unwrap().to_string());
    }
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();

    let p = app.get("/agent-configs?limit=10", Some(&token)).await;
    assert_eq!(p.status, 200);
    assert_eq!(
        (p.body["total"].as_i64(), p.body["skip"].as_i64(), p.body["limit"].as_i64()),
        (Some(23), Some(0), Some(10))
    );
    assert_eq!(p.body["has_more"], true);
    let page_ids: Vec<&str> = p.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    assert_eq!(page_ids, newest_first[..10].iter().map(String::as_str).collect::<Vec<_>>());
    let last = app.get("/agent-configs?limit=10&skip=20", Some(&token)).await;
    assert_eq!(last.body["data"].as_array().unwrap().len(), 3);
    assert_eq!(last.body["has_more"], false);
    assert_eq!(last.body["data"][2]["id"], ids[0].as_str());
    assert_eq!(app.get("/agent-configs", Some(&token)).await.body["data"].as_array().unwrap().len(), 20);
    for bad in ["limit=0", "limit=101", "skip=-1", "limit=x"] {
        let r = app.get(&format!("/agent-configs?{bad}"), Some(&token)).await;
        assert_eq!(r.status, 400, "{bad}");
        assert!(!r.detail().is_empty());
    }

    // filters
    let rfp = app.get("/agent-configs?agent_type=rfp&limit=100", Some(&token)).await;
    assert_eq!(rfp.body["total"], 12);
    assert!(rfp.body["data"].as_array().unwrap().iter().all(|c| c["agent_type"] == "rfp"));
    assert_eq!(app.get("/agent-configs?agent_type=sales", Some(&token)).await.status, 400);
    let in_project = app.get(&format!("/agent-configs?project_id={project}"), Some(&token)).await;
    assert_eq!(in_project.body["total"], 3);
    assert_eq!(
        app.get(&format!("/agent-configs?project_id={project}&agent_type=jira"), Some(&token)).await.body["total"],
        1
    );

    // search: name or description, case-insensitive, wildcards literal
    create_config(&app, &token, json!({"name": "Half 50% off", "agent_type": "hr"})).await;
    create_config(&app, &token, json!({"name": "plain", "description": "Under_Score here", "agent_type": "hr"})).await;
    create_config(&app, &token, json!({"name": "UnderXScore", "agent_type": "hr"})).await;
    assert_eq!(search(&app, &token, "50%25").await["total"], 1);
    assert_eq!(search(&app, &token, "%25").await["total"], 1);
    let under = search(&app, &token, "under_score").await;
    assert_eq!(under["total"], 1, "_ is literal: {under}");
    assert_eq!(under["data"][0]["name"], "plain");
    assert_eq!(search(&app, &token, "AGENT%2001").await["total"], 1);
    assert_eq!(search(&app, &token, "agent").await["total"], 23);
    assert_eq!(search(&app, &token, "nothing-like-this").await["total"], 0);
}

async fn search(app: &TestApp, token: &str, q: &str) -> Value {
    app.get(&format!("/agent-configs?search={q}"), Some(token)).await.body
}
