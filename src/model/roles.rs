//! Roles and the system permissions.

use poem_openapi::Object;

/// A role: a named set of permissions within one organization.
#[derive(Object, Debug, Clone)]
pub struct Role {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    /// System roles (`admin`, `member`) cannot be changed or deleted
    pub is_system: bool,
    /// Permission names, in the canonical order of the permission list
    pub permissions: Vec<String>,
    /// How many users (active or not) hold the role
    pub user_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// One of the 13 system permissions.
#[derive(Object, Debug, Clone)]
#[oai(rename = "Permission")]
pub struct PermissionInfo {
    pub id: String,
    /// `resource:action`, e.g. `projects:read`
    pub name: String,
    pub resource: String,
    pub action: String,
    pub description: String,
}
