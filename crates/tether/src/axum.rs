//! Tether inside an axum app (feature `axum`): the [`WebSocketUpgrade`] extractor runs an
//! ordinary Tether handler with the whole error contract, on an axum route.
//!
//! # What you get
//!
//! A handler that takes a [`Socket`] and returns `Result<(), E>` runs exactly as on Tether's
//! own server: its errors become close codes or error messages through the server's
//! `on_error` mappings, [`AppError`](crate::server::AppError) and
//! [`CloseError`](crate::server::CloseError) work, an unmapped error or a panic closes 1011
//! `internal error` without leaking anything, `caught_close_codes`, heartbeats, the idle
//! timeout, the size and rate limits apply, [`Hub::member_for`](crate::hub::Hub::member_for)
//! takes its sender, and the connection takes part in graceful shutdown with 1001.
//!
//! Those settings come from a [`Server`] built without routes and added to the app as an
//! `Extension`; its `shutdown` closes the WebSockets. A handshake the extractor refuses gets
//! the same status, headers (`Sec-WebSocket-Version: 13` on 426) and JSON error body as on
//! Tether's own server, and a [`Reject`] returned by your own handler or extractor is an
//! axum response too (that is the axum form of a guard: `WWW-Authenticate` on 401 and so
//! on).
//!
//! ```no_run
//! use axum::{Extension, Router, routing::any};
//! use tether::axum::WebSocketUpgrade;
//! use tether::server::{Server, Socket};
//!
//! async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
//!     while let Some(message) = socket.recv().await? {
//!         socket.send(message).await?;
//!     }
//!     Ok(())
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let tether = Server::builder().build()?;
//! let app = Router::new()
//!     .route("/ws", any(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }))
//!     .layer(Extension(tether.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app)
//!     // Close the WebSockets with 1001 when the app stops; new upgrades meanwhile get 503.
//!     .with_graceful_shutdown(async move {
//!         let _ = tokio::signal::ctrl_c().await;
//!         tether.shutdown().await;
//!     })
//!     .await?;
//! # Ok(())
//! # }
//! ```
//!
//! Extractors are axum's: take `Path`, `Query`, `State` or headers in the axum handler, next
//! to the `WebSocketUpgrade`, and move what they give into the closure passed to
//! [`on_upgrade`](WebSocketUpgrade::on_upgrade). [`WebSocketUpgrade::request`] shows the
//! upgrade request (its headers, path and offered subprotocols) for checks of your own.
//!
//! A route made with `any()` serves both an HTTP/1.1 upgrade (`GET`, answered 101) and an
//! HTTP/2 extended CONNECT (RFC 8441, answered 200); `axum::serve` enables the latter.
//! Handlers see the peer address when the request's extensions hold a `SocketAddr`, and
//! `0.0.0.0:0` otherwise.
//!
//! # Compared with `axum::extract::ws`
//!
//! axum's own `WebSocketUpgrade` hands you a bare socket: what your handler returns is
//! dropped, a panic kills the task without a close frame, and pings, timeouts, rate limits
//! and shutdown are yours to write. To migrate a handler, take [`Socket`] instead of
//! `axum::extract::ws::WebSocket`, loop with `while let Some(message) =
//! socket.recv().await? {..}` (axum's `recv` gives `Option<Result<_>>`), send
//! [`Message`](crate::Message) values (text and binary as there), return `Result<(), E>`
//! instead of `()`, and add the Tether `Server` extension to the router.

use std::future::Future;
use std::sync::Arc;

use axum_core::body::Body;
use axum_core::extract::FromRequestParts;
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;
use hyper::upgrade::OnUpgrade;
use tether_proto::handshake::Request;

use crate::server::{
    Accept, BoxError, CapPermit, Chosen, Pending, PreparedHandler, RateLimit, Reject, Server,
    Socket, handler_future, http_response, no_upgrade, peer_of, upgrade_request,
};
use crate::transport::{CaughtCloseCodes, next_connection_id};

/// An accepted-so-far WebSocket request on an axum route: finish it with
/// [`on_upgrade`](Self::on_upgrade). See the [module docs](self).
///
/// Extracting it checks the handshake (HTTP/1.1 upgrade or HTTP/2 extended CONNECT), that
/// the app has a Tether [`Server`] extension, that the server is not shutting down and the
/// connection caps; each failure is answered as Tether's own server would.
pub struct WebSocketUpgrade {
    server: Server<()>,
    request: Request,
    on_upgrade: OnUpgrade,
    peer: std::net::SocketAddr,
    permit: CapPermit,
    protocols: Vec<String>,
    rate_limit: Option<Option<RateLimit>>,
    caught: Option<CaughtCloseCodes>,
}

impl std::fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("request", &self.request)
            .field("peer", &self.peer)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

impl WebSocketUpgrade {
    /// The subprotocols this endpoint speaks, in preference order; the first one the client
    /// offered is selected ([`Socket::protocol`](crate::WebSocket::protocol) tells which).
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// This endpoint's rate limit instead of the server's (`None`: no limit).
    pub fn rate_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.rate_limit = Some(limit.into());
        self
    }

    /// The client close codes that end `recv` quietly (`Ok(None)`) on this endpoint,
    /// instead of the server's (default 1000, 1001 and 1005); others are errors.
    pub fn caught_close_codes(mut self, caught: CaughtCloseCodes) -> Self {
        self.caught = Some(caught);
        self
    }

    /// The upgrade request: path, headers, offered subprotocols.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// Accepts the upgrade and runs `handler` on the connection in its own task, with the
    /// error contract applied to what it returns. The answer is 101 (HTTP/1.1) or 200
    /// (HTTP/2).
    pub fn on_upgrade<F, Fut, E>(self, handler: F) -> Response
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Into<BoxError>,
    {
        let Self {
            server,
            request,
            on_upgrade,
            peer,
            permit,
            protocols,
            rate_limit,
            caught,
        } = self;
        let protocol = request.select_protocol(&protocols).map(str::to_owned);
        let parts = server.parts();
        let route = request.path().split(['?', '#']).next().unwrap_or_default();
        let chosen = Chosen {
            handler: PreparedHandler(Box::new(move |socket| handler_future(handler(socket)))),
            config: match caught {
                // An override costs this connection its own copy of the settings.
                Some(caught) => Arc::new(
                    parts
                        .config
                        .transport
                        .clone()
                        .with_caught_close_codes(caught),
                ),
                None => parts.config.shared_transport(),
            },
            rate_limit: rate_limit.unwrap_or(parts.settings.rate_limit),
            route: Arc::from(route),
        };
        let accept = Accept {
            protocol,
            headers: Vec::new(),
        };
        let pending = Pending {
            on_upgrade,
            chosen,
            peer,
            id: next_connection_id(),
            permit,
        };
        server
            .start_upgraded(&request, accept, pending)
            .map(Body::new)
    }
}

impl<St: Send + Sync> FromRequestParts<St> for WebSocketUpgrade {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &St) -> Result<Self, Response> {
        let version = parts.version;
        let refuse = |reject: Reject| http_response(reject.into(), version).map(Body::new);
        let Some(server) = parts.extensions.get::<Server<()>>().cloned() else {
            tracing::error!(
                "tether::axum::WebSocketUpgrade needs a tether Server in the app: \
                 add `.layer(Extension(server))` to the router"
            );
            return Err(refuse(Reject::error(500, "Internal server error")));
        };
        let request =
            upgrade_request(parts).map_err(|error| refuse(Reject::from_handshake(&error)))?;
        if server.is_shutting_down() {
            return Err(refuse(Reject::error(503, "Server shutting down")));
        }
        let peer = peer_of(parts);
        let permit = server.parts().caps.acquire(peer.ip()).map_err(refuse)?;
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return Err(no_upgrade(version).map(Body::new));
        };
        Ok(Self {
            server,
            request,
            on_upgrade,
            peer,
            permit,
            protocols: Vec::new(),
            rate_limit: None,
            caught: None,
        })
    }
}

/// A refusal from your own guard or extractor is an axum response with the same status,
/// headers and JSON body as on Tether's own server.
impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        http_response(self.into(), http::Version::HTTP_11).map(Body::new)
    }
}
