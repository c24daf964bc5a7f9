//! SQL for /roles.
