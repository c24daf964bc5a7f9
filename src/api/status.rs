//! Without authentication: `GET /status` (liveness and database health), `GET /health/live`
//! and `GET /health/ready` for orchestrators (SPEC §9), and `GET /metrics` when enabled. The
//! health and metrics endpoints answer at the root too (`/health/live`, `/metrics`), where
//! probes and scrapers look for them.

use poem::{
    Request, Response, handler,
    http::StatusCode,
    web::{Data, Json as PoemJson},
};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    payload::{Json, PlainText},
};

use crate::{AppState, api::ApiTags, error::ApiResult, metrics};

#[derive(Object, Debug)]
pub struct Status {
    /// `ok`, or `error` when the database cannot be reached
    pub status: String,
    pub version: String,
    /// `ok` or `error`
    pub database: String,
}

#[derive(ApiResponse)]
pub enum StatusResponse {
    /// The server and its database work
    #[oai(status = 200)]
    Ok(Json<Status>),
    /// The database cannot be reached
    #[oai(status = 503)]
    Unavailable(Json<Status>),
}

/// The liveness probe's answer.
#[derive(Object, Debug, serde::Serialize)]
pub struct Liveness {
    /// Always `ok`
    pub status: String,
}

/// The readiness probe's answer.
#[derive(Object, Debug, serde::Serialize)]
pub struct Readiness {
    /// `ok`, or `error` (with `detail`)
    pub status: String,
    /// `ok` or `error`
    pub database: String,
    /// `ok` when every migration of this build is applied, `pending` when one is missing,
    /// `unknown` when the database does not answer
    pub migrations: String,
    /// Why the server is not ready; `null` when it is
    pub detail: Option<String>,
}

#[derive(ApiResponse)]
pub enum LivenessResponse {
    /// The process serves HTTP
    #[oai(status = 200)]
    Ok(Json<Liveness>),
}

#[derive(ApiResponse)]
pub enum ReadinessResponse {
    /// Ready
    #[oai(status = 200)]
    Ok(Json<Readiness>),
    /// Not ready: the database does not answer or is not migrated
    #[oai(status = 503)]
    Unavailable(Json<Readiness>),
}

#[derive(ApiResponse)]
pub enum MetricsResponse {
    /// The metrics in the Prometheus text exposition format
    #[oai(status = 200, content_type = "text/plain; version=0.0.4; charset=utf-8")]
    Ok(PlainText<String>),
}

/// Liveness: the process answers HTTP.
fn live() -> Liveness {
    Liveness { status: "ok".into() }
}

/// Readiness: migrations applied and the database answering.
async fn ready(state: &AppState) -> (StatusCode, Readiness) {
    let (database, migrations, detail) = match state.store.migrations_applied().await {
        Ok(true) => ("ok", "ok", None),
        Ok(false) => ("ok", "pending", Some("the database lacks migrations of this build")),
        Err(_) => ("error", "unknown", Some("the database does not answer")),
    };
    let code = if detail.is_none() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let health = Readiness {
        status: if detail.is_none() { "ok" } else { "error" }.into(),
        database: database.into(),
        migrations: migrations.into(),
        detail: detail.map(Into::into),
    };
    (code, health)
}

pub struct StatusApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Status")]
impl StatusApi {
    /// Server status
    ///
    /// No authentication. Answers 503 when the database does not answer.
    #[oai(path = "/status", method = "get")]
    async fn status(&self) -> StatusResponse {
        let version = env!("CARGO_PKG_VERSION").to_string();
        match self.state.store.ping().await {
            Ok(()) => StatusResponse::Ok(Json(Status { status: "ok".into(), version, database: "ok".into() })),
            Err(_) => {
                StatusResponse::Unavailable(Json(Status { status: "error".into(), version, database: "error".into() }))
            }
        }
    }

    /// Liveness probe
    ///
    /// No authentication. 200 while the process serves HTTP; also at `/health/live`.
    #[oai(path = "/health/live", method = "get")]
    async fn health_live(&self) -> LivenessResponse {
        LivenessResponse::Ok(Json(live()))
    }

    /// Readiness probe
    ///
    /// No authentication. 200 when every migration is applied and the database answers, else
    /// 503; also at `/health/ready`.
    #[oai(path = "/health/ready", method = "get")]
    async fn health_ready(&self) -> ReadinessResponse {
        match ready(&self.state).await {
            (StatusCode::OK, h) => ReadinessResponse::Ok(Json(h)),
            (_, h) => ReadinessResponse::Unavailable(Json(h)),
        }
    }

    /// Prometheus metrics
    ///
    /// Served when `[metrics] enabled = true` (else 404): to loopback clients, or, when
    /// `[metrics] token` is set, to whoever sends it as `Authorization: Bearer <token>` (401
    /// without it). Requests by route and status, latency histograms, the database pools,
    /// completion jobs, LLM tokens and the ingestion queue. Also at `/metrics`.
    #[oai(path = "/metrics", method = "get")]
    async fn metrics(&self, req: &Request) -> ApiResult<MetricsResponse> {
        Ok(MetricsResponse::Ok(PlainText(metrics::scrape(&self.state, req).await?)))
    }
}

/// `GET /health/live` at the root.
#[handler]
pub async fn root_live() -> PoemJson<Liveness> {
    PoemJson(live())
}

/// `GET /health/ready` at the root.
#[handler]
pub async fn root_ready(state: Data<&AppState>) -> Response {
    let (code, health) = ready(&state).await;
    let mut resp = poem::IntoResponse::into_response(PoemJson(health));
    resp.set_status(code);
    resp
}

/// `GET /metrics` at the root.
#[handler]
pub async fn root_metrics(state: Data<&AppState>, req: &Request) -> Response {
    match metrics::scrape(&state, req).await {
        Ok(text) => Response::builder().content_type(metrics::CONTENT_TYPE).body(text),
        Err(e) => poem::IntoResponse::into_response(e),
    }
}
