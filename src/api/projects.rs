//! /projects endpoints.

pub struct ProjectsApi {
    pub state: crate::AppState,
}

#[poem_openapi::OpenApi(tag = "crate::api::ApiTags::Projects")]
impl ProjectsApi {}
