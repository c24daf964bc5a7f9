//! API keys (SPEC §8): created with a subset of the caller's permissions, shown once, usable as
//! a bearer token, limited by the owner's current role, revoked at once.

use serde_json::json;

use crate::helpers::*;

async fn create_key(app: &TestApp, token: &str, permissions: &[&str]) -> (String, String) {
    let r = app.post("/api-keys", Some(token), json!({"name": "script", "permissions": permissions})).await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    (r.id(), r.body["key"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn a_key_is_shown_once_and_acts_as_its_owner_within_its_permissions() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (user_id, token) = app.create_user_in(&org, "olga", "admin").await;
    let r = app
        .post(
            "/api-keys",
            Some(&token),
            json!({"name": "nightly export", "permissions": ["agents:read", "users:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let key = r.body["key"].as_str().unwrap().to_string();
    assert!(key.starts_with("cpk_") && key.len() == 44, "{key}");
    assert_eq!(r.body["prefix"].as_str().unwrap(), &key[..12]);
    assert_eq!(r.body["user_id"], user_id.as_str());
    assert_eq!(r.body["permissions"], json!(["users:read", "agents:read"]));
    assert!(r.body["expires_at"].is_null() && r.body["last_used_at"].is_null());

    let listed = app.get("/api-keys", Some(&token)).await;
    assert_eq!(listed.body["total"], 1);
    assert!(listed.body["data"][0].get("key").is_none(), "the secret is never shown again");
    let stored: String =
        app.state.store.read(|c| sql_rows(c, "SELECT secret_sha256 FROM api_keys", &[])).await.unwrap()[0][0]
            .as_str()
            .unwrap()
            .to_string();
    assert!(!stored.contains(&key[4..]), "only a hash is stored");

    let me = app.get("/auth/me", Some(&key)).await;
    assert_eq!((me.status, me.body["id"].as_str()), (200, Some(user_id.as_str())));
    assert_eq!(app.get("/agent-configs", Some(&key)).await.status, 200);
    assert_eq!(app.get("/users", Some(&key)).await.status, 200);
    // the owner may write agents and projects; the key may not
    let r = app.post("/agent-configs", Some(&key), json!({"name": "a", "agent_type": "hr"})).await;
    assert_eq!((r.status, r.detail()), (403, "Missing permission: agents:write"));
    assert_eq!(app.get("/projects", Some(&key)).await.status, 403);

    // last_used_at is recorded, off the request's path
    let mut used = serde_json::Value::Null;
    for _ in 0..50 {
        used = app.get("/api-keys", Some(&token)).await.body["data"][0]["last_used_at"].clone();
        if !used.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(used.is_string(), "last_used_at stays null");
}

#[tokio::test]
async fn bad_requests_for_keys_are_clear_and_change_nothing() {
    let app = spawn_app().await;
    let (_, member) = app.member("mia").await;
    let cases = [
        (json!({"name": "k", "permissions": ["agents:fly"]}), 400, "\"agents:fly\" is not a permission"),
        (json!({"name": "k", "permissions": []}), 400, "at least one"),
        (json!({"name": "k", "permissions": ["users:write"]}), 403, "you do not hold users:write"),
        (json!({"name": "k", "permissions": ["agents:read"], "expires_at": "2020-01-01T00:00:00Z"}), 400, "future"),
        (json!({"name": "k", "permissions": ["agents:read"], "expires_at": "next week"}), 400, "RFC 3339"),
        (json!({"name": " ", "permissions": ["agents:read"]}), 400, "name"),
    ];
    for (body, status, detail) in cases {
        let r = app.post("/api-keys", Some(&member), body.clone()).await;
        assert_eq!(r.status, status, "{body}: {:?}", r.body);
        assert!(r.detail().contains(detail), "{body}: {}", r.detail());
    }
    assert_eq!(app.get("/api-keys", Some(&member)).await.body["total"], 0);
    assert_eq!(app.get("/auth/me", Some("cpk_notakeyatall0000000000000000000000000000")).await.status, 401);
}

#[tokio::test]
async fn revoked_expired_and_deactivated_keys_stop_at_once() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (user, member) = app.member("max").await;
    let user_id = user["id"].as_str().unwrap().to_string();
    let (id, key) = create_key(&app, &member, &["agents:read"]).await;
    assert_eq!(app.get("/agent-configs", Some(&key)).await.status, 200);
    assert_eq!(app.delete(&format!("/api-keys/{id}"), Some(&member)).await.status, 204);
    let r = app.get("/agent-configs", Some(&key)).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")));
    assert_eq!(app.delete(&format!("/api-keys/{id}"), Some(&member)).await.status, 404);

    let soon = copilot::db::format_ts(time::OffsetDateTime::now_utc() + time::Duration::seconds(2));
    let r = app
        .post("/api-keys", Some(&member), json!({"name": "s", "permissions": ["agents:read"], "expires_at": soon}))
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let short = r.body["key"].as_str().unwrap().to_string();
    assert_eq!(app.get("/agent-configs", Some(&short)).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    assert_eq!(app.get("/agent-configs", Some(&short)).await.status, 401, "expired");

    let (_, key) = create_key(&app, &member, &["agents:read"]).await;
    assert_eq!(app.delete(&format!("/users/{user_id}"), Some(&admin)).await.status, 204);
    assert_eq!(app.get("/agent-configs", Some(&key)).await.status, 401, "owner deactivated");
}

#[tokio::test]
async fn keys_are_their_owners_and_their_organization_admins_only() {
    let app = spawn_app().await;
    let org = app.default_org_id().await;
    let (_, admin) = app.create_user_in(&org, "ada", "admin").await;
    let (_, ann) = app.member("ann").await;
    let (_, bob) = app.member("bob").await;
    let (ann_key_id, _) = create_key(&app, &ann, &["agents:read"]).await;
    create_key(&app, &bob, &["agents:read"]).await;
    let other = app.create_org("Other").await;
    let (_, stranger_admin) = app.create_user_in(&other, "sam", "admin").await;

    assert_eq!(app.get("/api-keys", Some(&bob)).await.body["total"], 1, "bob sees his own");
    assert_eq!(app.delete(&format!("/api-keys/{ann_key_id}"), Some(&bob)).await.status, 404);
    assert_eq!(app.delete(&format!("/api-keys/{ann_key_id}"), Some(&stranger_admin)).await.status, 404);
    assert_eq!(app.get("/api-keys", Some(&stranger_admin)).await.body["total"], 0);
    assert_eq!(app.get("/api-keys", Some(&admin)).await.body["total"], 2, "the org admin sees the org's");
    assert_eq!(app.delete(&format!("/api-keys/{ann_key_id}"), Some(&admin)).await.status, 204);
}

#[tokio::test]
async fn a_key_manages_no_keys_sessions_or_passwords_and_a_narrow_key_has_no_standing() {
    let app = spawn_app().await;
    let su = app.admin_token().await;
    let (_, key) = create_key(&app, &su, &["users:read", "organizations:read"]).await;
    let r = app.post("/api-keys", Some(&key), json!({"name": "k2", "permissions": ["users:read"]})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(app.post_empty("/auth/logout", Some(&key)).await.status, 403);
    let r = app
        .post(
            "/auth/change-password",
            Some(&key),
            json!({"current_password": ADMIN_PASSWORD, "new_password": "another-pass-9"}),
        )
        .await;
    assert_eq!(r.status, 403);
    // a superuser's key narrowed to two permissions is no superuser
    let r = app.post("/organizations", Some(&key), json!({"name": "Nope"})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(app.get("/users", Some(&key)).await.status, 200);
    assert_eq!(app.get("/auth/me", Some(&su)).await.status, 200, "the session is untouched");
}
