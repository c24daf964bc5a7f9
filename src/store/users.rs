//! Users: the row, lookups and inserts shared by auth and the users API.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{
    authz::{Scope, Standing},
    db::search_needle,
    model::users::User,
    pagination::Page,
    store::error::{StoreError, StoreResult, is_unique_violation},
};

macro_rules! user_cols {
    () => {
        "u.id, u.username, u.email, u.full_name, u.organization_id, u.role_id, \
         u.is_active, u.is_superuser, u.created_at, u.updated_at"
    };
}

pub const USER_COLS: &str = user_cols!();

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
pub fn get_user(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Option<User>> {
    const SQL: &str =
        concat!("SELECT ", user_cols!(), " FROM users u WHERE u.id = ?1 AND (?2 IS NULL OR u.organization_id = ?2)");
    Ok(conn.prepare_cached(SQL)?.query_row(params![id, scope.org()], user_from_row).optional()?)
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
pub fn insert_user(conn: &Connection, u: &NewUser) -> StoreResult<User> {
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
    get_user(conn, &Scope::system_all(), &u.id)?.ok_or_else(|| StoreError::internal("inserted user vanished"))
}

/// Maps a unique violation on users to a 409 that says which field is taken.
pub fn user_conflict(e: rusqlite::Error) -> StoreError {
    if is_unique_violation(&e) {
        if e.to_string().contains("users.email") {
            StoreError::conflict("Email already registered")
        } else {
            StoreError::conflict("Username already taken")
        }
    } else {
        e.into()
    }
}

/// The id of a role of `organization_id` by name (system roles: `admin`, `member`).
pub fn role_id_by_name(conn: &Connection, organization_id: &str, name: &str) -> StoreResult<Option<String>> {
    Ok(conn
        .prepare_cached("SELECT id FROM roles WHERE organization_id = ?1 AND name = ?2")?
        .query_row(params![organization_id, name], |r| r.get(0))
        .optional()?)
}

pub fn set_password_hash(conn: &Connection, id: &str, hash: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")?
        .execute(params![id, hash, now])?;
    Ok(())
}

/// The filters of a user list (`GET /users`, `GET /organizations/{id}/members`).
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    /// Case-insensitive substring of username, email or full_name.
    pub search: Option<String>,
    /// Active users (`true`) or deactivated ones (`false`).
    pub is_active: bool,
    pub role_id: Option<String>,
}

macro_rules! user_list_where {
    () => {
        "(?1 IS NULL OR u.organization_id = ?1) AND u.is_active = ?2 \
     AND (?3 IS NULL OR u.role_id = ?3) \
     AND (?4 IS NULL OR instr(lower(u.username), ?4) > 0 OR instr(lower(u.email), ?4) > 0 \
          OR instr(lower(u.full_name), ?4) > 0)"
    };
}

/// The same filter, for a search of three or more characters: candidates come from the trigram
/// index (`users_search`, migration V2) by primary key instead of a scan of the organization, and
/// the substring filters still decide. `+` keeps the planner from driving the query by another index.
macro_rules! user_search_where {
    () => {
        "u.id IN (SELECT user_id FROM users_search WHERE users_search MATCH ?7) \
     AND (?1 IS NULL OR +u.organization_id = ?1) AND +u.is_active = ?2 \
     AND (?3 IS NULL OR +u.role_id = ?3) \
     AND (?4 IS NULL OR instr(lower(u.username), ?4) > 0 OR instr(lower(u.email), ?4) > 0 \
          OR instr(lower(u.full_name), ?4) > 0)"
    };
}

const USERS_COUNT_SQL: &str = concat!("SELECT COUNT(*) FROM users u WHERE ", user_list_where!());
const USERS_PAGE_SQL: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM users u WHERE ",
    user_list_where!(),
    " ORDER BY u.created_at DESC, u.id DESC LIMIT ?5 OFFSET ?6"
);
const USERS_SEARCH_COUNT_SQL: &str = concat!("SELECT COUNT(*) FROM users u WHERE ", user_search_where!());
const USERS_SEARCH_PAGE_SQL: &str = concat!(
    "SELECT ",
    user_cols!(),
    " FROM users u WHERE ",
    user_search_where!(),
    " ORDER BY u.created_at DESC, u.id DESC LIMIT ?5 OFFSET ?6"
);

/// An FTS5 query for `term` as a substring of username, email or full name; `None` when the
/// trigram index cannot answer it (fewer than three characters).
fn trigram_query(term: &str) -> Option<String> {
    // FTS5 reads its query as a C string: a NUL would cut it short
    (term.chars().count() >= 3 && !term.contains('\0'))
        .then(|| format!("{{username email full_name}} : \"{}\"", term.replace('"', "\"\"")))
}

/// One page of the users of the scope that match `filter`, newest first, and the total count.
pub fn list_users(conn: &Connection, scope: &Scope, filter: &UserFilter, page: Page) -> StoreResult<(Vec<User>, i64)> {
    let pattern = filter.search.as_deref().map(search_needle);
    let fts = filter.search.as_deref().and_then(trigram_query);
    let (count_sql, page_sql) = match fts {
        Some(_) => (USERS_SEARCH_COUNT_SQL, USERS_SEARCH_PAGE_SQL),
        None => (USERS_COUNT_SQL, USERS_PAGE_SQL),
    };
    // ?7 is unused by the plain variant; SQLite binds by number, so bind it only when present
    let total: i64 = match &fts {
        Some(q) => conn.prepare_cached(count_sql)?.query_row(
            params![scope.org(), filter.is_active, filter.role_id, pattern, page.limit, page.skip, q],
            |r| r.get(0),
        )?,
        None => conn
            .prepare_cached(count_sql)?
            .query_row(params![scope.org(), filter.is_active, filter.role_id, pattern], |r| r.get(0))?,
    };
    let mut stmt = conn.prepare_cached(page_sql)?;
    let rows = match &fts {
        Some(q) => stmt.query_map(
            params![scope.org(), filter.is_active, filter.role_id, pattern, page.limit, page.skip, q],
            user_from_row,
        )?,
        None => stmt.query_map(
            params![scope.org(), filter.is_active, filter.role_id, pattern, page.limit, page.skip],
            user_from_row,
        )?,
    }
    .collect::<Result<Vec<_>, _>>()?;
    Ok((rows, total))
}

/// What the escalation rule needs to know of `user`: superuser or not, and the kind of its role.
pub fn standing(conn: &Connection, user: &User) -> StoreResult<Standing> {
    let role = match &user.role_id {
        Some(r) => crate::store::roles::role_kind(conn, &user.organization_id, r)?,
        None => None,
    };
    Ok(Standing { is_superuser: user.is_superuser, role })
}

/// What `PUT /users/{id}` changes; `None` leaves a column as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    /// `Some(None)` clears the full name.
    pub full_name: Option<Option<String>>,
    pub is_active: Option<bool>,
    pub is_superuser: Option<bool>,
    pub password_hash: Option<String>,
}

/// Applies `changes` to a user of the scope; `None` when there is no such user. A taken email
/// is a 409.
pub fn update_user(
    conn: &Connection,
    scope: &Scope,
    id: &str,
    changes: &UserChanges,
    now: &str,
) -> StoreResult<Option<User>> {
    let (set_full_name, full_name) = match &changes.full_name {
        Some(v) => (true, v.clone()),
        None => (false, None),
    };
    let n = conn
        .prepare_cached(
            "UPDATE users SET email = COALESCE(?3, email), \
             full_name = CASE WHEN ?4 THEN ?5 ELSE full_name END, \
             is_active = COALESCE(?6, is_active), is_superuser = COALESCE(?7, is_superuser), \
             password_hash = COALESCE(?8, password_hash), updated_at = ?9 \
             WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)",
        )?
        .execute(params![
            id,
            scope.org(),
            changes.email,
            set_full_name,
            full_name,
            changes.is_active,
            changes.is_superuser,
            changes.password_hash,
            now
        ])
        .map_err(user_conflict)?;
    if n == 0 {
        return Ok(None);
    }
    get_user(conn, scope, id)
}

/// Activates or deactivates a user of the scope; a user already in that state is left as is.
pub fn set_active(conn: &Connection, scope: &Scope, id: &str, active: bool, now: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE users SET is_active = ?3, updated_at = ?4 \
         WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2) AND is_active <> ?3",
    )?
    .execute(params![id, scope.org(), active, now])?;
    Ok(())
}

/// Gives a user of the scope another role (already checked to be of the user's organization).
pub fn set_role(conn: &Connection, scope: &Scope, id: &str, role_id: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached(
        "UPDATE users SET role_id = ?3, updated_at = ?4 WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)",
    )?
    .execute(params![id, scope.org(), role_id, now])?;
    Ok(())
}

/// Moves a user into `organization_id` with `role_id`, and takes them out of every project of
/// any other organization.
pub fn move_to_org(conn: &Connection, id: &str, organization_id: &str, role_id: &str, now: &str) -> StoreResult<()> {
    conn.prepare_cached("UPDATE users SET organization_id = ?2, role_id = ?3, updated_at = ?4 WHERE id = ?1")?
        .execute(params![id, organization_id, role_id, now])?;
    conn.prepare_cached(
        "DELETE FROM user_projects WHERE user_id = ?1 \
         AND project_id IN (SELECT id FROM projects WHERE organization_id <> ?2)",
    )?
    .execute(params![id, organization_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The trigram path must answer exactly what the substring scan answers, for every kind of term.
    #[test]
    fn trigram_search_matches_the_substring_scan() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("t.db"), 1, std::time::Duration::from_secs(5), None).unwrap();
        let names = [
            ("user5", "user5@example.com", Some("Member 5")),
            ("User50", "USER50@Example.com", None),
            ("a%b_c", "pct@example.com", Some("100% \"quoted\" o'brien")),
            ("axbyc", "plain@example.com", Some("Ünïcode Żółw")),
            ("other", "someone@user5.org", Some("ünïcode żółw")),
            ("nul", "nul@example.com", Some("ab\0cd")),
        ];
        let scope = db
            .write_blocking(|tx| -> StoreResult<_> {
                tx.execute(
                    "INSERT INTO organizations (id, name, created_at, updated_at) VALUES ('o', 'O', 't', 't')",
                    [],
                )?;
                for (i, (u, e, f)) in names.iter().enumerate() {
                    insert_user(
                        tx,
                        &NewUser {
                            id: format!("id{i}"),
                            organization_id: "o".into(),
                            role_id: None,
                            username: u.to_string(),
                            email: e.to_string(),
                            full_name: f.map(str::to_string),
                            password_hash: "x".into(),
                            is_superuser: false,
                            now: format!("2026-01-01T00:00:0{i}.000000Z"),
                        },
                    )?;
                }
                // the index follows updates
                update_user(
                    tx,
                    &Scope::system_all(),
                    "id1",
                    &UserChanges { full_name: Some(Some("Renamed ZZTOP".into())), ..Default::default() },
                    "t",
                )?;
                Ok(Scope::system("o"))
            })
            .unwrap();
        let terms = [
            "user5",
            "USER5",
            "ser",
            "er5",
            "%b_",
            "a%b",
            "a_b",
            "b_c",
            "\"quoted\"",
            "o'brien",
            "100%",
            "Ünï",
            "ünï",
            "ÜNÏ",
            "żółw",
            "Żółw",
            "example.com",
            "@USER5",
            "zztop",
            "Member 5",
            "nothing here",
            "us",
            "5",
            "ab\0c",
            "b\0",
            "\0",
            "a\0x",
        ];
        db.write_blocking(|c| -> StoreResult<_> {
            for term in terms {
                let pattern = search_needle(term);
                let by_scan: Vec<String> = c
                    .prepare(USERS_PAGE_SQL)?
                    .query_map(params![scope.org(), true, None::<String>, pattern, 100, 0], |r| r.get(0))?
                    .collect::<Result<_, _>>()?;
                let filter = UserFilter { search: Some(term.into()), is_active: true, role_id: None };
                let (rows, total) = list_users(c, &scope, &filter, Page { skip: 0, limit: 100 })?;
                let got: Vec<String> = rows.into_iter().map(|u| u.id).collect();
                assert_eq!(got, by_scan, "search {term:?}");
                assert_eq!(total as usize, by_scan.len(), "total for {term:?}");
            }
            Ok(())
        })
        .unwrap();
    }
}
