//! `Config`: every setting of a live connection (limits, heartbeat, timeouts, which peer
//! closes end `recv` quietly), each with a documented default.

use std::sync::Arc;
use std::time::Duration;

use tether_proto::Limits;
use tether_proto::deflate::DeflateConfig;

/// Which peer close codes end [`recv`](crate::WebSocket::recv) quietly (`Ok(None)`); any
/// other end of the connection reaches the caller as an error of kind
/// [`ConnectionClosed`](crate::ErrorKind::ConnectionClosed) it can match on.
///
/// Default: 1000 (normal), 1001 (going away) and 1005 (a close frame without a status code),
/// as Python `websockets` treats them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtCloseCodes(Caught);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Caught {
    All,
    Only(Arc<[u16]>),
}

impl CaughtCloseCodes {
    /// Every disconnect ends `recv` quietly, including an abnormal one (1006).
    pub fn all() -> Self {
        Self(Caught::All)
    }

    /// No disconnect is quiet: every one is an error.
    pub fn none() -> Self {
        Self(Caught::Only(Arc::from([])))
    }

    /// Exactly these codes (1005 and 1006 stand for a close without status and an abnormal
    /// closure).
    pub fn only(codes: impl IntoIterator<Item = u16>) -> Self {
        Self(Caught::Only(codes.into_iter().collect()))
    }

    /// Whether a disconnect with `code` is caught.
    pub fn contains(&self, code: u16) -> bool {
        match &self.0 {
            Caught::All => true,
            Caught::Only(codes) => codes.contains(&code),
        }
    }
}

impl Default for CaughtCloseCodes {
    fn default() -> Self {
        Self::only([1000, 1001, 1005])
    }
}

/// The settings of a live connection, each with a documented default. The server builder
/// and the client builder fill one in; [`WebSocket::from_upgraded`](crate::WebSocket::from_upgraded)
/// takes one directly.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Message and frame size limits. Default: 1 MiB each; over it the connection is closed
    /// with 1009.
    pub limits: Limits,
    /// How long to wait for the peer's close frame after sending ours, and for the
    /// transport to end after the close handshake. Default: 5 s.
    pub close_timeout: Duration,
    /// Send a ping after this long without one (`None`: never). Default: 20 s.
    pub ping_interval: Option<Duration>,
    /// How long a ping's pong may take; past it the connection is closed with 1011 and
    /// `recv` fails with a [`Pong`](crate::TimeoutPhase::Pong) timeout. Default: 20 s.
    pub ping_timeout: Duration,
    /// Close the connection with 1001 when no message arrives for this long; `recv` then
    /// fails with an [`Idle`](crate::TimeoutPhase::Idle) timeout. Default: none.
    pub idle_timeout: Option<Duration>,
    /// Fail `recv` with a [`Read`](crate::TimeoutPhase::Read) timeout when no message
    /// arrives for this long, keeping the connection open (call `recv` again to go on
    /// waiting). Default: none.
    pub read_timeout: Option<Duration>,
    /// Fail a send with a [`Write`](crate::TimeoutPhase::Write) timeout when the peer does
    /// not take its bytes for this long. Default: none (the client builder sets 30 s).
    pub write_timeout: Option<Duration>,
    /// Which peer close codes end `recv` quietly. Default: 1000, 1001 and 1005.
    pub caught_close_codes: CaughtCloseCodes,
    /// permessage-deflate (RFC 7692): what a client offers, or what a server accepts and
    /// answers, and how messages are compressed. Default here: `None`, no compression; the
    /// client builder offers [`DeflateConfig::client`], and a server turns it on with
    /// `ServerBuilder::deflate` ([`DeflateConfig::server`]: no context takeover either way,
    /// so a connection keeps no compression memory between messages).
    pub deflate: Option<DeflateConfig>,
}

impl Config {
    /// The default close timeout: 5 s.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default ping interval and ping timeout: 20 s.
    pub const DEFAULT_PING: Duration = Duration::from_secs(20);

    /// This config with the message and frame limit set to `max` bytes.
    pub fn with_max_message_size(mut self, max: usize) -> Self {
        self.limits = Limits::new(max);
        self
    }

    /// This config with the close timeout set to `timeout`.
    pub fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// This config with a ping every `interval` (`None`: no heartbeat).
    pub fn with_ping_interval(mut self, interval: impl Into<Option<Duration>>) -> Self {
        self.ping_interval = interval.into();
        self
    }

    /// This config with the pong deadline set to `timeout`.
    pub fn with_ping_timeout(mut self, timeout: Duration) -> Self {
        self.ping_timeout = timeout;
        self
    }

    /// This config with the idle timeout (close with 1001) set to `timeout`.
    pub fn with_idle_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.idle_timeout = timeout.into();
        self
    }

    /// This config with the read timeout (an error; the connection stays open) set to
    /// `timeout`.
    pub fn with_read_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.read_timeout = timeout.into();
        self
    }

    /// This config with the write timeout set to `timeout`.
    pub fn with_write_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.write_timeout = timeout.into();
        self
    }

    /// This config with `caught` as the peer close codes that end `recv` quietly.
    pub fn with_caught_close_codes(mut self, caught: CaughtCloseCodes) -> Self {
        self.caught_close_codes = caught;
        self
    }

    /// This config with permessage-deflate set to `deflate` (`None`: off).
    pub fn with_deflate(mut self, deflate: impl Into<Option<DeflateConfig>>) -> Self {
        self.deflate = deflate.into();
        self
    }

    /// Whether anything needs the heartbeat's timer.
    pub(crate) fn has_liveness(&self) -> bool {
        self.ping_interval.is_some() || self.idle_timeout.is_some() || self.read_timeout.is_some()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
            ping_interval: Some(Self::DEFAULT_PING),
            ping_timeout: Self::DEFAULT_PING,
            idle_timeout: None,
            read_timeout: None,
            write_timeout: None,
            caught_close_codes: CaughtCloseCodes::default(),
            deflate: None,
        }
    }
}
