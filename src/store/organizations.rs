//! SQL for /organizations. A non-superuser's scope is their own organization, so the scope
//! filters on the organization's own id here.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    authz::Scope,
    db::{json_col, search_needle},
    model::organizations::Organization,
    pagination::Page,
    store::error::{StoreError, StoreResult, conflict_on_unique},
};

const ORG_COLS: &str = "o.id, o.name, o.domain, o.description, o.settings, o.is_active, o.created_at, o.updated_at";
const NAME_TAKEN: &str = "Organization name already exists";

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
pub fn get_org(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Option<Organization>> {
    let sql = format!("SELECT {ORG_COLS} FROM organizations o WHERE o.id = ?1 AND (?2 IS NULL OR o.id = ?2)");
    Ok(conn.prepare_cached(&sql)?.query_row(params![id, scope.org()], org_from_row).optional()?)
}

#[derive(Debug, Clone, Default)]
pub struct OrgFilter {
    /// Case-insensitive substring of name or domain.
    pub search: Option<String>,
    pub is_active: bool,
}

const ORG_LIST_WHERE: &str = "(?1 IS NULL OR o.id = ?1) AND o.is_active = ?2 \
     AND (?3 IS NULL OR instr(lower(o.name), ?3) > 0 OR instr(lower(o.domain), ?3) > 0)";

/// One page of the organizations the scope may see, newest first, and the total count.
pub fn list_orgs(
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
pub fn insert_org(conn: &Connection, o: &NewOrg) -> StoreResult<()> {
    conn.prepare_cached(
        "INSERT INTO organizations (id, name, domain, description, settings, is_active, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?6)",
    )?
    .execute(params![o.id, o.name, o.domain, o.description, o.settings, o.now])
    .map_err(conflict_on_unique(NAME_TAKEN))?;
    Ok(())
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

/// Applies `changes` to an organization of the scope; `None` when the scope has no such one.
pub fn update_org(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    c: &OrgChanges,
    now: &str,
) -> StoreResult<Option<Organization>> {
    let split = |v: &Option<Option<String>>| match v {
        Some(v) => (true, v.clone()),
        None => (false, None),
    };
    let (set_domain, domain) = split(&c.domain);
    let (set_description, description) = split(&c.description);
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

/// Whether an organization with this id exists (active or not).
pub fn org_exists(conn: &Connection, id: &str) -> StoreResult<bool> {
    Ok(get_org(conn, &Scope::system_all(), id)?.is_some())
}

/// The id of the system `member` role of an organization; every organization has one.
pub fn member_role_id(conn: &Connection, organization_id: &str) -> StoreResult<String> {
    conn.prepare_cached("SELECT id FROM roles WHERE organization_id = ?1 AND name = 'member' AND is_system = 1")?
        .query_row([organization_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::internal(format_args!("organization {organization_id} has no member role")))
}
