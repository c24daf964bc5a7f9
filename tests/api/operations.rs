//! Operations (SPEC §9): health probes and Prometheus metrics.

use copilot::store::error::StoreResult;
use std::collections::{BTreeMap, BTreeSet};

use crate::helpers::*;

#[tokio::test]
async fn health_probes_answer_without_auth_at_the_root_and_under_the_api() {
    let app = spawn_app().await;
    for prefix in ["", "/api/v1"] {
        let r = app.send(app.client.get(app.url(&format!("{prefix}/health/live")))).await;
        assert_eq!((r.status, r.body["status"].as_str()), (200, Some("ok")), "{prefix}/health/live");
        let r = app.send(app.client.get(app.url(&format!("{prefix}/health/ready")))).await;
        assert_eq!(r.status, 200, "{prefix}/health/ready: {:?}", r.body);
        assert_eq!((&r.body["database"], &r.body["migrations"]), (&"ok".into(), &"ok".into()));
        let r = app.send(app.client.post(app.url(&format!("{prefix}/health/ready")))).await;
        assert_eq!((r.status, r.header("allow")), (405, Some("GET, HEAD")), "{prefix}");
    }
}

#[tokio::test]
async fn readiness_fails_while_a_migration_of_this_build_is_missing() {
    let app = spawn_app().await;
    // fault injection: the database forgets its newest migration
    app.state.store
        .write(|tx| -> StoreResult<_> {
            sql_exec(tx, "DELETE FROM refinery_schema_history WHERE version = (SELECT MAX(version) FROM refinery_schema_history)", &[])?;
            Ok(())
        })
        .await
        .unwrap();
    let r = app.send(app.client.get(app.url("/health/ready"))).await;
    assert_eq!(r.status, 503);
    assert_eq!((r.body["status"].as_str(), r.body["migrations"].as_str()), (Some("error"), Some("pending")));
    assert!(r.detail().contains("migrations"), "{}", r.detail());
    let r = app.send(app.client.get(app.url("/health/live"))).await;
    assert_eq!(r.status, 200, "the process itself still lives");
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let app = spawn_app().await;
    for path in ["/metrics", "/api/v1/metrics"] {
        let r = app.send(app.client.get(app.url(path))).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.detail().contains("[metrics] enabled"), "{}", r.detail());
    }
}

#[tokio::test]
async fn metrics_need_the_token_when_one_is_configured() {
    let app = spawn_app_with(|c| {
        c.metrics.enabled = true;
        c.metrics.token = "scraper-token-0123456789".into();
    })
    .await;
    let r = app.send(app.client.get(app.url("/metrics"))).await;
    assert_eq!((r.status, r.header("www-authenticate")), (401, Some("Bearer")), "loopback needs it too");
    let r = app.send(app.client.get(app.url("/metrics")).bearer_auth("scraper-token-0123456789x")).await;
    assert_eq!(r.status, 401);
    let r = app.client.get(app.url("/api/v1/metrics")).bearer_auth("scraper-token-0123456789").send().await.unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_status_in_the_prometheus_text_format() {
    let app = spawn_app_with(|c| c.metrics.enabled = true).await;
    let token = app.admin_token().await;
    for _ in 0..3 {
        assert_eq!(app.get("/auth/me", Some(&token)).await.status, 200);
    }
    let user = app.get("/users?limit=1", Some(&token)).await.body["data"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(app.get(&format!("/users/{user}"), Some(&token)).await.status, 200);
    assert_eq!(app.get("/users/00000000-0000-0000-0000-000000000000", Some(&token)).await.status, 404);
    assert_eq!(app.get("/no/such/path", None).await.status, 404);
    assert_eq!(app.get("/users", None).await.status, 401);
    let doc = app.post("/documents", Some(&token), serde_json::json!({"title": "t", "content": "queued words"})).await;
    assert_eq!(doc.status, 201);

    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let text = resp.text().await.unwrap();
    let families = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));

    let count = |name: &str, labels: &[(&str, &str)]| -> f64 {
        let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        families[family]
            .samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(v)))
            .map(|s| s.value)
            .sum()
    };
    let requests = "copilot_http_requests_total";
    assert_eq!(families[requests].kind, "counter");
    assert_eq!(count(requests, &[("method", "GET"), ("route", "/api/v1/auth/me"), ("status", "200")]), 3.0);
    // one series per route template, not per id
    assert_eq!(count(requests, &[("route", "/api/v1/users/{id}"), ("status", "200")]), 1.0, "{text}");
    assert_eq!(count(requests, &[("route", "/api/v1/users/{id}"), ("status", "404")]), 1.0);
    assert_eq!(count(requests, &[("route", "unmatched"), ("status", "404")]), 1.0);
    assert_eq!(count(requests, &[("route", "/api/v1/users"), ("status", "401")]), 1.0, "an error keeps its route");
    assert!(!text.contains(&user), "no raw path in a label");

    let latency = "copilot_http_request_duration_seconds";
    assert_eq!(families[latency].kind, "histogram");
    assert_eq!(count(&format!("{latency}_count"), &[("route", "/api/v1/auth/me")]), 3.0);
    assert_eq!(count(&format!("{latency}_bucket"), &[("route", "/api/v1/auth/me"), ("le", "+Inf")]), 3.0);

    let pool = if on_postgres() { "postgres" } else { "write" };
    assert!(count("copilot_db_pool_connections", &[("pool", pool)]) >= 1.0);
    assert_eq!(families["copilot_completion_jobs_running"].kind, "gauge");
    assert!(families.contains_key("copilot_llm_tokens_total"));
    assert!(families.contains_key("copilot_completion_jobs_total"));
    let queued = count("copilot_documents", &[("status", "pending")])
        + count("copilot_documents", &[("status", "processing")])
        + count("copilot_documents", &[("status", "ready")]);
    assert_eq!(queued, 1.0, "the document is in the queue or done: {text}");
}

/// One metric family of the text format.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    samples: Vec<Sample>,
}

#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A strict reader of the Prometheus text exposition format 0.0.4: `# HELP` and `# TYPE` once
/// per family and before its samples, valid metric and label names, quoted and escaped label
/// values, no duplicate series, float values; histograms with cumulative `le` buckets ending at
/// `+Inf` equal to `_count`, and a `_sum`.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, Family>, String> {
    fn valid_name(n: &str, colon: bool) -> bool {
        let mut chars = n.chars();
        chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':'))
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || (colon && c == ':'))
    }
    if !text.ends_with('\n') {
        return Err("the text must end with a newline".into());
    }
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    let mut helped = BTreeSet::new();
    let mut series = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let at = format!("line {}: {line:?}", i + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !valid_name(name, true) || !helped.insert(name.to_string()) {
                return Err(format!("{at}: bad or repeated HELP"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').ok_or(format!("{at}: TYPE without a type"))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(format!("{at}: unknown type"));
            }
            if families.insert(name.to_string(), Family { kind: kind.into(), samples: vec![] }).is_some() {
                return Err(format!("{at}: TYPE twice"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (name, rest) = match line.find(['{', ' ']) {
            Some(p) => line.split_at(p),
            None => return Err(format!("{at}: no value")),
        };
        if !valid_name(name, true) {
            return Err(format!("{at}: bad metric name"));
        }
        let mut labels = BTreeMap::new();
        let value_text = if let Some(mut body) = rest.strip_prefix('{') {
            loop {
                if let Some(after) = body.strip_prefix('}') {
                    break after;
                }
                let (label, after) = body.split_once("=\"").ok_or(format!("{at}: bad label"))?;
                if !valid_name(label, false) {
                    return Err(format!("{at}: bad label name {label:?}"));
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, c @ ('\\' | '"'))) => value.push(c),
                            _ => return Err(format!("{at}: bad escape")),
                        },
                        Some((j, '"')) => break j,
                        Some((_, c)) => value.push(c),
                        None => return Err(format!("{at}: unterminated label value")),
                    }
                };
                if labels.insert(label.to_string(), value).is_some() {
                    return Err(format!("{at}: label twice"));
                }
                body = &after[end + 1..];
                body = body.strip_prefix(',').unwrap_or(body);
            }
        } else {
            rest
        };
        let mut parts = value_text.trim_start_matches(' ').split(' ');
        let raw = parts.next().unwrap_or_default();
        let value = match raw {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse::<f64>().map_err(|_| format!("{at}: bad value"))?,
        };
        if parts.next().is_some_and(|ts| ts.parse::<i64>().is_err()) || parts.next().is_some() {
            return Err(format!("{at}: bad timestamp"));
        }
        if !series.insert(format!("{name}{labels:?}")) {
            return Err(format!("{at}: duplicate series"));
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s).filter(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
            })
            .unwrap_or(name);
        let f = families.get_mut(family).ok_or(format!("{at}: sample before its TYPE"))?;
        f.samples.push(Sample { name: name.to_string(), labels, value });
    }
    for (name, f) in &families {
        if f.kind != "histogram" {
            continue;
        }
        let mut by_series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for s in f.samples.iter().filter(|s| s.name.ends_with("_bucket")) {
            let le = s.labels.get("le").ok_or(format!("{name}: bucket without le"))?;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().map_err(|_| format!("{name}: bad le"))? };
            let mut key = s.labels.clone();
            key.remove("le");
            by_series.entry(format!("{key:?}")).or_default().push((le, s.value));
        }
        for (key, buckets) in by_series {
            let cumulative = buckets.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1);
            let last = buckets.last().copied().unwrap_or_default();
            let count = f.samples.iter().find(|s| s.name.ends_with("_count") && format!("{:?}", s.labels) == key);
            let sum = f.samples.iter().any(|s| s.name.ends_with("_sum") && format!("{:?}", s.labels) == key);
            if !cumulative || last.0 != f64::INFINITY || count.map(|c| c.value) != Some(last.1) || !sum {
                return Err(format!("{name}{key}: buckets not cumulative to +Inf = _count, or no _sum"));
            }
        }
    }
    Ok(families)
}

#[test]
fn the_exposition_reader_is_strict() {
    let ok = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"q\"} 3\n";
    assert_eq!(parse_exposition(ok).unwrap()["a_total"].samples[0].labels["x"], "1\"q");
    for bad in [
        "a_total 3\n",                                                                             // no TYPE
        "# TYPE a counter\na{x=\"1} 3\n",                                                          // unterminated
        "# TYPE a counter\na{1x=\"1\"} 3\n",                                                       // label name
        "# TYPE a counter\na 3\na 4\n",                                                            // duplicate series
        "# TYPE a counter\na three\n",                                                             // value
        "# TYPE a counter\na 3",                                                                   // final newline
        "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_count 1\nh_sum 1\n", // not cumulative
        "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_count 2\n",                                // no _sum
    ] {
        assert!(parse_exposition(bad).is_err(), "{bad:?}");
    }
}
