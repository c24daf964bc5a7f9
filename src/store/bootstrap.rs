//! First start on an empty database: the 13 permissions, the `Default` organization with its
//! system roles, and the superuser of `[bootstrap]`. Later starts change nothing.

use rusqlite::params;

use crate::{
    authz::Permission,
    db::{new_id, now},
    store::error::StoreResult,
    store::{
        auth::{get_setting, init_setting},
        conn::{Conn, pg_ts},
        users::{NewUser, insert_user},
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
            // prepared once, on the first execute
            let sql = "INSERT INTO permissions (id, name, resource, action, description) VALUES ($1, $2, $3, $4, $5) \
                       ON CONFLICT (name) DO NOTHING";
            for p in Permission::ALL {
                t.execute(sql, &[&new_id(), &p.name(), &p.resource(), &p.action(), &p.description()])?;
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
pub fn bootstrap(c: &mut Conn, admin: &Admin) -> StoreResult<bool> {
    if get_setting(c, DONE_KEY)?.is_some() {
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
    let admin_role = crate::store::users::role_id_by_name(c, &org_id, "admin")?;
    insert_user(
        c,
        &NewUser {
            id: new_id(),
            organization_id: org_id.clone(),
            role_id: admin_role,
            username: admin.username.clone(),
            email: admin.email.clone(),
            full_name: Some("Administrator".into()),
            password_hash: admin.password_hash.clone(),
            is_superuser: true,
            now: now.clone(),
        },
    )?;
    init_setting(c, REGISTRATION_ORG_KEY, &org_id, &now)?;
    init_setting(c, DONE_KEY, &now, &now)?;
    Ok(true)
}

/// Whether the first-start work has run on this database.
pub fn is_bootstrapped(c: &mut Conn) -> StoreResult<bool> {
    Ok(get_setting(c, DONE_KEY)?.is_some())
}

/// The organization that registrations join: the one the first start created, kept by id so
/// that renaming organizations changes nothing.
pub fn registration_org_id(c: &mut Conn) -> StoreResult<Option<String>> {
    get_setting(c, REGISTRATION_ORG_KEY)
}

/// Databases bootstrapped before the registration organization was kept by id: keep the oldest
/// one named `Default` now, once.
pub fn ensure_registration_org(c: &mut Conn) -> StoreResult<()> {
    if get_setting(c, REGISTRATION_ORG_KEY)?.is_some() {
        return Ok(());
    }
    let id: Option<String> = match c {
        Conn::Sqlite(conn) => {
            use rusqlite::OptionalExtension;
            conn.prepare_cached("SELECT id FROM organizations WHERE name = ?1 ORDER BY created_at LIMIT 1")?
                .query_row([DEFAULT_ORG], |r| r.get(0))
                .optional()?
        }
        // SQLite leaves ties to rowid: the id breaks them here
        Conn::Postgres(t) => t
            .query_opt("SELECT id FROM organizations WHERE name = $1 ORDER BY created_at, id LIMIT 1", &[&DEFAULT_ORG])?
            .map(|r| r.try_get(0))
            .transpose()?,
    };
    if let Some(id) = id {
        init_setting(c, REGISTRATION_ORG_KEY, &id, &now())?;
    }
    Ok(())
}
