//! /conversations endpoints.

pub struct ConversationsApi {
    pub state: crate::AppState,
}

#[poem_openapi::OpenApi(tag = "crate::api::ApiTags::Conversations")]
impl ConversationsApi {}
