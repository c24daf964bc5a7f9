//! SQL, one file per area. Every function that reads or writes tenant data takes the caller's
//! [`Scope`](crate::authz::Scope) (conversations: their owner) and puts it in the WHERE clause of
//! every statement, updates and deletes included: a row of another organization is simply not
//! found. Store imports `model`, `db` and authz's types; never `api`, `llm` or `auth`. It answers
//! [`StoreError`](error::StoreError)s, which say what happened in the domain's words; `api` maps
//! them to HTTP statuses. Areas ported to PostgreSQL take a [`Conn`](conn::Conn) and hold both
//! backends' SQL (`organizations` so far; see `conn`); the others take a SQLite connection.

pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod bootstrap;
pub mod completions;
pub mod conn;
pub mod conversations;
pub mod documents;
pub mod error;
pub mod limits;
pub mod organizations;
pub mod projects;
pub mod roles;
pub mod users;

/// Binds an optional organization filter: `(?n IS NULL OR organization_id = ?n)`.
pub fn org_param(scope: &crate::authz::Scope) -> Option<String> {
    scope.org().map(str::to_string)
}
