//! The REST API under `/api/v1`: one file per area, request/response objects and handlers.
//! Handlers state their authorization rule in their first line and leave SQL to `store`.

use poem_openapi::{
    ApiResponse, Object, Tags,
    payload::Json,
    types::{ParseFromJSON, ToJSON},
};

pub mod agents;
pub mod auth;
pub mod conversations;
pub mod organizations;
pub mod projects;
pub mod roles;
pub mod status;
pub mod users;

#[derive(Tags)]
pub enum ApiTags {
    /// Sign-in, tokens and the current user
    Auth,
    /// Server health
    Status,
    /// Users of organizations
    Users,
    /// Organizations (tenants) and their members
    Organizations,
    /// Projects and their members
    Projects,
    /// Roles and the 13 system permissions
    Roles,
    /// Agent configurations
    AgentConfigs,
    /// The caller's own conversations and their messages
    Conversations,
}

/// 201 with the created resource.
#[derive(ApiResponse)]
pub enum Created<T: ParseFromJSON + ToJSON> {
    /// Created
    #[oai(status = 201)]
    Created(Json<T>),
}

/// 204 without a body.
#[derive(ApiResponse)]
pub enum Deleted {
    /// Deleted
    #[oai(status = 204)]
    NoContent,
}

/// A confirmation for actions without a resource to return.
#[derive(Object, Debug)]
pub struct MessageResponse {
    pub message: String,
}

impl MessageResponse {
    pub fn new(message: impl Into<String>) -> Json<MessageResponse> {
        Json(MessageResponse { message: message.into() })
    }
}
