//! Reply-generating jobs as the API shows them.

use poem_openapi::Object;

/// A generation job: one user message and the reply generated for it.
#[derive(Object, Debug, Clone)]
pub struct Job {
    pub id: String,
    pub conversation_id: String,
    pub agent_config_id: Option<String>,
    pub provider: String,
    pub model: String,
    /// `running`, `completed`, `failed` or `cancelled`
    pub status: String,
    pub user_message_id: String,
    pub assistant_message_id: Option<String>,
    pub error: Option<String>,
    pub finish_reason: Option<String>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// The id of the job's last event (0 while running)
    pub last_event_id: i64,
    pub created_at: String,
    pub finished_at: Option<String>,
}
