//! SQL of the limits (SPEC §8): what an organization and a user have spent of their token
//! budgets, and the replies a user has being generated. Spending is the tokens of the completion
//! jobs recorded in the period, the same numbers `GET /usage` sums; the indexes of
//! `V9__budget_indexes.sql` answer these from the index alone.

use rusqlite::{Connection, OptionalExtension, params};

use crate::{
    config::LimitsConfig,
    limits::{Budget, Budgets, ORG_MONTHLY, Period, USER_DAILY},
    store::error::StoreResult,
};

/// The budgets of `organization_id`: `[limits]`, overridden by its `settings.limits`.
pub fn org_budgets(conn: &Connection, defaults: &LimitsConfig, organization_id: &str) -> StoreResult<Budgets> {
    let own: Option<(Option<i64>, Option<i64>)> = conn
        .prepare_cached(
            "SELECT json_extract(settings, '$.limits.org_monthly_tokens'), \
             json_extract(settings, '$.limits.user_daily_tokens') FROM organizations \
             WHERE id = ?1 AND json_valid(settings)",
        )?
        .query_row([organization_id], |r| Ok((r.get(0).ok().flatten(), r.get(1).ok().flatten())))
        .optional()?;
    let (org, user) = own.unwrap_or_default();
    Ok(Budgets::resolve(defaults, org, user))
}

/// Tokens of the organization's completion jobs created in `period`.
pub fn org_spent(conn: &Connection, organization_id: &str, period: &Period) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM completion_jobs \
             WHERE organization_id = ?1 AND created_at >= ?2 AND created_at < ?3",
        )?
        .query_row(params![organization_id, period.start, period.end], |r| r.get(0))?)
}

/// Tokens of `user_id`'s completion jobs in the organization created in `period`.
pub fn user_spent(conn: &Connection, organization_id: &str, user_id: &str, period: &Period) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached(
            "SELECT COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM completion_jobs \
             WHERE user_id = ?1 AND created_at >= ?2 AND created_at < ?3 AND organization_id = ?4",
        )?
        .query_row(params![user_id, period.start, period.end, organization_id], |r| r.get(0))?)
}

/// The budgets in force for a report of the organization (`user_id` `None`: the monthly one) or
/// of one user in it (the user's daily one, then the organization's monthly one).
pub fn budgets_in_force(
    conn: &Connection,
    defaults: &LimitsConfig,
    organization_id: &str,
    user_id: Option<&str>,
    month: &Period,
    day: &Period,
) -> StoreResult<Vec<Budget>> {
    let b = org_budgets(conn, defaults, organization_id)?;
    let mut out = vec![];
    if let Some(uid) = user_id
        && b.user_daily_tokens > 0
    {
        out.push(day.budget(USER_DAILY, b.user_daily_tokens, user_spent(conn, organization_id, uid, day)?));
    }
    if b.org_monthly_tokens > 0 {
        out.push(month.budget(ORG_MONTHLY, b.org_monthly_tokens, org_spent(conn, organization_id, month)?));
    }
    Ok(out)
}

/// Replies `user_id` has being generated now (in any process on this database).
pub fn running_jobs(conn: &Connection, user_id: &str) -> StoreResult<i64> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM completion_jobs WHERE user_id = ?1 AND status = 'running'")?
        .query_row([user_id], |r| r.get(0))?)
}

/// Whether `user_id` may start one more reply, billed to `organization_id`: fewer running jobs
/// than `max_jobs_per_user` (409), and neither budget spent (429). Runs in the write transaction
/// that inserts the job, so two racing requests cannot both pass the job limit.
pub fn admit_job(
    conn: &Connection,
    defaults: &LimitsConfig,
    organization_id: &str,
    user_id: &str,
    now: time::OffsetDateTime,
) -> StoreResult<()> {
    let max = defaults.max_jobs_per_user;
    if max > 0 && running_jobs(conn, user_id)? >= i64::from(max) {
        return Err(crate::limits::too_many_jobs(max));
    }
    let (month, day) = crate::limits::periods(now);
    let b = org_budgets(conn, defaults, organization_id)?;
    if b.user_daily_tokens > 0 {
        let spent = day.budget(USER_DAILY, b.user_daily_tokens, user_spent(conn, organization_id, user_id, &day)?);
        if spent.remaining == 0 {
            return Err(crate::limits::budget_spent(&spent, &day, now));
        }
    }
    if b.org_monthly_tokens > 0 {
        let spent = month.budget(ORG_MONTHLY, b.org_monthly_tokens, org_spent(conn, organization_id, &month)?);
        if spent.remaining == 0 {
            return Err(crate::limits::budget_spent(&spent, &month, now));
        }
    }
    Ok(())
}
