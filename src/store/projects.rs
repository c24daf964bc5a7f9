//! SQL for /projects.
