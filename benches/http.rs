//! `cargo bench --bench http`: copilot under HTTP load, beside the `ceiling` server when
//! `../shared/ceiling` exists.
//!
//! The server runs as a child process on a temporary database, seeded through SQL before it
//! starts; the load comes from this process (its own single-threaded tokio runtime, plain
//! HTTP/1.1 keep-alive connections, one request in flight per connection, like `wrk -t1`).
//!
//! ```text
//! cargo bench --bench http                         # every scenario, 10 s each
//! cargo bench --bench http -- --duration 3         # shorter (or BENCH_DURATION=3)
//! cargo bench --bench http -- --growth             # also deep page and search at 10k/100k/1M rows
//! cargo bench --bench http -- --no-ceiling         # copilot alone (or BENCH_NO_CEILING=1)
//! cargo bench --bench http -- --connections 64     # (or BENCH_CONNECTIONS=64)
//! cargo bench --bench http -- --only auth_me,storm # some scenarios (or BENCH_ONLY=...)
//! cargo bench --bench http -- --repeat 5           # interleaved runs: medians and spreads of the ratios
//! cargo bench --bench http -- --backup 1 --only backup  # a 1 GB database: start-up, and the longest
//!                                                   # write stall while `copilot backup` runs
//! cargo bench --bench http -- --only relay,followers    # copilot alone (alone.rs): a streamed completion
//!                                                   # relayed from a scripted provider; 1,000 SSE followers
//! pg_virtualenv -v 15 cargo bench --bench http -- --postgres  # also served from PostgreSQL
//! cargo bench --bench http -- --knowledge           # also knowledge search over 100,000 chunks
//!                                                   # (or --only knowledge_search,knowledge_hybrid)
//! ```

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

#[path = "http/alone.rs"]
mod alone;
#[path = "common/corpus.rs"]
mod corpus;
#[path = "http/postgres.rs"]
mod postgres;
#[path = "http/provider.rs"]
mod provider;

use hdrhistogram::Histogram;
use rusqlite::{Connection, params};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const BENCH_PASSWORD: &str = "bench-password-123";
const ADMIN_PASSWORD: &str = "admin-password-123";
const ITERATIONS: u32 = 600_000;

// ------------------------------------------------------------------------------------ options

struct Opts {
    duration: Duration,
    warmup: Duration,
    connections: usize,
    growth: bool,
    ceiling: bool,
    /// Only these scenarios (`storm` for the login storm); all when empty.
    only: Vec<String>,
    /// Interleaved runs per scenario (copilot, ceiling, copilot, ceiling, ...).
    repeat: usize,
    /// Grow copilot's database to this many GB (of document files) before the runs, and measure
    /// writes during `copilot backup` (scenario `backup`); 0: neither.
    backup_gb: f64,
    /// Followers of the `followers` scenario.
    followers: usize,
    /// Run the knowledge search scenarios too (they are opt-in: seeding takes a while).
    knowledge: bool,
    /// Chunks the knowledge search scenarios search.
    knowledge_chunks: usize,
    /// Also serve from PostgreSQL (the cluster of the PG* variables) and run the scenarios there.
    postgres: bool,
}

impl Opts {
    fn parse() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let value = |flag: &str, env: &str| -> Option<String> {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1).cloned())
                .or_else(|| std::env::var(env).ok().filter(|v| !v.is_empty()))
        };
        let secs: f64 = value("--duration", "BENCH_DURATION").and_then(|v| v.parse().ok()).unwrap_or(10.0);
        let duration = Duration::from_secs_f64(secs.max(0.5));
        Opts {
            duration,
            warmup: (duration / 5).clamp(Duration::from_millis(300), Duration::from_secs(2)),
            connections: value("--connections", "BENCH_CONNECTIONS").and_then(|v| v.parse().ok()).unwrap_or(32),
            growth: args.iter().any(|a| a == "--growth") || std::env::var_os("BENCH_GROWTH").is_some(),
            only: value("--only", "BENCH_ONLY").map(|v| v.split(',').map(str::to_string).collect()).unwrap_or_default(),
            ceiling: !(args.iter().any(|a| a == "--no-ceiling") || std::env::var_os("BENCH_NO_CEILING").is_some()),
            repeat: value("--repeat", "BENCH_REPEAT").and_then(|v| v.parse().ok()).unwrap_or(1usize).max(1),
            backup_gb: value("--backup", "BENCH_BACKUP_GB").and_then(|v| v.parse().ok()).unwrap_or(0.0f64).max(0.0),
            followers: value("--followers", "BENCH_FOLLOWERS").and_then(|v| v.parse().ok()).unwrap_or(1000usize).max(1),
            knowledge: args.iter().any(|a| a == "--knowledge") || std::env::var_os("BENCH_KNOWLEDGE").is_some(),
            knowledge_chunks: value("--knowledge-chunks", "BENCH_KNOWLEDGE_CHUNKS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100_000usize)
                .max(1000),
            postgres: args.iter().any(|a| a == "--postgres") || std::env::var_os("BENCH_POSTGRES").is_some(),
        }
    }
}

// ------------------------------------------------------------------------------------ time stamps

/// Fixed-width RFC 3339 UTC with microseconds, `offset_us` after 2026-01-01 (text order = time order).
fn ts(offset_us: i64) -> String {
    let t = time::macros::datetime!(2026-01-01 00:00:00 UTC) + time::Duration::microseconds(offset_us);
    copilot::db::format_ts(t)
}

fn id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn content(i: usize) -> String {
    let head = format!("message {i}: ");
    let mut s = head.clone();
    while s.len() < 200 {
        s.push_str("lorem ipsum dolor sit amet ");
    }
    s.truncate(200);
    s
}

// ------------------------------------------------------------------------------------ servers

struct Server {
    name: &'static str,
    child: Child,
    addr: SocketAddr,
    started_in: Duration,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident memory (VmHWM) in KiB.
    fn peak_kib(&self) -> u64 {
        vm_kib(self.pid(), "VmHWM:")
    }

    /// CPU time the process has used so far (user + system), from /proc/<pid>/stat.
    fn cpu(&self) -> Option<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).ok()?;
        // the fields after the command name, which is in parentheses and may hold spaces
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        Some(Duration::from_secs_f64(ticks as f64 / clock_ticks_per_second()))
    }

    /// SIGTERM (graceful: the WAL is checkpointed), SIGKILL if it does not stop.
    fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let until = Instant::now() + Duration::from_secs(15);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// USER_HZ: 100 on every Linux this runs on; `getconf CLK_TCK` says for sure.
/// A `kB` field of /proc/<pid>/status (VmHWM:, VmRSS:, Threads:, …); 0 when unreadable.
pub fn vm_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The median of `v` (not empty) and its min..max.
pub fn median_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let m = if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (m, v[0], v[v.len() - 1])
}

fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts copilot on `db` and waits for its banner; the time is spawn → `Ready.`.
fn start_copilot(dir: &Path, db: &Path) -> Server {
    start_copilot_with(dir, db, &[])
}

/// [`start_copilot`] with more settings (environment variables).
fn start_copilot_with(dir: &Path, db: &Path, envs: &[(&str, String)]) -> Server {
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_copilot"))
        .arg("serve")
        .current_dir(dir)
        .env("COPILOT_DATABASE__PATH", db)
        .env("COPILOT_SERVER__BIND", "127.0.0.1:0")
        .env("COPILOT_BOOTSTRAP__ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_LOG", "warn")
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start copilot");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut addr = None;
    loop {
        let line = match lines.next() {
            Some(Ok(l)) => l,
            _ => panic!("copilot exited before it was ready"),
        };
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = Some(rest.trim().parse::<SocketAddr>().expect("banner address"));
        }
        if line.starts_with("Ready.") {
            break;
        }
    }
    let started_in = started.elapsed();
    // keep draining stdout so the child never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Server { name: "copilot", child, addr: addr.expect("banner has the address"), started_in }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts ceiling on `db` and waits until it accepts connections.
fn start_ceiling(bin: &Path, db: &Path) -> Server {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["serve", "--bind", &addr.to_string(), "--db"])
        .arg(db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ceiling");
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("ceiling exited: {status}");
        }
        assert!(started.elapsed() < Duration::from_secs(30), "ceiling did not start");
        std::thread::sleep(Duration::from_millis(5));
    }
    Server { name: "ceiling", child, addr, started_in: started.elapsed() }
}

/// Builds ../shared/ceiling (release) under our target directory; None when it is not there.
fn build_ceiling() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = root.join("../shared/ceiling/Cargo.toml");
    if !manifest.exists() {
        return None;
    }
    let target = root.join("target/ceiling");
    eprintln!("building ceiling ({}) ...", manifest.display());
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target)
        .status()
        .ok()?;
    if !status.success() {
        eprintln!("ceiling did not build; continuing with copilot alone");
        return None;
    }
    Some(target.join("release/ceiling"))
}

// ------------------------------------------------------------------------------------ seeding

fn open(db: &Path) -> Connection {
    let c = Connection::open(db).expect("open database");
    c.busy_timeout(Duration::from_secs(5)).unwrap();
    c.pragma_update(None, "journal_mode", "WAL").unwrap();
    c.pragma_update(None, "synchronous", "OFF").unwrap();
    c
}

/// What a seeded server needs the load to know.
struct Seeded {
    conversation_id: String,
}

/// The data set in copilot's own schema (after its first start applied migrations and created
/// `Default`): 100 members `user0..user99`, the benchmark user `bench` with the system `admin`
/// role, and a conversation of `bench` with 10,000 messages.
fn seed_copilot(db: &Path, bench_hash: &str) -> Seeded {
    let mut c = open(db);
    let tx = c.transaction().unwrap();
    let org: String = tx.query_row("SELECT id FROM organizations WHERE name = 'Default'", [], |r| r.get(0)).unwrap();
    let role = |name: &str| -> String {
        tx.query_row("SELECT id FROM roles WHERE organization_id = ?1 AND name = ?2", params![org, name], |r| r.get(0))
            .unwrap()
    };
    let (admin_role, member_role) = (role("admin"), role("member"));
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, \
                 is_active, is_superuser, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, 0, ?8, ?8)",
            )
            .unwrap();
        for i in 0..100 {
            let at = ts(i * 1_000_000);
            ins.execute(params![
                id(),
                org,
                member_role,
                format!("user{i}"),
                format!("user{i}@example.com"),
                format!("Member Number {i}"),
                bench_hash,
                at
            ])
            .unwrap();
        }
        ins.execute(params![
            id(),
            org,
            admin_role,
            "bench",
            "bench@example.com",
            "Bench Admin",
            bench_hash,
            ts(200_000_000)
        ])
        .unwrap();
    }
    let bench: String = tx.query_row("SELECT id FROM users WHERE username = 'bench'", [], |r| r.get(0)).unwrap();
    let conversation_id = id();
    tx.execute(
        "INSERT INTO conversations (id, user_id, organization_id, title, context, is_archived, is_active, \
         message_count, created_at, updated_at) VALUES (?1, ?2, ?3, 'benchmark', '{}', 0, 1, 0, ?4, ?4)",
        params![conversation_id, bench, org, ts(0)],
    )
    .unwrap();
    tx.commit().unwrap();
    add_copilot_messages(&mut c, &conversation_id, 0, 10_000);
    Seeded { conversation_id }
}

/// Appends messages `from..to` to a copilot conversation and counts them there.
fn add_copilot_messages(c: &mut Connection, conversation_id: &str, from: usize, to: usize) {
    let tx = c.transaction().unwrap();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO messages (id, conversation_id, role, content, metadata, is_active, created_at) \
                 VALUES (?1, ?2, ?3, ?4, '{}', 1, ?5)",
            )
            .unwrap();
        for i in from..to {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            ins.execute(params![id(), conversation_id, role, content(i), ts(1_000_000_000 + i as i64 * 1000)]).unwrap();
        }
    }
    tx.execute(
        "UPDATE conversations SET message_count = message_count + ?2 WHERE id = ?1",
        params![conversation_id, (to - from) as i64],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// Users that never match `search=user5` (no trigram in common with it), up to `total` users.
fn add_copilot_fillers(c: &mut Connection, from: usize, to: usize, hash: &str) {
    let tx = c.transaction().unwrap();
    {
        let (org, member): (String, String) = tx
            .query_row(
                "SELECT o.id, r.id FROM organizations o JOIN roles r ON r.organization_id = o.id \
                 WHERE o.name = 'Default' AND r.name = 'member'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let mut ins = tx
            .prepare(
                "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, \
                 is_active, is_superuser, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, 1, 0, ?7, ?7)",
            )
            .unwrap();
        for i in from..to {
            let at = ts(-1_000_000_000 - i as i64);
            ins.execute(params![id(), org, member, format!("person{i}"), format!("person{i}@example.org"), hash, at])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

/// The ceiling's schema, as the top of its main.rs declares it.
fn ceiling_schema() -> String {
    let src = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/ceiling/src/main.rs"))
        .expect("ceiling source");
    let start = src.find("const SCHEMA: &str = r#\"").expect("SCHEMA in ceiling") + "const SCHEMA: &str = r#\"".len();
    let end = start + src[start..].find("\"#;").expect("end of SCHEMA");
    src[start..end].to_string()
}

/// The same data set in the ceiling's schema.
fn seed_ceiling(db: &Path, bench_hash: &str) -> Seeded {
    let mut c = open(db);
    c.execute_batch(&ceiling_schema()).unwrap();
    let tx = c.transaction().unwrap();
    let org = id();
    tx.execute(
        "INSERT INTO organizations (id, name, created_at, updated_at) VALUES (?1, 'Default', ?2, ?2)",
        params![org, ts(0)],
    )
    .unwrap();
    let role = id();
    let names: Vec<&str> = copilot::authz::Permission::ALL.iter().map(|p| p.name()).collect();
    let perms = serde_json::to_string(&names).unwrap();
    tx.execute(
        "INSERT INTO roles (id, organization_id, name, permissions) VALUES (?1, ?2, 'admin', ?3)",
        params![role, org, perms],
    )
    .unwrap();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, \
                 is_active, is_superuser, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, 0, ?8, ?8)",
            )
            .unwrap();
        for i in 0..100 {
            ins.execute(params![
                id(),
                org,
                role,
                format!("user{i}"),
                format!("user{i}@example.com"),
                format!("Member Number {i}"),
                bench_hash,
                ts(i * 1_000_000)
            ])
            .unwrap();
        }
        ins.execute(params![id(), org, role, "bench", "bench@example.com", "Bench Admin", bench_hash, ts(200_000_000)])
            .unwrap();
    }
    let bench: String = tx.query_row("SELECT id FROM users WHERE username = 'bench'", [], |r| r.get(0)).unwrap();
    let conversation_id = id();
    tx.execute(
        "INSERT INTO conversations (id, user_id, organization_id, title, message_count, is_active, created_at, \
         updated_at) VALUES (?1, ?2, ?3, 'benchmark', 0, 1, ?4, ?4)",
        params![conversation_id, bench, org, ts(0)],
    )
    .unwrap();
    tx.commit().unwrap();
    add_ceiling_messages(&mut c, &conversation_id, 0, 10_000);
    Seeded { conversation_id }
}

fn add_ceiling_messages(c: &mut Connection, conversation_id: &str, from: usize, to: usize) {
    let tx = c.transaction().unwrap();
    {
        let mut ins = tx
            .prepare(
                "INSERT INTO messages (id, conversation_id, role, content, metadata, created_at) \
                 VALUES (?1, ?2, ?3, ?4, '{}', ?5)",
            )
            .unwrap();
        for i in from..to {
            let role = if i % 2 == 0 { "user" } else { "assistant" };
            ins.execute(params![id(), conversation_id, role, content(i), ts(1_000_000_000 + i as i64 * 1000)]).unwrap();
        }
    }
    tx.execute(
        "UPDATE conversations SET message_count = message_count + ?2 WHERE id = ?1",
        params![conversation_id, (to - from) as i64],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn add_ceiling_fillers(c: &mut Connection, from: usize, to: usize, hash: &str) {
    let tx = c.transaction().unwrap();
    {
        let (org, role): (String, String) = tx
            .query_row("SELECT organization_id, role_id FROM users WHERE username = 'bench'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let mut ins = tx
            .prepare(
                "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, \
                 is_active, is_superuser, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, NULL, ?6, 1, 0, ?7, ?7)",
            )
            .unwrap();
        for i in from..to {
            let at = ts(-1_000_000_000 - i as i64);
            ins.execute(params![id(), org, role, format!("person{i}"), format!("person{i}@example.org"), hash, at])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

// ------------------------------------------------------------------------------------ HTTP client

/// One keep-alive HTTP/1.1 connection with one request in flight.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    body: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream, buf: Vec::with_capacity(16 * 1024), body: Vec::new() })
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        self.buf.reserve(16 * 1024);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }

    /// Sends `req` (a complete request) and reads the answer: status, and the body in `self.body`
    /// when `keep_body`.
    async fn send(&mut self, req: &[u8], keep_body: bool) -> std::io::Result<u16> {
        self.stream.write_all(req).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(p) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(std::io::Error::other)?;
        let status: u16 =
            head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| std::io::Error::other("status"))?;
        let mut length = None;
        let mut chunked = false;
        for line in head.split("\r\n").skip(1) {
            let Some((k, v)) = line.split_once(':') else { continue };
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            } else if k.eq_ignore_ascii_case("transfer-encoding") && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
        self.body.clear();
        if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        break pos + p;
                    }
                    self.fill().await?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).map_err(std::io::Error::other)?;
                let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                    .map_err(std::io::Error::other)?;
                let data = line_end + 2;
                while self.buf.len() < data + size + 2 {
                    self.fill().await?;
                }
                if size == 0 {
                    break;
                }
                if keep_body {
                    self.body.extend_from_slice(&self.buf[data..data + size]);
                }
                pos = data + size + 2;
            }
        } else {
            let len = length.unwrap_or(0);
            while self.buf.len() < head_end + len {
                self.fill().await?;
            }
            if keep_body {
                self.body.extend_from_slice(&self.buf[head_end..head_end + len]);
            }
        }
        Ok(status)
    }
}

/// A complete HTTP/1.1 request, built once.
fn request(method: &str, addr: SocketAddr, path: &str, token: Option<&str>, body: Option<&str>) -> Arc<Vec<u8>> {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: application/json\r\n");
    if let Some(t) = token {
        r.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if let Some(b) = body {
        r.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()));
    } else {
        r.push_str("\r\n");
    }
    Arc::new(r.into_bytes())
}

/// One request on a fresh connection; status and JSON body.
async fn call(addr: SocketAddr, req: &[u8]) -> (u16, Value) {
    let mut c = Conn::connect(addr).await.expect("connect");
    let status = c.send(req, true).await.expect("request");
    (status, serde_json::from_slice(&c.body).unwrap_or(Value::Null))
}

// ------------------------------------------------------------------------------------ load

#[derive(Clone)]
struct LoadResult {
    requests: u64,
    errors: u64,
    secs: f64,
    hist: Histogram<u64>,
    /// Server CPU time per request, in microseconds (warm-up included in neither).
    cpu_us: Option<f64>,
}

impl LoadResult {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.secs
    }
    fn ms(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }
}

/// `connections` connections send `req` back to back; latencies of requests started after the
/// warm-up and before the end are recorded; any status other than `expect` is an error.
async fn load(
    addr: SocketAddr,
    req: Arc<Vec<u8>>,
    expect: u16,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    load_each(addr, Arc::new(vec![req]), expect, connections, warmup, duration).await
}

/// [`load`] with several requests: connection i sends requests i, i + 1, ... in turn.
async fn load_each(
    addr: SocketAddr,
    reqs: Arc<Vec<Arc<Vec<u8>>>>,
    expect: u16,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> LoadResult {
    let start = Instant::now();
    let (from, until) = (start + warmup, start + warmup + duration);
    let mut tasks = Vec::new();
    for c in 0..connections {
        let reqs = reqs.clone();
        tasks.push(tokio::spawn(async move {
            let mut turn = c;
            let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
            let (mut requests, mut errors) = (0u64, 0u64);
            let mut conn = None;
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                if conn.is_none() {
                    match Conn::connect(addr).await {
                        Ok(c) => conn = Some(c),
                        Err(_) => {
                            errors += u64::from(t0 >= from);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let req = &reqs[turn % reqs.len()];
                turn += 1;
                let result = conn.as_mut().unwrap().send(req, false).await;
                let measured = t0 >= from;
                match result {
                    Ok(status) => {
                        if measured {
                            requests += 1;
                            errors += u64::from(status != expect);
                            hist.saturating_record(t0.elapsed().as_micros() as u64);
                        }
                    }
                    Err(_) => {
                        errors += u64::from(measured);
                        conn = None;
                    }
                }
            }
            (hist, requests, errors)
        }));
    }
    let mut total = LoadResult {
        requests: 0,
        errors: 0,
        secs: duration.as_secs_f64(),
        hist: Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap(),
        cpu_us: None,
    };
    for t in tasks {
        let (h, r, e) = t.await.unwrap();
        total.hist.add(h).unwrap();
        total.requests += r;
        total.errors += e;
    }
    total
}

// ------------------------------------------------------------------------------------ scenarios

struct Scenario {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<String>,
    auth: bool,
    expect: u16,
    check: fn(&Value) -> bool,
}

fn scenarios(conversation_id: &str, hello_path: &str) -> Vec<Scenario> {
    let post_body = serde_json::json!({ "role": "user", "content": "x".repeat(200) }).to_string();
    let login_body = serde_json::json!({ "username": "bench", "password": BENCH_PASSWORD }).to_string();
    vec![
        Scenario {
            name: "status",
            method: "GET",
            path: hello_path.into(),
            body: None,
            auth: false,
            expect: 200,
            check: |v| v.is_object(),
        },
        Scenario {
            name: "auth_me",
            method: "GET",
            path: "/api/v1/auth/me".into(),
            body: None,
            auth: true,
            expect: 200,
            check: |v| {
                v["username"] == "bench"
                    && v["role"]["name"] == "admin"
                    && v["permissions"].as_array().map(Vec::len) == Some(13)
            },
        },
        Scenario {
            name: "messages_deep_page",
            method: "GET",
            path: format!("/api/v1/conversations/{conversation_id}/messages?skip=9000&limit=20"),
            body: None,
            auth: true,
            expect: 200,
            check: |v| {
                v["total"].as_i64().is_some_and(|t| t >= 10_000)
                    && v["data"].as_array().map(Vec::len) == Some(20)
                    && v["data"][0]["content"].as_str().is_some_and(|c| c.starts_with("message 9000: "))
                    && v["has_more"] == true
            },
        },
        Scenario {
            name: "users_search",
            method: "GET",
            path: "/api/v1/users?search=user5&limit=20".into(),
            body: None,
            auth: true,
            expect: 200,
            check: |v| {
                v["total"] == 11
                    && v["data"].as_array().is_some_and(|d| {
                        d.len() == 11
                            && d.iter().all(|u| u["username"].as_str().is_some_and(|n| n.starts_with("user5")))
                    })
            },
        },
        Scenario {
            name: "post_message",
            method: "POST",
            path: format!("/api/v1/conversations/{conversation_id}/messages"),
            body: Some(post_body),
            auth: true,
            expect: 201,
            check: |v| v["id"].is_string() && v["role"] == "user" && v["content"].as_str().map(str::len) == Some(200),
        },
        Scenario {
            name: "login",
            method: "POST",
            path: "/api/v1/auth/login".into(),
            body: Some(login_body),
            auth: false,
            expect: 200,
            check: |v| v["access_token"].is_string() && v["refresh_token"].is_string() && v["token_type"] == "bearer",
        },
    ]
}

/// Logins of one account in flight at once: each holds one of the lockout's 10 attempts until it
/// is answered (copilot reserves the attempt before hashing), so 32 at once would be mostly 429s.
const LOGIN_CONNECTIONS: usize = 8;

impl Scenario {
    fn connections(&self, default: usize) -> usize {
        if self.name == "login" { default.min(LOGIN_CONNECTIONS) } else { default }
    }
}

/// A server under test with what its scenarios need.
struct Target {
    server: Server,
    token: String,
    scenarios: Vec<Scenario>,
    db: PathBuf,
}

impl Target {
    fn req(&self, s: &Scenario) -> Arc<Vec<u8>> {
        request(s.method, self.server.addr, &s.path, s.auth.then_some(self.token.as_str()), s.body.as_deref())
    }

    /// The scenario's answer must have the expected status and shape before it is timed.
    async fn check(&self, s: &Scenario) {
        let (status, body) = call(self.server.addr, &self.req(s)).await;
        assert!(
            status == s.expect && (s.check)(&body),
            "{} {}: unexpected answer {status}: {}",
            self.server.name,
            s.name,
            body.to_string().chars().take(400).collect::<String>()
        );
    }
}

async fn login(addr: SocketAddr) -> String {
    let body = serde_json::json!({ "username": "bench", "password": BENCH_PASSWORD }).to_string();
    let (status, v) = call(addr, &request("POST", addr, "/api/v1/auth/login", None, Some(&body))).await;
    assert_eq!(status, 200, "login: {v}");
    v["access_token"].as_str().expect("access_token").to_string()
}

// ------------------------------------------------------------------------------------ report

fn main() {
    let opts = Opts::parse();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let ceiling_bin = if opts.ceiling { build_ceiling() } else { None };
    let mut tmp = tempfile::Builder::new().prefix("copilot-bench-").tempdir().expect("temp dir");
    if std::env::var_os("BENCH_KEEP").is_some() {
        tmp.disable_cleanup(true);
        println!("databases kept in {}", tmp.path().display());
    }

    println!(
        "copilot HTTP benchmark: {} connections, {:.1} s per scenario after {:.1} s warm-up, load generator: 1 thread",
        opts.connections,
        opts.duration.as_secs_f64(),
        opts.warmup.as_secs_f64()
    );

    // ---- seed
    let seed_started = Instant::now();
    let bench_hash = copilot::auth::password::hash_password(BENCH_PASSWORD, ITERATIONS).unwrap();
    let copilot_db = tmp.path().join("copilot.db");
    start_copilot(tmp.path(), &copilot_db).stop(); // first start: migrations and bootstrap
    let seeded = seed_copilot(&copilot_db, &bench_hash);
    if opts.backup_gb > 0.0 {
        grow_to(&copilot_db, opts.backup_gb);
    }
    // start-up on an existing database, three times, the median
    let mut startups: Vec<Duration> = (0..3)
        .map(|_| {
            let s = start_copilot(tmp.path(), &copilot_db);
            let t = s.started_in;
            s.stop();
            t
        })
        .collect();
    startups.sort();
    let copilot_server = start_copilot(tmp.path(), &copilot_db);
    let token = rt.block_on(login(copilot_server.addr));
    let copilot = Target {
        server: copilot_server,
        token,
        scenarios: scenarios(&seeded.conversation_id, "/api/v1/status"),
        db: copilot_db,
    };

    let ceiling = ceiling_bin.as_ref().map(|bin| {
        let out = Command::new(bin).args(["hash-password", BENCH_PASSWORD]).output().expect("ceiling hash-password");
        let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let db = tmp.path().join("ceiling.db");
        let seeded = seed_ceiling(&db, &hash);
        let server = start_ceiling(bin, &db);
        let token = rt.block_on(login(server.addr));
        Target { server, token, scenarios: scenarios(&seeded.conversation_id, "/hello"), db }
    });
    println!(
        "seeded in {:.1} s; copilot pid {}{}",
        seed_started.elapsed().as_secs_f64(),
        copilot.server.pid(),
        ceiling.as_ref().map(|c| format!(", ceiling pid {}", c.server.pid())).unwrap_or_default()
    );

    // ---- scenarios: copilot then ceiling, `repeat` times interleaved, so both see the same noise
    println!();
    println!(
        "{:<20} {:>10} {:>9} {:>9} {:>7} {:>8} | {:>10} {:>9} {:>9} {:>7} {:>8} | {:>6} {:>6}",
        "scenario",
        "copilot/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu µs",
        "ceiling/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "cpu µs",
        "req/s",
        "cpu"
    );
    let mut summary = Vec::new();
    for i in 0..copilot.scenarios.len() {
        if !opts.wants(copilot.scenarios[i].name) {
            continue;
        }
        let name = if i == 0 && ceiling.is_some() { "status (ceil: hello)" } else { copilot.scenarios[i].name };
        let mut runs = Vec::new();
        for _ in 0..opts.repeat {
            let mut pair = Vec::new();
            for t in std::iter::once(&copilot).chain(ceiling.as_ref()) {
                let s = &t.scenarios[i];
                rt.block_on(t.check(s));
                pair.push(rt.block_on(measure(t, s, &opts)));
            }
            print_row(name, &pair);
            runs.push(pair);
        }
        summary.push((name, runs));
    }
    if opts.repeat > 1 && ceiling.is_some() {
        print_summary(&summary);
    }
    if opts.postgres {
        postgres::run(&rt, &opts, &copilot, ceiling.as_ref(), &bench_hash);
    }

    // ---- /auth/me during a login storm
    if !opts.wants("storm") {
        return finish(&rt, &opts, copilot, ceiling, &bench_hash, &startups);
    }
    let storm = |t: &Target| -> (LoadResult, LoadResult, LoadResult) {
        let me = &t.scenarios[1];
        let lg = &t.scenarios[5];
        let half = (opts.connections / 2).max(1);
        let quiet = rt.block_on(load(t.server.addr, t.req(me), 200, half, opts.warmup, opts.duration));
        let (during, logins) = rt.block_on(async {
            tokio::join!(
                load(t.server.addr, t.req(me), 200, half, opts.warmup, opts.duration),
                load(t.server.addr, t.req(lg), 200, lg.connections(half), opts.warmup, opts.duration)
            )
        });
        (quiet, during, logins)
    };
    println!();
    println!(
        "/auth/me with {} connections, quiet vs during a login storm of {} more connections:",
        (opts.connections / 2).max(1),
        (opts.connections / 2).clamp(1, LOGIN_CONNECTIONS)
    );
    for t in std::iter::once(&copilot).chain(ceiling.as_ref()) {
        let (quiet, during, logins) = storm(t);
        println!(
            "  {:<8} quiet p99 {:>8.2} ms ({:>7.0}/s) | storm p99 {:>8.2} ms ({:>7.0}/s, {} errors) | storm/quiet p99 {:.2}x | logins meanwhile {:.0}/s, {} errors",
            t.server.name,
            quiet.ms(0.99),
            quiet.rps(),
            during.ms(0.99),
            during.rps(),
            during.errors,
            during.ms(0.99) / quiet.ms(0.99),
            logins.rps(),
            logins.errors
        );
    }

    finish(&rt, &opts, copilot, ceiling, &bench_hash, &startups);
}

impl Opts {
    fn wants(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

fn finish(
    rt: &tokio::runtime::Runtime,
    opts: &Opts,
    copilot: Target,
    ceiling: Option<Target>,
    bench_hash: &str,
    startups: &[Duration],
) {
    // ---- memory and start-up
    println!();
    for t in std::iter::once(&copilot).chain(ceiling.as_ref()) {
        println!("  {:<8} peak memory (VmHWM) {:>7.1} MiB", t.server.name, t.server.peak_kib() as f64 / 1024.0);
    }
    println!(
        "  copilot  start-up on an existing database (spawn to `Ready.`): median {:.1} ms of {:?}",
        startups[1].as_secs_f64() * 1000.0,
        startups.iter().map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0)).collect::<Vec<_>>()
    );
    if let Some(c) = &ceiling {
        println!(
            "  ceiling  start-up (spawn to accepting; includes one 600k PBKDF2 hash): {:.1} ms",
            c.server.started_in.as_secs_f64() * 1000.0
        );
    }

    // ---- copilot alone: the scenarios the ceiling has no equivalent of (alone.rs)
    let alone = alone::run(opts, tmp_dir_of(&copilot.db), bench_hash);
    if !alone.is_empty() {
        alone.print_summary();
    }

    if opts.backup_gb > 0.0 && opts.wants("backup") {
        rt.block_on(backup_stall(&copilot, tmp_dir_of(&copilot.db)));
    }

    // ---- growth
    if opts.growth {
        growth(rt, opts, copilot, ceiling, bench_hash);
    } else {
        copilot.server.stop();
        if let Some(c) = ceiling {
            c.server.stop();
        }
    }
}

fn tmp_dir_of(db: &Path) -> &Path {
    db.parent().expect("the database lives in the temporary folder")
}

/// Adds documents with 1 MiB files (random bytes, made by SQLite) until the database file holds
/// about `gb` GB; they are `ready`, so the ingestion worker leaves them alone.
fn grow_to(db: &Path, gb: f64) {
    let started = Instant::now();
    let c = open(db);
    let org: String = c.query_row("SELECT id FROM organizations WHERE name = 'Default'", [], |r| r.get(0)).unwrap();
    let files = (gb * 1e9 / 1_048_576.0).ceil() as usize;
    for batch in 0..files.div_ceil(100) {
        c.execute_batch("BEGIN").unwrap();
        for i in batch * 100..((batch + 1) * 100).min(files) {
            let id = id();
            c.execute(
                "INSERT INTO documents (id, organization_id, title, filename, content_type, size_bytes, sha256, status, \
                 chunk_count, created_at, updated_at) VALUES (?1, ?2, ?3, ?3, 'text/plain', 1048576, ?1, 'ready', 0, ?4, ?4)",
                params![id, org, format!("filler-{i}.txt"), ts(i as i64)],
            )
            .unwrap();
            c.execute("INSERT INTO document_files (document_id, bytes) VALUES (?1, randomblob(1048576))", params![id])
                .unwrap();
        }
        c.execute_batch("COMMIT").unwrap();
    }
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).unwrap();
    // written with synchronous = OFF: flushed now, or the server's first fsync would pay for it
    std::fs::File::open(db).and_then(|f| f.sync_all()).unwrap();
    let size = std::fs::metadata(db).map(|m| m.len()).unwrap_or(0);
    println!("grew the database to {:.2} GB in {:.1} s", size as f64 / 1e9, started.elapsed().as_secs_f64());
}

/// Posts messages on 8 connections; 2 s in, `copilot backup` copies the live database. Prints
/// the backup's time and the longest write (and p99) before and while it ran.
async fn backup_stall(t: &Target, dir: &Path) {
    let s = t.scenarios.iter().find(|s| s.name == "post_message").expect("post_message scenario");
    let req = t.req(s);
    let addr = t.server.addr;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let epoch = Instant::now();
    let mut writers = vec![];
    for _ in 0..8 {
        let (req, stop) = (req.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.expect("connect");
            let mut timeline = vec![];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t0 = Instant::now();
                let status = conn.send(&req, false).await.expect("post");
                assert_eq!(status, 201);
                timeline.push((t0 - epoch, t0.elapsed()));
            }
            timeline
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let target = dir.join("bench-backup.db");
    let _ = std::fs::remove_file(&target);
    let began = epoch.elapsed();
    let (db, dir2, target2) = (t.db.clone(), dir.to_path_buf(), target.clone());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_copilot"))
            .arg("backup")
            .arg(&target2)
            .current_dir(dir2)
            .env("COPILOT_DATABASE__PATH", db)
            .output()
            .expect("copilot backup")
    })
    .await
    .unwrap();
    let ended = epoch.elapsed();
    assert!(out.status.success(), "backup failed: {}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut timeline = vec![];
    for w in writers {
        timeline.extend(w.await.unwrap());
    }
    let stats = |f: &dyn Fn(Duration, Duration) -> bool| {
        let mut l: Vec<Duration> = timeline.iter().filter(|(at, took)| f(*at, *took)).map(|(_, took)| *took).collect();
        l.sort();
        let p99 = l.get(l.len().saturating_sub(1) * 99 / 100).copied().unwrap_or_default();
        (l.len(), p99, l.last().copied().unwrap_or_default())
    };
    let before = stats(&|at, _| at < began);
    let during = stats(&|at, took| at + took > began && at < ended);
    let size = std::fs::metadata(&target).map(|m| m.len()).unwrap_or(0);
    let worst = timeline.iter().filter(|(at, took)| *at + *took > began && *at < ended).max_by_key(|(_, took)| *took);
    println!();
    println!(
        "backup of a {:.2} GB database under write load (post_message, 8 connections): {:.1} s",
        size as f64 / 1e9,
        (ended - began).as_secs_f64()
    );
    for (name, (n, p99, max)) in [("before", before), ("during", during)] {
        println!(
            "  writes {name:<6} the backup: {n:>6}, p99 {:>7.2} ms, longest {:>7.2} ms",
            p99.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
    }
    for line in String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains("backup:")) {
        println!("  {}", line.split("backup: ").nth(1).unwrap_or(line));
    }
    if let Some((at, _)) = worst {
        println!("  the longest write during it began {:.2} s into the backup", at.as_secs_f64() - began.as_secs_f64());
    }
    let _ = std::fs::remove_file(&target);
}

/// One timed load of a scenario, with the server's CPU time per request over the measured part.
async fn measure(t: &Target, s: &Scenario, opts: &Opts) -> LoadResult {
    let (addr, req) = (t.server.addr, t.req(s));
    // the warm-up runs on its own, so that the CPU counted is the measured requests' only
    let connections = s.connections(opts.connections);
    load(addr, req.clone(), s.expect, connections, Duration::ZERO, opts.warmup).await;
    let before = t.server.cpu();
    let mut r = load(addr, req, s.expect, connections, Duration::ZERO, opts.duration).await;
    let after = t.server.cpu();
    if let (Some(b), Some(a)) = (before, after)
        && r.requests > 0
    {
        r.cpu_us = Some((a - b).as_secs_f64() * 1e6 / r.requests as f64);
    }
    r
}

fn print_row(name: &str, pair: &[LoadResult]) {
    let cpu = |r: &LoadResult| r.cpu_us.map(|c| format!("{c:.1}")).unwrap_or_else(|| "-".into());
    let c = &pair[0];
    let mut line =
        format!("{name:<20} {:>10.0} {:>9.2} {:>9.2} {:>7} {:>8}", c.rps(), c.ms(0.5), c.ms(0.99), c.errors, cpu(c));
    if let Some(k) = pair.get(1) {
        let cpu_ratio = match (c.cpu_us, k.cpu_us) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}x", b / a),
            _ => "-".into(),
        };
        line.push_str(&format!(
            " | {:>10.0} {:>9.2} {:>9.2} {:>7} {:>8} | {:>5.2}x {:>6}",
            k.rps(),
            k.ms(0.5),
            k.ms(0.99),
            k.errors,
            cpu(k),
            c.rps() / k.rps(),
            cpu_ratio
        ));
    }
    println!("{line}");
}

/// Per scenario, the median of the interleaved runs' ratios and their spread (min..max). The
/// CPU ratio is the ceiling's CPU time per request over copilot's: 1.0 is as efficient, above
/// is better. A spread wider than 20 % of the median says the runs cannot tell such a difference.
fn print_summary(summary: &[(&str, Vec<Vec<LoadResult>>)]) {
    fn stats(v: Vec<f64>) -> Option<(f64, f64, f64)> {
        (!v.is_empty()).then(|| median_spread(v))
    }
    println!();
    println!(
        "medians of {} interleaved runs (copilot ÷ ceiling; cpu: ceiling cpu/request ÷ copilot's)",
        summary[0].1.len()
    );
    println!(
        "{:<20} {:>8} {:>15} {:>8} {:>15} {:>10} {:>10}  verdict",
        "scenario", "cpu", "cpu spread", "req/s", "req/s spread", "p50 ms", "p99 ms"
    );
    for (name, runs) in summary {
        let cpu = stats(
            runs.iter()
                .filter_map(|p| match (p[0].cpu_us, p[1].cpu_us) {
                    (Some(a), Some(b)) if a > 0.0 => Some(b / a),
                    _ => None,
                })
                .collect(),
        );
        let rps = stats(runs.iter().map(|p| p[0].rps() / p[1].rps()).collect()).expect("runs");
        let p50 = stats(runs.iter().map(|p| p[0].ms(0.5)).collect()).expect("runs").0;
        let p99 = stats(runs.iter().map(|p| p[0].ms(0.99)).collect()).expect("runs").0;
        let (cpu_text, spread_text, verdict) = match cpu {
            Some((m, lo, hi)) => {
                let wide = (hi - lo) / m > 0.2;
                let verdict = if wide {
                    "spread too wide to conclude"
                } else if m >= 0.9 {
                    ">= 0.9: ok"
                } else {
                    "< 0.9"
                };
                (format!("{m:.2}x"), format!("{lo:.2}..{hi:.2}"), verdict)
            }
            None => ("-".into(), "-".into(), "no CPU figures"),
        };
        println!(
            "{name:<20} {cpu_text:>8} {spread_text:>15} {:>7.2}x {:>15} {p50:>10.2} {p99:>10.2}  {verdict}",
            rps.0,
            format!("{:.2}..{:.2}", rps.1, rps.2)
        );
    }
}

/// Deep page (skip=9000) of a conversation of N messages and `search=user5` (11 matches) among
/// N users, N = 10k, 100k, 1M; latency relative to N = 10k.
fn growth(rt: &tokio::runtime::Runtime, opts: &Opts, copilot: Target, ceiling: Option<Target>, hash: &str) {
    println!();
    println!(
        "growth: deep page (skip=9000, limit=20) of an N-message conversation, search=user5 (11 matches) among N users"
    );
    let mut targets: Vec<Target> = std::iter::once(copilot).chain(ceiling).collect();
    let mut base: Vec<Option<(f64, f64)>> = vec![None; targets.len() * 2];
    let mut have_msgs = vec![0usize; targets.len()];
    let mut have_users = vec![101usize; targets.len()];
    // the conversation grown here is the benchmark one (posts may have added to it)
    for (k, t) in targets.iter().enumerate() {
        let c = open(&t.db);
        have_msgs[k] = c.query_row("SELECT count(*) FROM messages", [], |r| r.get::<_, i64>(0)).unwrap() as usize;
    }
    println!(
        "{:<8} {:>9} {:<18} {:>9} {:>9} {:>9} {:>8}",
        "server", "N", "scenario", "req/s", "p50 ms", "p99 ms", "p50 ×10k"
    );
    for n in [10_000usize, 100_000, 1_000_000] {
        for (k, t) in targets.iter_mut().enumerate() {
            let seed = Instant::now();
            let conversation_id = t.scenarios[2].path.split('/').nth(4).unwrap().to_string();
            {
                let mut c = open(&t.db);
                let is_copilot = t.server.name == "copilot";
                if have_msgs[k] < n {
                    if is_copilot {
                        add_copilot_messages(&mut c, &conversation_id, have_msgs[k], n);
                    } else {
                        add_ceiling_messages(&mut c, &conversation_id, have_msgs[k], n);
                    }
                    have_msgs[k] = n;
                }
                if have_users[k] < n {
                    if is_copilot {
                        add_copilot_fillers(&mut c, have_users[k], n, hash);
                    } else {
                        add_ceiling_fillers(&mut c, have_users[k], n, hash);
                    }
                    have_users[k] = n;
                }
                let _ = c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);");
            }
            eprintln!("  ({} seeded to N = {n} in {:.1} s)", t.server.name, seed.elapsed().as_secs_f64());
            for (j, idx) in [2usize, 3].into_iter().enumerate() {
                let s = &t.scenarios[idx];
                rt.block_on(t.check(s));
                let r =
                    rt.block_on(load(t.server.addr, t.req(s), s.expect, opts.connections, opts.warmup, opts.duration));
                let slot = &mut base[k * 2 + j];
                let b = *slot.get_or_insert((r.ms(0.5), r.ms(0.99)));
                println!(
                    "{:<8} {:>9} {:<18} {:>9.0} {:>9.2} {:>9.2} {:>7.2}x",
                    t.server.name,
                    n,
                    s.name,
                    r.rps(),
                    r.ms(0.5),
                    r.ms(0.99),
                    r.ms(0.5) / b.0
                );
            }
        }
    }
    for t in targets {
        println!("  {:<8} peak memory (VmHWM) {:>7.1} MiB", t.server.name, t.server.peak_kib() as f64 / 1024.0);
        t.server.stop();
    }
}
