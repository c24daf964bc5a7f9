//! Talking to LLMs (issue 6): the providers of `[llm]`, the prompt a conversation becomes, the
//! OpenAI-compatible HTTP client, and the server-side jobs that generate replies. Imports
//! `model`, `store`, `db`, `authz`'s types and the knowledge base's prompt; never `api`.

pub mod client;
pub mod context;
pub mod embeddings;
pub mod jobs;

use std::{sync::Arc, time::Duration};

use crate::config::LlmConfig;

/// An API key, read once from the environment. Never printed: `Debug` hides it, and
/// [`Provider::redact`] scrubs it from anything a provider sends back.
#[derive(Clone)]
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

/// One OpenAI-compatible chat-completions server.
#[derive(Debug)]
pub struct Provider {
    pub name: String,
    /// Without a trailing slash; `/chat/completions` is appended.
    pub base_url: String,
    api_key: Option<ApiKey>,
    pub models: Vec<String>,
    pub timeout: Duration,
    pub max_context_tokens: u64,
}

impl Provider {
    /// `text` with the API key replaced by `***`, for errors that quote the request.
    pub fn redact(&self, text: &str) -> String {
        match &self.api_key {
            Some(ApiKey(k)) if !k.is_empty() => text.replace(k.as_str(), "***"),
            _ => text.to_string(),
        }
    }
}

/// The configured providers and one shared HTTP client.
pub struct Providers {
    providers: Vec<Arc<Provider>>,
    pub http: reqwest::Client,
}

impl Providers {
    /// Builds the providers of `[llm]`; `env` looks up the variables named by `api_key_env`.
    pub fn from_config(cfg: &LlmConfig, env: impl Fn(&str) -> Option<String>) -> Result<Providers, String> {
        let mut providers = vec![];
        for p in &cfg.providers {
            let api_key = if p.api_key_env.is_empty() {
                None
            } else {
                match env(&p.api_key_env).filter(|k| !k.trim().is_empty()) {
                    Some(k) => Some(ApiKey(k.trim().to_string())),
                    None => {
                        return Err(format!(
                            "configuration error: llm.providers ({:?}): the environment variable {} named by \
                             api_key_env is not set (set it, or set api_key_env = \"\" for a server without a key)",
                            p.name, p.api_key_env
                        ));
                    }
                }
            };
            providers.push(Arc::new(Provider {
                name: p.name.clone(),
                base_url: p.base_url.trim_end_matches('/').to_string(),
                api_key,
                models: p.models.clone(),
                timeout: Duration::from_secs(p.timeout_seconds),
                max_context_tokens: p.max_context_tokens,
            }));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("copilot/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Providers { providers, http })
    }

    /// The provider that serves `model`, if any.
    pub fn for_model(&self, model: &str) -> Option<Arc<Provider>> {
        self.providers.iter().find(|p| p.models.iter().any(|m| m == model)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LlmProviderConfig;

    fn cfg(api_key_env: &str) -> LlmConfig {
        LlmConfig {
            providers: vec![LlmProviderConfig {
                name: "p".into(),
                base_url: "http://127.0.0.1:1/v1/".into(),
                api_key_env: api_key_env.into(),
                models: vec!["m".into()],
                timeout_seconds: 5,
                max_context_tokens: 1000,
            }],
            ..LlmConfig::default()
        }
    }

    #[test]
    fn keys_come_from_the_environment_and_never_show() {
        let e = Providers::from_config(&cfg("NOPE_KEY"), |_| None).err().unwrap();
        assert!(e.contains("NOPE_KEY"), "{e}");
        let ps = Providers::from_config(&cfg("K"), |_| Some("sk-secret".into())).unwrap();
        let p = ps.for_model("m").unwrap();
        assert_eq!(p.base_url, "http://127.0.0.1:1/v1");
        assert!(!format!("{p:?}").contains("sk-secret"));
        assert_eq!(p.redact("bad key sk-secret!"), "bad key ***!");
        assert!(ps.for_model("other").is_none());
        assert!(Providers::from_config(&cfg(""), |_| None).unwrap().for_model("m").is_some());
    }
}

/// Why a reply was not generated: the provider's failure (see [`client::Failure`]), or the
/// job's own end. Stored as `error_kind` in the message metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    Timeout,
    HttpError,
    Transport,
    Malformed,
    Truncated,
    ProviderError,
    /// The user cancelled the job.
    Cancelled,
    /// The server stopped during generation.
    Shutdown,
    /// The reply could not be stored.
    Storage,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Timeout => "timeout",
            FailureKind::HttpError => "http_error",
            FailureKind::Transport => "transport",
            FailureKind::Malformed => "malformed",
            FailureKind::Truncated => "truncated",
            FailureKind::ProviderError => "provider_error",
            FailureKind::Cancelled => "cancelled",
            FailureKind::Shutdown => "shutdown",
            FailureKind::Storage => "storage",
        }
    }
}
