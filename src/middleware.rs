//! HTTP middleware of the whole application that is not about one resource: the `Allow` header
//! of every 405, CORS that withholds headers instead of refusing requests, and panics answered
//! as a plain 500.

use std::{any::Any, collections::BTreeSet, sync::Arc};

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response,
    http::{HeaderValue, StatusCode, header},
};

use crate::error::error_response;

/// Which methods each path answers, for the `Allow` header of a 405 (RFC 9110 §15.5.6).
#[derive(Debug, Default)]
pub struct AllowTable {
    /// Path templates split into segments (`None` for a `{param}`), with their methods.
    routes: Vec<(Vec<Option<String>>, BTreeSet<&'static str>)>,
}

impl AllowTable {
    /// The operations of an OpenAPI document whose paths live under `prefix`.
    pub fn from_openapi(doc: &serde_json::Value, prefix: &str) -> AllowTable {
        let mut table = AllowTable::default();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            let methods: Vec<&'static str> = ["get", "put", "post", "delete", "patch", "options", "head"]
                .into_iter()
                .filter(|m| item.get(*m).is_some())
                .map(|m| match m {
                    "get" => "GET",
                    "put" => "PUT",
                    "post" => "POST",
                    "delete" => "DELETE",
                    "patch" => "PATCH",
                    "options" => "OPTIONS",
                    _ => "HEAD",
                })
                .collect();
            table.add(&format!("{prefix}{path}"), &methods);
        }
        table
    }

    /// Adds `methods` for `template` (`/users/{id}`); GET implies HEAD.
    pub fn add(&mut self, template: &str, methods: &[&'static str]) {
        let segments = segments(template)
            .map(|s| (!(s.starts_with('{') && s.ends_with('}'))).then(|| s.to_string()))
            .collect::<Vec<_>>();
        let mut set: BTreeSet<&'static str> = methods.iter().copied().collect();
        if set.contains("GET") {
            set.insert("HEAD");
        }
        match self.routes.iter_mut().find(|(s, _)| *s == segments) {
            Some((_, existing)) => existing.extend(set),
            None => self.routes.push((segments, set)),
        }
    }

    /// The methods of the most specific template that matches `path` (literal segments win over
    /// parameters, as the router decides), e.g. `"GET, HEAD, PUT"`.
    pub fn allow(&self, path: &str) -> Option<String> {
        let parts: Vec<&str> = segments(path).collect();
        self.routes
            .iter()
            .filter(|(template, _)| {
                template.len() == parts.len()
                    && template.iter().zip(&parts).all(|(t, p)| t.as_deref().is_none_or(|t| t == *p))
            })
            .max_by_key(|(template, _)| template.iter().filter(|t| t.is_some()).count())
            .map(|(_, methods)| methods.iter().copied().collect::<Vec<_>>().join(", "))
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Adds `Allow` to every 405 answer.
pub struct AllowHeader(pub Arc<AllowTable>);

impl<E: Endpoint> Middleware<E> for AllowHeader {
    type Output = AllowHeaderEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        AllowHeaderEndpoint { inner, table: self.0.clone() }
    }
}

pub struct AllowHeaderEndpoint<E> {
    inner: E,
    table: Arc<AllowTable>,
}

impl<E: Endpoint> Endpoint for AllowHeaderEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        // a Uri clone shares its bytes: no allocation on the hot path
        let uri = req.uri().clone();
        let mut resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => e.into_response(),
        };
        if resp.status() == StatusCode::METHOD_NOT_ALLOWED && !resp.headers().contains_key(header::ALLOW) {
            let allow = self.table.allow(uri.path()).unwrap_or_else(|| "GET, HEAD".into());
            if let Ok(v) = HeaderValue::from_str(&allow) {
                resp.headers_mut().insert(header::ALLOW, v);
            }
        }
        Ok(resp)
    }
}

/// A request from an origin that `cors_origins` does not list is served as if it carried no
/// `Origin` at all: CORS then only withholds its headers (the browser enforces the rest) and never
/// refuses a request — the console's own same-origin POSTs included.
pub struct ForeignOrigins(pub Arc<Vec<String>>);

impl<E: Endpoint> Middleware<E> for ForeignOrigins {
    type Output = ForeignOriginsEndpoint<E>;
    fn transform(&self, inner: E) -> Self::Output {
        ForeignOriginsEndpoint { inner, allowed: self.0.clone() }
    }
}

pub struct ForeignOriginsEndpoint<E> {
    inner: E,
    allowed: Arc<Vec<String>>,
}

impl<E: Endpoint> Endpoint for ForeignOriginsEndpoint<E> {
    type Output = E::Output;

    async fn call(&self, mut req: Request) -> poem::Result<E::Output> {
        let foreign = req
            .headers()
            .get(header::ORIGIN)
            .is_some_and(|o| !self.allowed.iter().any(|a| a.as_bytes() == o.as_bytes()));
        if foreign {
            req.headers_mut().remove(header::ORIGIN);
        }
        self.inner.call(req).await
    }
}

/// A panic in a handler: logged with its message, answered as a plain 500 `{"detail"}`.
pub fn panic_response(cause: Box<dyn Any + Send + 'static>) -> Response {
    let message = cause
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| cause.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into());
    tracing::error!(panic = %message, "a request handler panicked");
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error", None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_takes_the_most_specific_template() {
        let doc = serde_json::json!({"paths": {
            "/roles/{id}": {"get": {}, "put": {}, "delete": {}},
            "/roles/permissions": {"get": {}},
            "/roles": {"get": {}, "post": {}},
        }});
        let mut t = AllowTable::from_openapi(&doc, "/api/v1");
        t.add("/docs", &["GET"]);
        assert_eq!(t.allow("/api/v1/roles/permissions").as_deref(), Some("GET, HEAD"));
        assert_eq!(t.allow("/api/v1/roles/abc").as_deref(), Some("DELETE, GET, HEAD, PUT"));
        assert_eq!(t.allow("/api/v1/roles/").as_deref(), Some("GET, HEAD, POST"));
        assert_eq!(t.allow("/docs").as_deref(), Some("GET, HEAD"));
        assert_eq!(t.allow("/api/v1/nothing/here"), None);
    }
}

/// An address or CIDR range of `[server] trusted_proxies`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    net: std::net::IpAddr,
    bits: u8,
}

impl IpRange {
    pub fn parse(s: &str) -> Option<IpRange> {
        let (addr, bits) = match s.trim().split_once('/') {
            Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
            None => (s.trim(), None),
        };
        let net: std::net::IpAddr = addr.parse().ok()?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(IpRange { net, bits })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr::{V4, V6};
        let ip = match ip {
            V6(v6) => v6.to_canonical(),
            v4 => v4,
        };
        let (net, ip, width) = match (self.net, ip) {
            (V4(n), V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (V6(n), V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = width - u32::from(self.bits);
        shift >= width || (net >> shift) == (ip >> shift)
    }
}

/// Where a request came from. The peer address, unless the peer is a trusted proxy: then the
/// right-most address of `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_of(req: &Request, trusted_proxies: &[String]) -> crate::model::audit::Client {
    client_from(req.remote_addr().as_socket_addr().map(|a| a.ip()), req.headers(), trusted_proxies)
}

fn client_from(
    peer: Option<std::net::IpAddr>,
    headers: &poem::http::HeaderMap,
    trusted_proxies: &[String],
) -> crate::model::audit::Client {
    let ip = match peer {
        Some(peer) if !trusted_proxies.is_empty() => {
            let ranges: Vec<IpRange> = trusted_proxies.iter().filter_map(|p| IpRange::parse(p)).collect();
            let trusted = |ip: std::net::IpAddr| ranges.iter().any(|r| r.contains(ip));
            let mut client = peer;
            if trusted(peer) {
                let hops = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok());
                let hops: Vec<std::net::IpAddr> =
                    hops.flat_map(|v| v.split(',')).filter_map(|h| h.trim().parse().ok()).collect();
                for hop in hops.into_iter().rev() {
                    client = hop;
                    if !trusted(hop) {
                        break;
                    }
                }
            }
            Some(client)
        }
        other => other,
    };
    crate::model::audit::Client { ip, user_agent: headers.get(header::USER_AGENT).cloned() }
}

#[cfg(test)]
mod client_tests {
    use super::*;

    #[test]
    fn ranges_match_their_addresses_only() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.200.3.4".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
        assert!(IpRange::parse("::1").unwrap().contains("::1".parse().unwrap()));
        assert!(IpRange::parse("10.0.0.0/33").is_none());
        assert!(IpRange::parse("example.com").is_none());
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let client_of = |(peer, headers): (std::net::IpAddr, poem::http::HeaderMap), trusted: &[String]| {
            client_from(Some(peer), &headers, trusted)
        };
        let req = |peer: &str, xff: &str| {
            let mut h = poem::http::HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
            h.insert(header::USER_AGENT, HeaderValue::from_static("curl/8"));
            (peer.parse::<std::net::SocketAddr>().unwrap().ip(), h)
        };
        let trusted = vec!["127.0.0.1".to_string(), "10.0.0.0/8".to_string()];
        let c = client_of(req("127.0.0.1:5000", "203.0.113.9, 10.1.2.3"), &trusted);
        assert_eq!(c.ip_text().as_deref(), Some("203.0.113.9"));
        assert_eq!(c.user_agent_text().as_deref(), Some("curl/8"));
        // a spoofed header from an untrusted peer is ignored
        let c = client_of(req("198.51.100.7:5000", "203.0.113.9"), &trusted);
        assert_eq!(c.ip_text().as_deref(), Some("198.51.100.7"));
        // no proxies configured: the peer
        assert_eq!(client_of(req("127.0.0.1:5000", "203.0.113.9"), &[]).ip_text().as_deref(), Some("127.0.0.1"));
        // recorded as text: a mapped IPv6 peer as IPv4, a long User-Agent cut at 512 characters
        let (_, mut h) = req("127.0.0.1:1", "x");
        h.insert(header::USER_AGENT, HeaderValue::from_str(&"a".repeat(600)).unwrap());
        let c = client_from(Some("::ffff:10.1.2.3".parse().unwrap()), &h, &[]);
        assert_eq!(c.ip_text().as_deref(), Some("10.1.2.3"));
        assert_eq!(c.user_agent_text().unwrap().chars().count(), 512);
    }
}
