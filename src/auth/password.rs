//! PBKDF2-HMAC-SHA256 password hashes in PHC format, computed on the blocking pool with a bound
//! on how many run at once, so a login storm cannot starve other requests.

use std::sync::Arc;

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
        Passwords { iterations, permits: Arc::new(Semaphore::new(max)), dummy: OnceCell::new() }
    }

    pub async fn hash(&self, password: String) -> ApiResult<String> {
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let iterations = self.iterations;
        blocking(move || hash_password(&password, iterations)).await
    }

    /// Checks `password` against `phc`; with `None` it does the same work and answers false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> ApiResult<bool> {
        let (phc, real) = match phc {
            Some(p) => (p, true),
            None => (self.dummy().await?, false),
        };
        let _permit = self.permits.acquire().await.map_err(ApiError::internal)?;
        let ok = blocking(move || Ok(verify_password(&password, &phc))).await?;
        Ok(ok && real)
    }

    async fn dummy(&self) -> ApiResult<String> {
        self.dummy.get_or_try_init(|| self.hash("not-a-real-password".into())).await.cloned()
    }
}

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
