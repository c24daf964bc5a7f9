//! The holes an adversarial review found (lockout races, unbounded anonymous input, tenancy of
//! a moved or deactivated organization, ...): each test reproduces one and shows it closed.

use copilot::store::error::StoreResult;
use serde_json::json;

use crate::helpers::*;

async fn count(app: &TestApp, sql: &'static str) -> i64 {
    app.state.store.read(move |c| sql_i64(c, sql, &[])).await.unwrap()
}

#[tokio::test]
async fn a_burst_of_guesses_checks_at_most_the_attempts_left() {
    let app = spawn_app().await;
    app.register("burst").await;
    let guesses = (0..200).map(|_| {
        let req =
            app.client.post(app.url("/api/v1/auth/login")).json(&json!({"username": "burst", "password": "nope-nope"}));
        app.send(req)
    });
    let answers = futures_util::future::join_all(guesses).await;
    let unauthorized = answers.iter().filter(|r| r.status == 401).count();
    let locked = answers.iter().filter(|r| r.status == 429).count();
    assert_eq!(unauthorized + locked, 200, "{:?}", answers.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(unauthorized, 10, "exactly the 10 attempts of the window reach the password check");
    assert!(answers.iter().filter(|r| r.status == 429).all(|r| r.header("retry-after").is_some()));
    let r = app.post("/auth/login", None, json!({"username": "burst", "password": PASSWORD})).await;
    assert_eq!(r.status, 429, "still locked for the right password");
}

#[tokio::test]
async fn a_huge_login_name_is_refused_and_stored_nowhere() {
    let app = spawn_app().await;
    let huge = "x".repeat(3 * 1024 * 1024);
    let r = app.post("/auth/login", None, json!({"username": huge, "password": "whatever1"})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(r.detail().contains("255"));
    let r = app.post("/auth/login", None, json!({"username": "y".repeat(256), "password": "whatever1"})).await;
    assert_eq!(r.status, 400);
    let r = app.post("/auth/login", None, json!({"username": "z".repeat(255), "password": "whatever1"})).await;
    assert_eq!(r.status, 401, "255 characters is still a name");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM login_failures WHERE length(account_key) > 300").await, 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM login_failures").await, 1);
}

#[tokio::test]
async fn expired_failures_and_dead_sessions_are_pruned_in_bounded_batches() {
    let app = spawn_app().await;
    app.register("pruned").await;
    app.login("pruned", PASSWORD).await; // a live session that must survive
    app.post("/auth/login", None, json!({"username": "pruned", "password": "wrong-one"})).await; // a fresh failure
    app.state
        .store
        .write(|tx| -> StoreResult<_> {
            for i in 0..25 {
                sql_exec(
                    tx,
                    "INSERT INTO login_failures (account_key, failed_at) VALUES (?1, '2020-01-01T00:00:00.000000Z')",
                    &[&format!("login:old{i}")],
                )?;
                sql_exec(
                    tx,
                    "INSERT INTO sessions (id, user_id, refresh_jti, created_at, last_used_at, expires_at) \
                     VALUES (?1, (SELECT id FROM users WHERE username = 'pruned'), 'j', '2020-01-01T00:00:00.000000Z', \
                     '2020-01-01T00:00:00.000000Z', '2020-01-08T00:00:00.000000Z')",
                    &[&format!("old-session-{i}")],
                )?;
            }
            Ok(())
        })
        .await
        .unwrap();
    let prune = |limit| {
        app.state.store.write(move |tx| {
            let now = copilot::db::now();
            copilot::store::auth::prune(tx, "2021-01-01T00:00:00.000000Z", &now, "2021-01-01T00:00:00.000000Z", limit)
        })
    };
    assert_eq!(prune(10).await.unwrap(), 20, "at most `limit` rows of each kind per run");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM login_failures").await, 16);
    assert_eq!(prune(100).await.unwrap(), 30);
    assert_eq!(prune(100).await.unwrap(), 0);
    assert_eq!(count(&app, "SELECT COUNT(*) FROM login_failures").await, 1, "the fresh failure stays");
    assert_eq!(count(&app, "SELECT COUNT(*) FROM sessions").await, 1, "the live session stays");
}

#[tokio::test]
async fn registration_joins_the_bootstrap_organization_by_id_whatever_its_name() {
    let app = spawn_app().await;
    let su = app.admin_token().await;
    let default = app.default_org_id().await;
    let r = app.put(&format!("/organizations/{default}"), Some(&su), json!({"name": "Renamed"})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let other = app.post("/organizations", Some(&su), json!({"name": "Default"})).await;
    assert_eq!(other.status, 201, "{:?}", other.body);
    let user = app.register("newcomer").await;
    assert_eq!(user["organization_id"], default.as_str());
    let r = app
        .post("/auth/register", None, json!({"username": "newcomer", "email": "n2@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 409, "{:?}", r.body);
}

#[tokio::test]
async fn a_deactivated_organization_signs_its_members_out() {
    let app = spawn_app().await;
    let su = app.admin_token().await;
    let org = app.create_org("Closing").await;
    let (_, token) = app.create_user_in(&org, "leaving", "member").await;
    let refresh = app.login_pair("leaving", PASSWORD).await["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(app.get("/auth/me", Some(&token)).await.status, 200);
    let r = app.put(&format!("/organizations/{org}"), Some(&su), json!({"is_active": false})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = app.get("/auth/me", Some(&token)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer"));
    assert_eq!(app.post("/auth/refresh", None, json!({"refresh_token": refresh})).await.status, 401);
    let r = app.post("/auth/login", None, json!({"username": "leaving", "password": PASSWORD})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    // the superuser is not a member of it and keeps working; reactivation lets members back in
    assert_eq!(app.get("/auth/me", Some(&su)).await.status, 200);
    app.put(&format!("/organizations/{org}"), Some(&su), json!({"is_active": true})).await;
    app.login("leaving", PASSWORD).await;
}

#[tokio::test]
async fn a_wrong_current_password_counts_as_a_failed_login() {
    let app = spawn_app_with(|c| c.auth.max_failed_logins = 3).await;
    let (_, token) = app.member("forgetful").await;
    for _ in 0..3 {
        let r = app
            .post(
                "/auth/change-password",
                Some(&token),
                json!({"current_password": "not-it-1", "new_password": "new-password-1"}),
            )
            .await;
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
    let r = app
        .post(
            "/auth/change-password",
            Some(&token),
            json!({"current_password": PASSWORD, "new_password": "new-password-1"}),
        )
        .await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.header("retry-after").is_some());
    let r = app.post("/auth/login", None, json!({"username": "forgetful", "password": PASSWORD})).await;
    assert_eq!(r.status, 429, "the login of the same account is locked too");
}

#[tokio::test]
async fn a_nul_in_a_search_is_a_character_like_any_other() {
    let app = spawn_app().await;
    let su = app.admin_token().await;
    // no stored text holds a NUL yet: a search or filter with one matches nothing, on both
    // backends, on every list that takes one (never a 500, and not a 400: a read refuses nothing)
    let org = app.create_org("Org").await;
    let lists = [
        "/users?search=a%00",
        "/organizations?search=a%00",
        "/projects?search=a%00",
        "/roles?search=a%00",
        "/roles/permissions?search=a%00",
        "/agent-configs?search=a%00",
        "/documents?search=a%00",
        "/documents?project_id=a%00",
        "/agent-configs?project_id=a%00",
        "/users?role_id=a%00",
        "/conversations?search=a%00",
        "/audit-events?action=a%00",
    ];
    for list in lists {
        let r = app.send(app.client.get(app.url(&format!("/api/v1{list}"))).bearer_auth(&su)).await;
        assert_eq!((r.status, r.body["total"].as_i64()), (200, Some(0)), "{list}: {:?}", r.body);
    }
    let r = app
        .send(app.client.get(app.url(&format!("/api/v1/organizations/{org}/members?search=a%00"))).bearer_auth(&su))
        .await;
    assert_eq!((r.status, r.body["total"].as_i64()), (200, Some(0)), "members: {:?}", r.body);
    let r = app.send(app.client.get(app.url("/api/v1/knowledge/search?q=a%00b")).bearer_auth(&su)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    if on_postgres() {
        // PostgreSQL's text cannot hold a NUL (README, Operations, "What differs"): a clear 400
        // that changes nothing, never a 500
        let r = app.post("/projects", Some(&su), json!({"name": "a\u{0}b inside"})).await;
        assert_eq!(r.status, 400, "{:?}", r.body);
        assert!(r.detail().contains("NUL"), "{:?}", r.body);
        assert_eq!(app.get("/projects", Some(&su)).await.body["total"], 0);
        // no stored text holds one, so a user search with a NUL matches nothing, as on SQLite
        let r = app.send(app.client.get(app.url("/api/v1/users?search=ab%00")).bearer_auth(&su)).await;
        assert_eq!((r.status, r.body["total"].as_i64()), (200, Some(0)), "{:?}", r.body);
        return;
    }
    for name in ["plain a", "ends with a", "a\u{0}b inside", "100% sure_thing"] {
        assert_eq!(app.post("/projects", Some(&su), json!({"name": name})).await.status, 201);
    }
    let names = |r: &Resp| {
        let mut v: Vec<String> =
            r.body["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
        v.sort();
        v
    };
    let search = |term: &str| {
        let req = app.client.get(app.url("/api/v1/projects")).query(&[("search", term)]).bearer_auth(&su);
        app.send(req)
    };
    assert_eq!(names(&search("a\u{0}b").await), ["a\u{0}b inside"]);
    assert_eq!(names(&search("\u{0}").await), ["a\u{0}b inside"]);
    assert_eq!(names(&search("a\u{0}").await), ["a\u{0}b inside"]);
    assert_eq!(names(&search("%").await), ["100% sure_thing"], "% is no wildcard");
    assert_eq!(names(&search("_").await), ["100% sure_thing"], "_ is no wildcard");
    let r = app.send(app.client.get(app.url("/api/v1/users?search=ab%00")).bearer_auth(&su)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["total"], 0);
    let r = app.send(app.client.get(app.url("/api/v1/users?search=adm%00")).bearer_auth(&su)).await;
    assert_eq!((r.status, r.body["total"].as_i64()), (200, Some(0)));
}

#[tokio::test]
async fn deactivating_a_project_through_put_needs_what_delete_needs() {
    let app = spawn_app().await;
    let org = app.create_org("Org").await;
    app.create_role(&org, "writer", &["projects:read", "projects:write"]).await;
    let (_, writer) = app.create_user_in(&org, "pw", "writer").await;
    let r = app.post("/projects", Some(&writer), json!({"name": "mine"})).await;
    assert_eq!(r.status, 201);
    let id = r.id();
    let r = app.put(&format!("/projects/{id}"), Some(&writer), json!({"is_active": false})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(r.detail().contains("projects:delete"));
    assert_eq!(app.get(&format!("/projects/{id}"), Some(&writer)).await.body["is_active"], true);
    let r = app.put(&format!("/projects/{id}"), Some(&writer), json!({"name": "renamed", "is_active": true})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn a_filter_naming_another_organization_never_answers_own_rows() {
    let app = spawn_app().await;
    let org_a = app.create_org("A").await;
    let org_b = app.create_org("B").await;
    let (_, admin_a) = app.create_user_in(&org_a, "admin_a", "admin").await;
    for path in ["/users", "/projects", "/roles", "/agent-configs", "/usage"] {
        let r = app.get(&format!("{path}?organization_id={org_b}"), Some(&admin_a)).await;
        assert_eq!(r.status, 403, "{path}: {:?}", r.body);
        let r = app.get(&format!("{path}?organization_id={org_a}"), Some(&admin_a)).await;
        assert_eq!(r.status, 200, "{path} with the caller's own organization: {:?}", r.body);
    }
}

#[tokio::test]
async fn null_clears_a_project_or_role_description_and_absence_keeps_it() {
    let app = spawn_app().await;
    let su = app.admin_token().await;
    for (path, body) in
        [("/projects", json!({"name": "p", "description": "d"})), ("/roles", json!({"name": "r", "description": "d"}))]
    {
        let id = app.post(path, Some(&su), body).await.id();
        let r = app.put(&format!("{path}/{id}"), Some(&su), json!({"name": "renamed"})).await;
        assert_eq!(r.body["description"], "d", "{path}: absent keeps it");
        let r = app.put(&format!("{path}/{id}"), Some(&su), json!({"description": null})).await;
        assert_eq!(r.status, 200, "{path}: {:?}", r.body);
        assert!(r.body["description"].is_null(), "{path}: null clears it: {:?}", r.body);
    }
}
