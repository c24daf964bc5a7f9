//! /auth: register, login, lockout, refresh rotation, me, change-password, logout, token rules.

use copilot::authz::Scope;
use jwt_simple::prelude::{Clock, Duration, HS256Key, JWTClaims, MACLike};
use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "test-secret-test-secret-test-secret-0123";

async fn app_with_secret() -> TestApp {
    spawn_app_with(|c| c.auth.jwt_secret = SECRET.into()).await
}

async fn set_active(app: &TestApp, user_id: &str, active: bool) {
    let id = user_id.to_string();
    app.state
        .store
        .write(move |tx| copilot::store::users::set_active(tx, &Scope::system_all(), &id, active, &copilot::db::now()))
        .await
        .unwrap();
}

#[tokio::test]
async fn register_creates_a_member_of_default() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/auth/register",
            None,
            json!({"username": "  alice ", "email": "alice@example.com", "password": PASSWORD, "full_name": "Alice A"}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
    let u = &r.body;
    assert_eq!(u["username"], "alice", "surrounding whitespace is trimmed");
    assert_eq!(u["full_name"], "Alice A");
    assert_eq!(u["organization_id"], app.default_org_id().await);
    assert_eq!(u["is_active"], true);
    assert_eq!(u["is_superuser"], false);
    assert!(u.get("password_hash").is_none() && u.get("password").is_none());
    for key in ["id", "email", "role_id", "created_at", "updated_at"] {
        assert!(u.get(key).is_some(), "{key} missing in {u}");
    }
    let token = app.login("alice", PASSWORD).await;
    let me = app.get("/auth/me", Some(&token)).await;
    assert_eq!(me.body["role"]["name"], "member");
    assert_eq!(me.body["role"]["id"], u["role_id"]);
    let perms: Vec<&str> = me.body["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert_eq!(
        perms,
        [
            "users:read",
            "organizations:read",
            "projects:read",
            "projects:write",
            "projects:delete",
            "roles:read",
            "agents:read",
            "conversations:write"
        ]
    );
}

#[tokio::test]
async fn register_rejects_duplicates_regardless_of_case() {
    let app = spawn_app().await;
    app.register("bob").await;
    let r = app
        .post("/auth/register", None, json!({"username": "BOB", "email": "other@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.detail().to_lowercase().contains("username"));
    let r = app
        .post("/auth/register", None, json!({"username": "bob2", "email": "Bob@Example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 409);
    assert!(r.detail().to_lowercase().contains("email"));
}

#[tokio::test]
async fn register_validates_every_field() {
    let app = spawn_app().await;
    let cases = [
        json!({"username": "ab", "email": "a@example.com", "password": PASSWORD}),
        json!({"username": "has space", "email": "a@example.com", "password": PASSWORD}),
        json!({"username": "x".repeat(51), "email": "a@example.com", "password": PASSWORD}),
        json!({"username": "carol", "email": "not-an-email", "password": PASSWORD}),
        json!({"username": "carol", "email": "a@example.com", "password": "short"}),
        json!({"username": "carol", "email": "a@example.com", "password": "x".repeat(129)}),
        json!({"username": "carol", "email": "a@example.com", "password": PASSWORD, "full_name": "x".repeat(256)}),
        json!({"username": "carol", "email": "a@example.com"}),
        json!({"username": 5, "email": "a@example.com", "password": PASSWORD}),
    ];
    for body in cases {
        let r = app.post("/auth/register", None, body.clone()).await;
        assert_eq!(r.status, 400, "{body} -> {:?}", r.body);
        assert!(!r.detail().is_empty());
    }
    // nothing was created
    let r = app.post("/auth/login", None, json!({"username": "carol", "password": PASSWORD})).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn registration_can_be_turned_off() {
    let app = spawn_app_with(|c| c.auth.allow_registration = false).await;
    let r = app
        .post("/auth/register", None, json!({"username": "dave", "email": "d@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 403);
    assert!(!r.detail().is_empty());
}

#[tokio::test]
async fn login_answers_tokens_by_username_email_and_form() {
    let app = spawn_app().await;
    app.register("erin").await;
    let pair = app.login_pair("erin", PASSWORD).await;
    assert_eq!(pair["token_type"], "bearer");
    assert_eq!(pair["expires_in"], 1800);
    assert!(pair["access_token"].as_str().unwrap().split('.').count() == 3);
    assert!(pair["refresh_token"].is_string());
    app.login_pair("ERIN@example.com", PASSWORD).await;
    let r = app
        .send(app.client.post(app.url("/api/v1/auth/login")).form(&[
            ("grant_type", "password"),
            ("username", "erin"),
            ("password", PASSWORD),
            ("scope", ""),
        ]))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["token_type"], "bearer");
}

#[tokio::test]
async fn access_token_carries_the_contract_claims() {
    let app = app_with_secret().await;
    let user = app.register("frank").await;
    let token = app.login("frank", PASSWORD).await;
    let claims = HS256Key::from_bytes(SECRET.as_bytes()).verify_token::<Value>(&token, None).unwrap();
    assert_eq!(claims.subject.as_deref(), user["id"].as_str());
    assert!(claims.jwt_id.is_some() && claims.issued_at.is_some() && claims.expires_at.is_some());
    assert_eq!(claims.custom["user_id"], user["id"]);
    assert_eq!(claims.custom["username"], "frank");
    assert_eq!(claims.custom["organization_id"], user["organization_id"]);
    assert_eq!(claims.custom["type"], "access");
}

#[tokio::test]
async fn wrong_credentials_get_one_message_and_deactivated_users_403() {
    let app = spawn_app().await;
    let user = app.register("gina").await;
    let wrong = app.post("/auth/login", None, json!({"username": "gina", "password": "wrong-password"})).await;
    let unknown = app.post("/auth/login", None, json!({"username": "nobody", "password": "wrong-password"})).await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert_eq!(wrong.detail(), unknown.detail());
    assert_eq!(wrong.header("www-authenticate"), Some("Bearer"));
    set_active(&app, user["id"].as_str().unwrap(), false).await;
    let r = app.post("/auth/login", None, json!({"username": "gina", "password": PASSWORD})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
}

#[tokio::test]
async fn ten_failures_lock_the_account_even_for_the_right_password() {
    let app = spawn_app().await;
    app.register("hank").await;
    for i in 0..10 {
        // username and e-mail count for the same account
        let login = if i % 2 == 0 { "hank" } else { "hank@example.com" };
        let r = app.post("/auth/login", None, json!({"username": login, "password": "wrong-password"})).await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = app.post("/auth/login", None, json!({"username": "hank", "password": PASSWORD})).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=900).contains(&retry), "{retry}");
    assert!(!r.detail().is_empty());
    // another account is not affected
    app.register("ivan").await;
    app.login("ivan", PASSWORD).await;
}

#[tokio::test]
async fn a_successful_login_clears_the_failure_count() {
    let app = spawn_app().await;
    app.register("jane").await;
    for _ in 0..9 {
        app.post("/auth/login", None, json!({"username": "jane", "password": "wrong-password"})).await;
    }
    app.login("jane", PASSWORD).await;
    for _ in 0..9 {
        let r = app.post("/auth/login", None, json!({"username": "jane", "password": "wrong-password"})).await;
        assert_eq!(r.status, 401);
    }
    app.login("jane", PASSWORD).await;
}

#[tokio::test]
async fn unknown_usernames_are_locked_too() {
    let app = spawn_app_with(|c| c.auth.max_failed_logins = 3).await;
    for _ in 0..3 {
        app.post("/auth/login", None, json!({"username": "ghost", "password": "wrong-password"})).await;
    }
    let r = app.post("/auth/login", None, json!({"username": "ghost", "password": "wrong-password"})).await;
    assert_eq!(r.status, 429, "no difference between existing and unknown accounts");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let app = spawn_app().await;
    app.register("kate").await;
    let first = app.login_pair("kate", PASSWORD).await;
    let r = app.post("/auth/refresh", None, json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let second = r.body;
    assert_eq!(second["token_type"], "bearer");
    assert_ne!(second["refresh_token"], first["refresh_token"]);
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(app.get("/auth/me", Some(access)).await.status, 200);

    // the first refresh token again: refused, and the whole session dies
    let r = app.post("/auth/refresh", None, json!({"refresh_token": first["refresh_token"]})).await;
    assert_eq!(r.status, 401);
    let r = app.post("/auth/refresh", None, json!({"refresh_token": second["refresh_token"]})).await;
    assert_eq!(r.status, 401, "the newest refresh token of a revoked session stops working");
    assert_eq!(app.get("/auth/me", Some(access)).await.status, 401);

    // other sessions of the same user are untouched
    let other = app.login("kate", PASSWORD).await;
    assert_eq!(app.get("/auth/me", Some(&other)).await.status, 200);
}

#[tokio::test]
async fn access_and_refresh_tokens_are_not_interchangeable() {
    let app = spawn_app().await;
    app.register("liam").await;
    let pair = app.login_pair("liam", PASSWORD).await;
    let r = app.post("/auth/refresh", None, json!({"refresh_token": pair["access_token"]})).await;
    assert_eq!(r.status, 401);
    let r = app.get("/auth/me", pair["refresh_token"].as_str()).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    let r = app.post("/auth/refresh", None, json!({"refresh_token": "garbage"})).await;
    assert_eq!(r.status, 401);
    let r = app.post("/auth/refresh", None, json!({})).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn bad_tokens_are_401_with_www_authenticate() {
    let app = app_with_secret().await;
    let user = app.register("mona").await;
    let token = app.login("mona", PASSWORD).await;
    let valid = HS256Key::from_bytes(SECRET.as_bytes()).verify_token::<Value>(&token, None).unwrap();

    // tampered payload: same signature, another user id
    let parts: Vec<&str> = token.split('.').collect();
    let mut tampered = parts.clone();
    use jwt_simple::reexports::ct_codecs::Encoder;
    let forged_payload = jwt_simple::reexports::ct_codecs::Base64UrlSafeNoPadding::encode_to_string(
        serde_json::to_vec(&json!({"sub": "x", "user_id": "x", "type": "access"})).unwrap(),
    )
    .unwrap();
    tampered[1] = &forged_payload;
    let tampered = tampered.join(".");

    // signed with another key
    let other_key = HS256Key::from_bytes(b"another-secret-another-secret-0000");
    let foreign = other_key.authenticate(valid.clone()).unwrap();

    // expired an hour ago
    let mut expired: JWTClaims<Value> = valid.clone();
    let now = Clock::now_since_epoch();
    expired.issued_at = Some(now - Duration::from_hours(2));
    expired.invalid_before = expired.issued_at;
    expired.expires_at = Some(now - Duration::from_hours(1));
    let expired = HS256Key::from_bytes(SECRET.as_bytes()).authenticate(expired).unwrap();

    // without `exp`: jwt-simple alone would take it as never expiring
    let mut eternal: JWTClaims<Value> = valid.clone();
    eternal.expires_at = None;
    let eternal = HS256Key::from_bytes(SECRET.as_bytes()).authenticate(eternal).unwrap();

    for (what, t) in [
        ("tampered", tampered),
        ("foreign key", foreign),
        ("expired", expired),
        ("no exp", eternal),
        ("junk", "abc".into()),
    ] {
        let r = app.get("/auth/me", Some(&t)).await;
        assert_eq!(r.status, 401, "{what}");
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{what}");
        assert!(!r.detail().is_empty());
    }
    let r = app.get("/auth/me", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert!(!r.detail().is_empty());
    assert_eq!(user["username"], "mona");
}

#[tokio::test]
async fn a_deactivated_user_is_cut_off_on_the_next_request() {
    let app = spawn_app().await;
    let (user, token) = app.member("nina").await;
    assert_eq!(app.get("/auth/me", Some(&token)).await.status, 200);
    set_active(&app, user["id"].as_str().unwrap(), false).await;
    assert_eq!(app.get("/auth/me", Some(&token)).await.status, 401);
}

#[tokio::test]
async fn change_password_revokes_the_other_sessions() {
    let app = spawn_app().await;
    app.register("omar").await;
    let current = app.login("omar", PASSWORD).await;
    let other = app.login_pair("omar", PASSWORD).await;

    let r = app
        .post(
            "/auth/change-password",
            Some(&current),
            json!({"current_password": "wrong-password", "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(r.status, 400);
    let r = app
        .post("/auth/change-password", Some(&current), json!({"current_password": PASSWORD, "new_password": "short"}))
        .await;
    assert_eq!(r.status, 400);

    let r = app
        .post(
            "/auth/change-password",
            Some(&current),
            json!({"current_password": PASSWORD, "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["message"].is_string());
    assert_eq!(app.get("/auth/me", Some(&current)).await.status, 200, "the current session stays");
    assert_eq!(app.get("/auth/me", other["access_token"].as_str()).await.status, 401);
    let r = app.post("/auth/refresh", None, json!({"refresh_token": other["refresh_token"]})).await;
    assert_eq!(r.status, 401);
    let r = app.post("/auth/login", None, json!({"username": "omar", "password": PASSWORD})).await;
    assert_eq!(r.status, 401);
    app.login("omar", "new-password-1").await;
}

#[tokio::test]
async fn logout_stops_the_access_and_refresh_token_at_once() {
    let app = spawn_app().await;
    app.register("pia").await;
    let pair = app.login_pair("pia", PASSWORD).await;
    let access = pair["access_token"].as_str().unwrap();
    let r = app.post_empty("/auth/logout", Some(access)).await;
    assert_eq!(r.status, 200);
    assert!(r.body["message"].is_string());
    assert_eq!(app.get("/auth/me", Some(access)).await.status, 401);
    let r = app.post("/auth/refresh", None, json!({"refresh_token": pair["refresh_token"]})).await;
    assert_eq!(r.status, 401);
    assert_eq!(app.post_empty("/auth/logout", None).await.status, 401);
}

#[tokio::test]
async fn me_of_the_superuser_has_every_permission() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let r = app.get("/auth/me/", Some(&token)).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["username"], ADMIN_USERNAME);
    assert_eq!(r.body["is_superuser"], true);
    assert_eq!(r.body["permissions"].as_array().unwrap().len(), 13);
    assert_eq!(r.body["role"]["name"], "admin");
}

#[tokio::test]
async fn me_reflects_profile_changes_at_once() {
    let app = spawn_app().await;
    let (user, token) = app.member("quinn").await;
    let id = user["id"].as_str().unwrap();
    let r =
        app.put(&format!("/users/{id}"), Some(&token), json!({"full_name": "Quinn Q", "email": "q@example.org"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let me = app.get("/auth/me", Some(&token)).await;
    assert_eq!(me.body["full_name"], "Quinn Q");
    assert_eq!(me.body["email"], "q@example.org");
    assert_eq!(me.body["updated_at"], r.body["updated_at"]);
    assert_eq!(me.body["created_at"], user["created_at"]);
    assert_eq!(me.body["is_active"], true);
}
