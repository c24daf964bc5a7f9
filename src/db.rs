//! SQLite: a pool of read connections, one serialized writer, embedded migrations. Below every
//! layer: it imports nothing of the crate, and its closures answer any error type that converts
//! from its own [`DbError`].
//!
//! All rusqlite work runs on tokio's blocking pool. Reads run in a deferred transaction so a
//! count and its page come from one snapshot; writes queue for the single writer connection and
//! run in `BEGIN IMMEDIATE`, so concurrent writers wait in line instead of failing with
//! "database is locked".

use std::{path::Path, time::Duration};

use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};

pub type Pool = r2d2::Pool<SqliteConnectionManager>;

/// A failure of the database itself, below any meaning in the domain: what every closure given to
/// [`Db`] must be able to answer (store's `StoreError` and api's `ApiError` convert from it).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's failures, shown with the server's message (the client's own text says only
    /// "db error").
    #[error("database: {}", pg_text(.0))]
    Postgres(#[from] postgres::Error),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// The blocking task was cancelled: the runtime is stopping.
    #[error("the runtime is stopping")]
    Stopped,
}

fn pg_text(e: &postgres::Error) -> String {
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

mod embedded {
    refinery::embed_migrations!("migrations");
}

#[derive(Clone)]
pub struct Db {
    read: Pool,
    write: Pool,
    /// While any clone lives, the checkpointer thread runs.
    _alive: std::sync::Arc<()>,
}

/// The size a reset WAL file is truncated back to.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

impl Db {
    /// Checkpoints are off the write path: no connection checkpoints in its commit (SQLite's
    /// autocheckpoint would make the committing request copy and fsync the WAL backlog — a
    /// stall of a second after a long backup read); a thread of its own runs a PASSIVE
    /// checkpoint, which blocks neither readers nor the writer, every `checkpoint_interval`.
    /// `None` leaves checkpoints to another process (Litestream).
    pub fn open(
        path: &Path,
        read_pool_size: u32,
        busy_timeout: Duration,
        checkpoint_interval: Option<Duration>,
    ) -> Result<Db, String> {
        register_sqlite_vec()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        owner_only(path)?;
        let manager = || {
            SqliteConnectionManager::file(path).with_init(move |c| {
                c.busy_timeout(busy_timeout)?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "NORMAL")?;
                c.pragma_update(None, "foreign_keys", "ON")?;
                c.pragma_update(None, "wal_autocheckpoint", 0)?;
                c.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
                c.set_prepared_statement_cache_capacity(64);
                // Plans that do not depend on bound values: without this, every `col LIKE ?n`
                // (and, once ANALYZE has run, every range over a bound value, as in FTS5's own
                // statements) makes SQLite re-prepare a cached statement each time it is bound.
                c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
                Ok(())
            })
        };
        let open_err = |e: r2d2::Error| format!("cannot open database {}: {e}", path.display());
        let write = r2d2::Pool::builder()
            .max_size(1)
            .connection_timeout(Duration::from_secs(60))
            .build(manager())
            .map_err(open_err)?;
        {
            let mut conn = write.get().map_err(open_err)?;
            embedded::migrations::runner().run(&mut *conn).map_err(|e| format!("migrating {}: {e}", path.display()))?;
        }
        let read =
            r2d2::Pool::builder().max_size(read_pool_size).min_idle(Some(1)).build(manager()).map_err(open_err)?;
        let alive = std::sync::Arc::new(());
        if let Some(interval) = checkpoint_interval {
            let conn = Connection::open(path).map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
            checkpointer(conn, std::sync::Arc::downgrade(&alive), interval);
        }
        Ok(Db { read, write, _alive: alive })
    }

    /// Runs `f` on a read connection, inside one snapshot. `f` answers its own error type (a
    /// handler's `ApiError`, a store's `StoreError`), which the database's failures convert to.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        let pool = self.read.clone();
        blocking(move || {
            let conn = pool.get().map_err(DbError::from)?;
            snapshot(&conn, f)
        })
        .await
    }

    /// Runs `f` — one statement of a few primary-key lookups, never a scan — on an idle read
    /// connection right here, without the trip to the blocking pool, whose two thread switches
    /// cost more than such a lookup (see README, Performance); when no connection is idle it
    /// waits for one on the blocking pool like [`Db::read`]. One statement is one snapshot.
    pub async fn lookup<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        match self.read.try_get() {
            Some(conn) => f(&conn),
            None => self.read(f).await,
        }
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`); commits when it returns `Ok`.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Transaction) -> Result<T, E> + Send + 'static,
    {
        let pool = self.write.clone();
        blocking(move || {
            let mut conn = pool.get().map_err(DbError::from)?;
            in_transaction(&mut conn, f)
        })
        .await
    }

    /// `SELECT 1` on a read connection.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.lookup(|c| Ok(c.prepare_cached("SELECT 1")?.query_row([], |_| Ok(()))?)).await
    }

    /// Whether the database answers and has every migration of this build applied (the
    /// readiness check of `/health/ready`).
    pub async fn migrations_applied(&self) -> Result<bool, DbError> {
        let latest = embedded::migrations::runner().get_migrations().iter().map(|m| i64::from(m.version())).max();
        let applied: Option<i64> = self
            .lookup(|c| -> Result<_, DbError> {
                Ok(c.prepare_cached("SELECT MAX(version) FROM refinery_schema_history")?.query_row([], |r| r.get(0))?)
            })
            .await?;
        Ok(applied >= latest)
    }

    /// The connections of the two pools: (pool, open, idle).
    pub fn pool_state(&self) -> [(&'static str, u32, u32); 2] {
        let (r, w) = (self.read.state(), self.write.state());
        [("read", r.connections, r.idle_connections), ("write", w.connections, w.idle_connections)]
    }

    /// Synchronous access to the writer, for start-up work outside the runtime.
    pub fn write_blocking<T, E: From<DbError>>(&self, f: impl FnOnce(&Transaction) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.write.get().map_err(DbError::from)?;
        in_transaction(&mut conn, f)
    }
}

/// `f` in `BEGIN IMMEDIATE`, committed when it answers `Ok`.
fn in_transaction<T, E: From<DbError>>(
    conn: &mut Connection,
    f: impl FnOnce(&Transaction) -> Result<T, E>,
) -> Result<T, E> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(DbError::from)?;
    let out = f(&tx)?;
    tx.commit().map_err(DbError::from)?;
    Ok(out)
}

/// `copilot migrate` on the SQLite file: applies what this build has and the file lacks (as
/// [`Db::open`] does at every start). Returns the schema version before (None: a new file) and
/// after.
pub fn migrate_file(path: &Path, busy_timeout: Duration) -> Result<(Option<i64>, Option<i64>), String> {
    let version = |path: &Path| -> Option<i64> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok()?;
        conn.query_row("SELECT MAX(version) FROM refinery_schema_history", [], |r| r.get(0)).ok()?
    };
    let before = if path.exists() { version(path) } else { None };
    drop(Db::open(path, 1, busy_timeout, None)?);
    Ok((before, version(path)))
}

/// Every `interval`, while the `Db` lives: a PASSIVE checkpoint (at most one fsync of the
/// database file per interval, in this thread, never in a request's commit).
fn checkpointer(conn: Connection, alive: std::sync::Weak<()>, interval: Duration) {
    let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        let _ = conn.busy_timeout(Duration::from_secs(1));
        loop {
            std::thread::sleep(interval);
            if alive.upgrade().is_none() {
                return;
            }
            if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                tracing::warn!(error = %e, "WAL checkpoint failed");
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the WAL checkpointer");
    }
}

/// Creates the database file readable by its owner only (0600), or narrows an existing one to
/// that: it holds the JWT secret, password hashes and session ids. SQLite gives its `-wal` and
/// `-shm` files the database file's mode.
fn owner_only(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |e: std::io::Error| format!("cannot create {}: {e}", path.display());
    std::fs::OpenOptions::new().write(true).create(true).truncate(false).mode(0o600).open(path).map_err(err)?;
    for file in [path.to_path_buf(), sidecar(path, "-wal"), sidecar(path, "-shm")] {
        match std::fs::metadata(&file) {
            Ok(m) if m.permissions().mode() & 0o077 != 0 => {
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).map_err(err)?
            }
            _ => {}
        }
    }
    Ok(())
}

fn sidecar(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Registers the sqlite-vec extension (vec0 tables for the knowledge base's vectors) for every
/// connection opened from now on, process-wide; a connection opened before would answer
/// "no such module: vec0" for its whole life, so this runs before any pool is built.
pub fn register_sqlite_vec() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            // SAFETY: sqlite-vec declares its entry point without arguments; SQLite calls it as
            // an auto extension `(db, pzErrMsg, api)`, which is its real C signature.
            unsafe {
                let init: rusqlite::auto_extension::RawAutoExtension =
                    std::mem::transmute(sqlite_vec::sqlite3_vec_init as *const ());
                rusqlite::auto_extension::register_auto_extension(init)
            }
            .map_err(|e| format!("cannot register sqlite-vec: {e}"))
        })
        .clone()
}

/// Runs `f` in a deferred read transaction, so that a count and its page come from one snapshot.
/// BEGIN and COMMIT are cached statements: rusqlite's `Transaction` parses them on every call.
fn snapshot<T, E: From<DbError>>(conn: &Connection, f: impl FnOnce(&Connection) -> Result<T, E>) -> Result<T, E> {
    /// Ends the transaction also when `f` fails or panics, so the pooled connection comes back clean.
    struct Snapshot<'c>(&'c Connection);
    impl Drop for Snapshot<'_> {
        fn drop(&mut self) {
            if !self.0.is_autocommit() {
                let _ = self.0.prepare_cached("ROLLBACK").and_then(|mut s| s.execute([]));
            }
        }
    }
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([])).map_err(DbError::from);
    run("BEGIN DEFERRED")?;
    let guard = Snapshot(conn);
    let out = f(conn)?;
    run("COMMIT")?;
    drop(guard);
    Ok(out)
}

/// Runs blocking work on tokio's blocking pool; a panic there is re-raised here.
pub async fn blocking<T, E, F>(f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(out) => out,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // the runtime is shutting down
        Err(_) => Err(DbError::Stopped.into()),
    }
}

/// The current time as RFC 3339 UTC with microseconds: fixed width, so text order is time order.
pub fn now() -> String {
    format_ts(time::OffsetDateTime::now_utc())
}

pub fn format_ts(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        t.month() as u8,
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// A new id: UUID v7, so ids sort by creation time as well.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The needle of a case-insensitive substring search, for `instr(lower(col), ?n) > 0`: ASCII
/// letters fold as LIKE folds them, and every other character (`%`, `_`, `\`, NUL) is itself —
/// LIKE would read the first three as wildcards and stop at a NUL.
pub fn search_needle(s: &str) -> String {
    s.to_ascii_lowercase()
}

/// Reads a JSON column; a stored value is always valid JSON (CHECK constraints).
pub fn json_col<T: serde::de::DeserializeOwned>(row: &rusqlite::Row<'_>, idx: usize) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, rusqlite::types::Type::Text, Box::new(e)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_database_and_its_wal_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.db");
        // an existing world-readable file is narrowed too
        let old = dir.path().join("old.db");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        for p in [&path, &old] {
            let db = super::Db::open(p, 1, std::time::Duration::from_secs(1), Some(std::time::Duration::from_secs(1)))
                .unwrap();
            db.write_blocking(|tx| Ok::<_, super::DbError>(tx.execute("CREATE TABLE t (x)", [])?)).unwrap();
            for file in [p.to_path_buf(), super::sidecar(p, "-wal"), super::sidecar(p, "-shm")] {
                let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", file.display());
            }
        }
    }

    #[test]
    fn timestamps_are_fixed_width_rfc3339() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.000007 UTC);
        assert_eq!(super::format_ts(t), "2026-01-02T03:04:05.000007Z");
        assert_eq!(super::now().len(), 27);
    }

    #[test]
    fn sqlite_vec_is_registered_for_new_connections() {
        super::register_sqlite_vec().unwrap();
        let c = rusqlite::Connection::open_in_memory().unwrap();
        let v: String = c.query_row("SELECT vec_version()", [], |r| r.get(0)).unwrap();
        assert!(v.starts_with("v0.1."), "{v}");
        c.execute_batch(
            "CREATE VIRTUAL TABLE t USING vec0(chunk_id INTEGER PRIMARY KEY, org TEXT PARTITION KEY, \
             embedding float[2] distance_metric=cosine); \
             INSERT INTO t(chunk_id, org, embedding) VALUES (1, 'a', '[1, 0]'), (2, 'a', '[0, 1]'), (3, 'b', '[1, 0]');",
        )
        .unwrap();
        let hits: Vec<i64> = c
            .prepare(
                "SELECT chunk_id FROM t WHERE embedding MATCH '[0.9, 0.1]' AND k = 5 AND org = 'a' ORDER BY distance",
            )
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(hits, [1, 2]);
    }

    #[test]
    fn search_needle_folds_ascii_only() {
        assert_eq!(super::search_needle("A%b_C\\\0É"), "a%b_c\\\0É");
    }
}
