//! /organizations endpoints.

pub struct OrganizationsApi {
    pub state: crate::AppState,
}

#[poem_openapi::OpenApi(tag = "crate::api::ApiTags::Organizations")]
impl OrganizationsApi {}
