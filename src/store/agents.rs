//! SQL for /agents.
