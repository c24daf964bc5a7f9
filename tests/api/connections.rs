//! What one client can hold (SPEC §9): header-read, idle and body timeouts, the connection cap.
//! Raw TCP sockets play the slow or silent clients; the bounds are generous, so that a busy
//! machine cannot make these tests fail.

use std::time::{Duration, Instant};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::*;

async fn connect(app: &TestApp) -> TcpStream {
    TcpStream::connect(app.base.trim_start_matches("http://")).await.expect("connect")
}

/// Reads until the server closes the connection (or `within` passes: `None`); returns the bytes.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Option<Vec<u8>> {
    let mut out = vec![];
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// Whether the server has closed `stream` (without waiting).
async fn is_closed(stream: &mut TcpStream) -> bool {
    read_until_closed(stream, Duration::from_millis(50)).await.is_some()
}

const STATUS: &[u8] = b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n\r\n";

#[tokio::test]
async fn a_connection_that_does_not_finish_its_head_is_closed_after_the_header_read_timeout() {
    let app = spawn_app_with(|c| {
        c.server.header_read_timeout_seconds = 1;
        c.server.idle_timeout_seconds = 30;
    })
    .await;
    let started = Instant::now();
    let mut partial = connect(&app).await;
    partial.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut silent = connect(&app).await;
    // a slow trickle does not keep a head alive either
    let mut trickle = connect(&app).await;
    for b in b"GET /api/v1/st" {
        trickle.write_all(&[*b]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_millis(800) {
            break;
        }
    }
    for s in [&mut partial, &mut silent, &mut trickle] {
        let answer = read_until_closed(s, Duration::from_secs(10)).await;
        assert_eq!(answer.as_deref(), Some(&b""[..]), "closed without an answer");
    }
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the timeout: {:?}", started.elapsed());
    // the server itself answers as always
    assert_eq!(app.get("/status", None).await.status, 200);
}

#[tokio::test]
async fn an_idle_keep_alive_connection_gets_the_idle_timeout_then_is_closed() {
    let app = spawn_app_with(|c| {
        c.server.header_read_timeout_seconds = 1;
        c.server.idle_timeout_seconds = 3;
    })
    .await;
    let mut s = connect(&app).await;
    s.write_all(STATUS).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    // idle for longer than the header-read timeout: still open, and serves the next request
    tokio::time::sleep(Duration::from_millis(1600)).await;
    s.write_all(STATUS).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let idle_from = Instant::now();
    assert_eq!(read_until_closed(&mut s, Duration::from_secs(15)).await.as_deref(), Some(&b""[..]));
    assert!(idle_from.elapsed() >= Duration::from_secs(2), "{:?}", idle_from.elapsed());
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_a_408() {
    let app = spawn_app_with(|c| c.server.body_read_timeout_seconds = 1).await;
    let mut s = connect(&app).await;
    s.write_all(b"POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"username\": ")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_until_closed(&mut s, Duration::from_secs(10)).await.expect("answered and closed");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"detail\""), "{text}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // a body that arrives in time is read as always
    let r = app
        .post("/auth/login", None, serde_json::json!({"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn more_half_open_connections_than_the_cap_do_not_lock_out_real_clients() {
    const CAP: usize = 32;
    let app = spawn_app_with(|c| c.server.max_connections = CAP).await;
    // a request in flight is never what makes room
    let (_, token) = app.member("mia").await;
    let mut busy = connect(&app).await;
    busy.write_all(
        b"POST /api/v1/conversations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n",
    )
    .await
    .unwrap();
    busy.write_all(format!("Authorization: Bearer {token}\r\n\r\n{{").as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let mut flood = vec![];
    for _ in 0..CAP * 8 {
        let mut s = connect(&app).await;
        s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        flood.push(s);
    }
    let started = Instant::now();
    // a new client: the pooled connection of `app.client` was among those closed
    let client = reqwest::Client::new();
    let r = app.send(client.get(app.url("/api/v1/status")).timeout(Duration::from_secs(10))).await;
    assert_eq!(r.status, 200);
    assert!(started.elapsed() < Duration::from_secs(5), "status took {:?}", started.elapsed());
    // never more than the cap open: the oldest half-open ones were closed to make room
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut open = 0;
    for s in &mut flood {
        if !is_closed(s).await {
            open += 1;
        }
    }
    assert!(open < CAP, "{open} of the flood still open");
    assert!(is_closed(&mut flood[0]).await, "the oldest went first");
    // the request in flight survived and completes
    busy.write_all(b"}").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), busy.read(&mut buf)).await.unwrap().unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 201"), "{}", String::from_utf8_lossy(&buf[..n]));
}
