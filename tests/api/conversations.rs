//! /conversations and their messages
use copilot::store::error::StoreResult;
use std::collections::HashSet;

use serde_json::{Value, json};

use copilot::{api::conversations::MessageRole, store::conversations::NewMessage};

use crate::{agents::insert_project, helpers::*};

async fn create_conversation(app: &TestApp, token: &str, body: Value) -> Value {
    let r = app.post("/conversations", Some(token), body).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn post_message(app: &TestApp, token: &str, conversation: &str, content: &str) -> Value {
    let r = app
        .post(
            &format!("/conversations/{conversation}/messages"),
            Some(token),
            json!({"role": "user", "content": content}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.body
}

async fn agent_config(app: &TestApp, admin: &str, name: &str) -> String {
    let r = app.post("/agent-configs", Some(admin), json!({"name": name, "agent_type": "documentation"})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    r.id()
}

async fn conversation_rows(app: &TestApp) -> i64 {
    app.state.store.read(|c| sql_i64(c, "SELECT COUNT(*) FROM conversations", &[])).await.unwrap()
}

#[tokio::test]
async fn a_member_creates_reads_updates_and_deletes_their_conversation() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let org = app.default_org_id().await;
    let agent = agent_config(&app, &admin, "docs").await;
    let project = insert_project(&app, &org, "p", true).await;
    let (user, token) = app.member("mia").await;

    let c = create_conversation(
        &app,
        &token,
        json!({"title": "  First chat ", "agent_config_id": agent, "project_id": project, "context": {"lang": "en"}}),
    )
    .await;
    assert_eq!(c["title"], "First chat");
    assert_eq!(c["user_id"], user["id"]);
    assert_eq!(c["organization_id"], org.as_str());
    assert_eq!(c["agent_config_id"], agent.as_str());
    assert_eq!(c["project_id"], project.as_str());
    assert_eq!(c["context"], json!({"lang": "en"}));
    assert_eq!(c["is_archived"], false);
    assert_eq!(c["message_count"], 0);
    assert!(c["created_at"].is_string() && c["updated_at"] == c["created_at"]);

    let bare = create_conversation(&app, &token, json!({})).await;
    assert_eq!(bare["title"], Value::Null);
    assert_eq!(bare["agent_config_id"], Value::Null);
    assert_eq!(bare["context"], json!({}));

    let id = c["id"].as_str().unwrap();
    let path = format!("/conversations/{id}");
    let got = app.get(&path, Some(&token)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["title"], "First chat");
    assert_eq!(got.body["messages"], json!([]));

    let r = app.put(&path, Some(&token), json!({"is_archived": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["is_archived"], true);
    assert_eq!(r.body["title"], "First chat");
    assert_eq!(r.body["context"], json!({"lang": "en"}));
    assert_ne!(r.body["updated_at"], c["updated_at"]);
    let r = app.put(&path, Some(&token), json!({"title": "Renamed", "context": {"k": [1]}})).await;
    assert_eq!((r.body["title"].as_str(), r.body["is_archived"].as_bool()), (Some("Renamed"), Some(true)));
    assert_eq!(r.body["context"], json!({"k": [1]}));
    let r = app.put(&path, Some(&token), json!({"title": null, "is_archived": false})).await;
    assert_eq!(r.body["title"], Value::Null);
    assert_eq!(r.body["is_archived"], false);

    for (body, field) in [
        (json!({"title": "t".repeat(256)}), "title"),
        (json!({"context": [1]}), "context"),
        (json!({"is_archived": "yes"}), ""),
    ] {
        let r = app.put(&path, Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert!(r.detail().contains(field), "{}", r.detail());
    }

    let r = app.delete(&path, Some(&token)).await;
    assert_eq!(r.status, 204);
    assert_eq!(app.get(&path, Some(&token)).await.status, 404);
    assert_eq!(app.put(&path, Some(&token), json!({"title": "x"})).await.status, 404);
    assert_eq!(app.delete(&path, Some(&token)).await.status, 404);
    assert_eq!(app.get(&format!("{path}/messages"), Some(&token)).await.status, 404);
    let r = app.post(&format!("{path}/messages"), Some(&token), json!({"role": "user", "content": "hi"})).await;
    assert_eq!(r.status, 404);
    let list = app.get("/conversations", Some(&token)).await;
    assert_eq!(list.body["total"], 1);
    assert_eq!(list.body["data"][0]["id"], bare["id"]);
}

#[tokio::test]
async fn nobody_else_sees_or_changes_my_conversation() {
    let app = spawn_app().await;
    let superuser = app.admin_token().await;
    let org = app.default_org_id().await;
    let (_, owner) = app.member("owner").await;
    let (_, colleague) = app.member("colleague").await;
    let (_, org_admin) = app.create_user_in(&org, "orgadmin", "admin").await;
    let other_org = app.create_org("Other").await;
    let (_, outsider) = app.create_user_in(&other_org, "outsider", "admin").await;

    let c = create_conversation(&app, &owner, json!({"title": "private"})).await;
    let id = c["id"].as_str().unwrap();
    let msg = post_message(&app, &owner, id, "secret").await;
    let path = format!("/conversations/{id}");
    let msg_path = format!("{path}/messages/{}", msg["id"].as_str().unwrap());

    for token in [&colleague, &org_admin, &superuser, &outsider] {
        assert_eq!(app.get(&path, Some(token)).await.status, 404);
        assert_eq!(app.put(&path, Some(token), json!({"title": "mine"})).await.status, 404);
        assert_eq!(app.delete(&path, Some(token)).await.status, 404);
        assert_eq!(app.get(&format!("{path}/messages"), Some(token)).await.status, 404);
        let r = app.post(&format!("{path}/messages"), Some(token), json!({"role": "user", "content": "x"})).await;
        assert_eq!(r.status, 404);
        assert_eq!(app.get(&msg_path, Some(token)).await.status, 404);
        assert_eq!(app.delete(&msg_path, Some(token)).await.status, 404);
        assert_eq!(app.get("/conversations", Some(token)).await.body["total"], 0);
    }
    let mine = app.get(&path, Some(&owner)).await;
    assert_eq!(mine.body["title"], "private");
    assert_eq!(mine.body["message_count"], 1);
    assert_eq!(mine.body["messages"][0]["content"], "secret");

    // malformed and unknown ids are 404 too
    for bad in ["nope", "0190a0a0-0000-7000-8000-000000000000"] {
        assert_eq!(app.get(&format!("/conversations/{bad}"), Some(&owner)).await.status, 404);
        assert_eq!(app.get(&format!("{path}/messages/{bad}"), Some(&owner)).await.status, 404);
        assert_eq!(app.delete(&format!("{path}/messages/{bad}"), Some(&owner)).await.status, 404);
    }
    // a message id under the wrong conversation is not found
    let other = create_conversation(&app, &owner, json!({})).await;
    let wrong = format!("/conversations/{}/messages/{}", other["id"].as_str().unwrap(), msg["id"].as_str().unwrap());
    assert_eq!(app.get(&wrong, Some(&owner)).await.status, 404);
    assert_eq!(app.delete(&wrong, Some(&owner)).await.status, 404);
    assert_eq!(app.get(&msg_path, Some(&owner)).await.status, 200);
}

#[tokio::test]
async fn conversations_need_the_permission_and_a_token() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    app.create_role(&org, "reader", &["agents:read", "users:read"]).await;
    let (_, reader) = app.create_user_in(&org, "reader1", "reader").await;
    // a conversation of someone who may hold conversations
    let (_, owner) = app.member("owner").await;
    let c = create_conversation(&app, &owner, json!({})).await;
    let id = c["id"].as_str().unwrap();
    let m = post_message(&app, &owner, id, "hello").await;
    let path = format!("/conversations/{id}");
    let msg_path = format!("{path}/messages/{}", m["id"].as_str().unwrap());

    for token in [Some(reader.as_str()), None] {
        let expected = if token.is_some() { 403 } else { 401 };
        assert_eq!(app.get("/conversations", token).await.status, expected);
        assert_eq!(app.post("/conversations", token, json!({})).await.status, expected);
        assert_eq!(app.get(&path, token).await.status, expected);
        assert_eq!(app.put(&path, token, json!({})).await.status, expected);
        assert_eq!(app.delete(&path, token).await.status, expected);
        assert_eq!(app.get(&format!("{path}/messages"), token).await.status, expected);
        let r = app.post(&format!("{path}/messages"), token, json!({"role": "user", "content": "x"})).await;
        assert_eq!(r.status, expected);
        assert_eq!(app.get(&msg_path, token).await.status, expected);
        assert_eq!(app.delete(&msg_path, token).await.status, expected);
    }
    let r = app.get("/conversations", None).await;
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(conversation_rows(&app).await, 1);
}

#[tokio::test]
async fn create_checks_agent_config_and_project() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let org = app.default_org_id().await;
    let other_org = app.create_org("Other").await;
    let (_, other_admin) = app.create_user_in(&other_org, "other_admin", "admin").await;
    let foreign_agent = agent_config(&app, &other_admin, "theirs").await;
    let dead_agent = agent_config(&app, &admin, "retired").await;
    assert_eq!(app.delete(&format!("/agent-configs/{dead_agent}"), Some(&admin)).await.status, 204);
    let foreign_project = insert_project(&app, &other_org, "theirs", true).await;
    let dead_project = insert_project(&app, &org, "dead", false).await;
    let (_, token) = app.member("mia").await;

    let unknown = "0190a0a0-0000-7000-8000-000000000000";
    for (body, field) in [
        (json!({"agent_config_id": "nope"}), "agent_config_id"),
        (json!({"agent_config_id": unknown}), "agent_config_id"),
        (json!({"agent_config_id": foreign_agent}), "agent_config_id"),
        (json!({"agent_config_id": dead_agent}), "agent_config_id"),
        (json!({"project_id": "nope"}), "project_id"),
        (json!({"project_id": unknown}), "project_id"),
        (json!({"project_id": foreign_project}), "project_id"),
        (json!({"project_id": dead_project}), "project_id"),
        (json!({"title": "t".repeat(256)}), "title"),
        (json!({"context": "text"}), "context"),
        (json!({"context": [1]}), "context"),
    ] {
        let r = app.post("/conversations", Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {:?}", r.body);
        assert!(r.detail().contains(field), "{body}: {}", r.detail());
    }
    let inactive = app.post("/conversations", Some(&token), json!({"agent_config_id": dead_agent})).await;
    assert!(inactive.detail().contains("inactive"), "{}", inactive.detail());
    assert_eq!(conversation_rows(&app).await, 0);

    // reactivated, the agent config works again
    assert_eq!(app.post_empty(&format!("/agent-configs/{dead_agent}/activate"), Some(&admin)).await.status, 200);
    let c = create_conversation(&app, &token, json!({"agent_config_id": dead_agent})).await;
    assert_eq!(c["agent_config_id"], dead_agent.as_str());
    // a superuser's conversations live in the superuser's own organization
    let own = create_conversation(&app, &admin, json!({"agent_config_id": dead_agent})).await;
    assert_eq!(own["organization_id"], org.as_str());
    let r = app.post("/conversations", Some(&admin), json!({"agent_config_id": foreign_agent})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn list_pages_searches_and_filters_my_conversations() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let org = app.default_org_id().await;
    let agent = agent_config(&app, &admin, "docs").await;
    let project = insert_project(&app, &org, "p", true).await;
    let (_, token) = app.member("mia").await;
    let (_, someone) = app.member("someone").await;
    create_conversation(&app, &someone, json!({"title": "chat 00"})).await;

    let mut ids = Vec::new();
    for i in 0..25 {
        let mut body = json!({"title": format!("chat {i:02}")});
        if i % 5 == 0 {
            body["agent_config_id"] = json!(agent);
        }
        if i < 4 {
            body["project_id"] = json!(project);
        }
        ids.push(create_conversation(&app, &token, body).await["id"].as_str().unwrap().to_string());
    }
    for id in &ids[..3] {
        assert_eq!(
            app.put(&format!("/conversations/{id}"), Some(&token), json!({"is_archived": true})).await.status,
            200
        );
    }

    let p = app.get("/conversations?limit=10&skip=10", Some(&token)).await;
    assert_eq!(p.status, 200);
    assert_eq!(p.body["total"], 25);
    assert_eq!(p.body["skip"], 10);
    assert_eq!(p.body["limit"], 10);
    assert_eq!(p.body["has_more"], true);
    let got: Vec<&str> = p.body["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap()).collect();
    let expected: Vec<&str> = ids.iter().rev().skip(10).take(10).map(String::as_str).collect();
    assert_eq!(got, expected, "newest first");
    let tail = app.get("/conversations?limit=10&skip=20", Some(&token)).await;
    assert_eq!(tail.body["data"].as_array().unwrap().len(), 5);
    assert_eq!(tail.body["has_more"], false);
    assert_eq!(app.get("/conversations?limit=101", Some(&token)).await.status, 400);

    let q = |query: &str| format!("/conversations?{query}");
    assert_eq!(app.get(&q("is_archived=true"), Some(&token)).await.body["total"], 3);
    assert_eq!(app.get(&q("is_archived=false"), Some(&token)).await.body["total"], 22);
    assert_eq!(app.get(&q(&format!("agent_config_id={agent}")), Some(&token)).await.body["total"], 5);
    assert_eq!(app.get(&q(&format!("project_id={project}")), Some(&token)).await.body["total"], 4);
    assert_eq!(app.get(&q(&format!("project_id={project}&is_archived=true")), Some(&token)).await.body["total"], 3);
    assert_eq!(app.get(&q("agent_config_id=nope"), Some(&token)).await.body["total"], 0);

    // search over title: case-insensitive, wildcards literal
    create_conversation(&app, &token, json!({"title": "100% Done"})).await;
    create_conversation(&app, &token, json!({"title": "snake_case talk"})).await;
    create_conversation(&app, &token, json!({"title": "snakeXcase"})).await;
    assert_eq!(app.get(&q("search=CHAT%2001"), Some(&token)).await.body["total"], 1);
    assert_eq!(app.get(&q("search=chat"), Some(&token)).await.body["total"], 25);
    assert_eq!(app.get(&q("search=0%25"), Some(&token)).await.body["total"], 1);
    let r = app.get(&q("search=e_c"), Some(&token)).await;
    assert_eq!(r.body["total"], 1);
    assert_eq!(r.body["data"][0]["title"], "snake_case talk");
}

#[tokio::test]
async fn messages_are_validated_counted_paged_and_soft_deleted() {
    let app = spawn_app().await;
    let (_, token) = app.member("mia").await;
    let c = create_conversation(&app, &token, json!({"title": "t"})).await;
    let id = c["id"].as_str().unwrap();
    let path = format!("/conversations/{id}/messages");

    for (body, field) in [
        (json!({"role": "system", "content": "x"}), ""),
        (json!({"content": "x"}), ""),
        (json!({"role": "user"}), ""),
        (json!({"role": "user", "content": ""}), "content"),
        (json!({"role": "user", "content": "  \n "}), "content"),
        (json!({"role": "user", "content": "é".repeat(100_001)}), "content"),
        (json!({"role": "user", "content": "x", "metadata": [1]}), "metadata"),
    ] {
        let r = app.post(&path, Some(&token), body).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.detail().contains(field), "{}", r.detail());
    }
    assert_eq!(app.get(&format!("/conversations/{id}"), Some(&token)).await.body["message_count"], 0);

    // the limit counts characters, not bytes
    let long = app.post(&path, Some(&token), json!({"role": "assistant", "content": "é".repeat(100_000)})).await;
    assert_eq!(long.status, 201);
    assert_eq!(long.body["role"], "assistant");
    assert_eq!(long.body["content"].as_str().unwrap().chars().count(), 100_000);
    let r = app.post(&path, Some(&token), json!({"role": "user", "content": " hi ", "metadata": {"tokens": 3}})).await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["content"], " hi ", "content is stored as sent");
    assert_eq!(r.body["metadata"], json!({"tokens": 3}));
    assert_eq!(r.body["conversation_id"], id);
    let got = app.get(&format!("{path}/{}", r.id()), Some(&token)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, r.body);

    let mut ids = vec![long.id(), r.id()];
    for i in 0..23 {
        ids.push(post_message(&app, &token, id, &format!("m{i}")).await["id"].as_str().unwrap().to_string());
    }
    let conv = app.get(&format!("/conversations/{id}"), Some(&token)).await.body;
    assert_eq!(conv["message_count"], 25);
    assert!(conv["updated_at"].as_str() > c["updated_at"].as_str(), "a message touches the conversation");
    let all: Vec<&str> = conv["messages"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(all, ids.iter().map(String::as_str).collect::<Vec<_>>(), "oldest first");

    let p = app.get(&format!("{path}?skip=10&limit=10"), Some(&token)).await;
    assert_eq!(p.status, 200);
    assert_eq!((p.body["total"].as_i64(), p.body["has_more"].as_bool()), (Some(25), Some(true)));
    let page: Vec<&str> = p.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(page, ids[10..20].iter().map(String::as_str).collect::<Vec<_>>());
    let tail = app.get(&format!("{path}?skip=20"), Some(&token)).await;
    assert_eq!(tail.body["data"].as_array().unwrap().len(), 5);
    assert_eq!(tail.body["has_more"], false);
    assert_eq!(app.get(&format!("{path}?limit=0"), Some(&token)).await.status, 400);

    // soft delete: gone for the owner, and uncounted
    let victim = format!("{path}/{}", ids[1]);
    assert_eq!(app.delete(&victim, Some(&token)).await.status, 204);
    assert_eq!(app.get(&victim, Some(&token)).await.status, 404);
    assert_eq!(app.delete(&victim, Some(&token)).await.status, 404);
    let list = app.get(&format!("{path}?limit=100"), Some(&token)).await;
    assert_eq!(list.body["total"], 24);
    assert_eq!(list.body["data"].as_array().unwrap().len(), 24);
    assert!(list.body["data"].as_array().unwrap().iter().all(|m| m["id"] != ids[1].as_str()));
    let conv = app.get(&format!("/conversations/{id}"), Some(&token)).await.body;
    assert_eq!(conv["message_count"], 24);
    assert_eq!(conv["messages"].as_array().unwrap().len(), 24);
}

#[tokio::test]
async fn concurrent_messages_are_all_kept_and_counted() {
    let app = spawn_app().await;
    let (_, token) = app.member("mia").await;
    let c = create_conversation(&app, &token, json!({})).await;
    let id = c["id"].as_str().unwrap();
    let url = app.url(&format!("/api/v1/conversations/{id}/messages"));

    const N: usize = 40;
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (client, url, token) = (app.client.clone(), url.clone(), token.clone());
            tokio::spawn(async move {
                let resp = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("n{i}")}))
                    .send()
                    .await
                    .expect("request");
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.expect("json body");
                (status, body)
            })
        })
        .collect();
    let mut created = HashSet::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 201, "{body}");
        assert!(created.insert(body["id"].as_str().unwrap().to_string()));
    }
    assert_eq!(created.len(), N);

    let list = app.get(&format!("/conversations/{id}/messages?limit=100"), Some(&token)).await;
    assert_eq!(list.body["total"], N as i64);
    let listed: Vec<String> =
        list.body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(listed.len(), N);
    assert_eq!(listed.iter().cloned().collect::<HashSet<_>>(), created, "every id exactly once");
    let stamps: Vec<&str> =
        list.body["data"].as_array().unwrap().iter().map(|m| m["created_at"].as_str().unwrap()).collect();
    assert!(stamps.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    let conv = app.get(&format!("/conversations/{id}"), Some(&token)).await;
    assert_eq!(conv.body["message_count"], N as i64);
}

#[tokio::test]
async fn a_long_conversation_is_served_whole_and_as_the_pages_list_it() {
    let app = spawn_app().await;
    let (user, token) = app.member("mia").await;
    let c = create_conversation(&app, &token, json!({"title": "long", "context": {"k": [1, 2]}})).await;
    let id = c["id"].as_str().unwrap().to_string();
    // 45 messages of 100,000 characters (with characters JSON escapes), in groups sharing one
    // timestamp so that ties fall on the boundaries of the server's reading steps; one deleted
    let (owner, cid) = (user["id"].as_str().unwrap().to_string(), id.clone());
    app.state
        .store
        .write(move |tx| -> StoreResult<_> {
            for i in 0..45 {
                let now = format!("2026-01-01T00:00:{:02}.000000Z", i / 3);
                let content = format!("{i}\"\\\n\u{1}é{}", "x".repeat(100_000 - 5 - i.to_string().len()));
                let role = if i % 2 == 0 { MessageRole::User } else { MessageRole::Assistant };
                let new =
                    NewMessage { id: copilot::db::new_id(), role, content, metadata: json!({"i": i}).to_string() };
                let m = copilot::store::conversations::insert_message(tx, &owner, &cid, &new, &now)?.unwrap();
                if i == 20 {
                    copilot::store::conversations::delete_message(tx, &owner, &cid, &m.id, &now)?;
                }
            }
            Ok(())
        })
        .await
        .unwrap();
    let got = app.get(&format!("/conversations/{id}"), Some(&token)).await;
    assert_eq!(got.status, 200);
    assert!(got.header("content-type").unwrap().starts_with("application/json"));
    let page = app.get(&format!("/conversations/{id}/messages?limit=100"), Some(&token)).await;
    assert_eq!(page.body["total"], 44);
    assert_eq!(got.body["messages"], page.body["data"], "every message, oldest first, as listed");
    assert_eq!(got.body["messages"].as_array().unwrap().len(), 44);
    assert_eq!(got.body["messages"][43]["content"].as_str().unwrap().chars().count(), 100_000);
    let mut fields = got.body.clone();
    fields.as_object_mut().unwrap().remove("messages");
    let listed = app.get("/conversations", Some(&token)).await;
    assert_eq!(fields, listed.body["data"][0], "the conversation's own fields");
    assert_eq!(fields["message_count"], 44);

    // without messages, and another user's: as before
    let empty = create_conversation(&app, &token, json!({})).await;
    let got = app.get(&format!("/conversations/{}", empty["id"].as_str().unwrap()), Some(&token)).await;
    assert_eq!(got.body["messages"], json!([]));
    let (_, other) = app.member("leo").await;
    let r = app.get(&format!("/conversations/{id}"), Some(&other)).await;
    assert_eq!(r.status, 404);
    assert!(!r.detail().is_empty());
}
