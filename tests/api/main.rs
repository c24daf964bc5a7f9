//! One integration test binary: a real server per test, spoken to over HTTP.

mod helpers;
mod matrix;

mod agents;
mod auth;
mod cli;
mod completions;
mod connections;
mod conversations;
mod hardening;
mod organizations;
mod projects;
mod roles;
mod server;
mod users;
