//! `ClientBuilder`: every client setting, fluently, ending in `connect(url)`.

use std::time::Duration;

use super::conn::Client;
use super::connect::{ClientConfig, Response, connect_with};
use super::proxy::{Proxy, ProxyConfig};
#[cfg(feature = "tls")]
use super::tls::TlsConfig;
use crate::error::Error;

/// Builds client connections; start with [`Client::builder`].
#[derive(Debug, Clone, Default)]
pub struct ClientBuilder {
    config: ClientConfig,
}

impl Client {
    /// A builder with the default settings (see [`ClientConfig`]).
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }
}

impl ClientBuilder {
    /// How long resolving and connecting (through the proxy, if any) may take. Default: 10 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long the TLS handshake and the opening handshake may each take. Default: 10 s.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config.handshake_timeout = timeout;
        self
    }

    /// How long `recv` waits for a message before a read timeout. Default: none.
    pub fn read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.read_timeout = timeout.into();
        self
    }

    /// How long a send may wait for the server to take the data. Default: 30 s.
    pub fn write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.config.write_timeout = timeout.into();
        self
    }

    /// How long to wait for the server's answer to our close. Default: 5 s.
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.config.transport = self.config.transport.with_close_timeout(timeout);
        self
    }

    /// Pings every `interval` (`None`: never). Default: 20 s.
    pub fn ping_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.config.ping_interval = interval.into();
        self
    }

    /// How long a pong may take. Default: 20 s.
    pub fn ping_timeout(mut self, timeout: Duration) -> Self {
        self.config.ping_timeout = timeout;
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
        self.config.transport = self.config.transport.with_max_message_size(max);
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

    /// Connects to `url`.
    ///
    /// # Errors
    /// As [`connect_with`](super::connect_with).
    pub async fn connect(&self, url: &str) -> Result<(Client, Response), Error> {
        connect_with(url, &self.config).await
    }
}
