//! PostgreSQL (`[database] url = "postgres://…"`): the URL's checks, a connection pool, and the
//! embedded migrations of `migrations-postgres/` (the twins of `migrations/`, version for
//! version). `serve` runs on it through the storage seam (`store::conn`), and `copilot migrate`
//! prepares a database without serving (README, Operations, "PostgreSQL").
//!
//! The client is the synchronous `postgres` crate (it mirrors rusqlite + r2d2); it runs a runtime
//! of its own inside every call, so like rusqlite it must be called off the async runtime
//! (`spawn_blocking`), never from inside a tokio task.

use std::{collections::HashMap, str::FromStr, time::Duration};

use postgres::{Client, NoTls, Row, Statement, config::SslMode, types::ToSql};
use r2d2_postgres::PostgresConnectionManager;

type Pool = r2d2::Pool<Manager>;

/// A pooled client and the statements it has prepared, by SQL text: a statement the connection
/// has run before costs one round trip (Bind/Execute) instead of two (Parse/Describe first).
pub struct PgConn {
    client: Client,
    statements: HashMap<String, Statement>,
}

impl PgConn {
    /// Statements on the client itself, each its own transaction.
    pub fn autocommit(&mut self) -> Transaction<'_> {
        Transaction { on: On::Client(&mut self.client), statements: &mut self.statements }
    }

    /// A transaction: read-only REPEATABLE READ (one snapshot) or of the server's default
    /// isolation (READ COMMITTED).
    pub fn transaction(&mut self, read_only: bool) -> Result<Transaction<'_>, postgres::Error> {
        let builder = self.client.build_transaction();
        let tx = match read_only {
            true => builder.isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true).start()?,
            false => builder.start()?,
        };
        Ok(Transaction { on: On::Tx(tx), statements: &mut self.statements })
    }
}

/// The most statements one connection keeps prepared (the store's SQL is a few hundred texts;
/// batch inserts make one per batch size). Past it the cache starts afresh.
const STATEMENTS_PER_CONNECTION: usize = 512;

/// r2d2's manager for [`PgConn`]: `r2d2_postgres`'s, with the statement cache beside the client.
pub struct Manager(PostgresConnectionManager<NoTls>);

impl r2d2::ManageConnection for Manager {
    type Connection = PgConn;
    type Error = postgres::Error;

    fn connect(&self) -> Result<PgConn, postgres::Error> {
        Ok(PgConn { client: self.0.connect()?, statements: HashMap::new() })
    }

    fn is_valid(&self, conn: &mut PgConn) -> Result<(), postgres::Error> {
        self.0.is_valid(&mut conn.client)
    }

    fn has_broken(&self, conn: &mut PgConn) -> bool {
        self.0.has_broken(&mut conn.client)
    }
}

/// What the store's PostgreSQL functions run their statements on: a transaction of a pooled
/// client (reads and writes) or the client itself (`Store::lookup`: one statement of key lookups
/// needs no BEGIN and COMMIT, two round trips less), with the connection's statement cache. The
/// methods are `postgres::Transaction`'s, taking the SQL text.
pub struct Transaction<'a> {
    on: On<'a>,
    statements: &'a mut HashMap<String, Statement>,
}

enum On<'a> {
    Tx(postgres::Transaction<'a>),
    Client(&'a mut Client),
}

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl Transaction<'_> {
    /// Commits (a no-op without a transaction).
    pub fn commit(self) -> Result<(), postgres::Error> {
        match self.on {
            On::Tx(tx) => tx.commit(),
            On::Client(_) => Ok(()),
        }
    }

    /// Rolls back (a no-op without a transaction); dropping it does too.
    pub fn rollback(self) -> Result<(), postgres::Error> {
        match self.on {
            On::Tx(tx) => tx.rollback(),
            On::Client(_) => Ok(()),
        }
    }

    /// The prepared statement of `sql`, from the cache or prepared now.
    pub fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = match &mut self.on {
            On::Tx(tx) => tx.prepare(sql)?,
            On::Client(c) => c.prepare(sql)?,
        };
        if self.statements.len() >= STATEMENTS_PER_CONNECTION {
            self.statements.clear();
        }
        self.statements.insert(sql.to_string(), s.clone());
        Ok(s)
    }

    pub fn query(&mut self, sql: &str, params: &Params<'_>) -> Result<Vec<Row>, postgres::Error> {
        let s = self.prepare(sql)?;
        match &mut self.on {
            On::Tx(tx) => tx.query(&s, params),
            On::Client(c) => c.query(&s, params),
        }
    }

    pub fn query_one(&mut self, sql: &str, params: &Params<'_>) -> Result<Row, postgres::Error> {
        let s = self.prepare(sql)?;
        match &mut self.on {
            On::Tx(tx) => tx.query_one(&s, params),
            On::Client(c) => c.query_one(&s, params),
        }
    }

    pub fn query_opt(&mut self, sql: &str, params: &Params<'_>) -> Result<Option<Row>, postgres::Error> {
        let s = self.prepare(sql)?;
        match &mut self.on {
            On::Tx(tx) => tx.query_opt(&s, params),
            On::Client(c) => c.query_opt(&s, params),
        }
    }

    pub fn execute(&mut self, sql: &str, params: &Params<'_>) -> Result<u64, postgres::Error> {
        let s = self.prepare(sql)?;
        match &mut self.on {
            On::Tx(tx) => tx.execute(&s, params),
            On::Client(c) => c.execute(&s, params),
        }
    }

    /// Statements without parameters, in the simple protocol (not cached).
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), postgres::Error> {
        match &mut self.on {
            On::Tx(tx) => tx.batch_execute(sql),
            On::Client(c) => c.batch_execute(sql),
        }
    }
}

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
    pub fn get(&self) -> Result<r2d2::PooledConnection<Manager>, r2d2::Error> {
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
    let manager = Manager(PostgresConnectionManager::new(config, NoTls));
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
    migrate_until(pool, None)
}

/// [`migrate`], up to and including the migration `version` only when one is given (a database
/// as an older build left it: the tests of a migration's data changes start from one).
pub fn migrate_until(pool: &PgPool, version: Option<i32>) -> Result<Migrated, String> {
    let mut conn = pool.get().map_err(|e| format!("cannot connect to PostgreSQL (database.url): {e}"))?;
    let err = |e: postgres::Error| format!("migrating the PostgreSQL database: {}", with_causes(&e));
    // the migrations change the schema that cached statements were prepared against
    conn.statements.clear();
    let conn = &mut conn.client;
    conn.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(err)?;
    let runner = embedded::migrations::runner();
    let runner = match version {
        Some(v) => runner.set_target(refinery::Target::Version(v as _)),
        None => runner,
    };
    let report = runner.run(conn);
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
