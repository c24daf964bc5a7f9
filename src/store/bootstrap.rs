//! First start on an empty database: the 13 permissions, the `Default` organization with its
//! system roles, and the superuser of `[bootstrap]`. Later starts change nothing.

use rusqlite::{Connection, params};

use crate::{
    authz::Permission,
    db::{new_id, now},
    store::error::StoreResult,
    store::{
        auth::{get_setting, init_setting},
        conn::{Conn, pg_ts},
        users::{NewUser, insert_user_on},
    },
};

pub const DEFAULT_ORG: &str = "Default";
const DONE_KEY: &str = "bootstrapped_at";
const REGISTRATION_ORG_KEY: &str = "registration_organization_id";

/// Inserts the permissions that are missing (by name).
pub fn ensure_permissions(c: &mut Conn) -> StoreResult<()> {
    match c {
        Conn::Sqlite(conn) => {
            let mut stmt = conn.prepare_cached(
                "INSERT OR IGNORE INTO permissions (id, name, resource, action, description) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for p in Permission::ALL {
                stmt.execute(params![new_id(), p.name(), p.resource(), p.action(), p.description()])?;
            }
        }
        Conn::Postgres(t) => {
            let stmt = t.prepare(
                "INSERT INTO permissions (id, name, resource, action, description) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (name) DO NOTHING",
            )?;
            for p in Permission::ALL {
                t.execute(&stmt, &[&new_id(), &p.name(), &p.resource(), &p.action(), &p.description()])?;
            }
        }
    }
    Ok(())
}

/// The `admin` (all 13) and `member` system roles of a new organization.
pub fn insert_system_roles(c: &mut Conn, organization_id: &str, now: &str) -> StoreResult<()> {
    let roles: [(&str, &str, &[Permission]); 2] = [
        ("admin", "Organization administrator: every permission", &Permission::ALL),
        ("member", "Default role of new users", &Permission::MEMBER),
    ];
    for (name, description, perms) in roles {
        let role_id = new_id();
        match c {
            Conn::Sqlite(conn) => {
                conn.prepare_cached(
                    "INSERT INTO roles (id, organization_id, name, description, is_system, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?5)",
                )?
                .execute(params![role_id, organization_id, name, description, now])?;
                crate::store::roles::replace_permissions(
                    &mut Conn::Sqlite(conn),
                    &role_id,
                    perms.iter().copied().collect(),
                )?;
            }
            Conn::Postgres(t) => {
                t.execute(
                    "INSERT INTO roles (id, organization_id, name, description, is_system, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, true, $5, $5)",
                    &[&role_id, &organization_id, &name, &description, &pg_ts(now)?],
                )?;
                let names: Vec<&str> = perms.iter().map(|p| p.name()).collect();
                t.execute(
                    "INSERT INTO role_permissions (role_id, permission_id) \
                     SELECT $1, id FROM permissions WHERE name = ANY($2)",
                    &[&role_id, &names],
                )?;
            }
        }
    }
    Ok(())
}

pub struct Admin {
    pub username: String,
    pub email: String,
    pub password_hash: String,
}

/// Runs the first-start work once; returns true when it ran.
pub fn bootstrap(conn: &Connection, admin: &Admin) -> StoreResult<bool> {
    bootstrap_on(&mut Conn::Sqlite(conn), admin)
}

/// [`bootstrap`] on either backend (one body: it runs once per database).
pub fn bootstrap_on(c: &mut Conn, admin: &Admin) -> StoreResult<bool> {
    if setting(c, DONE_KEY)?.is_some() {
        return Ok(false);
    }
    let now = now();
    ensure_permissions(c)?;
    let org_id = new_id();
    crate::store::organizations::insert_org(
        c,
        &crate::store::organizations::NewOrg {
            id: org_id.clone(),
            name: DEFAULT_ORG.into(),
            domain: None,
            description: Some("The organization that new registrations join".into()),
            settings: "{}".into(),
            now: now.clone(),
        },
    )?;
    insert_system_roles(c, &org_id, &now)?;
    let org_id_copy = org_id.clone();
    let admin_role = match c {
        Conn::Sqlite(conn) => crate::store::users::role_id_by_name(conn, &org_id, "admin")?,
        Conn::Postgres(t) => pg::role_id_by_name(t, &org_id, "admin")?,
    };
    insert_user_on(
        c,
        &NewUser {
            id: new_id(),
            organization_id: org_id,
            role_id: admin_role,
            username: admin.username.clone(),
            email: admin.email.clone(),
            full_name: Some("Administrator".into()),
            password_hash: admin.password_hash.clone(),
            is_superuser: true,
            now: now.clone(),
        },
    )?;
    init(c, REGISTRATION_ORG_KEY, &org_id_copy, &now)?;
    init(c, DONE_KEY, &now, &now)?;
    Ok(true)
}

/// Whether the first-start work has run on this database.
pub fn is_bootstrapped(conn: &Connection) -> StoreResult<bool> {
    Ok(get_setting(conn, DONE_KEY)?.is_some())
}

/// [`is_bootstrapped`] on either backend.
pub fn is_bootstrapped_on(c: &mut Conn) -> StoreResult<bool> {
    Ok(setting(c, DONE_KEY)?.is_some())
}

/// The organization that registrations join: the one the first start created, kept by id so
/// that renaming organizations changes nothing.
pub fn registration_org_id(conn: &Connection) -> StoreResult<Option<String>> {
    get_setting(conn, REGISTRATION_ORG_KEY)
}

/// [`registration_org_id`] on either backend.
pub fn registration_org_id_on(c: &mut Conn) -> StoreResult<Option<String>> {
    setting(c, REGISTRATION_ORG_KEY)
}

/// Databases bootstrapped before the registration organization was kept by id: keep the one
/// named `Default` now, once.
pub fn ensure_registration_org(conn: &Connection) -> StoreResult<()> {
    ensure_registration_org_on(&mut Conn::Sqlite(conn))
}

/// [`ensure_registration_org`] on either backend.
pub fn ensure_registration_org_on(c: &mut Conn) -> StoreResult<()> {
    if setting(c, REGISTRATION_ORG_KEY)?.is_some() {
        return Ok(());
    }
    let id = match c {
        Conn::Sqlite(conn) => {
            use rusqlite::OptionalExtension;
            conn.prepare_cached("SELECT id FROM organizations WHERE name = ?1 ORDER BY created_at LIMIT 1")?
                .query_row([DEFAULT_ORG], |r| r.get(0))
                .optional()?
        }
        Conn::Postgres(t) => pg::oldest_org_named(t, DEFAULT_ORG)?,
    };
    if let Some(id) = id {
        init(c, REGISTRATION_ORG_KEY, &id, &now())?;
    }
    Ok(())
}

/// A server setting (SQLite: `store::auth::get_setting`).
fn setting(c: &mut Conn, key: &str) -> StoreResult<Option<String>> {
    match c {
        Conn::Sqlite(conn) => get_setting(conn, key),
        Conn::Postgres(t) => pg::get_setting(t, key),
    }
}

/// Stores a setting unless it has one (SQLite: `store::auth::init_setting`).
fn init(c: &mut Conn, key: &str, value: &str, now: &str) -> StoreResult<String> {
    match c {
        Conn::Sqlite(conn) => init_setting(conn, key, value, now),
        Conn::Postgres(t) => pg::init_setting(t, key, value, now),
    }
}

/// The PostgreSQL twins of what bootstrap needs of other areas (server settings: `store::auth`;
/// a role by name: `store::users`), not ported there yet; the lead unifies them at merge.
mod pg {
    use postgres::Transaction;

    use crate::store::{conn::pg_ts, error::StoreResult};

    pub(super) fn get_setting(t: &mut Transaction, key: &str) -> StoreResult<Option<String>> {
        Ok(t.query_opt("SELECT value FROM server_settings WHERE key = $1", &[&key])?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    pub(super) fn init_setting(t: &mut Transaction, key: &str, value: &str, now: &str) -> StoreResult<String> {
        t.execute(
            "INSERT INTO server_settings (key, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            &[&key, &value, &pg_ts(now)?],
        )?;
        Ok(get_setting(t, key)?.unwrap_or_default())
    }

    pub(super) fn role_id_by_name(
        t: &mut Transaction,
        organization_id: &str,
        name: &str,
    ) -> StoreResult<Option<String>> {
        Ok(t.query_opt("SELECT id FROM roles WHERE organization_id = $1 AND name = $2", &[&organization_id, &name])?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    /// SQLite's `ORDER BY created_at LIMIT 1`, with the id as the tie-break it leaves to rowid.
    pub(super) fn oldest_org_named(t: &mut Transaction, name: &str) -> StoreResult<Option<String>> {
        Ok(t.query_opt("SELECT id FROM organizations WHERE name = $1 ORDER BY created_at, id LIMIT 1", &[&name])?
            .map(|r| r.try_get(0))
            .transpose()?)
    }
}
