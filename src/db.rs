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

impl DbError {
    /// True when PostgreSQL refused a text holding a NUL character (SQLSTATE 22021): its `text`
    /// cannot store one, so that input is the client's mistake there (a 400), not the server's.
    pub fn is_nul_in_text(&self) -> bool {
        matches!(self, DbError::Postgres(e) if e.code() == Some(&postgres::error::SqlState::CHARACTER_NOT_IN_REPERTOIRE))
    }
}

/// What a client is told when PostgreSQL refused a NUL character in its input.
pub const NUL_IN_TEXT: &str = "Text must not contain the NUL character (U+0000): this server's PostgreSQL \
                               database cannot store it";

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
    /// Read connections that see the file through a memory map: for the knowledge index alone.
    mapped: Pool,
    write: Pool,
    /// While any clone lives, the checkpointer thread runs.
    _alive: std::sync::Arc<()>,
}

/// How much of the file a [`Db::read_mapped`] connection maps (SQLite's `mmap_size`).
const MAPPED_BYTES: i64 = 1 << 30;

/// The size a reset WAL file is truncated back to.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

impl Db {
    /// Checkpoints are off the write path: no connection checkpoints in its commit (SQLite's
    /// autocheckpoint would make the committing request copy and fsync the WAL backlog — a
    /// stall of a second after a long backup read); a thread of its own runs a PASSIVE
    /// checkpoint, which blocks neither readers nor the writer, every `checkpoint_interval`, and
    /// restarts a WAL that steady writes kept from restarting (see [`checkpointer`]).
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
        let manager = |mmap_size: i64| {
            SqliteConnectionManager::file(path).with_init(move |c| {
                c.busy_timeout(busy_timeout)?;
                c.pragma_update(None, "journal_mode", "WAL")?;
                c.pragma_update(None, "synchronous", "NORMAL")?;
                c.pragma_update(None, "foreign_keys", "ON")?;
                c.pragma_update(None, "wal_autocheckpoint", 0)?;
                c.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)?;
                c.pragma_update(None, "mmap_size", mmap_size)?;
                c.set_prepared_statement_cache_capacity(64);
                // Plans that do not depend on bound values: without this, every `col LIKE ?n`
                // (and, once ANALYZE has run, every range over a bound value, as in FTS5's own
                // statements) makes SQLite re-prepare a cached statement each time it is bound.
                c.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
                Ok(())
            })
        };
        let open_err = |e: r2d2::Error| format!("cannot open database {}: {e}", path.display());
        // No test on check-out: an in-process SQLite connection cannot go stale, and r2d2's test
        // (an empty `execute_batch`) ran the SQL parser on every request.
        // (a write waits longer for its connection than r2d2's 30 s: writes queue for one)
        let pool = |max_size: u32, min_idle: u32, mmap_size: i64, wait_secs: u64| {
            r2d2::Pool::builder()
                .test_on_check_out(false)
                .max_size(max_size)
                .min_idle(Some(min_idle))
                .connection_timeout(Duration::from_secs(wait_secs))
                .build(manager(mmap_size))
                .map_err(open_err)
        };
        let write = pool(1, 1, 0, 60)?;
        {
            let mut conn = write.get().map_err(open_err)?;
            let report = embedded::migrations::runner()
                .run(&mut *conn)
                .map_err(|e| format!("migrating {}: {e}", path.display()))?;
            if let Some(last) = report.applied_migrations().last() {
                let applied = report.applied_migrations().len();
                tracing::info!(applied, version = last.version(), "migrated the SQLite database");
            }
        }
        let read = pool(read_pool_size, 1, 0, 30)?;
        // opened on the first knowledge search only
        let mapped = pool(read_pool_size, 0, MAPPED_BYTES, 30)?;
        let alive = std::sync::Arc::new(());
        if let Some(interval) = checkpoint_interval {
            let conn = Connection::open(path).map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
            checkpointer(conn, std::sync::Arc::downgrade(&alive), interval);
        }
        Ok(Db { read, mapped, write, _alive: alive })
    }

    /// Runs `f` on a read connection, inside one snapshot. `f` answers its own error type (a
    /// handler's `ApiError`, a store's `StoreError`), which the database's failures convert to.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        read_on(&self.read, f).await
    }

    /// [`Db::read`] on a connection that reads the file through a memory map, for searches of
    /// the knowledge index: a query reads thousands of index pages, which a mapped connection
    /// takes straight from the kernel's page cache where a plain one copies each into its own
    /// 2 MB page cache first (at 100,000 chunks that copying was half of a full-text search's
    /// time). The mapped pages count in the process's resident memory (shared, reclaimable file
    /// pages), so the other reads do not map: their requests keep the server's memory small.
    pub async fn read_mapped<T, E, F>(&self, f: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
        F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
    {
        read_on(&self.mapped, f).await
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
    pub fn pool_state(&self) -> [(&'static str, u32, u32); 3] {
        let (r, m, w) = (self.read.state(), self.mapped.state(), self.write.state());
        [
            ("read", r.connections, r.idle_connections),
            ("mapped", m.connections, m.idle_connections),
            ("write", w.connections, w.idle_connections),
        ]
    }

    /// Synchronous access to the writer, for start-up work outside the runtime.
    pub fn write_blocking<T, E: From<DbError>>(&self, f: impl FnOnce(&Transaction) -> Result<T, E>) -> Result<T, E> {
        let mut conn = self.write.get().map_err(DbError::from)?;
        in_transaction(&mut conn, f)
    }
}

/// `f` inside one snapshot, on a connection of `pool`, on the blocking pool.
async fn read_on<T, E, F>(pool: &Pool, f: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
    F: FnOnce(&Connection) -> Result<T, E> + Send + 'static,
{
    let pool = pool.clone();
    blocking(move || {
        let conn = pool.get().map_err(DbError::from)?;
        snapshot(&conn, f)
    })
    .await
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

/// A WAL of this many frames (4 KiB pages; SQLite's own autocheckpoint threshold) that the
/// PASSIVE checkpoint did not get restarted is restarted under the writer lock.
const RESTART_FRAMES: i64 = 1000;

/// The checkpointer's pause after a WAL that needed a restart (writes are coming fast).
const BUSY_INTERVAL: Duration = Duration::from_millis(100);

/// How long the RESTART checkpoint waits for the writer and for readers of the old WAL (SQLite's
/// busy handler): a write waits at most about this long for it, and a long reader (a backup)
/// makes it give up, to be tried again at the next interval.
const RESTART_WAIT: Duration = Duration::from_millis(20);

/// Every `interval`, while the `Db` lives, in this thread (never in a request's commit):
///
/// 1. a PASSIVE checkpoint, which copies the WAL's backlog into the database without blocking the
///    writer or readers (at most one fsync of the database file per interval);
/// 2. when the WAL was still not restarted (≥ [`RESTART_FRAMES`] frames) and the passive pass got
///    within [`RESTART_FRAMES`] of its end (no long reader, such as a backup, holds it back), a
///    RESTART checkpoint.
///    Under steady writes the passive one never catches up with the writer, and a WAL restarts
///    (is written again from its start) only once it is wholly checkpointed with no reader in
///    it: without this the WAL grew by ~150 MB/s under the benchmark's message posts (2.8 GB in
///    18 s), every commit wrote into new file blocks that the kernel first zeroes (11 % of the
///    server's CPU) and readers searched a longer and longer WAL index. RESTART holds the writer
///    lock while it copies what the passive pass left (the last moment's pages) and waits up to
///    [`RESTART_WAIT`] for readers to leave the WAL; then the next commit starts the WAL over,
///    and `journal_size_limit` truncates it back to 64 MiB. While writes come that fast, the
///    next round comes after [`BUSY_INTERVAL`] instead of `interval`.
fn checkpointer(conn: Connection, alive: std::sync::Weak<()>, interval: Duration) {
    let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
        let _ = conn.busy_timeout(RESTART_WAIT);
        // (frames in the WAL, frames of it now in the database)
        let checkpoint = |mode: &str| -> rusqlite::Result<(i64, i64)> {
            conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| Ok((r.get(1)?, r.get(2)?)))
        };
        let mut pause = interval;
        loop {
            std::thread::sleep(pause);
            if alive.upgrade().is_none() {
                return;
            }
            pause = interval;
            match checkpoint("PASSIVE") {
                Ok((frames, copied)) if frames >= RESTART_FRAMES => {
                    // writes are coming fast: come back sooner, so the WAL stays short
                    pause = interval.min(BUSY_INTERVAL);
                    // unless a long reader (a backup) holds the passive pass far behind: then a
                    // restart would only hold the writer for RESTART_WAIT and give up
                    if frames - copied < RESTART_FRAMES
                        && let Err(e) = checkpoint("RESTART")
                    {
                        tracing::warn!(error = %e, "WAL checkpoint (restart) failed");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
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

    /// Steady writes beside steady reads: the passive checkpoint alone never finds the WAL free
    /// to start over, and it grew without end (2.8 GB in 18 s under the benchmark).
    #[test]
    fn the_wal_starts_over_under_steady_writes_and_reads() {
        use std::{
            sync::atomic::{AtomicBool, Ordering},
            time::{Duration, Instant},
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let db = super::Db::open(&path, 2, Duration::from_secs(5), Some(Duration::from_millis(20))).unwrap();
        db.write_blocking(|tx| Ok::<_, super::DbError>(tx.execute("CREATE TABLE t (x TEXT)", [])?)).unwrap();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (stop, path) = (stop.clone(), path.clone());
                std::thread::spawn(move || {
                    let c = rusqlite::Connection::open(&path).unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        // short reads, as a server's requests make
                        let _: Option<i64> = c.query_row("SELECT MAX(rowid) FROM t", [], |r| r.get(0)).unwrap();
                    }
                })
            })
            .collect();
        let (started, mut written) = (Instant::now(), 0i64);
        while started.elapsed() < Duration::from_secs(3) {
            db.write_blocking(|tx| {
                Ok::<_, super::DbError>(tx.execute("INSERT INTO t VALUES (hex(randomblob(3000)))", [])?)
            })
            .unwrap();
            written += 2; // a page of the row, at least one of the tree above it
        }
        stop.store(true, Ordering::Relaxed);
        readers.into_iter().for_each(|r| r.join().unwrap());
        let wal_frames = std::fs::metadata(super::sidecar(&path, "-wal")).unwrap().len() as i64 / 4120;
        assert!(written > 8 * super::RESTART_FRAMES, "too few writes to tell: {written} pages");
        assert!(
            wal_frames < written / 2,
            "the WAL holds {wal_frames} frames of {written} written: it never started over"
        );
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
