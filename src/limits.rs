//! `[limits]` (SPEC §8): token budgets of completions, the number of replies generated at once
//! per user, and request rate limits.
//!
//! Budgets and the job limit are read from the database when a completion starts, so they hold
//! across several server processes on one database. Rate limits count with GCRA: in memory
//! through `governor` on SQLite (one process serves the file), in the database on PostgreSQL,
//! where every instance counts the same callers (`store::limits::take_request`).

use std::{net::IpAddr, num::NonZeroU32, sync::Arc, time::Duration};

use governor::{Quota, RateLimiter, clock::Clock, clock::DefaultClock, state::keyed::DashMapStateStore};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, http::Method};
use poem_openapi::Object;
use serde_json::Value;
use time::{Date, Month, OffsetDateTime, Time};

use crate::{
    authz::CurrentUser,
    config::{LimitsConfig, MAX_TOKEN_BUDGET},
    db::format_ts,
    error::{ApiError, ApiResult},
    store::{self, conn::Store, error::StoreError},
};

// ---------------------------------------------------------------------------------------------
// Token budgets

/// The budget names, as in `[limits]`, `settings.limits` and `GET /usage`.
pub const ORG_MONTHLY: &str = "org_monthly_tokens";
pub const USER_DAILY: &str = "user_daily_tokens";

/// One token budget in force, with what is spent of it.
#[derive(Object, Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// `org_monthly_tokens` (the organization, per UTC calendar month) or `user_daily_tokens`
    /// (one user in the organization, per UTC day)
    pub name: String,
    /// Tokens (prompt + completion) allowed in the period
    pub limit: i64,
    /// Tokens of the period's completion jobs recorded so far
    pub used: i64,
    /// `limit - used`, never below 0
    pub remaining: i64,
    /// When the period ends and the budget starts afresh (RFC 3339, UTC)
    pub resets_at: String,
}

/// The budgets of one organization: `[limits]` defaults, overridden by its `settings.limits`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Budgets {
    pub org_monthly_tokens: u64,
    pub user_daily_tokens: u64,
}

impl Budgets {
    /// The organization's budgets from the defaults and the overrides read from its settings
    /// (`None`: not set there).
    pub fn resolve(defaults: &LimitsConfig, org_monthly: Option<i64>, user_daily: Option<i64>) -> Budgets {
        let pick = |own: Option<i64>, default: u64| own.map_or(default, |v| v.max(0) as u64);
        Budgets {
            org_monthly_tokens: pick(org_monthly, defaults.org_monthly_tokens),
            user_daily_tokens: pick(user_daily, defaults.user_daily_tokens),
        }
    }
}

/// The UTC periods a budget counts in: `[start, end)` as stored timestamps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub start: String,
    pub end: String,
    end_at: OffsetDateTime,
}

impl Period {
    /// The calendar month of `now`.
    pub fn month(now: OffsetDateTime) -> Period {
        let first = Date::from_calendar_date(now.year(), now.month(), 1).expect("day 1 exists");
        let next = match now.month() {
            Month::December => Date::from_calendar_date(now.year() + 1, Month::January, 1),
            m => Date::from_calendar_date(now.year(), m.next(), 1),
        }
        .expect("day 1 exists");
        Period::between(first, next)
    }

    /// The day of `now`.
    pub fn day(now: OffsetDateTime) -> Period {
        let today = now.date();
        Period::between(today, today.next_day().unwrap_or(today))
    }

    fn between(from: Date, to: Date) -> Period {
        let (a, b) = (from.with_time(Time::MIDNIGHT).assume_utc(), to.with_time(Time::MIDNIGHT).assume_utc());
        Period { start: format_ts(a), end: format_ts(b), end_at: b }
    }

    /// Whole seconds from `now` until the period ends, at least 1.
    pub fn seconds_left(&self, now: OffsetDateTime) -> u64 {
        let left = (self.end_at - now).whole_milliseconds().max(0) as u64;
        left.div_ceil(1000).max(1)
    }

    pub fn budget(&self, name: &str, limit: u64, used: i64) -> Budget {
        let limit = limit.min(i64::MAX as u64) as i64;
        Budget {
            name: name.to_string(),
            limit,
            used,
            remaining: (limit - used).max(0),
            resets_at: format_ts(self.end_at),
        }
    }
}

/// The 429 of a spent budget: the detail names it and when it resets; `Retry-After` is the
/// seconds until then.
pub fn budget_spent(b: &Budget, period: &Period, now: OffsetDateTime) -> StoreError {
    let day = &b.resets_at[..10];
    let detail = match b.name.as_str() {
        ORG_MONTHLY => {
            format!("The organization's monthly token budget ({} tokens) is spent; it resets on {day}", b.limit)
        }
        _ => format!("Your daily token budget ({} tokens) is spent; it resets at {} (UTC)", b.limit, b.resets_at),
    };
    StoreError::Exhausted { detail, retry_after: period.seconds_left(now) }
}

/// The 409 of a user with `max` replies being generated already.
pub fn too_many_jobs(max: u32) -> StoreError {
    StoreError::conflict(format!(
        "You already have {max} replies being generated, the most allowed at once ([limits] max_jobs_per_user); \
         wait for one to finish or cancel it"
    ))
}

/// Checks the `limits` member of an organization's settings: an object with only
/// `org_monthly_tokens` and `user_daily_tokens`, each a whole number of tokens (0: no budget).
pub fn validate_settings_limits(settings: &Value) -> ApiResult<()> {
    let Some(limits) = settings.get("limits") else { return Ok(()) };
    let bad = |what: String| ApiError::bad_request(format!("settings.limits: {what}"));
    let Some(obj) = limits.as_object() else {
        return Err(bad(
            "must be an object like {\"org_monthly_tokens\": 1000000, \"user_daily_tokens\": 20000}".into()
        ));
    };
    for (key, value) in obj {
        if key != ORG_MONTHLY && key != USER_DAILY {
            return Err(bad(format!("unknown key {key:?}; the keys are {ORG_MONTHLY} and {USER_DAILY}")));
        }
        if value.as_u64().is_none_or(|v| v > MAX_TOKEN_BUDGET) {
            return Err(bad(format!(
                "{key} must be a whole number of tokens from 0 (no budget) to {MAX_TOKEN_BUDGET}"
            )));
        }
    }
    Ok(())
}

/// An organization's `settings` as given (a JSON object, default `{}`) with its `limits` checked;
/// the JSON text to store.
pub fn org_settings(settings: Option<Value>) -> ApiResult<String> {
    let text = crate::validate::json_object("settings", settings)?;
    validate_settings_limits(&serde_json::from_str(&text).unwrap_or(Value::Null))?;
    Ok(text)
}

/// The `settings` of an update by someone who is not a superuser, given the stored ones: they
/// keep the stored `limits` (when they leave it out) or must send it unchanged (else 403).
pub fn keep_stored_limits(settings: &str, stored: &str) -> ApiResult<String> {
    let mut new: Value = serde_json::from_str(settings).unwrap_or(Value::Null);
    let stored = settings_limits(stored);
    match new.get("limits") {
        None if stored.is_null() => {}
        None => new["limits"] = stored,
        Some(l) if *l == stored => {}
        Some(_) => {
            return Err(ApiError::forbidden(
                "Only a superuser may set or change settings.limits (the organization's token budgets)",
            ));
        }
    }
    Ok(new.to_string())
}

/// The `limits` member of a settings JSON text (`Value::Null` when absent or unreadable).
pub fn settings_limits(settings: &str) -> Value {
    serde_json::from_str::<Value>(settings)
        .ok()
        .and_then(|mut s| s.get_mut("limits").map(Value::take))
        .unwrap_or(Value::Null)
}

// ---------------------------------------------------------------------------------------------
// Request rate limits

type Keyed<K> = RateLimiter<K, DashMapStateStore<K>, DefaultClock>;

/// Where one rate limit counts: in this process's memory (one process serves a SQLite file), or
/// in the database, where every instance counts (PostgreSQL).
enum Counter<K: std::hash::Hash + Eq + Clone> {
    Local(Keyed<K>),
    Shared(Store),
}

impl<K: std::hash::Hash + Eq + Clone + std::fmt::Display> Counter<K> {
    fn new(per_minute: u32, shared: Option<&Store>) -> Option<(Counter<K>, u32)> {
        let n = NonZeroU32::new(per_minute)?;
        let counter = match shared {
            Some(store) => Counter::Shared(store.clone()),
            None => Counter::Local(RateLimiter::dashmap(Quota::per_minute(n))),
        };
        Some((counter, per_minute))
    }

    /// `Err(seconds to wait)` when `key` is over `per_minute`.
    async fn take(&self, key: &K, per_minute: u32) -> ApiResult<Result<(), u64>> {
        match self {
            Counter::Local(limiter) => Ok(check(limiter, key)),
            Counter::Shared(store) => {
                let key = key.to_string();
                let wait = store.write_statement(move |c| store::limits::take_request(c, &key, per_minute)).await?;
                Ok(wait.map_or(Ok(()), Err))
            }
        }
    }
}

/// The request rate limiters of this process; a limit of 0 has none (and costs nothing).
#[derive(Default)]
pub struct RateLimits {
    callers: Option<(Counter<String>, u32)>,
    anonymous: Option<(Counter<AddrKey>, u32)>,
    shared: Option<Store>,
}

/// A client address as the key of the anonymous limit (`a:` and the address in the database).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AddrKey(IpAddr);

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a:{}", self.0)
    }
}

impl RateLimits {
    /// The limits of `config`, counted in `shared` when several instances share it (PostgreSQL),
    /// else in memory.
    pub fn new(config: &LimitsConfig, shared: Option<Store>) -> RateLimits {
        RateLimits {
            callers: Counter::new(config.requests_per_minute, shared.as_ref()),
            anonymous: Counter::new(config.anonymous_requests_per_minute, shared.as_ref()),
            shared,
        }
    }

    pub fn has_anonymous_limit(&self) -> bool {
        self.anonymous.is_some()
    }

    /// Counts a request of an authenticated caller: per API key when it came with one, else per
    /// user.
    pub async fn check_caller(&self, user: &CurrentUser) -> ApiResult<()> {
        let Some((counter, per_minute)) = &self.callers else { return Ok(()) };
        let (key, who) = match &user.api_key_id {
            Some(k) => (format!("k:{k}"), "this API key"),
            None => (format!("u:{}", user.id), "your account"),
        };
        counter.take(&key, *per_minute).await?.map_err(|wait| {
            ApiError::too_many_requests(
                format!(
                    "Too many requests: {who} may make {per_minute} per minute ([limits] requests_per_minute); \
                     retry in {wait} s"
                ),
                wait,
            )
        })
    }

    /// Counts a request to an endpoint that needs no token, per client address.
    pub async fn check_anonymous(&self, addr: IpAddr) -> ApiResult<()> {
        let Some((counter, per_minute)) = &self.anonymous else { return Ok(()) };
        counter.take(&AddrKey(addr), *per_minute).await?.map_err(|wait| {
            ApiError::too_many_requests(
                format!(
                    "Too many requests from your address: {per_minute} per minute are allowed on the endpoints \
                     that need no token ([limits] anonymous_requests_per_minute); retry in {wait} s"
                ),
                wait,
            )
        })
    }

    /// Forgets the callers whose allowance is full again, so that memory (or the database's
    /// table) holds only the recent ones.
    pub async fn forget_idle(&self) {
        if let Some((Counter::Local(l), _)) = &self.callers {
            l.retain_recent();
        }
        if let Some((Counter::Local(l), _)) = &self.anonymous {
            l.retain_recent();
        }
        let Some(store) = &self.shared else { return };
        if self.callers.is_some() || self.anonymous.is_some() {
            match store.write(store::limits::forget_idle_rates).await {
                Ok(n) if n > 0 => tracing::debug!(callers = n, "forgot idle rate-limit counters"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning the rate-limit counters failed"),
            }
        }
    }
}

/// `Err(seconds to wait)` when `key` is over its rate.
fn check<K: std::hash::Hash + Eq + Clone>(limiter: &Keyed<K>, key: &K) -> Result<(), u64> {
    limiter.check_key(key).map_err(|not_until| {
        let wait: Duration = not_until.wait_time_from(limiter.clock().now());
        (wait.as_millis() as u64).div_ceil(1000).max(1)
    })
}

/// The anonymous rate limit around the endpoints that need no token: the public operations of
/// the OpenAPI document except the health probes and `/metrics` (which orchestrators and
/// scrapers call often, from few addresses).
pub struct AnonymousLimit {
    pub limits: Arc<RateLimits>,
    /// `[server] trusted_proxies`: behind them the client is named by `X-Forwarded-For`.
    pub trusted_proxies: Vec<String>,
}

/// `(method, path)` of the endpoints the anonymous limit counts.
pub fn anonymous_routes() -> Vec<(Method, String)> {
    crate::openapi::OPERATIONS
        .iter()
        .filter(|o| o.public && !o.path.starts_with("/health/") && o.path != "/metrics")
        .map(|o| (o.method.to_ascii_uppercase().parse().expect("an HTTP method"), format!("/api/v1{}", o.path)))
        .collect()
}

impl<E: Endpoint> Middleware<E> for AnonymousLimit {
    type Output = AnonymousLimitEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        AnonymousLimitEndpoint {
            inner,
            limits: self.limits.clone(),
            routes: anonymous_routes(),
            trusted_proxies: self.trusted_proxies.clone(),
        }
    }
}

pub struct AnonymousLimitEndpoint<E> {
    inner: E,
    limits: Arc<RateLimits>,
    routes: Vec<(Method, String)>,
    trusted_proxies: Vec<String>,
}

impl<E: Endpoint> Endpoint for AnonymousLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let path = req.uri().path().trim_end_matches('/');
        let counted = self.routes.iter().any(|(m, p)| m == req.method() && p == path);
        if counted
            && let Some(ip) = crate::middleware::client_of(&req, &self.trusted_proxies).ip
            && let Err(e) = self.limits.check_anonymous(ip).await
        {
            return Ok(e.into_response());
        }
        Ok(self.inner.call(req).await?.into_response())
    }
}

/// The month and the day that the budgets count in at `now`.
pub fn periods(now: OffsetDateTime) -> (Period, Period) {
    (Period::month(now), Period::day(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    #[test]
    fn periods_are_utc_calendar_months_and_days() {
        let now = datetime!(2026-12-31 23:59:30 UTC);
        let (month, day) = periods(now);
        assert_eq!(
            (month.start.as_str(), month.end.as_str()),
            ("2026-12-01T00:00:00.000000Z", "2027-01-01T00:00:00.000000Z")
        );
        assert_eq!(
            (day.start.as_str(), day.end.as_str()),
            ("2026-12-31T00:00:00.000000Z", "2027-01-01T00:00:00.000000Z")
        );
        assert_eq!(day.seconds_left(now), 30);
        let b = month.budget(ORG_MONTHLY, 100_000, 100_250);
        assert_eq!((b.remaining, b.resets_at.as_str()), (0, "2027-01-01T00:00:00.000000Z"));
        let e = ApiError::from(budget_spent(&b, &month, now));
        assert_eq!((e.status.as_u16(), e.retry_after), (429, Some(30)));
        assert_eq!(
            e.detail,
            "The organization's monthly token budget (100000 tokens) is spent; it resets on 2027-01-01"
        );
        let mid = Period::month(datetime!(2026-02-10 08:00 UTC));
        assert_eq!(
            (mid.start.as_str(), mid.end.as_str()),
            ("2026-02-01T00:00:00.000000Z", "2026-03-01T00:00:00.000000Z")
        );
    }

    #[test]
    fn an_organization_overrides_the_defaults() {
        let defaults = LimitsConfig { org_monthly_tokens: 1000, user_daily_tokens: 10, ..LimitsConfig::default() };
        assert_eq!(
            Budgets::resolve(&defaults, None, Some(0)),
            Budgets { org_monthly_tokens: 1000, user_daily_tokens: 0 }
        );
        assert_eq!(Budgets::resolve(&defaults, Some(5), None).org_monthly_tokens, 5);
    }

    #[test]
    fn settings_limits_are_validated() {
        for ok in
            [json!({}), json!({"limits": {}}), json!({"limits": {"org_monthly_tokens": 0, "user_daily_tokens": 5}})]
        {
            assert!(validate_settings_limits(&ok).is_ok(), "{ok}");
        }
        for bad in [
            json!({"limits": 5}),
            json!({"limits": {"org_monthly_tokens": -1}}),
            json!({"limits": {"user_daily_tokens": 1.5}}),
            json!({"limits": {"user_daily_tokens": "100"}}),
            json!({"limits": {"monthly": 100}}),
        ] {
            let e = validate_settings_limits(&bad).unwrap_err();
            assert!(e.status.as_u16() == 400 && e.detail.starts_with("settings.limits"), "{bad}: {e}");
        }
        assert_eq!(settings_limits(r#"{"a":1,"limits":{"user_daily_tokens":5}}"#), json!({"user_daily_tokens": 5}));
        assert_eq!(settings_limits("{}"), Value::Null);
    }

    #[tokio::test]
    async fn a_rate_limit_counts_per_key_and_says_how_long_to_wait() {
        let config = LimitsConfig { anonymous_requests_per_minute: 2, ..LimitsConfig::default() };
        let limits = RateLimits::new(&config, None);
        let (a, b): (IpAddr, IpAddr) = ("127.0.0.1".parse().unwrap(), "10.0.0.1".parse().unwrap());
        assert!(limits.check_anonymous(a).await.is_ok() && limits.check_anonymous(a).await.is_ok());
        let e = limits.check_anonymous(a).await.unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.is_some_and(|s| (1..=30).contains(&s)), "{:?}", e.retry_after);
        assert!(e.detail.contains("anonymous_requests_per_minute"), "{}", e.detail);
        assert!(limits.check_anonymous(b).await.is_ok(), "another address has its own allowance");
        limits.forget_idle().await;
        let off = RateLimits::new(&LimitsConfig::default(), None);
        assert!(!off.has_anonymous_limit());
        for _ in 0..1000 {
            assert!(off.check_anonymous(a).await.is_ok());
        }
    }
}
