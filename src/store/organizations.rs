//! Organizations, on both backends. A non-superuser's scope is their own organization, so the
//! scope filters on the organization's own id here.
//!
//! Layout of a ported area (the pattern for the others): the pub functions, with their types, are
//! the area's interface; each takes `c: &mut Conn` and dispatches once to the private `sqlite`
//! or `pg` module below, which hold the two SQL twins side by side in this one file, so that a
//! change to one is made next to the other. The SQLite module is the code of before, unchanged.

use crate::{
    authz::Scope,
    model::organizations::Organization,
    pagination::Page,
    store::{conn::Conn, error::StoreResult},
};

const NAME_TAKEN: &str = "Organization name already exists";

/// An organization the scope may see, active or not.
pub fn get_org(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Option<Organization>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_org(c, scope, id),
        Conn::Postgres(t) => pg::get_org(t, scope, id),
    }
}

#[derive(Debug, Clone, Default)]
pub struct OrgFilter {
    /// Case-insensitive substring of name or domain.
    pub search: Option<String>,
    pub is_active: bool,
}

/// One page of the organizations the scope may see, newest first, and the total count.
pub fn list_orgs(c: &mut Conn, scope: &Scope, filter: &OrgFilter, page: Page) -> StoreResult<(Vec<Organization>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_orgs(c, scope, filter, page),
        Conn::Postgres(t) => pg::list_orgs(t, scope, filter, page),
    }
}

pub struct NewOrg {
    pub id: String,
    pub name: String,
    pub domain: Option<String>,
    pub description: Option<String>,
    /// A JSON object, as text.
    pub settings: String,
    pub now: String,
}

/// Inserts an organization (without its roles); a taken name, in any letter case, is a 409.
pub fn insert_org(c: &mut Conn, o: &NewOrg) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_org(c, o),
        Conn::Postgres(t) => pg::insert_org(t, o),
    }
}

/// What `PUT /organizations/{id}` changes; `None` leaves a column as it is, `Some(None)` clears it.
#[derive(Debug, Default)]
pub struct OrgChanges {
    pub name: Option<String>,
    pub domain: Option<Option<String>>,
    pub description: Option<Option<String>>,
    pub settings: Option<String>,
    pub is_active: Option<bool>,
}

impl OrgChanges {
    /// (whether to set, the value) of a clearable column.
    fn split(v: &Option<Option<String>>) -> (bool, Option<String>) {
        match v {
            Some(v) => (true, v.clone()),
            None => (false, None),
        }
    }
}

/// Applies `changes` to an organization of the scope; `None` when the scope has no such one.
pub fn update_org(
    c: &mut Conn,
    scope: &Scope,
    id: &str,
    changes: &OrgChanges,
    now: &str,
) -> StoreResult<Option<Organization>> {
    match c {
        Conn::Sqlite(c) => sqlite::update_org(c, scope, id, changes, now),
        Conn::Postgres(t) => pg::update_org(t, scope, id, changes, now),
    }
}

/// Whether an organization with this id exists (active or not).
pub fn org_exists(c: &mut Conn, id: &str) -> StoreResult<bool> {
    Ok(get_org(c, &Scope::system_all(), id)?.is_some())
}

/// The id of the system `member` role of an organization; every organization has one.
pub fn member_role_id(c: &mut Conn, organization_id: &str) -> StoreResult<String> {
    let id = match c {
        Conn::Sqlite(c) => sqlite::member_role_id(c, organization_id)?,
        Conn::Postgres(t) => pg::member_role_id(t, organization_id)?,
    };
    id.ok_or_else(|| {
        crate::store::error::StoreError::internal(format_args!("organization {organization_id} has no member role"))
    })
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{NAME_TAKEN, NewOrg, OrgChanges, OrgFilter};
    use crate::{
        authz::Scope,
        db::{json_col, search_needle},
        model::organizations::Organization,
        pagination::Page,
        store::error::{StoreResult, conflict_on_unique},
    };

    const ORG_COLS: &str = "o.id, o.name, o.domain, o.description, o.settings, o.is_active, o.created_at, o.updated_at";

    fn org_from_row(r: &Row<'_>) -> rusqlite::Result<Organization> {
        Ok(Organization {
            id: r.get(0)?,
            name: r.get(1)?,
            domain: r.get(2)?,
            description: r.get(3)?,
            settings: json_col(r, 4)?,
            is_active: r.get(5)?,
            created_at: r.get(6)?,
            updated_at: r.get(7)?,
        })
    }

    /// An organization the scope may see, active or not.
    pub(super) fn get_org(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Option<Organization>> {
        let sql = format!("SELECT {ORG_COLS} FROM organizations o WHERE o.id = ?1 AND (?2 IS NULL OR o.id = ?2)");
        Ok(conn.prepare_cached(&sql)?.query_row(params![id, scope.org()], org_from_row).optional()?)
    }

    const ORG_LIST_WHERE: &str = "(?1 IS NULL OR o.id = ?1) AND o.is_active = ?2 \
         AND (?3 IS NULL OR instr(lower(o.name), ?3) > 0 OR instr(lower(o.domain), ?3) > 0)";

    /// One page of the organizations the scope may see, newest first, and the total count.
    pub(super) fn list_orgs(
        conn: &Connection,
        scope: &Scope,
        filter: &OrgFilter,
        page: Page,
    ) -> StoreResult<(Vec<Organization>, i64)> {
        let pattern = filter.search.as_deref().map(search_needle);
        let total: i64 = conn
            .prepare_cached(&format!("SELECT COUNT(*) FROM organizations o WHERE {ORG_LIST_WHERE}"))?
            .query_row(params![scope.org(), filter.is_active, pattern], |r| r.get(0))?;
        let sql = format!(
            "SELECT {ORG_COLS} FROM organizations o WHERE {ORG_LIST_WHERE} \
             ORDER BY o.created_at DESC, o.id DESC LIMIT ?4 OFFSET ?5"
        );
        let rows = conn
            .prepare_cached(&sql)?
            .query_map(params![scope.org(), filter.is_active, pattern, page.limit, page.skip], org_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((rows, total))
    }

    /// Inserts an organization (without its roles); a taken name, in any letter case, is a 409.
    pub(super) fn insert_org(conn: &Connection, o: &NewOrg) -> StoreResult<()> {
        conn.prepare_cached(
            "INSERT INTO organizations (id, name, domain, description, settings, is_active, created_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
        )?
        .execute(params![o.id, o.name, o.domain, o.description, o.settings, o.now])
        .map_err(conflict_on_unique(NAME_TAKEN))?;
        Ok(())
    }

    /// Applies `changes` to an organization of the scope; `None` when the scope has no such one.
    pub(super) fn update_org(
        conn: &Connection,
        scope: &Scope,
        id: &str,
        c: &OrgChanges,
        now: &str,
    ) -> StoreResult<Option<Organization>> {
        let (set_domain, domain) = OrgChanges::split(&c.domain);
        let (set_description, description) = OrgChanges::split(&c.description);
        let n = conn
            .prepare_cached(
                "UPDATE organizations SET name = COALESCE(?3, name), \
                 domain = CASE WHEN ?4 THEN ?5 ELSE domain END, \
                 description = CASE WHEN ?6 THEN ?7 ELSE description END, \
                 settings = COALESCE(?8, settings), is_active = COALESCE(?9, is_active), updated_at = ?10 \
                 WHERE id = ?1 AND (?2 IS NULL OR id = ?2)",
            )?
            .execute(params![
                id,
                scope.org(),
                c.name,
                set_domain,
                domain,
                set_description,
                description,
                c.settings,
                c.is_active,
                now
            ])
            .map_err(conflict_on_unique(NAME_TAKEN))?;
        if n == 0 {
            return Ok(None);
        }
        get_org(conn, scope, id)
    }

    pub(super) fn member_role_id(conn: &Connection, organization_id: &str) -> StoreResult<Option<String>> {
        Ok(conn
            .prepare_cached("SELECT id FROM roles WHERE organization_id = ?1 AND name = 'member' AND is_system = 1")?
            .query_row([organization_id], |r| r.get(0))
            .optional()?)
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{NAME_TAKEN, NewOrg, OrgChanges, OrgFilter};
    use crate::{
        authz::Scope,
        db::search_needle,
        model::organizations::Organization,
        pagination::Page,
        store::{
            conn::{holds_nul, pg_json_col, pg_ts, pg_ts_col},
            error::{StoreResult, pg_conflict_on_unique},
        },
    };

    // settings as text (parsed by serde_json, as on SQLite); timestamps formatted by pg_ts_col
    const ORG_COLS: &str =
        "o.id, o.name, o.domain, o.description, o.settings::text, o.is_active, o.created_at, o.updated_at";

    fn org_from_row(r: &Row) -> StoreResult<Organization> {
        Ok(Organization {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
            domain: r.try_get(2)?,
            description: r.try_get(3)?,
            settings: pg_json_col(r, 4)?,
            is_active: r.try_get(5)?,
            created_at: pg_ts_col(r, 6)?,
            updated_at: pg_ts_col(r, 7)?,
        })
    }

    pub(super) fn get_org(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Option<Organization>> {
        let sql = format!("SELECT {ORG_COLS} FROM organizations o WHERE o.id = $1 AND ($2::text IS NULL OR o.id = $2)");
        t.query_opt(&sql, &[&id, &scope.org()])?.as_ref().map(org_from_row).transpose()
    }

    // nocase() folds ASCII letters only, like the needle (db::search_needle) and SQLite's lower();
    // strpos, not LIKE, so that %, _ and \ in the search are themselves
    const ORG_LIST_WHERE: &str = "($1::text IS NULL OR o.id = $1) AND o.is_active = $2 \
         AND ($3::text IS NULL OR strpos(nocase(o.name), $3) > 0 OR strpos(nocase(o.domain), $3) > 0)";

    pub(super) fn list_orgs(
        t: &mut Transaction,
        scope: &Scope,
        filter: &OrgFilter,
        page: Page,
    ) -> StoreResult<(Vec<Organization>, i64)> {
        if holds_nul([filter.search.as_deref()]) {
            return Ok((vec![], 0));
        }
        let pattern = filter.search.as_deref().map(search_needle);
        let total: i64 = t
            .query_one(
                &format!("SELECT COUNT(*) FROM organizations o WHERE {ORG_LIST_WHERE}"),
                &[&scope.org(), &filter.is_active, &pattern],
            )?
            .try_get(0)?;
        let sql = format!(
            "SELECT {ORG_COLS} FROM organizations o WHERE {ORG_LIST_WHERE} \
             ORDER BY o.created_at DESC, o.id DESC LIMIT $4 OFFSET $5"
        );
        let rows = t
            .query(&sql, &[&scope.org(), &filter.is_active, &pattern, &page.limit, &page.skip])?
            .iter()
            .map(org_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn insert_org(t: &mut Transaction, o: &NewOrg) -> StoreResult<()> {
        let now = pg_ts(&o.now)?;
        t.execute(
            "INSERT INTO organizations (id, name, domain, description, settings, is_active, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5::text::jsonb, true, $6, $6)",
            &[&o.id, &o.name, &o.domain, &o.description, &o.settings, &now],
        )
        .map_err(pg_conflict_on_unique(NAME_TAKEN))?;
        Ok(())
    }

    pub(super) fn update_org(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
        c: &OrgChanges,
        now: &str,
    ) -> StoreResult<Option<Organization>> {
        let (set_domain, domain) = OrgChanges::split(&c.domain);
        let (set_description, description) = OrgChanges::split(&c.description);
        let now = pg_ts(now)?;
        let n = t
            .execute(
                "UPDATE organizations SET name = COALESCE($3, name), \
                 domain = CASE WHEN $4 THEN $5 ELSE domain END, \
                 description = CASE WHEN $6 THEN $7 ELSE description END, \
                 settings = COALESCE($8::text::jsonb, settings), is_active = COALESCE($9, is_active), \
                 updated_at = $10 \
                 WHERE id = $1 AND ($2::text IS NULL OR id = $2)",
                &[
                    &id,
                    &scope.org(),
                    &c.name,
                    &set_domain,
                    &domain,
                    &set_description,
                    &description,
                    &c.settings,
                    &c.is_active,
                    &now,
                ],
            )
            .map_err(pg_conflict_on_unique(NAME_TAKEN))?;
        if n == 0 {
            return Ok(None);
        }
        get_org(t, scope, id)
    }

    pub(super) fn member_role_id(t: &mut Transaction, organization_id: &str) -> StoreResult<Option<String>> {
        Ok(t.query_opt(
            "SELECT id FROM roles WHERE organization_id = $1 AND name = 'member' AND is_system",
            &[&organization_id],
        )?
        .map(|r| r.try_get(0))
        .transpose()?)
    }
}
