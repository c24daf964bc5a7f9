//! `GET /metrics` (SPEC §9): the Prometheus text format, served when `[metrics] enabled`, to
//! loopback clients or to a scraper with `[metrics] token`.
//!
//! Requests are counted as they finish (by method, route template and status, with a latency
//! histogram); everything else is read when scraped: the database pools, the completion jobs of
//! this process and their tokens, and the ingestion queue (from the database, so every instance
//! reports the same queue).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{OnceLock, atomic::Ordering},
    time::Duration,
};

use poem::{
    PathPattern, Request,
    http::{StatusCode, header},
};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use rusqlite::params;

use crate::{
    AppState,
    config::MetricsConfig,
    error::ApiError,
    store::{conn::Conn, error::StoreResult},
};

/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets in seconds: from half a millisecond (an `/auth/me`) to ten seconds.
const BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    pool: IntGaugeVec,
    jobs_running: IntGaugeVec,
    jobs_finished: IntCounterVec,
    tokens: IntCounterVec,
    documents: IntGaugeVec,
    /// poem's route patterns (`/api/v1/users/:param0`) to the OpenAPI document's templates
    /// (`/api/v1/users/{id}`), which is what the label shows.
    templates: OnceLock<HashMap<String, String>>,
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("copilot_http_requests_total", "HTTP requests answered, by method, route and status"),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "copilot_http_request_duration_seconds",
                "Time to the response head, by method and route",
            )
            .buckets(BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        let pool = IntGaugeVec::new(
            Opts::new(
                "copilot_db_pool_connections",
                "Database connections by pool (SQLite: read, mapped: knowledge search, write; PostgreSQL: postgres) and state (idle, busy)",
            ),
            &["pool", "state"],
        )
        .expect("valid metric");
        let jobs_running =
            IntGaugeVec::new(Opts::new("copilot_completion_jobs_running", "Replies this process is generating"), &[])
                .expect("valid metric");
        let jobs_finished = IntCounterVec::new(
            Opts::new("copilot_completion_jobs_total", "Replies this process finished, by status"),
            &["status"],
        )
        .expect("valid metric");
        let tokens = IntCounterVec::new(
            Opts::new("copilot_llm_tokens_total", "LLM tokens of the replies this process finished, by kind"),
            &["kind"],
        )
        .expect("valid metric");
        let documents = IntGaugeVec::new(
            Opts::new("copilot_documents", "Documents by ingestion status (pending and processing: the queue)"),
            &["status"],
        )
        .expect("valid metric");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(latency.clone()),
            Box::new(pool.clone()),
            Box::new(jobs_running.clone()),
            Box::new(jobs_finished.clone()),
            Box::new(tokens.clone()),
            Box::new(documents.clone()),
        ] {
            registry.register(c).expect("distinct metric names");
        }
        Metrics {
            registry,
            requests,
            latency,
            pool,
            jobs_running,
            jobs_finished,
            tokens,
            documents,
            templates: OnceLock::new(),
        }
    }

    /// Learns the API's path templates (`/api/v1/users/{id}`) for the route label.
    pub fn set_templates<'a>(&self, templates: impl IntoIterator<Item = &'a str>) {
        let map = templates
            .into_iter()
            .map(|t| {
                let mut n = 0;
                let pattern = t
                    .split('/')
                    .map(|seg| {
                        if seg.starts_with('{') && seg.ends_with('}') {
                            n += 1;
                            format!(":param{}", n - 1)
                        } else {
                            seg.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                (pattern, t.to_string())
            })
            .collect();
        let _ = self.templates.set(map);
    }

    /// Counts one answered request. `route` is the matched template (`/api/v1/users/{id}`),
    /// never the raw path, so that the label set stays small.
    pub fn observe(&self, method: &str, route: Option<&PathPattern>, status: StatusCode, elapsed: Duration) {
        // a 404 inside a nested tree carries the nest's pattern (`/api/v1`): unmatched too
        let route = match (route, self.templates.get()) {
            (Some(p), Some(t)) if t.contains_key(&*p.0) => t[&*p.0].as_str(),
            (Some(p), _) if status != StatusCode::NOT_FOUND => &p.0,
            _ => "unmatched",
        };
        self.requests.with_label_values(&[method, route, status.as_str()]).inc();
        self.latency.with_label_values(&[method, route]).observe(elapsed.as_secs_f64());
    }

    /// The text format of every metric, with the gauges read now.
    async fn render(&self, state: &AppState) -> Result<String, ApiError> {
        for (pool, open, idle) in state.store.pool_state() {
            self.pool.with_label_values(&[pool, "idle"]).set(i64::from(idle));
            self.pool.with_label_values(&[pool, "busy"]).set(i64::from(open.saturating_sub(idle)));
        }
        self.jobs_running.with_label_values(&[] as &[&str]).set(state.jobs.running() as i64);
        let t = &state.jobs.tally;
        for (counter, label, value) in [
            (&self.jobs_finished, "completed", &t.completed),
            (&self.jobs_finished, "cancelled", &t.cancelled),
            (&self.jobs_finished, "failed", &t.failed),
            (&self.tokens, "prompt", &t.prompt_tokens),
            (&self.tokens, "completion", &t.completion_tokens),
        ] {
            // the tally is the truth; the counter catches up with it
            let c = counter.with_label_values(&[label]);
            c.inc_by(value.load(Ordering::Relaxed).saturating_sub(c.get()));
        }
        let counts: Vec<(String, i64)> = state
            .store
            .read(|c| -> StoreResult<_> {
                const COUNTS: &str = "SELECT status, COUNT(*) FROM documents GROUP BY status";
                Ok(match c {
                    Conn::Sqlite(c) => {
                        let mut stmt = c.prepare_cached(COUNTS)?;
                        let rows = stmt.query_map(params![], |r| Ok((r.get(0)?, r.get(1)?)))?;
                        rows.collect::<rusqlite::Result<_>>()?
                    }
                    Conn::Postgres(t) => {
                        let rows = t.query(COUNTS, &[])?;
                        rows.iter()
                            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                            .collect::<Result<_, postgres::Error>>()?
                    }
                })
            })
            .await?;
        for status in ["pending", "processing", "ready", "failed"] {
            let n = counts.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
            self.documents.with_label_values(&[status]).set(n);
        }
        TextEncoder::new().encode_to_string(&self.registry.gather()).map_err(ApiError::internal)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Who may scrape: with a token, whoever sends it (constant-time compare); without one,
/// loopback clients only.
fn check_access(config: &MetricsConfig, peer: Option<IpAddr>, authorization: Option<&str>) -> Result<(), ApiError> {
    if !config.token.is_empty() {
        let sent = authorization.and_then(|v| v.strip_prefix("Bearer ")).unwrap_or_default();
        return if constant_time_eq(sent.as_bytes(), config.token.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::unauthorized("send the [metrics] token as Authorization: Bearer <token>"))
        };
    }
    let loopback = match peer {
        Some(IpAddr::V4(ip)) => ip.is_loopback(),
        Some(IpAddr::V6(ip)) => ip.to_canonical().is_loopback(),
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(ApiError::forbidden(
            "metrics are served to loopback clients only; set [metrics] token to scrape from elsewhere",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `GET /metrics` (and `/api/v1/metrics`): 404 while `[metrics] enabled = false`.
pub async fn scrape(state: &AppState, req: &Request) -> Result<String, ApiError> {
    let Some(metrics) = state.metrics.as_ref() else {
        return Err(ApiError::not_found("metrics are off; set [metrics] enabled = true"));
    };
    let peer = req.remote_addr().as_socket_addr().map(|a| a.ip());
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    check_access(&state.config.metrics, peer, authorization)?;
    metrics.render(state).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_or_the_token_may_scrape() {
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        let open = MetricsConfig { enabled: true, token: String::new() };
        assert!(check_access(&open, ip("127.0.0.1"), None).is_ok());
        assert!(check_access(&open, ip("::1"), None).is_ok());
        assert!(check_access(&open, ip("::ffff:127.0.0.1"), None).is_ok());
        assert_eq!(check_access(&open, ip("10.0.0.7"), None).unwrap_err().status, 403);
        assert_eq!(check_access(&open, None, None).unwrap_err().status, 403);

        let token = MetricsConfig { enabled: true, token: "s3cret-scraper-token".into() };
        let with = |auth| check_access(&token, ip("10.0.0.7"), auth);
        assert!(with(Some("Bearer s3cret-scraper-token")).is_ok());
        assert_eq!(with(Some("Bearer s3cret-scraper-tokem")).unwrap_err().status, 401);
        assert_eq!(with(Some("s3cret-scraper-token")).unwrap_err().status, 401);
        assert_eq!(with(None).unwrap_err().status, 401);
        // a token set means the token is needed from loopback too (a proxy may sit there)
        assert_eq!(check_access(&token, ip("127.0.0.1"), None).unwrap_err().status, 401);
    }
}
