//! One integration test binary: a real server per test, spoken to over HTTP.

mod helpers;
mod matrix;

mod agents;
mod api_keys;
mod audit;
mod auth;
mod backup;
mod cli;
mod completions;
mod connections;
mod conversations;
mod documents;
mod hardening;
mod knowledge;
mod layers;
mod limits;
mod operations;
mod organizations;
mod postgres;
mod postgres_convs;
mod postgres_docs;
mod postgres_instances;
mod postgres_roles;
mod postgres_users;
mod projects;
mod roles;
mod server;
mod users;
