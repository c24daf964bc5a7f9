//! The storage seam (issue 13): one domain-level interface per area over two backends.
//!
//! A store function takes `c: &mut Conn` and matches it once: `Conn::Sqlite` runs the SQLite
//! SQL on a rusqlite connection (a read snapshot or the write transaction), `Conn::Postgres` the
//! PostgreSQL twin on a transaction of a pooled client. The functions say what they do in the
//! domain's words (insert an organization, list a page of them); neither backend's SQL leaks past
//! them. [`Store`] hands out a `Conn` the way [`Db`] hands out a connection: `read` (one
//! snapshot), `lookup` (SQLite: a primary-key lookup without the blocking-pool hop), `write` (one
//! transaction, committed on `Ok`, rolled back on `Err`).
//!
//! Every area is on both backends (README, Operations, "PostgreSQL"); each keeps its two
//! implementations in the private `sqlite` and `pg` modules of its file.

use rusqlite::Connection;

use crate::{
    db::{Db, DbError, blocking},
    pg::PgPool,
    store::error::{StoreError, StoreResult},
};

/// A connection handed to store functions, one variant per backend. SQLite: a read snapshot or
/// the write transaction (a rusqlite `Transaction` derefs to its `Connection`). PostgreSQL: the
/// transaction of the call, or the client of a lookup, with the connection's prepared statements
/// (`&mut`: the `postgres` client needs it for every statement).
pub enum Conn<'a, 'b> {
    Sqlite(&'a Connection),
    Postgres(&'a mut crate::pg::Transaction<'b>),
}

impl Conn<'_, '_> {
    /// Which backend this is, for messages and tests.
    pub fn backend(&self) -> &'static str {
        match self {
            Conn::Sqlite(_) => "sqlite",
            Conn::Postgres(_) => "postgres",
        }
    }
}

/// Where the data lives: the SQLite file (today's [`Db`]) or a PostgreSQL pool. Cheap to clone
/// (pools are reference-counted).
#[derive(Clone)]
pub enum Store {
    Sqlite(Db),
    Postgres(PgPool),
}

impl Store {
    /// Runs `f` inside one snapshot. SQLite: [`Db::read`] (a deferred read transaction).
    /// PostgreSQL: a `REPEATABLE READ, READ ONLY` transaction on the blocking pool, so a count and
    /// its page come from one snapshot there too.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E> + Send + 'static,
    {
        match self {
            Store::Sqlite(db) => db.read(move |c| f(&mut Conn::Sqlite(c))).await,
            Store::Postgres(pool) => pg_transaction(pool, Mode::Read, f).await,
        }
    }

    /// Runs `f`, a read that is one statement on PostgreSQL (a statement is its own snapshot
    /// there): SQLite: [`Store::read`]; PostgreSQL: without BEGIN and COMMIT (two round trips
    /// less, for a page and its total read together, such as a conversation's messages).
    pub async fn read_statement<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E> + Send + 'static,
    {
        match self {
            Store::Sqlite(db) => db.read(move |c| f(&mut Conn::Sqlite(c))).await,
            Store::Postgres(pool) => pg_transaction(pool, Mode::Lookup, f).await,
        }
    }

    /// Runs `f`, one statement of a few primary-key lookups. SQLite: [`Db::lookup`] (an idle
    /// read connection right here, without the blocking-pool hop). PostgreSQL: on the blocking
    /// pool (the client blocks; it must not run on the async runtime), without a transaction.
    pub async fn lookup<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E> + Send + 'static,
    {
        match self {
            Store::Sqlite(db) => db.lookup(move |c| f(&mut Conn::Sqlite(c))).await,
            Store::Postgres(pool) => pg_transaction(pool, Mode::Lookup, f).await,
        }
    }

    /// Runs `f` in one write transaction; commits when it answers `Ok`, rolls back otherwise.
    /// SQLite: [`Db::write`] (the single writer, `BEGIN IMMEDIATE`). PostgreSQL: a transaction
    /// of the server's default isolation (READ COMMITTED); row locking between instances comes
    /// with the areas that need it.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E> + Send + 'static,
    {
        match self {
            Store::Sqlite(db) => db.write(move |tx| f(&mut Conn::Sqlite(tx))).await,
            Store::Postgres(pool) => pg_transaction(pool, Mode::Write, f).await,
        }
    }

    /// Runs `f`, a write that is one statement (or a statement and a read that follows it):
    /// SQLite: [`Store::write`]; PostgreSQL: without BEGIN and COMMIT, the statement commits
    /// itself (two round trips less, for what runs on every request, such as a rate limit).
    pub async fn write_statement<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E> + Send + 'static,
    {
        match self {
            Store::Sqlite(db) => db.write(move |tx| f(&mut Conn::Sqlite(tx))).await,
            Store::Postgres(pool) => pg_transaction(pool, Mode::Lookup, f).await,
        }
    }

    /// Runs `f` in one write transaction, here (blocking): start-up work, outside the runtime.
    pub fn write_blocking<T, E, F>(&self, f: F) -> Result<T, E>
    where
        E: From<DbError>,
        F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E>,
    {
        match self {
            Store::Sqlite(db) => db.write_blocking(|tx| f(&mut Conn::Sqlite(tx))),
            Store::Postgres(pool) => pg_run(pool, Mode::Write, f),
        }
    }

    /// The SQLite database, for what only it has (the checkpointer, the mapped search pool).
    pub fn sqlite(&self) -> Option<&Db> {
        match self {
            Store::Sqlite(db) => Some(db),
            Store::Postgres(_) => None,
        }
    }

    /// Whether the database answers (`/status`).
    pub async fn ping(&self) -> Result<(), DbError> {
        match self {
            Store::Sqlite(db) => db.ping().await,
            Store::Postgres(pool) => {
                pg_transaction(pool, Mode::Lookup, |c| -> Result<(), DbError> {
                    let Conn::Postgres(t) = c else { unreachable!("a PostgreSQL transaction") };
                    t.query_one("SELECT 1", &[])?;
                    Ok(())
                })
                .await
            }
        }
    }

    /// Whether the database answers and has every migration of this build applied
    /// (`/health/ready`).
    pub async fn migrations_applied(&self) -> Result<bool, DbError> {
        match self {
            Store::Sqlite(db) => db.migrations_applied().await,
            Store::Postgres(pool) => {
                let latest = crate::pg::migrations().last().map(|(v, _)| *v);
                let applied = pg_transaction(pool, Mode::Lookup, |c| -> Result<Option<i32>, DbError> {
                    let Conn::Postgres(t) = c else { unreachable!("a PostgreSQL transaction") };
                    Ok(t.query_one("SELECT MAX(version) FROM refinery_schema_history", &[])?.try_get(0)?)
                })
                .await?;
                Ok(applied >= latest)
            }
        }
    }

    /// The connections of the pools: (pool, open, idle). SQLite: read, mapped, write;
    /// PostgreSQL: one pool, `postgres`.
    pub fn pool_state(&self) -> Vec<(&'static str, u32, u32)> {
        match self {
            Store::Sqlite(db) => db.pool_state().to_vec(),
            Store::Postgres(pool) => {
                let (open, idle) = pool.state();
                vec![("postgres", open, idle)]
            }
        }
    }

    /// Which backend this is.
    pub fn backend(&self) -> &'static str {
        match self {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }
}

/// How a PostgreSQL call runs its statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A read-only REPEATABLE READ transaction: one snapshot for a count and its page.
    Read,
    /// No transaction: one statement of key lookups, or one write statement that commits
    /// itself (BEGIN and COMMIT would be two round trips more than the statement).
    Lookup,
    /// A transaction of the server's default isolation (READ COMMITTED).
    Write,
}

/// `f` on a pooled PostgreSQL client, on the blocking pool, as `mode` says (see [`pg_run`]).
async fn pg_transaction<T, E, F>(pool: &PgPool, mode: Mode, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
    F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E> + Send + 'static,
{
    let pool = pool.clone();
    blocking(move || pg_run(&pool, mode, f)).await
}

/// `f` on a pooled PostgreSQL client, here (blocking), in a transaction unless `mode` is a
/// lookup. Commits on `Ok`; on `Err` (and on a panic, when the transaction is dropped) it rolls
/// back. Statements are prepared once per connection (`crate::pg::Transaction`).
fn pg_run<T, E, F>(pool: &PgPool, mode: Mode, f: F) -> Result<T, E>
where
    E: From<DbError>,
    F: FnOnce(&mut Conn<'_, '_>) -> Result<T, E>,
{
    let mut conn = pool.get().map_err(DbError::from)?;
    let mut tx = match mode {
        Mode::Lookup => conn.autocommit(),
        Mode::Read | Mode::Write => conn.transaction(mode == Mode::Read).map_err(DbError::from)?,
    };
    match f(&mut Conn::Postgres(&mut tx)) {
        Ok(out) => {
            tx.commit().map_err(DbError::from)?;
            Ok(out)
        }
        Err(e) => {
            // a failed rollback leaves nothing to undo: the server ends the transaction with
            // the connection, and the pool drops a broken one
            let _ = tx.rollback();
            Err(e)
        }
    }
}

/// A stored timestamp as a PostgreSQL `timestamptz` parameter: the RFC 3339 text that
/// [`crate::db::now`] writes (what SQLite stores as text), parsed.
pub fn pg_ts(text: &str) -> StoreResult<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| StoreError::internal(format_args!("timestamp {text:?}: {e}")))
}

/// A `timestamptz` column read back as the RFC 3339 text of the SQLite path
/// ([`crate::db::format_ts`]: UTC, microseconds, fixed width).
pub fn pg_ts_col(row: &postgres::Row, idx: usize) -> Result<String, postgres::Error> {
    Ok(crate::db::format_ts(row.try_get::<_, time::OffsetDateTime>(idx)?))
}

/// A `jsonb` column selected as `col::text`, parsed.
pub fn pg_json_col<T: serde::de::DeserializeOwned>(row: &postgres::Row, idx: usize) -> StoreResult<T> {
    let text: String = row.try_get(idx)?;
    Ok(serde_json::from_str(&text)?)
}

/// Whether a filter holds a NUL character, which PostgreSQL's `text` cannot (binding one fails):
/// no stored value contains or equals it, so a list filtered by one is empty there, as on SQLite.
pub fn holds_nul<'a>(filters: impl IntoIterator<Item = Option<&'a str>>) -> bool {
    filters.into_iter().flatten().any(|v| v.contains('\0'))
}
