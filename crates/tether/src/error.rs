//! The error type shared by the transport, the server accept path and the client.
//!
//! [`Error`] is opaque and one pointer wide; [`Error::kind`] and the `is_*` predicates say what
//! happened, `source()` chains to the underlying cause, and a failed send gives its message
//! back ([`Error::into_message`]).

use std::fmt;
use std::io;

use tether_proto::handshake::HandshakeError;
use tether_proto::{Message, ProtocolError, Side};

use tether_proto::{CloseInfo, CloseReason};

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer violated the WebSocket protocol (framing, handshake, close payload): the
    /// connection was failed with a close code from the 1002 family.
    Protocol,
    /// The peer sent data inconsistent with its type: invalid UTF-8 in a text message (1007),
    /// or a message over the size limit (1009).
    Payload,
    /// The connection is closed: sending after a close, or the TCP connection ended without
    /// a close frame (abnormal closure). Reconnect if the application still needs it.
    ConnectionClosed,
    /// An operation did not finish in time; [`Error::timeout_phase`] says which.
    Timeout,
    /// The address could not be used: a malformed URL, a name that did not resolve.
    Address,
    /// The server answered the opening handshake with a status other than 101.
    BadStatus,
    /// An I/O error on the underlying transport.
    Io,
    /// A proxy refused the tunnel (407, 403, 502, a SOCKS reply code) or could not be reached.
    Proxy,
    /// The TLS handshake failed: an untrusted or mismatched certificate, a protocol alert.
    Tls,
    /// This server refused the opening handshake with an HTTP status (a guard said no, or
    /// the request was not an acceptable upgrade); the response has been sent.
    Rejected,
    /// An application error ([`AppError`](crate::server::AppError) or
    /// [`CloseError`](crate::server::CloseError)) passed on with `?` by a handler whose error
    /// type is `tether::Error`: the server sends the error message or the close it describes.
    Application,
}

/// The phase of a [`ErrorKind::Timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutPhase {
    /// Resolving the name and establishing the TCP connection (through the proxy, if any).
    Connect,
    /// The TLS handshake.
    Tls,
    /// Waiting for the next message longer than the read timeout allows.
    Read,
    /// Writing a message took longer than the write timeout allows.
    Write,
    /// The opening handshake (HTTP upgrade request and response).
    Handshake,
    /// Waiting for the peer's close frame or for the TCP connection to end after it.
    Close,
    /// Waiting for the pong that answers a heartbeat ping: the peer is gone or stuck.
    Pong,
    /// Waiting for the peer's next message longer than the idle timeout allows.
    Idle,
}

impl fmt::Display for TimeoutPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Connect => "connect",
            Self::Tls => "tls handshake",
            Self::Read => "read",
            Self::Write => "write",
            Self::Handshake => "handshake",
            Self::Close => "close",
            Self::Pong => "pong",
            Self::Idle => "idle",
        })
    }
}

/// Details of a handshake answered with a status other than 101.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BadStatus {
    /// The HTTP status.
    pub status: u16,
    /// The reason phrase the server sent.
    pub reason: String,
    /// The response headers, in order.
    pub headers: Vec<(String, String)>,
    /// The response body, capped at the configured size.
    pub body: bytes::Bytes,
}

#[derive(Debug)]
enum Repr {
    Protocol(ProtocolError),
    Handshake(HandshakeError),
    Rejected(u16),
    Closed(Option<Message>),
    /// The connection ended; for an abnormal closure, with the reset that ended it, if any.
    Disconnected(CloseInfo, Option<io::Error>),
    Timeout(TimeoutPhase),
    Address(String, Option<io::Error>),
    BadStatus(BadStatus),
    Io(io::Error),
    Proxy(ProxyFailure),
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls(String, Option<io::Error>),
    Application(Box<dyn std::error::Error + Send + Sync>),
}

/// What a proxy did wrong.
#[derive(Debug)]
struct ProxyFailure {
    detail: String,
    /// The proxy's HTTP status, or the SOCKS reply code.
    code: Option<u16>,
    retryable: bool,
    source: Option<io::Error>,
}

/// A Tether error: opaque, one pointer wide, with a [`kind`](Error::kind).
pub struct Error {
    inner: Box<Repr>,
}

impl Error {
    fn new(repr: Repr) -> Self {
        Self {
            inner: Box::new(repr),
        }
    }

    pub(crate) fn protocol(error: ProtocolError) -> Self {
        Self::new(Repr::Protocol(error))
    }

    pub(crate) fn handshake(error: HandshakeError) -> Self {
        Self::new(Repr::Handshake(error))
    }

    pub(crate) fn rejected(status: u16) -> Self {
        Self::new(Repr::Rejected(status))
    }

    pub(crate) fn closed(message: Option<Message>) -> Self {
        Self::new(Repr::Closed(message))
    }

    /// The connection ended with this close (a close frame from either side, or a transport
    /// that ended without one).
    pub(crate) fn disconnected(info: CloseInfo) -> Self {
        Self::new(Repr::Disconnected(info, None))
    }

    pub(crate) fn abnormal_closure() -> Self {
        Self::abnormal(None)
    }

    fn abnormal(source: Option<io::Error>) -> Self {
        let info = CloseInfo::new(Side::Remote, CloseReason::Abnormal);
        Self::new(Repr::Disconnected(info, source))
    }

    /// A read failed in a way that means the peer is gone (reset, aborted, broken pipe):
    /// an abnormal closure, with the I/O error as its source. Other I/O errors stay `Io`.
    pub(crate) fn from_read(error: io::Error) -> Self {
        match error.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof => Self::abnormal(Some(error)),
            _ => Self::io(error),
        }
    }

    /// Carries an application error through `tether::Error` (see [`ErrorKind::Application`]).
    pub(crate) fn application(error: Box<dyn std::error::Error + Send + Sync>) -> Self {
        Self::new(Repr::Application(error))
    }

    /// The application error this error carries, if it is one.
    pub(crate) fn as_application(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.inner {
            Repr::Application(error) => Some(&**error),
            _ => None,
        }
    }

    pub(crate) fn timeout(phase: TimeoutPhase) -> Self {
        Self::new(Repr::Timeout(phase))
    }

    pub(crate) fn address(detail: impl Into<String>, source: Option<io::Error>) -> Self {
        Self::new(Repr::Address(detail.into(), source))
    }

    pub(crate) fn from_bad_status(status: BadStatus) -> Self {
        Self::new(Repr::BadStatus(status))
    }

    pub(crate) fn io(error: io::Error) -> Self {
        Self::new(Repr::Io(error))
    }

    /// A proxy failure: `detail` says what the proxy answered; `code` is its HTTP status or
    /// SOCKS reply code; `retryable` whether trying again later may succeed.
    pub(crate) fn proxy(
        detail: impl Into<String>,
        code: Option<u16>,
        retryable: bool,
        source: Option<io::Error>,
    ) -> Self {
        Self::new(Repr::Proxy(ProxyFailure {
            detail: detail.into(),
            code,
            retryable,
            source,
        }))
    }

    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub(crate) fn tls(detail: impl Into<String>, source: Option<io::Error>) -> Self {
        Self::new(Repr::Tls(detail.into(), source))
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        match &*self.inner {
            Repr::Protocol(error) => match error.close_code().as_u16() {
                1007 | 1009 => ErrorKind::Payload,
                _ => ErrorKind::Protocol,
            },
            Repr::Handshake(_) => ErrorKind::Protocol,
            Repr::Rejected(_) => ErrorKind::Rejected,
            Repr::Closed(_) | Repr::Disconnected(..) => ErrorKind::ConnectionClosed,
            Repr::Timeout(_) => ErrorKind::Timeout,
            Repr::Address(..) => ErrorKind::Address,
            Repr::BadStatus(_) => ErrorKind::BadStatus,
            Repr::Io(_) => ErrorKind::Io,
            Repr::Proxy(_) => ErrorKind::Proxy,
            Repr::Tls(..) => ErrorKind::Tls,
            Repr::Application(_) => ErrorKind::Application,
        }
    }

    /// Whether reconnecting later may succeed, following the retry advice of
    /// [`codes::retry_advice`](crate::codes::retry_advice) with the default registry:
    /// - closes with 1001, 1011-1014, without status or abnormal ones, timeouts, I/O errors,
    ///   DNS failures, sending on a closed connection: yes;
    /// - a normal close (1000), the terminal codes (1002, 1003, 1007-1010, unregistered or
    ///   non-retryable application codes), protocol and payload errors, malformed URLs and
    ///   TLS failures: no;
    /// - a refused handshake: yes for 5xx, 408 and 429, no for the other statuses;
    /// - a proxy failure: yes when the proxy was unreachable or answered 502/503/504, no
    ///   when it refused (407, 403, SOCKS "not allowed").
    pub fn is_retryable(&self) -> bool {
        use crate::codes::{Advice, Ending, Registry, retry_advice};
        let advice = |ending| retry_advice(ending, &Registry::default(), None) != Advice::Stop;
        match &*self.inner {
            Repr::Protocol(_)
            | Repr::Handshake(_)
            | Repr::Rejected(_)
            | Repr::Tls(..)
            | Repr::Application(_) => false,
            Repr::Closed(_) | Repr::Timeout(_) | Repr::Io(_) => true,
            Repr::Disconnected(info, _) => advice(Ending::of(&info.reason)),
            Repr::Address(_, source) => source.is_some(),
            Repr::BadStatus(status) => advice(Ending::Refused {
                status: status.status,
                retry_after: None,
            }),
            Repr::Proxy(failure) => failure.retryable,
        }
    }

    /// The proxy's HTTP status or SOCKS reply code, for [`ErrorKind::Proxy`].
    pub fn proxy_code(&self) -> Option<u16> {
        match &*self.inner {
            Repr::Proxy(failure) => failure.code,
            _ => None,
        }
    }

    /// The `Retry-After` a refused handshake carried, in seconds, when it had one.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match &*self.inner {
            Repr::BadStatus(status) => status
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                .and_then(|(_, value)| value.trim().parse::<u64>().ok())
                .map(std::time::Duration::from_secs),
            _ => None,
        }
    }

    /// The protocol violation, for [`ErrorKind::Protocol`] and [`ErrorKind::Payload`] errors
    /// raised on an open connection.
    pub fn protocol_error(&self) -> Option<&ProtocolError> {
        match &*self.inner {
            Repr::Protocol(error) => Some(error),
            _ => None,
        }
    }

    /// The handshake failure, when the opening handshake was malformed.
    pub fn handshake_error(&self) -> Option<&HandshakeError> {
        match &*self.inner {
            Repr::Handshake(error) => Some(error),
            _ => None,
        }
    }

    /// The HTTP status this server answered a refused handshake with.
    pub fn rejected_status(&self) -> Option<u16> {
        match &*self.inner {
            Repr::Rejected(status) => Some(*status),
            Repr::Handshake(error) => Some(error.http_status()),
            _ => None,
        }
    }

    /// The rejected handshake's status, headers and body, for [`ErrorKind::BadStatus`].
    pub fn bad_status(&self) -> Option<&BadStatus> {
        match &*self.inner {
            Repr::BadStatus(status) => Some(status),
            _ => None,
        }
    }

    /// The phase that timed out, for [`ErrorKind::Timeout`].
    pub fn timeout_phase(&self) -> Option<TimeoutPhase> {
        match &*self.inner {
            Repr::Timeout(phase) => Some(*phase),
            _ => None,
        }
    }

    /// How the connection ended, for a [`ErrorKind::ConnectionClosed`] error that reports a
    /// disconnect: who closed first, and the close code and reason (or the abnormal state).
    pub fn close_info(&self) -> Option<&CloseInfo> {
        match &*self.inner {
            Repr::Disconnected(info, _) => Some(info),
            _ => None,
        }
    }

    /// Whether the connection ended without a close frame (close code 1006 as a state).
    pub fn is_abnormal_closure(&self) -> bool {
        match &*self.inner {
            Repr::Disconnected(info, _) => info.is_abnormal(),
            _ => false,
        }
    }

    /// Whether this is [`ErrorKind::ConnectionClosed`].
    pub fn is_closed(&self) -> bool {
        self.kind() == ErrorKind::ConnectionClosed
    }

    /// Whether this is [`ErrorKind::Timeout`].
    pub fn is_timeout(&self) -> bool {
        self.kind() == ErrorKind::Timeout
    }

    /// Whether this is [`ErrorKind::Io`].
    pub fn is_io(&self) -> bool {
        self.kind() == ErrorKind::Io
    }

    /// The message a failed send gives back, if any.
    pub fn into_message(self) -> Option<Message> {
        match *self.inner {
            Repr::Closed(message) => message,
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind())
            .field("detail", &self.inner)
            .finish()
    }
}

/// `{error}` prints this error's own line, one level: its cause is [`source`](std::error::Error::source),
/// never repeated. `{error:#}` prints the whole chain on one line, `outer: cause: root cause`,
/// the form for logs and command lines.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_level(f)?;
        if f.alternate() {
            let mut next = std::error::Error::source(self);
            while let Some(cause) = next {
                write!(f, ": {cause}")?;
                next = cause.source();
            }
        }
        Ok(())
    }
}

impl Error {
    /// This error's own line, without its causes.
    fn fmt_level(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.inner {
            Repr::Protocol(_) => f.write_str("protocol error"),
            Repr::Handshake(_) => f.write_str("handshake failed"),
            Repr::Rejected(status) => write!(f, "handshake refused with status {status}"),
            Repr::Closed(_) => f.write_str("connection closed"),
            Repr::Disconnected(info, _) => {
                let by = match info.initiated_by {
                    Side::Local => "by this endpoint",
                    Side::Remote => "by the peer",
                };
                match &info.reason {
                    CloseReason::Frame(frame) if frame.reason.is_empty() => {
                        write!(f, "connection closed {by} with {}", frame.code.as_u16())
                    }
                    CloseReason::Frame(frame) => write!(
                        f,
                        "connection closed {by} with {}: {}",
                        frame.code.as_u16(),
                        frame.reason
                    ),
                    CloseReason::NoStatus => {
                        write!(f, "connection closed {by} without a status code (1005)")
                    }
                    _ => f.write_str(
                        "connection closed abnormally (1006): the transport ended without a close frame",
                    ),
                }
            }
            Repr::Timeout(phase) => write!(f, "{phase} timed out"),
            Repr::Address(detail, _) => write!(f, "bad address: {detail}"),
            Repr::BadStatus(status) => write!(
                f,
                "handshake rejected: expected status 101, found {} {}",
                status.status, status.reason
            ),
            Repr::Io(_) => f.write_str("i/o error"),
            Repr::Proxy(failure) => write!(f, "proxy error: {}", failure.detail),
            Repr::Tls(detail, _) => write!(f, "tls error: {detail}"),
            // The application error is this level: its own causes follow as the source.
            Repr::Application(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &*self.inner {
            Repr::Protocol(error) => Some(error),
            Repr::Handshake(error) => Some(error),
            Repr::Address(_, Some(error))
            | Repr::Disconnected(_, Some(error))
            | Repr::Io(error)
            | Repr::Tls(_, Some(error))
            | Repr::Proxy(ProxyFailure {
                source: Some(error),
                ..
            }) => Some(error),
            Repr::Application(error) => error.source(),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Self {
        Self::io(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_is_one_pointer_wide_and_thread_safe() {
        assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Error>();
    }

    #[test]
    fn kinds_follow_the_close_code_family() {
        assert_eq!(
            Error::protocol(ProtocolError::InvalidUtf8).kind(),
            ErrorKind::Payload
        );
        assert_eq!(
            Error::protocol(ProtocolError::MessageTooBig { size: 2, max: 1 }).kind(),
            ErrorKind::Payload
        );
        assert_eq!(
            Error::protocol(ProtocolError::MaskedFrame).kind(),
            ErrorKind::Protocol
        );
        assert_eq!(
            Error::abnormal_closure().kind(),
            ErrorKind::ConnectionClosed
        );
        assert!(Error::abnormal_closure().is_abnormal_closure());
        let back = Error::closed(Some(Message::text("kept"))).into_message();
        assert_eq!(back, Some(Message::text("kept")));
    }

    fn disconnect(initiated_by: Side, reason: CloseReason) -> Error {
        Error::disconnected(CloseInfo::new(initiated_by, reason))
    }

    fn frame(code: u16, reason: &str) -> CloseReason {
        CloseReason::Frame(tether_proto::CloseFrame::new(
            tether_proto::CloseCode::new(code).unwrap(),
            reason.to_owned(),
        ))
    }

    fn bad_status(status: u16) -> Error {
        Error::from_bad_status(BadStatus {
            status,
            reason: "Reason".to_owned(),
            headers: vec![("Retry-After".to_owned(), "7".to_owned())],
            body: bytes::Bytes::from_static(b"{}"),
        })
    }

    /// Every kind: its `Display` line (one lowercase line), its kind and its retry advice.
    #[test]
    fn each_kind_displays_one_clear_line_and_knows_if_retrying_helps() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let cases: Vec<(Error, ErrorKind, bool, &str)> = vec![
            (
                Error::protocol(ProtocolError::MaskedFrame),
                ErrorKind::Protocol,
                false,
                "protocol error",
            ),
            (
                Error::protocol(ProtocolError::InvalidUtf8),
                ErrorKind::Payload,
                false,
                "protocol error",
            ),
            (
                Error::closed(None),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed",
            ),
            (
                Error::abnormal_closure(),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed abnormally",
            ),
            (
                disconnect(Side::Remote, frame(1000, "bye")),
                ErrorKind::ConnectionClosed,
                false,
                "connection closed by the peer with 1000: bye",
            ),
            (
                disconnect(Side::Remote, frame(1001, "")),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed by the peer with 1001",
            ),
            (
                disconnect(Side::Remote, frame(1008, "policy")),
                ErrorKind::ConnectionClosed,
                false,
                "connection closed by the peer with 1008: policy",
            ),
            (
                disconnect(Side::Remote, frame(1011, "oops")),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed by the peer with 1011: oops",
            ),
            (
                disconnect(Side::Remote, frame(4003, "expired")),
                ErrorKind::ConnectionClosed,
                false,
                "connection closed by the peer with 4003: expired",
            ),
            (
                disconnect(Side::Remote, frame(4005, "slow down")),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed by the peer with 4005: slow down",
            ),
            (
                disconnect(Side::Remote, CloseReason::NoStatus),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed by the peer without a status code (1005)",
            ),
            (
                disconnect(Side::Local, CloseReason::Abnormal),
                ErrorKind::ConnectionClosed,
                true,
                "connection closed abnormally (1006)",
            ),
            (
                Error::timeout(TimeoutPhase::Connect),
                ErrorKind::Timeout,
                true,
                "connect timed out",
            ),
            (
                Error::timeout(TimeoutPhase::Tls),
                ErrorKind::Timeout,
                true,
                "tls handshake timed out",
            ),
            (
                Error::timeout(TimeoutPhase::Handshake),
                ErrorKind::Timeout,
                true,
                "handshake timed out",
            ),
            (
                Error::timeout(TimeoutPhase::Read),
                ErrorKind::Timeout,
                true,
                "read timed out",
            ),
            (
                Error::timeout(TimeoutPhase::Write),
                ErrorKind::Timeout,
                true,
                "write timed out",
            ),
            (
                Error::timeout(TimeoutPhase::Pong),
                ErrorKind::Timeout,
                true,
                "pong timed out",
            ),
            (
                Error::timeout(TimeoutPhase::Close),
                ErrorKind::Timeout,
                true,
                "close timed out",
            ),
            (
                Error::address("expected ws:// or wss://", None),
                ErrorKind::Address,
                false,
                "bad address: expected ws:// or wss://",
            ),
            (
                Error::address("cannot resolve \"nowhere\"", Some(io::Error::other("dns"))),
                ErrorKind::Address,
                true,
                "bad address: cannot resolve",
            ),
            (
                bad_status(401),
                ErrorKind::BadStatus,
                false,
                "handshake rejected: expected status 101, found 401 Reason",
            ),
            (
                bad_status(404),
                ErrorKind::BadStatus,
                false,
                "handshake rejected: expected status 101, found 404",
            ),
            (
                bad_status(429),
                ErrorKind::BadStatus,
                true,
                "handshake rejected: expected status 101, found 429",
            ),
            (
                bad_status(503),
                ErrorKind::BadStatus,
                true,
                "handshake rejected: expected status 101, found 503",
            ),
            (Error::io(refused), ErrorKind::Io, true, "i/o error"),
            (
                Error::proxy("the proxy requires credentials", Some(407), false, None),
                ErrorKind::Proxy,
                false,
                "proxy error: the proxy requires credentials",
            ),
            (
                Error::proxy("cannot reach the proxy", None, true, None),
                ErrorKind::Proxy,
                true,
                "proxy error: cannot reach the proxy",
            ),
            (
                Error::tls("invalid peer certificate: UnknownIssuer", None),
                ErrorKind::Tls,
                false,
                "tls error: invalid peer certificate",
            ),
            (
                Error::rejected(403),
                ErrorKind::Rejected,
                false,
                "handshake refused with status 403",
            ),
        ];
        for (error, kind, retryable, text) in cases {
            let line = error.to_string();
            assert_eq!(error.kind(), kind, "{line}");
            assert_eq!(error.is_retryable(), retryable, "{line}");
            assert!(
                line.starts_with(text),
                "{line:?} should start with {text:?}"
            );
            assert!(!line.contains('\n'), "{line:?}");
            let first = line.chars().next().unwrap();
            assert!(first.is_lowercase(), "{line:?}");
        }
        assert_eq!(
            bad_status(503).retry_after(),
            Some(std::time::Duration::from_secs(7))
        );
        let proxy = Error::proxy("x", Some(407), false, None);
        assert_eq!(proxy.proxy_code(), Some(407));
        let chained = Error::tls("bad", Some(io::Error::other("inner")));
        assert!(std::error::Error::source(&chained).is_some());
    }

    /// `{}` prints one level, the cause is `source()`; `{:#}` prints the chain once.
    #[test]
    fn display_prints_one_level_and_the_alternate_form_the_chain() {
        let broken = Error::io(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(broken.to_string(), "i/o error");
        assert_eq!(format!("{broken:#}"), "i/o error: broken pipe");
        let utf8 = Error::protocol(ProtocolError::InvalidUtf8);
        assert_eq!(utf8.to_string(), "protocol error");
        let chain = format!("{utf8:#}");
        assert!(chain.starts_with("protocol error: "), "{chain}");
        assert_eq!(chain.matches("protocol error").count(), 1, "{chain}");
        let plain = Error::timeout(TimeoutPhase::Pong);
        assert_eq!(format!("{plain:#}"), plain.to_string());
    }
}
