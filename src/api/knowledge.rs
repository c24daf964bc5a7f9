//! `/knowledge/search`: ranked passages of the knowledge base (SPEC §7), the same retrieval that
//! completions use, so that what an agent would cite can be checked by hand.

use poem_openapi::{OpenApi, param::Query, payload::Json};

pub use crate::model::knowledge::Passage;
use crate::{
    AppState,
    api::ApiTags,
    auth::BearerAuth,
    authz::{self, Permission},
    error::{ApiError, ApiResult},
    knowledge::search,
    pagination::{ListResponse, Page},
    validate,
};

pub const QUERY_MAX: usize = 1000;
pub const SEARCH_LIMIT_DEFAULT: i64 = 10;
pub const SEARCH_LIMIT_MAX: i64 = 50;

pub struct KnowledgeApi {
    pub state: AppState,
}

#[OpenApi(tag = "ApiTags::Knowledge")]
impl KnowledgeApi {
    /// Search the knowledge base
    ///
    /// Needs `agents:read`. Passages of the caller's organization's documents (a superuser: of
    /// all, unless `organization_id` narrows it), best first, ranked by BM25 over heading and
    /// text. `q` 1..=1000 characters; `limit` 1..=50, default 10.
    #[oai(path = "/knowledge/search", method = "get")]
    async fn search(
        &self,
        auth: BearerAuth,
        q: Query<Option<String>>,
        project_id: Query<Option<String>>,
        document_id: Query<Option<String>>,
        limit: Query<Option<i64>>,
        organization_id: Query<Option<String>>,
    ) -> ApiResult<Json<ListResponse<Passage>>> {
        let scope = authz::require(&auth.0, Permission::AgentsRead)?
            .narrowed(validate::filter_id(organization_id.0).as_deref())?;
        let q = q.0.map(|q| q.trim().to_string()).unwrap_or_default();
        if q.is_empty() {
            return Err(ApiError::bad_request("q must not be empty"));
        }
        if q.chars().count() > QUERY_MAX {
            return Err(ApiError::bad_request(format!("q must be at most {QUERY_MAX} characters")));
        }
        let limit = limit.0.unwrap_or(SEARCH_LIMIT_DEFAULT);
        if !(1..=SEARCH_LIMIT_MAX).contains(&limit) {
            return Err(ApiError::bad_request(format!("limit must be between 1 and {SEARCH_LIMIT_MAX}")));
        }
        let project_ids: Vec<String> = validate::filter_id(project_id.0).into_iter().collect();
        let document_ids: Vec<String> = validate::filter_id(document_id.0).into_iter().collect();
        let query = search::Query { scope, project_ids, document_ids, text: q, limit: limit as usize };
        let passages = search::retrieve(&self.state.store, self.state.ingest.embedder.as_deref(), query).await?;
        let total = passages.len() as i64;
        Ok(Json(Page { skip: 0, limit }.wrap(passages, total)))
    }
}
