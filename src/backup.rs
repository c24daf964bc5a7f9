//! `copilot backup PATH` and `copilot restore PATH` (SPEC §9), and the lock that tells them a
//! server is using the database.
//!
//! A backup copies the live database with SQLite's online backup API in one step: one read
//! transaction, so the copy is the snapshot of the moment it began (every write acknowledged
//! before it is there) and, in WAL mode, writers go on while it runs. It is written beside the
//! target, checked with `PRAGMA integrity_check`, synced, and only then renamed into place.
//!
//! A restore refuses while a server holds the database's lock file (`<db>.lock`, an exclusive
//! `flock` that `copilot serve` keeps for its whole life), checks the backup the same way, keeps
//! the database it replaces (`<db>.before-restore-<time>`), and swaps the files atomically.

use std::{
    fs::{File, OpenOptions},
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use rusqlite::{Connection, OpenFlags, backup::Backup};

/// An exclusive lock on `<db>.lock`, held while a server (or a restore) uses the database.
pub struct DbLock {
    _file: File,
    pub path: PathBuf,
}

fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    name.into()
}

impl DbLock {
    /// Takes the lock or says who holds it. `what` names the holder in the lock file.
    pub fn acquire(db: &Path, what: &str) -> Result<DbLock, String> {
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        }
        let path = lock_path(db);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        // SAFETY: flock on a file descriptor this function owns; no memory is shared
        let rc = unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&file), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            let holder = holder.trim();
            return Err(format!(
                "{} is in use by {} (lock {}); stop it first",
                db.display(),
                if holder.is_empty() { "another process" } else { holder },
                path.display()
            ));
        }
        file.set_len(0).and_then(|_| writeln!(file, "{what} (pid {})", std::process::id())).ok();
        Ok(DbLock { _file: file, path })
    }
}

/// What a backup or restore did.
#[derive(Debug)]
pub struct Report {
    pub bytes: u64,
    pub elapsed: Duration,
    /// The database a restore replaced, kept beside it.
    pub kept: Option<PathBuf>,
}

fn open_checked(path: &Path, flags: OpenFlags) -> Result<Connection, String> {
    crate::db::register_sqlite_vec()?;
    let c = Connection::open_with_flags(path, flags).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    c.busy_timeout(Duration::from_secs(30)).map_err(|e| e.to_string())?;
    Ok(c)
}

/// `PRAGMA integrity_check` says "ok", and the file is a copilot database.
fn check(path: &Path) -> Result<(), String> {
    let c = open_checked(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let result: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("{}: integrity_check failed: {e}", path.display()))?;
    if result != ["ok"] {
        return Err(format!("{}: integrity_check: {}", path.display(), result.join("; ")));
    }
    let migrated: i64 = c
        .query_row("SELECT COUNT(*) FROM refinery_schema_history", [], |r| r.get(0))
        .map_err(|_| format!("{} is not a copilot database (no migration history)", path.display()))?;
    if migrated == 0 {
        return Err(format!("{} is not a copilot database (no migration applied)", path.display()));
    }
    Ok(())
}

fn sync_dir(path: &Path) {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()).and_then(|dir| File::open(dir).ok()) {
        d.sync_all().ok();
    }
}

fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

/// Creates `path` empty and readable by its owner only (a database holds secrets).
fn create_private(path: &Path) -> Result<(), String> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// Starts the kernel's writeback of a file every 100 ms (`sync_file_range`, which does not
/// wait), until dropped.
struct Flusher {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flusher {
    fn start(path: &Path) -> Option<Flusher> {
        let file = OpenOptions::new().write(true).open(path).ok()?;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: a valid descriptor owned by this thread; the call only starts writeback
                unsafe {
                    libc::sync_file_range(std::os::fd::AsRawFd::as_raw_fd(&file), 0, 0, libc::SYNC_FILE_RANGE_WRITE)
                };
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Some(Flusher { stop, thread: Some(thread) })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes a checked copy of the database `db` to `target` while a server may be serving it.
pub fn backup(db: &Path, target: &Path) -> Result<Report, String> {
    let started = Instant::now();
    if !db.exists() {
        return Err(format!("{} does not exist", db.display()));
    }
    if target.exists() {
        return Err(format!("{} exists; choose a new path", target.display()));
    }
    let tmp = sibling(target, ".partial");
    let _ = std::fs::remove_file(&tmp);
    create_private(&tmp)?;
    let result: Result<(), String> = (|| {
        // read-write only so that SQLite may open the WAL index; nothing is written to it
        let src = open_checked(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        let mut dst = open_checked(&tmp, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        {
            let b = Backup::new(&src, &mut dst).map_err(|e| format!("cannot start the backup: {e}"))?;
            // the copy's pages go to disk as they are written, not in one burst at the end that
            // would queue the server's own fsync behind a gigabyte of writeback
            let _flusher = Flusher::start(&tmp);
            // all pages in one step: one read transaction, so no restart when the server writes
            b.step(-1).map_err(|e| format!("backup failed: {e}"))?;
        }
        tracing::info!(ms = started.elapsed().as_millis() as u64, "backup: pages copied");
        // the copy stands alone: no WAL beside it
        dst.pragma_update(None, "journal_mode", "DELETE").map_err(|e| e.to_string())?;
        drop(dst);
        check(&tmp)?;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "backup: integrity_check ok");
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(|e| e.to_string())?;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "backup: synced");
        std::fs::rename(&tmp, target).map_err(|e| format!("cannot move the copy to {}: {e}", target.display()))?;
        sync_dir(target);
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    let bytes = std::fs::metadata(target).map(|m| m.len()).unwrap_or_default();
    Ok(Report { bytes, elapsed: started.elapsed(), kept: None })
}

/// Puts the backup `source` in place of the database `db`; refuses while a server holds it.
pub fn restore(db: &Path, source: &Path) -> Result<Report, String> {
    let started = Instant::now();
    if source.canonicalize().ok().is_some_and(|s| db.canonicalize().ok() == Some(s)) {
        return Err(format!("{} is the database itself", source.display()));
    }
    check(source)?;
    let _lock = DbLock::acquire(db, "copilot restore")?;
    let tmp = sibling(db, ".restoring");
    let _ = std::fs::remove_file(&tmp);
    create_private(&tmp)?;
    let copied = std::fs::copy(source, &tmp)
        .and_then(|n| File::open(&tmp).and_then(|f| f.sync_all()).map(|_| n))
        .map_err(|e| format!("cannot copy {}: {e}", source.display()));
    let bytes = match copied {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // the database being replaced is kept whole: its WAL folded in first
    let kept = if db.exists() {
        let c = open_checked(db, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).map_err(|e| e.to_string())?;
        c.pragma_update(None, "journal_mode", "DELETE").map_err(|e| e.to_string())?;
        drop(c);
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        let kept = sibling(db, &format!(".before-restore-{stamp}"));
        std::fs::rename(db, &kept).map_err(|e| format!("cannot move {} aside: {e}", db.display()))?;
        Some(kept)
    } else {
        None
    };
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sibling(db, suffix));
    }
    std::fs::rename(&tmp, db).map_err(|e| format!("cannot move the backup into place: {e}"))?;
    sync_dir(db);
    Ok(Report { bytes, elapsed: started.elapsed(), kept })
}
