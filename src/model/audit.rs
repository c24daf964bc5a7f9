//! The audit log's event (SPEC §8).

use poem_openapi::Object;

/// Where a request came from: its client address and `User-Agent`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Who made a request (nobody, for a failed login), and from where.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub api_key_id: Option<String>,
    pub client: Client,
}

/// One recorded write or authentication event.
#[derive(Object, Debug, Clone, PartialEq)]
pub struct AuditEvent {
    pub id: String,
    /// When it happened (RFC 3339, UTC)
    pub at: String,
    /// The organization the event belongs to (`null`: no organization, e.g. a failed login of an
    /// unknown username; only superusers see those)
    pub organization_id: Option<String>,
    /// Who did it (`null` when nobody was signed in, e.g. a failed login)
    pub actor_user_id: Option<String>,
    /// The API key the request came with, if it came with one
    pub actor_api_key_id: Option<String>,
    /// `area.action`, e.g. `user.create`, `auth.login_failed`
    pub action: String,
    /// What kind of row it touched, e.g. `user`, `session`
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The client's address (`X-Forwarded-For` only from `[server] trusted_proxies`)
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The fields the request set, with their new values. Never a password, token or key (those
    /// read `"[redacted]"`); message and document text is given as its length.
    pub changes: Option<serde_json::Value>,
}
