//! The serving loop: hyper's HTTP/1 (with upgrades, for the live feed's websockets) driven by
//! hand instead of `axum::serve`, which keeps connections for as long as clients like. Here:
//!
//! - a client has `HEADER_READ_TIMEOUT_MS` to send a request's headers, on a new connection and
//!   between the requests of a kept-alive one, so a half-sent request or an idle connection is
//!   closed, not kept forever (see [`Watchdog`]);
//! - headers over `MAX_HEADER_BYTES` are answered 431 and the connection closed;
//! - at most `MAX_CONNECTIONS` connections are open at once: past it the loop stops accepting
//!   (new clients wait in the kernel's backlog) instead of running out of descriptors;
//! - on shutdown, requests in flight get `SHUTDOWN_GRACE_MS` to finish, then every connection
//!   still open is closed: a slow client cannot keep the process from exiting;
//! - a connection the server closes while the client may still be sending (after an answer with
//!   `Connection: close` to a body that was not read) lingers: what still arrives is read and
//!   dropped until the client closes its side, for at most [`LINGER_TIME`], so that the kernel
//!   does not reset the connection under an answer the client has yet to read (see [`Slotted`]).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::Response;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::App;
use crate::config::ServeConfig;

/// Pause after a failed accept (out of descriptors, say) before the next one, so that the loop
/// does not spin while the condition lasts.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// The longest a closed connection waits for its client to stop sending, and the most it reads
/// meanwhile (as nginx's lingering close).
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_BYTES: usize = 16 << 20;

/// Descriptors kept for everything but client connections: the database pool and the pipelined
/// reads, Redis, RabbitMQ, the listeners, files.
const DESCRIPTOR_RESERVE: u64 = 256;

/// The connection cap when `MAX_CONNECTIONS` is not set: the descriptor limit (raised to its hard
/// limit first, as servers do) less a reserve for everything else the process opens.
pub fn default_max_connections() -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the descriptor limit; assuming 1024");
            1024
        }
    };
    let cap = limit.saturating_sub(DESCRIPTOR_RESERVE).max(64);
    usize::try_from(cap).unwrap_or(usize::MAX)
}

/// Serves `app` on `listener` until `shutdown` completes, then gives requests in flight the
/// configured grace and closes whatever is still open.
pub async fn serve(
    listener: TcpListener,
    app: App,
    config: &ServeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let max_connections = config
        .max_connections
        .unwrap_or_else(default_max_connections)
        .max(1);
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut http = http1::Builder::new();
    http.max_header_size(config.max_header_bytes);
    let header_timeout = config.header_read_timeout();
    // Tells every connection to finish its request and close (hyper's graceful shutdown).
    let (stopping, stop) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    tracing::debug!(max_connections, "accepting connections");
    loop {
        // Finished connections leave the set as we go, so it holds only the open ones.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // No Nagle delay: a response or a live-feed frame goes out as soon as it is written, not
        // when the client's (possibly delayed) ACK of the previous segment arrives.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let watchdog = Arc::new(Watchdog::new());
        let service = TowerToHyperService::new(Watched {
            app: app.clone(),
            peer: ConnectInfo(peer),
            watchdog: watchdog.clone(),
        });
        // The slot goes with the socket, so that it stays taken by a websocket after the upgrade
        // hands the socket over to the live feed.
        let socket = Slotted {
            tcp: Some(tcp),
            slot: Some(slot),
            closed: false,
        };
        let connection = http
            .serve_connection(TokioIo::new(socket), service)
            .with_upgrades();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let expiry = tokio::time::sleep(header_timeout);
            let mut expiry = std::pin::pin!(expiry);
            let outcome = loop {
                tokio::select! {
                    outcome = connection.as_mut() => break outcome,
                    () = expiry.as_mut() => match watchdog.deadline(header_timeout) {
                        Some(deadline) if deadline <= Instant::now() => {
                            tracing::debug!("closing a connection that sent no request in time");
                            return;
                        }
                        Some(deadline) => expiry.as_mut().reset(deadline),
                        // A request is being served: its own timeout bounds it.
                        None => expiry.as_mut().reset(Instant::now() + header_timeout),
                    },
                    () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                        connection.as_mut().graceful_shutdown();
                        break connection.await;
                    }
                }
            };
            if let Err(e) = outcome {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    let grace = config.shutdown_grace();
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            grace_ms = grace.as_millis() as u64,
            "closing the connections still open after the shutdown grace"
        );
    }
    connections.shutdown().await;
}

/// A client's socket holding its connection slot: the slot is free again exactly when the
/// socket is closed, whoever holds it then (hyper, or the live feed after an upgrade).
///
/// When the server has closed its side (`poll_shutdown`: hyper's end of a connection) and the
/// client may still be sending, dropping the socket with unread data in it would make the kernel
/// answer with a reset, which can destroy the answer just written before the client reads it.
/// So the socket lingers instead ([`linger`]), keeping its slot.
struct Slotted {
    /// Always there until dropped.
    tcp: Option<tokio::net::TcpStream>,
    slot: Option<OwnedSemaphorePermit>,
    /// Whether the server has closed its side.
    closed: bool,
}

impl Slotted {
    fn tcp(&mut self) -> std::io::Result<Pin<&mut tokio::net::TcpStream>> {
        self.tcp
            .as_mut()
            .map(Pin::new)
            .ok_or_else(|| std::io::ErrorKind::NotConnected.into())
    }
}

impl AsyncRead for Slotted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        self.tcp()?.poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp()?.poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.tcp()?.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp
            .as_ref()
            .is_some_and(tokio::net::TcpStream::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.tcp()?.poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.closed = true;
        self.tcp()?.poll_shutdown(cx)
    }
}

impl Drop for Slotted {
    fn drop(&mut self) {
        let (Some(tcp), true) = (self.tcp.take(), self.closed) else {
            return;
        };
        match tcp.try_read(&mut [0u8; 1]) {
            // The usual end: the client closed first (its end of file is here), nothing to wait
            // for; or the socket failed.
            Ok(0) => return,
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => return,
            // Data still arriving, or the client may yet send some.
            _ => {}
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(tcp, self.slot.take()));
        }
    }
}

/// Reads and drops what the client still sends on a connection the server has closed, until the
/// client closes its side, [`LINGER_TIME`] passes or [`LINGER_BYTES`] arrive; then closes it.
async fn linger(mut tcp: tokio::net::TcpStream, _slot: Option<OwnedSemaphorePermit>) {
    use tokio::io::AsyncReadExt;
    let deadline = Instant::now() + LINGER_TIME;
    let mut buffer = vec![0u8; 16 * 1024];
    let mut read = 0;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buffer)).await {
            Ok(Ok(n)) if n > 0 => read += n,
            _ => break,
        }
    }
}

/// When a connection last had nothing to do: the header timeout runs from then. One timer per
/// connection, re-armed at most once per timeout, where hyper's own header timer registers and
/// drops a timer for every request (measured: ~1,500 instructions per user-get,
/// docs/hardening.md).
struct Watchdog {
    opened: Instant,
    /// Requests whose headers have arrived and whose response is not complete yet.
    in_flight: AtomicUsize,
    /// Milliseconds from `opened` to the end of the last response (0: none yet).
    idle_since_ms: AtomicU64,
}

impl Watchdog {
    fn new() -> Self {
        Watchdog {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
        }
    }

    /// When the connection is to be closed if no request arrives, or `None` while one is served.
    fn deadline(&self, timeout: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = Duration::from_millis(self.idle_since_ms.load(Ordering::Acquire));
        Some(self.opened + idle_since + timeout)
    }

    fn request_started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    fn request_done(&self) {
        let now = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.idle_since_ms.store(now, Ordering::Release);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The application, telling the connection's [`Watchdog`] when a request starts and ends.
#[derive(Clone)]
struct Watched {
    app: App,
    /// The connection's peer, in every request's extensions (the client's address, or its
    /// proxy's: `crate::api::ClientIp`).
    peer: ConnectInfo<SocketAddr>,
    watchdog: Arc<Watchdog>,
}

impl tower::Service<Request<Incoming>> for Watched {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = WatchedResponse;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.app.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Incoming>) -> Self::Future {
        self.watchdog.request_started();
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(self.peer);
        WatchedResponse {
            response: self.app.call(request),
            watchdog: Some(self.watchdog.clone()),
        }
    }
}

/// A response on its way, ending the request's watch when it is ready (or dropped).
struct WatchedResponse {
    response: <App as tower::Service<Request>>::Future,
    watchdog: Option<Arc<Watchdog>>,
}

impl Future for WatchedResponse {
    type Output = Result<Response, std::convert::Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let ready = Pin::new(&mut self.response).poll(cx);
        if ready.is_ready() {
            if let Some(watchdog) = self.watchdog.take() {
                watchdog.request_done();
            }
        }
        ready
    }
}

impl Drop for WatchedResponse {
    fn drop(&mut self) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.request_done();
        }
    }
}
