//! `copilot backup` and `copilot restore` on the real binary, while it serves under write load.

use std::{
    os::unix::fs::PermissionsExt,
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::cli::start;

const BIN: &str = env!("CARGO_BIN_EXE_copilot");
const PASSWORD: &str = "admin-password-1";

fn copilot(dir: &std::path::Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--config")
        .arg(dir.join("copilot.toml"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn project_names(db: &std::path::Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut s = c.prepare("SELECT name FROM projects").unwrap();
    s.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

async fn login(client: &reqwest::Client, base: &str) -> String {
    let r: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"username": "admin", "password": PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_backup_under_write_load_holds_every_acknowledged_write_and_restores() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base, _) = start(dir.path(), &[("COPILOT_BOOTSTRAP__ADMIN_PASSWORD", PASSWORD)]);
    let mut child = scopeguard(child);
    let client = reqwest::Client::new();
    let token = login(&client, &base).await;

    // writers: each acknowledged project name is recorded the moment its 201 arrives
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let mut writers = vec![];
    for w in 0..4 {
        let (client, base, token, acked, stop, longest) =
            (client.clone(), base.clone(), token.clone(), acked.clone(), stop.clone(), longest.clone());
        writers.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("w{w}-{i}");
                let t = Instant::now();
                let r = client
                    .post(format!("{base}/api/v1/projects"))
                    .bearer_auth(&token)
                    .json(&json!({"name": name, "description": "x".repeat(2000)}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 201);
                let took = t.elapsed();
                let mut l = longest.lock().unwrap();
                *l = (*l).max(took);
                drop(l);
                acked.lock().unwrap().push(name);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before: Vec<String> = acked.lock().unwrap().clone();
    assert!(before.len() > 20, "the load wrote little: {}", before.len());
    let backup = dir.path().join("backup.db");
    let d = dir.path().to_path_buf();
    let (ok, out) = tokio::task::spawn_blocking(move || copilot(&d, &["backup", "backup.db"])).await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("integrity_check: ok"), "{out}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let all: Vec<String> = acked.lock().unwrap().clone();
    println!(
        "writes: {} before the backup, {} in all; longest write {:?}",
        before.len(),
        all.len(),
        longest.lock().unwrap()
    );

    assert_eq!(std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777, 0o600);
    let copied = project_names(&backup);
    let missing: Vec<_> = before.iter().filter(|n| !copied.contains(n)).collect();
    assert!(missing.is_empty(), "acknowledged before the backup began but not in it: {missing:?}");
    assert!(copied.iter().all(|n| all.contains(n)), "only acknowledged writes");

    // a backup never overwrites; a restore and a second server are refused while one serves
    let (ok, out) = copilot(dir.path(), &["backup", "backup.db"]);
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = copilot(dir.path(), &["restore", "backup.db"]);
    assert!(!ok && out.contains("in use by copilot serve"), "{out}");
    let (ok, out) = copilot(dir.path(), &["serve"]);
    assert!(!ok && out.contains("in use by copilot serve"), "{out}");

    child.kill();
    let live = project_names(&dir.path().join("copilot.db"));
    assert!(all.iter().all(|n| live.contains(n)), "every acknowledged write is in the live database");
    // a file that is not a backup changes nothing
    std::fs::write(dir.path().join("junk.db"), b"not a database at all, not even close....").unwrap();
    let (ok, out) = copilot(dir.path(), &["restore", "junk.db"]);
    assert!(!ok, "{out}");
    assert_eq!(project_names(&dir.path().join("copilot.db")), live);

    let (ok, out) = copilot(dir.path(), &["restore", "backup.db"]);
    assert!(ok, "{out}");
    let kept = out.lines().find_map(|l| l.strip_prefix("The database it replaced is kept as ")).expect("kept line");
    let kept = std::path::PathBuf::from(kept.trim_end_matches('.'));
    assert_eq!(project_names(&kept), live, "the replaced database is kept whole");
    assert_eq!(project_names(&dir.path().join("copilot.db")), copied);

    // the restored database serves what the backup held
    let (child, base, _) = start(dir.path(), &[("COPILOT_BOOTSTRAP__ADMIN_PASSWORD", PASSWORD)]);
    let mut child = scopeguard(child);
    let token = login(&client, &base).await;
    let r: Value = client
        .get(format!("{base}/api/v1/projects?limit=1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["total"].as_u64().unwrap() as usize, copied.len(), "{r}");
    child.kill();
}

/// Kills the child when dropped (a failing assertion must not leave a server behind).
struct Guard(Option<std::process::Child>);
fn scopeguard(c: std::process::Child) -> Guard {
    Guard(Some(c))
}
impl Guard {
    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
impl Drop for Guard {
    fn drop(&mut self) {
        self.kill();
    }
}
