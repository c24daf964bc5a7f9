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

/// The CSP of `/docs`: Swagger UI runs from inline scripts, so each one is allowed by its hash and
/// nothing else runs; styles are inline too. The API is same-origin.
pub fn docs_csp(html: &str) -> String {
    use base64::Engine;
    use sha2::Digest;
    let mut hashes = String::new();
    let mut rest = html;
    while let Some(start) = rest.find("<script") {
        let Some(open_end) = rest[start..].find('>').map(|i| start + i + 1) else { break };
        let Some(close) = rest[open_end..].find("</script>").map(|i| open_end + i) else { break };
        let digest = sha2::Sha256::digest(&rest.as_bytes()[open_end..close]);
        hashes.push_str(&format!(" 'sha256-{}'", base64::engine::general_purpose::STANDARD.encode(digest)));
        rest = &rest[close..];
    }
    format!(
        "default-src 'none'; script-src{hashes}; style-src 'unsafe-inline'; img-src 'self' data:; \
         font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    )
}

/// `/favicon.ico`: the console's icon, for browsers that ask for it at the root.
pub fn favicon() -> Response {
    match Assets::get("favicon.svg") {
        Some(f) => Response::builder()
            .content_type("image/svg+xml")
            .header(header::CACHE_CONTROL, "public, max-age=86400")
            .body(f.data.into_owned()),
        None => error_response(StatusCode::NOT_FOUND, "Not found", None),
    }
}

pub fn redirect(to: &'static str) -> Response {
    Response::builder().status(StatusCode::FOUND).header(header::LOCATION, to).finish()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_csp_allows_each_inline_script_by_hash() {
        let csp = super::docs_csp("<script a=1>one()</script><p><script>two()</script>");
        assert_eq!(csp.matches("'sha256-").count(), 2, "{csp}");
        assert!(!csp.contains("unsafe-inline'; img") || csp.contains("style-src 'unsafe-inline'"));
        assert!(!csp.split(';').find(|d| d.contains("script-src")).unwrap().contains("unsafe"));
    }
}
