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
