//! The audit log (SPEC §8): one event per successful write and per authentication event, in the
//! write's transaction; who, what, target, changes without secrets, client address; read by org
//! admins (their organization) and superusers.

use serde_json::{Value, json};

use crate::helpers::*;

/// The events of `query` as the superuser sees them.
async fn events(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/audit-events?limit=100&{query}"), Some(token)).await;
    assert_eq!(r.status, 200, "{query}: {:?}", r.body);
    r.body["data"].as_array().unwrap().clone()
}

async fn total(app: &TestApp, token: &str) -> i64 {
    app.get("/audit-events?limit=1", Some(token)).await.body["total"].as_i64().unwrap()
}

#[tokio::test]
async fn every_write_records_one_event_with_its_actor_target_and_changes_but_no_secret() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let root_id = app.get("/auth/me", Some(&root)).await.body["id"].as_str().unwrap().to_string();
    let before = total(&app, &root).await;

    let r = app
        .post(
            "/users",
            Some(&root),
            json!({"username": "carol", "email": "carol@example.com", "password": "s3cret-Passw0rd", "full_name": "Carol"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let carol = r.id();
    let r = app
        .put(&format!("/users/{carol}"), Some(&root), json!({"full_name": "Carol C", "password": "An0ther-secret"}))
        .await;
    assert_eq!(r.status, 200);
    let r = app.post("/projects", Some(&root), json!({"name": "Apollo"})).await;
    let project = r.id();
    assert_eq!(app.delete(&format!("/projects/{project}"), Some(&root)).await.status, 204);
    assert_eq!(total(&app, &root).await, before + 4);

    let all = events(&app, &root, "").await;
    let actions: Vec<&str> = all.iter().take(4).map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["project.delete", "project.create", "user.update", "user.create"], "newest first");
    let created = &all[3];
    assert_eq!(created["actor_user_id"], root_id.as_str());
    assert_eq!(created["actor_api_key_id"], Value::Null);
    assert_eq!(created["target_type"], "user");
    assert_eq!(created["target_id"], carol.as_str());
    assert_eq!(created["organization_id"], app.default_org_id().await.as_str());
    assert_eq!(created["ip"], "127.0.0.1");
    assert_eq!(created["changes"]["username"], "carol");
    assert_eq!(created["changes"]["password"], "[redacted]");
    assert_eq!(all[2]["changes"], json!({"full_name": "Carol C", "password": "[redacted]"}));
    for key in [
        "id",
        "at",
        "organization_id",
        "actor_user_id",
        "actor_api_key_id",
        "action",
        "target_type",
        "target_id",
        "ip",
        "user_agent",
        "changes",
    ] {
        assert!(created.get(key).is_some(), "{key} missing in {created}");
    }
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains("s3cret-Passw0rd") && !text.contains("An0ther-secret"), "a password reached the log");
}

#[tokio::test]
async fn a_failed_request_leaves_no_event() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let (_, member) = app.member("mel").await;
    let before = total(&app, &root).await;
    let user = json!({"username": "mel", "email": "other@example.com", "password": PASSWORD});
    assert_eq!(app.post("/users", Some(&root), user).await.status, 409, "duplicate username");
    let other = json!({"username": "x1", "email": "x1@example.com", "password": PASSWORD});
    assert_eq!(app.post("/users", Some(&member), other).await.status, 403);
    assert_eq!(app.post("/projects", Some(&root), json!({"name": ""})).await.status, 400);
    let missing = "00000000-0000-0000-0000-000000000000";
    assert_eq!(app.delete(&format!("/roles/{missing}"), Some(&root)).await.status, 404);
    // a message to no conversation: its event, written ahead of the insert, is rolled back
    let message = json!({"role": "user", "content": "hello"});
    assert_eq!(app.post(&format!("/conversations/{missing}/messages"), Some(&root), message.clone()).await.status, 404);
    // to a conversation, the event names the message created
    let conversation = app.post("/conversations", Some(&root), json!({"title": "t"})).await.id();
    let r = app.post(&format!("/conversations/{conversation}/messages"), Some(&root), message).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let created = events(&app, &root, "action=message.create").await;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!((created[0]["target_type"].as_str(), &created[0]["target_id"]), (Some("message"), &r.body["id"]));
    assert_eq!(created[0]["changes"]["role"], "user", "{created:?}");
    let before = before + 2; // the conversation and the message
    assert_eq!(app.post("/roles", Some(&root), json!({"name": "r", "permissions": ["nope:x"]})).await.status, 400);
    // reads are not writes
    app.get("/users", Some(&root)).await;
    assert_eq!(total(&app, &root).await, before);
}

#[tokio::test]
async fn authentication_events_are_recorded() {
    let app = spawn_app_with(|c| c.auth.max_failed_logins = 2).await;
    let root = app.admin_token().await;
    let (user, _) = app.member("dora").await;
    let dora = user["id"].as_str().unwrap();
    let default_org = app.default_org_id().await;

    let bad = |name: &str| json!({"username": name, "password": "wrong-password"});
    assert_eq!(app.post("/auth/login", None, bad("dora")).await.status, 401);
    assert_eq!(app.post("/auth/login", None, bad("nobody-at-all")).await.status, 401);
    let pair = app.login_pair("dora", PASSWORD).await;
    let token = pair["access_token"].as_str().unwrap();
    let refresh = pair["refresh_token"].as_str().unwrap();
    let again = app.post("/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(again.status, 200);
    assert_eq!(app.post("/auth/refresh", None, json!({"refresh_token": refresh})).await.status, 401, "reuse");
    let token2 = app.login("dora", PASSWORD).await;
    let wrong = json!({"current_password": "not-my-password", "new_password": "brand-new-pass-1"});
    assert_eq!(app.post("/auth/change-password", Some(&token2), wrong).await.status, 400);
    let change = json!({"current_password": PASSWORD, "new_password": "brand-new-pass-1"});
    assert_eq!(app.post("/auth/change-password", Some(&token2), change).await.status, 200);
    assert_eq!(app.post_empty("/auth/logout", Some(&token2)).await.status, 200);
    for _ in 0..3 {
        app.post("/auth/login", None, bad("dora")).await;
    }
    let _ = token;

    let mine = events(&app, &root, &format!("target_id={dora}&target_type=user")).await;
    let actions: Vec<&str> = mine.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "auth.register",
            "auth.login_failed",
            "auth.login_failed",
            "auth.password_change",
            "auth.login_failed",
            "auth.login_locked",
            "auth.login_locked"
        ],
    );
    let failed = &mine[mine.len() - 2];
    assert_eq!(mine[4]["changes"]["during"], "password change");
    assert_eq!(failed["actor_user_id"], Value::Null, "nobody was signed in");
    assert_eq!(failed["organization_id"], default_org.as_str());
    assert_eq!(failed["changes"]["username"], "dora");

    let by_dora = events(&app, &root, &format!("actor_user_id={dora}")).await;
    let actions: Vec<&str> = by_dora.iter().rev().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "auth.register",
            "auth.login",
            "auth.login",
            "auth.refresh",
            "auth.refresh_reuse",
            "auth.login",
            "auth.login_failed",
            "auth.password_change",
            "auth.logout"
        ]
    );
    assert!(by_dora.iter().filter(|e| e["target_type"] == "session").all(|e| e["target_id"].is_string()));

    // an unknown username belongs to no organization: superusers see it, org admins do not
    let unknown = events(&app, &root, "action=auth.login_failed").await;
    assert!(unknown.iter().any(|e| e["changes"]["username"] == "nobody-at-all" && e["organization_id"].is_null()));
    let text = serde_json::to_string(&events(&app, &root, "").await).unwrap();
    assert!(!text.contains("wrong-password") && !text.contains("brand-new-pass-1") && !text.contains(refresh));
}

#[tokio::test]
async fn org_admins_see_their_organization_only_and_others_none() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let (org_a, org_b) = (app.create_org("A").await, app.create_org("B").await);
    let (_, admin_a) = app.create_user_in(&org_a, "admin_a", "admin").await;
    let (_, admin_b) = app.create_user_in(&org_b, "admin_b", "admin").await;
    let (_, member_a) = app.create_user_in(&org_a, "member_a", "member").await;
    assert_eq!(app.post("/projects", Some(&admin_a), json!({"name": "A secret"})).await.status, 201);
    assert_eq!(app.post("/projects", Some(&admin_b), json!({"name": "B secret"})).await.status, 201);

    let seen_by_a = events(&app, &admin_a, "").await;
    assert!(!seen_by_a.is_empty());
    assert!(seen_by_a.iter().all(|e| e["organization_id"] == org_a.as_str()), "{seen_by_a:?}");
    assert!(seen_by_a.iter().any(|e| e["action"] == "project.create"));
    let text = serde_json::to_string(&seen_by_a).unwrap();
    assert!(!text.contains("B secret"));
    let r = app.get(&format!("/audit-events?organization_id={org_b}"), Some(&admin_a)).await;
    assert_eq!(r.status, 403);
    assert_eq!(app.get("/audit-events", Some(&member_a)).await.status, 403);
    // a superuser narrows to one organization
    let b = events(&app, &root, &format!("organization_id={org_b}")).await;
    assert!(!b.is_empty() && b.iter().all(|e| e["organization_id"] == org_b.as_str()));
}

#[tokio::test]
async fn filters_narrow_and_bad_ones_are_400() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    app.post("/projects", Some(&root), json!({"name": "one"})).await;
    app.post("/projects", Some(&root), json!({"name": "two"})).await;
    let projects = events(&app, &root, "action=project.create").await;
    assert_eq!(projects.len(), 2);
    assert!(events(&app, &root, "target_type=project").await.len() >= 2);
    assert!(events(&app, &root, "action=project.create&from=2999-01-01").await.is_empty());
    assert_eq!(events(&app, &root, "action=project.create&from=2000-01-01&to=2999-12-31T00:00:00Z").await.len(), 2);
    let today = &projects[0]["at"].as_str().unwrap()[..10];
    assert_eq!(events(&app, &root, &format!("action=project.create&from={today}&to={today}")).await.len(), 2);
    let one = projects[0]["target_id"].as_str().unwrap();
    assert_eq!(events(&app, &root, &format!("target_id={one}")).await.len(), 1);
    for q in ["from=yesterday", "to=2026-13-01", "from=2026-02-01&to=2026-01-01", "limit=0", "skip=-1"] {
        let r = app.get(&format!("/audit-events?{q}"), Some(&root)).await;
        assert_eq!(r.status, 400, "{q}: {:?}", r.body);
    }
    let r = app.get("/audit-events?limit=1", Some(&root)).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["has_more"], true);
}

#[tokio::test]
async fn an_api_key_is_named_as_the_actor_and_forwarded_for_counts_only_from_trusted_proxies() {
    let app = spawn_app_with(|c| c.server.trusted_proxies = vec!["127.0.0.1".into()]).await;
    let root = app.admin_token().await;
    let r = app.post("/api-keys", Some(&root), json!({"name": "ci", "permissions": ["projects:write"]})).await;
    assert_eq!(r.status, 201);
    let (key, key_id) = (r.body["key"].as_str().unwrap().to_string(), r.id());
    let created = app
        .send(
            app.client
                .post(app.url("/api/v1/projects"))
                .bearer_auth(&key)
                .header("x-forwarded-for", "203.0.113.50, 127.0.0.1")
                .header("user-agent", "deploy-script/1.0")
                .json(&json!({"name": "by key"})),
        )
        .await;
    assert_eq!(created.status, 201, "{:?}", created.body);
    let e = &events(&app, &root, "action=project.create").await[0];
    assert_eq!(e["actor_api_key_id"], key_id.as_str());
    assert_eq!(e["ip"], "203.0.113.50");
    assert_eq!(e["user_agent"], "deploy-script/1.0");
    let made = &events(&app, &root, "action=api_key.create").await[0];
    assert_eq!(made["changes"]["name"], "ci");
    assert!(!serde_json::to_string(made).unwrap().contains(&key[4..]), "the key's secret reached the log");

    // without trusted proxies the header is the client's word and is ignored
    let plain = spawn_app().await;
    let root = plain.admin_token().await;
    let r = plain
        .send(
            plain
                .client
                .post(plain.url("/api/v1/projects"))
                .bearer_auth(&root)
                .header("x-forwarded-for", "203.0.113.50")
                .json(&json!({"name": "spoofed"})),
        )
        .await;
    assert_eq!(r.status, 201);
    assert_eq!(events(&plain, &root, "action=project.create").await[0]["ip"], "127.0.0.1");
}
