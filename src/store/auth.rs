//! Sessions, failed-login records, the caller's current identity, and server settings, on both
//! backends (the layout of src/store/organizations.rs: pub functions dispatching once to the
//! private `sqlite` and `pg` twins below). All of it lives in the database, so several server
//! processes on one database agree.

use crate::{authz::CurrentUser, store::conn::Conn, store::error::StoreResult};

/// The SQLite reader of a row that starts with [`caller_cols!`], for the API keys' SQLite query;
/// [`pg::caller_from_row`] and [`pg::CALLER_COLS`] are its PostgreSQL twins.
pub use sqlite::caller_from_row;

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

/// By username or e-mail, regardless of letter case.
pub fn find_login_candidate(c: &mut Conn, login: &str) -> StoreResult<Option<LoginCandidate>> {
    match c {
        Conn::Sqlite(c) => sqlite::find_login_candidate(c, login),
        Conn::Postgres(t) => pg::find_login_candidate(t, login),
    }
}

pub fn candidate_by_id(c: &mut Conn, user_id: &str) -> StoreResult<Option<LoginCandidate>> {
    match c {
        Conn::Sqlite(c) => sqlite::candidate_by_id(c, user_id),
        Conn::Postgres(t) => pg::candidate_by_id(t, user_id),
    }
}

/// The outcome of [`reserve_attempt`].
pub enum Attempt {
    /// The attempt may check a password; it already counts as a failure until [`forget_attempt`]
    /// or [`clear_failures`] takes it back. Which record it is: SQLite, its `rowid`; PostgreSQL
    /// (whose table has no key), its time in microseconds since the Unix epoch.
    Reserved(i64),
    /// The account is locked: `max` failures within the window, the oldest of them at this time.
    Locked(Option<String>),
}

/// Reserves one failed-login attempt of `account_key` before its password is checked, in the
/// caller's write transaction: of any burst, at most the attempts left in the window get through.
/// Failures older than `since` are dropped on the way; attempts while locked are not counted.
/// (PostgreSQL: concurrent transactions reserve one account's attempts one after the other, under
/// a transaction-scoped advisory lock on the key, as SQLite's single writer does.)
pub fn reserve_attempt(c: &mut Conn, account_key: &str, now: &str, since: &str, max: u32) -> StoreResult<Attempt> {
    match c {
        Conn::Sqlite(c) => sqlite::reserve_attempt(c, account_key, now, since, max),
        Conn::Postgres(t) => pg::reserve_attempt(t, account_key, now, since, max),
    }
}

/// Takes the attempt of `account_key` reserved by [`reserve_attempt`] back: it was not a failure.
pub fn forget_attempt(c: &mut Conn, account_key: &str, attempt: i64) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::forget_attempt(c, attempt),
        Conn::Postgres(t) => pg::forget_attempt(t, account_key, attempt),
    }
}

/// Deletes at most `limit` failed-login records older than `failures_before` and as many dead
/// sessions (expired, or revoked before `revoked_before`); returns how many rows went.
pub fn prune(c: &mut Conn, failures_before: &str, now: &str, revoked_before: &str, limit: u32) -> StoreResult<usize> {
    match c {
        Conn::Sqlite(c) => sqlite::prune(c, failures_before, now, revoked_before, limit),
        Conn::Postgres(t) => pg::prune(t, failures_before, now, revoked_before, limit),
    }
}

pub fn clear_failures(c: &mut Conn, account_key: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::clear_failures(c, account_key),
        Conn::Postgres(t) => pg::clear_failures(t, account_key),
    }
}

pub fn create_session(
    c: &mut Conn,
    id: &str,
    user_id: &str,
    refresh_jti: &str,
    now: &str,
    expires_at: &str,
) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::create_session(c, id, user_id, refresh_jti, now, expires_at),
        Conn::Postgres(t) => pg::create_session(t, id, user_id, refresh_jti, now, expires_at),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The presented refresh token was the current one; it is now replaced.
    Rotated,
    /// It was an earlier one: the session is now revoked.
    Reused,
    /// No live session for it (revoked, expired, unknown).
    Dead,
}

/// Replaces the session's refresh token id with `new_jti` if `presented_jti` is the current one;
/// a used one revokes the whole session. (PostgreSQL: the session row is locked first, so two
/// concurrent refreshes with one token rotate once, as under SQLite's single writer.)
pub fn rotate_refresh(
    c: &mut Conn,
    sid: &str,
    user_id: &str,
    presented_jti: &str,
    new_jti: &str,
    now: &str,
) -> StoreResult<Rotation> {
    match c {
        Conn::Sqlite(c) => sqlite::rotate_refresh(c, sid, user_id, presented_jti, new_jti, now),
        Conn::Postgres(t) => pg::rotate_refresh(t, sid, user_id, presented_jti, new_jti, now),
    }
}

pub fn revoke_session(c: &mut Conn, sid: &str, reason: &str, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::revoke_session(c, sid, reason, now),
        Conn::Postgres(t) => pg::revoke_session(t, sid, reason, now),
    }
}

/// Revokes every live session of the user, except `keep` when given.
pub fn revoke_user_sessions(
    c: &mut Conn,
    user_id: &str,
    keep: Option<&str>,
    reason: &str,
    now: &str,
) -> StoreResult<usize> {
    match c {
        Conn::Sqlite(c) => sqlite::revoke_user_sessions(c, user_id, keep, reason, now),
        Conn::Postgres(t) => pg::revoke_user_sessions(t, user_id, keep, reason, now),
    }
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

/// The caller as the database says now: active user, live session, current role and permissions,
/// and the rest of the user row, so that `/auth/me` needs no second statement.
pub fn current_user(c: &mut Conn, sid: &str, user_id: &str) -> StoreResult<Option<CurrentUser>> {
    match c {
        Conn::Sqlite(c) => sqlite::current_user(c, sid, user_id),
        Conn::Postgres(t) => pg::current_user(t, sid, user_id),
    }
}

pub fn get_setting(c: &mut Conn, key: &str) -> StoreResult<Option<String>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_setting(c, key),
        Conn::Postgres(t) => pg::get_setting(t, key),
    }
}

/// Stores `value` unless the key already has one; returns the value that is stored.
pub fn init_setting(c: &mut Conn, key: &str, value: &str, now: &str) -> StoreResult<String> {
    match c {
        Conn::Sqlite(c) => sqlite::init_setting(c, key, value, now),
        Conn::Postgres(t) => pg::init_setting(t, key, value, now),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, params};

    use super::{Attempt, LoginCandidate, Rotation};
    use crate::{
        authz::{CurrentUser, PermissionSet},
        store::error::StoreResult,
    };

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
    pub(super) fn find_login_candidate(conn: &Connection, login: &str) -> StoreResult<Option<LoginCandidate>> {
        Ok(conn
            .prepare_cached(&format!("{CANDIDATE_SQL} WHERE u.username = ?1 OR u.email = ?1 LIMIT 1"))?
            .query_row([login], candidate_from_row)
            .optional()?)
    }

    pub(super) fn candidate_by_id(conn: &Connection, user_id: &str) -> StoreResult<Option<LoginCandidate>> {
        Ok(conn
            .prepare_cached(&format!("{CANDIDATE_SQL} WHERE u.id = ?1"))?
            .query_row([user_id], candidate_from_row)
            .optional()?)
    }

    /// Reserves one failed-login attempt of `account_key` before its password is checked, in the
    /// caller's write transaction: of any burst, at most the attempts left in the window get through.
    /// Failures older than `since` are dropped on the way; attempts while locked are not counted.
    pub(super) fn reserve_attempt(
        conn: &Connection,
        account_key: &str,
        now: &str,
        since: &str,
        max: u32,
    ) -> StoreResult<Attempt> {
        let (failures, oldest) = recent_failures(conn, account_key, since, max)?;
        if failures >= max {
            return Ok(Attempt::Locked(oldest));
        }
        record_failure(conn, account_key, now, since)?;
        Ok(Attempt::Reserved(conn.last_insert_rowid()))
    }

    /// Takes a reserved attempt back: it was not a failure.
    pub(super) fn forget_attempt(conn: &Connection, attempt: i64) -> StoreResult<()> {
        conn.prepare_cached("DELETE FROM login_failures WHERE rowid = ?1")?.execute([attempt])?;
        Ok(())
    }

    /// Deletes at most `limit` failed-login records older than `failures_before` and as many dead
    /// sessions (expired, or revoked before `revoked_before`); returns how many rows went.
    pub(super) fn prune(
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
            .prepare_cached(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= ?1 LIMIT ?2)",
            )?
            .execute(params![now, limit])?;
        let revoked = conn
            .prepare_cached(
                "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE revoked_at <= ?1 LIMIT ?2)",
            )?
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

    pub(super) fn clear_failures(conn: &Connection, account_key: &str) -> StoreResult<()> {
        conn.prepare_cached("DELETE FROM login_failures WHERE account_key = ?1")?.execute([account_key])?;
        Ok(())
    }

    pub(super) fn create_session(
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

    /// Replaces the session's refresh token id with `new_jti` if `presented_jti` is the current one;
    /// a used one revokes the whole session.
    pub(super) fn rotate_refresh(
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

    pub(super) fn revoke_session(conn: &Connection, sid: &str, reason: &str, now: &str) -> StoreResult<()> {
        conn.prepare_cached(
            "UPDATE sessions SET revoked_at = ?2, revoked_reason = ?3 WHERE id = ?1 AND revoked_at IS NULL",
        )?
        .execute(params![sid, now, reason])?;
        Ok(())
    }

    /// Revokes every live session of the user, except `keep` when given.
    pub(super) fn revoke_user_sessions(
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

    /// The caller of a row that starts with [`caller_cols!`](crate::caller_cols), without a session or key.
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
    pub(super) fn current_user(conn: &Connection, sid: &str, user_id: &str) -> StoreResult<Option<CurrentUser>> {
        let row = conn
            .prepare_cached(concat!(
                "SELECT ",
                caller_cols!(),
                " FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN roles r ON r.id = u.role_id \
                 JOIN organizations o ON o.id = u.organization_id \
                 WHERE s.id = ?1 AND s.user_id = ?2 AND s.revoked_at IS NULL AND u.is_active = 1 \
                   AND (o.is_active = 1 OR u.is_superuser = 1)"
            ))?
            .query_row(params![sid, user_id], |r| {
                Ok(CurrentUser { session_id: sid.to_string(), ..caller_from_row(r)? })
            })
            .optional()?;
        Ok(row)
    }

    pub(super) fn get_setting(conn: &Connection, key: &str) -> StoreResult<Option<String>> {
        Ok(conn
            .prepare_cached("SELECT value FROM server_settings WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    /// Stores `value` unless the key already has one; returns the value that is stored.
    pub(super) fn init_setting(conn: &Connection, key: &str, value: &str, now: &str) -> StoreResult<String> {
        conn.prepare_cached("INSERT OR IGNORE INTO server_settings (key, value, created_at) VALUES (?1, ?2, ?3)")?
            .execute(params![key, value, now])?;
        Ok(get_setting(conn, key)?.unwrap_or_default())
    }
}

pub mod pg {
    //! The PostgreSQL twins. `CALLER_COLS` and `caller_from_row` are public for the API keys'
    //! PostgreSQL query (the owner of that area joins `users u` and `roles r` the same way).

    use postgres::Row;

    use crate::pg::Transaction;

    use super::{Attempt, LoginCandidate, Rotation};
    use crate::{
        authz::{CurrentUser, PermissionSet},
        store::{
            conn::{pg_ts, pg_ts_col},
            error::StoreResult,
        },
    };

    const CANDIDATE_SQL: &str = "SELECT u.id, u.username, u.organization_id, u.password_hash, u.is_active, \
                                        (u.is_superuser OR o.is_active) \
                                 FROM users u JOIN organizations o ON o.id = u.organization_id";

    fn candidate_from_row(r: &Row) -> StoreResult<LoginCandidate> {
        Ok(LoginCandidate {
            id: r.try_get(0)?,
            username: r.try_get(1)?,
            organization_id: r.try_get(2)?,
            password_hash: r.try_get(3)?,
            is_active: r.try_get(4)?,
            org_is_active: r.try_get(5)?,
        })
    }

    // nocase() on both sides: SQLite's COLLATE NOCASE columns, answered by the unique indexes
    pub(super) fn find_login_candidate(t: &mut Transaction, login: &str) -> StoreResult<Option<LoginCandidate>> {
        let sql =
            format!("{CANDIDATE_SQL} WHERE nocase(u.username) = nocase($1) OR nocase(u.email) = nocase($1) LIMIT 1");
        t.query_opt(&sql, &[&login])?.as_ref().map(candidate_from_row).transpose()
    }

    pub(super) fn candidate_by_id(t: &mut Transaction, user_id: &str) -> StoreResult<Option<LoginCandidate>> {
        t.query_opt(&format!("{CANDIDATE_SQL} WHERE u.id = $1"), &[&user_id])?
            .as_ref()
            .map(candidate_from_row)
            .transpose()
    }

    /// The reservation of an attempt at `now`: its time in microseconds since the Unix epoch.
    fn micros(ts: time::OffsetDateTime) -> i64 {
        (ts.unix_timestamp_nanos() / 1000) as i64
    }

    pub(super) fn reserve_attempt(
        t: &mut Transaction,
        account_key: &str,
        now: &str,
        since: &str,
        max: u32,
    ) -> StoreResult<Attempt> {
        let (now, since) = (pg_ts(now)?, pg_ts(since)?);
        // READ COMMITTED lets two transactions count the same failures: one account's
        // reservations queue on this lock (held to the end of the transaction) instead
        t.execute("SELECT pg_advisory_xact_lock(hashtext('login_failures:' || $1))", &[&account_key])?;
        let times = t.query(
            "SELECT failed_at FROM login_failures WHERE account_key = $1 AND failed_at > $2 \
             ORDER BY failed_at DESC LIMIT $3",
            &[&account_key, &since, &i64::from(max)],
        )?;
        if times.len() as u32 >= max {
            return Ok(Attempt::Locked(times.last().map(|r| pg_ts_col(r, 0)).transpose()?));
        }
        t.execute("DELETE FROM login_failures WHERE account_key = $1 AND failed_at <= $2", &[&account_key, &since])?;
        t.execute("INSERT INTO login_failures (account_key, failed_at) VALUES ($1, $2)", &[&account_key, &now])?;
        Ok(Attempt::Reserved(micros(now)))
    }

    /// Deletes one record of the account at the reserved time (two at the same microsecond are
    /// alike: either may go).
    pub(super) fn forget_attempt(t: &mut Transaction, account_key: &str, attempt: i64) -> StoreResult<()> {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(attempt) * 1000)
            .map_err(|e| crate::store::error::StoreError::internal(format_args!("attempt {attempt}: {e}")))?;
        t.execute(
            "DELETE FROM login_failures WHERE ctid = \
             (SELECT ctid FROM login_failures WHERE account_key = $1 AND failed_at = $2 LIMIT 1)",
            &[&account_key, &at],
        )?;
        Ok(())
    }

    pub(super) fn prune(
        t: &mut Transaction,
        failures_before: &str,
        now: &str,
        revoked_before: &str,
        limit: u32,
    ) -> StoreResult<usize> {
        let limit = i64::from(limit);
        // the table has no key: its rows by their ctid, within this one statement
        let failures = t.execute(
            "DELETE FROM login_failures WHERE ctid = ANY (ARRAY( \
             SELECT ctid FROM login_failures WHERE failed_at <= $1 ORDER BY failed_at LIMIT $2))",
            &[&pg_ts(failures_before)?, &limit],
        )?;
        let expired = t.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE expires_at <= $1 LIMIT $2)",
            &[&pg_ts(now)?, &limit],
        )?;
        let revoked = t.execute(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions WHERE revoked_at <= $1 LIMIT $2)",
            &[&pg_ts(revoked_before)?, &limit],
        )?;
        Ok((failures + expired + revoked) as usize)
    }

    pub(super) fn clear_failures(t: &mut Transaction, account_key: &str) -> StoreResult<()> {
        t.execute("DELETE FROM login_failures WHERE account_key = $1", &[&account_key])?;
        Ok(())
    }

    pub(super) fn create_session(
        t: &mut Transaction,
        id: &str,
        user_id: &str,
        refresh_jti: &str,
        now: &str,
        expires_at: &str,
    ) -> StoreResult<()> {
        t.execute(
            "INSERT INTO sessions (id, user_id, refresh_jti, created_at, last_used_at, expires_at) \
             VALUES ($1, $2, $3, $4, $4, $5)",
            &[&id, &user_id, &refresh_jti, &pg_ts(now)?, &pg_ts(expires_at)?],
        )?;
        Ok(())
    }

    pub(super) fn rotate_refresh(
        t: &mut Transaction,
        sid: &str,
        user_id: &str,
        presented_jti: &str,
        new_jti: &str,
        now: &str,
    ) -> StoreResult<Rotation> {
        let now_ts = pg_ts(now)?;
        // FOR UPDATE: a concurrent refresh of the session waits here and then sees the new jti
        let row = t.query_opt(
            "SELECT refresh_jti, revoked_at IS NOT NULL, expires_at <= $3 FROM sessions \
             WHERE id = $1 AND user_id = $2 FOR UPDATE",
            &[&sid, &user_id, &now_ts],
        )?;
        let Some(row) = row else { return Ok(Rotation::Dead) };
        let (current, revoked, expired): (String, bool, bool) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if revoked || expired {
            return Ok(Rotation::Dead);
        }
        if current != presented_jti {
            revoke_session(t, sid, "refresh token reused", now)?;
            return Ok(Rotation::Reused);
        }
        t.execute("UPDATE sessions SET refresh_jti = $2, last_used_at = $3 WHERE id = $1", &[&sid, &new_jti, &now_ts])?;
        Ok(Rotation::Rotated)
    }

    pub(super) fn revoke_session(t: &mut Transaction, sid: &str, reason: &str, now: &str) -> StoreResult<()> {
        t.execute(
            "UPDATE sessions SET revoked_at = $2, revoked_reason = $3 WHERE id = $1 AND revoked_at IS NULL",
            &[&sid, &pg_ts(now)?, &reason],
        )?;
        Ok(())
    }

    pub(super) fn revoke_user_sessions(
        t: &mut Transaction,
        user_id: &str,
        keep: Option<&str>,
        reason: &str,
        now: &str,
    ) -> StoreResult<usize> {
        Ok(t.execute(
            "UPDATE sessions SET revoked_at = $3, revoked_reason = $4 \
             WHERE user_id = $1 AND revoked_at IS NULL AND ($2::text IS NULL OR id <> $2)",
            &[&user_id, &keep, &pg_ts(now)?, &reason],
        )? as usize)
    }

    /// [`caller_cols!`](crate::caller_cols) on PostgreSQL: `string_agg` for `group_concat`.
    pub const CALLER_COLS: &str = "u.id, u.username, u.organization_id, u.role_id, r.name, r.is_system, u.is_superuser, \
         (SELECT string_agg(p.name, ',') FROM role_permissions rp JOIN permissions p ON p.id = rp.permission_id \
           WHERE rp.role_id = u.role_id), \
         u.email, u.full_name, u.created_at, u.updated_at";

    /// The caller of a row that starts with [`CALLER_COLS`], without a session or key.
    pub fn caller_from_row(r: &Row) -> StoreResult<CurrentUser> {
        let perms: Option<String> = r.try_get(7)?;
        Ok(CurrentUser {
            id: r.try_get(0)?,
            username: r.try_get(1)?,
            email: r.try_get(8)?,
            full_name: r.try_get(9)?,
            organization_id: r.try_get(2)?,
            role_id: r.try_get(3)?,
            role_name: r.try_get(4)?,
            role_is_system: r.try_get::<_, Option<bool>>(5)?.unwrap_or(false),
            is_superuser: r.try_get(6)?,
            permissions: PermissionSet::from_csv(perms.as_deref()),
            session_id: String::new(),
            api_key_id: None,
            client: Default::default(),
            created_at: pg_ts_col(r, 10)?,
            updated_at: pg_ts_col(r, 11)?,
        })
    }

    pub(super) fn current_user(t: &mut Transaction, sid: &str, user_id: &str) -> StoreResult<Option<CurrentUser>> {
        let sql = format!(
            "SELECT {CALLER_COLS} FROM sessions s JOIN users u ON u.id = s.user_id LEFT JOIN roles r ON r.id = u.role_id \
             JOIN organizations o ON o.id = u.organization_id \
             WHERE s.id = $1 AND s.user_id = $2 AND s.revoked_at IS NULL AND u.is_active \
               AND (o.is_active OR u.is_superuser)"
        );
        let Some(row) = t.query_opt(&sql, &[&sid, &user_id])? else { return Ok(None) };
        Ok(Some(CurrentUser { session_id: sid.to_string(), ..caller_from_row(&row)? }))
    }

    pub(super) fn get_setting(t: &mut Transaction, key: &str) -> StoreResult<Option<String>> {
        Ok(t.query_opt("SELECT value FROM server_settings WHERE key = $1", &[&key])?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    pub(super) fn init_setting(t: &mut Transaction, key: &str, value: &str, now: &str) -> StoreResult<String> {
        // a concurrent first insert of the key waits for the other and then does nothing; the
        // SELECT (a new snapshot under READ COMMITTED) reads the value that won
        t.execute(
            "INSERT INTO server_settings (key, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            &[&key, &value, &pg_ts(now)?],
        )?;
        Ok(get_setting(t, key)?.unwrap_or_default())
    }
}
