//! PostgreSQL groundwork (README, Operations, "PostgreSQL (in progress)"): the migrations of
//! `migrations-postgres/` on a real cluster — applied twice, from two processes at once, through
//! a multi-host URL — compared table by table, column by column, key by key and index by index
//! with a fresh SQLite database, and the full-text and trigram indexes that replace FTS5 queried.
//!
//! The cluster comes from the libpq variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`,
//! `PGDATABASE`), as `pg_virtualenv` sets them; every test makes a database of its own there and
//! drops it. Without `PGHOST` the tests that need a cluster say so and pass, unless
//! `REQUIRE_POSTGRES=1` (set by tests/ops/postgres.sh in .ci/run) makes that a failure.

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Write,
    process::Command,
};

use postgres::{Client, NoTls};

const BIN: &str = env!("CARGO_BIN_EXE_copilot");

/// The binary, without the COPILOT_* variables that other tests of this process set.
fn copilot() -> Command {
    let mut cmd = Command::new(BIN);
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("COPILOT_")) {
        cmd.env_remove(name);
    }
    cmd
}

/// A database of its own on the test cluster, dropped with the guard.
pub(crate) struct TestDb {
    admin_url: String,
    name: String,
    pub(crate) url: String,
    host: String,
    port: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = Client::connect(&self.admin_url, NoTls) {
            let _ = admin.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

impl TestDb {
    fn client(&self) -> Client {
        Client::connect(&self.url, NoTls).expect("connect to the test database")
    }
}

/// URL-encodes a URL part (user, password, host, database).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A fresh database on the cluster of the PG* variables, or `None` (with a notice) without one.
pub(crate) fn test_db(test: &str) -> Option<TestDb> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let Some(host) = var("PGHOST") else {
        if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            panic!("REQUIRE_POSTGRES=1 but PGHOST is not set: run under pg_virtualenv");
        }
        // straight to the terminal: libtest captures println! of passing tests
        let _ = writeln!(
            std::io::stderr(),
            "note: {test}: skipped, no PostgreSQL cluster (PGHOST unset; `pg_virtualenv -v 15 cargo test --test api postgres` runs it)"
        );
        return None;
    };
    let port = var("PGPORT").unwrap_or_else(|| "5432".into());
    let user = var("PGUSER").unwrap_or_else(|| "postgres".into());
    let auth = match var("PGPASSWORD") {
        Some(p) => format!("{}:{}", enc(&user), enc(&p)),
        None => enc(&user),
    };
    let url_of = |db: &str| format!("postgres://{auth}@{}:{port}/{}", enc(&host), enc(db));
    let admin_url = url_of(&var("PGDATABASE").unwrap_or_else(|| "postgres".into()));
    let name = format!("copilot_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = Client::connect(&admin_url, NoTls).expect("connect to the cluster of the PG* variables");
    admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    Some(TestDb { url: url_of(&name), admin_url, name, host, port })
}

pub(crate) fn pool(url: &str) -> copilot::pg::PgPool {
    copilot::pg::open(url, 2).unwrap()
}

/// The migration files of a folder: (version, name), by version.
fn migration_files(dir: &str) -> Vec<(i32, String)> {
    let mut all: Vec<(i32, String)> = std::fs::read_dir(format!("{}/{dir}", env!("CARGO_MANIFEST_DIR")))
        .unwrap()
        .filter_map(|e| {
            let file = e.unwrap().file_name().to_string_lossy().into_owned();
            let (v, rest) = file.strip_prefix('V')?.split_once("__")?;
            Some((v.parse().ok()?, rest.strip_suffix(".sql")?.to_string()))
        })
        .collect();
    all.sort();
    all
}

#[test]
fn every_sqlite_migration_has_its_postgres_twin() {
    let sqlite = migration_files("migrations");
    let postgres = migration_files("migrations-postgres");
    assert!(sqlite.len() >= 9, "{sqlite:?}");
    assert_eq!(
        postgres, sqlite,
        "migrations/ and migrations-postgres/ must hold the same versions with the same names: a schema change \
         needs its PostgreSQL twin"
    );
    assert_eq!(copilot::pg::migrations(), postgres, "the embedded PostgreSQL migrations are the folder's");
}

#[test]
fn postgres_urls_that_do_not_answer_or_cannot_back_up_fail_without_the_password_and_migrate_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("copilot.toml");
    std::fs::write(&config, "[database]\nurl = \"postgres://copilot:pw-5791@127.0.0.1:1/copilot\"\n").unwrap();
    for args in [&["serve"][..], &[], &["backup", "x.db"]] {
        let out = copilot().args(args).arg("--config").arg(&config).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains("database.url") && err.contains("PostgreSQL"), "{args:?}: {err}");
        assert!(!err.contains("pw-5791"), "{args:?} printed the password: {err}");
    }
    let out = copilot().args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect to PostgreSQL"));
    let out = copilot().args(["backup", "x.db", "--config"]).arg(&config).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));

    std::fs::write(&config, "").unwrap();
    let migrate = || {
        let out = copilot().args(["migrate", "--config"]).arg(&config).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let latest = migration_files("migrations").last().unwrap().0;
    let first = migrate();
    assert!(first.contains(&format!("created, schema version {latest}")), "{first}");
    let second = migrate();
    assert!(second.contains(&format!("up to date, schema version {latest}")), "{second}");
}

#[test]
fn postgres_migrate_command_applies_once_then_is_up_to_date() {
    let Some(db) = test_db("postgres_migrate_command_applies_once_then_is_up_to_date") else { return };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("copilot.toml");
    std::fs::write(&config, format!("[database]\nurl = \"{}\"\n", db.url)).unwrap();
    let migrate = || {
        let out = copilot().args(["migrate", "--config"]).arg(&config).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{text}");
        text
    };
    let all = copilot::pg::migrations();
    let first = migrate();
    assert!(first.contains(&format!("applied {} (V1__initial_schema", all.len())), "{first}");
    assert!(first.contains(&format!("schema version {}", all.last().unwrap().0)), "{first}");
    assert!(first.contains(&db.name), "{first}");
    let second = migrate();
    assert!(second.contains("up to date"), "{second}");
    let password = std::env::var("PGPASSWORD").unwrap_or_default();
    assert!(password.is_empty() || !(first + &second).contains(&password), "the password was printed");
}

#[test]
fn postgres_migrations_run_once_from_two_instances_and_through_a_multi_host_url() {
    let Some(db) = test_db("postgres_migrations_run_once_from_two_instances_and_through_a_multi_host_url") else {
        return;
    };
    // two instances starting together: the advisory lock lets one apply, the other finds it done
    let runs: Vec<copilot::pg::Migrated> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2).map(|_| s.spawn(|| copilot::pg::migrate(&pool(&db.url)).unwrap())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let all = copilot::pg::migrations();
    let mut applied: Vec<usize> = runs.iter().map(|r| r.applied.len()).collect();
    applied.sort();
    assert_eq!(applied, [0, all.len()]);
    let history: i64 = db.client().query_one("SELECT count(*) FROM refinery_schema_history", &[]).unwrap().get(0);
    assert_eq!(history as usize, all.len());

    // a host that is down first, then the real one: the first that accepts writes is used
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let auth = db.url.strip_prefix("postgres://").unwrap().split('@').next().unwrap();
    let multi = format!(
        "postgres://{auth}@127.0.0.1:{dead},{}:{}/{}?target_session_attrs=read-write&connect_timeout=5",
        enc(&db.host),
        db.port,
        db.name
    );
    let m = copilot::pg::migrate(&pool(&multi)).unwrap();
    assert!(m.applied.is_empty());
    assert_eq!(m.version, Some(all.last().unwrap().0));

    // a wrong password: the server's own words, not the password
    let user = auth.split(':').next().unwrap();
    let wrong = format!("postgres://{user}:not-the-pw-2468@{}:{}/{}", enc(&db.host), db.port, db.name);
    let e = copilot::pg::open(&wrong, 1).unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("2468"), "{e}");
}

/// One table's shape: columns (name, declared or data type, not null), primary key, foreign keys
/// (column, table, column, on delete) and indexes.
#[derive(Debug, Default)]
struct Table {
    columns: Vec<(String, String, bool)>,
    primary_key: Vec<String>,
    foreign_keys: BTreeSet<(String, String, String, String)>,
    /// name -> index
    indexes: BTreeMap<String, Index>,
    /// CHECK constraints, besides SQLite's 0/1 checks of flags (PostgreSQL: `boolean`)
    checks: usize,
    /// SQLite: the CREATE TABLE statement
    sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Index {
    unique: bool,
    partial: bool,
    /// each key: the column, or `None` for an expression, with its ordering (true: DESC)
    keys: Vec<(Option<String>, bool)>,
    /// PostgreSQL: each key as pg_get_indexdef shows it (`nocase(name)`)
    key_text: Vec<String>,
    /// PostgreSQL: the statement that makes it (pg_get_indexdef)
    def: String,
}

fn sqlite_schema() -> (BTreeMap<String, Table>, BTreeMap<String, Vec<String>>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fresh.db");
    drop(copilot::db::Db::open(&path, 1, std::time::Duration::from_secs(5), None).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    let rows: Vec<(String, String, Option<String>, String)> = c
        .prepare("SELECT type, name, sql, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_stat%'")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // virtual tables (FTS5) and their columns; their shadow tables are theirs
    let virtual_tables: BTreeMap<String, Vec<String>> = rows
        .iter()
        .filter(|(kind, _, sql, _)| kind == "table" && sql.as_deref().is_some_and(|s| s.starts_with("CREATE VIRTUAL")))
        .map(|(_, name, _, _)| {
            let cols = c
                .prepare(&format!("SELECT name FROM pragma_table_info('{name}')"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (name.clone(), cols)
        })
        .collect();
    let is_virtual_or_shadow =
        |name: &str| virtual_tables.keys().any(|v| name == v || name.starts_with(&format!("{v}_")));
    let mut tables = BTreeMap::new();
    for (kind, name, sql, _) in &rows {
        if kind != "table"
            || name.starts_with("sqlite_")
            || name == "refinery_schema_history"
            || is_virtual_or_shadow(name)
        {
            continue;
        }
        let sql = sql.clone().unwrap_or_default();
        let flags = sql.matches(" IN (0, 1))").count();
        let mut t = Table { checks: sql.matches("CHECK (").count() - flags, sql, ..Default::default() };
        let mut pk: Vec<(i64, String)> = vec![];
        let mut s = c.prepare(&format!("SELECT name, type, \"notnull\", pk FROM pragma_table_info('{name}')")).unwrap();
        let cols = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))).unwrap();
        for col in cols {
            let (col, ty, notnull, key): (String, String, bool, i64) = col.unwrap();
            if key > 0 {
                pk.push((key, col.clone()));
            }
            // a PRIMARY KEY column is NOT NULL on PostgreSQL (and in practice here)
            t.columns.push((col, ty, notnull || key > 0));
        }
        pk.sort();
        t.primary_key = pk.into_iter().map(|(_, c)| c).collect();
        let mut s = c
            .prepare(&format!("SELECT \"from\", \"table\", \"to\", on_delete FROM pragma_foreign_key_list('{name}')"))
            .unwrap();
        t.foreign_keys = s
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.insert(name.clone(), t);
    }
    for (kind, name, sql, table) in &rows {
        if kind != "index" || !tables.contains_key(table) {
            continue;
        }
        let mut s = c
            .prepare(&format!("SELECT name, \"desc\" FROM pragma_index_xinfo('{name}') WHERE key = 1 ORDER BY seqno"))
            .unwrap();
        let keys = s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap();
        let (unique, partial): (bool, bool) = c
            .query_row(
                &format!("SELECT \"unique\", partial FROM pragma_index_list('{table}') WHERE name = ?1"),
                [name],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let index = Index { unique, partial, keys, key_text: vec![], def: sql.clone().unwrap_or_default() };
        if let Some(t) = tables.get_mut(table) {
            t.indexes.insert(name.clone(), index);
        }
    }
    (tables, virtual_tables)
}

fn postgres_schema(c: &mut Client) -> BTreeMap<String, Table> {
    let mut tables = BTreeMap::new();
    let names = c
        .query(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = 'public' \
             AND table_type = 'BASE TABLE' AND table_name <> 'refinery_schema_history'",
            &[],
        )
        .unwrap();
    for row in names {
        let name: String = row.get(0);
        let checks: i64 = c
            .query_one(
                "SELECT count(*) FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype = 'c'",
                &[&name],
            )
            .unwrap()
            .get(0);
        let mut t = Table { checks: checks as usize, ..Default::default() };
        for col in c
            .query(
                "SELECT column_name::text, data_type::text, is_nullable = 'NO' FROM information_schema.columns \
                 WHERE table_schema = 'public' AND table_name = $1 ORDER BY ordinal_position",
                &[&name],
            )
            .unwrap()
        {
            t.columns.push((col.get(0), col.get(1), col.get(2)));
        }
        t.primary_key = c
            .query(
                "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
                 AND a.attnum = ANY (i.indkey) WHERE i.indrelid = $1::text::regclass AND i.indisprimary \
                 ORDER BY array_position(i.indkey::int2[], a.attnum)",
                &[&name],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        t.foreign_keys = c
            .query(
                "SELECT a.attname::text, cf.relname::text, af.attname::text, \
                 CASE c.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE' \
                 WHEN 'n' THEN 'SET NULL' ELSE 'SET DEFAULT' END \
                 FROM pg_constraint c JOIN pg_class cf ON cf.oid = c.confrelid \
                 CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(col, fcol) \
                 JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col \
                 JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = k.fcol \
                 WHERE c.contype = 'f' AND c.conrelid = $1::text::regclass",
                &[&name],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        for ix in c
            .query(
                "SELECT ci.relname::text, i.indisunique, i.indpred IS NOT NULL, pg_get_indexdef(i.indexrelid), \
                 i.indnkeyatts::int4, i.indexrelid::oid, i.indoption::int2[] \
                 FROM pg_index i JOIN pg_class ci ON ci.oid = i.indexrelid WHERE i.indrelid = $1::text::regclass",
                &[&name],
            )
            .unwrap()
        {
            let (oid, options): (u32, Vec<i16>) = (ix.get(5), ix.get(6));
            let (mut keys, mut key_text) = (vec![], vec![]);
            for k in 1..=ix.get::<_, i32>(4) {
                let key: String = c.query_one("SELECT pg_get_indexdef($1, $2, true)", &[&oid, &k]).unwrap().get(0);
                let column = t.columns.iter().any(|(n, _, _)| *n == key).then(|| key.clone());
                keys.push((column, options[k as usize - 1] & 1 == 1));
                key_text.push(key);
            }
            let index = Index { unique: ix.get(1), partial: ix.get(2), keys, key_text, def: ix.get(3) };
            t.indexes.insert(ix.get(0), index);
        }
        tables.insert(name, t);
    }
    tables
}

/// The PostgreSQL columns that SQLite has no counterpart of, and why.
const POSTGRES_ONLY_COLUMNS: &[(&str, &str, &str)] = &[
    ("chunks", "search_vector", "the tsvector that replaces the FTS5 table chunks_fts"),
    ("messages", "position", "a live message's place, for deep pages (V12)"),
    ("conversations", "last_message_at", "the time of the latest message posted (V12)"),
];

/// Indexes of PostgreSQL alone (table, index, why).
const POSTGRES_ONLY_INDEXES: &[(&str, &str, &str)] =
    &[("messages", "messages_conversation_position", "deep pages from the messages' places (V12)")];

/// Whether a PostgreSQL type is the right twin of a SQLite column. Timestamps are known by their
/// names (`…_at`, `at`, `lease_until`), JSON by its CHECK (or as the audit log's `changes`).
fn type_matches(name: &str, table: &Table, column: &str, sqlite: &str, pg: &str) -> bool {
    let flag = table.sql.contains(&format!("CHECK ({column} IN (0, 1))"));
    let json = table.sql.contains(&format!("json_valid({column})")) || (name, column) == ("audit_events", "changes");
    let timestamp = column.ends_with("_at") || column == "at" || column == "lease_until";
    match sqlite {
        "TEXT" if json => pg == "jsonb",
        "TEXT" if timestamp => pg == "timestamp with time zone",
        "TEXT" => pg == "text",
        "INTEGER" if flag => pg == "boolean",
        "INTEGER" => pg == "bigint",
        "REAL" => pg == "double precision",
        "BLOB" => pg == "bytea",
        _ => false,
    }
}

/// The PostgreSQL key of a SQLite column: `nocase(col)` for a `COLLATE NOCASE` one.
fn twin_key(table: &Table, column: &str) -> String {
    let nocase =
        table.sql.lines().any(|line| line.split_whitespace().next() == Some(column) && line.contains("COLLATE NOCASE"));
    if nocase { format!("nocase({column})") } else { column.to_string() }
}

#[test]
fn postgres_schema_is_the_sqlite_schema_twice_applied() {
    let Some(db) = test_db("postgres_schema_is_the_sqlite_schema_twice_applied") else { return };
    let pool = pool(&db.url);
    let first = copilot::pg::migrate(&pool).unwrap();
    assert_eq!(first.applied, copilot::pg::migrations());
    let second = copilot::pg::migrate(&pool).unwrap();
    assert!(second.applied.is_empty(), "{second:?}");
    assert_eq!(second.version, first.version);

    let mut c = db.client();
    let (sqlite, virtual_tables) = sqlite_schema();
    let pg = postgres_schema(&mut c);
    let mut problems = vec![];
    for name in sqlite.keys().filter(|t| !pg.contains_key(*t)) {
        problems.push(format!("table {name} has no PostgreSQL twin"));
    }
    for name in pg.keys().filter(|t| !sqlite.contains_key(*t)) {
        problems.push(format!("PostgreSQL table {name} has no SQLite twin"));
    }
    assert!(sqlite.len() >= 20 && sqlite.values().map(|t| t.indexes.len()).sum::<usize>() >= 40, "{sqlite:?}");
    for (name, s) in &sqlite {
        let Some(p) = pg.get(name) else { continue };
        let pg_columns: Vec<&(String, String, bool)> = p
            .columns
            .iter()
            .filter(|(c, _, _)| !POSTGRES_ONLY_COLUMNS.iter().any(|(t, col, _)| t == name && col == c))
            .collect();
        let sqlite_names: Vec<&str> = s.columns.iter().map(|c| c.0.as_str()).collect();
        let pg_names: Vec<&str> = pg_columns.iter().map(|c| c.0.as_str()).collect();
        if sqlite_names != pg_names {
            problems.push(format!("{name}: columns {sqlite_names:?} on SQLite, {pg_names:?} on PostgreSQL"));
            continue;
        }
        for ((col, sty, snn), (_, pty, pnn)) in s.columns.iter().zip(pg_columns) {
            if !type_matches(name, s, col, sty, pty) {
                problems.push(format!("{name}.{col}: {sty} on SQLite is not {pty} on PostgreSQL"));
            }
            if snn != pnn {
                problems.push(format!("{name}.{col}: NOT NULL {snn} on SQLite, {pnn} on PostgreSQL"));
            }
        }
        if s.checks != p.checks {
            problems.push(format!("{name}: {} CHECK constraints on SQLite, {} on PostgreSQL", s.checks, p.checks));
        }
        if s.primary_key != p.primary_key {
            problems.push(format!("{name}: primary key {:?} vs {:?}", s.primary_key, p.primary_key));
        }
        if s.foreign_keys != p.foreign_keys {
            problems.push(format!(
                "{name}: foreign keys {:?} on SQLite, {:?} on PostgreSQL",
                s.foreign_keys, p.foreign_keys
            ));
        }
        // every SQLite index has its twin: a named one by name, an automatic one (UNIQUE) by columns
        let mut matched: BTreeSet<&str> =
            p.indexes.iter().filter(|(_, i)| i.def.contains("_pkey ON")).map(|(n, _)| n.as_str()).collect();
        for (iname, si) in &s.indexes {
            let columns: Vec<String> = si.keys.iter().map(|(c, _)| c.clone().unwrap_or_default()).collect();
            if columns == s.primary_key && iname.starts_with("sqlite_autoindex") {
                continue; // the primary key, compared above
            }
            if !iname.starts_with("sqlite_autoindex") {
                let Some(pi) = p.indexes.get(iname) else {
                    problems.push(format!("{name}: index {iname} has no PostgreSQL twin"));
                    continue;
                };
                matched.insert(iname);
                let same = pi.unique == si.unique && pi.partial == si.partial && pi.keys == si.keys;
                if !same {
                    problems.push(format!("{name}: index {iname} differs: {si:?} on SQLite, {pi:?} on PostgreSQL"));
                }
                continue;
            }
            // UNIQUE (a, b) of SQLite: a unique PostgreSQL index on the same columns, nocase(b) for
            // a NOCASE column
            let keys: Vec<String> = columns.iter().map(|c| twin_key(s, c)).collect();
            let twin = p.indexes.iter().find(|(_, pi)| pi.unique && !pi.partial && pi.key_text == keys);
            match twin {
                Some((n, _)) => {
                    matched.insert(n);
                }
                None => problems.push(format!("{name}: UNIQUE {keys:?} ({iname}) has no unique PostgreSQL index")),
            }
        }
        for (iname, pi) in &p.indexes {
            let postgres_only = POSTGRES_ONLY_INDEXES.iter().any(|(t, i, _)| t == name && i == iname);
            if !matched.contains(iname.as_str()) && !is_fts_replacement(name, iname) && !postgres_only {
                problems.push(format!("{name}: PostgreSQL index {iname} has no SQLite twin ({})", pi.def));
            }
        }
    }
    // each FTS5 table of SQLite has its PostgreSQL replacement
    let mut replaced = BTreeSet::new();
    for (vt, columns) in &virtual_tables {
        match vt.as_str() {
            // trigram FTS5 over users: one pg_trgm GIN index per searched column
            "users_search" => {
                for col in columns.iter().filter(|c| *c != "user_id") {
                    let index = pg["users"].indexes.get(&format!("users_search_{col}"));
                    let ok = index.is_some_and(|i| {
                        i.def.contains("USING gin") && i.def.contains(&format!("nocase({col}) gin_trgm_ops"))
                    });
                    if !ok {
                        problems
                            .push(format!("users_search.{col}: no pg_trgm GIN index users_search_{col} ({index:?})"));
                    }
                }
            }
            // the chunks' full text: a generated tsvector over the same columns, GIN-indexed
            "chunks_fts" => {
                let expr: Option<String> = c
                    .query_opt(
                        "SELECT generation_expression::text FROM information_schema.columns WHERE table_schema = 'public' \
                         AND table_name = 'chunks' AND column_name = 'search_vector' AND data_type = 'tsvector'",
                        &[],
                    )
                    .unwrap()
                    .map(|r| r.get(0));
                let expr = expr.unwrap_or_default();
                for col in columns {
                    if !expr.contains(&format!("{col})")) || !expr.contains("copilot_english") {
                        problems.push(format!("chunks_fts.{col}: not in chunks.search_vector ({expr:?})"));
                    }
                }
                let gin = pg["chunks"]
                    .indexes
                    .get("chunks_search")
                    .is_some_and(|i| i.def.contains("USING gin (search_vector)"));
                if !gin {
                    problems.push("chunks.search_vector has no GIN index chunks_search".into());
                }
            }
            other => problems.push(format!("SQLite virtual table {other} has no PostgreSQL replacement")),
        }
        replaced.insert(vt.as_str());
    }
    assert_eq!(replaced, BTreeSet::from(["chunks_fts", "users_search"]));
    assert!(problems.is_empty(), "the PostgreSQL schema differs from SQLite's:\n  {}", problems.join("\n  "));
}

/// The indexes that replace FTS5 tables (checked on their own).
fn is_fts_replacement(table: &str, index: &str) -> bool {
    (table == "users" && index.starts_with("users_search_")) || (table == "chunks" && index == "chunks_search")
}

#[test]
fn postgres_full_text_trigram_and_nocase_indexes_answer() {
    let Some(db) = test_db("postgres_full_text_trigram_and_nocase_indexes_answer") else { return };
    copilot::pg::migrate(&pool(&db.url)).unwrap();
    let mut c = db.client();
    let now = copilot::db::now();
    c.execute(
        "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ('o1', 'Acme', $1::text::timestamptz, $1::text::timestamptz)",
        &[&now],
    )
    .unwrap();
    let user = |c: &mut Client, id: &str, username: &str, email: &str, full_name: Option<&str>| {
        c.execute(
            "INSERT INTO users (id, organization_id, username, email, full_name, password_hash, created_at, updated_at) \
             VALUES ($1, 'o1', $2, $3, $4, 'x', now(), now())",
            &[&id, &username, &email, &full_name],
        )
    };
    user(&mut c, "u1", "Alice", "alice@example.com", Some("Alice Liddell")).unwrap();
    user(&mut c, "u2", "bob", "bob@example.com", Some("Bob Malice")).unwrap();
    user(&mut c, "u3", "Élise", "elise@example.com", None).unwrap();
    // NOCASE: ASCII letters fold, as on SQLite; other letters do not
    let dup = user(&mut c, "u4", "ALICE", "other@example.com", None).unwrap_err();
    assert_eq!(dup.code(), Some(&postgres::error::SqlState::UNIQUE_VIOLATION), "{dup}");
    user(&mut c, "u5", "élise", "elise2@example.com", None).unwrap();
    let dup = user(&mut c, "u6", "carol", "ALICE@example.COM", None).unwrap_err();
    assert_eq!(dup.code(), Some(&postgres::error::SqlState::UNIQUE_VIOLATION), "{dup}");
    // JSON columns keep their CHECKs
    let bad = c.execute("UPDATE organizations SET settings = '[]' WHERE id = 'o1'", &[]).unwrap_err();
    assert_eq!(bad.code(), Some(&postgres::error::SqlState::CHECK_VIOLATION), "{bad}");

    // substring search, the way the SQLite store does it, through the trigram indexes
    let search = "SELECT id FROM users WHERE nocase(username) LIKE $1 OR nocase(email) LIKE $1 \
                  OR nocase(full_name) LIKE $1 ORDER BY id";
    let ids = |c: &mut Client, needle: &str| -> Vec<String> {
        c.query(search, &[&format!("%{needle}%")]).unwrap().iter().map(|r| r.get(0)).collect()
    };
    assert_eq!(ids(&mut c, "lic"), ["u1", "u2"]); // Alice; Bob Malice
    assert_eq!(ids(&mut c, "@example"), ["u1", "u2", "u3", "u5"]);
    assert_eq!(ids(&mut c, "liddell"), ["u1"]);
    assert_eq!(ids(&mut c, "éli"), ["u5"]); // "Élise" is not folded, as on SQLite
    c.batch_execute("SET enable_seqscan = off").unwrap();
    let plan = explain(&mut c, search, "%lic%");
    for index in ["users_search_username", "users_search_email", "users_search_full_name"] {
        assert!(plan.contains(index), "{plan}");
    }
    let plan = explain(&mut c, "SELECT id FROM users WHERE nocase(username) = nocase($1)", "ALICE");
    assert!(plan.contains("users_username"), "{plan}");

    // the chunks' full text: English stemming, diacritics removed, the heading above the text
    c.batch_execute(
        "INSERT INTO documents (id, organization_id, title, filename, content_type, size_bytes, sha256, status, created_at, updated_at) \
         VALUES ('d1', 'o1', 'Handbook', 'h.md', 'text/markdown', 10, 'abc', 'ready', now(), now()); \
         INSERT INTO chunks (public_id, document_id, organization_id, ordinal, heading, text, token_count) VALUES \
         ('c1', 'd1', 'o1', 0, 'Lunch', 'The café downstairs runs until three.', 8), \
         ('c2', 'd1', 'o1', 1, 'Running the servers', 'Restart them on Mondays.', 5), \
         ('c3', 'd1', 'o1', 2, 'Holidays', 'Twenty-five days a year.', 5)",
    )
    .unwrap();
    let fts = "SELECT public_id FROM chunks WHERE search_vector @@ websearch_to_tsquery('copilot_english', $1) \
               ORDER BY ts_rank(search_vector, websearch_to_tsquery('copilot_english', $1)) DESC, id";
    let found =
        |c: &mut Client, q: &str| -> Vec<String> { c.query(fts, &[&q]).unwrap().iter().map(|r| r.get(0)).collect() };
    assert_eq!(found(&mut c, "running"), ["c2", "c1"]); // a heading match ranks first
    assert_eq!(found(&mut c, "cafe"), ["c1"]);
    assert_eq!(found(&mut c, "CAFÉ"), ["c1"]);
    assert_eq!(found(&mut c, "holiday"), ["c3"]);
    assert!(found(&mut c, "payroll").is_empty());
    let plan = explain(&mut c, fts, "running");
    assert!(plan.contains("chunks_search"), "{plan}");
    // the generated column follows an update of its sources
    c.execute("UPDATE chunks SET text = 'Payroll closes on the 25th.' WHERE public_id = 'c3'", &[]).unwrap();
    assert_eq!(found(&mut c, "payroll"), ["c3"]);
}

/// EXPLAIN of a statement with one text parameter.
fn explain(c: &mut Client, sql: &str, arg: &str) -> String {
    c.query(&format!("EXPLAIN {sql}"), &[&arg])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn postgres_timestamps_read_back_as_the_api_writes_them() {
    let Some(db) = test_db("postgres_timestamps_read_back_as_the_api_writes_them") else { return };
    copilot::pg::migrate(&pool(&db.url)).unwrap();
    let mut c = db.client();
    // microseconds, a zero fraction, a leap day: each comes back as the same fixed-width text
    let stamps = [
        "2026-12-02T06:26:24.123456Z",
        "2027-01-01T00:00:00.000000Z",
        "2028-02-29T23:59:59.000001Z",
        &copilot::db::now(),
    ];
    for (i, at) in stamps.iter().enumerate() {
        c.execute(
            "INSERT INTO server_settings (key, value, created_at) VALUES ($1, 'v', $2::text::timestamptz)",
            &[&format!("k{i}"), at],
        )
        .unwrap();
        let row = c.query_one("SELECT created_at FROM server_settings WHERE key = $1", &[&format!("k{i}")]).unwrap();
        let read: time::OffsetDateTime = row.get(0);
        assert_eq!(copilot::db::format_ts(read), *at);
        // and bound as a value, it is the same instant
        let same: bool = c
            .query_one("SELECT created_at = $1 FROM server_settings WHERE key = $2", &[&read, &format!("k{i}")])
            .unwrap()
            .get(0);
        assert!(same);
    }
    // order of time is the order of the text on SQLite
    let order: Vec<String> =
        c.query("SELECT key FROM server_settings ORDER BY created_at", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    let mut by_text: Vec<(&str, String)> = stamps.iter().enumerate().map(|(i, s)| (*s, format!("k{i}"))).collect();
    by_text.sort();
    assert_eq!(order, by_text.into_iter().map(|(_, k)| k).collect::<Vec<_>>());
}

// ---- The storage seam (store::conn): the organizations area, one body on both backends ----

use copilot::{
    authz::Scope,
    model::audit::Actor,
    pagination::Page,
    store::{
        conn::{Conn, Store},
        error::StoreError,
        organizations::{NewOrg, OrgChanges, OrgFilter},
    },
};

fn new_org(name: &str, domain: Option<&str>, second: u32) -> NewOrg {
    NewOrg {
        id: copilot::db::new_id(),
        name: name.into(),
        domain: domain.map(str::to_string),
        description: Some(format!("about {name}")),
        settings: r#"{"b": 1, "a": {"x": [1, 2]}}"#.into(),
        // fixed, distinct times: the list order is created_at DESC
        now: format!("2026-03-04T05:06:{second:02}.123456Z"),
    }
}

fn names(rows: &[copilot::model::organizations::Organization]) -> Vec<&str> {
    rows.iter().map(|o| o.name.as_str()).collect()
}

/// Counts rows of `sql` (one `$1`/`?1` text parameter) on either backend, for checks only.
pub(crate) fn count(c: &mut Conn, sqlite: &str, pg: &str, arg: &str) -> Result<i64, StoreError> {
    Ok(match c {
        Conn::Sqlite(c) => c.query_row(sqlite, [arg], |r| r.get(0))?,
        Conn::Postgres(t) => t.query_one(pg, &[&arg])?.try_get(0)?,
    })
}

/// The organizations area through the seam: the same calls and the same answers on `store`,
/// whichever backend it is.
async fn organizations_area(store: &Store) {
    let backend = store.backend();
    let all = Scope::system_all();
    store.write(copilot::store::bootstrap::ensure_permissions).await.unwrap();

    // create three, with their system roles and an audit event each
    let orgs = [
        new_org("Acme", Some("acme.example"), 1),
        new_org("Globex", None, 2),
        new_org("Initech", Some("init.example"), 3),
    ];
    for o in orgs.iter() {
        let o = NewOrg {
            id: o.id.clone(),
            name: o.name.clone(),
            domain: o.domain.clone(),
            description: o.description.clone(),
            settings: o.settings.clone(),
            now: o.now.clone(),
        };
        store
            .write(move |c| -> Result<_, StoreError> {
                copilot::store::organizations::insert_org(c, &o)?;
                copilot::store::bootstrap::insert_system_roles(c, &o.id, &o.now)?;
                let event = copilot::store::audit::Event::new("organization.create", &o.id, "organization", &o.id);
                copilot::store::audit::record(c, &Actor::default(), &event)
            })
            .await
            .unwrap();
    }
    let acme = orgs[0].id.clone();

    // get: every column, timestamps in the API's text, settings as JSON
    let (a, got_all) = {
        let (id, all2) = (acme.clone(), all.clone());
        store
            .read(move |c| copilot::store::organizations::get_org(c, &all2, &id))
            .await
            .unwrap()
            .map(|o| (o, true))
            .unwrap()
    };
    assert!(got_all);
    assert_eq!(
        (a.name.as_str(), a.domain.as_deref(), a.description.as_deref()),
        ("Acme", Some("acme.example"), Some("about Acme")),
        "{backend}"
    );
    assert_eq!(a.settings, serde_json::json!({"a": {"x": [1, 2]}, "b": 1}), "{backend}");
    assert!(a.is_active, "{backend}");
    assert_eq!(
        (a.created_at.as_str(), a.updated_at.as_str()),
        ("2026-03-04T05:06:01.123456Z", "2026-03-04T05:06:01.123456Z"),
        "{backend}"
    );
    let missing = store
        .read(move |c| copilot::store::organizations::get_org(c, &Scope::system_all(), "no-such-id"))
        .await
        .unwrap();
    assert!(missing.is_none(), "{backend}");

    // system roles: admin with all 13 permissions, member with its set; member_role_id finds it
    let id = acme.clone();
    let (roles, admin_perms, member_role) = store
        .read(move |c| -> Result<_, StoreError> {
            let roles = count(c, "SELECT COUNT(*) FROM roles WHERE organization_id = ?1 AND is_system = 1",
                "SELECT COUNT(*) FROM roles WHERE organization_id = $1 AND is_system", &id)?;
            let admin = count(c, "SELECT COUNT(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id WHERE r.organization_id = ?1 AND r.name = 'admin'",
                "SELECT COUNT(*) FROM role_permissions rp JOIN roles r ON r.id = rp.role_id WHERE r.organization_id = $1 AND r.name = 'admin'", &id)?;
            let member = copilot::store::organizations::member_role_id(c, &id)?;
            Ok((roles, admin, member))
        })
        .await
        .unwrap();
    assert_eq!((roles, admin_perms), (2, copilot::authz::Permission::ALL.len() as i64), "{backend}");
    let id = acme.clone();
    let member_perms = store
        .read(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM role_permissions WHERE role_id = ?1",
                "SELECT COUNT(*) FROM role_permissions WHERE role_id = $1",
                &member_role,
            )
        })
        .await
        .unwrap();
    assert_eq!(member_perms, copilot::authz::Permission::MEMBER.len() as i64, "{backend}");
    // the audit event of the create
    let events = store
        .read(move |c| {
            count(
                c,
                "SELECT COUNT(*) FROM audit_events WHERE organization_id = ?1 AND action = 'organization.create'",
                "SELECT COUNT(*) FROM audit_events WHERE organization_id = $1 AND action = 'organization.create'",
                &id,
            )
        })
        .await
        .unwrap();
    assert_eq!(events, 1, "{backend}");

    // list: newest first, total, paging, search on name and domain (any letter case), scope
    let list = |scope: Scope, search: Option<&str>, is_active: bool, skip: i64, limit: i64| {
        let filter = OrgFilter { search: search.map(str::to_string), is_active };
        let page = Page::new(Some(skip), Some(limit)).unwrap();
        let store = store.clone();
        async move { store.read(move |c| copilot::store::organizations::list_orgs(c, &scope, &filter, page)).await.unwrap() }
    };
    let (rows, total) = list(all.clone(), None, true, 0, 100).await;
    assert_eq!((names(&rows), total), (vec!["Initech", "Globex", "Acme"], 3), "{backend}");
    let (rows, total) = list(all.clone(), None, true, 1, 1).await;
    assert_eq!((names(&rows), total), (vec!["Globex"], 3), "{backend}: a page keeps the total");
    let (rows, total) = list(all.clone(), Some("ACME"), true, 0, 100).await;
    assert_eq!((names(&rows), total), (vec!["Acme"], 1), "{backend}: name, other case");
    let (rows, _) = list(all.clone(), Some("INIT.EX"), true, 0, 100).await;
    assert_eq!(names(&rows), ["Initech"], "{backend}: domain");
    let (rows, total) = list(all.clone(), Some("%"), true, 0, 100).await;
    assert_eq!((rows.len(), total), (0, 0), "{backend}: % is itself, not a wildcard");
    let (rows, total) = list(all.clone(), Some("o"), true, 0, 100).await;
    assert_eq!((names(&rows), total), (vec!["Globex"], 1), "{backend}: substring");
    let acme_scope = Scope::system_all().narrowed(Some(&acme)).unwrap();
    let (rows, total) = list(acme_scope.clone(), None, true, 0, 100).await;
    assert_eq!((names(&rows), total), (vec!["Acme"], 1), "{backend}: an org scope sees its own only");
    let globex = orgs[1].id.clone();
    let (s, g) = (acme_scope.clone(), globex.clone());
    let hidden = store.read(move |c| copilot::store::organizations::get_org(c, &s, &g)).await.unwrap();
    assert!(hidden.is_none(), "{backend}: another org is not found");

    // update: fields, clearing, settings replaced, deactivation; the is_active filter
    let (s, g) = (acme_scope.clone(), globex.clone());
    let blocked = store
        .write(move |c| {
            copilot::store::organizations::update_org(
                c,
                &s,
                &g,
                &OrgChanges { name: Some("X".into()), ..Default::default() },
                "2026-03-04T06:00:00.000000Z",
            )
        })
        .await
        .unwrap();
    assert!(blocked.is_none(), "{backend}: an org scope cannot update another org");
    let id = acme.clone();
    let changed = store
        .write(move |c| {
            let changes = OrgChanges {
                name: Some("Acme Corp".into()),
                domain: Some(None),
                description: Some(Some("new".into())),
                settings: Some(r#"{"limits": {"org_monthly_tokens": 5}}"#.into()),
                is_active: Some(false),
            };
            copilot::store::organizations::update_org(
                c,
                &Scope::system_all(),
                &id,
                &changes,
                "2026-03-04T07:08:09.000001Z",
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (changed.name.as_str(), changed.domain.as_deref(), changed.description.as_deref()),
        ("Acme Corp", None, Some("new")),
        "{backend}"
    );
    assert_eq!(changed.settings, serde_json::json!({"limits": {"org_monthly_tokens": 5}}), "{backend}");
    assert!(!changed.is_active, "{backend}");
    assert_eq!(
        (changed.created_at.as_str(), changed.updated_at.as_str()),
        ("2026-03-04T05:06:01.123456Z", "2026-03-04T07:08:09.000001Z"),
        "{backend}"
    );
    let id = acme.clone();
    let kept = store
        .write(move |c| {
            copilot::store::organizations::update_org(
                c,
                &Scope::system_all(),
                &id,
                &OrgChanges::default(),
                "2026-03-04T07:08:10.000000Z",
            )
        })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (kept.name.as_str(), kept.description.as_deref(), kept.settings.clone()),
        ("Acme Corp", Some("new"), changed.settings.clone()),
        "{backend}: None leaves columns as they are"
    );
    let (rows, total) = list(all.clone(), None, true, 0, 100).await;
    assert_eq!((names(&rows), total), (vec!["Initech", "Globex"], 2), "{backend}: deactivated are left out");
    let (rows, total) = list(all.clone(), None, false, 0, 100).await;
    assert_eq!((names(&rows), total), (vec!["Acme Corp"], 1), "{backend}: is_active=false lists them");

    // a name taken in another letter case: a conflict, on insert and on update; nothing written
    let dup = new_org("gLoBeX", None, 9);
    let e = store.write(move |c| copilot::store::organizations::insert_org(c, &dup)).await.unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(d) if d == "Organization name already exists"), "{backend}: {e:?}");
    let id = acme.clone();
    let e = store
        .write(move |c| {
            copilot::store::organizations::update_org(
                c,
                &Scope::system_all(),
                &id,
                &OrgChanges { name: Some("INITECH".into()), ..Default::default() },
                "2026-03-04T08:00:00.000000Z",
            )
        })
        .await
        .unwrap_err();
    assert!(matches!(&e, StoreError::Conflict(_)), "{backend}: {e:?}");
    let (_, total) = list(all.clone(), None, true, 0, 100).await;
    assert_eq!(total, 2, "{backend}");

    // a failed write rolls back all of it: the org inserted before the error is gone
    let rolled = new_org("Rolled back", None, 10);
    let rolled_id = rolled.id.clone();
    let e = store
        .write(move |c| -> Result<(), StoreError> {
            copilot::store::organizations::insert_org(c, &rolled)?;
            Err(StoreError::invalid("stop"))
        })
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Invalid(_)), "{backend}");
    assert!(!store.read(move |c| copilot::store::organizations::org_exists(c, &rolled_id)).await.unwrap(), "{backend}");

    // moving a user in: get_user/move_to_org/list_users through the seam
    let (from, to) = (orgs[2].id.clone(), globex.clone());
    let moved = store
        .write(move |c| -> Result<_, StoreError> {
            let role = copilot::store::organizations::member_role_id(c, &from)?;
            let user = copilot::store::users::insert_user(
                c,
                &copilot::store::users::NewUser {
                    id: copilot::db::new_id(),
                    organization_id: from.clone(),
                    role_id: Some(role),
                    username: "mover".into(),
                    email: "mover@example.com".into(),
                    full_name: Some("Mo Ver".into()),
                    password_hash: "x".into(),
                    is_superuser: false,
                    now: "2026-03-04T09:00:00.000000Z".into(),
                },
            )?;
            let role = copilot::store::organizations::member_role_id(c, &to)?;
            copilot::store::users::move_to_org(c, &user.id, &to, &role, "2026-03-04T09:00:01.000000Z")?;
            Ok(copilot::store::users::get_user(c, &Scope::system_all(), &user.id)?.unwrap())
        })
        .await
        .unwrap();
    assert_eq!(
        (moved.organization_id.as_str(), moved.updated_at.as_str()),
        (globex.as_str(), "2026-03-04T09:00:01.000000Z"),
        "{backend}"
    );
    let members = Scope::system_all().narrowed(Some(&globex)).unwrap();
    let (users, total) = store
        .read(move |c| {
            let filter =
                copilot::store::users::UserFilter { search: Some("MO V".into()), is_active: true, role_id: None };
            copilot::store::users::list_users(c, &members, &filter, Page::new(None, None).unwrap())
        })
        .await
        .unwrap();
    assert_eq!((users.len(), total, users[0].username.as_str()), (1, 1, "mover"), "{backend}");
}

pub(crate) fn sqlite_store(dir: &tempfile::TempDir) -> Store {
    let db = copilot::db::Db::open(&dir.path().join("seam.db"), 2, std::time::Duration::from_secs(5), None).unwrap();
    Store::Sqlite(db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seam_organizations_area_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    organizations_area(&sqlite_store(&dir)).await;
}

/// A plain test: the synchronous `postgres` client runs a runtime of its own, so connecting,
/// migrating and dropping the pool (and the test database) happen outside the test's runtime;
/// only the store calls run inside it (they go to the blocking pool, as in the server).
#[test]
fn seam_organizations_area_on_postgres() {
    on_postgres("seam_organizations_area_on_postgres", |store| async move {
        organizations_area(&store).await;
    });
}

/// Runs `body` on a fresh, migrated PostgreSQL [`Store`] of its own database (see
/// `seam_organizations_area_on_postgres` for why the pool lives outside the runtime). Without a
/// cluster it returns at once (or fails under `REQUIRE_POSTGRES=1`), like [`test_db`].
pub(crate) fn on_postgres<F, Fut>(test: &str, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let Some(db) = test_db(test) else { return };
    let pool = pool(&db.url);
    copilot::pg::migrate(&pool).unwrap();
    let store = Store::Postgres(pool);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(body(store.clone()));
    drop(runtime);
    drop(store);
    drop(db);
}
