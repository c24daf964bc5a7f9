//! Users: the row, lookups and inserts shared by auth and the users API, on both backends.
//!
//! Layout of a ported area (src/store/organizations.rs): the pub functions take `c: &mut Conn`
//! and dispatch once to the private `sqlite` module (the SQL of before, unchanged) or to its
//! PostgreSQL twin in `pg`, below.

use crate::{
    authz::{Scope, Standing},
    model::users::User,
    pagination::Page,
    store::{conn::Conn, error::StoreResult},
};

macro_rules! user_cols {
    () => {
        "u.id, u.username, u.email, u.full_name, u.organization_id, u.role_id, \
         u.is_active, u.is_superuser, u.created_at, u.updated_at"
    };
}

/// The SQLite user columns and their reader, for SQLite queries of other areas that list users.
pub use sqlite::{USER_COLS, user_from_row};

const EMAIL_TAKEN: &str = "Email already registered";
const USERNAME_TAKEN: &str = "Username already taken";

/// A user of the scope, active or not.
pub fn get_user(c: &mut Conn, scope: &Scope, id: &str) -> StoreResult<Option<User>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_user(c, scope, id),
        Conn::Postgres(t) => pg::get_user(t, scope, id),
    }
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
pub fn insert_user(c: &mut Conn, u: &NewUser) -> StoreResult<User> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_user(c, u),
        Conn::Postgres(t) => pg::insert_user(t, u),
    }
}

/// The id of a role of `organization_id` by name (system roles: `admin`, `member`).
pub fn role_id_by_name(c: &mut Conn, organization_id: &str, name: &str) -> StoreResult<Option<String>> {
    match c {
        Conn::Sqlite(c) => sqlite::role_id_by_name(c, organization_id, name),
        Conn::Postgres(t) => pg::role_id_by_name(t, organization_id, name),
    }
}

pub fn set_password_hash(c: &mut Conn, id: &str, hash: &str, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::set_password_hash(c, id, hash, now),
        Conn::Postgres(t) => pg::set_password_hash(t, id, hash, now),
    }
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

/// One page of the users of the scope that match `filter`, newest first, and the total count.
pub fn list_users(c: &mut Conn, scope: &Scope, filter: &UserFilter, page: Page) -> StoreResult<(Vec<User>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list_users(c, scope, filter, page),
        Conn::Postgres(t) => pg::list_users(t, scope, filter, page),
    }
}

/// What the escalation rule needs to know of `user`: superuser or not, and the kind of its role.
pub fn standing(c: &mut Conn, user: &User) -> StoreResult<Standing> {
    let role = match &user.role_id {
        // roles are another area's: its SQLite function until it is ported
        Some(r) => crate::store::roles::role_kind(c, &user.organization_id, r)?,
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

impl UserChanges {
    /// (whether to set, the value) of the full name.
    fn full_name(&self) -> (bool, Option<String>) {
        match &self.full_name {
            Some(v) => (true, v.clone()),
            None => (false, None),
        }
    }
}

/// Applies `changes` to a user of the scope; `None` when there is no such user. A taken email
/// is a 409.
pub fn update_user(
    c: &mut Conn,
    scope: &Scope,
    id: &str,
    changes: &UserChanges,
    now: &str,
) -> StoreResult<Option<User>> {
    match c {
        Conn::Sqlite(c) => sqlite::update_user(c, scope, id, changes, now),
        Conn::Postgres(t) => pg::update_user(t, scope, id, changes, now),
    }
}

/// Activates or deactivates a user of the scope; a user already in that state is left as is.
pub fn set_active(c: &mut Conn, scope: &Scope, id: &str, active: bool, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::set_active(c, scope, id, active, now),
        Conn::Postgres(t) => pg::set_active(t, scope, id, active, now),
    }
}

/// Gives a user of the scope another role (already checked to be of the user's organization).
pub fn set_role(c: &mut Conn, scope: &Scope, id: &str, role_id: &str, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::set_role(c, scope, id, role_id, now),
        Conn::Postgres(t) => pg::set_role(t, scope, id, role_id, now),
    }
}

/// Moves a user into `organization_id` with `role_id`, and takes them out of every project of
/// any other organization.
pub fn move_to_org(c: &mut Conn, id: &str, organization_id: &str, role_id: &str, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::move_to_org(c, id, organization_id, role_id, now),
        Conn::Postgres(t) => pg::move_to_org(t, id, organization_id, role_id, now),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{EMAIL_TAKEN, NewUser, USERNAME_TAKEN, UserChanges, UserFilter};
    use crate::{
        authz::Scope,
        db::search_needle,
        model::users::User,
        pagination::Page,
        store::error::{StoreError, StoreResult, is_unique_violation},
    };

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
    pub(super) fn get_user(conn: &Connection, scope: &Scope, id: &str) -> StoreResult<Option<User>> {
        const SQL: &str = concat!(
            "SELECT ",
            user_cols!(),
            " FROM users u WHERE u.id = ?1 AND (?2 IS NULL OR u.organization_id = ?2)"
        );
        Ok(conn.prepare_cached(SQL)?.query_row(params![id, scope.org()], user_from_row).optional()?)
    }

    /// Inserts a user; a taken username or email is a 409 found by the unique indexes themselves.
    pub(super) fn insert_user(conn: &Connection, u: &NewUser) -> StoreResult<User> {
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
    pub(super) fn user_conflict(e: rusqlite::Error) -> StoreError {
        if is_unique_violation(&e) {
            if e.to_string().contains("users.email") {
                StoreError::conflict(EMAIL_TAKEN)
            } else {
                StoreError::conflict(USERNAME_TAKEN)
            }
        } else {
            e.into()
        }
    }

    /// The id of a role of `organization_id` by name (system roles: `admin`, `member`).
    pub(super) fn role_id_by_name(conn: &Connection, organization_id: &str, name: &str) -> StoreResult<Option<String>> {
        Ok(conn
            .prepare_cached("SELECT id FROM roles WHERE organization_id = ?1 AND name = ?2")?
            .query_row(params![organization_id, name], |r| r.get(0))
            .optional()?)
    }

    pub(super) fn set_password_hash(conn: &Connection, id: &str, hash: &str, now: &str) -> StoreResult<()> {
        conn.prepare_cached("UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE id = ?1")?
            .execute(params![id, hash, now])?;
        Ok(())
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
    pub(super) const USERS_PAGE_SQL: &str = concat!(
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
    pub(super) fn list_users(
        conn: &Connection,
        scope: &Scope,
        filter: &UserFilter,
        page: Page,
    ) -> StoreResult<(Vec<User>, i64)> {
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

    /// Applies `changes` to a user of the scope; `None` when there is no such user. A taken email
    /// is a 409.
    pub(super) fn update_user(
        conn: &Connection,
        scope: &Scope,
        id: &str,
        changes: &UserChanges,
        now: &str,
    ) -> StoreResult<Option<User>> {
        let (set_full_name, full_name) = changes.full_name();
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
    pub(super) fn set_active(conn: &Connection, scope: &Scope, id: &str, active: bool, now: &str) -> StoreResult<()> {
        conn.prepare_cached(
            "UPDATE users SET is_active = ?3, updated_at = ?4 \
             WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2) AND is_active <> ?3",
        )?
        .execute(params![id, scope.org(), active, now])?;
        Ok(())
    }

    /// Gives a user of the scope another role (already checked to be of the user's organization).
    pub(super) fn set_role(conn: &Connection, scope: &Scope, id: &str, role_id: &str, now: &str) -> StoreResult<()> {
        conn.prepare_cached(
            "UPDATE users SET role_id = ?3, updated_at = ?4 WHERE id = ?1 AND (?2 IS NULL OR organization_id = ?2)",
        )?
        .execute(params![id, scope.org(), role_id, now])?;
        Ok(())
    }

    /// Moves a user into `organization_id` with `role_id`, and takes them out of every project of
    /// any other organization.
    pub(super) fn move_to_org(
        conn: &Connection,
        id: &str,
        organization_id: &str,
        role_id: &str,
        now: &str,
    ) -> StoreResult<()> {
        conn.prepare_cached("UPDATE users SET organization_id = ?2, role_id = ?3, updated_at = ?4 WHERE id = ?1")?
            .execute(params![id, organization_id, role_id, now])?;
        conn.prepare_cached(
            "DELETE FROM user_projects WHERE user_id = ?1 \
             AND project_id IN (SELECT id FROM projects WHERE organization_id <> ?2)",
        )?
        .execute(params![id, organization_id])?;
        Ok(())
    }
}

pub(crate) mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{EMAIL_TAKEN, NewUser, USERNAME_TAKEN, UserChanges, UserFilter};
    use crate::{
        authz::Scope,
        db::search_needle,
        model::users::User,
        pagination::Page,
        store::{
            conn::{holds_nul, pg_ts, pg_ts_col},
            error::{StoreError, StoreResult, is_pg_unique_violation},
        },
    };

    /// A user's columns (of `users u`), read back by [`user_from_row`].
    pub(crate) const USER_COLS: &str = "u.id, u.username, u.email, u.full_name, u.organization_id, u.role_id, \
         u.is_active, u.is_superuser, u.created_at, u.updated_at";

    pub(crate) fn user_from_row(r: &Row) -> StoreResult<User> {
        Ok(User {
            id: r.try_get(0)?,
            username: r.try_get(1)?,
            email: r.try_get(2)?,
            full_name: r.try_get(3)?,
            organization_id: r.try_get(4)?,
            role_id: r.try_get(5)?,
            is_active: r.try_get(6)?,
            is_superuser: r.try_get(7)?,
            created_at: pg_ts_col(r, 8)?,
            updated_at: pg_ts_col(r, 9)?,
        })
    }

    /// A unique violation on users as the 409 that says which field is taken; the unique indexes
    /// are named after their column (migrations-postgres/V1).
    fn user_conflict(e: postgres::Error) -> StoreError {
        if !is_pg_unique_violation(&e) {
            return StoreError::from(e);
        }
        match e.as_db_error().and_then(|d| d.constraint()) {
            Some("users_email") => StoreError::conflict(EMAIL_TAKEN),
            _ => StoreError::conflict(USERNAME_TAKEN),
        }
    }

    pub(super) fn get_user(t: &mut Transaction, scope: &Scope, id: &str) -> StoreResult<Option<User>> {
        let sql =
            format!("SELECT {USER_COLS} FROM users u WHERE u.id = $1 AND ($2::text IS NULL OR u.organization_id = $2)");
        t.query_opt(&sql, &[&id, &scope.org()])?.as_ref().map(user_from_row).transpose()
    }

    pub(super) fn insert_user(t: &mut Transaction, u: &NewUser) -> StoreResult<User> {
        t.execute(
            "INSERT INTO users (id, organization_id, role_id, username, email, full_name, password_hash, \
             is_active, is_superuser, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, true, $8, $9, $9)",
            &[
                &u.id,
                &u.organization_id,
                &u.role_id,
                &u.username,
                &u.email,
                &u.full_name,
                &u.password_hash,
                &u.is_superuser,
                &pg_ts(&u.now)?,
            ],
        )
        .map_err(user_conflict)?;
        get_user(t, &Scope::system_all(), &u.id)?.ok_or_else(|| StoreError::internal("inserted user vanished"))
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

    pub(super) fn set_password_hash(t: &mut Transaction, id: &str, hash: &str, now: &str) -> StoreResult<()> {
        t.execute("UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1", &[&id, &hash, &pg_ts(now)?])?;
        Ok(())
    }

    pub(super) fn update_user(
        t: &mut Transaction,
        scope: &Scope,
        id: &str,
        changes: &UserChanges,
        now: &str,
    ) -> StoreResult<Option<User>> {
        let (set_full_name, full_name) = changes.full_name();
        let n = t
            .execute(
                "UPDATE users SET email = COALESCE($3, email), \
                 full_name = CASE WHEN $4 THEN $5 ELSE full_name END, \
                 is_active = COALESCE($6, is_active), is_superuser = COALESCE($7, is_superuser), \
                 password_hash = COALESCE($8, password_hash), updated_at = $9 \
                 WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)",
                &[
                    &id,
                    &scope.org(),
                    &changes.email,
                    &set_full_name,
                    &full_name,
                    &changes.is_active,
                    &changes.is_superuser,
                    &changes.password_hash,
                    &pg_ts(now)?,
                ],
            )
            .map_err(user_conflict)?;
        if n == 0 {
            return Ok(None);
        }
        get_user(t, scope, id)
    }

    pub(super) fn set_active(t: &mut Transaction, scope: &Scope, id: &str, active: bool, now: &str) -> StoreResult<()> {
        t.execute(
            "UPDATE users SET is_active = $3, updated_at = $4 \
             WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2) AND is_active <> $3",
            &[&id, &scope.org(), &active, &pg_ts(now)?],
        )?;
        Ok(())
    }

    pub(super) fn set_role(t: &mut Transaction, scope: &Scope, id: &str, role_id: &str, now: &str) -> StoreResult<()> {
        t.execute(
            "UPDATE users SET role_id = $3, updated_at = $4 WHERE id = $1 AND ($2::text IS NULL OR organization_id = $2)",
            &[&id, &scope.org(), &role_id, &pg_ts(now)?],
        )?;
        Ok(())
    }

    // The search: `nocase(col) LIKE '%needle%'` with the needle's %, _ and \ escaped, the form the
    // pg_trgm indexes of migrations-postgres/V2 answer (PostgreSQL rechecks LIKE on every row).
    const USER_LIST_WHERE: &str = "($1::text IS NULL OR u.organization_id = $1) AND u.is_active = $2 \
         AND ($3::text IS NULL OR u.role_id = $3) \
         AND ($4::text IS NULL OR nocase(u.username) LIKE $4 OR nocase(u.email) LIKE $4 \
              OR nocase(u.full_name) LIKE $4)";

    fn like_pattern(term: &str) -> String {
        let needle = search_needle(term).replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        format!("%{needle}%")
    }

    pub(super) fn list_users(
        t: &mut Transaction,
        scope: &Scope,
        filter: &UserFilter,
        page: Page,
    ) -> StoreResult<(Vec<User>, i64)> {
        if holds_nul([filter.search.as_deref(), filter.role_id.as_deref()]) {
            return Ok((Vec::new(), 0));
        }
        let pattern = filter.search.as_deref().map(like_pattern);
        let total: i64 = t
            .query_one(
                &format!("SELECT COUNT(*) FROM users u WHERE {USER_LIST_WHERE}"),
                &[&scope.org(), &filter.is_active, &filter.role_id, &pattern],
            )?
            .try_get(0)?;
        let sql = format!(
            "SELECT {USER_COLS} FROM users u WHERE {USER_LIST_WHERE} \
             ORDER BY u.created_at DESC, u.id DESC LIMIT $5 OFFSET $6"
        );
        let rows = t
            .query(&sql, &[&scope.org(), &filter.is_active, &filter.role_id, &pattern, &page.limit, &page.skip])?
            .iter()
            .map(user_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn move_to_org(
        t: &mut Transaction,
        id: &str,
        organization_id: &str,
        role_id: &str,
        now: &str,
    ) -> StoreResult<()> {
        t.execute(
            "UPDATE users SET organization_id = $2, role_id = $3, updated_at = $4 WHERE id = $1",
            &[&id, &organization_id, &role_id, &pg_ts(now)?],
        )?;
        t.execute(
            "DELETE FROM user_projects WHERE user_id = $1 \
             AND project_id IN (SELECT id FROM projects WHERE organization_id <> $2)",
            &[&id, &organization_id],
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::params;

    use super::{
        sqlite::{USERS_PAGE_SQL, insert_user, list_users, update_user},
        *,
    };
    use crate::db::search_needle;

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
