//! Spawns a real server per test on a fresh temporary database, and speaks HTTP to it.
#![allow(dead_code)]

use copilot::store::error::StoreResult;
use std::collections::HashMap;

use copilot::{AppState, config::Config};
use serde_json::{Value, json};

pub const ADMIN_USERNAME: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "password-123";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub state: AppState,
    _dir: tempfile::TempDir,
}

/// An HTTP answer: status, JSON body (or `Value::Null` when empty or not JSON), headers.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub headers: HashMap<String, String>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
    /// The error detail; panics when the body is not `{"detail": "..."}`.
    pub fn detail(&self) -> &str {
        self.body["detail"].as_str().unwrap_or_else(|| panic!("no detail in {:?}", self.body))
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {} {:?}", self.status, self.body)).to_string()
    }
}

/// A test configuration: cheap hashing, a known superuser password, a temporary database.
/// With `TEST_BACKEND=postgres` (tests/ops/postgres.sh runs the suite so), the database is a
/// fresh PostgreSQL database of its own on the cluster of the PG* variables instead of the
/// SQLite file (dropped with the [`TestApp`]).
pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.bind = "127.0.0.1:0".into();
    config.database.path = dir.join("copilot.db");
    config.auth.pbkdf2_iterations = 1000;
    config.bootstrap.admin_password = ADMIN_PASSWORD.into();
    if on_postgres() {
        config.database.url = postgres_database();
    }
    config
}

/// Whether this run serves from PostgreSQL (`TEST_BACKEND=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("TEST_BACKEND").is_ok_and(|v| v == "postgres")
}

/// The test databases of this process, by URL, dropped with their [`TestApp`].
static DATABASES: std::sync::Mutex<Vec<crate::postgres::TestDb>> = std::sync::Mutex::new(Vec::new());

/// A fresh PostgreSQL database; its URL. The synchronous client must not run on the test's
/// runtime: it connects from a thread of its own.
fn postgres_database() -> String {
    let db = std::thread::spawn(|| crate::postgres::test_db("http suite"))
        .join()
        .unwrap()
        .expect("TEST_BACKEND=postgres needs a cluster: PGHOST is not set (run tests/ops/postgres.sh)");
    let url = db.url.clone();
    DATABASES.lock().unwrap().push(db);
    url
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let url = &self.state.config.database.url;
        if url.is_empty() {
            return;
        }
        let mut all = DATABASES.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = all.iter().position(|d| &d.url == url) {
            let db = all.swap_remove(i);
            drop(all);
            let _ = std::thread::spawn(move || drop(db)).join();
        }
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(change: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    change(&mut config);
    spawn_on(dir, config).await
}

/// `AppState::open` off the runtime (PostgreSQL's synchronous client cannot connect inside it).
pub fn open_state(config: Config) -> Result<(AppState, copilot::Startup), String> {
    std::thread::spawn(move || AppState::open(config)).join().unwrap()
}

/// Starts a server on `config` (whose database lives in `dir`).
pub async fn spawn_on(dir: tempfile::TempDir, config: Config) -> TestApp {
    // TEST_LOG=1: the server's log in the test's output (for a failing test)
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt().with_test_writer().try_init();
    }
    // off the runtime: PostgreSQL's synchronous client cannot connect inside it
    let (state, _) = open_state(config).expect("app state");
    state.start_background();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("socket address");
    // the production server loop, with the configured connection limits
    tokio::spawn(copilot::serve_on(listener, state.clone(), std::future::pending()));
    TestApp { base: format!("http://{addr}"), client: reqwest::Client::new(), state, _dir: dir }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
            .collect();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp { status, body, headers }
    }

    fn with_token(&self, req: reqwest::RequestBuilder, token: Option<&str>) -> reqwest::RequestBuilder {
        match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    /// `GET /api/v1{path}`
    pub async fn get(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.with_token(self.client.get(self.url(&format!("/api/v1{path}"))), token)).await
    }

    /// `POST /api/v1{path}` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send(self.with_token(self.client.post(self.url(&format!("/api/v1{path}"))).json(&body), token)).await
    }

    /// `POST /api/v1{path}` without a body.
    pub async fn post_empty(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.with_token(self.client.post(self.url(&format!("/api/v1{path}"))), token)).await
    }

    /// `PUT /api/v1{path}` with a JSON body.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Resp {
        self.send(self.with_token(self.client.put(self.url(&format!("/api/v1{path}"))).json(&body), token)).await
    }

    /// `DELETE /api/v1{path}`
    pub async fn delete(&self, path: &str, token: Option<&str>) -> Resp {
        self.send(self.with_token(self.client.delete(self.url(&format!("/api/v1{path}"))), token)).await
    }

    /// Logs in and returns the whole token answer.
    pub async fn login_pair(&self, username: &str, password: &str) -> Value {
        let r = self.post("/auth/login", None, json!({"username": username, "password": password})).await;
        assert_eq!(r.status, 200, "login of {username}: {:?}", r.body);
        r.body
    }

    /// Logs in and returns the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        self.login_pair(username, password).await["access_token"].as_str().unwrap().to_string()
    }

    /// The bootstrap superuser's access token.
    pub async fn admin_token(&self) -> String {
        self.login(ADMIN_USERNAME, ADMIN_PASSWORD).await
    }

    /// Registers `username` (password [`PASSWORD`]) into `Default` as a member; returns the user.
    pub async fn register(&self, username: &str) -> Value {
        let r = self
            .post(
                "/auth/register",
                None,
                json!({"username": username, "email": format!("{username}@example.com"), "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status, 201, "register {username}: {:?}", r.body);
        r.body
    }

    /// Registers `username` and logs in; returns (user, access token).
    pub async fn member(&self, username: &str) -> (Value, String) {
        let user = self.register(username).await;
        let token = self.login(username, PASSWORD).await;
        (user, token)
    }
}

/// Direct set-up through the storage layer, for tests of one area that need rows of another.
impl TestApp {
    /// The SQLite database, for tests that look at or prepare rows with SQL (they run on SQLite
    /// only: under `TEST_BACKEND=postgres` this panics).
    pub fn db(&self) -> &copilot::db::Db {
        self.state.store.sqlite().expect("this test reads the SQLite file")
    }

    /// The id of the `Default` organization (the one registrations join).
    pub async fn default_org_id(&self) -> String {
        self.state
            .store
            .read(|c| StoreResult::Ok(copilot::store::bootstrap::registration_org_id(c)?.expect("Default org")))
            .await
            .unwrap()
    }

    /// A new organization with its system roles; returns its id.
    pub async fn create_org(&self, name: &str) -> String {
        let name = name.to_string();
        self.state
            .store
            .write(move |c| -> StoreResult<_> {
                let org = copilot::store::organizations::NewOrg {
                    id: copilot::db::new_id(),
                    name,
                    domain: None,
                    description: None,
                    settings: "{}".into(),
                    now: copilot::db::now(),
                };
                copilot::store::organizations::insert_org(c, &org)?;
                copilot::store::bootstrap::insert_system_roles(c, &org.id, &org.now)?;
                Ok(org.id)
            })
            .await
            .unwrap()
    }

    /// A custom role of `org_id` holding `permissions`; returns its id.
    pub async fn create_role(&self, org_id: &str, name: &str, permissions: &[&str]) -> String {
        let role = copilot::store::roles::NewRole {
            id: copilot::db::new_id(),
            organization_id: org_id.to_string(),
            name: name.to_string(),
            description: None,
            permissions: permissions.iter().map(|p| copilot::authz::Permission::from_name(p).expect(p)).collect(),
            now: copilot::db::now(),
        };
        self.state
            .store
            .write(move |tx| StoreResult::Ok(copilot::store::roles::insert_role(tx, &role)?.id))
            .await
            .unwrap()
    }

    /// A user of `org_id` holding the role named `role` (`admin`, `member` or a custom one),
    /// with password [`PASSWORD`]; returns (user id, access token).
    pub async fn create_user_in(&self, org_id: &str, username: &str, role: &str) -> (String, String) {
        let (org_id, uname, role) = (org_id.to_string(), username.to_string(), role.to_string());
        let hash = copilot::auth::password::hash_password(PASSWORD, 1000).unwrap();
        let id = self
            .state
            .store
            .write(move |c| -> StoreResult<_> {
                let role_id = copilot::store::users::role_id_by_name(c, &org_id, &role)?.expect("role exists");
                let user = copilot::store::users::insert_user(
                    c,
                    &copilot::store::users::NewUser {
                        id: copilot::db::new_id(),
                        organization_id: org_id,
                        role_id: Some(role_id),
                        email: format!("{uname}@example.com"),
                        username: uname,
                        full_name: None,
                        password_hash: hash,
                        is_superuser: false,
                        now: copilot::db::now(),
                    },
                )?;
                Ok(user.id)
            })
            .await
            .unwrap();
        let token = self.login(username, PASSWORD).await;
        (id, token)
    }
}

/// Test SQL on either backend, for tests that look at rows no endpoint shows: `?1`, `?2`… become
/// `$1`, `$2`… on PostgreSQL; every argument is text. Values come back as JSON, the same on both:
/// integers and booleans as numbers (SQLite's 0/1), timestamps in the API's text, NULL as null.
pub fn sql_rows(c: &mut copilot::store::conn::Conn, sql: &str, args: &[&str]) -> StoreResult<Vec<Vec<Value>>> {
    use copilot::store::conn::Conn;
    match c {
        Conn::Sqlite(c) => {
            let mut stmt = c.prepare(sql)?;
            let n = stmt.column_count();
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                (0..n)
                    .map(|i| {
                        Ok(match r.get_ref(i)? {
                            rusqlite::types::ValueRef::Null => Value::Null,
                            rusqlite::types::ValueRef::Integer(v) => json!(v),
                            rusqlite::types::ValueRef::Real(v) => json!(v),
                            rusqlite::types::ValueRef::Text(t) => json!(String::from_utf8_lossy(t)),
                            rusqlite::types::ValueRef::Blob(b) => json!(b.len()),
                        })
                    })
                    .collect::<rusqlite::Result<Vec<Value>>>()
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        }
        Conn::Postgres(t) => {
            let (pg_sql, params) = pg_statement(sql, args);
            let rows = t.query(pg_sql.as_str(), &params)?;
            let mut out = Vec::new();
            for row in rows {
                let mut values = Vec::new();
                for (i, col) in row.columns().iter().enumerate() {
                    use postgres::types::Type;
                    let ty = col.type_();
                    values.push(if *ty == Type::INT8 {
                        json!(row.try_get::<_, Option<i64>>(i)?)
                    } else if *ty == Type::INT4 {
                        json!(row.try_get::<_, Option<i32>>(i)?)
                    } else if *ty == Type::BOOL {
                        json!(row.try_get::<_, Option<bool>>(i)?.map(i64::from))
                    } else if *ty == Type::FLOAT8 {
                        json!(row.try_get::<_, Option<f64>>(i)?)
                    } else if *ty == Type::TIMESTAMPTZ {
                        json!(row.try_get::<_, Option<time::OffsetDateTime>>(i)?.map(copilot::db::format_ts))
                    } else if *ty == Type::BYTEA {
                        json!(row.try_get::<_, Option<Vec<u8>>>(i)?.map(|b| b.len()))
                    } else if *ty == Type::NUMERIC {
                        return Err(copilot::store::error::StoreError::internal("cast NUMERIC to bigint in test SQL"));
                    } else {
                        json!(row.try_get::<_, Option<String>>(i)?)
                    });
                }
                out.push(values);
            }
            Ok(out)
        }
    }
}

/// Test SQL for PostgreSQL: `?N` placeholders as `$N` (the highest first, so `?1` does not
/// eat `?10`), and the text arguments as its parameters.
fn pg_statement<'a>(sql: &str, args: &'a [&'a str]) -> (String, Vec<&'a (dyn postgres::types::ToSql + Sync)>) {
    let mut pg_sql = sql.to_string();
    for i in (1..=args.len().max(9)).rev() {
        pg_sql = pg_sql.replace(&format!("?{i}"), &format!("${i}"));
    }
    (pg_sql, args.iter().map(|a| a as &(dyn postgres::types::ToSql + Sync)).collect())
}

/// The first column of the first row of [`sql_rows`], as an integer (a count).
pub fn sql_i64(c: &mut copilot::store::conn::Conn, sql: &str, args: &[&str]) -> StoreResult<i64> {
    let rows = sql_rows(c, sql, args)?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Value::as_i64).expect("an integer"))
}

/// Runs one statement of test SQL (see [`sql_rows`]) and returns the rows it changed.
pub fn sql_exec(c: &mut copilot::store::conn::Conn, sql: &str, args: &[&str]) -> StoreResult<u64> {
    use copilot::store::conn::Conn;
    match c {
        Conn::Sqlite(c) => Ok(c.execute(sql, rusqlite::params_from_iter(args.iter()))? as u64),
        Conn::Postgres(t) => {
            let (pg_sql, params) = pg_statement(sql, args);
            Ok(t.execute(pg_sql.as_str(), &params)?)
        }
    }
}
