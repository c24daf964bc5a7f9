//! Users (never with a password hash).

use poem_openapi::Object;

/// A user. Never carries a password hash.
#[derive(Object, Debug, Clone)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub organization_id: String,
    pub role_id: Option<String>,
    pub is_active: bool,
    pub is_superuser: bool,
    pub created_at: String,
    pub updated_at: String,
}
