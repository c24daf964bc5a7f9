//! Reply-generating jobs as the API shows them.

use poem_openapi::{Enum, Object};

/// A generation job: one user message and the reply generated for it.
#[derive(Object, Debug, Clone)]
pub struct Job {
    pub id: String,
    pub conversation_id: String,
    pub agent_config_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub status: JobStatus,
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

/// Where a job is in its life: `running` until it ends `completed`, `failed` or `cancelled`.
#[derive(Enum, serde::Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The stored spelling back; anything else is not a status.
    pub fn parse(s: &str) -> Option<JobStatus> {
        [JobStatus::Running, JobStatus::Completed, JobStatus::Failed, JobStatus::Cancelled]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}
