//! Typed configuration: built-in defaults, then the TOML file, then `COPILOT_<SECTION>__<KEY>`
//! environment variables. Validated once, at start-up; every error names the key and its source.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub bootstrap: BootstrapConfig,
    pub log: LogConfig,
    pub llm: LlmConfig,
    pub knowledge: KnowledgeConfig,
    pub metrics: MetricsConfig,
    pub audit: AuditConfig,
    pub limits: LimitsConfig,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub bind: String,
    /// Exact origins allowed for browser clients (CORS); empty: none.
    pub cors_origins: Vec<String>,
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// How long in-flight requests may take to finish after SIGINT/SIGTERM.
    pub shutdown_timeout_seconds: u64,
    /// A new connection's first request head, and every later head from its first byte, must
    /// arrive within this time.
    pub header_read_timeout_seconds: u64,
    /// How long a connection may stay idle between requests (keep-alive), and a response wait
    /// for a client that does not read it.
    pub idle_timeout_seconds: u64,
    /// A request body must arrive whole within this time after its head.
    pub body_read_timeout_seconds: u64,
    /// Open connections at most; one more closes the longest-idle one.
    pub max_connections: usize,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For` names the client; from
    /// anyone else the header is ignored and the peer address is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            cors_origins: vec![],
            body_limit_bytes: 4 * 1024 * 1024,
            shutdown_timeout_seconds: 30,
            header_read_timeout_seconds: 30,
            // longer than the 60 s that reverse proxies and load balancers keep an idle upstream
            // connection, so that they, not we, close it
            idle_timeout_seconds: 75,
            body_read_timeout_seconds: 60,
            max_connections: 4096,
            trusted_proxies: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// SQLite file; a relative path is relative to the config file's folder.
    pub path: PathBuf,
    /// `postgres://user:password@host:port/database`: PostgreSQL instead of `path` (so far only
    /// `copilot migrate` works on it, see [`crate::pg`]); empty: the SQLite file.
    pub url: String,
    /// Read connections in the pool (writes use one connection of their own).
    pub pool_size: u32,
    /// How long a statement waits for a lock before failing.
    pub busy_timeout_ms: u64,
    /// Milliseconds between background WAL checkpoints; 0: never (Litestream checkpoints).
    pub checkpoint_interval_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            path: "copilot.db".into(),
            url: String::new(),
            pool_size: 8,
            busy_timeout_ms: 5000,
            checkpoint_interval_ms: 1000,
        }
    }
}

/// The engine that `[database]` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend<'a> {
    /// `database.path` (no `url`).
    Sqlite(&'a Path),
    /// `database.url`, checked by [`crate::pg::parse_url`].
    Postgres(&'a str),
}

impl DatabaseConfig {
    pub fn backend(&self) -> Backend<'_> {
        if self.url.is_empty() { Backend::Sqlite(&self.path) } else { Backend::Postgres(&self.url) }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// HS256 secret; empty: generated on first start and kept in the database.
    pub jwt_secret: String,
    pub access_token_ttl_minutes: u64,
    pub refresh_token_ttl_days: u64,
    pub allow_registration: bool,
    /// PBKDF2-HMAC-SHA256 iterations for new hashes (existing hashes keep theirs).
    pub pbkdf2_iterations: u32,
    /// Password hashes computed at once; 0: one per CPU core.
    pub max_concurrent_hashes: usize,
    /// Failed logins per account within the window before it is locked.
    pub max_failed_logins: u32,
    pub lockout_minutes: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            jwt_secret: String::new(),
            access_token_ttl_minutes: 30,
            refresh_token_ttl_days: 7,
            allow_registration: true,
            pbkdf2_iterations: 600_000,
            max_concurrent_hashes: 0,
            max_failed_logins: 10,
            lockout_minutes: 15,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    pub admin_username: String,
    pub admin_email: String,
    /// Empty: a password is generated and printed once at first start.
    pub admin_password: String,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        Self { admin_username: "admin".into(), admin_email: "admin@example.com".into(), admin_password: String::new() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// tracing filter, e.g. "info" or "copilot=debug,poem=info"; `RUST_LOG` wins when set.
    pub level: String,
    /// "text" or "json".
    pub format: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: "text".into() }
    }
}

/// `[knowledge]`: documents and retrieval.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KnowledgeConfig {
    /// The embedding model an `[[llm.providers]]` entry serves; empty: full-text retrieval only.
    pub embedding_model: String,
    /// Largest accepted document, in MB (MiB); larger uploads answer 413.
    pub max_document_mb: u64,
}

impl Default for KnowledgeConfig {
    fn default() -> Self {
        Self { embedding_model: String::new(), max_document_mb: 25 }
    }
}

impl KnowledgeConfig {
    pub fn max_document_bytes(&self) -> usize {
        (self.max_document_mb as usize).saturating_mul(1024 * 1024)
    }
}

/// `[metrics]`: `GET /metrics` in the Prometheus text format.
#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Off by default: `/metrics` answers 404.
    pub enabled: bool,
    /// A bearer token that scrapers must send; empty: loopback clients only, without a token.
    pub token: String,
}

/// `[audit]`: the audit log of SPEC §8.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Events older than this many days are deleted.
    pub retention_days: u32,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self { retention_days: 365 }
    }
}

/// `[limits]`: token budgets, the job limit and request rate limits (SPEC §8); 0 is no limit.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Tokens (prompt + completion) an organization's completions may use per UTC calendar
    /// month; an organization's `settings.limits.org_monthly_tokens` overrides it.
    pub org_monthly_tokens: u64,
    /// Tokens a user's completions may use per UTC day in their organization; overridden by
    /// `settings.limits.user_daily_tokens`.
    pub user_daily_tokens: u64,
    /// Replies generated at once per user; one more answers 409.
    pub max_jobs_per_user: u32,
    /// Requests per minute per user, or per API key for requests that come with one.
    pub requests_per_minute: u32,
    /// Requests per minute per client address on the endpoints that need no token.
    pub anonymous_requests_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            org_monthly_tokens: 0,
            user_daily_tokens: 0,
            max_jobs_per_user: 4,
            requests_per_minute: 0,
            anonymous_requests_per_minute: 0,
        }
    }
}

/// The largest token budget accepted (config and `settings.limits`): 10^15, far beyond any bill.
pub const MAX_TOKEN_BUDGET: u64 = 1_000_000_000_000_000;

impl LimitsConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, value) in [
            ("limits.org_monthly_tokens", self.org_monthly_tokens),
            ("limits.user_daily_tokens", self.user_daily_tokens),
        ] {
            if value > MAX_TOKEN_BUDGET {
                return Err((key, format!("must be between 0 (no budget) and {MAX_TOKEN_BUDGET}")));
            }
        }
        if self.max_jobs_per_user > 10_000 {
            return Err(("limits.max_jobs_per_user", "must be between 0 (no limit) and 10000".into()));
        }
        for (key, value) in [
            ("limits.requests_per_minute", self.requests_per_minute),
            ("limits.anonymous_requests_per_minute", self.anonymous_requests_per_minute),
        ] {
            if value > 1_000_000 {
                return Err((key, "must be between 0 (no limit) and 1000000".into()));
            }
        }
        Ok(())
    }
}

/// `[llm]`: the OpenAI-compatible chat-completions servers that agents talk to. No provider, no
/// outgoing call: a completion for a model that no provider serves answers 503.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub providers: Vec<LlmProviderConfig>,
    /// Seconds of silence after which an event stream gets a keep-alive comment.
    pub keep_alive_seconds: u64,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self { providers: vec![], keep_alive_seconds: 15 }
    }
}

/// One `[[llm.providers]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LlmProviderConfig {
    /// Unique; recorded with every reply.
    pub name: String,
    /// The API root that `/chat/completions` is appended to, e.g. "https://api.openai.com/v1".
    pub base_url: String,
    /// Name of the environment variable holding the API key; empty: no key (local servers).
    #[serde(default)]
    pub api_key_env: String,
    /// The `llm_model` values of agent configs that this provider serves.
    pub models: Vec<String>,
    /// Seconds to wait for the first answer and between streamed chunks.
    #[serde(default = "default_llm_timeout")]
    pub timeout_seconds: u64,
    /// Prompt budget in estimated tokens (characters / 4); older messages are left out to fit.
    #[serde(default = "default_max_context_tokens")]
    pub max_context_tokens: u64,
}

fn default_llm_timeout() -> u64 {
    60
}

fn default_max_context_tokens() -> u64 {
    8192
}

impl LlmConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let mut names = std::collections::HashSet::new();
        let mut models = std::collections::HashMap::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("provider #{} ({:?})", i + 1, p.name);
            if p.name.trim().is_empty() {
                return Err(("llm.providers.name", format!("{at}: must not be empty")));
            }
            if !names.insert(p.name.as_str()) {
                return Err(("llm.providers.name", format!("{at}: the name is used twice")));
            }
            let url_ok = (p.base_url.starts_with("http://") || p.base_url.starts_with("https://"))
                && p.base_url.split_once("://").is_some_and(|(_, rest)| {
                    let host = rest.split('/').next().unwrap_or_default();
                    !host.is_empty() && !host.contains(char::is_whitespace)
                })
                && !p.base_url.contains(['?', '#']);
            if !url_ok {
                return Err((
                    "llm.providers.base_url",
                    format!("{at}: {:?} is not a URL like \"https://api.openai.com/v1\"", p.base_url),
                ));
            }
            if !p.api_key_env.is_empty() && !p.api_key_env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err((
                    "llm.providers.api_key_env",
                    format!("{at}: must name an environment variable (not hold the key itself)"),
                ));
            }
            if p.models.is_empty() {
                return Err(("llm.providers.models", format!("{at}: must list at least one model")));
            }
            for m in &p.models {
                if m.trim().is_empty() {
                    return Err(("llm.providers.models", format!("{at}: a model name is empty")));
                }
                if let Some(other) = models.insert(m.as_str(), p.name.as_str()) {
                    return Err((
                        "llm.providers.models",
                        format!("{at}: model {m:?} is already served by provider {other:?}"),
                    ));
                }
            }
            if p.timeout_seconds == 0 || p.timeout_seconds > 3600 {
                return Err(("llm.providers.timeout_seconds", format!("{at}: must be between 1 and 3600")));
            }
            if p.max_context_tokens < 256 {
                return Err(("llm.providers.max_context_tokens", format!("{at}: must be at least 256")));
            }
        }
        if self.keep_alive_seconds == 0 {
            return Err(("llm.keep_alive_seconds", "must be at least 1".into()));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration error in {source_name}: {message}")]
pub struct ConfigError {
    pub source_name: String,
    pub message: String,
}

impl ConfigError {
    fn new(source_name: impl Into<String>, message: impl Into<String>) -> Self {
        Self { source_name: source_name.into(), message: message.into() }
    }
}

pub const DEFAULT_PATH: &str = "copilot.toml";
const ENV_PREFIX: &str = "COPILOT_";

impl Config {
    /// Loads `path` (or `./copilot.toml`, which may be absent) and the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::load_with_env(path, &env)
    }

    pub fn load_with_env(path: Option<&Path>, env: &[(String, String)]) -> Result<Config, ConfigError> {
        let (file, text) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::new(p.display().to_string(), format!("cannot read the file: {e}")))?;
                (p.to_path_buf(), text)
            }
            None => {
                let p = PathBuf::from(DEFAULT_PATH);
                let text = if p.exists() {
                    std::fs::read_to_string(&p)
                        .map_err(|e| ConfigError::new(DEFAULT_PATH, format!("cannot read the file: {e}")))?
                } else {
                    String::new()
                };
                (p, text)
            }
        };
        let file_name = file.display().to_string();
        // first from the file alone, so that its errors point at a line and a key
        let mut table: toml::Table =
            toml::from_str(&text).map_err(|e| ConfigError::new(&file_name, describe(&e, &text)))?;
        check_secrets_are_text(&table).map_err(|m| ConfigError::new(&file_name, m))?;
        Config::deserialize(toml::Value::Table(table.clone()))
            .map_err(|e| ConfigError::new(&file_name, describe(&e, &text)))?;

        let defaults = toml::Table::try_from(Config::default()).expect("the defaults serialize");
        let mut env_names = vec![];
        for (name, raw) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let Some((section, key)) = rest.split_once("__") else {
                return Err(ConfigError::new(
                    format!("environment variable {name}"),
                    "expected COPILOT_<SECTION>__<KEY>, e.g. COPILOT_SERVER__BIND",
                ));
            };
            let section = section.to_ascii_lowercase();
            let key = key.to_ascii_lowercase();
            // a key whose default is text takes the variable as it is: a password of digits
            // stays a string
            let is_text = defaults.get(&section).and_then(|t| t.get(&key)).is_some_and(toml::Value::is_str);
            let value = if is_text { toml::Value::String(raw.clone()) } else { parse_env_value(raw) };
            let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(Default::default()));
            let Some(section_table) = entry.as_table_mut() else {
                return Err(ConfigError::new(
                    format!("environment variable {name}"),
                    format!("[{section}] is not a section"),
                ));
            };
            section_table.insert(key, value);
            env_names.push(name.clone());
        }
        check_secrets_are_text(&table).map_err(|m| ConfigError::new(&file_name, m))?;
        let mut config = if env_names.is_empty() {
            Config::deserialize(toml::Value::Table(table))
                .map_err(|e| ConfigError::new(&file_name, e.to_string().trim().to_string()))?
        } else {
            Config::deserialize(toml::Value::Table(table)).map_err(|e| {
                ConfigError::new(
                    format!("{file_name} with environment overrides ({})", env_names.join(", ")),
                    e.to_string().trim().to_string(),
                )
            })?
        };
        if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty() && config.database.path.is_relative()) {
            config.database.path = dir.join(&config.database.path);
        }
        config.validate().map_err(|(key, msg)| ConfigError::new(&file_name, format!("{key}: {msg}")))?;
        Ok(config)
    }

    /// Checks the values that types alone cannot; returns the offending key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.server.bind.parse::<SocketAddr>().is_err() {
            return Err(("server.bind", format!("{:?} is not an address like \"127.0.0.1:8080\"", self.server.bind)));
        }
        for origin in &self.server.cors_origins {
            let ok = (origin.starts_with("http://") || origin.starts_with("https://"))
                && !origin.trim_end_matches('/').ends_with("://")
                && !origin.ends_with('/');
            if !ok {
                return Err((
                    "server.cors_origins",
                    format!("{origin:?} is not an origin like \"https://example.com\""),
                ));
            }
        }
        for proxy in &self.server.trusted_proxies {
            if crate::middleware::IpRange::parse(proxy).is_none() {
                return Err((
                    "server.trusted_proxies",
                    format!("{proxy:?} is not an address or CIDR range like \"10.0.0.0/8\""),
                ));
            }
        }
        if self.audit.retention_days == 0 || self.audit.retention_days > 36_500 {
            return Err(("audit.retention_days", "must be between 1 and 36500".into()));
        }
        if self.server.body_limit_bytes < 1024 {
            return Err(("server.body_limit_bytes", "must be at least 1024".into()));
        }
        let s = &self.server;
        for (key, value, max) in [
            ("server.header_read_timeout_seconds", s.header_read_timeout_seconds, 3600),
            ("server.idle_timeout_seconds", s.idle_timeout_seconds, 86_400),
            ("server.body_read_timeout_seconds", s.body_read_timeout_seconds, 86_400),
            ("server.shutdown_timeout_seconds", s.shutdown_timeout_seconds, 86_400),
        ] {
            if value == 0 || value > max {
                return Err((key, format!("must be between 1 and {max}")));
            }
        }
        if s.max_connections == 0 || s.max_connections > 1_000_000 {
            return Err(("server.max_connections", "must be between 1 and 1000000".into()));
        }
        if self.database.path.as_os_str().is_empty() {
            return Err(("database.path", "must not be empty".into()));
        }
        if !self.database.url.is_empty() {
            crate::pg::parse_url(&self.database.url).map_err(|e| ("database.url", e))?;
        }
        if self.database.pool_size == 0 || self.database.pool_size > 64 {
            return Err(("database.pool_size", "must be between 1 and 64".into()));
        }
        if self.auth.access_token_ttl_minutes == 0 || self.auth.access_token_ttl_minutes > 60 * 24 * 30 {
            return Err(("auth.access_token_ttl_minutes", "must be between 1 and 43200".into()));
        }
        if self.auth.refresh_token_ttl_days == 0 || self.auth.refresh_token_ttl_days > 3650 {
            return Err(("auth.refresh_token_ttl_days", "must be between 1 and 3650".into()));
        }
        if self.auth.pbkdf2_iterations == 0 {
            return Err(("auth.pbkdf2_iterations", "must be at least 1".into()));
        }
        if !self.auth.jwt_secret.is_empty() && self.auth.jwt_secret.len() < 32 {
            return Err(("auth.jwt_secret", "must be empty (generated) or at least 32 characters".into()));
        }
        if self.auth.max_failed_logins == 0 {
            return Err(("auth.max_failed_logins", "must be at least 1".into()));
        }
        if self.auth.lockout_minutes == 0 {
            return Err(("auth.lockout_minutes", "must be at least 1".into()));
        }
        if !self.metrics.token.is_empty() && self.metrics.token.len() < 16 {
            return Err(("metrics.token", "must be empty (loopback only) or at least 16 characters".into()));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(("log.format", format!("{:?} is not \"text\" or \"json\"", self.log.format)));
        }
        self.llm.validate()?;
        if !(1..=1024).contains(&self.knowledge.max_document_mb) {
            return Err(("knowledge.max_document_mb", "must be between 1 and 1024".into()));
        }
        self.limits.validate()?;
        Ok(())
    }
}

/// The keys whose values are secrets: no error message ever shows them.
const SECRET_KEYS: [(&str, &str); 4] =
    [("auth", "jwt_secret"), ("bootstrap", "admin_password"), ("metrics", "token"), ("database", "url")];

/// A secret of the wrong type would be quoted by the type error: say so without the value.
fn check_secrets_are_text(table: &toml::Table) -> Result<(), String> {
    for (section, key) in SECRET_KEYS {
        if table.get(section).and_then(|t| t.get(key)).is_some_and(|v| !v.is_str()) {
            return Err(format!("{section}.{key} must be a string in quotes (its value is not shown)"));
        }
    }
    Ok(())
}

/// A TOML error with its line, but without quoting a line that holds a secret.
fn describe(e: &toml::de::Error, text: &str) -> String {
    let line = e.span().map(|span| text[..span.start.min(text.len())].matches('\n').count());
    let secret_line = line.and_then(|n| text.lines().nth(n)).is_some_and(|l| {
        let key = l.split('=').next().unwrap_or_default().trim();
        SECRET_KEYS.iter().any(|(_, k)| key == *k || key.ends_with(&format!(".{k}")))
    });
    if secret_line {
        let n = line.unwrap_or_default() + 1;
        format!("line {n}: invalid value for a secret (the value is not shown); write it as a string in quotes")
    } else {
        e.to_string().trim().to_string()
    }
}

/// An environment value is read as a TOML value when it is one (`8`, `true`, `["a"]`), else as
/// a plain string.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("copilot.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn defaults_then_file_then_env() {
        let (_d, path) = write("[server]\nbind = \"127.0.0.1:9000\"\n[auth]\npbkdf2_iterations = 1000\n");
        let env = vec![
            ("COPILOT_AUTH__PBKDF2_ITERATIONS".to_string(), "2000".to_string()),
            ("COPILOT_SERVER__CORS_ORIGINS".to_string(), "[\"https://a.example\"]".to_string()),
            ("COPILOT_BOOTSTRAP__ADMIN_PASSWORD".to_string(), "plain text".to_string()),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let c = Config::load_with_env(Some(&path), &env).unwrap();
        assert_eq!(c.server.bind, "127.0.0.1:9000");
        assert_eq!(c.auth.pbkdf2_iterations, 2000);
        assert_eq!(c.server.cors_origins, vec!["https://a.example"]);
        assert_eq!(c.bootstrap.admin_password, "plain text");
        assert_eq!(c.auth.access_token_ttl_minutes, 30);
        assert_eq!(c.database.path, path.parent().unwrap().join("copilot.db"));
    }

    #[test]
    fn env_values_of_text_keys_stay_text_and_secrets_are_never_printed() {
        let (_d, path) = write("");
        let env = vec![
            ("COPILOT_BOOTSTRAP__ADMIN_PASSWORD".to_string(), "87654321".to_string()),
            ("COPILOT_SERVER__BIND".to_string(), "127.0.0.1:9999".to_string()),
            ("COPILOT_AUTH__ALLOW_REGISTRATION".to_string(), "false".to_string()),
        ];
        let c = Config::load_with_env(Some(&path), &env).unwrap();
        assert_eq!(c.bootstrap.admin_password, "87654321");
        assert!(!c.auth.allow_registration);
        let env = vec![("COPILOT_AUTH__JWT_SECRET".to_string(), "1234567890123456789012345678901234".to_string())];
        assert_eq!(Config::load_with_env(Some(&path), &env).unwrap().auth.jwt_secret.len(), 34);
        for text in [
            "[bootstrap]\nadmin_password = 98765432\n",
            "[bootstrap]\nadmin_password = s3cr3t-unquoted\n",
            "[auth]\njwt_secret = [\"x9y8z7w6v5\"]\n",
            "bootstrap.admin_password = 98765432\n",
        ] {
            let (_d, path) = write(text);
            let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
            for secret in ["98765432", "s3cr3t", "x9y8z7w6v5"] {
                assert!(!e.contains(secret), "{text:?} printed the secret: {e}");
            }
            assert!(e.contains("not shown"), "{e}");
        }
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let (_d, path) = write("[server]\nbnd = \"x\"\n");
        let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.contains("bnd") && e.contains("copilot.toml"), "{e}");
    }

    #[test]
    fn bad_value_names_key() {
        let (_d, path) = write("[auth]\naccess_token_ttl_minutes = \"soon\"\n");
        let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.contains("access_token_ttl_minutes"), "{e}");
        let (_d, path) = write("[server]\nbind = \"nowhere\"\n");
        let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
        assert!(e.contains("server.bind"), "{e}");
    }

    #[test]
    fn connection_limits_are_validated() {
        for (text, key) in [
            ("[server]\nheader_read_timeout_seconds = 0\n", "server.header_read_timeout_seconds"),
            ("[server]\nidle_timeout_seconds = 0\n", "server.idle_timeout_seconds"),
            ("[server]\nbody_read_timeout_seconds = 100000\n", "server.body_read_timeout_seconds"),
            ("[server]\nmax_connections = 0\n", "server.max_connections"),
            ("[server]\ntrusted_proxies = [\"10.0.0.0/33\"]\n", "server.trusted_proxies"),
            ("[server]\ntrusted_proxies = [\"proxy.local\"]\n", "server.trusted_proxies"),
            ("[audit]\nretention_days = 0\n", "audit.retention_days"),
        ] {
            let (_d, path) = write(text);
            let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn bad_env_override_names_variable() {
        let (_d, path) = write("");
        let env = vec![("COPILOT_AUTH__NOPE".to_string(), "1".to_string())];
        let e = Config::load_with_env(Some(&path), &env).unwrap_err().to_string();
        assert!(e.contains("COPILOT_AUTH__NOPE") && e.contains("nope"), "{e}");
    }

    #[test]
    fn llm_providers_are_validated() {
        let (_d, path) = write("");
        assert!(Config::load_with_env(Some(&path), &[]).unwrap().llm.providers.is_empty());
        let provider = |name: &str, url: &str, models: &str| {
            format!("[[llm.providers]]\nname = \"{name}\"\nbase_url = \"{url}\"\nmodels = {models}\n")
        };
        let ok = provider("openai", "https://api.openai.com/v1", "[\"gpt-4o\"]")
            + &provider("local", "http://127.0.0.1:11434/v1", "[\"llama3\"]");
        let (_d, path) = write(&ok);
        let c = Config::load_with_env(Some(&path), &[]).unwrap();
        assert_eq!(c.llm.providers.len(), 2);
        assert_eq!(c.llm.providers[0].timeout_seconds, 60);
        for (bad, key) in [
            (
                provider("a", "https://x/v1", "[\"m\"]") + &provider("a", "https://y/v1", "[\"n\"]"),
                "llm.providers.name",
            ),
            (provider("a", "ftp://x", "[\"m\"]"), "llm.providers.base_url"),
            (
                provider("a", "https://x/v1", "[\"m\"]") + &provider("b", "https://y/v1", "[\"m\"]"),
                "llm.providers.models",
            ),
            (provider("a", "https://x/v1", "[]"), "llm.providers.models"),
        ] {
            let (_d, path) = write(&bad);
            let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{e}");
        }
    }

    #[test]
    fn the_committed_copilot_toml_loads_and_matches_the_defaults() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/copilot.toml"));
        let c = Config::load_with_env(Some(path), &[]).expect("copilot.toml is valid");
        let d = Config::default();
        assert_eq!(c.server.bind, d.server.bind);
        assert_eq!(
            (
                c.server.header_read_timeout_seconds,
                c.server.idle_timeout_seconds,
                c.server.body_read_timeout_seconds,
                c.server.max_connections
            ),
            (
                d.server.header_read_timeout_seconds,
                d.server.idle_timeout_seconds,
                d.server.body_read_timeout_seconds,
                d.server.max_connections
            )
        );
        assert_eq!((d.server.header_read_timeout_seconds, d.server.max_connections), (30, 4096));
        assert_eq!(c.server.shutdown_timeout_seconds, d.server.shutdown_timeout_seconds);
        assert_eq!(c.auth.pbkdf2_iterations, 600_000);
        assert_eq!(c.auth.access_token_ttl_minutes, d.auth.access_token_ttl_minutes);
        assert_eq!(c.bootstrap.admin_username, "admin");
        assert!(c.bootstrap.admin_password.is_empty() && c.auth.jwt_secret.is_empty());
        assert_eq!(c.database.path, path.parent().unwrap().join("copilot.db"));
        assert_eq!(c.database.url, d.database.url);
        assert_eq!(c.knowledge.max_document_mb, d.knowledge.max_document_mb);
        assert_eq!(c.knowledge.embedding_model, d.knowledge.embedding_model);
        let (cl, dl) = (&c.limits, &d.limits);
        assert_eq!(
            (cl.org_monthly_tokens, cl.user_daily_tokens, cl.max_jobs_per_user),
            (dl.org_monthly_tokens, dl.user_daily_tokens, dl.max_jobs_per_user)
        );
        assert_eq!(
            (cl.requests_per_minute, cl.anonymous_requests_per_minute),
            (dl.requests_per_minute, dl.anonymous_requests_per_minute)
        );
    }

    #[test]
    fn limits_are_read_and_validated() {
        let (_d, path) = write("[limits]\norg_monthly_tokens = 100000\nrequests_per_minute = 60\n");
        let env = vec![("COPILOT_LIMITS__USER_DAILY_TOKENS".to_string(), "5000".to_string())];
        let l = Config::load_with_env(Some(&path), &env).unwrap().limits;
        assert_eq!((l.org_monthly_tokens, l.user_daily_tokens, l.requests_per_minute), (100_000, 5000, 60));
        assert_eq!((l.max_jobs_per_user, l.anonymous_requests_per_minute), (4, 0));
        for (text, key) in [
            ("[limits]\norg_monthly_tokens = -1\n", "org_monthly_tokens"),
            ("[limits]\nuser_daily_tokens = 10000000000000000\n", "limits.user_daily_tokens"),
            ("[limits]\nmax_jobs_per_user = 20000\n", "limits.max_jobs_per_user"),
            ("[limits]\nrequests_per_minute = 2000000\n", "limits.requests_per_minute"),
            ("[limits]\nanonymous_requests_per_minute = \"many\"\n", "anonymous_requests_per_minute"),
            ("[limits]\nrequests_per_hour = 5\n", "requests_per_hour"),
        ] {
            let (_d, path) = write(text);
            let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
            assert!(e.contains(key), "{text:?}: {e}");
        }
    }

    #[test]
    fn a_postgres_url_is_checked_and_never_printed() {
        let (_d, path) = write("");
        assert_eq!(
            Config::load_with_env(Some(&path), &[]).unwrap().database.backend(),
            Backend::Sqlite(&path.with_file_name("copilot.db"))
        );
        let url = "postgres://copilot:pw-9876@db1:5432,db2:5432/copilot?target_session_attrs=read-write";
        let (_d, path) = write(&format!("[database]\nurl = \"{url}\"\n"));
        assert_eq!(Config::load_with_env(Some(&path), &[]).unwrap().database.backend(), Backend::Postgres(url));
        let env = vec![("COPILOT_DATABASE__URL".to_string(), "postgres://u:1234@localhost/db".to_string())];
        let c = Config::load_with_env(Some(&path), &env).unwrap();
        assert_eq!(c.database.backend(), Backend::Postgres("postgres://u:1234@localhost/db"));
        for text in [
            "[database]\nurl = \"postgres://u:pw-9876@h:port/db\"\n",
            "[database]\nurl = \"mysql://u:pw-9876@h/db\"\n",
            "[database]\nurl = \"postgres://u:pw-9876@h/db?sslmode=require\"\n",
            "[database]\nurl = postgres://u:pw-9876@h/db\n",
            "[database]\nurl = 9876\n",
        ] {
            let (_d, path) = write(text);
            let e = Config::load_with_env(Some(&path), &[]).unwrap_err().to_string();
            assert!(e.contains("database.url") || e.contains("not shown"), "{text:?}: {e}");
            assert!(!e.contains("9876"), "{text:?} printed the URL: {e}");
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = Config::load_with_env(Some(Path::new("/nonexistent/copilot.toml")), &[]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/copilot.toml"));
    }
}
