//! SQL for /roles: roles of the caller's scope, their permission sets, and the 13 permissions.

use rusqlite::{Connection, OptionalExtension, Row, params};

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

const ROLE_NAME_TAKEN: &str = "A role with this name already exists in the organization";

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
pub fn list_roles(conn: &Connection, scope: &Scope, search: Option<&str>, page: Page) -> StoreResult<(Vec<Role>, i64)> {
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
pub fn find_role(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Role> {
    let sql = format!("SELECT {ROLE_COLS} FROM roles r WHERE r.id = ?1 AND (?2 IS NULL OR r.organization_id = ?2)");
    conn.prepare_cached(&sql)?
        .query_row(params![id, scope.org()], role_from_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound("Role not found"))
}

/// The escalation rule's view of the role `role_id` of `organization_id`; `None` when it is
/// not a role of that organization.
pub fn role_kind(conn: &Connection, organization_id: &str, role_id: &str) -> StoreResult<Option<RoleKind>> {
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

pub struct NewRole {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    pub permissions: PermissionSet,
    pub now: String,
}

/// Inserts a custom role with its permissions; a name taken in the organization (any case) is a 409.
pub fn insert_role(conn: &Connection, r: &NewRole) -> StoreResult<Role> {
    conn.prepare_cached(
        "INSERT INTO roles (id, organization_id, name, description, is_system, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, 0, ?5, ?5)",
    )?
    .execute(params![r.id, r.organization_id, r.name, r.description, r.now])
    .map_err(conflict_on_unique(ROLE_NAME_TAKEN))?;
    replace_permissions(conn, &r.id, r.permissions)?;
    find_role(conn, &Scope::system_all(), &r.id)
}

/// The fields a PUT may change; `None` leaves a field as it is.
pub struct RoleChanges {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// Replaces the whole set when given
    pub permissions: Option<PermissionSet>,
}

/// Applies `c` to the scope's custom role `id` and stamps `updated_at`.
pub fn update_role(conn: &Connection, scope: &Scope, id: &str, c: &RoleChanges, now: &str) -> StoreResult<()> {
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
pub fn replace_permissions(conn: &Connection, role_id: &str, set: PermissionSet) -> StoreResult<()> {
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
pub fn delete_role(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<()> {
    let holders: i64 =
        conn.prepare_cached("SELECT COUNT(*) FROM users WHERE role_id = ?1")?.query_row([id], |r| r.get(0))?;
    if holders > 0 {
        return Err(held_by_users(holders));
    }
    let n = conn
        .prepare_cached("DELETE FROM roles WHERE id = ?1 AND is_system = 0 AND (?2 IS NULL OR organization_id = ?2)")?
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

fn held_by_users(n: i64) -> StoreError {
    let who = if n == 1 { "1 user".to_string() } else { format!("{n} users") };
    StoreError::conflict(format!("The role is held by {who}; give them another role before deleting it"))
}

/// Grants a permission; returns false when the role already held it.
pub fn grant(conn: &Connection, scope: &Scope, role_id: &str, permission_id: &str, now: &str) -> StoreResult<bool> {
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
pub fn revoke(conn: &Connection, scope: &Scope, role_id: &str, permission_id: &str, now: &str) -> StoreResult<bool> {
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
pub fn list_permissions(
    conn: &Connection,
    search: Option<&str>,
    page: Page,
) -> StoreResult<(Vec<PermissionInfo>, i64)> {
    let pattern = search.map(search_needle);
    let filter = "FROM permissions WHERE ?1 IS NULL OR instr(lower(name), ?1) > 0 OR instr(lower(description), ?1) > 0";
    let total: i64 =
        conn.prepare_cached(&format!("SELECT COUNT(*) {filter}"))?.query_row(params![pattern], |r| r.get(0))?;
    let rows = conn
        .prepare_cached(&format!("SELECT {PERMISSION_COLS} {filter} ORDER BY rowid LIMIT ?2 OFFSET ?3"))?
        .query_map(params![pattern, page.limit, page.skip], permission_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok((rows, total))
}

/// A permission by id, or 404.
pub fn find_permission(conn: &Connection, id: &str) -> StoreResult<PermissionInfo> {
    conn.prepare_cached(&format!("SELECT {PERMISSION_COLS} FROM permissions WHERE id = ?1"))?
        .query_row([id], permission_from_row)
        .optional()?
        .ok_or_else(|| StoreError::NotFound("Permission not found"))
}
