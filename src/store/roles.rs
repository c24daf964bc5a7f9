//! /roles on both backends: roles of the caller's scope, their permission sets, and the 13
//! permissions. The pub functions dispatch once to the private `sqlite` or `pg` module below
//! (the layout of `store::organizations`).

use crate::{
    authz::{PermissionSet, RoleKind, Scope},
    model::roles::{PermissionInfo, Role},
    pagination::Page,
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};

const ROLE_NAME_TAKEN: &str = "A role with this name already exists in the organization";

/// One page of the scope's roles and the total of matches.
pub fn list_roles(c: &mut Conn, scope: &Scope, search: Option<&str>, page: Page) -> StoreResult<(Vec<Role>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_roles(c, scope, search, page),
        Conn::Postgres(t) => pg::list_roles(t, scope, search, page),
    }
}

/// A role of the scope, or 404.
pub fn find_role(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Role> {
    match c {
        Conn::Sqlite(c) => sqlite::find_role(c, scope, id),
        Conn::Postgres(t) => pg::find_role(t, scope, id),
    }
}

/// The escalation rule's view of the role `role_id` of `organization_id`; `None` when it is
/// not a role of that organization.
pub fn role_kind(c: &mut Conn, organization_id: &str, role_id: &str) -> StoreResult<Option<RoleKind>> {
    match c {
        Conn::Sqlite(c) => sqlite::role_kind(c, organization_id, role_id),
        Conn::Postgres(t) => pg::role_kind(t, organization_id, role_id),
    }
}

pub struct NewRole {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: PermissionSet,
    pub now: String,
}

/// Inserts a custom role with its permissions; a name taken in the organization (any case) is a 409.
pub fn insert_role(c: &mut Conn, r: &NewRole) -> StoreResult<Role> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_role(c, r),
        Conn::Postgres(t) => pg::insert_role(t, r),
    }
}

/// The fields a PUT may change; `None` leaves a field as it is.
pub struct RoleChanges {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Replaces the whole set when given
    pub permissions: Option<PermissionSet>,
}

/// Applies `changes` to the scope's custom role `id` and stamps `updated_at`.
pub fn update_role(c: &mut Conn, scope: &Scope, id: &str, changes: &RoleChanges, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::update_role(c, scope, id, changes, now),
        Conn::Postgres(t) => pg::update_role(t, scope, id, changes, now),
    }
}

/// Makes `set` the whole permission set of the role (a new one, or one being replaced).
pub fn replace_permissions(c: &mut Conn, role_id: &str, set: PermissionSet) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::replace_permissions(c, role_id, set),
        Conn::Postgres(t) => pg::replace_permissions(t, role_id, set),
    }
}

/// Deletes a role; one that users hold (active or not) is a 409.
pub fn delete_role(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::delete_role(c, scope, id),
        Conn::Postgres(t) => pg::delete_role(t, scope, id),
    }
}

fn held_by_users(n: i64) -> StoreError {
    let who = if n == 1 { "1 user".to_string() } else { format!("{n} users") };
    StoreError::conflict(format!("The role is held by {who}; give them another role before deleting it"))
}

/// Grants a permission; returns false when the role already held it.
pub fn grant(c: &mut Conn, scope: &Scope, role_id: &str, permission_id: &str, now: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::grant(c, scope, role_id, permission_id, now),
        Conn::Postgres(t) => pg::grant(t, scope, role_id, permission_id, now),
    }
}

/// Revokes a permission; returns false when the role did not hold it.
pub fn revoke(c: &mut Conn, scope: &Scope, role_id: &str, permission_id: &str, now: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::revoke(c, scope, role_id, permission_id, now),
        Conn::Postgres(t) => pg::revoke(t, scope, role_id, permission_id, now),
    }
}

/// One page of the permissions in their canonical order (`Permission::ALL`), and the total of
/// matches.
pub fn list_permissions(c: &mut Conn, search: Option<&str>, page: Page) -> StoreResult<(Vec<PermissionInfo>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_permissions(c, search, page),
        Conn::Postgres(t) => pg::list_permissions(t, search, page),
    }
}

/// A permission by id, or 404.
pub fn find_permission(c: &mut Conn, id: &str) -> StoreResult<PermissionInfo> {
    match c {
        Conn::Sqlite(c) => sqlite::find_permission(c, id),
        Conn::Postgres(t) => pg::find_permission(t, id),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{NewRole, ROLE_NAME_TAKEN, RoleChanges, held_by_users};
    use crate::{
        authz::{PermissionSet, RoleKind, Scope},
        db::search_needle,
        model::roles::{PermissionInfo, Role},
        pagination::Page,
        store::error::{StoreError, StoreResult, conflict_on_unique, is_foreign_key_violation},
    };

    const ROLE_COLS: &str = "r.id, r.organization_id, r.name, r.description, r.is_system, \
                             (SELECT group_concat(p.name) FROM role_permissions rp \
                                JOIN permissions p ON p.id = rp.permission_id WHERE rp.role_id = r.id), \
                             (SELECT COUNT(*) FROM users u WHERE u.role_id = r.id), \
                             r.created_at, r.updated_at";

    fn role_from_row(r: &Row<'_>) -> rusqlite::Result<Role> {
        let names: Option<String> = r.get(5)?;
        // canonical order of Permission::ALL, whatever order group_concat used
        let set = PermissionSet::from_csv(names.as_deref());
        Ok(Role {
            id: r.get(0)?,
            organization_id: r.get(1)?,
            name: r.get(2)?,
            description: r.get(3)?,
            is_system: r.get(4)?,
            permissions: set.names(),
            user_count: r.get(6)?,
            created_at: r.get(7)?,
            updated_at: r.get(8)?,
        })
    }

    /// One page of the scope's roles and the total of matches.
    pub(super) fn list_roles(
        conn: &Connection,
        scope: &Scope,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<Role>, i64)> {
        let pattern = search.map(search_needle);
        let filter = "FROM roles r WHERE (?1 IS NULL OR r.organization_id = ?1) \
                      AND (?2 IS NULL OR instr(lower(r.name), ?2) > 0 OR instr(lower(r.description), ?2) > 0)";
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) {filter}"))?
            .query_row(params![scope.org(), pattern], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {ROLE_COLS} {filter} ORDER BY r.created_at DESC, r.id DESC LIMIT ?3 OFFSET ?4"
            ))?
            .query_map(params![scope.org(), pattern, page.limit, page.skip], role_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// A role of the scope, or 404.
    pub(super) fn find_role(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Role> {
        let sql = format!("SELECT {ROLE_COLS} FROM roles r WHERE r.id = ?1 AND (?2 IS NULL OR r.organization_id = ?2)");
        conn.prepare_cached(&sql)?
            .query_row(params![id, scope.org()], role_from_row)
            .optional()?
            .ok_or_else(|| StoreError::NotFound("Role not found"))
    }

    /// The escalation rule's view of the role `role_id` of `organization_id`; `None` when it is
    /// not a role of that organization.
    pub(super) fn role_kind(conn: &Connection, organization_id: &str, role_id: &str) -> StoreResult<Option<RoleKind>> {
        Ok(conn
            .prepare_cached(
                "SELECT r.is_system, r.name, (SELECT group_concat(p.name) FROM role_permissions rp \
                   JOIN permissions p ON p.id = rp.permission_id WHERE rp.role_id = r.id) \
                 FROM roles r WHERE r.id = ?1 AND r.organization_id = ?2",
            )?
            .query_row(params![role_id, organization_id], |r| {
                let names: Option<String> = r.get(2)?;
                Ok(RoleKind::of(r.get(0)?, &r.get::<_, String>(1)?, PermissionSet::from_csv(names.as_deref())))
            })
            .optional()?)
    }

    /// Inserts a custom role with its permissions; a name taken in the organization (any case) is a 409.
    pub(super) fn insert_role(conn: &Connection, r: &NewRole) -> StoreResult<Role> {
        conn.prepare_cached(
            "INSERT INTO roles (id, organization_id, name, description, is_system, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
        )?
        .execute(params![r.id, r.organization_id, r.name, r.description, r.now])
        .map_err(conflict_on_unique(ROLE_NAME_TAKEN))?;
        replace_permissions(conn, &r.id, r.permissions)?;
        find_role(conn, &Scope::system_all(), &r.id)
    }

    /// Applies `c` to the scope's custom role `id` and stamps `updated_at`.
    pub(super) fn update_role(
        conn: &Connection,
        scope: &Scope,
        id: &str,
        c: &RoleChanges,
        now: &str,
    ) -> StoreResult<()> {
        let n = conn
            .prepare_cached(
                "UPDATE roles SET name = COALESCE(?2, name), description = CASE WHEN ?5 THEN ?3 ELSE description END, \
                 updated_at = ?4 WHERE id = ?1 AND is_system = 0 AND (?6 IS NULL OR organization_id = ?6)",
            )?
            .execute(params![id, c.name, c.description.clone().flatten(), now, c.description.is_some(), scope.org()])
            .map_err(conflict_on_unique(ROLE_NAME_TAKEN))?;
        if n == 0 {
            return Err(StoreError::NotFound("Role not found"));
        }
        if let Some(set) = c.permissions {
            replace_permissions(conn, id, set)?;
        }
        Ok(())
    }

    /// Makes `set` the whole permission set of the role (a new one, or one being replaced).
    pub(super) fn replace_permissions(conn: &Connection, role_id: &str, set: PermissionSet) -> StoreResult<()> {
        conn.prepare_cached("DELETE FROM role_permissions WHERE role_id = ?1")?.execute([role_id])?;
        let mut grant = conn.prepare_cached(
            "INSERT INTO role_permissions (role_id, permission_id) SELECT ?1, id FROM permissions WHERE name = ?2",
        )?;
        for p in set.iter() {
            grant.execute(params![role_id, p.name()])?;
        }
        Ok(())
    }

    /// Deletes a role; one that users hold (active or not) is a 409.
    pub(super) fn delete_role(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<()> {
        let holders: i64 =
            conn.prepare_cached("SELECT COUNT(*) FROM users WHERE role_id = ?1")?.query_row([id], |r| r.get(0))?;
        if holders > 0 {
            return Err(held_by_users(holders));
        }
        let n = conn
            .prepare_cached(
                "DELETE FROM roles WHERE id = ?1 AND is_system = 0 AND (?2 IS NULL OR organization_id = ?2)",
            )?
            .execute(params![id, scope.org()])
            .map_err(|e| {
                // the count above runs in the same transaction; this is the schema's own guard
                if is_foreign_key_violation(&e) { held_by_users(1) } else { e.into() }
            })?;
        if n == 0 {
            return Err(StoreError::NotFound("Role not found"));
        }
        Ok(())
    }

    /// Grants a permission; returns false when the role already held it.
    pub(super) fn grant(
        conn: &Connection,
        scope: &Scope,
        role_id: &str,
        permission_id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO role_permissions (role_id, permission_id) \
                 SELECT id, ?2 FROM roles WHERE id = ?1 AND is_system = 0 AND (?3 IS NULL OR organization_id = ?3)",
            )?
            .execute(params![role_id, permission_id, scope.org()])?;
        if n > 0 {
            touch(conn, scope, role_id, now)?;
        }
        Ok(n > 0)
    }

    /// Revokes a permission; returns false when the role did not hold it.
    pub(super) fn revoke(
        conn: &Connection,
        scope: &Scope,
        role_id: &str,
        permission_id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let n = conn
            .prepare_cached(
                "DELETE FROM role_permissions WHERE role_id = ?1 AND permission_id = ?2 AND role_id IN \
                 (SELECT id FROM roles WHERE id = ?1 AND is_system = 0 AND (?3 IS NULL OR organization_id = ?3))",
            )?
            .execute(params![role_id, permission_id, scope.org()])?;
        if n > 0 {
            touch(conn, scope, role_id, now)?;
        }
        Ok(n > 0)
    }

    fn touch(conn: &Connection, scope: &Scope, role_id: &str, now: &str) -> StoreResult<()> {
        conn.prepare_cached("UPDATE roles SET updated_at = ?2 WHERE id = ?1 AND (?3 IS NULL OR organization_id = ?3)")?
            .execute(params![role_id, now, scope.org()])?;
        Ok(())
    }

    const PERMISSION_COLS: &str = "id, name, resource, action, description";

    fn permission_from_row(r: &Row<'_>) -> rusqlite::Result<PermissionInfo> {
        Ok(PermissionInfo {
            id: r.get(0)?,
            name: r.get(1)?,
            resource: r.get(2)?,
            action: r.get(3)?,
            description: r.get(4)?,
        })
    }

    /// One page of the permissions in their canonical (insertion) order, and the total of matches.
    pub(super) fn list_permissions(
        conn: &Connection,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<PermissionInfo>, i64)> {
        let pattern = search.map(search_needle);
        let filter =
            "FROM permissions WHERE ?1 IS NULL OR instr(lower(name), ?1) > 0 OR instr(lower(description), ?1) > 0";
        let total: i64 =
            conn.prepare_cached(&format!("SELECT COUNT(*) {filter}"))?.query_row(params![pattern], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!("SELECT {PERMISSION_COLS} {filter} ORDER BY rowid LIMIT ?2 OFFSET ?3"))?
            .query_map(params![pattern, page.limit, page.skip], permission_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// A permission by id, or 404.
    pub(super) fn find_permission(conn: &Connection, id: &str) -> StoreResult<PermissionInfo> {
        conn.prepare_cached(&format!("SELECT {PERMISSION_COLS} FROM permissions WHERE id = ?1"))?
            .query_row([id], permission_from_row)
            .optional()?
            .ok_or_else(|| StoreError::NotFound("Permission not found"))
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{NewRole, ROLE_NAME_TAKEN, RoleChanges, held_by_users};
    use crate::{
        authz::{Permission, PermissionSet, RoleKind, Scope},
        db::search_needle,
        model::roles::{PermissionInfo, Role},
        pagination::Page,
        store::{
            conn::{holds_nul, pg_ts, pg_ts_col},
            error::{StoreError, StoreResult, pg_conflict_on_unique},
        },
    };

    // string_agg for group_concat (PermissionSet::from_csv puts the names in canonical order)
    const ROLE_COLS: &str = "r.id, r.organization_id, r.name, r.description, r.is_system, \
                             (SELECT string_agg(p.name, ',') FROM role_permissions rp \
                                JOIN permissions p ON p.id = rp.permission_id WHERE rp.role_id = r.id), \
                             (SELECT COUNT(*) FROM users u WHERE u.role_id = r.id), \
                             r.created_at, r.updated_at";

    fn role_from_row(r: &Row) -> StoreResult<Role> {
        let names: Option<String> = r.try_get(5)?;
        Ok(Role {
            id: r.try_get(0)?,
            organization_id: r.try_get(1)?,
            name: r.try_get(2)?,
            description: r.try_get(3)?,
            is_system: r.try_get(4)?,
            permissions: PermissionSet::from_csv(names.as_deref()).names(),
            user_count: r.try_get(6)?,
            created_at: pg_ts_col(r, 7)?,
            updated_at: pg_ts_col(r, 8)?,
        })
    }

    // strpos over nocase(): ASCII folding like the needle and SQLite's lower(); %, _ and \ are
    // themselves (as in organizations)
    const ROLE_FILTER: &str = "FROM roles r WHERE ($1::text IS NULL OR r.organization_id = $1) \
         AND ($2::text IS NULL OR strpos(nocase(r.name), $2) > 0 OR strpos(nocase(r.description), $2) > 0)";

    pub(super) fn list_roles(
        t: &mut Transaction,
        scope: &Scope,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<Role>, i64)> {
        if holds_nul([search]) {
            return Ok((vec![], 0));
        }
        let pattern = search.map(search_needle);
        let total: i64 =
            t.query_one(&format!("SELECT COUNT(*) {ROLE_FILTER}"), &[&scope.org(), &pattern])?.try_get(0)?;
        let rows = t
            .query(
                &format!("SELECT {ROLE_COLS} {ROLE_FILTER} ORDER BY r.created_at DESC, r.id DESC LIMIT $3 OFFSET $4"),
                &[&scope.org(), &pattern, &page.limit, &page.skip],
            )?
            .iter()
            .map(role_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn find_role(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Role> {
        let sql =
            format!("SELECT {ROLE_COLS} FROM roles r WHERE r.id = $1 AND ($2::text IS NULL OR r.organization_id = $2)");
        t.query_opt(&sql, &[&id, &scope.org()])?
            .as_ref()
            .map(role_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound("Role not found"))
    }

    pub(super) fn role_kind(
        t: &mut Transaction,
        organization_id: &str,
        role_id: &str,
    ) -> StoreResult<Option<RoleKind>> {
        let Some(r) = t.query_opt(
            "SELECT r.is_system, r.name, (SELECT string_agg(p.name, ',') FROM role_permissions rp \
               JOIN permissions p ON p.id = rp.permission_id WHERE rp.role_id = r.id) \
             FROM roles r WHERE r.id = $1 AND r.organization_id = $2",
            &[&role_id, &organization_id],
        )?
        else {
            return Ok(None);
        };
        let names: Option<String> = r.try_get(2)?;
        let name: String = r.try_get(1)?;
        Ok(Some(RoleKind::of(r.try_get(0)?, &name, PermissionSet::from_csv(names.as_deref()))))
    }

    pub(super) fn insert_role(t: &mut Transaction, r: &NewRole) -> StoreResult<Role> {
        t.execute(
            "INSERT INTO roles (id, organization_id, name, description, is_system, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, false, $5, $5)",
            &[&r.id, &r.organization_id, &r.name, &r.description, &pg_ts(&r.now)?],
        )
        .map_err(pg_conflict_on_unique(ROLE_NAME_TAKEN))?;
        replace_permissions(t, &r.id, r.permissions)?;
        find_role(t, &Scope::system_all(), &r.id)
    }

    pub(super) fn update_role(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
        c: &RoleChanges,
        now: &str,
    ) -> StoreResult<()> {
        let n = t
            .execute(
                "UPDATE roles SET name = COALESCE($2, name), \
                 description = CASE WHEN $5 THEN $3 ELSE description END, \
                 updated_at = $4 WHERE id = $1 AND NOT is_system AND ($6::text IS NULL OR organization_id = $6)",
                &[&id, &c.name, &c.description.clone().flatten(), &pg_ts(now)?, &c.description.is_some(), &scope.org()],
            )
            .map_err(pg_conflict_on_unique(ROLE_NAME_TAKEN))?;
        if n == 0 {
            return Err(StoreError::NotFound("Role not found"));
        }
        if let Some(set) = c.permissions {
            replace_permissions(t, id, set)?;
        }
        Ok(())
    }

    /// One statement per step (SQLite's loop of cached inserts is one array here).
    pub(super) fn replace_permissions(t: &mut Transaction, role_id: &str, set: PermissionSet) -> StoreResult<()> {
        t.execute("DELETE FROM role_permissions WHERE role_id = $1", &[&role_id])?;
        let names: Vec<&str> = set.iter().map(|p| p.name()).collect();
        t.execute(
            "INSERT INTO role_permissions (role_id, permission_id) SELECT $1, id FROM permissions WHERE name = ANY($2)",
            &[&role_id, &names],
        )?;
        Ok(())
    }

    pub(super) fn delete_role(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<()> {
        let holders: i64 = t.query_one("SELECT COUNT(*) FROM users WHERE role_id = $1", &[&id])?.try_get(0)?;
        if holders > 0 {
            return Err(held_by_users(holders));
        }
        let n = t
            .execute(
                "DELETE FROM roles WHERE id = $1 AND NOT is_system AND ($2::text IS NULL OR organization_id = $2)",
                &[&id, &scope.org()],
            )
            .map_err(|e| {
                // READ COMMITTED: a user given the role since the count; the schema's RESTRICT
                if e.code() == Some(&postgres::error::SqlState::FOREIGN_KEY_VIOLATION) {
                    held_by_users(1)
                } else {
                    e.into()
                }
            })?;
        if n == 0 {
            return Err(StoreError::NotFound("Role not found"));
        }
        Ok(())
    }

    pub(super) fn grant(
        t: &mut Transaction,
        scope: &Scope,
        role_id: &str,
        permission_id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        // ON CONFLICT DO NOTHING is SQLite's INSERT OR IGNORE (neither covers the foreign key of
        // a permission that does not exist: the handler looks it up first)
        let n = t.execute(
            "INSERT INTO role_permissions (role_id, permission_id) \
             SELECT id, $2::text FROM roles WHERE id = $1 AND NOT is_system AND ($3::text IS NULL OR organization_id = $3) \
             ON CONFLICT DO NOTHING",
            &[&role_id, &permission_id, &scope.org()],
        )?;
        if n > 0 {
            touch(t, scope, role_id, now)?;
        }
        Ok(n > 0)
    }

    pub(super) fn revoke(
        t: &mut Transaction,
        scope: &Scope,
        role_id: &str,
        permission_id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let n = t.execute(
            "DELETE FROM role_permissions WHERE role_id = $1 AND permission_id = $2 AND role_id IN \
             (SELECT id FROM roles WHERE id = $1 AND NOT is_system AND ($3::text IS NULL OR organization_id = $3))",
            &[&role_id, &permission_id, &scope.org()],
        )?;
        if n > 0 {
            touch(t, scope, role_id, now)?;
        }
        Ok(n > 0)
    }

    fn touch(t: &mut Transaction, scope: &Scope, role_id: &str, now: &str) -> StoreResult<()> {
        t.execute(
            "UPDATE roles SET updated_at = $2 WHERE id = $1 AND ($3::text IS NULL OR organization_id = $3)",
            &[&role_id, &pg_ts(now)?, &scope.org()],
        )?;
        Ok(())
    }

    const PERMISSION_COLS: &str = "id, name, resource, action, description";

    fn permission_from_row(r: &Row) -> StoreResult<PermissionInfo> {
        Ok(PermissionInfo {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            resource: r.try_get(2)?,
            action: r.try_get(3)?,
            description: r.try_get(4)?,
        })
    }

    const PERMISSION_FILTER: &str = "FROM permissions WHERE $1::text IS NULL \
         OR strpos(nocase(name), $1) > 0 OR strpos(nocase(description), $1) > 0";

    /// No rowid: the canonical order is the position of the name in `Permission::ALL` (the order
    /// `ensure_permissions` inserts them in, SQLite's rowid order), any other name last, by name.
    pub(super) fn list_permissions(
        t: &mut Transaction,
        search: Option<&str>,
        page: Page,
    ) -> StoreResult<(Vec<PermissionInfo>, i64)> {
        if holds_nul([search]) {
            return Ok((vec![], 0));
        }
        let pattern = search.map(search_needle);
        let total: i64 = t.query_one(&format!("SELECT COUNT(*) {PERMISSION_FILTER}"), &[&pattern])?.try_get(0)?;
        let order: Vec<&str> = Permission::ALL.iter().map(|p| p.name()).collect();
        let rows = t
            .query(
                &format!(
                    "SELECT {PERMISSION_COLS} {PERMISSION_FILTER} \
                     ORDER BY array_position($4::text[], name), name LIMIT $2 OFFSET $3"
                ),
                &[&pattern, &page.limit, &page.skip, &order],
            )?
            .iter()
            .map(permission_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn find_permission(t: &mut Transaction, id: &str) -> StoreResult<PermissionInfo> {
        t.query_opt(&format!("SELECT {PERMISSION_COLS} FROM permissions WHERE id = $1"), &[&id])?
            .as_ref()
            .map(permission_from_row)
            .transpose()?
            .ok_or_else(|| StoreError::NotFound("Permission not found"))
    }
}
