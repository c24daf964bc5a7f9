//! The usage report's groups and rows.

use poem_openapi::{Enum, Object};

/// What the report is grouped by.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum UsageGroup {
    User,
    AgentConfig,
    Model,
    Day,
}

/// The sums of one group.
#[derive(Object, Debug, Clone)]
pub struct UsageRow {
    /// The user id, agent config id, model or day (`YYYY-MM-DD`) of the group
    pub key: Option<String>,
    /// Username, agent config name or provider of the group, when there is one
    pub label: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    /// Completion requests (jobs), whatever their outcome
    pub requests: i64,
}
