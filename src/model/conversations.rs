//! Conversations and their messages.

use poem_openapi::{Enum, Object};

/// A conversation of the caller.
#[derive(Object, Debug, Clone)]
pub struct Conversation {
    pub id: String,
    pub user_id: String,
    pub organization_id: String,
    pub agent_config_id: Option<String>,
    pub project_id: Option<String>,
    pub title: Option<String>,
    pub context: serde_json::Value,
    pub is_archived: bool,
    /// How many live messages it holds
    pub message_count: i64,
    pub created_at: String,
    pub updated_at: String,
}

/// One message of a conversation.
#[derive(Object, serde::Serialize, Debug, Clone)]
pub struct Message {
    pub id: String,
    pub conversation_id: String,
    pub role: MessageRole,
    pub content: String,
    pub metadata: serde_json::Value,
    pub created_at: String,
}

/// Who wrote a message.
#[derive(Enum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum MessageRole {
    User,
    Assistant,
}
