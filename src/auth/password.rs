//! PBKDF2-HMAC-SHA256 password hashes in PHC format, computed off the async runtime on threads of
//! their own, at most one per core at once and at a lower CPU priority, so a login storm cannot
//! starve other requests.

use std::sync::{Arc, Mutex, mpsc};

use pbkdf2::{
    Algorithm, Params, Pbkdf2,
    password_hash::{PasswordHasher as _, PasswordVerifier as _},
    phc::PasswordHash,
};
use tokio::sync::{OnceCell, Semaphore};

use crate::{
    db::blocking,
    error::{ApiError, ApiResult},
};

pub struct Passwords {
    iterations: u32,
    permits: Arc<Semaphore>,
    threads: HashThreads,
    /// Verified against when no user matches, so both paths cost the same.
    dummy: OnceCell<String>,
}

impl Passwords {
    pub fn new(iterations: u32, max_concurrent: usize) -> Passwords {
        let max = if max_concurrent == 0 {
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
        } else {
            max_concurrent
        };
        Passwords {
            iterations,
            permits: Arc::new(Semaphore::new(max)),
            threads: HashThreads::start(max),
            dummy: OnceCell::new(),
        }
    }

    pub async fn hash(&self, password: String) -> ApiResult<String> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let iterations = self.iterations;
        self.threads.run(move || hash_password(&password, iterations)).await
    }

    /// Checks `password` against `phc`; with `None` it does the same work and answers false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> ApiResult<bool> {
        let (phc, real) = match phc {
            Some(p) => (p, true),
            None => (self.dummy().await?, false),
        };
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let ok = self.threads.run(move || Ok(verify_password(&password, &phc))).await?;
        Ok(ok && real)
    }

    async fn dummy(&self) -> ApiResult<String> {
        self.dummy.get_or_try_init(|| self.hash("not-a-real-password".into())).await.cloned()
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// Threads that only hash. Each runs at nice 19, so the scheduler prefers the request threads
/// when both want the CPU: during a login storm other requests keep their latency, and when
/// nothing else runs the hashes get whole cores. (The blocking pool cannot be used for this: an
/// unprivileged thread cannot raise its priority back for the database work that pool also does.)
/// The price: while request work keeps every core busy, logins wait (README, Performance).
struct HashThreads {
    /// `None` when no thread could be started: then hashes go to the blocking pool.
    jobs: Option<mpsc::Sender<Job>>,
}

impl HashThreads {
    fn start(n: usize) -> HashThreads {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut started = 0;
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new().name(format!("copilot-hash-{i}")).spawn(move || {
                lower_priority();
                loop {
                    // the lock is held while waiting, by one idle thread at a time
                    let job = match rx.lock() {
                        Ok(rx) => rx.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // `Passwords` dropped
                    }
                }
            });
            started += usize::from(spawned.is_ok());
        }
        HashThreads { jobs: (started > 0).then_some(tx) }
    }

    async fn run<T: Send + 'static>(&self, f: impl FnOnce() -> ApiResult<T> + Send + 'static) -> ApiResult<T> {
        let Some(jobs) = &self.jobs else { return blocking(f).await };
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)));
        });
        jobs.send(job).map_err(|_| ApiError::internal("password hashing threads stopped"))?;
        match result.await {
            Ok(Ok(out)) => out,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(_) => Err(ApiError::internal("password hashing thread stopped")),
        }
    }
}

/// Nice 19 for the calling thread (on Linux the nice value is per thread); best effort.
#[cfg(target_os = "linux")]
fn lower_priority() {
    unsafe extern "C" {
        fn setpriority(which: i32, who: u32, prio: i32) -> i32;
    }
    // PRIO_PROCESS = 0; who = 0: the calling thread
    // SAFETY: a plain system call on the current thread, no memory is passed.
    unsafe {
        setpriority(0, 0, 19);
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

pub fn hash_password(password: &str, iterations: u32) -> ApiResult<String> {
    let params = Params::new(iterations).map_err(ApiError::internal)?;
    Pbkdf2::new(Algorithm::Pbkdf2Sha256, params)
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(ApiError::internal)
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).map(|h| Pbkdf2::default().verify_password(password.as_bytes(), &h).is_ok()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phc_round_trip_with_salt() {
        let a = hash_password("correct horse", 1000).unwrap();
        let b = hash_password("correct horse", 1000).unwrap();
        assert!(a.starts_with("$pbkdf2-sha256$i=1000"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong horse", &a));
        assert!(!verify_password("x", "not a phc string"));
    }
}
