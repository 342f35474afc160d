//! `ClientBuilder`: every client setting, fluently, ending in `connect(url)`.

use std::time::Duration;

use super::config::{ClientConfig, Response};
use super::connect::{connect_on, connect_with};
use super::proxy::{Proxy, ProxyConfig};
#[cfg(feature = "tls")]
use super::tls::TlsConfig;
use super::url::WsUrl;
use crate::error::Error;
use crate::transport::{CaughtCloseCodes, WebSocket};
use tether_proto::deflate::DeflateConfig;
use tokio::io::{AsyncRead, AsyncWrite};

/// Builds client connections: every setting, each with a documented default, ending in
/// [`connect`](ClientBuilder::connect).
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl ClientBuilder {
    /// A builder with the default settings (see [`ClientConfig`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// One deadline over resolving, dialing (through the proxy, if any), TLS and the opening
    /// handshake. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long the TLS handshake and the opening handshake may each take, within the
    /// connect deadline. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long `recv` waits for a message before a read timeout. Default: none.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.transport.read_timeout = timeout.into();
        self
    }

    /// How long a send may wait for the server to take the data. Default: 30 s.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.transport.write_timeout = timeout.into();
        self
    }

    /// How long to wait for the server's answer to our close. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.transport.close_timeout = timeout;
        self
    }

    /// Pings every `interval` (`None`: never). Default: 20 s.
    pub fn ping_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.transport.ping_interval = interval.into();
        self
    }

    /// How long a pong may take. Default: 20 s.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.transport.ping_timeout = timeout;
        self
    }

    /// Adds a request header (e.g. `Authorization`).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.headers.push((name.into(), value.into()));
        self
    }

    /// Offers a subprotocol (in preference order).
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.config.protocols.push(protocol.into());
        self
    }

    /// Sends `Origin`.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.config.origin = Some(origin.into());
        self
    }

    /// The largest message accepted from the server (over it: 1009). Default: 1 MiB.
    pub fn max_message_size(mut self, max: usize) -> Self {
        self.config.transport.limits = crate::Limits::new(max);
        self
    }

    /// permessage-deflate: what to offer (`None`: offer nothing). Default:
    /// [`DeflateConfig::client`], which resets this client's context after each message and
    /// lets the server choose for its direction; the server decides whether it is used
    /// ([`WebSocket::deflate`](crate::WebSocket::deflate) tells).
    pub fn deflate(mut self, deflate: impl Into<Option<DeflateConfig>>) -> Self {
        self.config.transport.deflate = deflate.into();
        self
    }

    /// Which server close codes end `recv` quietly (`Ok(None)`); any other end is an error.
    /// Default: 1000, 1001 and 1005.
    pub fn caught_close_codes(mut self, caught: CaughtCloseCodes) -> Self {
        self.config.transport.caught_close_codes = caught;
        self
    }

    /// The most bytes kept of a rejected handshake's body. Default: 64 KiB.
    pub fn max_error_body(mut self, max: usize) -> Self {
        self.config.max_error_body = max;
        self
    }

    /// Which certificates `wss://` trusts. Default: the web PKI roots.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: TlsConfig) -> Self {
        self.config.tls = tls;
        self
    }

    /// Dials through `proxy` (see [`Proxy::parse`]).
    pub fn proxy(mut self, proxy: Proxy) -> Self {
        self.config.proxy = ProxyConfig::Use(proxy);
        self
    }

    /// Never uses a proxy, whatever the environment says.
    pub fn no_proxy(mut self) -> Self {
        self.config.proxy = ProxyConfig::Direct;
        self
    }

    /// The settings built so far.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Connects to `url`: resolve, dial (through the proxy, if any), TLS for `wss://`, then
    /// the opening handshake, all within the connect timeout.
    ///
    /// # Errors
    /// As [`connect`](super::connect).
    pub async fn connect(&self, url: &str) -> Result<(WebSocket, Response), Error> {
        connect_with(url, &self.config).await
    }

    /// Runs only the opening handshake for `url`, on a stream the caller has already
    /// connected (a socket bound to a chosen source address, a tunnel, a TLS stream), within
    /// the handshake timeout.
    ///
    /// # Errors
    /// As [`connect`](super::connect), without the resolve, dial and TLS phases.
    pub async fn connect_on<S>(&self, stream: S, url: &str) -> Result<(WebSocket, Response), Error>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let url = WsUrl::parse(url)?;
        connect_on(stream, &url, &self.config).await
    }

    /// Connects to `url` for blocking code: as [`connect`](Self::connect), on a small
    /// runtime the connection owns (feature `blocking`).
    ///
    /// # Errors
    /// As [`connect`](Self::connect); [`ErrorKind::Io`](crate::ErrorKind::Io) when called
    /// from inside an async runtime or when the runtime cannot start.
    #[cfg(feature = "blocking")]
    pub fn connect_blocking(
        &self,
        url: &str,
    ) -> Result<(crate::blocking::BlockingClient, Response), Error> {
        crate::blocking::connect(url, &self.config)
    }
}

/// A builder that starts from `config`.
impl From<ClientConfig> for ClientBuilder {
    fn from(config: ClientConfig) -> Self {
        Self { config }
    }
}
