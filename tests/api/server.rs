//! Server-wide behaviour: status, error bodies, headers, trailing slashes, body limits, docs.

use copilot::store::error::StoreResult;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn status_reports_ok_without_auth() {
    let app = spawn_app().await;
    let r = app.get("/status", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["database"], "ok");
    assert_eq!(r.body["version"], env!("CARGO_PKG_VERSION"));
    let r = app.get("/status/", None).await;
    assert_eq!(r.status, 200, "trailing slash works too");
}

#[tokio::test]
async fn every_error_class_answers_json_detail() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let post_raw = |body: &'static str, ct: &'static str| {
        app.client.post(app.url("/api/v1/auth/login")).header("content-type", ct).body(body)
    };
    let cases = [
        ("malformed JSON", app.send(post_raw("{bad", "application/json")).await, 400),
        ("missing field", app.send(post_raw(r#"{"username": "x"}"#, "application/json")).await, 400),
        ("wrong type", app.send(post_raw(r#"{"username": 1, "password": true}"#, "application/json")).await, 400),
        ("wrong content type", app.send(post_raw("username", "text/plain")).await, 400),
        ("unknown route", app.get("/no/such/thing", Some(&token)).await, 404),
        ("unknown top-level route", app.send(app.client.get(app.url("/nothing-here"))).await, 404),
        ("wrong method", app.delete("/status", None).await, 405),
        ("no token", app.get("/auth/me", None).await, 401),
        ("bad query value", app.get("/users?limit=abc", Some(&token)).await, 400),
    ];
    for (what, r, status) in cases {
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{what}: {:?}", r.body);
        assert_eq!(r.header("content-type").map(|c| c.starts_with("application/json")), Some(true), "{what}");
    }
}

#[tokio::test]
async fn a_json_body_without_content_type_is_read_as_json() {
    let app = spawn_app().await;
    let body = format!(r#"{{"username": "{ADMIN_USERNAME}", "password": "{ADMIN_PASSWORD}"}}"#);
    let r = app.send(app.client.post(app.url("/api/v1/auth/login")).body(body)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

#[tokio::test]
async fn oversized_bodies_are_413() {
    let app = spawn_app_with(|c| c.server.body_limit_bytes = 2048).await;
    let big = format!(r#"{{"username": "{}", "password": "x"}}"#, "a".repeat(4096));
    let r = app
        .send(
            app.client.post(app.url("/api/v1/auth/login")).header("content-type", "application/json").body(big.clone()),
        )
        .await;
    assert_eq!(r.status, 413);
    assert!(!r.detail().is_empty());
    // streamed (chunked) bodies, which declare no length, are limited too
    let raw = raw_http(
        &app.base,
        &format!(
            "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        ),
    )
    .await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("\"detail\""), "{raw}");
}

/// Sends `request` as raw bytes and returns the whole answer as text.
async fn raw_http(base: &str, request: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(base.trim_start_matches("http://")).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn security_headers_are_on_every_response() {
    let app = spawn_app().await;
    for path in ["/api/v1/status", "/api/v1/nothing", "/admin/", "/docs", "/api/v1/openapi.json"] {
        let r = app.send(app.client.get(app.url(path))).await;
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
    let r = app.send(app.client.get(app.url("/admin/"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-security-policy").is_some_and(|c| c.contains("default-src 'self'")));
}

#[tokio::test]
async fn console_redirects_and_serves_deep_links() {
    let app = spawn_app().await;
    let no_redirect = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = app.send(no_redirect.get(app.url("/"))).await;
    assert_eq!(r.status, 302);
    assert_eq!(r.header("location"), Some("/admin/"));
    let r = app.send(no_redirect.get(app.url("/admin"))).await;
    assert_eq!((r.status, r.header("location")), (302, Some("/admin/")));
    let index = app.send(app.client.get(app.url("/admin/"))).await;
    let etag = index.header("etag").expect("etag").to_string();
    let deep = app.send(app.client.get(app.url("/admin/users/123"))).await;
    assert_eq!(deep.status, 200, "client-side routes load the app");
    assert_eq!(deep.header("etag"), Some(etag.as_str()));
    let r = app.send(app.client.get(app.url("/admin/missing.js"))).await;
    assert_eq!(r.status, 404);
    let r = app.send(app.client.get(app.url("/admin/")).header("if-none-match", etag)).await;
    assert_eq!(r.status, 304);
}

#[tokio::test]
async fn cors_allows_only_configured_origins() {
    let app = spawn_app_with(|c| c.server.cors_origins = vec!["https://console.example".into()]).await;
    let allowed = app.send(app.client.get(app.url("/api/v1/status")).header("origin", "https://console.example")).await;
    assert_eq!(allowed.header("access-control-allow-origin"), Some("https://console.example"));
    let preflight = app
        .send(
            app.client
                .request(reqwest::Method::OPTIONS, app.url("/api/v1/users"))
                .header("origin", "https://console.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "authorization,content-type"),
        )
        .await;
    assert!(preflight.status < 300, "{}", preflight.status);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://console.example"));
    // another origin is served as if it sent no Origin: only the CORS headers are withheld
    let other = app.send(app.client.get(app.url("/api/v1/status")).header("origin", "https://evil.example")).await;
    assert_eq!(other.status, 200);
    assert_eq!(other.header("access-control-allow-origin"), None);
    let login = app
        .send(
            app.client
                .post(app.url("/api/v1/auth/login"))
                .header("origin", &app.base)
                .json(&json!({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD})),
        )
        .await;
    assert_eq!(login.status, 200, "the console's own same-origin POST: {:?}", login.body);
    assert_eq!(login.header("access-control-allow-origin"), None);

    let closed = spawn_app().await;
    let r =
        closed.send(closed.client.get(closed.url("/api/v1/status")).header("origin", "https://console.example")).await;
    assert_eq!(r.header("access-control-allow-origin"), None, "no origins configured: no CORS");
}

#[tokio::test]
async fn openapi_document_and_docs_ui_are_served() {
    let app = spawn_app().await;
    let r = app.send(app.client.get(app.url("/api/v1/openapi.json"))).await;
    assert_eq!(r.status, 200);
    assert!(r.body["openapi"].as_str().unwrap().starts_with("3."));
    let paths = r.body["paths"].as_object().unwrap();
    for p in [
        "/auth/login",
        "/auth/register",
        "/auth/refresh",
        "/auth/me",
        "/auth/logout",
        "/auth/change-password",
        "/status",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys().collect::<Vec<_>>());
    }
    let login = &paths["/auth/login"]["post"];
    assert!(login["requestBody"]["content"].get("application/x-www-form-urlencoded").is_some());
    assert!(login["responses"].get("429").is_some());
    let schemes = &r.body["components"]["securitySchemes"];
    assert_eq!(schemes["BearerAuth"]["flows"]["password"]["tokenUrl"], "/api/v1/auth/login");
    assert!(schemes["BearerAuth"]["flows"]["password"]["scopes"].is_object(), "OpenAPI requires scopes");
    // .ci/run validates this copy against the OpenAPI 3 schema
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi.json");
    std::fs::write(&out, serde_json::to_string_pretty(&r.body).unwrap()).unwrap();
    let docs = app.send(app.client.get(app.url("/docs"))).await;
    assert_eq!(docs.status, 200);
}

#[tokio::test]
async fn bootstrap_runs_once() {
    let dir = tempfile::tempdir().unwrap();
    let counts = |state: &copilot::AppState| {
        let store = state.store.clone();
        async move {
            store
                .read(|c| -> StoreResult<_> {
                    let mut n = |t: &str| sql_i64(c, &format!("SELECT count(*) FROM {t}"), &[]);
                    Ok((n("permissions")?, n("organizations")?, n("roles")?, n("users")?, n("role_permissions")?))
                })
                .await
                .unwrap()
        }
    };
    let mut config = test_config(dir.path());
    config.bootstrap.admin_password = String::new();
    let (first, startup) = open_state(config.clone()).unwrap();
    let password = startup.generated_admin_password.clone().expect("a generated password on first start");
    assert!(password.len() >= 16);
    assert_eq!(counts(&first).await, (13, 1, 2, 1, 21));
    drop(first);
    let (second, startup) = open_state(config).unwrap();
    assert!(startup.generated_admin_password.is_none(), "printed only once");
    assert!(!startup.bootstrapped);
    assert_eq!(counts(&second).await, (13, 1, 2, 1, 21));
    let app = spawn_on(dir, second.config.as_ref().clone()).await;
    app.login(ADMIN_USERNAME, &password).await;
}

#[tokio::test]
async fn numbers_and_booleans_are_not_text() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    let cases = [
        ("/auth/register", json!({"username": 12345, "email": "n@example.com", "password": PASSWORD})),
        ("/users", json!({"username": "numbers", "email": "n@example.com", "password": PASSWORD, "full_name": 5})),
        ("/organizations", json!({"name": 42})),
        ("/projects", json!({"name": true})),
        ("/roles", json!({"name": "r", "permissions": [1]})),
        ("/agent-configs", json!({"name": "a", "agent_type": "rfp", "tools": [1, 2]})),
        ("/agent-configs", json!({"name": "a", "agent_type": "rfp", "temperature": "hot"})),
        ("/conversations", json!({"title": 7})),
    ];
    for (path, body) in cases {
        let r = app.post(path, Some(&token), body.clone()).await;
        assert_eq!(r.status, 400, "{path} {body}: {:?}", r.body);
        assert!(!r.detail().is_empty());
    }
    let r = app.get("/projects", Some(&token)).await;
    assert_eq!(r.body["total"], 0, "nothing was created");
}

#[tokio::test]
async fn every_405_says_what_is_allowed() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for (method, path, allow) in [
        ("POST", "/api/v1/openapi.json", "GET, HEAD"),
        ("DELETE", "/docs", "GET, HEAD"),
        ("PUT", "/docs/", "GET, HEAD"),
        ("POST", "/admin/", "GET, HEAD"),
        ("PUT", "/api/v1/auth/me", "GET, HEAD"),
        ("PATCH", "/api/v1/users/0190a000-0000-7000-8000-000000000000", "DELETE, GET, HEAD, PUT"),
        ("DELETE", "/api/v1/roles/permissions", "GET, HEAD"),
        ("PUT", "/api/v1/users", "GET, HEAD, POST"),
        ("POST", "/favicon.ico", "GET, HEAD"),
    ] {
        let req = app.client.request(method.parse().unwrap(), app.url(path)).bearer_auth(&token);
        let r = app.send(req).await;
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.header("allow"), Some(allow), "{method} {path}");
        assert!(!r.detail().is_empty(), "{method} {path}");
    }
    for path in ["/api/v1/openapi.json", "/docs", "/favicon.ico"] {
        let r = app.send(app.client.head(app.url(path))).await;
        assert_eq!(r.status, 200, "HEAD {path}");
    }
}

#[tokio::test]
async fn docs_have_a_csp_and_the_favicon_is_served() {
    let app = spawn_app().await;
    let docs = app.send(app.client.get(app.url("/docs"))).await;
    assert_eq!(docs.status, 200);
    let csp = docs.header("content-security-policy").expect("CSP on /docs");
    assert!(csp.contains("default-src 'none'") && csp.contains("'sha256-"), "{csp}");
    let icon = app.client.get(app.url("/favicon.ico")).send().await.unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    assert!(icon.bytes().await.unwrap().starts_with(b"<svg"));
}

#[tokio::test]
async fn a_panicking_handler_is_a_logged_500_with_detail() {
    use poem::{
        EndpointExt,
        listener::{Acceptor, Listener},
        middleware::CatchPanic,
    };
    let boom = poem::endpoint::make_sync(|_| -> &'static str { panic!("boom") });
    let app =
        poem::Route::new().at("/boom", boom).with(CatchPanic::new().with_handler(copilot::middleware::panic_response));
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    let r = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
    assert_eq!(r.status(), 500);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["detail"], "Internal server error");
}

#[tokio::test]
async fn usage_days_out_of_range_are_400_not_a_dropped_connection() {
    let app = spawn_app().await;
    let token = app.admin_token().await;
    for q in ["to=-9999-01-29", "from=-0001-01-01", "to=0000-01-01", "to=99999-01-01", "from=2026-02-30"] {
        let r = app.get(&format!("/usage?{q}"), Some(&token)).await;
        assert_eq!(r.status, 400, "{q}: {:?}", r.body);
        assert!(r.detail().contains("day"), "{q}");
    }
    let r = app.get("/usage?to=0001-01-03", Some(&token)).await;
    assert_eq!(r.status, 200, "{:?}", r.body);
}

/// What generated clients rely on (see src/openapi.rs): a new endpoint without its row in
/// `OPERATIONS` fails here.
#[tokio::test]
async fn the_openapi_document_is_one_that_generated_clients_can_trust() {
    let app = spawn_app().await;
    let doc = app.send(app.client.get(app.url("/api/v1/openapi.json"))).await.body;
    let mut ids = std::collections::HashSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_string()), "{id} twice");
            let responses = op["responses"].as_object().unwrap();
            assert!(responses.contains_key("500"), "{id}");
            let public = [
                "auth_register",
                "auth_login",
                "auth_refresh",
                "status_get",
                "health_live",
                "health_ready",
                "metrics_get",
            ]
            .contains(&id);
            assert_eq!(op.get("security") == Some(&json!([])), public, "{id}: security");
            assert!(public || responses.contains_key("401"), "{id}: 401");
            let unlimited = ["health_live", "health_ready", "metrics_get"].contains(&id);
            assert_eq!(responses.contains_key("429"), !unlimited, "{id}: 429 wherever a rate limit counts");
            for (status, r) in responses {
                if status.starts_with('4') {
                    assert_eq!(r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody");
                }
            }
        }
    }
    assert_eq!(ids.len(), copilot::openapi::OPERATIONS.len(), "every row of OPERATIONS names a served operation");
    let schemas = &doc["components"]["schemas"];
    // null where the server sends null, and every response property present
    assert_eq!(schemas["User"]["properties"]["full_name"]["nullable"], true);
    assert!(schemas["User"]["required"].as_array().unwrap().contains(&json!("full_name")));
    assert_eq!(schemas["User"]["properties"]["id"]["format"], "uuid");
    assert_eq!(schemas["User"]["properties"]["created_at"]["format"], "date-time");
    assert_eq!(schemas["Organization"]["properties"]["settings"]["type"], "object");
    // a budget's limit is not a page size
    let budget = &schemas["Budget"]["properties"];
    assert_eq!((budget["limit"]["minimum"].as_i64(), budget["limit"].get("maximum")), (Some(1), None));
    assert_eq!(budget["name"]["enum"], json!(["org_monthly_tokens", "user_daily_tokens"]));
    assert_eq!(budget["resets_at"]["format"], "date-time");
    assert_eq!(schemas["UpdateUserRequest"]["properties"]["full_name"]["nullable"], true);
    assert_eq!(schemas["CreateAgentConfigRequest"]["properties"]["temperature"]["maximum"], 2.0);
    assert_eq!(schemas["CreateUserRequest"]["properties"]["password"]["minLength"], 8);
    // streams are streams, with their events
    let follow = &doc["paths"]["/conversations/{id}/completions/{job_id}"]["get"]["responses"]["200"]["content"];
    assert_eq!(follow["text/event-stream"]["schema"]["type"], "string");
    assert!(follow["text/event-stream"]["x-events"].as_array().unwrap().iter().any(|e| e["event"] == "delta"));
    assert!(schemas.get("StreamEvent").is_none());
    // the knowledge search's own limits; a document's status is one of four
    let search = doc["paths"]["/knowledge/search"]["get"]["parameters"].as_array().unwrap();
    let limit = search.iter().find(|p| p["name"] == "limit").unwrap();
    assert_eq!((limit["schema"]["maximum"].as_i64(), limit["schema"]["default"].as_i64()), (Some(50), Some(10)));
    assert_eq!(schemas["Document"]["properties"]["status"]["enum"].as_array().unwrap().len(), 4);
    let upload = &doc["paths"]["/documents"]["post"]["requestBody"]["content"];
    assert!(upload.get("application/json").is_some() && upload.get("multipart/form-data").is_some());
    // the login form has a schema of its own
    let login = &doc["paths"]["/auth/login"]["post"]["requestBody"]["content"];
    assert_eq!(login["application/x-www-form-urlencoded"]["schema"]["$ref"], "#/components/schemas/LoginForm");
    assert_eq!(login["application/json"]["schema"]["$ref"], "#/components/schemas/LoginBody");
    // the server really sends null for an absent full name
    let token = app.admin_token().await;
    let user = app.register("nameless").await;
    let r = app.get(&format!("/users/{}", user["id"].as_str().unwrap()), Some(&token)).await;
    assert!(r.body.as_object().unwrap().get("full_name").is_some_and(|v| v.is_null()), "{:?}", r.body);
}
