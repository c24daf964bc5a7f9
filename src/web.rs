//! The admin console, embedded into the binary: `/admin/` and its assets, with an SPA fallback
//! for deep links and a strict Content-Security-Policy.

use poem::{
    Endpoint, IntoResponse, Request, Response,
    http::{HeaderValue, Method, StatusCode, header},
};
use rust_embed::RustEmbed;

use crate::error::error_response;

#[derive(RustEmbed)]
#[folder = "static/"]
struct Assets;

pub const CONSOLE_CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                               connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'";

/// Serves `static/`: files by path, `index.html` for paths without an extension (client-side
/// routes), 404 for unknown files.
pub struct Console;

impl Endpoint for Console {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return Ok(error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed", None));
        }
        // `/admin` without the slash: relative asset URLs need the slash
        let original = req.original_uri().path();
        if original == "/admin" {
            return Ok(redirect("/admin/"));
        }
        let path = req.uri().path().trim_start_matches('/');
        let (file, name) = match Assets::get(path).filter(|_| !path.is_empty()) {
            Some(f) => (f, path.to_string()),
            None if path.is_empty() || !path.rsplit('/').next().unwrap_or("").contains('.') => {
                match Assets::get("index.html") {
                    Some(f) => (f, "index.html".to_string()),
                    None => return Ok(error_response(StatusCode::NOT_FOUND, "Not found", None)),
                }
            }
            None => return Ok(error_response(StatusCode::NOT_FOUND, "Not found", None)),
        };
        let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..16]));
        let mut resp = if req
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
        {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            Response::builder().content_type(file.metadata.mimetype()).body(file.data.into_owned())
        };
        let h = resp.headers_mut();
        h.insert(header::ETAG, HeaderValue::from_str(&etag).expect("hex etag"));
        // index.html must be revalidated so a new build is picked up; assets may be cached briefly
        let cache = if name == "index.html" { "no-cache" } else { "public, max-age=300, must-revalidate" };
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONSOLE_CSP));
        Ok(resp)
    }
}

pub fn redirect(to: &'static str) -> Response {
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, to).finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
