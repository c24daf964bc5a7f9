//! API keys: stored by the SHA-256 of the secret, read on every request that presents one.

use rusqlite::{Connection, OptionalExtension, params};

use crate::{
    authz::{PermissionSet, Scope},
    model::api_keys::ApiKey,
    pagination::Page,
    store::auth::caller_from_row,
    store::error::{StoreError, StoreResult},
};

const COLS: &str = "k.id, k.name, k.prefix, k.permissions, k.user_id, k.expires_at, k.last_used_at, k.created_at";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKey> {
    let perms: String = r.get(3)?;
    Ok(ApiKey {
        id: r.get(0)?,
        name: r.get(1)?,
        prefix: r.get(2)?,
        permissions: PermissionSet::from_csv(Some(&perms)).names(),
        user_id: r.get(4)?,
        expires_at: r.get(5)?,
        last_used_at: r.get(6)?,
        created_at: r.get(7)?,
    })
}

pub struct NewKey<'a> {
    pub id: &'a str,
    pub user_id: &'a str,
    pub organization_id: &'a str,
    pub name: &'a str,
    pub prefix: &'a str,
    pub secret_sha256: &'a str,
    pub permissions: PermissionSet,
    pub expires_at: Option<&'a str>,
    pub now: &'a str,
}

pub fn insert_key(conn: &Connection, k: &NewKey<'_>) -> StoreResult<ApiKey> {
    conn.prepare_cached(
        "INSERT INTO api_keys (id, user_id, organization_id, name, prefix, secret_sha256, permissions, expires_at, \
         created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        k.id,
        k.user_id,
        k.organization_id,
        k.name,
        k.prefix,
        k.secret_sha256,
        k.permissions.names().join(","),
        k.expires_at,
        k.now
    ])?;
    Ok(conn
        .prepare_cached(&format!("SELECT {COLS} FROM api_keys k WHERE k.id = ?1"))?
        .query_row(params![k.id], from_row)?)
}

/// Whose keys a listing shows: one user's, or every key of a scope (org admins, superusers).
pub enum Owners<'a> {
    User(&'a str),
    Scope(&'a Scope, Option<&'a str>),
}

pub fn list_keys(conn: &Connection, owners: &Owners<'_>, page: Page) -> StoreResult<(Vec<ApiKey>, i64)> {
    let (user, org, filter_user) = match owners {
        Owners::User(u) => (Some(*u), None, None),
        Owners::Scope(s, u) => (None, s.org(), *u),
    };
    const WHERE: &str = "WHERE (?1 IS NULL OR k.user_id = ?1) AND (?2 IS NULL OR k.organization_id = ?2) \
                         AND (?3 IS NULL OR k.user_id = ?3)";
    let total: i64 = conn
        .prepare_cached(&format!("SELECT COUNT(*) FROM api_keys k {WHERE}"))?
        .query_row(params![user, org, filter_user], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!(
            "SELECT {COLS} FROM api_keys k {WHERE} ORDER BY k.created_at DESC, k.id DESC LIMIT ?4 OFFSET ?5"
        ))?
        .query_map(params![user, org, filter_user, page.limit, page.skip], from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// Deletes a key the caller may manage (their own, or, for an org admin, one of the scope);
/// any other is not found.
/// Deletes a key of `owners`; returns its organization and name.
pub fn delete_key(conn: &Connection, owners: &Owners<'_>, id: &str) -> StoreResult<(String, String)> {
    let (user, org) = match owners {
        Owners::User(u) => (Some(*u), None),
        Owners::Scope(s, _) => (None, s.org()),
    };
    conn.prepare_cached(
        "DELETE FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) AND (?3 IS NULL OR organization_id = ?3) \
         RETURNING organization_id, name",
    )?
    .query_row(params![id, user, org], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()?
    .ok_or_else(|| StoreError::NotFound("API key not found"))
}

/// The key presented, with its owner as they are now: `None` when no such key exists, it
/// expired, or its owner (or their organization) is deactivated.
pub struct KeyOwner {
    pub key_id: String,
    pub key_permissions: PermissionSet,
    pub last_used_at: Option<String>,
    pub owner: crate::authz::CurrentUser,
}

pub fn key_owner(conn: &Connection, secret_sha256: &str, now: &str) -> StoreResult<Option<KeyOwner>> {
    Ok(conn
        .prepare_cached(concat!(
            "SELECT ",
            crate::caller_cols!(),
            ", k.id, k.permissions, k.last_used_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN roles r ON r.id = u.role_id \
             JOIN organizations o ON o.id = u.organization_id \
             WHERE k.secret_sha256 = ?1 AND (k.expires_at IS NULL OR k.expires_at > ?2) AND u.is_active = 1 \
               AND (o.is_active = 1 OR u.is_superuser = 1)"
        ))?
        .query_row(params![secret_sha256, now], |r| {
            let key_perms: String = r.get(13)?;
            Ok(KeyOwner {
                key_id: r.get(12)?,
                key_permissions: PermissionSet::from_csv(Some(&key_perms)),
                last_used_at: r.get(14)?,
                owner: caller_from_row(r)?,
            })
        })
        .optional()?)
}

/// Records a use of the key (the caller throttles: at most about once a minute per key).
pub fn touch_key(conn: &Connection, id: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
    Ok(())
}
