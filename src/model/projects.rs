//! Projects.

use poem_openapi::Object;

/// A project of an organization.
#[derive(Object, Debug, Clone)]
pub struct Project {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    /// Free-form JSON object
    pub settings: serde_json::Value,
    /// The user who created the project
    pub created_by: Option<String>,
    pub is_active: bool,
    /// How many users are members of the project
    pub member_count: i64,
    pub created_at: String,
    pub updated_at: String,
}
