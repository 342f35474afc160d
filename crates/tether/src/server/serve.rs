//! `Server`: the accept loop, one task per connection, the error contract applied to what a
//! handler returns, and graceful shutdown.
//!
//! Each connection runs in its own task: caps and the handshake (routing, `Origin`, guards,
//! extractors) first, then the handler, with panics caught. When the handler returns, its
//! result becomes the close the client sees (see [`super::app_error`]), the close handshake
//! is finished, and a drop guard removes the connection from the server's table and releases
//! its cap slot, whatever ended it (return, error, panic or abort).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tether_proto::handshake::Request;
use tether_proto::{CloseCode, CloseFrame, Role};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tracing::Instrument;

use super::accept::upgrade_or_http;
use super::builder::{ServerBuilder, ServerParts};
use super::context::ConnContext;
use super::extract::{PreparedHandler, RequestContext};
use super::http::{HttpRequest, HttpResponse};
use super::limits::{CapPermit, RateLimit};
use super::session::{CatchUnwind, finish, panic_message};
use super::socket::Socket;
use super::{Accept, Reject};
use crate::error::{Error, ErrorKind};
use crate::transport::{BoxIo, Config, Sender, WebSocket, next_connection_id};

/// A server's figures; see [`Server::stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Connections open: WebSocket sessions, handshakes in progress and plain HTTP requests
    /// being answered.
    pub open_connections: usize,
    /// Messages the rate limit refused (each answered with a 4005 error message).
    pub rate_limited_messages: u64,
    /// The payload bytes of those messages.
    pub rate_limited_bytes: u64,
    /// Connections closed with 1008 for sustained abuse of the rate limit.
    pub rate_limit_closes: u64,
    /// TLS handshakes that failed or did not finish within the handshake timeout (`wss://`
    /// servers only).
    pub tls_handshake_failures: u64,
}

/// A WebSocket server: routes, guards, error mappings and connection policies.
///
/// Build one with [`Server::builder`] (or [`Server::with_state`]), then run it with
/// [`serve`](Server::serve), [`serve_with_shutdown`](Server::serve_with_shutdown) or
/// [`serve_on`](Server::serve_on), or hand it streams you accepted yourself with
/// [`serve_stream`](Server::serve_stream).
pub struct Server<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for Server<S> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<S> std::fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("open_connections", &self.inner.live().len())
            .finish_non_exhaustive()
    }
}

pub(super) struct Inner<S> {
    parts: ServerParts<S>,
    live: Mutex<HashMap<u64, LiveConn>>,
    shutting_down: AtomicBool,
    emptied: Notify,
    /// TLS handshakes that failed or ran out of time.
    tls_failures: AtomicU64,
}

/// A connection in the server's table: how to stop it.
struct LiveConn {
    abort: Option<AbortHandle>,
    /// Set once the connection is upgraded.
    sender: Option<Sender>,
}

impl<S> Inner<S> {
    fn live(&self) -> MutexGuard<'_, HashMap<u64, LiveConn>> {
        self.live.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Server<()> {
    /// A builder for a server without app state.
    pub fn builder() -> ServerBuilder<()> {
        ServerBuilder::new(())
    }
}

impl<S: Clone + Send + Sync + 'static> Server<S> {
    /// A builder for a server whose handlers can extract `state` ([`super::State`]).
    pub fn with_state(state: S) -> ServerBuilder<S> {
        ServerBuilder::new(state)
    }

    pub(crate) fn from_parts(parts: ServerParts<S>) -> Self {
        Self {
            inner: Arc::new(Inner {
                parts,
                live: Mutex::new(HashMap::new()),
                shutting_down: AtomicBool::new(false),
                tls_failures: AtomicU64::new(0),
                emptied: Notify::new(),
            }),
        }
    }

    /// The server's figures now: open connections, and what the rate limit refused since
    /// the server started.
    pub fn stats(&self) -> ServerStats {
        let limited = &self.inner.parts.settings.rate_limited;
        ServerStats {
            open_connections: self.inner.live().len(),
            rate_limited_messages: limited.messages.load(Ordering::Relaxed),
            rate_limited_bytes: limited.bytes.load(Ordering::Relaxed),
            rate_limit_closes: limited.closes.load(Ordering::Relaxed),
            tls_handshake_failures: self.inner.tls_failures.load(Ordering::Relaxed),
        }
    }

    /// Listens on `addr` and serves until the process ends.
    ///
    /// # Errors
    /// The address could not be bound.
    pub async fn serve(self, addr: impl ToSocketAddrs) -> io::Result<()> {
        self.serve_with_shutdown(addr, std::future::pending()).await
    }

    /// Listens on `addr` and serves until `signal` completes, then shuts down gracefully:
    /// stops accepting, closes every connection with 1001, waits for their close handshakes
    /// up to the shutdown timeout, drops what remains and returns.
    ///
    /// # Errors
    /// The address could not be bound.
    pub async fn serve_with_shutdown<F>(self, addr: impl ToSocketAddrs, signal: F) -> io::Result<()>
    where
        F: Future<Output = ()>,
    {
        let listener = TcpListener::bind(addr).await?;
        self.serve_on(listener, signal).await
    }

    /// Serves on a bound listener until `signal` completes; see
    /// [`serve_with_shutdown`](Server::serve_with_shutdown).
    ///
    /// # Errors
    /// None today; accept failures (such as running out of file descriptors) are logged and
    /// retried after a short pause.
    pub async fn serve_on<F>(self, listener: TcpListener, signal: F) -> io::Result<()>
    where
        F: Future<Output = ()>,
    {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "listening");
        }
        let mut signal = std::pin::pin!(signal);
        loop {
            tokio::select! {
                biased;
                () = &mut signal => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        self.spawn_connection(stream, peer);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "accept failed; pausing before the next");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
        drop(listener);
        self.shutdown().await;
        Ok(())
    }

    /// Serves one connection on a stream accepted elsewhere (a TLS stream, a Unix socket, a
    /// tunnel, an in-memory duplex in tests): the handshake with this server's routes and
    /// guards, the handler, the error contract and the close; returns when the connection
    /// is over. `peer` is the address handlers see. The connection takes part in graceful
    /// shutdown like the ones the server accepted itself.
    pub async fn serve_stream<I>(&self, stream: I, peer: SocketAddr)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let id = next_connection_id();
        let guard = LiveGuard {
            inner: Arc::clone(&self.inner),
            id,
        };
        self.inner.live().insert(
            id,
            LiveConn {
                abort: None,
                sender: None,
            },
        );
        let span = tracing::info_span!("ws", conn = id, %peer, route = tracing::field::Empty);
        connection(Arc::clone(&self.inner), Box::new(stream), peer, id, guard)
            .instrument(span)
            .await;
    }

    fn spawn_connection(&self, stream: TcpStream, peer: SocketAddr) {
        let id = next_connection_id();
        self.spawn_tracked(id, peer, move |inner, guard| async move {
            // Boxed: a TLS handshake's state need not size the task for the connection's life.
            let stream = match secure_now(&inner, stream) {
                Ok(stream) => stream,
                Err(stream) => match Box::pin(secure(&inner, stream)).await {
                    Some(stream) => stream,
                    None => return,
                },
            };
            // The rest as in `connection`, inline: a nested future would keep a second copy of
            // what this one captured.
            let Some((ws, chosen, permit)) = Box::pin(handshake(&inner, stream, peer, id)).await
            else {
                return;
            };
            run_session(&inner, ws, chosen, peer).await;
            drop(permit);
            drop(guard);
        });
    }

    /// Spawns a connection's task, in the server's table (so shutdown and `stats` see it)
    /// from before it first runs until its guard drops.
    pub(super) fn spawn_tracked<F, Fut>(&self, id: u64, peer: SocketAddr, task: F)
    where
        F: FnOnce(Arc<Inner<S>>, LiveGuard<S>) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let guard = LiveGuard {
            inner: Arc::clone(&self.inner),
            id,
        };
        let span = tracing::info_span!("ws", conn = id, %peer, route = tracing::field::Empty);
        let task = task(Arc::clone(&self.inner), guard).instrument(span);
        // The table is locked across the spawn so the task cannot remove its entry before it
        // is inserted.
        let mut live = self.inner.live();
        let handle = tokio::spawn(task);
        live.insert(
            id,
            LiveConn {
                abort: Some(handle.abort_handle()),
                sender: None,
            },
        );
    }

    /// The parts the server was built from.
    #[cfg(feature = "hyper")]
    pub(crate) fn parts(&self) -> &ServerParts<S> {
        &self.inner.parts
    }

    /// Whether [`shutdown`](Self::shutdown) has begun.
    #[cfg(feature = "hyper")]
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::SeqCst)
    }

    /// Shuts down gracefully: refuses new upgrades, closes every connection with 1001 and
    /// waits for their close handshakes up to the shutdown timeout, then drops what remains.
    ///
    /// [`serve_with_shutdown`](Self::serve_with_shutdown) calls it when its signal fires.
    /// A server mounted in axum or hyper calls it itself once the HTTP server has stopped
    /// accepting: upgraded connections have left the HTTP server by then, so its own
    /// graceful shutdown does not wait for them.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutting_down.store(true, Ordering::SeqCst);
        let (senders, handshaking): (Vec<_>, Vec<_>) = {
            let live = inner.live();
            live.values()
                .map(|conn| (conn.sender.clone(), conn.abort.clone()))
                .partition(|(sender, _)| sender.is_some())
        };
        tracing::info!(
            open = senders.len(),
            "shutting down: closing every connection with 1001"
        );
        for (_, abort) in handshaking {
            if let Some(abort) = abort {
                abort.abort();
            }
        }
        for sender in senders.into_iter().filter_map(|(sender, _)| sender) {
            tokio::spawn(async move {
                let _ = sender.close_frame(going_away()).await;
            });
        }
        let deadline = inner.parts.shutdown_timeout;
        if tokio::time::timeout(deadline, self.all_gone())
            .await
            .is_err()
        {
            {
                let live = inner.live();
                tracing::warn!(
                    remaining = live.len(),
                    "shutdown deadline passed; dropping the remaining connections"
                );
                for conn in live.values() {
                    if let Some(abort) = &conn.abort {
                        abort.abort();
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.all_gone()).await;
        }
        tracing::info!("shut down");
    }

    async fn all_gone(&self) {
        loop {
            let notified = self.inner.emptied.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self.inner.live().is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// The accepted stream, through the TLS handshake when the server serves `wss://` (bounded
/// by the handshake timeout); `None` when that handshake failed.
/// The stream as it is when the server has no TLS; `Err` gives it back for [`secure`].
fn secure_now<S>(inner: &Inner<S>, stream: TcpStream) -> Result<BoxIo, TcpStream> {
    #[cfg(feature = "tls")]
    if inner.parts.tls.is_some() {
        return Err(stream);
    }
    #[cfg(not(feature = "tls"))]
    let _ = inner;
    Ok(Box::new(stream))
}

async fn secure<S>(inner: &Inner<S>, stream: TcpStream) -> Option<BoxIo> {
    #[cfg(feature = "tls")]
    if let Some(acceptor) = &inner.parts.tls {
        // Boxed: the handshake's state lives only as long as the handshake.
        let handshake = Box::pin(acceptor.accept(stream));
        let timeout = inner.parts.config.handshake_timeout;
        return match tokio::time::timeout(timeout, handshake).await {
            Ok(Ok(tls)) => Some(Box::new(tls)),
            Ok(Err(error)) => {
                inner.tls_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%error, "tls handshake failed");
                None
            }
            Err(_) => {
                inner.tls_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("tls handshake timed out; dropped");
                None
            }
        };
    }
    #[cfg(not(feature = "tls"))]
    let _ = inner;
    Some(Box::new(stream))
}

fn going_away() -> CloseFrame {
    CloseFrame::new(CloseCode::GOING_AWAY, "server shutting down")
}

/// Removes a connection from the server's table when its task ends or is dropped.
pub(super) struct LiveGuard<S> {
    inner: Arc<Inner<S>>,
    id: u64,
}

impl<S> Drop for LiveGuard<S> {
    fn drop(&mut self) {
        let mut live = self.inner.live();
        live.remove(&self.id);
        if live.is_empty() && self.inner.shutting_down.load(Ordering::SeqCst) {
            self.inner.emptied.notify_waiters();
        }
    }
}

/// What the handshake decided for an accepted connection.
pub(crate) struct Chosen {
    pub(crate) handler: PreparedHandler,
    pub(crate) config: Arc<Config>,
    pub(crate) rate_limit: Option<RateLimit>,
    /// The route's pattern (or, for an axum route, the request's path), for logs.
    pub(crate) route: Arc<str>,
}

/// One connection from its stream to its end (`spawn_connection` inlines the same steps).
async fn connection<S: Clone + Send + Sync + 'static>(
    inner: Arc<Inner<S>>,
    stream: BoxIo,
    peer: SocketAddr,
    id: u64,
    _guard: LiveGuard<S>,
) {
    // Boxed: the handshake's state (the request, the buffers, the answer) is let go when it
    // ends instead of sizing the task for the connection's whole life.
    let Some((ws, chosen, permit)) = Box::pin(handshake(&inner, stream, peer, id)).await else {
        return;
    };
    run_session(&inner, ws, chosen, peer).await;
    drop(permit);
}

/// The opening handshake of one connection: the connection caps, routing, guards and the
/// answer, or a plain HTTP route's response. `None` when no WebSocket came out of it.
async fn handshake<S: Clone + Send + Sync + 'static>(
    inner: &Inner<S>,
    stream: BoxIo,
    peer: SocketAddr,
    id: u64,
) -> Option<(WebSocket, Chosen, CapPermit)> {
    let parts = &inner.parts;
    let permit = parts.caps.acquire(peer.ip());
    let mut chosen = None;
    let mut served_http = None;
    let http = |request: &HttpRequest| {
        let response = plain_http(parts, request);
        served_http = response.as_ref().map(|response| response.status);
        response
    };
    let accepted = upgrade_or_http(
        stream,
        &parts.config,
        |request| {
            if let Err(reject) = &permit {
                return Err(reject.clone());
            }
            decide(parts, request, peer, id).map(|(accept, decided)| {
                chosen = Some(decided);
                accept
            })
        },
        http,
    )
    .await;
    let upgraded = match accepted {
        Ok(upgraded) => upgraded,
        Err(_) if served_http.is_some() => {
            tracing::debug!(status = served_http, "served a plain HTTP request");
            return None;
        }
        Err(error) => {
            log_handshake_failure(&error);
            return None;
        }
    };
    let chosen = chosen?;
    let permit = permit.ok()?;
    // The request is not needed after the handshake: let it go with the rest.
    let ws = WebSocket::new(
        upgraded.stream,
        Role::Server,
        Arc::clone(&chosen.config),
        upgraded.leftover,
        id,
    )
    .with_protocol(upgraded.protocol)
    .with_deflate(upgraded.deflate);
    Some((ws, chosen, permit))
}

/// Runs an upgraded connection: registers its sender for shutdown, runs the handler with
/// panics caught, applies the error contract to its result and finishes the close.
///
/// The setup runs here and now; the future returned holds only what the handler's life
/// needs (an `async fn` would keep its arguments and their moved copies side by side in
/// every connection's task).
pub(super) fn run_session<S>(
    inner: &Inner<S>,
    ws: WebSocket,
    chosen: Chosen,
    peer: SocketAddr,
) -> impl Future<Output = ()> + Send + 'static {
    let Chosen {
        handler,
        rate_limit,
        route,
        ..
    } = chosen;
    let id = ws.id();
    tracing::Span::current().record("route", &*route);
    let sender = ws.sender();
    let shutting_down = {
        let mut live = inner.live();
        if let Some(conn) = live.get_mut(&id) {
            conn.sender = Some(sender.clone());
        }
        inner.shutting_down.load(Ordering::SeqCst)
    };
    let ctx = Arc::new(ConnContext {
        id,
        peer,
        route,
        settings: Arc::clone(&inner.parts.settings),
        parked: Mutex::new(None),
    });
    let socket = Socket::new(ws, Arc::clone(&ctx), rate_limit);
    // Calling the handler only makes its future: nothing of it runs before it is polled.
    let handler = (handler.0)(socket);
    async move {
        if shutting_down {
            let _ = Box::pin(sender.close_frame(going_away())).await;
        }
        tracing::debug!("connection open");
        let outcome = CatchUnwind(handler).await;
        // Boxed: the close runs once, at the end; its state need not size the connection's
        // task while the handler runs.
        Box::pin(finish(&ctx, &sender, outcome)).await;
    }
}

/// Routing, `Origin`, guards and extractors, on the upgrade request: the answer and what
/// runs after it. A panic in a guard or extractor (application code) is answered 500
/// instead of losing the task.
pub(super) fn decide<S>(
    parts: &ServerParts<S>,
    request: &Request,
    peer: SocketAddr,
    id: u64,
) -> Result<(Accept, Chosen), Reject> {
    let decided = std::panic::catch_unwind(AssertUnwindSafe(|| {
        route_and_guard(parts, request, peer, id)
    }));
    decided.unwrap_or_else(|panic| {
        tracing::error!(
            connection = id,
            %peer,
            path = request.path(),
            error = %format!("panic: {}", panic_message(&*panic)),
            "a guard or extractor panicked; answering 500"
        );
        Err(Reject::error(500, "Internal server error"))
    })
}

fn route_and_guard<S>(
    parts: &ServerParts<S>,
    request: &Request,
    peer: SocketAddr,
    id: u64,
) -> Result<(Accept, Chosen), Reject> {
    if let (Some(allowed), Some(origin)) = (&parts.allowed_origins, request.origin()) {
        if !allowed.iter().any(|ok| ok.eq_ignore_ascii_case(origin)) {
            tracing::warn!(origin, "refused a cross-origin WebSocket request");
            return Err(Reject::error(403, "Origin not allowed"));
        }
    }
    let Some((pattern, route, params)) = parts.routes.find(request.path()) else {
        return Err(Reject::error(404, "No WebSocket endpoint at this path"));
    };
    let cx = RequestContext {
        request,
        params: &params,
        route: pattern.as_str(),
        peer,
        connection_id: id,
        state: &parts.state,
    };
    for guard in &route.guards {
        guard(&cx)?;
    }
    let handler = route.handler.prepare(&cx)?;
    let protocol = request.select_protocol(&route.protocols).map(str::to_owned);
    let chosen = Chosen {
        handler,
        config: route.connection_config(&parts.config.transport),
        rate_limit: route.rate_limit.unwrap_or(parts.settings.rate_limit),
        route: Arc::from(pattern.as_str()),
    };
    let accept = Accept {
        protocol,
        ..Accept::default()
    };
    Ok((accept, chosen))
}

/// The answer to a request that is not an upgrade: its HTTP route's, a 404 for a path no
/// route serves, or `None` (the upgrade error's own answer, e.g. 426) for a WebSocket path.
pub(super) fn plain_http<S>(parts: &ServerParts<S>, request: &HttpRequest) -> Option<HttpResponse> {
    let path = request.path();
    if let Some((_, handler, _)) = parts.http_routes.find(path) {
        return Some(handler(request, &parts.state));
    }
    if parts.routes.find(path).is_some() {
        return None;
    }
    Some(Reject::error(404, "Nothing at this path").into())
}

pub(super) fn log_handshake_failure(error: &Error) {
    match (error.kind(), error.rejected_status()) {
        (_, Some(status)) if status == 503 || status == 429 => {
            tracing::warn!(status, "handshake refused: connection cap")
        }
        (_, Some(status)) => {
            tracing::debug!(status, error = %format_args!("{error:#}"), "handshake refused")
        }
        (ErrorKind::Timeout, _) => tracing::debug!("handshake timed out; dropped"),
        _ => {
            tracing::debug!(error = %format_args!("{error:#}"), "client left during the handshake")
        }
    }
}
