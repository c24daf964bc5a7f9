//! /projects on both backends: projects of the caller's scope and their members
//! (`user_projects`). The pub functions dispatch once to the private `sqlite` or `pg` module
//! below (the layout of `store::organizations`).

use crate::{
    authz::Scope,
    model::{projects::Project, users::User},
    pagination::Page,
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};

/// Filters of `GET /projects`.
pub struct ProjectFilter {
    pub search: Option<String>,
    pub is_active: bool,
}

/// One page of the scope's projects and the total of matches.
pub fn list_projects(c: &mut Conn, scope: &Scope, f: &ProjectFilter, page: Page) -> StoreResult<(Vec<Project>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_projects(c, scope, f, page),
        Conn::Postgres(t) => pg::list_projects(t, scope, f, page),
    }
}

/// A project of the scope, active or not.
pub fn get_project(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Option<Project>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_project(c, scope, id),
        Conn::Postgres(t) => pg::get_project(t, scope, id),
    }
}

/// A project of the scope, or 404.
pub fn find_project(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Project> {
    get_project(c, scope, id)?.ok_or_else(not_found)
}

pub fn not_found() -> StoreError {
    StoreError::NotFound("Project not found")
}

pub struct NewProject {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub description: Option<String>,
    /// JSON object text
    pub settings: String,
    /// `None`: made by the server itself (no member yet)
    pub created_by: Option<String>,
    pub now: String,
}

/// Inserts a project and makes its creator a member.
pub fn insert_project(c: &mut Conn, p: &NewProject) -> StoreResult<Project> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_project(c, p),
        Conn::Postgres(t) => pg::insert_project(t, p),
    }
}

/// The fields a PUT may change; `None` leaves a field as it is.
#[derive(Default)]
pub struct ProjectChanges {
    pub name: Option<String>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
    /// JSON object text
    pub settings: Option<String>,
    pub is_active: Option<bool>,
}

/// Applies `changes` to the project `id` and stamps `updated_at`.
pub fn update_project(c: &mut Conn, scope: &Scope, id: &str, changes: &ProjectChanges, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::update_project(c, scope, id, changes, now),
        Conn::Postgres(t) => pg::update_project(t, scope, id, changes, now),
    }
}

/// Soft delete: `is_active = false`.
pub fn deactivate_project(c: &mut Conn, scope: &Scope, id: &str, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::deactivate_project(c, scope, id, now),
        Conn::Postgres(t) => pg::deactivate_project(t, scope, id, now),
    }
}

/// Filters of `GET /projects/{id}/members`.
pub struct MemberFilter {
    pub search: Option<String>,
    pub is_active: bool,
}

/// One page of a project's members and the total of matches.
pub fn list_members(
    c: &mut Conn,
    scope: &Scope,
    project_id: &str,
    f: &MemberFilter,
    page: Page,
) -> StoreResult<(Vec<User>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_members(c, scope, project_id, f, page),
        Conn::Postgres(t) => pg::list_members(t, scope, project_id, f, page),
    }
}

/// Whether `user_id` names a user (active or not) of `organization_id`.
pub fn user_in_org(c: &mut Conn, user_id: &str, organization_id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::user_in_org(c, user_id, organization_id),
        Conn::Postgres(t) => pg::user_in_org(t, user_id, organization_id),
    }
}

/// Makes `user_id` a member; returns false when they already were.
pub fn add_member(c: &mut Conn, scope: &Scope, project_id: &str, user_id: &str, now: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::add_member(c, scope, project_id, user_id, now),
        Conn::Postgres(t) => pg::add_member(t, scope, project_id, user_id, now),
    }
}

/// Removes a membership; returns false when there was none.
pub fn remove_member(c: &mut Conn, scope: &Scope, project_id: &str, user_id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::remove_member(c, scope, project_id, user_id),
        Conn::Postgres(t) => pg::remove_member(t, scope, project_id, user_id),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{MemberFilter, NewProject, ProjectChanges, ProjectFilter};
    use crate::{
        authz::Scope,
        db::{json_col, search_needle},
        model::{projects::Project, users::User},
        pagination::Page,
        store::error::{StoreError, StoreResult},
        store::users::{USER_COLS, user_from_row},
    };

    const PROJECT_COLS: &str = "p.id, p.organization_id, p.name, p.description, p.settings, p.created_by, p.is_active, \
                                (SELECT COUNT(*) FROM user_projects up WHERE up.project_id = p.id), \
                                p.created_at, p.updated_at";

    fn project_from_row(r: &Row<'_>) -> rusqlite::Result<Project> {
        Ok(Project {
            id: r.get(0)?,
            organization_id: r.get(1)?,
            name: r.get(2)?,
            description: r.get(3)?,
            settings: json_col(r, 4)?,
            created_by: r.get(5)?,
            is_active: r.get(6)?,
            member_count: r.get(7)?,
            created_at: r.get(8)?,
            updated_at: r.get(9)?,
        })
    }

    /// One page of the scope's projects and the total of matches.
    pub(super) fn list_projects(
        conn: &Connection,
        scope: &Scope,
        f: &ProjectFilter,
        page: Page,
    ) -> StoreResult<(Vec<Project>, i64)> {
        let pattern = f.search.as_deref().map(search_needle);
        let filter = "FROM projects p WHERE (?1 IS NULL OR p.organization_id = ?1) AND p.is_active = ?2 \
                      AND (?3 IS NULL OR instr(lower(p.name), ?3) > 0 OR instr(lower(p.description), ?3) > 0)";
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) {filter}"))?
            .query_row(params![scope.org(), f.is_active, pattern], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {PROJECT_COLS} {filter} ORDER BY p.created_at DESC, p.id DESC LIMIT ?4 OFFSET ?5"
            ))?
            .query_map(params![scope.org(), f.is_active, pattern, page.limit, page.skip], project_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// A project of the scope, active or not.
    pub(super) fn get_project(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Option<Project>> {
        let sql =
            format!("SELECT {PROJECT_COLS} FROM projects p WHERE p.id = ?1 AND (?2 IS NULL OR p.organization_id = ?2)");
        Ok(conn.prepare_cached(&sql)?.query_row(params![id, scope.org()], project_from_row).optional()?)
    }

    /// Inserts a project and makes its creator a member.
    pub(super) fn insert_project(conn: &Connection, p: &NewProject) -> StoreResult<Project> {
        conn.prepare_cached(
            "INSERT INTO projects (id, organization_id, name, description, settings, created_by, is_active, \
             created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
        )?
        .execute(params![p.id, p.organization_id, p.name, p.description, p.settings, p.created_by, p.now])?;
        // the project is of its own organization: the creator joins it there
        let own = Scope::system(&p.organization_id);
        if let Some(creator) = &p.created_by {
            add_member(conn, &own, &p.id, creator, &p.now)?;
        }
        get_project(conn, &own, &p.id)?.ok_or_else(|| StoreError::internal("inserted project vanished"))
    }

    /// Applies `c` to the project `id` and stamps `updated_at`.
    pub(super) fn update_project(
        conn: &Connection,
        scope: &Scope,
        id: &str,
        c: &ProjectChanges,
        now: &str,
    ) -> StoreResult<()> {
        conn.prepare_cached(
            "UPDATE projects SET name = COALESCE(?2, name), description = CASE WHEN ?7 THEN ?3 ELSE description END, \
             settings = COALESCE(?4, settings), is_active = COALESCE(?5, is_active), updated_at = ?6 \
             WHERE id = ?1 AND (?8 IS NULL OR organization_id = ?8)",
        )?
        .execute(params![
            id,
            c.name,
            c.description.clone().flatten(),
            c.settings,
            c.is_active,
            now,
            c.description.is_some(),
            scope.org()
        ])?;
        Ok(())
    }

    /// Soft delete: `is_active = false`.
    pub(super) fn deactivate_project(conn: &Connection, scope: &Scope, id: &str, now: &str) -> StoreResult<()> {
        conn.prepare_cached(
            "UPDATE projects SET is_active = 0, updated_at = ?2 WHERE id = ?1 AND (?3 IS NULL OR organization_id = ?3)",
        )?
        .execute(params![id, now, scope.org()])?;
        Ok(())
    }

    /// One page of a project's members and the total of matches.
    pub(super) fn list_members(
        conn: &Connection,
        scope: &Scope,
        project_id: &str,
        f: &MemberFilter,
        page: Page,
    ) -> StoreResult<(Vec<User>, i64)> {
        let pattern = f.search.as_deref().map(search_needle);
        let filter = "FROM user_projects up JOIN users u ON u.id = up.user_id \
                      JOIN projects p ON p.id = up.project_id AND (?6 IS NULL OR p.organization_id = ?6) \
                      WHERE up.project_id = ?1 AND u.is_active = ?2 \
                      AND (?3 IS NULL OR instr(lower(u.username), ?3) > 0 OR instr(lower(u.email), ?3) > 0 \
                           OR instr(lower(u.full_name), ?3) > 0)";
        let org = scope.org();
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) {filter}"))?
            // ?4 and ?5 are the page's, unused here: SQLite counts parameters up to the highest
            .query_row(params![project_id, f.is_active, pattern, page.limit, page.skip, org], |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {USER_COLS} {filter} ORDER BY u.created_at DESC, u.id DESC LIMIT ?4 OFFSET ?5"
            ))?
            .query_map(params![project_id, f.is_active, pattern, page.limit, page.skip, org], user_from_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((rows, total))
    }

    /// Whether `user_id` names a user (active or not) of `organization_id`.
    pub(super) fn user_in_org(conn: &Connection, user_id: &str, organization_id: &str) -> StoreResult<bool> {
        Ok(conn
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1 AND organization_id = ?2")?
            .query_row(params![user_id, organization_id], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Makes `user_id` a member; returns false when they already were.
    pub(super) fn add_member(
        conn: &Connection,
        scope: &Scope,
        project_id: &str,
        user_id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let n = conn
            .prepare_cached(
                "INSERT OR IGNORE INTO user_projects (project_id, user_id, created_at) \
                 SELECT id, ?2, ?3 FROM projects WHERE id = ?1 AND (?4 IS NULL OR organization_id = ?4)",
            )?
            .execute(params![project_id, user_id, now, scope.org()])?;
        Ok(n > 0)
    }

    /// Removes a membership; returns false when there was none.
    pub(super) fn remove_member(
        conn: &Connection,
        scope: &Scope,
        project_id: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        let n = conn
            .prepare_cached(
                "DELETE FROM user_projects WHERE project_id = ?1 AND user_id = ?2 \
                 AND project_id IN (SELECT id FROM projects WHERE id = ?1 AND (?3 IS NULL OR organization_id = ?3))",
            )?
            .execute(params![project_id, user_id, scope.org()])?;
        Ok(n > 0)
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{MemberFilter, NewProject, ProjectChanges, ProjectFilter};
    use crate::{
        authz::Scope,
        db::search_needle,
        model::{projects::Project, users::User},
        pagination::Page,
        store::{
            conn::{holds_nul, pg_json_col, pg_ts, pg_ts_col},
            error::{StoreError, StoreResult},
        },
    };

    const PROJECT_COLS: &str = "p.id, p.organization_id, p.name, p.description, p.settings::text, p.created_by, \
                                p.is_active, (SELECT COUNT(*) FROM user_projects up WHERE up.project_id = p.id), \
                                p.created_at, p.updated_at";

    fn project_from_row(r: &Row) -> StoreResult<Project> {
        Ok(Project {
            id: r.try_get(0)?,
            organization_id: r.try_get(1)?,
            name: r.try_get(2)?,
            description: r.try_get(3)?,
            settings: pg_json_col(r, 4)?,
            created_by: r.try_get(5)?,
            is_active: r.try_get(6)?,
            member_count: r.try_get(7)?,
            created_at: pg_ts_col(r, 8)?,
            updated_at: pg_ts_col(r, 9)?,
        })
    }

    use crate::store::users::pg::{USER_COLS as MEMBER_COLS, user_from_row as member_from_row};

    // strpos over nocase(): SQLite's instr(lower(..)) (ASCII folding; %, _ and \ are themselves)
    const PROJECT_FILTER: &str = "FROM projects p WHERE ($1::text IS NULL OR p.organization_id = $1) \
         AND p.is_active = $2 \
         AND ($3::text IS NULL OR strpos(nocase(p.name), $3) > 0 OR strpos(nocase(p.description), $3) > 0)";

    pub(super) fn list_projects(
        t: &mut Transaction,
        scope: &Scope,
        f: &ProjectFilter,
        page: Page,
    ) -> StoreResult<(Vec<Project>, i64)> {
        if holds_nul([f.search.as_deref()]) {
            return Ok((vec![], 0));
        }
        let pattern = f.search.as_deref().map(search_needle);
        let total: i64 = t
            .query_one(&format!("SELECT COUNT(*) {PROJECT_FILTER}"), &[&scope.org(), &f.is_active, &pattern])?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT {PROJECT_COLS} {PROJECT_FILTER} ORDER BY p.created_at DESC, p.id DESC LIMIT $4 OFFSET $5"
                ),
                &[&scope.org(), &f.is_active, &pattern, &page.limit, &page.skip],
            )?
            .iter()
            .map(project_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn get_project(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Option<Project>> {
        let sql = format!(
            "SELECT {PROJECT_COLS} FROM projects p WHERE p.id = $1 AND ($2::text IS NULL OR p.organization_id = $2)"
        );
        t.query_opt(&sql, &[&id, &scope.org()])?.as_ref().map(project_from_row).transpose()
    }

    pub(super) fn insert_project(t: &mut Transaction, p: &NewProject) -> StoreResult<Project> {
        let now = pg_ts(&p.now)?;
        t.execute(
            "INSERT INTO projects (id, organization_id, name, description, settings, created_by, is_active, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5::text::jsonb, $6, true, $7, $7)",
            &[&p.id, &p.organization_id, &p.name, &p.description, &p.settings, &p.created_by, &now],
        )?;
        let own = Scope::system(&p.organization_id);
        if let Some(creator) = &p.created_by {
            add_member(t, &own, &p.id, creator, &p.now)?;
        }
        get_project(t, &own, &p.id)?.ok_or_else(|| StoreError::internal("inserted project vanished"))
    }

    pub(super) fn update_project(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
        c: &ProjectChanges,
        now: &str,
    ) -> StoreResult<()> {
        t.execute(
            "UPDATE projects SET name = COALESCE($2, name), description = CASE WHEN $7 THEN $3 ELSE description END, \
             settings = COALESCE($4::text::jsonb, settings), is_active = COALESCE($5, is_active), updated_at = $6 \
             WHERE id = $1 AND ($8::text IS NULL OR organization_id = $8)",
            &[
                &id,
                &c.name,
                &c.description.clone().flatten(),
                &c.settings,
                &c.is_active,
                &pg_ts(now)?,
                &c.description.is_some(),
                &scope.org(),
            ],
        )?;
        Ok(())
    }

    pub(super) fn deactivate_project(t: &mut Transaction, scope: &Scope, id: &str, now: &str) -> StoreResult<()> {
        t.execute(
            "UPDATE projects SET is_active = false, updated_at = $2 \
             WHERE id = $1 AND ($3::text IS NULL OR organization_id = $3)",
            &[&id, &pg_ts(now)?, &scope.org()],
        )?;
        Ok(())
    }

    const MEMBER_FILTER: &str = "FROM user_projects up JOIN users u ON u.id = up.user_id \
         JOIN projects p ON p.id = up.project_id AND ($4::text IS NULL OR p.organization_id = $4) \
         WHERE up.project_id = $1 AND u.is_active = $2 \
         AND ($3::text IS NULL OR strpos(nocase(u.username), $3) > 0 OR strpos(nocase(u.email), $3) > 0 \
              OR strpos(nocase(u.full_name), $3) > 0)";

    pub(super) fn list_members(
        t: &mut Transaction,
        scope: &Scope,
        project_id: &str,
        f: &MemberFilter,
        page: Page,
    ) -> StoreResult<(Vec<User>, i64)> {
        if holds_nul([f.search.as_deref()]) {
            return Ok((vec![], 0));
        }
        let pattern = f.search.as_deref().map(search_needle);
        let org = scope.org();
        let total: i64 = t
            .query_one(&format!("SELECT COUNT(*) {MEMBER_FILTER}"), &[&project_id, &f.is_active, &pattern, &org])?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT {MEMBER_COLS} {MEMBER_FILTER} ORDER BY u.created_at DESC, u.id DESC LIMIT $5 OFFSET $6"
                ),
                &[&project_id, &f.is_active, &pattern, &org, &page.limit, &page.skip],
            )?
            .iter()
            .map(member_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn user_in_org(t: &mut Transaction, user_id: &str, organization_id: &str) -> StoreResult<bool> {
        Ok(t.query_opt("SELECT 1 FROM users WHERE id = $1 AND organization_id = $2", &[&user_id, &organization_id])?
            .is_some())
    }

    pub(super) fn add_member(
        t: &mut Transaction,
        scope: &Scope,
        project_id: &str,
        user_id: &str,
        now: &str,
    ) -> StoreResult<bool> {
        let n = t.execute(
            "INSERT INTO user_projects (project_id, user_id, created_at) \
             SELECT id, $2::text, $3::timestamptz FROM projects WHERE id = $1 AND ($4::text IS NULL OR organization_id = $4) \
             ON CONFLICT DO NOTHING",
            &[&project_id, &user_id, &pg_ts(now)?, &scope.org()],
        )?;
        Ok(n > 0)
    }

    pub(super) fn remove_member(
        t: &mut Transaction,
        scope: &Scope,
        project_id: &str,
        user_id: &str,
    ) -> StoreResult<bool> {
        let n = t.execute(
            "DELETE FROM user_projects WHERE project_id = $1 AND user_id = $2 AND project_id IN \
             (SELECT id FROM projects WHERE id = $1 AND ($3::text IS NULL OR organization_id = $3))",
            &[&project_id, &user_id, &scope.org()],
        )?;
        Ok(n > 0)
    }
}
