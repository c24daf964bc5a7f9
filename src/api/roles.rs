//! /roles endpoints.

pub struct RolesApi {
    pub state: crate::AppState,
}

#[poem_openapi::OpenApi(tag = "crate::api::ApiTags::Roles")]
impl RolesApi {}
