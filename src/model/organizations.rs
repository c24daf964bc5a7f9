//! Organizations (tenants).

use poem_openapi::Object;

/// An organization (tenant).
#[derive(Object, Debug, Clone)]
pub struct Organization {
    pub id: String,
    pub name: String,
    pub domain: Option<String>,
    pub description: Option<String>,
    /// A JSON object
    pub settings: serde_json::Value,
    pub is_active: bool,
    pub created_at: String,
    pub updated_at: String,
}
