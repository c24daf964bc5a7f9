//! API keys, on both backends: stored by the SHA-256 of the secret, read on every request that
//! presents one. The pub functions dispatch once to the private `sqlite` or `pg` module below
//! (the layout of `store::organizations`).

use crate::{
    authz::{PermissionSet, Scope},
    model::api_keys::ApiKey,
    pagination::Page,
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};

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

pub fn insert_key(c: &mut Conn, k: &NewKey<'_>) -> StoreResult<ApiKey> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_key(c, k),
        Conn::Postgres(t) => pg::insert_key(t, k),
    }
}

/// Whose keys a listing shows: one user's, or every key of a scope (org admins, superusers).
pub enum Owners<'a> {
    User(&'a str),
    Scope(&'a Scope, Option<&'a str>),
}

impl Owners<'_> {
    /// (user, organization, user filter) of the listing's WHERE.
    fn list_filter(&self) -> (Option<&str>, Option<&str>, Option<&str>) {
        match self {
            Owners::User(u) => (Some(*u), None, None),
            Owners::Scope(s, u) => (None, s.org(), *u),
        }
    }

    /// (user, organization) whose keys a delete may reach.
    fn delete_filter(&self) -> (Option<&str>, Option<&str>) {
        match self {
            Owners::User(u) => (Some(*u), None),
            Owners::Scope(s, _) => (None, s.org()),
        }
    }
}

/// One page of the keys of `owners`, newest first, and the total.
pub fn list_keys(c: &mut Conn, owners: &Owners<'_>, page: Page) -> StoreResult<(Vec<ApiKey>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_keys(c, owners, page),
        Conn::Postgres(t) => pg::list_keys(t, owners, page),
    }
}

/// Deletes a key the caller may manage (their own, or, for an org admin, one of the scope);
/// any other is not found. Returns its organization and name.
pub fn delete_key(c: &mut Conn, owners: &Owners<'_>, id: &str) -> StoreResult<(String, String)> {
    let found = match c {
        Conn::Sqlite(c) => sqlite::delete_key(c, owners, id)?,
        Conn::Postgres(t) => pg::delete_key(t, owners, id)?,
    };
    found.ok_or_else(|| StoreError::NotFound("API key not found"))
}

/// The key presented, with its owner as they are now: `None` when no such key exists, it
/// expired, or its owner (or their organization) is deactivated.
pub struct KeyOwner {
    pub key_id: String,
    pub key_permissions: PermissionSet,
    pub last_used_at: Option<String>,
    pub owner: crate::authz::CurrentUser,
}

/// The key whose secret hashes to `secret_sha256`, unexpired at `now`, and its owner.
pub fn key_owner(c: &mut Conn, secret_sha256: &str, now: &str) -> StoreResult<Option<KeyOwner>> {
    match c {
        Conn::Sqlite(c) => sqlite::key_owner(c, secret_sha256, now),
        Conn::Postgres(t) => pg::key_owner(t, secret_sha256, now),
    }
}

/// Records a use of the key (the caller throttles: at most about once a minute per key).
pub fn touch_key(c: &mut Conn, id: &str, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::touch_key(c, id, now),
        Conn::Postgres(t) => pg::touch_key(t, id, now),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, params};

    use super::{KeyOwner, NewKey, Owners};
    use crate::{
        authz::PermissionSet, model::api_keys::ApiKey, pagination::Page, store::auth::caller_from_row,
        store::error::StoreResult,
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

    pub(super) fn insert_key(conn: &Connection, k: &NewKey<'_>) -> StoreResult<ApiKey> {
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

    pub(super) fn list_keys(conn: &Connection, owners: &Owners<'_>, page: Page) -> StoreResult<(Vec<ApiKey>, i64)> {
        let (user, org, filter_user) = owners.list_filter();
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

    pub(super) fn delete_key(
        conn: &Connection,
        owners: &Owners<'_>,
        id: &str,
    ) -> StoreResult<Option<(String, String)>> {
        let (user, org) = owners.delete_filter();
        Ok(conn
            .prepare_cached(
                "DELETE FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR user_id = ?2) \
                 AND (?3 IS NULL OR organization_id = ?3) RETURNING organization_id, name",
            )?
            .query_row(params![id, user, org], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    pub(super) fn key_owner(conn: &Connection, secret_sha256: &str, now: &str) -> StoreResult<Option<KeyOwner>> {
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

    pub(super) fn touch_key(conn: &Connection, id: &str, now: &str) -> StoreResult<()> {
        conn.prepare_cached("UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1")?.execute(params![id, now])?;
        Ok(())
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{KeyOwner, NewKey, Owners};
    use crate::{
        authz::PermissionSet,
        model::api_keys::ApiKey,
        pagination::Page,
        store::{
            conn::{pg_ts, pg_ts_col},
            error::StoreResult,
        },
    };

    const COLS: &str = "k.id, k.name, k.prefix, k.permissions, k.user_id, k.expires_at, k.last_used_at, k.created_at";

    /// A nullable `timestamptz` as the text of the SQLite path.
    fn pg_ts_opt(r: &Row, idx: usize) -> Result<Option<String>, postgres::Error> {
        Ok(r.try_get::<_, Option<time::OffsetDateTime>>(idx)?.map(crate::db::format_ts))
    }

    fn from_row(r: &Row) -> StoreResult<ApiKey> {
        let perms: String = r.try_get(3)?;
        Ok(ApiKey {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            prefix: r.try_get(2)?,
            permissions: PermissionSet::from_csv(Some(&perms)).names(),
            user_id: r.try_get(4)?,
            expires_at: pg_ts_opt(r, 5)?,
            last_used_at: pg_ts_opt(r, 6)?,
            created_at: pg_ts_col(r, 7)?,
        })
    }

    pub(super) fn insert_key(t: &mut Transaction, k: &NewKey<'_>) -> StoreResult<ApiKey> {
        let expires_at = k.expires_at.map(pg_ts).transpose()?;
        let row = t.query_one(
            &format!(
                "INSERT INTO api_keys AS k (id, user_id, organization_id, name, prefix, secret_sha256, permissions, \
                 expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {COLS}"
            ),
            &[
                &k.id,
                &k.user_id,
                &k.organization_id,
                &k.name,
                &k.prefix,
                &k.secret_sha256,
                &k.permissions.names().join(","),
                &expires_at,
                &pg_ts(k.now)?,
            ],
        )?;
        from_row(&row)
    }

    const WHERE: &str = "WHERE ($1::text IS NULL OR k.user_id = $1) AND ($2::text IS NULL OR k.organization_id = $2) \
                         AND ($3::text IS NULL OR k.user_id = $3)";

    pub(super) fn list_keys(t: &mut Transaction, owners: &Owners<'_>, page: Page) -> StoreResult<(Vec<ApiKey>, i64)> {
        let (user, org, filter_user) = owners.list_filter();
        let total: i64 = t
            .query_one(&format!("SELECT COUNT(*) FROM api_keys k {WHERE}"), &[&user, &org, &filter_user])?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT {COLS} FROM api_keys k {WHERE} ORDER BY k.created_at DESC, k.id DESC LIMIT $4 OFFSET $5"
                ),
                &[&user, &org, &filter_user, &page.limit, &page.skip],
            )?
            .iter()
            .map(from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn delete_key(
        t: &mut Transaction,
        owners: &Owners<'_>,
        id: &str,
    ) -> StoreResult<Option<(String, String)>> {
        let (user, org) = owners.delete_filter();
        let Some(r) = t.query_opt(
            "DELETE FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR user_id = $2) \
             AND ($3::text IS NULL OR organization_id = $3) RETURNING organization_id, name",
            &[&id, &user, &org],
        )?
        else {
            return Ok(None);
        };
        Ok(Some((r.try_get(0)?, r.try_get(1)?)))
    }

    /// The owner of a key (the caller's columns of `store::auth`), then the key's own.
    static KEY_OWNER_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "SELECT {}, k.id, k.permissions, k.last_used_at \
             FROM api_keys k JOIN users u ON u.id = k.user_id LEFT JOIN roles r ON r.id = u.role_id \
             JOIN organizations o ON o.id = u.organization_id \
             WHERE k.secret_sha256 = $1 AND (k.expires_at IS NULL OR k.expires_at > $2) AND u.is_active \
               AND (o.is_active OR u.is_superuser)",
            crate::store::auth::pg::CALLER_COLS
        )
    });

    pub(super) fn key_owner(t: &mut Transaction, secret_sha256: &str, now: &str) -> StoreResult<Option<KeyOwner>> {
        let Some(r) = t.query_opt(KEY_OWNER_SQL.as_str(), &[&secret_sha256, &pg_ts(now)?])? else {
            return Ok(None);
        };
        let key_perms: String = r.try_get(13)?;
        let owner = crate::store::auth::pg::caller_from_row(&r)?;
        Ok(Some(KeyOwner {
            key_id: r.try_get(12)?,
            key_permissions: PermissionSet::from_csv(Some(&key_perms)),
            last_used_at: pg_ts_opt(&r, 14)?,
            owner,
        }))
    }

    pub(super) fn touch_key(t: &mut Transaction, id: &str, now: &str) -> StoreResult<()> {
        t.execute("UPDATE api_keys SET last_used_at = $2 WHERE id = $1", &[&id, &pg_ts(now)?])?;
        Ok(())
    }
}
