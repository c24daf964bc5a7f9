//! Agent configs and their type.

use poem_openapi::{Enum, Object};

/// An agent configuration.
#[derive(Object, Debug, Clone)]
pub struct AgentConfig {
    pub id: String,
    pub organization_id: String,
    pub project_id: Option<String>,
    pub name: String,
    pub description: Option<String>,
    pub agent_type: AgentType,
    pub llm_model: String,
    /// 0.0..=2.0
    pub temperature: f64,
    /// 1..=128000
    pub max_tokens: i64,
    pub system_prompt: Option<String>,
    pub tools: Vec<String>,
    pub knowledge_base: serde_json::Value,
    pub settings: serde_json::Value,
    pub is_active: bool,
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// What an agent is for.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum AgentType {
    Rfp,
    Jira,
    Documentation,
    Hr,
    Finance,
}
