//! One error type for the whole API: a status and a human-readable `detail`. The layers below
//! answer their own errors (`StoreError`, `DbError`, `StartError`), which convert into this one;
//! store and db never import it.
//!
//! Internal causes (SQLite, I/O, panics) are logged where they are converted and answered as a
//! plain 500; the client never sees them.

use crate::{db::DbError, store::error::StoreError};
use poem::{
    IntoResponse, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiResponse, Object, ResponseContent,
    payload::Json,
    registry::{MetaHeader, MetaResponse, MetaResponses, MetaSchemaRef, Registry},
    types::Type,
};

/// The body of every error answer.
#[derive(Object, Debug, Clone, serde::Serialize)]
pub struct ErrorBody {
    /// What went wrong, in words meant for a person.
    pub detail: String,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {detail}")]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    /// Seconds for `Retry-After` (429 only).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self { status, detail: detail.into(), retry_after: None }
    }
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }
    pub fn too_many_requests(detail: impl Into<String>, retry_after: u64) -> Self {
        Self { retry_after: Some(retry_after.max(1)), ..Self::new(StatusCode::TOO_MANY_REQUESTS, detail) }
    }
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, detail)
    }
    /// Logs the cause; the client gets a plain 500.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        Self::internal(format_args!("database: {e}"))
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        if e.is_nul_in_text() {
            return Self::bad_request(crate::db::NUL_IN_TEXT);
        }
        Self::internal(e)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(what),
            StoreError::Invalid(detail) => Self::bad_request(detail),
            StoreError::Conflict(detail) => Self::conflict(detail),
            StoreError::Exhausted { detail, retry_after } => Self::too_many_requests(detail, retry_after),
            StoreError::Database(e) => e.into(),
            StoreError::Internal(_) => Self::internal(e),
        }
    }
}

/// A JSON `{"detail"}` response; 401 carries `WWW-Authenticate: Bearer`.
pub fn error_response(status: StatusCode, detail: &str, retry_after: Option<u64>) -> Response {
    let body = serde_json::to_vec(&ErrorBody { detail: detail.to_string() }).unwrap_or_default();
    let mut resp = Response::builder().status(status).content_type("application/json; charset=utf-8").body(body);
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(secs) = retry_after {
        resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.detail, self.retry_after)
    }
}

impl From<ApiError> for poem::Error {
    fn from(e: ApiError) -> Self {
        let msg = e.detail.clone();
        let mut err = poem::Error::from_response(e.into_response());
        err.set_error_message(msg);
        err
    }
}

const DOCUMENTED: &[(u16, &str)] = &[
    (400, "Malformed request or failed validation"),
    (401, "Missing, invalid, expired or revoked token"),
    (403, "Authenticated but not allowed"),
    (404, "No such resource (or not visible to the caller)"),
    (409, "Uniqueness conflict or a rule the current state forbids"),
    (413, "Request body too large"),
    (429, "Too many failed logins"),
    (500, "Internal error"),
];

impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        MetaResponses {
            responses: DOCUMENTED
                .iter()
                .map(|&(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: <Json<ErrorBody> as ResponseContent>::media_types(),
                    headers: match status {
                        401 => vec![header_meta("WWW-Authenticate", "Always `Bearer`")],
                        429 => vec![header_meta("Retry-After", "Seconds until a login may be tried again")],
                        _ => vec![],
                    },
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        <Json<ErrorBody> as ResponseContent>::register(registry);
    }
}

fn header_meta(name: &str, description: &str) -> MetaHeader {
    MetaHeader {
        name: name.to_string(),
        description: Some(description.to_string()),
        required: true,
        deprecated: false,
        schema: MetaSchemaRef::Inline(Box::new(String::schema_ref().unwrap_inline().clone())),
    }
}

/// Turns every error that poem or poem-openapi produce by themselves (bad JSON, bad query,
/// unknown route, wrong method, missing token, ...) into a `{"detail"}` answer.
pub async fn catch_all(err: poem::Error) -> Response {
    // the matched route survives the conversion, for /metrics
    let route = err.data::<poem::PathPattern>().cloned();
    let mut resp = answer(err);
    if let Some(r) = route {
        resp.set_data(r);
    }
    resp
}

fn answer(err: poem::Error) -> Response {
    if err.is_from_response() || err.status().as_u16() < 400 {
        return err.into_response();
    }
    let status = err.status();
    let detail = match status {
        StatusCode::NOT_FOUND => "Not found".to_string(),
        StatusCode::METHOD_NOT_ALLOWED => "Method not allowed".to_string(),
        StatusCode::UNAUTHORIZED => "Not authenticated".to_string(),
        StatusCode::PAYLOAD_TOO_LARGE => "Request body too large".to_string(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => format!("Unsupported content type: {err}"),
        s if s.is_server_error() => {
            tracing::error!(error = %err, "unhandled error");
            "Internal server error".to_string()
        }
        _ => err.to_string(),
    };
    // poem-openapi reports a wrong content type as 415; a bad body of any kind is a 400 here
    let status = if status == StatusCode::UNSUPPORTED_MEDIA_TYPE { StatusCode::BAD_REQUEST } else { status };
    error_response(status, &detail, None)
}
