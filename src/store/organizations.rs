//! SQL for /organizations.
