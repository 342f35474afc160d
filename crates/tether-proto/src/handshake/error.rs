//! [`HandshakeError`]: every way a handshake can fail, its HTTP status, the extra headers a
//! rejection carries and the rejection response itself.

use std::fmt;

use super::client::ResponseHead;
use super::server::reject_response;

/// Longest peer value shown in an error message, in characters.
const SHOWN_MAX_CHARS: usize = 64;

/// Why a handshake failed.
///
/// Variants up to [`InvalidExtensions`](Self::InvalidExtensions) come from reading the peer's
/// head; on the server they describe the client's request, and [`http_status`](Self::http_status)
/// and [`to_response`](Self::to_response) give the answer to send before closing the
/// connection. The syntax, limit and header variants are also used by the client for the
/// server's response. Variants from [`UnexpectedStatus`](Self::UnexpectedStatus) on are
/// client-side only; the client closes the connection (after reading a body, for
/// `UnexpectedStatus`, if it wants one).
///
/// Values taken from the peer are shown lossily, with control characters escaped and cut
/// to 64 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The head is not valid HTTP/1.x. Answer 400 and close.
    Malformed {
        /// What the parser found wrong.
        reason: &'static str,
    },
    /// More than [`HandshakeConfig::max_header_bytes`](super::HandshakeConfig::max_header_bytes)
    /// bytes arrived without a complete header section. Answer 431 and close.
    HeaderSectionTooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// More than [`HandshakeConfig::max_headers`](super::HandshakeConfig::max_headers) header
    /// lines. Answer 431 and close.
    TooManyHeaders {
        /// The configured limit.
        limit: usize,
    },
    /// The request method is not `GET`. Answer 405 with `Allow: GET`.
    MethodNotAllowed {
        /// The method sent.
        found: Box<str>,
    },
    /// The HTTP version is not 1.1. Answer 505.
    UnsupportedHttpVersion {
        /// The version sent, such as `HTTP/1.0`.
        found: Box<str>,
    },
    /// The request has no `Host` header. Answer 400.
    MissingHost,
    /// `Host` is repeated, empty or holds bytes outside visible ASCII. Answer 400.
    InvalidHost {
        /// All `Host` values, joined with `, `.
        found: Box<str>,
    },
    /// No `websocket` token in `Upgrade`. On a server this is usually a plain HTTP request to
    /// a WebSocket endpoint: answer 426 with `Upgrade: websocket`.
    MissingUpgrade {
        /// The `Upgrade` values, `None` when the header is absent.
        found: Option<Box<str>>,
    },
    /// No `upgrade` token in `Connection`. Answer 400.
    MissingConnectionUpgrade {
        /// The `Connection` values, `None` when the header is absent.
        found: Option<Box<str>>,
    },
    /// `Sec-WebSocket-Version` is missing or not exactly `13`. Answer 426 with
    /// `Sec-WebSocket-Version: 13` so the client can retry with a version we speak.
    UnsupportedVersion {
        /// The version values, `None` when the header is absent.
        found: Option<Box<str>>,
    },
    /// HTTP/2: a `CONNECT` whose `:protocol` pseudo-header is absent or not `websocket`
    /// (RFC 8441 section 4), such as a proxy tunnel request. Answer 400.
    InvalidConnectProtocol {
        /// The `:protocol` value, `None` when absent.
        found: Option<Box<str>>,
    },
    /// No `Sec-WebSocket-Key` header. Answer 400.
    MissingKey,
    /// More than one `Sec-WebSocket-Key` header. Answer 400.
    DuplicateKey,
    /// `Sec-WebSocket-Key` is not base64 of exactly 16 bytes. Answer 400.
    InvalidKey {
        /// The key sent.
        found: Box<str>,
    },
    /// `Sec-WebSocket-Extensions` does not follow the RFC 6455 9.1 grammar. A server answers
    /// 400; a client fails the connection.
    InvalidExtensions {
        /// The value that failed to parse.
        found: Box<str>,
    },
    /// Client: the server answered with a status other than 101, so no WebSocket. The head
    /// is kept so the caller can read `Content-Length`, `Retry-After` and the like, then read
    /// the body (the bytes after the head) and report the refusal.
    UnexpectedStatus {
        /// The status received.
        status: u16,
        /// The whole response head.
        head: Box<ResponseHead>,
    },
    /// Client: `Sec-WebSocket-Accept` is missing or does not match our key. The peer is not a
    /// WebSocket server (or a proxy mangled the answer); fail the connection.
    InvalidAccept(Box<AcceptMismatch>),
    /// Client: the server chose a subprotocol we did not offer (or one although we offered
    /// none, or several). Fail the connection.
    UnofferedProtocol {
        /// The `Sec-WebSocket-Protocol` value received.
        found: Box<str>,
    },
    /// Client: the server enabled an extension we did not offer. Fail the connection.
    UnofferedExtension {
        /// The name of the extension.
        found: Box<str>,
    },
    /// Client: the server's `Sec-WebSocket-Extensions` answer enabled an extension with
    /// parameters this endpoint did not offer or cannot use. Fail the connection.
    UnacceptableExtension {
        /// What was wrong, with the offending parameter.
        detail: Box<str>,
    },
    /// Client: the [`ClientRequest`](super::ClientRequest) being built is invalid (a value
    /// with CR or LF, a reserved header name, a host or path that cannot be sent...). Fix the
    /// input; nothing was sent.
    InvalidClientRequest {
        /// What was wrong, with the offending value.
        detail: Box<str>,
    },
}

/// The expected and received `Sec-WebSocket-Accept`, for [`HandshakeError::InvalidAccept`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptMismatch {
    pub(crate) expected: Box<str>,
    pub(crate) found: Option<Box<str>>,
}

impl AcceptMismatch {
    /// The value the key called for.
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// The value(s) received, `None` when the header was absent.
    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }
}

impl HandshakeError {
    /// The HTTP status a server answers this error with.
    ///
    /// * 400 for malformed HTTP and bad `Host`, `Connection`, `Sec-WebSocket-Key` or
    ///   `Sec-WebSocket-Extensions` (RFC 6455 4.2.1 asks for 400 when the handshake is invalid).
    /// * 405 for a method other than `GET` (RFC 9110 15.5.6; the response names `GET` in
    ///   `Allow`).
    /// * 426 when `Upgrade: websocket` is absent: such a request is usually plain HTTP sent to
    ///   a WebSocket endpoint, and 426 with `Upgrade: websocket` tells the client what is
    ///   needed. Also 426 for a wrong `Sec-WebSocket-Version`, as RFC 6455 4.4 suggests, with
    ///   the version we speak.
    /// * 431 for a header section over the configured limits (RFC 6585 section 5).
    /// * 505 for HTTP/1.0 or another version: RFC 6455 requires HTTP/1.1 and 505 names the
    ///   cause precisely, where 400 would hide it.
    /// * Client-side variants are never sent by Tether: 502 for the ones where the server
    ///   misbehaved (what a gateway would answer) and 500 for
    ///   [`InvalidClientRequest`](Self::InvalidClientRequest).
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Malformed { .. }
            | Self::MissingHost
            | Self::InvalidHost { .. }
            | Self::MissingConnectionUpgrade { .. }
            | Self::InvalidConnectProtocol { .. }
            | Self::MissingKey
            | Self::DuplicateKey
            | Self::InvalidKey { .. }
            | Self::InvalidExtensions { .. } => 400,
            Self::MethodNotAllowed { .. } => 405,
            Self::MissingUpgrade { .. } | Self::UnsupportedVersion { .. } => 426,
            Self::HeaderSectionTooLarge { .. } | Self::TooManyHeaders { .. } => 431,
            Self::UnsupportedHttpVersion { .. } => 505,
            Self::UnexpectedStatus { .. }
            | Self::InvalidAccept(_)
            | Self::UnofferedProtocol { .. }
            | Self::UnofferedExtension { .. }
            | Self::UnacceptableExtension { .. } => 502,
            Self::InvalidClientRequest { .. } => 500,
        }
    }

    /// Headers the rejection response must carry besides the standard ones: `Allow: GET` for
    /// 405, `Upgrade: websocket` for both 426 cases, plus `Sec-WebSocket-Version: 13` for a
    /// wrong version. [`reject_response`] adds the matching `Connection: Upgrade, close`.
    pub fn response_headers(&self) -> &'static [(&'static str, &'static str)] {
        match self {
            Self::MethodNotAllowed { .. } => &[("Allow", "GET")],
            Self::MissingUpgrade { .. } => &[("Upgrade", "websocket")],
            Self::UnsupportedVersion { .. } => {
                &[("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")]
            }
            _ => &[],
        }
    }

    /// The whole HTTP response for this error: [`http_status`](Self::http_status), the
    /// [`response_headers`](Self::response_headers), `Connection: close` and the error message
    /// as a `text/plain` body. Send it, then close the connection.
    pub fn to_response(&self) -> Vec<u8> {
        let body = format!("{self}\n");
        reject_response(
            self.http_status(),
            self.response_headers(),
            Some("text/plain; charset=utf-8"),
            body.as_bytes(),
        )
    }
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { reason } => write!(f, "malformed http head: {reason}"),
            Self::HeaderSectionTooLarge { limit } => write!(
                f,
                "header section too large: expected at most {limit} bytes, found more"
            ),
            Self::TooManyHeaders { limit } => {
                write!(f, "too many headers: expected at most {limit}, found more")
            }
            Self::MethodNotAllowed { found } => {
                write!(f, "method not allowed: expected GET, found {found}")
            }
            Self::UnsupportedHttpVersion { found } => {
                write!(
                    f,
                    "unsupported http version: expected HTTP/1.1, found {found}"
                )
            }
            Self::MissingHost => f.write_str("missing host header"),
            Self::InvalidHost { found } => write!(
                f,
                "invalid host header: expected one non-empty host, found {found}"
            ),
            Self::MissingUpgrade { found } => write!(
                f,
                "missing upgrade: expected websocket in the upgrade header, found {}",
                or_none(found)
            ),
            Self::MissingConnectionUpgrade { found } => write!(
                f,
                "missing connection upgrade: expected upgrade in the connection header, found {}",
                or_none(found)
            ),
            Self::UnsupportedVersion { found } => write!(
                f,
                "unsupported websocket version: expected 13, found {}",
                or_none(found)
            ),
            Self::InvalidConnectProtocol { found } => write!(
                f,
                "invalid connect protocol: expected websocket in :protocol, found {}",
                or_none(found)
            ),
            Self::MissingKey => f.write_str("missing sec-websocket-key header"),
            Self::DuplicateKey => {
                f.write_str("duplicate sec-websocket-key header: expected one, found several")
            }
            Self::InvalidKey { found } => write!(
                f,
                "invalid sec-websocket-key: expected base64 of 16 bytes, found {found}"
            ),
            Self::InvalidExtensions { found } => write!(
                f,
                "invalid sec-websocket-extensions: expected an extension list, found {found}"
            ),
            Self::UnexpectedStatus { status, head } => write!(
                f,
                "unexpected http status: expected 101, found {status} {}",
                shown(head.reason.as_bytes())
            ),
            Self::InvalidAccept(m) => write!(
                f,
                "invalid sec-websocket-accept: expected {}, found {}",
                m.expected,
                or_none(&m.found)
            ),
            Self::UnofferedProtocol { found } => write!(
                f,
                "unoffered subprotocol: expected one the client offered, found {found}"
            ),
            Self::UnofferedExtension { found } => write!(
                f,
                "unoffered extension: expected one the client offered, found {found}"
            ),
            Self::UnacceptableExtension { detail } => {
                write!(f, "unacceptable extension answer: {detail}")
            }
            Self::InvalidClientRequest { detail } => {
                write!(f, "invalid client request: {detail}")
            }
        }
    }
}

impl std::error::Error for HandshakeError {}

fn or_none(found: &Option<Box<str>>) -> &str {
    found.as_deref().unwrap_or("none")
}

/// A peer value made fit for a message: lossy UTF-8, control characters escaped, at most
/// [`SHOWN_MAX_CHARS`] characters followed by `...` when cut, and a phrase when empty.
pub(crate) fn shown(value: &[u8]) -> Box<str> {
    if value.is_empty() {
        return "an empty value".into();
    }
    let text = String::from_utf8_lossy(value);
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == SHOWN_MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into_boxed_str()
}
