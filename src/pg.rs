//! PostgreSQL (`[database] url = "postgres://…"`): the URL's checks, a connection pool, and the
//! embedded migrations of `migrations-postgres/` (the twins of `migrations/`, version for
//! version). `serve` runs on it through the storage seam (`store::conn`), and `copilot migrate`
//! prepares a database without serving (README, Operations, "PostgreSQL").
//!
//! The client is the synchronous `postgres` crate (it mirrors rusqlite + r2d2); it runs a runtime
//! of its own inside every call, so like rusqlite it must be called off the async runtime
//! (`spawn_blocking`), never from inside a tokio task.

use std::{str::FromStr, time::Duration};

use postgres::{NoTls, config::SslMode};
use r2d2_postgres::PostgresConnectionManager;

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// A pool of PostgreSQL connections. Cheap to clone. The synchronous client runs a runtime of
/// its own, which must not be dropped inside an async context: the last clone of the pool,
/// wherever it goes (the end of `serve`, a test's runtime), closes its connections on a thread
/// of their own.
#[derive(Clone)]
pub struct PgPool(std::sync::Arc<PoolOwner>);

struct PoolOwner(Option<Pool>);

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (open, idle) = self.state();
        f.debug_struct("PgPool").field("open", &open).field("idle", &idle).finish()
    }
}

impl Drop for PoolOwner {
    fn drop(&mut self) {
        if let Some(pool) = self.0.take()
            && tokio::runtime::Handle::try_current().is_ok()
        {
            let _ = std::thread::Builder::new().name("pg-close".into()).spawn(move || drop(pool));
        }
    }
}

impl PgPool {
    fn pool(&self) -> &Pool {
        self.0.0.as_ref().expect("the pool lives until its owner drops")
    }

    /// A connection of the pool (blocking; call it off the async runtime).
    pub fn get(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, r2d2::Error> {
        self.pool().get()
    }

    /// (open connections, idle connections), for `/metrics`.
    pub fn state(&self) -> (u32, u32) {
        let s = self.pool().state();
        (s.connections, s.idle_connections)
    }
}

mod embedded {
    refinery::embed_migrations!("migrations-postgres");
}

/// How long one connection attempt to one host may take when the URL sets no `connect_timeout`:
/// a host that is down (a failed-over primary) must not hold up the next host of the list.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Two instances that start at once must not both apply the same migration: the migration run
/// holds this session-level advisory lock (an arbitrary constant, "copilot" in ASCII).
const MIGRATION_LOCK: i64 = 0x0063_6f70_696c_6f74;

/// Parses and checks `[database] url`. The message never quotes the URL (it holds a password).
/// Accepted: `postgres://` or `postgresql://`, one host or several (`h1:5432,h2:5432`, tried in
/// order; with `target_session_attrs=read-write` the first that accepts writes is used), a user,
/// and no TLS requirement (this build connects without TLS).
pub fn parse_url(url: &str) -> Result<postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            "must be a URL like \"postgres://user:password@host:5432/database\" (the value is not shown)".into()
        );
    }
    // the causes name an option (`port`, `sslmode`), never a value
    let mut config = postgres::Config::from_str(url).map_err(|e| match std::error::Error::source(&e) {
        Some(cause) => format!("{e}: {cause} (the value is not shown)"),
        None => format!("{e} (the value is not shown)"),
    })?;
    if config.get_hosts().is_empty() {
        return Err("must name a host, e.g. postgres://user:password@localhost:5432/copilot".into());
    }
    if config.get_user().is_none_or(str::is_empty) {
        return Err("must name the user, e.g. postgres://copilot:password@localhost:5432/copilot".into());
    }
    match config.get_ssl_mode() {
        SslMode::Disable | SslMode::Prefer => {}
        _ => {
            return Err("sslmode=require is not supported yet: this build connects without TLS (use it on a \
                        private network or a Unix socket, or leave sslmode out)"
                .into());
        }
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("copilot");
    }
    Ok(config)
}

/// The database a URL names, for messages: hosts and database name, never the password.
pub fn describe(url: &str) -> String {
    let Ok(c) = parse_url(url) else { return "PostgreSQL (database.url)".into() };
    let hosts: Vec<String> = c
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let port = c.get_ports().get(i).or(c.get_ports().first()).copied().unwrap_or(5432);
            match h {
                postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                postgres::config::Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let db = c.get_dbname().or(c.get_user()).unwrap_or_default();
    format!("PostgreSQL database {db:?} on {}", hosts.join(","))
}

/// Opens a pool of at most `size` connections; fails when no host of the URL answers.
pub fn open(url: &str, size: u32) -> Result<PgPool, String> {
    let config = parse_url(url).map_err(|e| format!("database.url: {e}"))?;
    // one connection first, for its error: the pool's keeps only "error connecting to server"
    config.connect(NoTls).map_err(|e| format!("cannot connect to PostgreSQL (database.url): {}", with_causes(&e)))?;
    let manager = PostgresConnectionManager::new(config, NoTls);
    let pool = r2d2::Pool::builder()
        .max_size(size)
        .min_idle(Some(1))
        .connection_timeout(Duration::from_secs(30))
        .build(manager)
        .map_err(|e| format!("cannot connect to PostgreSQL (database.url): {e}"))?;
    Ok(PgPool(std::sync::Arc::new(PoolOwner(Some(pool)))))
}

/// What a migration run did.
#[derive(Debug)]
pub struct Migrated {
    /// The migrations this run applied (version, name), oldest first.
    pub applied: Vec<(i32, String)>,
    /// The newest migration now in the database.
    pub version: Option<i32>,
}

/// Applies the embedded migrations that the database does not have yet, each in a transaction
/// of its own, under an advisory lock (so instances starting together apply each one once).
/// A database with a migration this build does not know, or with a changed one, is an error.
pub fn migrate(pool: &PgPool) -> Result<Migrated, String> {
    let mut conn = pool.get().map_err(|e| format!("cannot connect to PostgreSQL (database.url): {e}"))?;
    let err = |e: postgres::Error| format!("migrating the PostgreSQL database: {}", with_causes(&e));
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(err)?;
    let report = embedded::migrations::runner().run(&mut *conn);
    // the lock is the session's: release it before the connection goes back to the pool
    let unlocked = conn.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]);
    let report = report.map_err(|e| format!("migrating the PostgreSQL database: {}", with_causes(&e)))?;
    unlocked.map_err(err)?;
    let version = conn
        .query_one("SELECT MAX(version) FROM refinery_schema_history", &[])
        .and_then(|row| row.try_get::<_, Option<i32>>(0))
        .map_err(err)?;
    let applied = report.applied_migrations().iter().map(|m| (m.version(), m.name().to_string())).collect();
    Ok(Migrated { applied, version })
}

/// An error with its causes: postgres says only "db error", the server's message is its cause.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text = format!("{text}: {more}");
        }
        cause = c.source();
    }
    text
}

/// The embedded PostgreSQL migrations (version, name), oldest first.
pub fn migrations() -> Vec<(i32, String)> {
    let mut all: Vec<_> =
        embedded::migrations::runner().get_migrations().iter().map(|m| (m.version(), m.name().to_string())).collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_without_quoting_them() {
        let c = parse_url("postgres://copilot:s3cret-pw@db.internal:6432/copilot").unwrap();
        assert_eq!(c.get_user(), Some("copilot"));
        assert_eq!(c.get_dbname(), Some("copilot"));
        assert_eq!(c.get_ports(), [6432]);
        assert_eq!(c.get_connect_timeout(), Some(&DEFAULT_CONNECT_TIMEOUT));

        let c = parse_url("postgresql://u:p@h1:5432,h2:5433,h3/db?target_session_attrs=read-write&connect_timeout=3")
            .unwrap();
        assert_eq!(c.get_hosts().len(), 3);
        assert_eq!(c.get_ports(), [5432, 5433, 5432]);
        assert_eq!(c.get_target_session_attrs(), postgres::config::TargetSessionAttrs::ReadWrite);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));

        for (bad, says) in [
            ("mysql://u:s3cret-pw@h/db", "URL like"),
            ("host=h user=u password=s3cret-pw", "URL like"),
            ("postgres://u:s3cret-pw@h:notaport/db", "invalid"),
            ("postgres://u:s3cret-pw@h/db?nonsense=1", "unknown option"),
            ("postgres://:s3cret-pw@h/db", "user"),
            ("postgres://u:s3cret-pw@h/db?sslmode=require", "sslmode"),
        ] {
            let e = parse_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains("s3cret"), "{bad}: the message shows the password: {e}");
        }
    }

    #[test]
    fn a_host_that_refuses_is_named_in_the_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let e = open(&format!("postgres://u:s3cret-pw@127.0.0.1:{port}/db"), 1).unwrap_err();
        assert!(e.contains("database.url") && e.contains("refused"), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn the_embedded_migrations_are_those_of_the_folder() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations-postgres");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        files.sort_by_key(|n| n[1..].split("__").next().unwrap().parse::<i32>().unwrap());
        let embedded: Vec<String> = migrations().iter().map(|(v, n)| format!("V{v}__{n}.sql")).collect();
        assert_eq!(embedded, files);
    }
}
