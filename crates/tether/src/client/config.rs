//! `ClientConfig`: every client setting with its default, and `Response`: what the server
//! answered to a successful handshake.

use std::time::Duration;

use tether_proto::handshake::HandshakeConfig;

use super::proxy::ProxyConfig;
#[cfg(feature = "tls")]
use super::tls::TlsConfig;
use crate::transport::Config;
use tether_proto::deflate::DeflateConfig;

/// Client settings, each with a documented default. [`ClientBuilder`](super::ClientBuilder) sets them fluently.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Settings of the connection once open: limits, heartbeat (default: a ping every 20 s,
    /// 20 s for its pong), read timeout (default: none), write timeout (default: 30 s), the
    /// close timeout and the caught close codes.
    pub transport: Config,
    /// Limits on the response head. Default: 8 KiB, 64 headers.
    pub handshake: HandshakeConfig,
    /// One deadline over the whole connect: resolving, dialing (through the proxy, if any),
    /// TLS and the opening handshake. A server that accepts TCP and never answers fails at
    /// it with a [`Timeout`](crate::ErrorKind::Timeout) naming the phase it was in.
    /// Default: 10 s.
    pub connect_timeout: Duration,
    /// How long the TLS handshake and the opening handshake may each take, within the
    /// connect deadline. Default: 10 s.
    pub handshake_timeout: Duration,
    /// The largest response body kept from a rejected handshake. Default: 64 KiB.
    pub max_error_body: usize,
    /// Subprotocols to offer, in preference order.
    pub protocols: Vec<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// Which certificates `wss://` trusts. Default: the web PKI roots.
    #[cfg(feature = "tls")]
    pub tls: TlsConfig,
    /// The proxy. Default: from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`).
    pub proxy: ProxyConfig,
}

impl ClientConfig {
    /// The default connect timeout: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default handshake timeout: 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default cap on a rejected handshake's body: 64 KiB.
    pub const DEFAULT_MAX_ERROR_BODY: usize = 64 * 1024;
    /// The default write timeout of a client connection: 30 s.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// This config with `transport` settings.
    pub fn with_transport(mut self, transport: Config) -> Self {
        self.transport = transport;
        self
    }

    /// This config with a subprotocol offered.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// This config with an extra request header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This config sending `Origin: origin` (as a browser would).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// This config with the connect timeout set to `timeout`.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// This config with the handshake timeout set to `timeout`.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            transport: Config::default()
                .with_write_timeout(Self::DEFAULT_WRITE_TIMEOUT)
                .with_deflate(DeflateConfig::client()),
            handshake: HandshakeConfig::default(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            max_error_body: Self::DEFAULT_MAX_ERROR_BODY,
            protocols: Vec::new(),
            headers: Vec::new(),
            origin: None,
            #[cfg(feature = "tls")]
            tls: TlsConfig::default(),
            proxy: ProxyConfig::default(),
        }
    }
}

/// What the server answered to a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// The response headers.
    pub headers: Vec<(String, String)>,
}
