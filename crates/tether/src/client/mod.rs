//! The client side: connecting to a `ws://` URL and opening a [`WebSocket`](crate::WebSocket).
//!
//! TLS, proxies, heartbeats and the reconnecting runner build on this.

mod connect;
mod url;

pub use connect::{ClientConfig, Response, connect, connect_on, connect_with};
pub use url::WsUrl;
