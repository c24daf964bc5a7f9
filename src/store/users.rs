//! Users: the row, lookups and inserts shared by auth and the users API.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    api::users::User,
    authz::Scope,
    error::{ApiError, ApiResult, is_unique_violation},
};

pub const USER_COLS: &str = "u.id, u.username, u.email, u.full_name, u.organization_id, u.role_id, \
                             u.is_active, u.is_superuser, u.created_at, u.updated_at";

pub fn user_from_row(r: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        username: r.get(1)?,
        email: r.get(2)?,
        full_name: r.get(3)?,
        organization_id: r.get(4)?,
        role_id: r.get(5)?,
        is_active: r.get(6)?,
        is_superuser: r.get(7)?,
        created_at: r.get(8)?,
        updated_at: r.get(9)?,
    })
}

/// A user of the scope, active or not.
pub fn get_user(conn: &Connection, scope: &Scope, id: &str) -> ApiResult<Option<User>> {
    let sql = format!("SELECT {USER_COLS} FROM users u WHERE u.id = ?1 AND (?2 IS NULL OR u.organization_id = ?2)");
    Ok(conn.prepare_cached(&sql)?.query_row(params![id, scope.org()], user_from_row).optional()?)
}

pub struct NewUser {
    pub id: String,
    pub organization_id: String,
    pub role_id: Option<String>,
    pub username: String,
    pub email: String,
    pub full_name: Option<String>,
    pub password_hash: String,
    pub is_superuser: bool,
    pub now: String,
}

/// Inserts a user; a taken username or email is a 409 found by the unique indexes themselves.
pub fn insert_user(conn: &Connection, u: &NewUser) -> ApiResult<User> {
    conn.prepare_cached(
        "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, \
         is_active, is_superuser, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?8, ?9, ?9)",
    )?
    .execute(params![
        u.id,
        u.organization_id,
        u.role_id,
        u.username,
        u.email,
        u.full_name,
        u.password_hash,
        u.is_superuser,
        u.now
    ])
    .map_err(user_conflict)?;
    get_user(conn, &Scope::All, &u.id)?.ok_or_else(|| ApiError::internal("inserted user vanished"))
}

/// Maps a unique violation on users to a 409 that says which field is taken.
pub fn user_conflict(e: rusqlite::Error) -> ApiError {
    if is_unique_violation(&e) {
        if e.to_string().contains("users.email") {
            ApiError::conflict("Email already registered")
        } else {
            ApiError::conflict("Username already taken")
        }
    } else {
        e.into()
    }
}

/// The id of a role of `organization_id` by name (system roles: `admin`, `member`).
pub fn role_id_by_name(conn: &Connection, organization_id: &str, name: &str) -> ApiResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM roles WHERE organization_id = ?1 AND name = ?2")?
        .query_row(params![organization_id, name], |r| r.get(0))
        .optional()?)
}

pub fn set_password_hash(conn: &Connection, id: &str, hash: &str, now: &str) -> ApiResult<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, hash, now])?;
    Ok(())
}
