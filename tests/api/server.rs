//! Server-wide behaviour: status, error bodies, headers, trailing slashes, body limits, docs.

use crate::helpers::*;

#[tokio::test]
async fn status_reports_ok_without_auth() {
    let app = spawn_app().await;
    let r = app.get("/status", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["status"], "ok");
    assert_eq!(r.body["database"], "ok");
    assert_eq!(r.body["version"], env!("CARGO_PKG_VERSION"));
    let r = app.get("/status/", None).await;
    assert_eq!(r.status, 200, "trailing slash works too");
}
