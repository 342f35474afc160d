//! `Server::builder()`: routes, guards, error mappings and the connection policies, each with
//! a documented default.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tether_proto::Message;
use tether_proto::deflate::DeflateConfig;

use super::app_error::{ErrorAction, ErrorHandlers};
use super::extract::{ErasedHandler, Handler, HandlerBox, RequestContext};
use super::http::{HttpRequest, HttpResponse};
use super::limits::{ConnectionCaps, RateLimit};
use super::router::{PatternError, Routes};
use super::{Reject, ServerConfig};
use crate::codes::{ErrorCode, Registry, RegistryError};
use crate::transport::{CaughtCloseCodes, Config};

type Guard<S> = Arc<dyn Fn(&RequestContext<'_, S>) -> Result<(), Reject> + Send + Sync>;

/// A route: its handler, the guards that run before the upgrade, and its options.
pub struct Route<S> {
    pub(crate) handler: Arc<dyn ErasedHandler<S>>,
    pub(crate) guards: Vec<Guard<S>>,
    /// This route's caught close codes, when they override the server's.
    pub(crate) caught: Option<CaughtCloseCodes>,
    pub(crate) protocols: Vec<String>,
    /// This route's rate limit, when it overrides the server's.
    pub(crate) rate_limit: Option<Option<RateLimit>>,
    /// The connection settings of this route's connections: the server's, with this
    /// route's caught close codes; made once, shared by every connection.
    pub(crate) config: OnceLock<Arc<Config>>,
}

impl<S> Route<S> {
    /// The settings of this route's connections.
    pub(crate) fn connection_config(&self, server: &Config) -> Arc<Config> {
        let config = self.config.get_or_init(|| {
            let mut config = server.clone();
            if let Some(caught) = &self.caught {
                config.caught_close_codes = caught.clone();
            }
            Arc::new(config)
        });
        Arc::clone(config)
    }
}

impl<S> fmt::Debug for Route<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("guards", &self.guards.len())
            .field("caught", &self.caught)
            .field("protocols", &self.protocols)
            .finish_non_exhaustive()
    }
}

impl<S: 'static> Route<S> {
    /// A route served by `handler`.
    pub fn new<H, Args>(handler: H) -> Self
    where
        H: Handler<S, Args>,
        Args: 'static,
    {
        Self {
            handler: Arc::new(HandlerBox::new(handler)),
            guards: Vec::new(),
            caught: None,
            protocols: Vec::new(),
            rate_limit: None,
            config: OnceLock::new(),
        }
    }

    /// This route's message rate limit (`None`: unlimited), instead of the server's.
    pub fn rate_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.rate_limit = Some(limit.into());
        self
    }

    /// Adds a guard: it runs on the upgrade request, in order with the others, and a
    /// rejection answers the request with its HTTP status, headers and body.
    pub fn guard<G>(mut self, guard: G) -> Self
    where
        G: Fn(&RequestContext<'_, S>) -> Result<(), Reject> + Send + Sync + 'static,
    {
        self.guards.push(Arc::new(guard));
        self
    }

    /// Which client close codes end this route's handler quietly, instead of the server's
    /// ([`Config::caught_close_codes`], default 1000, 1001 and 1005).
    pub fn caught_close_codes(mut self, caught: CaughtCloseCodes) -> Self {
        self.caught = Some(caught);
        self
    }

    /// The subprotocols this route speaks, in order of preference; the first one the client
    /// offers is selected.
    pub fn protocols<I, P>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = P>,
        P: Into<String>,
    {
        self.protocols = protocols.into_iter().map(Into::into).collect();
        self
    }
}

/// A plain HTTP route's handler.
pub(crate) type HttpHandler<S> = Arc<dyn Fn(&HttpRequest, &S) -> HttpResponse + Send + Sync>;

/// Finds the request id of a client message, for error messages about it.
pub(crate) type RequestIdFn = Arc<dyn Fn(&Message) -> Option<String> + Send + Sync>;

/// The policies every connection of a server follows.
pub(crate) struct Settings {
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) codes: Registry,
    pub(crate) request_id: RequestIdFn,
    pub(crate) error_handlers: ErrorHandlers,
    /// What the rate limiter did, for [`Server::stats`](super::Server::stats).
    pub(crate) rate_limited: RateLimitCounters,
}

/// What the rate limiter did across a server's connections.
#[derive(Debug, Default)]
pub(crate) struct RateLimitCounters {
    pub(crate) messages: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) closes: AtomicU64,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("rate_limit", &self.rate_limit)
            .field("error_handlers", &self.error_handlers)
            .finish_non_exhaustive()
    }
}

/// Why a server could not be built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BuildError {
    /// A route pattern is malformed.
    Pattern(PatternError),
    /// An error code is outside 4000-4999.
    Code(RegistryError),
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pattern(error) => write!(f, "invalid route: {error}"),
            Self::Code(error) => write!(f, "invalid error code: {error}"),
        }
    }
}

impl std::error::Error for BuildError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Pattern(error) => Some(error),
            Self::Code(error) => Some(error),
        }
    }
}

/// Everything a built server holds.
pub(crate) struct ServerParts<S> {
    pub(crate) state: S,
    pub(crate) routes: Routes<Route<S>>,
    pub(crate) http_routes: Routes<HttpHandler<S>>,
    pub(crate) settings: Arc<Settings>,
    pub(crate) config: ServerConfig,
    pub(crate) caps: Arc<ConnectionCaps>,
    pub(crate) allowed_origins: Option<Vec<String>>,
    pub(crate) shutdown_timeout: Duration,
    /// TLS for every accepted connection, when set.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Builds a [`Server`](super::Server); start with [`Server::builder`](super::Server::builder).
pub struct ServerBuilder<S> {
    state: S,
    routes: Routes<Route<S>>,
    http_routes: Routes<HttpHandler<S>>,
    error: Option<BuildError>,
    rate_limit: Option<RateLimit>,
    codes: Registry,
    request_id: RequestIdFn,
    error_handlers: ErrorHandlers,
    config: ServerConfig,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    allowed_origins: Option<Vec<String>>,
    shutdown_timeout: Duration,
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl<S> fmt::Debug for ServerBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<S: Clone + Send + Sync + 'static> ServerBuilder<S> {
    /// The defaults: ping every 20 s with a 20 s pong timeout, no idle timeout, messages up
    /// to 1 MiB, [`RateLimit::DEFAULT`], no connection caps, any `Origin`, a 10 s handshake timeout,
    /// a 5 s close timeout and a 10 s shutdown deadline.
    pub(crate) fn new(state: S) -> Self {
        Self {
            state,
            routes: Routes::default(),
            http_routes: Routes::default(),
            error: None,
            rate_limit: Some(RateLimit::DEFAULT),
            codes: Registry::default(),
            request_id: Arc::new(|_| None),
            error_handlers: ErrorHandlers::default(),
            config: ServerConfig::default(),
            max_connections: None,
            max_connections_per_ip: None,
            allowed_origins: None,
            shutdown_timeout: Duration::from_secs(10),
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Serves `pattern` (e.g. `/ws/rooms/{room}`) with `handler`, with the default options.
    pub fn route<H, Args>(self, pattern: &str, handler: H) -> Self
    where
        H: Handler<S, Args>,
        Args: 'static,
    {
        self.route_with(pattern, Route::new(handler))
    }

    /// Serves `pattern` with a [`Route`] (guards, caught close codes, subprotocols).
    pub fn route_with(mut self, pattern: &str, route: Route<S>) -> Self {
        if let Err(error) = self.routes.add(pattern, route) {
            self.error.get_or_insert(BuildError::Pattern(error));
        }
        self
    }

    /// Answers plain HTTP requests (not upgrades) to `pattern` with `handler`: a page, a
    /// health check, metrics. Requests to a WebSocket route without an upgrade still get 426;
    /// requests to no route at all get 404 with the JSON error body.
    pub fn http_route<F>(mut self, pattern: &str, handler: F) -> Self
    where
        F: Fn(&HttpRequest, &S) -> HttpResponse + Send + Sync + 'static,
    {
        if let Err(error) = self.http_routes.add(pattern, Arc::new(handler)) {
            self.error.get_or_insert(BuildError::Pattern(error));
        }
        self
    }

    /// Maps errors of type `E` returned by handlers (or found in their `source()` chain) to
    /// a close or an error message, like an exception handler.
    pub fn on_error<E, F>(mut self, map: F) -> Self
    where
        E: std::error::Error + 'static,
        F: Fn(&E) -> ErrorAction + Send + Sync + 'static,
    {
        self.error_handlers.register::<E, F>(map);
        self
    }

    /// Registers an application error code (4000-4999) beside the defaults.
    pub fn error_code(mut self, code: ErrorCode) -> Self {
        if let Err(error) = self.codes.register(code) {
            self.error.get_or_insert(BuildError::Code(error));
        }
        self
    }

    /// How to find the request id in a client message (for JSON protocols, its `id` field),
    /// so that error messages the server sends about it (rate limiting) echo it.
    pub fn request_id<F>(mut self, find: F) -> Self
    where
        F: Fn(&Message) -> Option<String> + Send + Sync + 'static,
    {
        self.request_id = Arc::new(find);
        self
    }

    /// Pings every `interval` (`None`: never). Default: 20 s.
    pub fn ping_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.transport.ping_interval = interval.into();
        self
    }

    /// How long a pong may take before the peer is considered dead and closed with 1011.
    /// Default: 20 s.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.transport.ping_timeout = timeout;
        self
    }

    /// Closes a connection with 1001 when the client sends no message for this long
    /// (`None`: never). Default: none.
    pub fn idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.transport.idle_timeout = timeout.into();
        self
    }

    /// permessage-deflate (RFC 7692): accept a client's offer and compress as `deflate`
    /// says (`None`: never). Default: off. [`DeflateConfig::server`] answers with no context
    /// takeover in both directions (RFC 7692 7.1.1 lets a server add it), so a connection
    /// keeps no compression memory between messages; a client's decompressed message is
    /// held to [`max_message_size`](Self::max_message_size) while it inflates.
    pub fn deflate(mut self, deflate: impl Into<Option<DeflateConfig>>) -> Self {
        self.config.transport.deflate = deflate.into();
        self
    }

    /// The largest message (and frame) a client may send; over it the connection is closed
    /// with 1009. A compressed message is measured inflated, while it inflates. Default:
    /// 1 MiB.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.config.transport = self.config.transport.with_max_message_size(max);
        self
    }

    /// The per-connection message rate limit (`None`: unlimited). Default:
    /// [`RateLimit::DEFAULT`], 200 messages per second in bursts of 200: a client over it gets
    /// a 4005 error message per refused message, and is closed with 1008 when it keeps on.
    pub fn rate_limit(mut self, limit: impl Into<Option<RateLimit>>) -> Self {
        self.rate_limit = limit.into();
        self
    }

    /// At most `max` open connections; over it the handshake is refused with 503 and
    /// `Retry-After`. Default: no cap.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// At most `max` open connections per client IP; over it the handshake is refused with
    /// 429 and `Retry-After`. Default: no cap.
    pub fn max_connections_per_ip(mut self, max: usize) -> Self {
        self.max_connections_per_ip = Some(max);
        self
    }

    /// Accepts browsers only from these origins (e.g. `https://chat.example.com`); a request
    /// with another `Origin` is refused with 403, against cross-site WebSocket hijacking.
    /// Requests without `Origin` (non-browser clients) are accepted. Default: any origin.
    pub fn allowed_origins<I, O>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = O>,
        O: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }

    /// How long a client may take to send its upgrade request. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long to wait for a client's answer to our close. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.transport = self.config.transport.with_close_timeout(timeout);
        self
    }

    /// The connection settings as a whole (limits, heartbeat, timeouts, caught close codes);
    /// the setters above change one of them each.
    pub fn transport(mut self, config: Config) -> Self {
        self.config.transport = config;
        self
    }

    /// How long a graceful shutdown waits for connections to finish their close handshake
    /// after the 1001 before dropping them. Default: 10 s.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Serves `wss://`: every accepted connection runs the TLS handshake with `config`
    /// (within the handshake timeout) before the upgrade; ALPN offers `http/1.1` unless the
    /// config names its protocols. [`tls_config_from_pem`](super::tls_config_from_pem)
    /// makes one from PEM files. Default: plain `ws://`.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ServerConfig) -> Self {
        self.tls = Some(super::tls::acceptor(config));
        self
    }

    /// The server.
    ///
    /// # Errors
    /// The first malformed route pattern or out-of-range error code.
    pub fn build(self) -> Result<super::Server<S>, BuildError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let settings = Settings {
            rate_limit: self.rate_limit,
            codes: self.codes,
            request_id: self.request_id,
            error_handlers: self.error_handlers,
            rate_limited: RateLimitCounters::default(),
        };
        Ok(super::Server::from_parts(ServerParts {
            state: self.state,
            routes: self.routes,
            http_routes: self.http_routes,
            settings: Arc::new(settings),
            config: self.config,
            caps: Arc::new(ConnectionCaps::new(
                self.max_connections,
                self.max_connections_per_ip,
            )),
            allowed_origins: self.allowed_origins,
            shutdown_timeout: self.shutdown_timeout,
            #[cfg(feature = "tls")]
            tls: self.tls,
        }))
    }
}
