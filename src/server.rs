//! The HTTP server: accepts connections up to a cap and serves them with hyper, closing those
//! that hold the server without using it (SPEC §9: "The server limits what one client can hold").
//!
//! - A new connection must deliver its first request head within `header_read_timeout`, and
//!   every later head within that time of its first byte.
//! - Between requests a connection may stay idle for `idle_timeout`; a response the client stops
//!   reading is given up after the same time.
//! - At most `max_connections` are open. One more evicts the connection that has been idle (or
//!   reading a head) the longest; when every connection is in the middle of a request, the newcomer
//!   waits for a free place. So a flood of half-open connections never locks out a real client.
//!
//! Request bodies have their own deadline, `body_read_timeout` (see `BodyDeadline` in lib.rs).

use std::{
    collections::HashMap,
    future::Future,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use poem::{
    Addr, Endpoint,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Notify, Semaphore, watch},
};

use crate::config::ServerConfig;

/// What one connection may hold, from `[server]`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Limits {
    pub fn from_config(c: &ServerConfig) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(c.header_read_timeout_seconds),
            idle_timeout: Duration::from_secs(c.idle_timeout_seconds),
            max_connections: c.max_connections,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` resolves; then stops accepting, lets in-flight
/// requests finish for up to `grace`, and closes what is left.
pub async fn run<E>(
    listener: TcpListener,
    app: E,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> io::Result<()>
where
    E: Endpoint<Output = poem::Response> + 'static,
{
    let app = Arc::new(app);
    let local = listener.local_addr()?;
    let server = Arc::new(Server {
        started: Instant::now(),
        limits,
        places: Arc::new(Semaphore::new(limits.max_connections)),
        connections: Mutex::default(),
        next_id: AtomicU64::new(1),
    });
    // 0: serving, 1: finish in-flight requests and close, 2: close now
    let (stop_tx, stop_rx) = watch::channel(0u8);
    tokio::pin!(shutdown);
    let mut last_accept_error = None::<Instant>;
    loop {
        let (socket, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // out of file descriptors: make room by closing the longest-idle connection
                    if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) {
                        server.evict_longest_idle();
                    }
                    if last_accept_error.is_none_or(|t| t.elapsed() > Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        last_accept_error = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let place = match server.places.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                server.evict_longest_idle();
                tokio::select! {
                    _ = &mut shutdown => break,
                    p = server.places.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                }
            }
        };
        let _ = socket.set_nodelay(true);
        let conn = server.register();
        let (server, app, stop) = (server.clone(), app.clone(), stop_rx.clone());
        tokio::spawn(async move {
            // leaves the registry and frees the place also when a handler panics
            let _registered = Registered { server: server.clone(), id: conn.id, _place: place };
            serve_connection(&server, &conn, socket, local, peer, app, stop).await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(1);
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, server.places.acquire_many(all)).await.is_err() {
        tracing::warn!("closing the connections still open after the shutdown timeout");
        let _ = stop_tx.send(2);
        let _ = tokio::time::timeout(Duration::from_secs(1), server.places.acquire_many(all)).await;
    }
    Ok(())
}

struct Server {
    started: Instant,
    limits: Limits,
    places: Arc<Semaphore>,
    connections: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
}

/// Never set: "no time".
const NONE: u64 = u64::MAX;

/// What the watchdog of one connection needs to know. Times are milliseconds since `Server::started`.
struct Conn {
    id: u64,
    started: Instant,
    /// Requests whose response is not yet written to the end.
    in_flight: AtomicUsize,
    /// Whether a request was answered: an idle connection then gets `idle_timeout`, not
    /// `header_read_timeout`.
    answered: AtomicBool,
    idle_since: AtomicU64,
    /// When the first byte of the next request head arrived.
    head_started: AtomicU64,
    /// Since when a write has been waiting for the client to read.
    write_blocked_since: AtomicU64,
    /// Something the watchdog's deadline depends on changed.
    changed: Notify,
    evicted: Notify,
}

impl Conn {
    fn now(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// When the connection is to be closed unless something happens first; `None`: not while
    /// a request is being served.
    fn deadline(&self, limits: &Limits) -> Option<u64> {
        let ms = |d: Duration| d.as_millis() as u64;
        let blocked = self.write_blocked_since.load(Ordering::Acquire);
        let write_deadline = (blocked != NONE).then(|| blocked + ms(limits.idle_timeout));
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return write_deadline;
        }
        let head = self.head_started.load(Ordering::Acquire);
        let idle = if head != NONE {
            head + ms(limits.header_read_timeout)
        } else if self.answered.load(Ordering::Acquire) {
            self.idle_since.load(Ordering::Acquire) + ms(limits.idle_timeout)
        } else {
            self.idle_since.load(Ordering::Acquire) + ms(limits.header_read_timeout)
        };
        Some(write_deadline.map_or(idle, |w| w.min(idle)))
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.head_started.store(NONE, Ordering::Release);
    }

    fn request_finished(&self) {
        self.answered.store(true, Ordering::Release);
        self.idle_since.store(self.now(), Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.changed.notify_one();
    }
}

struct Registered {
    server: Arc<Server>,
    id: u64,
    _place: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.server.connections.lock().expect("not poisoned").remove(&self.id);
    }
}

impl Server {
    fn register(&self) -> Arc<Conn> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn {
            id,
            started: self.started,
            in_flight: AtomicUsize::new(0),
            answered: AtomicBool::new(false),
            idle_since: AtomicU64::new(self.started.elapsed().as_millis() as u64),
            head_started: AtomicU64::new(NONE),
            write_blocked_since: AtomicU64::new(NONE),
            changed: Notify::new(),
            evicted: Notify::new(),
        });
        self.connections.lock().expect("not poisoned").insert(id, conn.clone());
        conn
    }

    /// Closes the connection that has waited longest without a request in flight (idle, or
    /// still reading a head); none when every connection is serving a request.
    fn evict_longest_idle(&self) {
        let connections = self.connections.lock().expect("not poisoned");
        let waiting_since = |c: &Conn| {
            let head = c.head_started.load(Ordering::Acquire);
            if head != NONE { head } else { c.idle_since.load(Ordering::Acquire) }
        };
        let victim =
            connections.values().filter(|c| c.in_flight.load(Ordering::Acquire) == 0).min_by_key(|c| waiting_since(c));
        if let Some(c) = victim {
            c.evicted.notify_one();
        }
    }
}

async fn serve_connection<E>(
    server: &Server,
    conn: &Arc<Conn>,
    socket: TcpStream,
    local: SocketAddr,
    peer: SocketAddr,
    app: Arc<E>,
    mut stop: watch::Receiver<u8>,
) where
    E: Endpoint<Output = poem::Response> + 'static,
{
    let service = hyper::service::service_fn({
        let conn = conn.clone();
        move |req: hyper::Request<Incoming>| {
            let (app, conn) = (app.clone(), conn.clone());
            async move {
                conn.request_started();
                let finished = RequestDone(conn);
                let req = poem::Request::from((
                    req,
                    LocalAddr(Addr::SocketAddr(local)),
                    RemoteAddr(Addr::SocketAddr(peer)),
                    Scheme::HTTP,
                ));
                let resp: hyper::Response<_> = app.get_response(req).await.into();
                Ok::<_, std::convert::Infallible>(resp.map(|body| TrackedBody { body, _finished: finished }))
            }
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timeout needs a timer and counts idle keep-alive time too; ours does not
    builder.http1().header_read_timeout(None);
    let io = WatchedIo { inner: socket, conn: conn.clone() };
    let connection = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(connection);
    let limits = server.limits;
    let mut stopping = false;
    loop {
        let wait = match conn.deadline(&limits) {
            Some(at) => Duration::from_millis(at.saturating_sub(conn.now())),
            None => Duration::MAX,
        };
        if wait.is_zero() {
            tracing::debug!(%peer, "closing a connection that held the server without using it");
            return;
        }
        tokio::select! {
            _ = &mut connection => return,
            _ = sleep_at_most(wait) => {}
            _ = conn.changed.notified() => {}
            _ = conn.evicted.notified() => {
                tracing::debug!(%peer, "closing the longest-idle connection to make room for a new one");
                return;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() >= 2 {
                    return;
                }
                if !stopping {
                    stopping = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

async fn sleep_at_most(d: Duration) {
    // `Duration::MAX` would overflow the timer; a day is "until something changes"
    tokio::time::sleep(d.min(Duration::from_secs(86_400))).await;
}

/// Marks its request finished when the response body is done with (written or abandoned).
struct RequestDone(Arc<Conn>);

impl Drop for RequestDone {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// A response body that tells the connection's watchdog when it is written to the end.
struct TrackedBody<B> {
    body: B,
    _finished: RequestDone,
}

impl<B: HttpBody + Unpin> HttpBody for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, noting for the watchdog when a request head begins and when writes stall.
struct WatchedIo {
    inner: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for WatchedIo {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let c = &self.conn;
        if buf.filled().len() > before
            && c.in_flight.load(Ordering::Acquire) == 0
            && c.head_started.load(Ordering::Acquire) == NONE
        {
            c.head_started.store(c.now(), Ordering::Release);
            c.changed.notify_one();
        }
        polled
    }
}

impl WatchedIo {
    fn note_write<T>(&self, polled: &Poll<T>) {
        let c = &self.conn;
        match polled {
            Poll::Pending => {
                if c.write_blocked_since.load(Ordering::Acquire) == NONE {
                    c.write_blocked_since.store(c.now(), Ordering::Release);
                    c.changed.notify_one();
                }
            }
            Poll::Ready(_) => {
                if c.write_blocked_since.load(Ordering::Acquire) != NONE {
                    c.write_blocked_since.store(NONE, Ordering::Release);
                }
            }
        }
    }
}

impl AsyncWrite for WatchedIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note_write(&polled);
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.note_write(&polled);
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Raises this process's open-file limit to the hard limit (as Go does at start-up), so that the
/// connection cap, not the default of 1024 descriptors, is what limits connections. Returns the
/// limit in effect.
pub fn raise_open_file_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    Some(lim.rlim_cur)
}
