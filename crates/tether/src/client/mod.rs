//! The client side: [`connect`] to a `ws://` or `wss://` URL (directly or through an HTTP or
//! SOCKS5 proxy) and get a [`WebSocket`](crate::WebSocket), the same connection type a
//! server handler gets, with the heartbeat and timeouts built in.
//!
//! [`connect`] takes the defaults; [`ClientBuilder`] sets every option and connects
//! (`connect`), runs only the handshake on a stream of yours (`connect_on`), or connects for
//! blocking code (`connect_blocking`, feature `blocking`).
//!
//! [`Runner`] keeps a connection alive across failures; [`Positions`] resumes a chat-like
//! protocol's subscriptions on each new connection from the last position seen in each room,
//! so that no message is missed or repeated.

mod backoff;
mod builder;
mod config;
pub(crate) mod connect;
mod handshake;
mod proxy;
mod resume;
mod runner;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod tunnel;
mod url;

pub use backoff::{Backoff, Reconnect};
pub use builder::ClientBuilder;
pub use config::{ClientConfig, Response};
pub use connect::connect;
pub use proxy::{Proxy, ProxyConfig, ProxyKind};
pub use resume::{Observed, Positions};
pub use runner::{Disconnect, Event, EventHandler, Runner, StopHandle};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;
pub use url::WsUrl;
