//! The PostgreSQL backend's scenarios (issue 13, part 6; issue 15, part 3), side by side with
//! SQLite and the ceiling: `--postgres` under `pg_virtualenv` (or any cluster of the libpq `PG*`
//! variables) seeds a database of its own with the data set of `seed_copilot`, serves it with a
//! copilot on `database.url`, and measures the same scenarios, interleaved with the SQLite
//! server's runs. Besides copilot's CPU per request it reports the PostgreSQL server processes'
//! (every process named `postgres`: run it on a cluster of its own).
//!
//! ```text
//! pg_virtualenv -v 15 cargo bench --bench http -- --postgres --only auth_me,messages_deep_page
//! ```

use std::time::Duration;

use postgres::{Client, NoTls};

use super::{LoadResult, Opts, Target, clock_ticks_per_second, content, id, login, measure, scenarios, ts};

/// A database of its own on the cluster of the PG* variables, dropped at the end.
struct BenchDb {
    admin: String,
    name: String,
    url: String,
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Ok(mut c) = Client::connect(&self.admin, NoTls) {
            let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        }
    }
}

fn bench_db() -> Option<BenchDb> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let host = var("PGHOST")?;
    let port = var("PGPORT").unwrap_or_else(|| "5432".into());
    let user = var("PGUSER").unwrap_or_else(|| "postgres".into());
    let auth = match var("PGPASSWORD") {
        Some(p) => format!("{user}:{p}"),
        None => user,
    };
    // a socket folder as the host goes in the query string (libpq's `host=`)
    let url_of = |db: &str| {
        if host.starts_with('/') {
            format!("postgres://{auth}@localhost:{port}/{db}?host={host}")
        } else {
            format!("postgres://{auth}@{host}:{port}/{db}")
        }
    };
    let admin = url_of(&var("PGDATABASE").unwrap_or_else(|| "postgres".into()));
    let name = format!("copilot_bench_{}", std::process::id());
    let mut c = Client::connect(&admin, NoTls).expect("connect to the cluster of the PG* variables");
    // two statements: one multi-statement string would be one transaction, which they refuse
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
    Some(BenchDb { url: url_of(&name), admin, name })
}

/// CPU time of every process named `postgres` (the cluster's server processes).
fn postgres_cpu() -> Duration {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let Some((head, rest)) = stat.rsplit_once(')') else { continue };
        if !head.ends_with("(postgres") {
            continue;
        }
        let f: Vec<&str> = rest.split_whitespace().collect();
        ticks += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    }
    Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second())
}

/// The data set of `seed_copilot`, in PostgreSQL, after copilot's first start made the schema and
/// the `Default` organization: 100 members, `bench` (admin) and its conversation of 10,000
/// messages. Returns the conversation's id.
fn seed(url: &str, bench_hash: &str) -> String {
    let mut c = Client::connect(url, NoTls).expect("connect to the bench database");
    let mut tx = c.transaction().unwrap();
    let org: String = tx.query_one("SELECT id FROM organizations WHERE name = 'Default'", &[]).unwrap().get(0);
    let role = |tx: &mut postgres::Transaction, name: &str| -> String {
        tx.query_one("SELECT id FROM roles WHERE organization_id = $1 AND name = $2", &[&org, &name]).unwrap().get(0)
    };
    let (admin_role, member_role) = (role(&mut tx, "admin"), role(&mut tx, "member"));
    let ins = tx
        .prepare(
            "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, is_active, \
             is_superuser, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, true, false, \
             $8::text::timestamptz, $8::text::timestamptz)",
        )
        .unwrap();
    for i in 0..100 {
        let (name, email, full) = (format!("user{i}"), format!("user{i}@example.com"), format!("Member Number {i}"));
        tx.execute(&ins, &[&id(), &org, &member_role, &name, &email, &full, &bench_hash, &ts(i * 1_000_000)]).unwrap();
    }
    let bench = id();
    tx.execute(
        &ins,
        &[&bench, &org, &admin_role, &"bench", &"bench@example.com", &"Bench Admin", &bench_hash, &ts(200_000_000)],
    )
    .unwrap();
    let conversation = id();
    tx.execute(
        "INSERT INTO conversations (id, user_id, organization_id, title, context, is_archived, is_active, \
         message_count, created_at, updated_at) VALUES ($1, $2, $3, 'benchmark', '{}', false, true, 10000, \
         $4::text::timestamptz, $4::text::timestamptz)",
        &[&conversation, &bench, &org, &ts(0)],
    )
    .unwrap();
    let msg = tx
        .prepare(
            "INSERT INTO messages (id, conversation_id, role, content, metadata, is_active, created_at, position) \
             VALUES ($1, $2, $3, $4, '{}', true, $5::text::timestamptz, $6)",
        )
        .unwrap();
    let mut last = String::new();
    for i in 0..10_000usize {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        last = ts(1_000_000_000 + i as i64 * 1000);
        tx.execute(&msg, &[&id(), &conversation, &role, &content(i), &last, &(i as i64)]).unwrap();
    }
    // the time of the latest message, which a post comes after (migrations-postgres/V12)
    tx.execute(
        "UPDATE conversations SET last_message_at = $2::text::timestamptz WHERE id = $1",
        &[&conversation, &last],
    )
    .unwrap();
    tx.commit().unwrap();
    c.batch_execute("VACUUM ANALYZE").unwrap();
    conversation
}

/// The `--postgres` runs: every wanted scenario of the main table on copilot served from
/// PostgreSQL, `repeat` times, each run beside one of the SQLite server.
pub fn run(rt: &tokio::runtime::Runtime, opts: &Opts, sqlite: &Target, ceiling: Option<&Target>, bench_hash: &str) {
    println!();
    let Some(db) = bench_db() else {
        println!(
            "PostgreSQL: skipped (PGHOST is not set: run under `pg_virtualenv -v 15 cargo bench --bench http -- --postgres`)"
        );
        return;
    };
    let envs = [("COPILOT_DATABASE__URL", db.url.clone())];
    let dir = super::tmp_dir_of(&sqlite.db);
    super::start_copilot_with(dir, &dir.join("unused-pg.db"), &envs).stop(); // migrations, bootstrap
    let conversation = seed(&db.url, bench_hash);
    let server = super::start_copilot_with(dir, &dir.join("unused-pg.db"), &envs);
    let token = rt.block_on(login(server.addr));
    let pg =
        Target { server, token, scenarios: scenarios(&conversation, "/api/v1/status"), db: dir.join("unused-pg.db") };

    println!(
        "PostgreSQL backend ({} connections; cpu: copilot's, and the postgres processes' per request):",
        opts.connections
    );
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>7} {:>8} {:>8} | {:>10} {:>8} | {:>9} {:>9}",
        "scenario",
        "pg/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu µs",
        "pg µs",
        "sqlite/s",
        "cpu µs",
        "pg/sqlite",
        "pg/ceil"
    );
    for i in 0..pg.scenarios.len() {
        let s = &pg.scenarios[i];
        if !opts.wants(s.name) || s.name == "status" {
            continue;
        }
        rt.block_on(pg.check(s));
        for _ in 0..opts.repeat {
            let before = postgres_cpu();
            let p: LoadResult = rt.block_on(measure(&pg, s, opts));
            let pg_us = (postgres_cpu() - before).as_secs_f64() * 1e6 / p.requests.max(1) as f64;
            let q: LoadResult = rt.block_on(measure(sqlite, &sqlite.scenarios[i], opts));
            let c: Option<LoadResult> = ceiling.map(|c| rt.block_on(measure(c, &c.scenarios[i], opts)));
            let cpu = |r: &LoadResult| r.cpu_us.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into());
            println!(
                "{:<20} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>8} {:>8.1} | {:>10.0} {:>8} | {:>8.2}x {:>9}",
                s.name,
                p.rps(),
                p.ms(0.5),
                p.ms(0.99),
                p.errors,
                cpu(&p),
                pg_us,
                q.rps(),
                cpu(&q),
                p.rps() / q.rps().max(f64::MIN_POSITIVE),
                c.map(|c| format!("{:.2}x", p.rps() / c.rps().max(f64::MIN_POSITIVE))).unwrap_or_else(|| "-".into()),
            );
        }
    }
    println!("  copilot on PostgreSQL: peak memory (VmHWM) {:.1} MiB", pg.server.peak_kib() as f64 / 1024.0);
    pg.server.stop();
    drop(db);
}
