//! The audit log's event (SPEC §8).

use poem_openapi::Object;

/// Where a request came from: its client address and `User-Agent`, as read from the request.
/// Every authenticated request carries one, so nothing is copied or formatted until an event is
/// recorded (the header value is shared with the request, not copied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Client {
    pub ip: Option<std::net::IpAddr>,
    pub user_agent: Option<poem::http::HeaderValue>,
}

/// The longest `User-Agent` kept in the audit log.
const USER_AGENT_MAX: usize = 512;

impl Client {
    /// The address as recorded: IPv4-mapped IPv6 addresses as plain IPv4.
    pub fn ip_text(&self) -> Option<String> {
        self.ip.map(|ip| match ip {
            std::net::IpAddr::V6(v6) => v6.to_canonical().to_string(),
            v4 => v4.to_string(),
        })
    }

    /// The `User-Agent` as recorded: text only, at most 512 characters.
    pub fn user_agent_text(&self) -> Option<String> {
        let ua = self.user_agent.as_ref()?.to_str().ok()?;
        let end = ua.char_indices().nth(USER_AGENT_MAX).map_or(ua.len(), |(i, _)| i);
        Some(ua[..end].to_string())
    }
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
