//! Sessions, failed-login records, the caller's current identity, and server settings.
//! All of it lives in SQLite, so several server processes on one database file agree.

use rusqlite::{Connection, OptionalExtension, params};

use crate::{
    authz::{CurrentUser, PermissionSet},
    store::error::StoreResult,
};

/// The user a login names, with what the login needs to decide.
pub struct LoginCandidate {
    pub id: String,
    pub username: String,
    pub organization_id: String,
    pub password_hash: String,
    pub is_active: bool,
    /// False when the user's organization is deactivated (never for a superuser).
    pub org_is_active: bool,
}

const CANDIDATE_SQL: &str = "SELECT u.id, u.username, u.organization_id, u.password_hash, u.is_active, \
                                    (u.is_superuser OR o.is_active) \
                             FROM users u JOIN organizations o ON o.id = u.organization_id";

fn candidate_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LoginCandidate> {
    Ok(LoginCandidate {
        id: r.get(0)?,
        username: r.get(1)?,
        organization_id: r.get(2)?,
        password_hash: r.get(3)?,
        is_active: r.get(4)?,
        org_is_active: r.get(5)?,
    })
}

/// By username or e-mail, regardless of letter case.
pub fn find_login_candidate(conn: &Connection, login: &str) -> StoreResult<Option<LoginCandidate>> {
    Ok(conn
        .prepare_cached(&format!("{CANDIDATE_SQL} WHERE u.username = ?1 OR u.email = ?1 LIMIT 1"))?
        .query_row([login], candidate_from_row)
        .optional()?)
}

pub fn candidate_by_id(conn: &Connection, user_id: &str) -> StoreResult<Option<LoginCandidate>> {
    Ok(conn
        .prepare_cached(&format!("{CANDIDATE_SQL} WHERE u.id = ?1"))?
        .query_row([user_id], candidate_from_row)
        .optional()?)
}

/// The outcome of [`reserve_attempt`].
pub enum Attempt {
    /// The attempt may check a password; it already counts as a failure (row `0`) until
    /// [`forget_attempt`] or [`clear_failures`] takes it back.
    Reserved(i64),
    /// The account is locked: `max` failures within the window, the oldest of them at this time.
    Locked(Option<String>),
}

/// Reserves one failed-login attempt of `account_key` before its password is checked, in the
/// caller's write transaction: of any burst, at most the attempts left in the window get through.
/// Failures older than `since` are dropped on the way; attempts while locked are not counted.
pub fn reserve_attempt(conn: &Connection, account_key: &str, now: &str, since: &str, max: u32) -> StoreResult<Attempt> {
    let (failures, oldest) = recent_failures(conn, account_key, since, max)?;
    if failures >= max {
        return Ok(Attempt::Locked(oldest));
    }
    record_failure(conn, account_key, now, since)?;
    Ok(Attempt::Reserved(conn.last_insert_rowid()))
}

/// Takes a reserved attempt back: it was not a failure.
pub fn forget_attempt(conn: &Connection, attempt: i64) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM login_failures WHERE rowid = ?1")?.execute([attempt])?;
    Ok(())
}

/// Deletes at most `limit` failed-login records older than `failures_before` and as many dead
/// sessions (expired, or revoked before `revoked_before`); returns how many rows went.
pub fn prune(
    conn: &Connection,
    failures_before: &str,
    now: &str,
    revoked_before: &str,
    limit: u32,
) -> StoreResult<usize> {
    let failures = conn
        .prepare_cached(
            "DELETE FROM login_failures WHERE rowid IN \
             (SELECT rowid FROM login_failures WHERE failed_at <= ?1 ORDER BY failed_at LIMIT ?2)",
        )?
        .execute(params![failures_before, limit])?;
    let expired = conn
        .prepare_cached("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= ?1 LIMIT ?2)")?
        .execute(params![now, limit])?;
    let revoked = conn
        .prepare_cached("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE revoked_at <= ?1 LIMIT ?2)")?
        .execute(params![revoked_before, limit])?;
    Ok(failures + expired + revoked)
}

/// Failures of `account_key` since `since`: how many, and the oldest of the newest `limit`.
fn recent_failures(
    conn: &Connection,
    account_key: &str,
    since: &str,
    limit: u32,
) -> StoreResult<(u32, Option<String>)> {
    let mut stmt = conn.prepare_cached(
        "SELECT failed_at FROM login_failures WHERE account_key = ?1 AND failed_at > ?2 \
         ORDER BY failed_at DESC LIMIT ?3",
    )?;
    let times: Vec<String> =
        stmt.query_map(params![account_key, since, limit], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok((times.len() as u32, times.last().cloned()))
}

fn record_failure(conn: &Connection, account_key: &str, now: &str, since: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM login_failures WHERE account_key = ?1 AND failed_at <= ?2")?
        .execute(params![account_key, since])?;
    conn.prepare_cached("INSERT INTO login_failures (account_key, failed_at) VALUES (?1, ?2)")?
        .execute(params![account_key, now])?;
    Ok(())
}

pub fn clear_failures(conn: &Connection, account_key: &str) -> StoreResult<()> {
    conn.prepare_cached("DELETE FROM login_failures WHERE account_key = ?1")?.execute([account_key])?;
    Ok(())
}

pub fn create_session(
    conn: &Connection,
    id: &str,
    user_id: &str,
    refresh_jti: &str,
    now: &str,
    expires_at: &str,
) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, user_id, refresh_jti, created_at, last_used_at, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
    )?
    .execute(params![id, user_id, refresh_jti, now, expires_at])?;
    Ok(())
}

pub enum Rotation {
    /// The presented refresh token was the current one; it is now replaced.
    Rotated,
    /// It was an earlier one: the session is now revoked.
    Reused,
    /// No live session for it (revoked, expired, unknown).
    Dead,
}

/// Replaces the session's refresh token id with `new_jti` if `presented_jti` is the current one;
/// a used one revokes the whole session.
pub fn rotate_refresh(
    conn: &Connection,
    sid: &str,
    user_id: &str,
    presented_jti: &str,
    new_jti: &str,
    now: &str,
) -> StoreResult<Rotation> {
    let row: Option<(String, Option<String>, String)> = conn
        .prepare_cached("SELECT refresh_jti, revoked_at, expires_at FROM sessions WHERE id = ?1 AND user_id = ?2")?
        .query_row(params![sid, user_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((current, revoked_at, expires_at)) = row else { return Ok(Rotation::Dead) };
    if revoked_at.is_some() || expires_at.as_str() <= now {
        return Ok(Rotation::Dead);
    }
    if current != presented_jti {
        revoke_session(conn, sid, "refresh token reused", now)?;
        return Ok(Rotation::Reused);
    }
    conn.prepare_cached("UPDATE sessions SET refresh_jti = ?2, last_used_at = ?3 WHERE id = ?1")?
        .execute(params![sid, new_jti, now])?;
    Ok(Rotation::Rotated)
}

pub fn revoke_session(conn: &Connection, sid: &str, reason: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
    )?
    .execute(params![sid, now, reason])?;
    Ok(())
}

/// Revokes every live session of the user, except `keep` when given.
pub fn revoke_user_sessions(
    conn: &Connection,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: &str,
) -> StoreResult<usize> {
    Ok(conn
        .prepare_cached(
            "UPDATE sessions SET revoked_at = ?3, revoked_reason = ?4 \
             WHERE user_id = ?1 AND revoked_at IS NULL AND (?2 IS NULL OR id <> ?2)",
        )?
        .execute(params![user_id, keep, now, reason])?)
}

/// The columns of a caller (user, role, permissions), read by [`caller_from_row`]; a query
/// selects them first and joins `users u` and `roles r`. A macro, so that the statements stay
/// `&'static str` (no formatting on the authentication path).
#[macro_export]
macro_rules! caller_cols {
    () => {
        "u.id, u.username, u.organization_id, u.role_id, r.name, r.is_system, u.is_superuser, \
         (SELECT group_concat(p.name) FROM role_permissions rp JOIN permissions p ON p.id = rp.permission_id \
           WHERE rp.role_id = u.role_id), \
         u.email, u.full_name, u.created_at, u.updated_at"
    };
}

/// The caller of a row that starts with [`caller_cols!`], without a session or key.
pub fn caller_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CurrentUser> {
    let perms: Option<String> = r.get(7)?;
    Ok(CurrentUser {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(8)?,
        full_name: r.get(9)?,
        organization_id: r.get(2)?,
        role_id: r.get(3)?,
        role_name: r.get(4)?,
        role_is_system: r.get::<_, Option<bool>>(5)?.unwrap_or(false),
        is_superuser: r.get(6)?,
        permissions: PermissionSet::from_csv(perms.as_deref()),
        session_id: String::new(),
        api_key_id: None,
        client: Default::default(),
        created_at: r.get(10)?,
        updated_at: r.get(11)?,
    })
}

/// The caller as the database says now: active user, live session, current role and permissions,
/// and the rest of the user row, so that `/auth/me` needs no second statement.
pub fn current_user(conn: &Connection, sid: &str, user_id: &str) -> StoreResult<Option<CurrentUser>> {
    let row = conn
        .prepare_cached(concat!(
            "SELECT ",
            caller_cols!(),
            " FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN roles r ON r.id = u.role_id \
             JOIN organizations o ON o.id = u.organization_id \
             WHERE s.id = ?1 AND s.user_id = ?2 AND s.revoked_at IS NULL AND u.is_active = 1 \
               AND (o.is_active = 1 OR u.is_superuser = 1)"
        ))?
        .query_row(params![sid, user_id], |r| Ok(CurrentUser { session_id: sid.to_string(), ..caller_from_row(r)? }))
        .optional()?;
    Ok(row)
}

pub fn get_setting(conn: &Connection, key: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT value FROM server_settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Stores `value` unless the key already has one; returns the value that is stored.
pub fn init_setting(conn: &Connection, key: &str, value: &str, now: &str) -> StoreResult<String> {
    conn.prepare_cached("INSERT OR IGNORE INTO server_settings (key, value, created_at) VALUES (?1, ?2, ?3)")?
        .execute(params![key, value, now])?;
    Ok(get_setting(conn, key)?.unwrap_or_default())
}
