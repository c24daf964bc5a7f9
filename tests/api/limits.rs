//! `[limits]` (SPEC §8): token budgets (defaults and an organization's `settings.limits`), the
//! job limit, and the request rate limits per user, per API key and per client address.

use copilot::store::error::StoreResult;
use std::time::Duration;

use copilot::config::{Config, LlmProviderConfig};
use serde_json::{Value, json};

use crate::completions::{
    agent, conversation,
    mock::{MODEL, Mock, Reply, spawn_mock},
};
use crate::helpers::*;

/// A server whose `[llm]` points at a fresh scripted provider (its default reply: 11 prompt + 2
/// completion tokens), with `change` applied to the config.
async fn spawn_limited(change: impl FnOnce(&mut Config)) -> (TestApp, Mock) {
    let (mock, url) = spawn_mock().await;
    let app = spawn_app_with(|c| {
        c.llm.providers = vec![LlmProviderConfig {
            name: "mock".into(),
            base_url: url,
            api_key_env: String::new(),
            models: vec![MODEL.into()],
            timeout_seconds: 10,
            max_context_tokens: 8192,
        }];
        change(c);
    })
    .await;
    (app, mock)
}

async fn complete(app: &TestApp, token: &str, conv: &str) -> Resp {
    app.post(&format!("/conversations/{conv}/completions"), Some(token), json!({"content": "Hello?"})).await
}

fn retry_after(r: &Resp) -> u64 {
    r.header("retry-after").unwrap_or_else(|| panic!("no Retry-After: {r:?}")).parse().unwrap()
}

fn budget<'a>(usage: &'a Value, name: &str) -> &'a Value {
    usage["budgets"].as_array().unwrap().iter().find(|b| b["name"] == name).unwrap_or_else(|| panic!("{usage}"))
}

async fn running_jobs(app: &TestApp) -> i64 {
    app.state
        .store
        .read(|c| sql_i64(c, "SELECT COUNT(*) FROM completion_jobs WHERE status = 'running'", &[]))
        .await
        .unwrap()
}

#[tokio::test]
async fn budgets_answer_429_naming_the_budget_and_an_organization_overrides_the_defaults() {
    let (app, _mock) = spawn_limited(|c| c.limits.user_daily_tokens = 20).await;
    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({})).await;
    let (_, token) = app.member("bea").await;
    let conv = conversation(&app, &token, &agent_id).await;

    // 13 tokens each: 0 and 13 are under 20, 26 is not
    assert_eq!(complete(&app, &token, &conv).await.status, 201);
    assert_eq!(complete(&app, &token, &conv).await.status, 201);
    let r = complete(&app, &token, &conv).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.detail().starts_with("Your daily token budget (20 tokens) is spent; it resets at "), "{}", r.detail());
    assert!((1..=86_400).contains(&retry_after(&r)));
    let messages = app.get(&format!("/conversations/{conv}/messages"), Some(&token)).await;
    assert_eq!(messages.body["total"], 4, "the refused message is not stored");

    // the member's report shows their daily budget; the organization has no monthly one
    let usage = app.get("/usage", Some(&token)).await;
    assert_eq!(usage.status, 200);
    assert_eq!(usage.body["budgets"].as_array().unwrap().len(), 1, "{}", usage.body);
    let daily = budget(&usage.body, "user_daily_tokens");
    assert_eq!(
        (daily["limit"].as_i64(), daily["used"].as_i64(), daily["remaining"].as_i64()),
        (Some(20), Some(26), Some(0))
    );
    assert!(daily["resets_at"].as_str().unwrap().ends_with("T00:00:00.000000Z"));
    assert_eq!(usage.body["totals"]["total_tokens"], 26, "the budget counts what /usage sums");

    // the organization's own: no daily budget, a monthly one of 30
    let org = app.default_org_id().await;
    let limits = json!({"limits": {"user_daily_tokens": 0, "org_monthly_tokens": 30}});
    let r = app.put(&format!("/organizations/{org}"), Some(&admin), json!({"settings": limits})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["settings"], limits);
    assert_eq!(complete(&app, &token, &conv).await.status, 201);
    let r = complete(&app, &token, &conv).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    let next_month = {
        let now = time::OffsetDateTime::now_utc();
        let (y, m) = if now.month() == time::Month::December {
            (now.year() + 1, 1)
        } else {
            (now.year(), now.month() as u8 + 1)
        };
        format!("{y:04}-{m:02}-01")
    };
    assert_eq!(
        r.detail(),
        format!("The organization's monthly token budget (30 tokens) is spent; it resets on {next_month}")
    );
    assert!((1..=31 * 86_400).contains(&retry_after(&r)));
    // every member of the organization is stopped by it
    let (_, other) = app.member("cyd").await;
    let other_conv = conversation(&app, &other, &agent_id).await;
    assert_eq!(complete(&app, &other, &other_conv).await.status, 429);

    // the organization's report (an admin's) shows the monthly budget only
    let usage = app.get(&format!("/usage?organization_id={org}"), Some(&admin)).await;
    assert_eq!(usage.body["budgets"].as_array().unwrap().len(), 1, "{}", usage.body);
    let monthly = budget(&usage.body, "org_monthly_tokens");
    assert_eq!((monthly["limit"].as_i64(), monthly["used"].as_i64()), (Some(30), Some(39)));
    // a member's report shows the monthly budget that stops them too
    let usage = app.get("/usage", Some(&other)).await;
    assert_eq!(budget(&usage.body, "org_monthly_tokens")["remaining"], 0);

    // 0 in settings lifts a default too: no budget, no entry
    let r = app
        .put(
            &format!("/organizations/{org}"),
            Some(&admin),
            json!({"settings": {"limits": {"org_monthly_tokens": 0, "user_daily_tokens": 0}}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/usage", Some(&other)).await.body["budgets"], json!([]));
    assert_eq!(complete(&app, &other, &other_conv).await.status, 201);
}

#[tokio::test]
async fn a_budget_of_another_organization_or_user_does_not_count() {
    let (app, _mock) = spawn_limited(|c| {
        c.limits.org_monthly_tokens = 13;
        c.limits.user_daily_tokens = 13;
    })
    .await;
    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({})).await;
    let (_, a) = app.member("ada").await;
    let conv = conversation(&app, &a, &agent_id).await;
    assert_eq!(complete(&app, &a, &conv).await.status, 201);
    let r = complete(&app, &a, &conv).await;
    assert_eq!(r.status, 429);
    assert!(
        r.detail().contains("daily token budget (13 tokens)"),
        "the user's budget is checked first: {}",
        r.detail()
    );
    // another organization has its own budget
    let acme = app.create_org("Acme").await;
    let (_, acme_admin) = app.create_user_in(&acme, "amy", "admin").await;
    let acme_agent = agent(&app, &acme_admin, json!({})).await;
    let acme_conv = conversation(&app, &acme_admin, &acme_agent).await;
    assert_eq!(complete(&app, &acme_admin, &acme_conv).await.status, 201);
    let usage = app.get("/usage", Some(&acme_admin)).await;
    assert_eq!(budget(&usage.body, "org_monthly_tokens")["used"], 13);
}

#[tokio::test]
async fn only_a_superuser_sets_settings_limits_and_bad_values_are_400() {
    let app = spawn_app().await;
    let root = app.admin_token().await;
    let acme = app.create_org("Acme").await;
    let (_, acme_admin) = app.create_user_in(&acme, "amy", "admin").await;
    let path = format!("/organizations/{acme}");

    let r = app.put(&path, Some(&acme_admin), json!({"settings": {"limits": {"org_monthly_tokens": 5}}})).await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert!(r.detail().contains("settings.limits"), "{}", r.detail());
    // other settings are theirs to change
    let r = app.put(&path, Some(&acme_admin), json!({"settings": {"theme": "dark"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);

    let limits = json!({"org_monthly_tokens": 1_000_000, "user_daily_tokens": 20_000});
    let r = app.put(&path, Some(&root), json!({"settings": {"theme": "dark", "limits": limits}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    // an admin leaving limits out keeps them; sending them unchanged is fine; changing or
    // removing them is not
    let r = app.put(&path, Some(&acme_admin), json!({"settings": {"theme": "light"}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["settings"], json!({"theme": "light", "limits": limits}));
    let r = app.put(&path, Some(&acme_admin), json!({"settings": {"theme": "blue", "limits": limits}})).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    for changed in [json!({"org_monthly_tokens": 2_000_000, "user_daily_tokens": 20_000}), json!({})] {
        let r = app.put(&path, Some(&acme_admin), json!({"settings": {"limits": changed}})).await;
        assert_eq!(r.status, 403, "{changed}: {:?}", r.body);
    }
    assert_eq!(app.get(&path, Some(&root)).await.body["settings"]["limits"], limits);

    for bad in [
        json!(5),
        Value::Null,
        json!({"org_monthly_tokens": -1}),
        json!({"user_daily_tokens": "100"}),
        json!({"user_daily_tokens": 1.5}),
        json!({"monthly_tokens": 100}),
        json!({"org_monthly_tokens": 10_000_000_000_000_000u64}),
    ] {
        let r = app.put(&path, Some(&root), json!({"settings": {"limits": bad}})).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
        assert!(r.detail().starts_with("settings.limits"), "{}", r.detail());
        let r = app.post("/organizations", Some(&root), json!({"name": "Bad", "settings": {"limits": bad}})).await;
        assert_eq!(r.status, 400, "{bad}: {:?}", r.body);
    }
    let r = app
        .post(
            "/organizations",
            Some(&root),
            json!({"name": "Budgeted", "settings": {"limits": {"user_daily_tokens": 7}}}),
        )
        .await;
    assert_eq!(r.status, 201, "{:?}", r.body);
}

#[tokio::test]
async fn at_most_max_jobs_per_user_replies_are_generated_at_once() {
    let (app, mock) = spawn_limited(|c| c.limits.max_jobs_per_user = 2).await;
    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({})).await;
    let (_, token) = app.member("dan").await;
    let mut convs = vec![];
    for _ in 0..3 {
        convs.push(conversation(&app, &token, &agent_id).await);
    }
    for _ in 0..2 {
        mock.then(Reply::Hang(Duration::from_millis(3000)));
    }
    let mut held = vec![];
    for conv in &convs[..2] {
        let (client, url, token) =
            (app.client.clone(), app.url(&format!("/api/v1/conversations/{conv}/completions")), token.clone());
        held.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(token)
                .json(&json!({"content": "Take your time"}))
                .send()
                .await
                .unwrap()
                .status()
        }));
    }
    for _ in 0..100 {
        if running_jobs(&app).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(running_jobs(&app).await, 2);
    let r = complete(&app, &token, &convs[2]).await;
    assert_eq!(r.status, 409, "{:?}", r.body);
    assert!(r.detail().contains("2 replies") && r.detail().contains("max_jobs_per_user"), "{}", r.detail());
    // another user is not held up
    let (_, other) = app.member("eve").await;
    let other_conv = conversation(&app, &other, &agent_id).await;
    assert_eq!(complete(&app, &other, &other_conv).await.status, 201);
    for h in held {
        assert_eq!(h.await.unwrap(), 201);
    }
    assert_eq!(complete(&app, &token, &convs[2]).await.status, 201);
}

#[tokio::test]
async fn two_racing_requests_cannot_both_pass_the_job_limit() {
    let (app, mock) = spawn_limited(|c| c.limits.max_jobs_per_user = 1).await;
    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({})).await;
    let (_, token) = app.member("fay").await;
    let (a, b) = (conversation(&app, &token, &agent_id).await, conversation(&app, &token, &agent_id).await);
    mock.then(Reply::Hang(Duration::from_millis(800)));
    mock.then(Reply::Hang(Duration::from_millis(800)));
    let (ra, rb) = tokio::join!(complete(&app, &token, &a), complete(&app, &token, &b));
    let mut statuses = [ra.status, rb.status];
    statuses.sort();
    assert_eq!(statuses, [201, 409], "{ra:?} {rb:?}");
}

#[tokio::test]
async fn requests_per_minute_count_per_user_and_per_api_key() {
    let app = spawn_app_with(|c| c.limits.requests_per_minute = 3).await;
    let (_, a) = app.member("gus").await;
    for _ in 0..3 {
        assert_eq!(app.get("/auth/me", Some(&a)).await.status, 200);
    }
    let r = app.get("/auth/me", Some(&a)).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.detail().contains("requests_per_minute") && r.detail().contains("your account"), "{}", r.detail());
    assert!((1..=20).contains(&retry_after(&r)), "one request comes back every 20 s: {:?}", r.header("retry-after"));
    // a new session of the same user shares the allowance; another user has their own
    let again = app.login("gus", PASSWORD).await;
    assert_eq!(app.get("/users", Some(&again)).await.status, 429);

    let (_, b) = app.member("hal").await;
    let key = app.post("/api-keys", Some(&b), json!({"name": "script", "permissions": ["agents:read"]})).await;
    assert_eq!(key.status, 201, "{:?}", key.body);
    let key = key.body["key"].as_str().unwrap().to_string();
    for _ in 0..3 {
        assert_eq!(app.get("/agent-configs", Some(&key)).await.status, 200);
    }
    let r = app.get("/agent-configs", Some(&key)).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.detail().contains("this API key"), "{}", r.detail());
    assert!(r.header("retry-after").is_some());
    // the key has its own allowance: its owner's session has two requests left
    assert_eq!(app.get("/auth/me", Some(&b)).await.status, 200);
    // a bad token is a 401, not counted against anyone
    assert_eq!(app.get("/auth/me", Some("not-a-token")).await.status, 401);
}

#[tokio::test]
async fn anonymous_requests_per_minute_count_per_address_on_the_endpoints_without_a_token() {
    let app = spawn_app_with(|c| c.limits.anonymous_requests_per_minute = 3).await;
    let token = app.admin_token().await;
    let wrong = json!({"username": "admin", "password": "not-it"});
    assert_eq!(app.post("/auth/login", None, wrong.clone()).await.status, 401);
    assert_eq!(app.get("/status", None).await.status, 200);
    for path in ["/api/v1/auth/login", "/api/v1/auth/login/"] {
        let r = app.send(app.client.post(app.url(path)).json(&wrong)).await;
        assert_eq!(r.status, 429, "{path}: {:?}", r.body);
        assert!(r.detail().contains("anonymous_requests_per_minute"), "{}", r.detail());
        assert!((1..=20).contains(&retry_after(&r)));
    }
    let r = app.post("/auth/refresh", None, json!({"refresh_token": "x"})).await;
    assert_eq!(r.status, 429);
    let r = app
        .post("/auth/register", None, json!({"username": "ivy", "email": "ivy@example.com", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 429);
    // authenticated endpoints, health probes and the console are not counted here
    assert_eq!(app.get("/auth/me", Some(&token)).await.status, 200);
    for path in ["/health/live", "/health/ready", "/api/v1/health/live", "/admin/"] {
        assert_eq!(app.send(app.client.get(app.url(path))).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_anonymous_allowance() {
    let app = spawn_app_with(|c| {
        c.limits.anonymous_requests_per_minute = 2;
        c.server.trusted_proxies = vec!["127.0.0.0/8".into()];
    })
    .await;
    let status = |client: &'static str| {
        let req = app.client.get(app.url("/api/v1/status")).header("x-forwarded-for", client);
        async { app.send(req).await.status }
    };
    assert_eq!((status("203.0.113.1").await, status("203.0.113.1").await), (200, 200));
    assert_eq!(status("203.0.113.1").await, 429, "the third request of one client");
    assert_eq!(status("203.0.113.2").await, 200, "another client behind the same proxy");
}

#[test]
fn the_anonymous_limit_counts_the_public_api_operations_but_the_probes() {
    let mut routes: Vec<String> =
        copilot::limits::anonymous_routes().into_iter().map(|(m, p)| format!("{m} {p}")).collect();
    routes.sort();
    assert_eq!(
        routes,
        ["GET /api/v1/status", "POST /api/v1/auth/login", "POST /api/v1/auth/refresh", "POST /api/v1/auth/register"]
    );
}

#[tokio::test]
async fn without_limits_nothing_is_counted() {
    let app = spawn_app().await;
    assert_eq!(app.state.config.limits.max_jobs_per_user, 4);
    let token = app.admin_token().await;
    for _ in 0..50 {
        assert_eq!(app.get("/auth/me", Some(&token)).await.status, 200);
    }
    for _ in 0..20 {
        assert_eq!(app.get("/status", None).await.status, 200);
    }
    assert_eq!(app.get("/usage", Some(&token)).await.body["budgets"], json!([]));
}

#[tokio::test]
async fn the_budget_sums_read_only_an_index() {
    if on_postgres() {
        // SQLite's query plans; PostgreSQL's budget sums use the same indexes of V9 (its plans
        // are checked in postgres.rs)
        return;
    }
    let app = spawn_app().await;
    let plans: Vec<String> = app
        .state
        .store
        .sqlite()
        .expect("SQLite")
        .read(|c| -> StoreResult<_> {
            let mut plans = vec![];
            for sql in [
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM completion_jobs \
                 WHERE organization_id = 'o' AND created_at >= 'a' AND created_at < 'b'",
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM completion_jobs \
                 WHERE user_id = 'u' AND created_at >= 'a' AND created_at < 'b' AND organization_id = 'o'",
                "SELECT COUNT(*) FROM completion_jobs WHERE user_id = 'u' AND status = 'running'",
            ] {
                let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(3))?.collect::<Result<Vec<_>, _>>()?;
                plans.push(rows.join("; "));
            }
            Ok(plans)
        })
        .await
        .unwrap();
    assert!(plans[0].contains("COVERING INDEX completion_jobs_org_spend"), "{}", plans[0]);
    assert!(plans[1].contains("COVERING INDEX completion_jobs_user_spend"), "{}", plans[1]);
    assert!(plans[2].contains("completion_jobs_user_running"), "{}", plans[2]);
}

#[tokio::test]
async fn budgets_and_the_job_limit_hold_across_processes_on_one_database() {
    let (app, mock) = spawn_limited(|c| {
        c.limits.user_daily_tokens = 13;
        c.limits.max_jobs_per_user = 1;
    })
    .await;
    // a second server on the same database file, opened before any job runs (a start marks the
    // jobs that it finds running as failed)
    let mut config = (*app.state.config).clone();
    config.server.bind = "127.0.0.1:0".into();
    let (second, _) = open_state(config).expect("second app state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let other = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(copilot::serve_on(listener, second, std::future::pending()));
    let on_other = |conv: &str, token: &str| {
        app.client
            .post(format!("{other}/api/v1/conversations/{conv}/completions"))
            .bearer_auth(token)
            .json(&json!({"content": "Elsewhere"}))
    };

    let admin = app.admin_token().await;
    let agent_id = agent(&app, &admin, json!({})).await;
    let (_, token) = app.member("kai").await;
    let (a, b) = (conversation(&app, &token, &agent_id).await, conversation(&app, &token, &agent_id).await);
    mock.then(Reply::Hang(Duration::from_millis(3000)));
    let held = {
        let req = app
            .client
            .post(app.url(&format!("/api/v1/conversations/{a}/completions")))
            .bearer_auth(&token)
            .json(&json!({"content": "Take your time"}));
        tokio::spawn(async move { req.send().await.unwrap().status() })
    };
    for _ in 0..100 {
        if running_jobs(&app).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = app.send(on_other(&b, &token)).await;
    assert_eq!(r.status, 409, "the reply held on the first server counts on the second: {:?}", r.body);
    assert_eq!(held.await.unwrap(), 201);
    // the held reply used a few (estimated) tokens; 13 more on the second server spend the
    // daily budget on both
    assert_eq!(app.send(on_other(&b, &token)).await.status, 201);
    let r = complete(&app, &token, &b).await;
    assert_eq!(r.status, 429, "{:?}", r.body);
    assert!(r.detail().contains("daily token budget (13 tokens)"), "{}", r.detail());
    assert_eq!(app.send(on_other(&b, &token)).await.status, 429);
}
