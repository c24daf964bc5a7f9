//! /agents endpoints.

pub struct AgentConfigsApi {
    pub state: crate::AppState,
}

#[poem_openapi::OpenApi(tag = "crate::api::ApiTags::AgentConfigs")]
impl AgentConfigsApi {}
