//! The audit log: events appended in the caller's write transaction, listed newest first, pruned
//! by age. Nothing here decides what is recorded; api says which write is which action.

use serde_json::Value;

use crate::{
    model::audit::{Actor, AuditEvent},
    pagination::Page,
    store::{conn::Conn, error::StoreResult},
};

/// What happened.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    /// `area.action`
    pub action: &'static str,
    pub organization_id: Option<&'a str>,
    pub target_type: &'static str,
    pub target_id: Option<&'a str>,
    pub changes: Option<Value>,
}

impl<'a> Event<'a> {
    pub fn new(action: &'static str, organization_id: &'a str, target_type: &'static str, target_id: &'a str) -> Self {
        Event { action, organization_id: Some(organization_id), target_type, target_id: Some(target_id), changes: None }
    }

    pub fn changes(mut self, changes: Option<Value>) -> Self {
        self.changes = changes.filter(|c| !c.as_object().is_some_and(|o| o.is_empty()));
        self
    }
}

/// Appends one event, in the caller's transaction: it commits or rolls back with the write.
/// Returns its sequence number, for [`retract`].
pub fn record(c: &mut Conn, actor: &Actor, event: &Event<'_>) -> StoreResult<i64> {
    match c {
        Conn::Sqlite(c) => sqlite::record(c, actor, event),
        Conn::Postgres(t) => pg::record(t, actor, event),
    }
}

/// Takes back an event recorded ahead of its outcome: a login attempt is logged as failed when it
/// is reserved, and that event is replaced when the password turns out right.
pub fn retract(c: &mut Conn, seq: i64) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::retract(c, seq),
        Conn::Postgres(t) => pg::retract(t, seq),
    }
}

/// The filters of `GET /audit-events`; `None` matches everything. `from`/`to` are inclusive
/// timestamps in the stored format.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub organization_id: Option<String>,
    pub actor_user_id: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// One page of the events matching `f`, newest (highest `seq`) first, and the total of matches.
pub fn list(c: &mut Conn, f: &Filter, page: Page) -> StoreResult<(Vec<AuditEvent>, i64)> {
    match c {
        Conn::Sqlite(c) => sqlite::list(c, f, page),
        Conn::Postgres(t) => pg::list(t, f, page),
    }
}

/// Deletes at most `limit` of the oldest events recorded before `before`; returns how many went.
/// Events are appended in time order, so the oldest by `seq` are the oldest by `at`.
pub fn prune(c: &mut Conn, before: &str, limit: u32) -> StoreResult<usize> {
    match c {
        Conn::Sqlite(c) => sqlite::prune(c, before, limit),
        Conn::Postgres(t) => pg::prune(t, before, limit),
    }
}

/// What a request body set, for an event's `changes`: secrets redacted, long text as its length.
pub fn changes_of(body: Option<Value>) -> Option<Value> {
    let mut body = body?;
    redact(&mut body);
    Some(body)
}

/// What a secret reads as in `changes`.
pub const REDACTED: &str = "[redacted]";

const SECRETS: &[&str] =
    &["password", "current_password", "new_password", "refresh_token", "access_token", "token", "key", "secret"];
const TEXTS: &[&str] = &["content", "text"];

fn redact(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if SECRETS.contains(&k.as_str()) || k.ends_with("_secret") || k.ends_with("api_key") {
                    *val = Value::String(REDACTED.into());
                } else if let (true, Value::String(s)) = (TEXTS.contains(&k.as_str()), &*val) {
                    *val = serde_json::json!({ "length": s.chars().count() });
                } else {
                    redact(val);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

mod sqlite {
    use rusqlite::{Connection, params};
    use serde_json::Value;

    use super::{Event, Filter};
    use crate::{
        db,
        model::audit::{Actor, AuditEvent},
        pagination::Page,
        store::error::StoreResult,
    };

    /// Appends one event, in the caller's transaction: it commits or rolls back with the write.
    /// Returns its sequence number, for [`retract`].
    pub(super) fn record(conn: &Connection, actor: &Actor, event: &Event<'_>) -> StoreResult<i64> {
        let changes = event.changes.as_ref().map(Value::to_string);
        conn.prepare_cached(
            "INSERT INTO audit_events (id, at, organization_id, actor_user_id, actor_api_key_id, action, target_type, \
             target_id, ip, user_agent, changes) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        )?
        .execute(params![
            db::new_id(),
            db::now(),
            event.organization_id,
            actor.user_id,
            actor.api_key_id,
            event.action,
            event.target_type,
            event.target_id,
            actor.client.ip_text(),
            actor.client.user_agent_text(),
            changes,
        ])?;
        Ok(conn.last_insert_rowid())
    }

    /// Takes back an event recorded ahead of its outcome: a login attempt is logged as failed when it
    /// is reserved, and that event is replaced when the password turns out right.
    pub(super) fn retract(conn: &Connection, seq: i64) -> StoreResult<()> {
        conn.prepare_cached("DELETE FROM audit_events WHERE seq = ?1")?.execute([seq])?;
        Ok(())
    }

    const WHERE: &str = "WHERE (?1 IS NULL OR organization_id = ?1) AND (?2 IS NULL OR actor_user_id = ?2) \
                         AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR target_type = ?4) \
                         AND (?5 IS NULL OR target_id = ?5) AND (?6 IS NULL OR at >= ?6) AND (?7 IS NULL OR at <= ?7)";

    pub(super) fn list(conn: &Connection, f: &Filter, page: Page) -> StoreResult<(Vec<AuditEvent>, i64)> {
        let p = params![f.organization_id, f.actor_user_id, f.action, f.target_type, f.target_id, f.from, f.to];
        let total: i64 =
            conn.prepare_cached(&format!("SELECT COUNT(*) FROM audit_events {WHERE}"))?.query_row(p, |r| r.get(0))?;
        let rows = conn
            .prepare_cached(&format!(
                "SELECT id, at, organization_id, actor_user_id, actor_api_key_id, action, target_type, target_id, ip, \
                 user_agent, changes FROM audit_events {WHERE} ORDER BY seq DESC LIMIT ?8 OFFSET ?9"
            ))?
            .query_map(
                params![
                    f.organization_id,
                    f.actor_user_id,
                    f.action,
                    f.target_type,
                    f.target_id,
                    f.from,
                    f.to,
                    page.limit,
                    page.skip
                ],
                |r| {
                    let changes: Option<String> = r.get(10)?;
                    Ok(AuditEvent {
                        id: r.get(0)?,
                        at: r.get(1)?,
                        organization_id: r.get(2)?,
                        actor_user_id: r.get(3)?,
                        actor_api_key_id: r.get(4)?,
                        action: r.get(5)?,
                        target_type: r.get(6)?,
                        target_id: r.get(7)?,
                        ip: r.get(8)?,
                        user_agent: r.get(9)?,
                        changes: changes.and_then(|c| serde_json::from_str(&c).ok()),
                    })
                },
            )?
            .collect::<Result<_, _>>()?;
        Ok((rows, total))
    }

    /// Deletes at most `limit` of the oldest events recorded before `before`; returns how many went.
    /// Events are appended in time order, so the oldest by `seq` are the oldest by `at`.
    pub(super) fn prune(conn: &Connection, before: &str, limit: u32) -> StoreResult<usize> {
        Ok(conn
            .prepare_cached(
                "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events ORDER BY seq LIMIT ?2) AND at < ?1",
            )?
            .execute(params![before, limit])?)
    }
}

pub(crate) mod pg {
    use postgres::{Row, types::ToSql};

    use crate::pg::Transaction;
    use serde_json::Value;

    use super::{Event, Filter};
    use crate::{
        db,
        model::audit::{Actor, AuditEvent},
        pagination::Page,
        store::{
            conn::{holds_nul, pg_ts, pg_ts_col},
            error::StoreResult,
        },
    };

    /// The columns an event fills, in the order of [`EventRow::params`].
    pub(crate) const COLUMNS: &str = "id, at, organization_id, actor_user_id, actor_api_key_id, action, target_type, \
                                      target_id, ip, user_agent, changes";

    /// An event as the values of one row of `audit_events`: for [`record`], and for a statement
    /// of another area that records its event together with its change, in one round trip.
    pub(crate) struct EventRow<'e> {
        id: String,
        at: time::OffsetDateTime,
        actor: &'e Actor,
        event: &'e Event<'e>,
        ip: Option<String>,
        user_agent: Option<String>,
        changes: Option<String>,
    }

    impl<'e> EventRow<'e> {
        pub(crate) fn new(actor: &'e Actor, event: &'e Event<'e>) -> StoreResult<Self> {
            Ok(EventRow {
                id: db::new_id(),
                at: pg_ts(&db::now())?,
                actor,
                event,
                ip: actor.client.ip_text(),
                user_agent: actor.client.user_agent_text(),
                changes: event.changes.as_ref().map(Value::to_string),
            })
        }

        /// The values of [`COLUMNS`], each cast to its column's type (so they can be selected,
        /// not only inserted), as the parameters `$first` to `$first + 10`.
        pub(crate) fn placeholders(first: usize) -> String {
            let types = ["text", "timestamptz", "text", "text", "text", "text", "text", "text", "text", "text"];
            let mut out: Vec<String> = types.iter().enumerate().map(|(i, t)| format!("${}::{t}", first + i)).collect();
            out.push(format!("${}::text::jsonb", first + types.len()));
            out.join(", ")
        }

        pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 11] {
            [
                &self.id,
                &self.at,
                &self.event.organization_id,
                &self.actor.user_id,
                &self.actor.api_key_id,
                &self.event.action,
                &self.event.target_type,
                &self.event.target_id,
                &self.ip,
                &self.user_agent,
                &self.changes,
            ]
        }
    }

    pub(super) fn record(t: &mut Transaction, actor: &Actor, event: &Event<'_>) -> StoreResult<i64> {
        let row = EventRow::new(actor, event)?;
        let sql = format!("INSERT INTO audit_events ({COLUMNS}) VALUES ({}) RETURNING seq", EventRow::placeholders(1));
        Ok(t.query_one(sql.as_str(), &row.params())?.try_get(0)?)
    }

    pub(super) fn retract(t: &mut Transaction, seq: i64) -> StoreResult<()> {
        t.execute("DELETE FROM audit_events WHERE seq = $1", &[&seq])?;
        Ok(())
    }

    // the bounds compare as times (timestamptz), which orders like SQLite's fixed-width text
    const WHERE: &str = "WHERE ($1::text IS NULL OR organization_id = $1) AND ($2::text IS NULL OR actor_user_id = $2) \
                         AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR target_type = $4) \
                         AND ($5::text IS NULL OR target_id = $5) AND ($6::timestamptz IS NULL OR at >= $6) \
                         AND ($7::timestamptz IS NULL OR at <= $7)";

    fn event_from_row(r: &Row) -> StoreResult<AuditEvent> {
        let changes: Option<String> = r.try_get(10)?;
        Ok(AuditEvent {
            id: r.try_get(0)?,
            at: pg_ts_col(r, 1)?,
            organization_id: r.try_get(2)?,
            actor_user_id: r.try_get(3)?,
            actor_api_key_id: r.try_get(4)?,
            action: r.try_get(5)?,
            target_type: r.try_get(6)?,
            target_id: r.try_get(7)?,
            ip: r.try_get(8)?,
            user_agent: r.try_get(9)?,
            changes: changes.and_then(|c| serde_json::from_str(&c).ok()),
        })
    }

    pub(super) fn list(t: &mut Transaction, f: &Filter, page: Page) -> StoreResult<(Vec<AuditEvent>, i64)> {
        let texts = [&f.organization_id, &f.actor_user_id, &f.action, &f.target_type, &f.target_id];
        if holds_nul(texts.map(|v| v.as_deref())) {
            return Ok((vec![], 0));
        }
        let from = f.from.as_deref().map(pg_ts).transpose()?;
        let to = f.to.as_deref().map(pg_ts).transpose()?;
        let total: i64 = t
            .query_one(
                &format!("SELECT COUNT(*) FROM audit_events {WHERE}"),
                &[&f.organization_id, &f.actor_user_id, &f.action, &f.target_type, &f.target_id, &from, &to],
            )?
            .try_get(0)?;
        let rows = t
            .query(
                &format!(
                    "SELECT id, at, organization_id, actor_user_id, actor_api_key_id, action, target_type, target_id, \
                     ip, user_agent, changes::text FROM audit_events {WHERE} ORDER BY seq DESC LIMIT $8 OFFSET $9"
                ),
                &[
                    &f.organization_id,
                    &f.actor_user_id,
                    &f.action,
                    &f.target_type,
                    &f.target_id,
                    &from,
                    &to,
                    &page.limit,
                    &page.skip,
                ],
            )?
            .iter()
            .map(event_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((rows, total))
    }

    pub(super) fn prune(t: &mut Transaction, before: &str, limit: u32) -> StoreResult<usize> {
        let before = pg_ts(before)?;
        let n = t.execute(
            "DELETE FROM audit_events WHERE seq IN (SELECT seq FROM audit_events ORDER BY seq LIMIT $2) AND at < $1",
            &[&before, &i64::from(limit)],
        )?;
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pruning_takes_the_oldest_events_before_the_cutoff_in_batches() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::db::Db::open(&dir.path().join("t.db"), 1, std::time::Duration::from_secs(5), None).unwrap();
        let left = db
            .write_blocking(|tx| -> StoreResult<_> {
                let actor = Actor::default();
                for _ in 0..5 {
                    record(&mut Conn::Sqlite(tx), &actor, &Event::new("user.create", "o", "user", "u"))?;
                }
                // the three oldest are a year old
                tx.execute("UPDATE audit_events SET at = '2025-01-01T00:00:00.000000Z' WHERE seq <= 3", [])?;
                let c = &mut Conn::Sqlite(tx);
                assert_eq!(prune(c, "2025-06-01T00:00:00.000000Z", 2)?, 2);
                assert_eq!(prune(c, "2025-06-01T00:00:00.000000Z", 2)?, 1);
                assert_eq!(prune(c, "2025-06-01T00:00:00.000000Z", 2)?, 0);
                let (rows, total) = list(c, &Filter::default(), Page::new(None, None).unwrap())?;
                Ok((rows.len(), total))
            })
            .unwrap();
        assert_eq!(left, (2, 2));
    }

    #[test]
    fn secrets_never_reach_the_log_and_text_is_measured() {
        let c = changes_of(Some(json!({
            "username": "ann", "password": "hunter2!", "settings": {"api_key": "sk-1"},
            "content": "héllo", "new_password": "x"
        })))
        .unwrap();
        assert_eq!(
            c,
            json!({"username": "ann", "password": "[redacted]", "settings": {"api_key": "[redacted]"},
                   "content": {"length": 5}, "new_password": "[redacted]"})
        );
        assert!(!c.to_string().contains("hunter2"));
    }
}
