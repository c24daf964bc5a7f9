//! `GET /status`: liveness and database health, without authentication.

use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use crate::{AppState, api::ApiTags};

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
        match self.state.db.ping().await {
            Ok(()) => StatusResponse::Ok(Json(Status { status: "ok".into(), version, database: "ok".into() })),
            Err(_) => {
                StatusResponse::Unavailable(Json(Status { status: "error".into(), version, database: "error".into() }))
            }
        }
    }
}
