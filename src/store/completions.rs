//! Completion jobs (issue 6), on both backends: one row per generated reply, and the usage
//! reports that sum them. Jobs are read through their owner, usage through the organization.

use crate::{
    model::completions::{Job, JobStatus},
    model::usage::{UsageGroup, UsageRow},
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};

const ONE_RUNNING: &str = "A reply is already being generated in this conversation; wait for it or cancel it";

pub struct NewJob {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub organization_id: String,
    pub agent_config_id: Option<String>,
    pub provider: String,
    pub model: String,
    pub user_message_id: String,
    /// The instance that runs the job, when several share the database (PostgreSQL): it holds
    /// the job's lease from here on.
    pub instance_id: Option<String>,
}

/// How long a job's lease lasts: its instance renews it every [`LEASE_RENEW_SECONDS`]; another
/// instance fails a job whose lease ran out (its instance stopped without ending it).
pub const LEASE_SECONDS: i64 = 15;
pub const LEASE_RENEW_SECONDS: u64 = 5;
/// How long the events of an ended job stay in the database for followers through another
/// instance; after that the stored messages answer, as for a job of a previous process.
pub const EVENTS_RETAINED_SECONDS: i64 = 120;

/// One event of a running job, as its instance writes it for the others.
pub struct JobEventRow {
    pub job_id: String,
    pub seq: i64,
    pub event: String,
    pub data: String,
}

const SHARED_ONLY: &str = "jobs are shared between instances on PostgreSQL only";

/// Records a running job; a conversation that already has one answers 409.
pub fn insert_job(c: &mut Conn, n: &NewJob, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::insert_job(c, n, now),
        Conn::Postgres(t) => pg::insert_job(t, n, now),
    }
}

/// How a job ended.
pub struct JobEnd<'a> {
    pub status: JobStatus,
    pub assistant_message_id: Option<&'a str>,
    pub error: Option<&'a str>,
    pub finish_reason: Option<&'a str>,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub last_event_id: i64,
}

/// Closes a running job; a job already closed (e.g. by start-up recovery) stays as it is.
pub fn finish_job(c: &mut Conn, id: &str, e: &JobEnd<'_>, now: &str) -> StoreResult<()> {
    match c {
        Conn::Sqlite(c) => sqlite::finish_job(c, id, e, now),
        Conn::Postgres(t) => pg::finish_job(t, id, e, now),
    }
}

/// Whether job `id` is still running, holding its row for the rest of the transaction
/// (PostgreSQL: another instance's sweep may have failed it after its lease ran out; then the
/// reply it stored stands and the job's own instance stores nothing).
pub fn hold_running_job(c: &mut Conn, id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(c) => sqlite::hold_running_job(c, id),
        Conn::Postgres(t) => pg::hold_running_job(t, id),
    }
}

/// Job `id` of `owner`'s live conversation `conversation_id`.
pub fn get_job(c: &mut Conn, owner: &str, conversation_id: &str, id: &str) -> StoreResult<Option<Job>> {
    match c {
        Conn::Sqlite(c) => sqlite::get_job(c, owner, conversation_id, id),
        Conn::Postgres(t) => pg::get_job(t, owner, conversation_id, id),
    }
}

/// Marks jobs that a previous process left running as failed; returns how many.
pub fn fail_interrupted_jobs(c: &mut Conn, reason: &str, now: &str) -> StoreResult<usize> {
    match c {
        Conn::Sqlite(c) => sqlite::fail_interrupted_jobs(c, reason, now),
        Conn::Postgres(t) => pg::fail_interrupted_jobs(t, reason, now),
    }
}

/// What an instance does for its running jobs every few hundred milliseconds, in one transaction
/// (PostgreSQL, where several instances share the jobs): writes their new `events`, renews their
/// leases when `renew`, and answers which of them another instance asked to cancel.
pub fn sync_instance_jobs(
    c: &mut Conn,
    instance_id: &str,
    events: &[JobEventRow],
    renew: bool,
) -> StoreResult<Vec<String>> {
    match c {
        Conn::Sqlite(_) => Err(StoreError::internal(SHARED_ONLY)),
        Conn::Postgres(t) => pg::sync_instance_jobs(t, instance_id, events, renew),
    }
}

/// Writes events of jobs (already written ones are left as they are); the last events of a job go
/// in the transaction that ends it, so a follower that sees the job ended has all of them.
pub fn append_job_events(c: &mut Conn, events: &[JobEventRow]) -> StoreResult<()> {
    match c {
        Conn::Sqlite(_) => Err(StoreError::internal(SHARED_ONLY)),
        Conn::Postgres(t) => pg::append_job_events(t, events),
    }
}

/// A running job whose lease ran out (or that has none: a process of an older version, or one
/// that crashed before V10), with what its instance had written of the reply.
pub struct ExpiredJob {
    pub id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub provider: String,
    pub model: String,
    /// Milliseconds from the job's start to now.
    pub latency_ms: i64,
    /// Its `delta` events' text, in order.
    pub text: String,
    /// The passages of its `citations` event (JSON text), if it had one.
    pub citations: Option<String>,
    /// The id its last event takes: after every event written (and the user message, event 1).
    pub last_event_id: i64,
}

/// The jobs whose lease ran out, locked for this transaction (another instance's sweep passes
/// over them), for the caller to end with [`finish_job`]; and forgets the events of jobs that
/// ended a while ago.
pub fn take_expired_jobs(c: &mut Conn) -> StoreResult<Vec<ExpiredJob>> {
    match c {
        Conn::Sqlite(_) => Err(StoreError::internal(SHARED_ONLY)),
        Conn::Postgres(t) => pg::take_expired_jobs(t),
    }
}

/// Asks the instance that runs job `id` to cancel it; whether the job was running.
pub fn request_cancel(c: &mut Conn, id: &str) -> StoreResult<bool> {
    match c {
        Conn::Sqlite(_) => Err(StoreError::internal(SHARED_ONLY)),
        Conn::Postgres(t) => pg::request_cancel(t, id),
    }
}

/// The stored events of job `id` after position `after`, in order (the job's ownership is
/// checked by the caller, with [`get_job`] in the same snapshot).
pub fn job_events(c: &mut Conn, id: &str, after: i64) -> StoreResult<Vec<JobEventRow>> {
    match c {
        // one process serves a SQLite file: its jobs' events are in its memory only
        Conn::Sqlite(_) => Ok(vec![]),
        Conn::Postgres(t) => pg::job_events(t, id, after),
    }
}

/// Token and request sums of the jobs created in `[from, to)` in `organization_id` (and of
/// `user_id` only, when given), one row per group, in the byte order of the group's key.
pub fn usage(
    c: &mut Conn,
    organization_id: &str,
    user_id: Option<&str>,
    from: &str,
    to: &str,
    group: UsageGroup,
) -> StoreResult<Vec<UsageRow>> {
    match c {
        Conn::Sqlite(c) => sqlite::usage(c, organization_id, user_id, from, to, group),
        Conn::Postgres(t) => pg::usage(t, organization_id, user_id, from, to, group),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, Row, params};

    use super::{JobEnd, NewJob, ONE_RUNNING};
    use crate::{
        model::completions::{Job, JobStatus},
        model::usage::{UsageGroup, UsageRow},
        store::error::{StoreResult, conflict_on_unique},
    };

    const JOB_COLS: &str = "j.id, j.conversation_id, j.agent_config_id, j.provider, j.model, j.status, \
                            j.user_message_id, j.assistant_message_id, j.error, j.finish_reason, j.prompt_tokens, \
                            j.completion_tokens, j.last_event_id, j.created_at, j.finished_at";

    fn job_from_row(r: &Row<'_>) -> rusqlite::Result<Job> {
        Ok(Job {
            id: r.get(0)?,
            conversation_id: r.get(1)?,
            agent_config_id: r.get(2)?,
            provider: r.get(3)?,
            model: r.get(4)?,
            status: {
                let s: String = r.get(5)?;
                JobStatus::parse(&s).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        5,
                        rusqlite::types::Type::Text,
                        format!("job status {s:?}").into(),
                    )
                })?
            },
            user_message_id: r.get(6)?,
            assistant_message_id: r.get(7)?,
            error: r.get(8)?,
            finish_reason: r.get(9)?,
            prompt_tokens: r.get(10)?,
            completion_tokens: r.get(11)?,
            last_event_id: r.get(12)?,
            created_at: r.get(13)?,
            finished_at: r.get(14)?,
        })
    }

    /// Records a running job; a conversation that already has one answers 409.
    pub(super) fn insert_job(conn: &Connection, n: &NewJob, now: &str) -> StoreResult<()> {
        conn.prepare_cached(
            "INSERT INTO completion_jobs (id, conversation_id, user_id, organization_id, agent_config_id, provider, \
             model, status, user_message_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running', ?8, ?9)",
        )?
        .execute(params![
            n.id,
            n.conversation_id,
            n.user_id,
            n.organization_id,
            n.agent_config_id,
            n.provider,
            n.model,
            n.user_message_id,
            now
        ])
        .map_err(conflict_on_unique(ONE_RUNNING))?;
        Ok(())
    }

    /// Closes a running job; a job already closed (e.g. by start-up recovery) stays as it is.
    pub(super) fn finish_job(conn: &Connection, id: &str, e: &JobEnd<'_>, now: &str) -> StoreResult<()> {
        conn.prepare_cached(
            "UPDATE completion_jobs SET status = ?2, assistant_message_id = ?3, error = ?4, finish_reason = ?5, \
             prompt_tokens = ?6, completion_tokens = ?7, last_event_id = ?8, finished_at = ?9 \
             WHERE id = ?1 AND status = 'running'",
        )?
        .execute(params![
            id,
            e.status.as_str(),
            e.assistant_message_id,
            e.error,
            e.finish_reason,
            e.prompt_tokens,
            e.completion_tokens,
            e.last_event_id,
            now
        ])?;
        Ok(())
    }

    /// (one writer: the write transaction holds the row already)
    pub(super) fn hold_running_job(conn: &Connection, id: &str) -> StoreResult<bool> {
        let running = conn
            .prepare_cached("SELECT status = 'running' FROM completion_jobs WHERE id = ?1")?
            .query_row([id], |r| r.get::<_, bool>(0))
            .optional()?;
        Ok(running.unwrap_or(false))
    }

    /// Job `id` of `owner`'s live conversation `conversation_id`.
    pub(super) fn get_job(conn: &Connection, owner: &str, conversation_id: &str, id: &str) -> StoreResult<Option<Job>> {
        Ok(conn
            .prepare_cached(&format!(
                "SELECT {JOB_COLS} FROM completion_jobs j JOIN conversations c ON c.id = j.conversation_id \
                 WHERE j.id = ?1 AND j.conversation_id = ?2 AND c.user_id = ?3 AND c.is_active = 1"
            ))?
            .query_row(params![id, conversation_id, owner], job_from_row)
            .optional()?)
    }

    /// Marks jobs that a previous process left running as failed; returns how many.
    pub(super) fn fail_interrupted_jobs(conn: &Connection, reason: &str, now: &str) -> StoreResult<usize> {
        Ok(conn
            .prepare_cached(
                "UPDATE completion_jobs SET status = 'failed', error = ?1, finished_at = ?2, \
                 last_event_id = MAX(last_event_id, 2) WHERE status = 'running'",
            )?
            .execute(params![reason, now])?)
    }

    /// Token and request sums of the jobs created in `[from, to)` in `organization_id` (and of
    /// `user_id` only, when given), one row per group.
    pub(super) fn usage(
        conn: &Connection,
        organization_id: &str,
        user_id: Option<&str>,
        from: &str,
        to: &str,
        group: UsageGroup,
    ) -> StoreResult<Vec<UsageRow>> {
        let (key, label) = match group {
            UsageGroup::User => ("j.user_id", "MAX(u.username)"),
            UsageGroup::AgentConfig => ("j.agent_config_id", "MAX(a.name)"),
            UsageGroup::Model => ("j.model", "MAX(j.provider)"),
            UsageGroup::Day => ("substr(j.created_at, 1, 10)", "NULL"),
        };
        let rows = conn
            .prepare_cached(&format!(
                "SELECT {key} AS k, {label}, COALESCE(SUM(j.prompt_tokens), 0), COALESCE(SUM(j.completion_tokens), 0), \
                 COUNT(*) FROM completion_jobs j LEFT JOIN users u ON u.id = j.user_id \
                 LEFT JOIN agent_configs a ON a.id = j.agent_config_id \
                 WHERE j.organization_id = ?1 AND (?2 IS NULL OR j.user_id = ?2) AND j.created_at >= ?3 \
                 AND j.created_at < ?4 GROUP BY k ORDER BY k"
            ))?
            .query_map(params![organization_id, user_id, from, to], |r| {
                let prompt_tokens: i64 = r.get(2)?;
                let completion_tokens: i64 = r.get(3)?;
                Ok(UsageRow {
                    key: r.get(0)?,
                    label: r.get(1)?,
                    prompt_tokens,
                    completion_tokens,
                    total_tokens: prompt_tokens + completion_tokens,
                    requests: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

mod pg {
    use postgres::Row;

    use crate::pg::Transaction;

    use super::{EVENTS_RETAINED_SECONDS, ExpiredJob, JobEnd, JobEventRow, LEASE_SECONDS, NewJob, ONE_RUNNING};
    use crate::{
        db::format_ts,
        model::completions::{Job, JobStatus},
        model::usage::{UsageGroup, UsageRow},
        store::{
            conn::{pg_ts, pg_ts_col},
            error::{StoreError, StoreResult, pg_conflict_on_unique},
        },
    };

    const JOB_COLS: &str = "j.id, j.conversation_id, j.agent_config_id, j.provider, j.model, j.status, \
                            j.user_message_id, j.assistant_message_id, j.error, j.finish_reason, j.prompt_tokens, \
                            j.completion_tokens, j.last_event_id, j.created_at, j.finished_at";

    fn job_from_row(r: &Row) -> StoreResult<Job> {
        let status: String = r.try_get(5)?;
        let finished_at: Option<time::OffsetDateTime> = r.try_get(14)?;
        Ok(Job {
            id: r.try_get(0)?,
            conversation_id: r.try_get(1)?,
            agent_config_id: r.try_get(2)?,
            provider: r.try_get(3)?,
            model: r.try_get(4)?,
            status: JobStatus::parse(&status)
                .ok_or_else(|| StoreError::internal(format_args!("job status {status:?}")))?,
            user_message_id: r.try_get(6)?,
            assistant_message_id: r.try_get(7)?,
            error: r.try_get(8)?,
            finish_reason: r.try_get(9)?,
            prompt_tokens: r.try_get(10)?,
            completion_tokens: r.try_get(11)?,
            last_event_id: r.try_get(12)?,
            created_at: pg_ts_col(r, 13)?,
            finished_at: finished_at.map(format_ts),
        })
    }

    pub(super) fn insert_job(t: &mut Transaction, n: &NewJob, now: &str) -> StoreResult<()> {
        let at = pg_ts(now)?;
        t.execute(
            "INSERT INTO completion_jobs (id, conversation_id, user_id, organization_id, agent_config_id, provider, \
             model, status, user_message_id, created_at, instance_id, lease_until) VALUES ($1, $2, $3, $4, $5, $6, \
             $7, 'running', $8, $9, $10, CASE WHEN $10::text IS NULL THEN NULL ELSE now() + make_interval(secs => $11) END)",
            &[
                &n.id,
                &n.conversation_id,
                &n.user_id,
                &n.organization_id,
                &n.agent_config_id,
                &n.provider,
                &n.model,
                &n.user_message_id,
                &at,
                &n.instance_id,
                &(LEASE_SECONDS as f64),
            ],
        )
        .map_err(pg_conflict_on_unique(ONE_RUNNING))?;
        Ok(())
    }

    pub(super) fn finish_job(t: &mut Transaction, id: &str, e: &JobEnd<'_>, now: &str) -> StoreResult<()> {
        let at = pg_ts(now)?;
        t.execute(
            "UPDATE completion_jobs SET status = $2, assistant_message_id = $3, error = $4, finish_reason = $5, \
             prompt_tokens = $6, completion_tokens = $7, last_event_id = $8, finished_at = $9 \
             WHERE id = $1 AND status = 'running'",
            &[
                &id,
                &e.status.as_str(),
                &e.assistant_message_id,
                &e.error,
                &e.finish_reason,
                &e.prompt_tokens,
                &e.completion_tokens,
                &e.last_event_id,
                &at,
            ],
        )?;
        Ok(())
    }

    pub(super) fn hold_running_job(t: &mut Transaction, id: &str) -> StoreResult<bool> {
        let running = t.query_opt("SELECT status = 'running' FROM completion_jobs WHERE id = $1 FOR UPDATE", &[&id])?;
        Ok(running.map(|r| r.try_get::<_, bool>(0)).transpose()?.unwrap_or(false))
    }

    pub(super) fn get_job(
        t: &mut Transaction,
        owner: &str,
        conversation_id: &str,
        id: &str,
    ) -> StoreResult<Option<Job>> {
        t.query_opt(
            &format!(
                "SELECT {JOB_COLS} FROM completion_jobs j JOIN conversations c ON c.id = j.conversation_id \
                 WHERE j.id = $1 AND j.conversation_id = $2 AND c.user_id = $3 AND c.is_active"
            ),
            &[&id, &conversation_id, &owner],
        )?
        .as_ref()
        .map(job_from_row)
        .transpose()
    }

    pub(super) fn fail_interrupted_jobs(t: &mut Transaction, reason: &str, now: &str) -> StoreResult<usize> {
        let at = pg_ts(now)?;
        let n = t.execute(
            "UPDATE completion_jobs SET status = 'failed', error = $1, finished_at = $2, \
             last_event_id = GREATEST(last_event_id, 2) WHERE status = 'running'",
            &[&reason, &at],
        )?;
        Ok(n as usize)
    }

    /// Leases are times of the database's clock (`now()`), so instances whose clocks differ
    /// agree on them.
    pub(super) fn sync_instance_jobs(
        t: &mut Transaction,
        instance_id: &str,
        events: &[JobEventRow],
        renew: bool,
    ) -> StoreResult<Vec<String>> {
        append_job_events(t, events)?;
        if renew {
            t.execute(
                "UPDATE completion_jobs SET lease_until = now() + make_interval(secs => $2) \
                 WHERE instance_id = $1 AND status = 'running'",
                &[&instance_id, &(LEASE_SECONDS as f64)],
            )?;
        }
        let rows = t.query(
            "SELECT id FROM completion_jobs WHERE instance_id = $1 AND status = 'running' AND cancel_requested",
            &[&instance_id],
        )?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub(super) fn append_job_events(t: &mut Transaction, events: &[JobEventRow]) -> StoreResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
        let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
        // a job deleted with its conversation meanwhile takes no events (the join drops them),
        // nor does one that another instance's sweep ended (its instance was frozen past its
        // lease): the ended job's last event comes after the events it had. FOR SHARE waits for
        // a sweep that holds the row, then sees what it decided
        t.execute(
            "INSERT INTO completion_job_events (job_id, seq, event, data) \
             SELECT e.* FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[]) AS e (job_id, seq, event, data) \
             JOIN completion_jobs j ON j.id = e.job_id WHERE j.status = 'running' FOR SHARE OF j \
             ON CONFLICT DO NOTHING",
            &[&ids, &seqs, &names, &data],
        )?;
        Ok(())
    }

    pub(super) fn take_expired_jobs(t: &mut Transaction) -> StoreResult<Vec<ExpiredJob>> {
        let rows = t.query(
            "SELECT j.id, j.conversation_id, j.user_id, j.provider, j.model, \
                 (EXTRACT(EPOCH FROM now() - j.created_at) * 1000)::bigint, \
                 COALESCE((SELECT string_agg(e.data::jsonb ->> 'content', '' ORDER BY e.seq) \
                     FROM completion_job_events e WHERE e.job_id = j.id AND e.event = 'delta'), ''), \
                 (SELECT (e.data::jsonb -> 'citations')::text FROM completion_job_events e \
                     WHERE e.job_id = j.id AND e.event = 'citations' \
                     ORDER BY e.seq LIMIT 1), \
                 GREATEST(j.last_event_id, 2, \
                     (SELECT COALESCE(MAX(e.seq), 0) + 1 FROM completion_job_events e WHERE e.job_id = j.id)) \
             FROM completion_jobs j \
             WHERE j.status = 'running' AND (j.lease_until IS NULL OR j.lease_until < now()) \
             ORDER BY j.created_at FOR UPDATE OF j SKIP LOCKED",
            &[],
        )?;
        let expired = rows
            .iter()
            .map(|r| {
                Ok(ExpiredJob {
                    id: r.try_get(0)?,
                    conversation_id: r.try_get(1)?,
                    user_id: r.try_get(2)?,
                    provider: r.try_get(3)?,
                    model: r.try_get(4)?,
                    latency_ms: r.try_get(5)?,
                    text: r.try_get(6)?,
                    citations: r.try_get(7)?,
                    last_event_id: r.try_get(8)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        t.execute(
            "DELETE FROM completion_job_events e USING completion_jobs j WHERE j.id = e.job_id \
             AND j.status <> 'running' AND j.finished_at < now() - make_interval(secs => $1)",
            &[&(EVENTS_RETAINED_SECONDS as f64)],
        )?;
        Ok(expired)
    }

    pub(super) fn request_cancel(t: &mut Transaction, id: &str) -> StoreResult<bool> {
        let n = t.execute(
            "UPDATE completion_jobs SET cancel_requested = true WHERE id = $1 AND status = 'running'",
            &[&id],
        )?;
        Ok(n > 0)
    }

    pub(super) fn job_events(t: &mut Transaction, id: &str, after: i64) -> StoreResult<Vec<JobEventRow>> {
        let rows = t.query(
            "SELECT seq, event, data FROM completion_job_events WHERE job_id = $1 AND seq > $2 ORDER BY seq",
            &[&id, &after],
        )?;
        rows.iter()
            .map(|r| {
                Ok(JobEventRow {
                    job_id: id.to_string(),
                    seq: r.try_get(0)?,
                    event: r.try_get(1)?,
                    data: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub(super) fn usage(
        t: &mut Transaction,
        organization_id: &str,
        user_id: Option<&str>,
        from: &str,
        to: &str,
        group: UsageGroup,
    ) -> StoreResult<Vec<UsageRow>> {
        // the day is the UTC date, the first ten characters of SQLite's text; the groups are in
        // the byte order of their keys (COLLATE "C", which an output name cannot take: the key's
        // expression), SQLite's BINARY, whatever the database's collation, and NULL (jobs without
        // an agent config) first as there; SUM of bigint is numeric in PostgreSQL, hence the casts
        let (key, label) = match group {
            UsageGroup::User => ("j.user_id", "MAX(u.username)"),
            UsageGroup::AgentConfig => ("j.agent_config_id", "MAX(a.name)"),
            UsageGroup::Model => ("j.model", "MAX(j.provider)"),
            UsageGroup::Day => ("to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD')", "NULL::text"),
        };
        // the bounds are days (`2026-12-01`), which SQLite compares as text: midnight UTC here
        let day = |d: &str| -> StoreResult<time::OffsetDateTime> {
            match time::Date::parse(d, time::macros::format_description!("[year]-[month]-[day]")) {
                Ok(day) => Ok(day.midnight().assume_utc()),
                Err(_) => pg_ts(d),
            }
        };
        let (from, to) = (day(from)?, day(to)?);
        t.query(
            &format!(
                "SELECT {key} AS k, {label}, COALESCE(SUM(j.prompt_tokens), 0)::bigint, \
                 COALESCE(SUM(j.completion_tokens), 0)::bigint, COUNT(*) FROM completion_jobs j \
                 LEFT JOIN users u ON u.id = j.user_id LEFT JOIN agent_configs a ON a.id = j.agent_config_id \
                 WHERE j.organization_id = $1 AND ($2::text IS NULL OR j.user_id = $2) AND j.created_at >= $3 \
                 AND j.created_at < $4 GROUP BY k ORDER BY {key} COLLATE \"C\" NULLS FIRST"
            ),
            &[&organization_id, &user_id, &from, &to],
        )?
        .iter()
        .map(|r| {
            let prompt_tokens: i64 = r.try_get(2)?;
            let completion_tokens: i64 = r.try_get(3)?;
            Ok(UsageRow {
                key: r.try_get(0)?,
                label: r.try_get(1)?,
                prompt_tokens,
                completion_tokens,
                total_tokens: prompt_tokens + completion_tokens,
                requests: r.try_get(4)?,
            })
        })
        .collect()
    }
}
