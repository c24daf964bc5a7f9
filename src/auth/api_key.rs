//! API keys: `cpk_` and 40 random letters and digits (238 bits). Only their SHA-256 is stored;
//! a request with one acts as the key's owner, limited to the key's permissions.

use rand::distr::{Alphanumeric, SampleString};
use sha2::{Digest, Sha256};

use crate::{
    AppState,
    authz::{self, CurrentUser},
    db,
    error::{ApiError, ApiResult},
    store,
};

pub const PREFIX: &str = "cpk_";

/// How stale `last_used_at` may get: a key in constant use costs one write a minute.
const TOUCH_AFTER: time::Duration = time::Duration::minutes(1);

/// A new key: shown once, then only its hash and prefix remain.
pub struct NewSecret {
    pub key: String,
    pub sha256: String,
    /// `cpk_` and the first 8 characters, for telling keys apart in lists.
    pub prefix: String,
}

pub fn generate() -> NewSecret {
    let key = format!("{PREFIX}{}", Alphanumeric.sample_string(&mut rand::rng(), 40));
    NewSecret { sha256: sha256(&key[PREFIX.len()..]), prefix: key[..PREFIX.len() + 8].to_string(), key }
}

fn sha256(secret: &str) -> String {
    Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The caller behind `secret` (the key without its prefix), or 401.
pub async fn authenticate(state: &AppState, secret: &str) -> ApiResult<CurrentUser> {
    let hash = sha256(secret);
    let now = db::now();
    let found = {
        let now = now.clone();
        state.store.lookup(move |c| store::api_keys::key_owner(c, &hash, &now)).await?
    };
    let k = found.ok_or_else(|| ApiError::unauthorized("Unknown, expired or revoked API key"))?;
    let stale = k.last_used_at.as_deref().is_none_or(|at| {
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
            .is_ok_and(|t| time::OffsetDateTime::now_utc() - t > TOUCH_AFTER)
    });
    if stale {
        let (writer, id) = (state.store.clone(), k.key_id.clone());
        // off the request's path: a failed touch only delays last_used_at
        tokio::spawn(async move {
            if let Err(e) = writer.write(move |c| store::api_keys::touch_key(c, &id, &now)).await {
                tracing::warn!(error = %e, "recording an API key's use failed");
            }
        });
    }
    Ok(authz::key_holder(k.owner, k.key_permissions, k.key_id))
}
