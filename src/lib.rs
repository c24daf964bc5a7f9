//! copilot: the enterprise AI co-pilot backend. `AppState::open` prepares storage and secrets,
//! `build_app` assembles the whole HTTP endpoint (tests use it too), `serve` runs it.

pub mod api;
pub mod auth;
pub mod authz;
pub mod backup;
pub mod config;
pub mod db;
pub mod error;
pub mod knowledge;
pub mod limits;
pub mod llm;
pub mod metrics;
pub mod middleware;
pub mod model;
pub mod openapi;
pub mod pagination;
pub mod pg;
pub mod server;
pub mod store;
pub mod validate;
pub mod web;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use poem::{
    Body, Endpoint, EndpointExt, IntoResponse, Middleware, Request, Response, Route,
    http::{HeaderValue, StatusCode, header},
    middleware::{CatchPanic, Cors, NormalizePath, SetHeader, TrailingSlash},
};
use poem_openapi::OpenApiService;
use rand::distr::{Alphanumeric, SampleString};

use crate::{
    auth::{password::Passwords, token::Tokens},
    config::Config,
    db::Db,
    error::{catch_all, error_response},
    middleware::{AllowHeader, AllowTable, ForeignOrigins},
    store::conn::Store,
};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Where the data lives (`store::conn`): the SQLite file of `[database] path`, or the
    /// PostgreSQL database of `[database] url`.
    pub store: Store,
    pub tokens: Arc<Tokens>,
    pub passwords: Arc<Passwords>,
    /// The LLM providers of `[llm]` and the reply-generating jobs of this process.
    pub llm: Arc<llm::Providers>,
    pub jobs: Arc<llm::jobs::Jobs>,
    /// The background worker that ingests uploaded documents.
    pub ingest: Arc<knowledge::ingest::Ingestor>,
    /// `[metrics] enabled`: what `/metrics` reports; `None` records nothing.
    pub metrics: Option<Arc<metrics::Metrics>>,
    /// `[limits]` request rate limits of this process (in memory).
    pub rate_limits: Arc<limits::RateLimits>,
}

/// What start-up did that the operator must hear about once.
#[derive(Debug, Default)]
pub struct Startup {
    /// The first start created the superuser with this generated password.
    pub generated_admin_password: Option<String>,
    pub bootstrapped: bool,
}

/// The embedder on PostgreSQL: kept where pgvector is enabled (created in the database now if
/// the server has it), else dropped with a warning: the knowledge base is then full text only,
/// and neither chunks nor questions go to the provider for vectors nothing would keep.
fn postgres_vectors(data: &Store, e: Arc<llm::embeddings::Embedder>) -> Option<Arc<llm::embeddings::Embedder>> {
    match data.write_blocking(store::documents::enable_vectors) {
        Ok(Some(version)) => {
            tracing::info!(model = %e.model, pgvector = %version, "knowledge base on PostgreSQL: hybrid retrieval");
            Some(e)
        }
        Ok(None) => {
            tracing::warn!(
                model = %e.model,
                "[knowledge] embedding_model is ignored: this PostgreSQL server has no pgvector extension, so the \
                 knowledge base is full text only (install pgvector, e.g. the postgresql-15-pgvector package, and \
                 restart)"
            );
            None
        }
        Err(error) => {
            tracing::warn!(
                model = %e.model,
                %error,
                "[knowledge] embedding_model is ignored: the PostgreSQL server has pgvector but it could not be \
                 enabled in this database (run CREATE EXTENSION vector there as a superuser, and restart); the \
                 knowledge base is full text only"
            );
            None
        }
    }
}

impl AppState {
    /// Opens (and migrates) the database, runs the first-start bootstrap, resolves the JWT secret.
    pub fn open(config: Config) -> Result<(AppState, Startup), String> {
        let data = match config.database.backend() {
            config::Backend::Postgres(url) => {
                let pool = pg::open(url, config.database.pool_size)?;
                let migrated = pg::migrate(&pool)?;
                if !migrated.applied.is_empty() {
                    tracing::info!(
                        applied = migrated.applied.len(),
                        version = migrated.version,
                        "migrated the PostgreSQL database"
                    );
                }
                Store::Postgres(pool)
            }
            config::Backend::Sqlite(_) => Store::Sqlite(Db::open(
                &config.database.path,
                config.database.pool_size,
                Duration::from_millis(config.database.busy_timeout_ms),
                (config.database.checkpoint_interval_ms > 0)
                    .then(|| Duration::from_millis(config.database.checkpoint_interval_ms)),
            )?),
        };
        let mut startup = Startup::default();
        let needs_bootstrap = !data
            .write_blocking(store::bootstrap::is_bootstrapped)
            .map_err(|e| format!("reading the database: {}", e))?;
        if needs_bootstrap {
            let b = &config.bootstrap;
            let username = validate::Username::parse(&b.admin_username)
                .map_err(|e| format!("configuration error: bootstrap.admin_username: {}", e.detail))?;
            let email = validate::Email::parse(&b.admin_email)
                .map_err(|e| format!("configuration error: bootstrap.admin_email: {}", e.detail))?;
            let password = if b.admin_password.is_empty() {
                let generated = Alphanumeric.sample_string(&mut rand::rng(), 20);
                startup.generated_admin_password = Some(generated.clone());
                generated
            } else {
                validate::Password::parse("bootstrap.admin_password", &b.admin_password)
                    .map_err(|e| format!("configuration error: {}", e.detail))?
                    .into_inner()
            };
            let hash = auth::password::hash_password(&password, config.auth.pbkdf2_iterations).map_err(|e| e.detail)?;
            let admin = store::bootstrap::Admin {
                username: username.into_inner(),
                email: email.into_inner(),
                password_hash: hash,
            };
            startup.bootstrapped = data
                .write_blocking(|c| store::bootstrap::bootstrap(c, &admin))
                .map_err(|e| format!("bootstrapping the database: {}", e))?;
            if !startup.bootstrapped {
                startup.generated_admin_password = None;
            }
        }
        data.write_blocking(store::bootstrap::ensure_registration_org)
            .map_err(|e| format!("reading the registration organization: {}", e))?;
        let secret = if config.auth.jwt_secret.is_empty() {
            let candidate = Alphanumeric.sample_string(&mut rand::rng(), 64);
            data.write_blocking(|c| store::auth::init_setting(c, "jwt_secret", &candidate, &db::now()))
                .map_err(|e| format!("storing the JWT secret: {}", e))?
        } else {
            config.auth.jwt_secret.clone()
        };
        let llm = llm::Providers::from_config(&config.llm, |name| std::env::var(name).ok())?;
        // a job of a previous process cannot be resumed. One process serves a SQLite file: every
        // job left running is of a previous one, its partial text was only in memory. On
        // PostgreSQL other instances may be running theirs: only jobs whose lease ran out are,
        // and what they had written of the reply is stored as its partial message.
        let shared = data.backend() == "postgres";
        let interrupted = data
            .write_blocking(|c| match shared {
                false => store::completions::fail_interrupted_jobs(c, "server restarted", &db::now()),
                true => llm::jobs::expire_leases(c),
            })
            .map_err(|e| format!("recovering completion jobs: {}", e))?;
        if interrupted > 0 {
            tracing::warn!(jobs = interrupted, "marked completion jobs of a previous run as failed");
        }
        // one process serves the SQLite file: what a previous one was ingesting is redone
        let requeued = data
            .write_blocking(|c| store::documents::requeue_interrupted(c, &db::now()))
            .map_err(|e| format!("recovering document ingestion: {}", e))?;
        if requeued > 0 {
            tracing::warn!(documents = requeued, "resuming the ingestion of documents interrupted by a stop");
        }
        // vector spaces of an older layout (float vectors only) are rebuilt with their sign bits
        let upgraded = data
            .write_blocking(store::documents::upgrade_spaces)
            .map_err(|e| format!("upgrading the vector spaces: {}", e))?;
        if upgraded > 0 {
            tracing::info!(vectors = upgraded, "rebuilt the vector spaces with binary quantization");
        }
        let embedder = llm::embeddings::Embedder::new(&config.knowledge.embedding_model, &llm)?.map(Arc::new);
        let embedder = match (&data, embedder) {
            (Store::Postgres(_), Some(e)) => postgres_vectors(&data, e),
            (Store::Postgres(_), None) => {
                tracing::info!("knowledge base on PostgreSQL: full-text retrieval (no [knowledge] embedding_model)");
                None
            }
            (Store::Sqlite(_), embedder) => embedder,
        };
        let state = AppState {
            ingest: knowledge::ingest::Ingestor::new(data.clone(), embedder),
            llm: Arc::new(llm),
            jobs: Arc::new(llm::jobs::Jobs::new(shared.then(db::new_id))),
            tokens: Arc::new(Tokens::new(
                secret.as_bytes(),
                config.auth.access_token_ttl_minutes,
                config.auth.refresh_token_ttl_days,
            )),
            passwords: Arc::new(Passwords::new(config.auth.pbkdf2_iterations, config.auth.max_concurrent_hashes)),
            rate_limits: Arc::new(limits::RateLimits::new(&config.limits, shared.then(|| data.clone()))),
            store: data,
            metrics: config.metrics.enabled.then(|| Arc::new(metrics::Metrics::new())),
            config: Arc::new(config),
        };
        Ok((state, startup))
    }

    /// Starts the background work of this process (document ingestion; on PostgreSQL, sharing
    /// the completion jobs with other instances) on the current runtime; `serve` calls it, and so
    /// do servers embedded in tests. Calling it again does nothing.
    pub fn start_background(&self) {
        self.ingest.start();
        self.jobs.start_sync(self.store.clone());
    }
}

type Apis = (
    api::status::StatusApi,
    api::auth::AuthApi,
    api::users::UsersApi,
    api::organizations::OrganizationsApi,
    api::projects::ProjectsApi,
    api::roles::RolesApi,
    api::agents::AgentConfigsApi,
    api::conversations::ConversationsApi,
    api::completions::CompletionsApi,
    api::usage::UsageApi,
    api::documents::DocumentsApi,
    api::knowledge::KnowledgeApi,
    api::api_keys::ApiKeysApi,
    api::audit::AuditApi,
);

pub fn openapi(state: &AppState) -> OpenApiService<Apis, ()> {
    let apis = (
        api::status::StatusApi { state: state.clone() },
        api::auth::AuthApi { state: state.clone() },
        api::users::UsersApi { state: state.clone() },
        api::organizations::OrganizationsApi { state: state.clone() },
        api::projects::ProjectsApi { state: state.clone() },
        api::roles::RolesApi { state: state.clone() },
        api::agents::AgentConfigsApi { state: state.clone() },
        api::conversations::ConversationsApi { state: state.clone() },
        api::completions::CompletionsApi { state: state.clone() },
        api::usage::UsageApi { state: state.clone() },
        api::documents::DocumentsApi { state: state.clone() },
        api::knowledge::KnowledgeApi { state: state.clone() },
        api::api_keys::ApiKeysApi { state: state.clone() },
        api::audit::AuditApi { state: state.clone() },
    );
    OpenApiService::new(apis, "copilot", VERSION)
        .description(
            "The REST API of copilot, the self-hosted enterprise AI co-pilot backend. Authorize with \
             the login endpoint (OAuth2 password flow) or send `Authorization: Bearer <access token>`. \
             Every error answers `{\"detail\": \"...\"}`.",
        )
        .server("/api/v1")
}

/// The OpenAPI document as JSON, finished for generated clients (see [`openapi::finish`]).
pub fn openapi_json(api: &OpenApiService<Apis, ()>) -> String {
    let doc: serde_json::Value = serde_json::from_str(&api.spec()).expect("poem-openapi writes valid JSON");
    serde_json::to_string_pretty(&openapi::finish(doc)).expect("serializable")
}

/// The whole HTTP application: API, docs, console, and the middleware of SPEC §5.
pub fn build_app(state: AppState) -> impl Endpoint<Output = Response> {
    let api = openapi(&state);
    let spec = openapi_json(&api);
    let doc: serde_json::Value = serde_json::from_str(&spec).expect("valid JSON");
    let mut allow = AllowTable::from_openapi(&doc, "/api/v1");
    if let Some(m) = &state.metrics {
        let templates: Vec<String> =
            doc["paths"].as_object().into_iter().flatten().map(|(path, _)| format!("/api/v1{path}")).collect();
        m.set_templates(templates.iter().map(String::as_str));
    }
    for path in [
        "/api/v1/openapi.json",
        "/docs",
        "/docs/oauth-receiver.html",
        "/favicon.ico",
        "/",
        "/health/live",
        "/health/ready",
        "/metrics",
    ] {
        allow.add(path, &["GET"]);
    }
    // Swagger UI shows the finished document, not poem-openapi's own
    let docs_html = api.swagger_ui_html().replace(&api.spec(), &spec);
    let spec = poem::endpoint::make_sync(move |_| {
        Response::builder().content_type("application/json; charset=utf-8").body(spec.clone())
    });
    let docs_csp = web::docs_csp(&docs_html);
    let docs = Route::new()
        .at("/", poem::endpoint::make_sync(move |_| poem::web::Html(docs_html.clone())))
        .at("/oauth-receiver.html", api.swagger_ui())
        .with(SetHeader::new().overriding(header::CONTENT_SECURITY_POLICY, docs_csp));
    let cfg = state.config.clone();

    let routes = Route::new()
        .at("/api/v1/openapi.json", poem::get(spec))
        .nest("/api/v1", api)
        .nest("/docs", poem::get(docs))
        .nest("/admin", web::Console)
        .at("/favicon.ico", poem::get(poem::endpoint::make_sync(|_| web::favicon())))
        .at("/health/live", poem::get(api::status::root_live))
        .at("/health/ready", poem::get(api::status::root_ready))
        .at("/metrics", poem::get(api::status::root_metrics))
        .at("/", poem::get(poem::endpoint::make_sync(|_| web::redirect("/admin/"))))
        .catch_all_error(catch_all);

    let cors = (!cfg.server.cors_origins.is_empty()).then(|| {
        Cors::new()
            .allow_origins(cfg.server.cors_origins.iter().map(String::as_str))
            .allow_methods(["GET", "POST", "PUT", "DELETE", "OPTIONS"])
            .allow_headers(["authorization", "content-type"])
            .expose_headers(["retry-after", "www-authenticate"])
            .allow_credentials(false)
            .max_age(600)
    });

    let allowed_origins = Arc::new(cfg.server.cors_origins.clone());
    let metrics = state.metrics.clone();
    let rate_limits = state.rate_limits.clone();
    routes
        .with_if(cors.is_some(), cors.unwrap_or_default())
        .with(ForeignOrigins(allowed_origins))
        .catch_all_error(catch_all)
        .with(AllowHeader(Arc::new(allow)))
        // before the body is read; without `anonymous_requests_per_minute` not even a wrapper
        .with_if(
            rate_limits.has_anonymous_limit(),
            limits::AnonymousLimit { limits: rate_limits.clone(), trusted_proxies: cfg.server.trusted_proxies.clone() },
        )
        .with(NormalizePath::new(TrailingSlash::Trim))
        .with(BodyLimit {
            limit: cfg.server.body_limit_bytes,
            // a document upload carries the file plus a little multipart framing
            upload_limit: cfg.server.body_limit_bytes.max(cfg.knowledge.max_document_bytes() + 64 * 1024),
        })
        .with(BodyDeadline(Duration::from_secs(cfg.server.body_read_timeout_seconds)))
        .with(
            SetHeader::new()
                .overriding("X-Content-Type-Options", "nosniff")
                .overriding("X-Frame-Options", "DENY")
                .overriding("Referrer-Policy", "no-referrer"),
        )
        .with(CatchPanic::new().with_handler(middleware::panic_response))
        .around(move |next, req| log_request(next, req, metrics.clone()))
        .data(state)
        .map_to_response()
}

/// Logs method, path, status and latency of every request; never headers or bodies. The URI is
/// kept by reference count and formatted only when the log line is written. Counts the request
/// in `/metrics` when they are on.
async fn log_request<E: Endpoint>(
    next: Arc<E>,
    req: Request,
    metrics: Option<Arc<metrics::Metrics>>,
) -> poem::Result<Response> {
    let started = Instant::now();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let (resp, route) = match next.call(req).await {
        Ok(r) => {
            let r = r.into_response();
            let route = metrics.as_ref().and_then(|_| r.data::<poem::PathPattern>().cloned());
            (r, route)
        }
        Err(e) => {
            let route = metrics.as_ref().and_then(|_| e.data::<poem::PathPattern>().cloned());
            (e.into_response(), route)
        }
    };
    if let Some(m) = &metrics {
        m.observe(method.as_str(), route.as_ref(), resp.status(), started.elapsed());
    }
    let status = resp.status().as_u16();
    if status >= 500 {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::error!(%method, path = %uri.path(), status, latency_ms, "request");
    } else if tracing::enabled!(tracing::Level::INFO) {
        let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(%method, path = %uri.path(), status, latency_ms, "request");
    }
    Ok(resp)
}

/// Answers 413 for bodies over the limit (declared or streamed) and reads a body without a
/// `Content-Type` as JSON. Document uploads (`POST /api/v1/documents`) get `upload_limit`.
struct BodyLimit {
    limit: usize,
    upload_limit: usize,
}

impl<E: Endpoint> Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        BodyLimitEndpoint { inner, limit: self.limit, upload_limit: self.upload_limit }
    }
}

struct BodyLimitEndpoint<E> {
    inner: E,
    limit: usize,
    upload_limit: usize,
}

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let too_large = || error_response(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large", None);
        let limit = if req.method() == poem::http::Method::POST
            && req.uri().path().trim_end_matches('/') == "/api/v1/documents"
        {
            self.upload_limit
        } else {
            self.limit
        };
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        match declared {
            Some(len) if len > limit => return Ok(too_large()),
            Some(_) => {}
            None if req.headers().contains_key(header::TRANSFER_ENCODING) => {
                match req.take_body().into_bytes_limit(limit).await {
                    Ok(bytes) => req.set_body(bytes),
                    Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
                    Err(e) => {
                        return Ok(error_response(
                            StatusCode::BAD_REQUEST,
                            &format!("Cannot read the body: {e}"),
                            None,
                        ));
                    }
                }
            }
            None => {}
        }
        let has_body = declared.is_some_and(|l| l > 0) || req.headers().contains_key(header::TRANSFER_ENCODING);
        if has_body && !req.headers().contains_key(header::CONTENT_TYPE) {
            req.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        Ok(match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        })
    }
}

/// Gives a request body its time to arrive whole; a slower one is answered 408 (and the
/// connection closed), whatever the handler made of the cut-off body.
struct BodyDeadline(Duration);

impl<E: Endpoint> Middleware<E> for BodyDeadline {
    type Output = BodyDeadlineEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        BodyDeadlineEndpoint { inner, limit: self.0 }
    }
}

struct BodyDeadlineEndpoint<E> {
    inner: E,
    limit: Duration,
}

impl<E: Endpoint> Endpoint for BodyDeadlineEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
            || req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).is_some_and(|v| v.trim() != "0");
        let expired = has_body.then(|| Arc::new(AtomicBool::new(false)));
        if let Some(flag) = expired.clone() {
            let deadline = tokio::time::Instant::now() + self.limit;
            let body = req.take_body().into_bytes_stream();
            let timed = futures_util::stream::unfold(Some(Box::pin(body)), move |body| {
                let flag = flag.clone();
                async move {
                    let mut body = body?;
                    match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(&mut body)).await {
                        Ok(Some(item)) => Some((item, Some(body))),
                        Ok(None) => None,
                        Err(_) => {
                            flag.store(true, Ordering::Release);
                            let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "request body timed out");
                            Some((Err(e), None))
                        }
                    }
                }
            });
            req.set_body(Body::from_bytes_stream(timed));
        }
        let resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        if expired.is_some_and(|e| e.load(Ordering::Acquire)) {
            let detail = format!("The request body did not arrive within {} seconds", self.limit.as_secs());
            let mut resp = error_response(StatusCode::REQUEST_TIMEOUT, &detail, None);
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
            return Ok(resp);
        }
        Ok(resp)
    }
}

/// Serves the whole application on `listener` with the connection limits of `[server]` until
/// `shutdown` resolves; in-flight requests then get `shutdown_timeout_seconds` to finish. This is
/// how the server runs, in production and in the tests.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cfg = state.config.clone();
    serve_app(listener, build_app(state), &cfg, shutdown).await
}

/// [`serve_on`] with the app already built.
async fn serve_app(
    listener: tokio::net::TcpListener,
    app: impl Endpoint<Output = Response> + 'static,
    cfg: &Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let mut limits = server::Limits::from_config(&cfg.server);
    // the cap must bind before the open-file limit does: accept() failing with EMFILE would
    // lock everyone out
    if let Some(files) = server::raise_open_file_limit() {
        let reserve = 256 + u64::from(cfg.database.pool_size) * 4;
        let room = usize::try_from(files.saturating_sub(reserve).max(16)).unwrap_or(usize::MAX);
        if limits.max_connections > room {
            tracing::warn!(
                max_connections = limits.max_connections,
                open_files = files,
                "the open-file limit allows {room} connections only; raise it (ulimit -n) or lower \
                 server.max_connections"
            );
            limits.max_connections = room;
        }
    }
    let grace = Duration::from_secs(cfg.server.shutdown_timeout_seconds);
    server::run(listener, app, limits, shutdown, grace).await
}

/// Binds, prints where it listens, and serves until SIGINT or SIGTERM; in-flight requests finish.
pub async fn serve(state: AppState, startup: Startup) -> Result<(), String> {
    let cfg = state.config.clone();
    let listener = tokio::net::TcpListener::bind(&cfg.server.bind)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", cfg.server.bind))?;
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| cfg.server.bind.clone());
    // the signal handlers and the app are ready before the banner says we listen: a SIGTERM
    // right after it is graceful (the default action would kill the process mid-request)
    let stop = shutdown_signal();
    state.start_background();
    tokio::spawn(prune_periodically(state.clone()));
    let jobs = state.jobs.clone();
    let ingest = state.ingest.clone();
    let app = build_app(state.clone());
    print_banner(&state, &startup, &addr);
    // running completion jobs are stopped first, so their streams end and their partial replies
    // are stored before the database goes away
    let signal = async move {
        stop.await;
        jobs.shutdown(Duration::from_secs(10)).await;
        ingest.shutdown(Duration::from_secs(10)).await;
    };
    serve_app(listener, app, &cfg, signal).await.map_err(|e| format!("server error: {e}"))?;
    tracing::info!("stopped");
    Ok(())
}

/// Every minute, deletes one bounded batch of expired failed-login records and dead sessions, so
/// that anonymous input cannot pile up rows and one run never holds the writer for long.
async fn prune_periodically(state: AppState) {
    const BATCH: u32 = 1000;
    let window = time::Duration::minutes(state.config.auth.lockout_minutes as i64);
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        let now = time::OffsetDateTime::now_utc();
        let (failures_before, revoked_before) =
            (db::format_ts(now - window), db::format_ts(now - time::Duration::days(1)));
        let pruned = state
            .store
            .write(move |c| store::auth::prune(c, &failures_before, &db::format_ts(now), &revoked_before, BATCH))
            .await;
        state.rate_limits.forget_idle().await;
        match pruned {
            Ok(0) => {}
            Ok(rows) => tracing::debug!(rows, "pruned expired login failures and sessions"),
            Err(e) => tracing::warn!(error = %e, "pruning expired rows failed"),
        }
        prune_audit_log(&state, now).await;
    }
}

/// Deletes the audit events older than `[audit] retention_days`, in batches that each hold the
/// writer only briefly; at most a million per run, the rest the next minute.
async fn prune_audit_log(state: &AppState, now: time::OffsetDateTime) {
    const BATCH: u32 = 5000;
    let before = db::format_ts(now - time::Duration::days(state.config.audit.retention_days.into()));
    for _ in 0..200 {
        let before = before.clone();
        match state.store.write(move |c| store::audit::prune(c, &before, BATCH)).await {
            Ok(n) if n < BATCH as usize => {
                if n > 0 {
                    tracing::debug!(rows = n, "pruned old audit events");
                }
                return;
            }
            Ok(_) => tokio::task::yield_now().await,
            Err(e) => return tracing::warn!(error = %e, "pruning old audit events failed"),
        }
    }
}

fn print_banner(state: &AppState, startup: &Startup, addr: &str) {
    let cfg = &state.config;
    println!("copilot {VERSION} listening on http://{addr}");
    println!("  admin console  http://{addr}/admin/");
    println!("  API docs       http://{addr}/docs");
    println!("  database       {}", cfg.database.path.display());
    if let Some(pw) = &startup.generated_admin_password {
        println!();
        println!("  First start: created the superuser. Sign in with");
        println!("    username: {}", cfg.bootstrap.admin_username.trim());
        println!("    password: {pw}");
        println!("  This password is shown only now. Change it after signing in.");
        println!();
    } else if startup.bootstrapped {
        println!(
            "  First start: created the superuser {:?} with the password from [bootstrap].",
            cfg.bootstrap.admin_username.trim()
        );
    }
    println!("Ready. Stop with Ctrl-C.");
}

/// Registers the SIGINT and SIGTERM handlers now (before the banner says we listen, a signal
/// would otherwise kill the process mid-request) and resolves when one arrives.
fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let (int, term) = (signal(SignalKind::interrupt()).ok(), signal(SignalKind::terminate()).ok());
    async move {
        let wait = |s: Option<tokio::signal::unix::Signal>| async move {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = wait(int) => {},
            _ = wait(term) => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    }
}
