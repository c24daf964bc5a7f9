//! What a store function can answer besides its result: the domain's outcomes (not found, a
//! reference that does not hold, a conflict with the stored state) and the database's own
//! failures. Store knows nothing of HTTP; `api` maps each kind to a status
//! (`impl From<StoreError> for ApiError`, in the module of the API's error).

use crate::db::DbError;

/// The outcome of a store function that did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row within the caller's reach (another organization's row is not found either).
    #[error("{0}")]
    NotFound(&'static str),
    /// The input names something that does not hold: a project of another organization, an
    /// inactive agent config, … The text names the field.
    #[error("{0}")]
    Invalid(String),
    /// The stored state forbids the write: a name taken, a role still held, a reply running.
    #[error("{0}")]
    Conflict(String),
    /// A budget is spent until it resets, in `retry_after` seconds.
    #[error("{detail}")]
    Exhausted { detail: String, retry_after: u64 },
    /// The database failed (I/O, a full disk, a damaged file, no connection to be had): nothing
    /// for the caller to fix.
    #[error(transparent)]
    Database(#[from] DbError),
    /// A broken invariant: something written earlier does not read back (a row vanished, bad
    /// JSON), or the runtime is stopping.
    #[error("{0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::Invalid(detail.into())
    }
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::Conflict(detail.into())
    }
    pub fn internal(what: impl std::fmt::Display) -> Self {
        Self::Internal(what.to_string())
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Database(e.into())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        Self::Database(e.into())
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        Self::internal(format_args!("stored JSON: {e}"))
    }
}

/// True when `e` is a UNIQUE or PRIMARY KEY violation.
pub fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

/// True when `e` is a FOREIGN KEY violation.
pub fn is_foreign_key_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY)
}

/// Maps a unique violation to a conflict saying `detail`; anything else stays a database failure.
pub fn conflict_on_unique(detail: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| if is_unique_violation(&e) { StoreError::conflict(detail) } else { e.into() }
}

/// True when `e` is PostgreSQL's unique violation (SQLSTATE 23505; a primary key's too).
pub fn is_pg_unique_violation(e: &postgres::Error) -> bool {
    e.code() == Some(&postgres::error::SqlState::UNIQUE_VIOLATION)
}

/// [`conflict_on_unique`] on PostgreSQL: a unique violation is a conflict saying `detail`.
pub fn pg_conflict_on_unique(detail: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| if is_pg_unique_violation(&e) { StoreError::conflict(detail) } else { e.into() }
}
