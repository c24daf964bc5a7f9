//! The `copilot` binary itself: --version, --help, configuration errors, start-up banner,
//! graceful shutdown on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_copilot");

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("copilot {}", env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("serve") && help.contains("--config") && help.contains("--version"), "{help}");
}

#[test]
fn configuration_errors_name_the_key_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[server]\nbind = \"127.0.0.1:0\"\nbindd = 1\n").unwrap();
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bindd") && err.contains("bad.toml"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    std::fs::write(&path, "").unwrap();
    let out = Command::new(BIN)
        .args(["--config"])
        .arg(&path)
        .env("COPILOT_AUTH__ACCESS_TOKEN_TTL_MINUTES", "soon")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("COPILOT_AUTH__ACCESS_TOKEN_TTL_MINUTES"), "{err}");
}

/// Starts the binary on a free port; returns the child, the base URL it printed and what it
/// printed up to `Ready.`.
pub fn start(dir: &std::path::Path, envs: &[(&str, &str)]) -> (std::process::Child, String, Vec<String>) {
    start_with(dir, "", envs)
}

/// [`start`], with `more` (TOML sections) after the `[server]` and `[auth]` of the test config.
pub fn start_with(
    dir: &std::path::Path,
    more: &str,
    envs: &[(&str, &str)],
) -> (std::process::Child, String, Vec<String>) {
    let config = dir.join("copilot.toml");
    let toml = format!("[server]\nbind = \"127.0.0.1:0\"\n[auth]\npbkdf2_iterations = 1000\n{more}");
    std::fs::write(&config, toml).unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .envs(envs.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // what it says on stderr, for the message of a start that fails
    let said = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (stderr, log) = (child.stderr.take().unwrap(), said.clone());
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().unwrap().push(line);
        }
    });
    // read the banner on a thread, so a server that never gets ready fails the test instead of hanging it
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = vec![];
    let mut base = String::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(60)) {
        if let Some(rest) = line.trim().strip_prefix(&format!("copilot {} listening on ", env!("CARGO_PKG_VERSION"))) {
            base = rest.to_string();
        }
        let ready = line.starts_with("Ready.");
        lines.push(line);
        if ready {
            break;
        }
    }
    if base.is_empty() {
        let status = child.try_wait().ok().flatten();
        std::thread::sleep(Duration::from_millis(200));
        panic!("no listening line in {lines:?}; exit status {status:?}; stderr: {:?}", said.lock().unwrap());
    }
    (child, base, lines)
}

#[tokio::test]
async fn first_start_prints_the_url_and_a_generated_password_once() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base, lines) = start(dir.path(), &[]);
    let text = lines.join("\n");
    assert!(text.contains("username: admin"), "{text}");
    let password = lines.iter().find_map(|l| l.trim().strip_prefix("password: ")).expect("password line").to_string();
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(dir.path().join("copilot.db").exists(), "the database is created beside the config file");
    child.kill().unwrap();
    child.wait().unwrap();

    let (mut child, _, lines) = start(dir.path(), &[]);
    assert!(!lines.join("\n").contains("password:"), "the password is printed only once: {lines:?}");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let dir = tempfile::tempdir().unwrap();
    // an expensive hash makes the login request slow enough to be in flight; the hash threads
    // run at nice 19, so on a busy machine it may take long: the grace period covers that
    let (child, base, _) = start(
        dir.path(),
        &[
            ("COPILOT_BOOTSTRAP__ADMIN_PASSWORD", "admin-password-1"),
            ("COPILOT_AUTH__PBKDF2_ITERATIONS", "3000000"),
            ("COPILOT_SERVER__SHUTDOWN_TIMEOUT_SECONDS", "300"),
        ],
    );
    let client = reqwest::Client::new();
    let login = tokio::spawn({
        let url = format!("{base}/api/v1/auth/login");
        async move { client.post(url).json(&json!({"username": "admin", "password": "admin-password-1"})).send().await }
    });
    // long enough for the request to arrive on a busy machine, well before its hash is done
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let resp = login.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("access_token"));
    let status = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(status.success(), "exits cleanly: {status:?}");
}
