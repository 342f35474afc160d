//! The client side: [`connect`] to a `ws://` or `wss://` URL (directly or through an HTTP or
//! SOCKS5 proxy) and get a [`WebSocket`](crate::WebSocket), the same connection type a
//! server handler gets, with the heartbeat and timeouts built in.
//!
//! [`ClientBuilder`] sets every option; [`connect_on`] runs only the opening handshake on
//! a stream the caller connected.

mod backoff;
mod builder;
mod config;
mod connect;
mod handshake;
mod proxy;
mod runner;
mod stream;
#[cfg(feature = "tls")]
mod tls;
mod tunnel;
mod url;

pub use backoff::{Backoff, Reconnect};
pub use builder::ClientBuilder;
pub use config::{ClientConfig, Response};
pub use connect::{connect, connect_on, connect_with};
pub use proxy::{Proxy, ProxyConfig, ProxyKind};
pub use runner::{Disconnect, Event, EventHandler, Runner, StopHandle};
#[cfg(feature = "tls")]
pub use tls::TlsConfig;
pub use url::WsUrl;
