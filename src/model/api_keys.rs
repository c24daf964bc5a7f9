//! API keys as the API answers with them and the store reads them.

use poem_openapi::Object;

/// An API key, without its secret.
#[derive(Object, Debug, Clone)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    /// `cpk_` and the key's first 8 characters
    pub prefix: String,
    /// What the key may do (its owner's current role limits it further)
    pub permissions: Vec<String>,
    /// The user the key acts as
    pub user_id: String,
    /// `null`: never expires
    pub expires_at: Option<String>,
    /// Updated at most about once a minute
    pub last_used_at: Option<String>,
    pub created_at: String,
}
