//! SQL of the limits (SPEC §8): what an organization and a user have spent of their token
//! budgets, and the replies a user has being generated. Spending is the tokens of the completion
//! jobs recorded in the period, the same numbers `GET /usage` sums; the indexes of
//! `V9__budget_indexes.sql` answer these from the index alone.

use crate::{
    config::LimitsConfig,
    limits::{Budget, Budgets, ORG_MONTHLY, Period, USER_DAILY},
    store::{
        conn::Conn,
        error::{StoreError, StoreResult},
    },
};

/// The budgets of `organization_id`: `[limits]`, overridden by its `settings.limits`.
pub fn org_budgets(c: &mut Conn, defaults: &LimitsConfig, organization_id: &str) -> StoreResult<Budgets> {
    let (org, user) = match c {
        Conn::Sqlite(c) => sqlite::org_limits(c, organization_id)?,
        Conn::Postgres(t) => pg::org_limits(t, organization_id)?,
    };
    Ok(Budgets::resolve(defaults, org, user))
}

/// Tokens of the organization's completion jobs created in `period`.
pub fn org_spent(c: &mut Conn, organization_id: &str, period: &Period) -> StoreResult<i64> {
    match c {
        Conn::Sqlite(c) => sqlite::org_spent(c, organization_id, period),
        Conn::Postgres(t) => pg::org_spent(t, organization_id, period),
    }
}

/// Tokens of `user_id`'s completion jobs in the organization created in `period`.
pub fn user_spent(c: &mut Conn, organization_id: &str, user_id: &str, period: &Period) -> StoreResult<i64> {
    match c {
        Conn::Sqlite(c) => sqlite::user_spent(c, organization_id, user_id, period),
        Conn::Postgres(t) => pg::user_spent(t, organization_id, user_id, period),
    }
}

/// The budgets in force for a report of the organization (`user_id` `None`: the monthly one) or
/// of one user in it (the user's daily one, then the organization's monthly one).
pub fn budgets_in_force(
    c: &mut Conn,
    defaults: &LimitsConfig,
    organization_id: &str,
    user_id: Option<&str>,
    month: &Period,
    day: &Period,
) -> StoreResult<Vec<Budget>> {
    let b = org_budgets(c, defaults, organization_id)?;
    let mut out = vec![];
    if let Some(uid) = user_id
        && b.user_daily_tokens > 0
    {
        out.push(day.budget(USER_DAILY, b.user_daily_tokens, user_spent(c, organization_id, uid, day)?));
    }
    if b.org_monthly_tokens > 0 {
        out.push(month.budget(ORG_MONTHLY, b.org_monthly_tokens, org_spent(c, organization_id, month)?));
    }
    Ok(out)
}

/// Replies `user_id` has being generated now (in any process on this database).
pub fn running_jobs(c: &mut Conn, user_id: &str) -> StoreResult<i64> {
    match c {
        Conn::Sqlite(c) => sqlite::running_jobs(c, user_id),
        Conn::Postgres(t) => pg::running_jobs(t, user_id),
    }
}

/// Whether `user_id` may start one more reply, billed to `organization_id`: fewer running jobs
/// than `max_jobs_per_user` (409), and neither budget spent (429). Runs in the write transaction
/// that inserts the job, so two racing requests cannot both pass the job limit.
pub fn admit_job(
    c: &mut Conn,
    defaults: &LimitsConfig,
    organization_id: &str,
    user_id: &str,
    now: time::OffsetDateTime,
) -> StoreResult<()> {
    if let Conn::Postgres(t) = c {
        // SQLite's single writer admits one at a time; here the admissions of one organization
        // (its users' job limits and its budgets) queue on a transaction-scoped advisory lock
        pg::queue_admission(t, organization_id)?;
    }
    let max = defaults.max_jobs_per_user;
    if max > 0 && running_jobs(c, user_id)? >= i64::from(max) {
        return Err(crate::limits::too_many_jobs(max));
    }
    let (month, day) = crate::limits::periods(now);
    let b = org_budgets(c, defaults, organization_id)?;
    if b.user_daily_tokens > 0 {
        let spent = day.budget(USER_DAILY, b.user_daily_tokens, user_spent(c, organization_id, user_id, &day)?);
        if spent.remaining == 0 {
            return Err(crate::limits::budget_spent(&spent, &day, now));
        }
    }
    if b.org_monthly_tokens > 0 {
        let spent = month.budget(ORG_MONTHLY, b.org_monthly_tokens, org_spent(c, organization_id, &month)?);
        if spent.remaining == 0 {
            return Err(crate::limits::budget_spent(&spent, &month, now));
        }
    }
    Ok(())
}

/// Counts one request of `key` against `per_minute` (a burst of `per_minute`, then one every
/// `60 / per_minute` seconds: GCRA, as governor counts on SQLite) on the database, where every
/// instance counts it (PostgreSQL). `Ok(None)`: allowed; `Ok(Some(s))`: over the rate, allowed
/// again in `s` seconds. One statement that commits itself (`Store::write_statement`), and a
/// read after it only on refusal.
pub fn take_request(c: &mut Conn, key: &str, per_minute: u32) -> StoreResult<Option<u64>> {
    match c {
        Conn::Sqlite(_) => Err(StoreError::internal("SQLite counts the rate limits in memory")),
        Conn::Postgres(t) => pg::take_request(t, key, per_minute),
    }
}

/// Forgets the callers whose allowance is full again (PostgreSQL); how many.
pub fn forget_idle_rates(c: &mut Conn) -> StoreResult<u64> {
    match c {
        Conn::Sqlite(_) => Ok(0),
        Conn::Postgres(t) => Ok(t.execute("DELETE FROM rate_limits WHERE theoretical_arrival_at < now()", &[])?),
    }
}

mod sqlite {
    use rusqlite::{Connection, OptionalExtension, params};

    use crate::{limits::Period, store::error::StoreResult};

    /// `settings.limits` of `organization_id`: (org_monthly_tokens, user_daily_tokens) when integers.
    pub(super) fn org_limits(conn: &Connection, organization_id: &str) -> StoreResult<(Option<i64>, Option<i64>)> {
        let own: Option<(Option<i64>, Option<i64>)> = conn
            .prepare_cached(
                "SELECT json_extract(settings, '$.limits.org_monthly_tokens'), \
                 json_extract(settings, '$.limits.user_daily_tokens') FROM organizations \
                 WHERE id = ?1 AND json_valid(settings)",
            )?
            .query_row([organization_id], |r| Ok((r.get(0).ok().flatten(), r.get(1).ok().flatten())))
            .optional()?;
        Ok(own.unwrap_or_default())
    }

    /// Tokens of the organization's completion jobs created in `period`.
    pub(super) fn org_spent(conn: &Connection, organization_id: &str, period: &Period) -> StoreResult<i64> {
        Ok(conn
            .prepare_cached(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM completion_jobs \
                 WHERE organization_id = ?1 AND created_at >= ?2 AND created_at < ?3",
            )?
            .query_row(params![organization_id, period.start, period.end], |r| r.get(0))?)
    }

    /// Tokens of `user_id`'s completion jobs in the organization created in `period`.
    pub(super) fn user_spent(
        conn: &Connection,
        organization_id: &str,
        user_id: &str,
        period: &Period,
    ) -> StoreResult<i64> {
        Ok(conn
            .prepare_cached(
                "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM completion_jobs \
                 WHERE user_id = ?1 AND created_at >= ?2 AND created_at < ?3 AND organization_id = ?4",
            )?
            .query_row(params![user_id, period.start, period.end, organization_id], |r| r.get(0))?)
    }

    /// Replies `user_id` has being generated now (in any process on this database).
    pub(super) fn running_jobs(conn: &Connection, user_id: &str) -> StoreResult<i64> {
        Ok(conn
            .prepare_cached("SELECT COUNT(*) FROM completion_jobs WHERE user_id = ?1 AND status = 'running'")?
            .query_row([user_id], |r| r.get(0))?)
    }
}

mod pg {
    use crate::pg::Transaction;

    use crate::{
        limits::Period,
        store::{conn::pg_ts, error::StoreResult},
    };

    /// SQLite's json_extract reads a JSON integer as an integer and anything else (a float, a
    /// string, an object) as something that is not one, which the budget then ignores: the
    /// value's JSON text parsed as an i64 says the same.
    pub(super) fn org_limits(t: &mut Transaction, organization_id: &str) -> StoreResult<(Option<i64>, Option<i64>)> {
        let own = t.query_opt(
            "SELECT (settings #> '{limits,org_monthly_tokens}')::text, \
             (settings #> '{limits,user_daily_tokens}')::text FROM organizations WHERE id = $1",
            &[&organization_id],
        )?;
        let Some(r) = own else { return Ok((None, None)) };
        let int = |i: usize| -> StoreResult<Option<i64>> {
            Ok(r.try_get::<_, Option<String>>(i)?.and_then(|v| v.parse().ok()))
        };
        Ok((int(0)?, int(1)?))
    }

    pub(super) fn org_spent(t: &mut Transaction, organization_id: &str, period: &Period) -> StoreResult<i64> {
        let (start, end) = (pg_ts(&period.start)?, pg_ts(&period.end)?);
        Ok(t.query_one(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0)::bigint FROM completion_jobs \
             WHERE organization_id = $1 AND created_at >= $2 AND created_at < $3",
            &[&organization_id, &start, &end],
        )?
        .try_get(0)?)
    }

    pub(super) fn user_spent(
        t: &mut Transaction,
        organization_id: &str,
        user_id: &str,
        period: &Period,
    ) -> StoreResult<i64> {
        let (start, end) = (pg_ts(&period.start)?, pg_ts(&period.end)?);
        Ok(t.query_one(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0)::bigint FROM completion_jobs \
             WHERE user_id = $1 AND created_at >= $2 AND created_at < $3 AND organization_id = $4",
            &[&user_id, &start, &end, &organization_id],
        )?
        .try_get(0)?)
    }

    /// Waits for the other admissions of the organization to commit (released at this
    /// transaction's end).
    pub(super) fn queue_admission(t: &mut Transaction, organization_id: &str) -> StoreResult<()> {
        t.execute("SELECT pg_advisory_xact_lock(hashtextextended('admission:' || $1, 0))", &[&organization_id])?;
        Ok(())
    }

    /// GCRA with emission interval `T = 60 s / per_minute` and a burst of `per_minute`: a request
    /// is allowed when `max(tat, now) + T <= now + 60 s`, and moves `tat` there. The upsert locks
    /// the caller's row, so racing requests of several instances count one after the other; the
    /// times are the database's clock.
    pub(super) fn take_request(t: &mut Transaction, key: &str, per_minute: u32) -> StoreResult<Option<u64>> {
        let interval = 60.0 / f64::from(per_minute.max(1));
        let allowed = t.query_opt(
            "INSERT INTO rate_limits AS r (key, theoretical_arrival_at) VALUES ($1, now() + make_interval(secs => $2)) \
             ON CONFLICT (key) DO UPDATE SET \
                 theoretical_arrival_at = greatest(r.theoretical_arrival_at, now()) + make_interval(secs => $2) \
             WHERE greatest(r.theoretical_arrival_at, now()) + make_interval(secs => $2) <= now() + interval '60 seconds' \
             RETURNING 1",
            &[&key, &interval],
        )?;
        if allowed.is_some() {
            return Ok(None);
        }
        // allowed again once `tat + T - 60 s` has come
        let wait: f64 = t
            .query_one(
                "SELECT extract(epoch FROM greatest(theoretical_arrival_at, now()) + make_interval(secs => $2) \
                 - interval '60 seconds' - now())::float8 FROM rate_limits WHERE key = $1",
                &[&key, &interval],
            )?
            .try_get(0)?;
        Ok(Some((wait.max(0.0).ceil() as u64).max(1)))
    }

    pub(super) fn running_jobs(t: &mut Transaction, user_id: &str) -> StoreResult<i64> {
        Ok(t.query_one("SELECT COUNT(*) FROM completion_jobs WHERE user_id = $1 AND status = 'running'", &[&user_id])?
            .try_get(0)?)
    }
}
