//! SQL for /conversations.
