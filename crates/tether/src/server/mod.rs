//! The server side: the [`Server`] framework and the lower-level accept path it stands on.
//!
//! [`Server::builder`] gives routes with path parameters, app state, extractors, guards that
//! refuse the upgrade with a real HTTP status and a JSON body, and the error contract: what a
//! handler returns becomes the close (or error message) the client sees, and nothing internal
//! ever reaches it (see [`app_error`](self::AppError) and the crate's "Error handling" guide).
//!
//! [`accept`] is the bare handshake on any stream: it reads the upgrade request (bounded in
//! size and time), lets a decision function look at it, and answers 101 or an HTTP
//! rejection. A malformed request gets the precise status its
//! [`HandshakeError`](crate::HandshakeError) maps to (400, 405, 426, 431, 505), never a
//! panic.

mod accept;
mod app_error;
mod builder;
mod close_error;
mod context;
mod extract;
mod http;
mod limits;
mod policy;
mod router;
mod serve;
#[cfg(feature = "hyper")]
mod service;
mod session;
mod socket;
#[cfg(feature = "tls")]
mod tls;

#[cfg(feature = "axum")]
pub(crate) use extract::handler_future;
#[cfg(feature = "axum")]
pub(crate) use limits::CapPermit;
#[cfg(feature = "axum")]
pub(crate) use serve::Chosen;
#[cfg(feature = "axum")]
pub(crate) use service::{Pending, http_response, no_upgrade, peer_of, upgrade_request};

pub use accept::{Accept, Reject, ServerConfig, accept};
pub use app_error::{AppError, BoxError, ErrorAction};
pub use builder::{BuildError, Route, ServerBuilder};
pub use close_error::CloseError;
pub use extract::{
    FromRequest, Handler, Headers, Path, Peer, PreparedHandler, Query, RequestContext, State,
};
pub use http::{HttpRequest, HttpResponse};
pub use limits::RateLimit;
pub use router::{PathParams, Pattern, PatternError, Routes, parse_query};
pub use serve::{Server, ServerStats};
#[cfg(feature = "hyper")]
pub use service::ResponseBody;
pub use socket::Socket;
#[cfg(feature = "tls")]
pub use tls::tls_config_from_pem;
