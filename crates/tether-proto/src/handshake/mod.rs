//! The opening handshake (RFC 6455 section 4): request and response, both roles.
//!
//! # Overview
//!
//! Everything here is sans-IO: functions take the bytes read so far and return parsed values
//! or the bytes to write. The caller owns the socket, the clock and the randomness.
//!
//! * Server: [`parse_request`] reads a client's request head and validates it as a WebSocket
//!   upgrade, giving a [`Request`]. Answer with [`accept_response`] (choosing a subprotocol with
//!   [`select_protocol`] or [`Request::select_protocol`]) or refuse with [`reject_response`].
//!   Every [`HandshakeError`] knows its HTTP status and turns into a response with
//!   [`HandshakeError::to_response`]. A head that another HTTP stack already parsed is
//!   checked with [`validate_request`] (HTTP/1.x) or [`validate_extended_connect`] (HTTP/2,
//!   RFC 8441).
//! * Client: build a request with [`ClientRequest::builder`], write [`ClientRequest::encode`],
//!   read the answer with [`parse_response`] and check it with [`validate_response`], which
//!   gives the negotiated [`Accepted`] subprotocol and extensions.
//!
//! Both parsers return `Ok(None)` while the header section is incomplete, and on success the
//! number of bytes the head used. Bytes after the head (WebSocket frames, or a response body)
//! are never consumed: they belong to the caller.
//!
//! # Examples
//!
//! ```
//! use tether_proto::handshake::{
//!     accept_response, parse_request, parse_response, validate_response, ClientRequest,
//!     HandshakeConfig,
//! };
//!
//! let config = HandshakeConfig::default();
//! let request = ClientRequest::builder("example.com", "/chat", [7; 16])
//!     .protocol("chat")
//!     .build()?;
//!
//! // Server side.
//! let (req, used) = parse_request(&request.encode(), &config)?.ok_or("incomplete")?;
//! assert_eq!(used, request.encode().len());
//! let protocol = req.select_protocol(&["chat"]);
//! let response = accept_response(&req, protocol, None, &[]);
//!
//! // Client side.
//! let (head, _) = parse_response(&response, &config)?.ok_or("incomplete")?;
//! let accepted = validate_response(&head, &request)?;
//! assert_eq!(accepted.protocol.as_deref(), Some("chat"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Errors
//!
//! Validation stops at the first failed rule, in this order: HTTP syntax (400) and size limits
//! (431), method (405), HTTP version (505), `Host` (400), `Upgrade` (426), `Connection` (400),
//! `Sec-WebSocket-Version` (426), `Sec-WebSocket-Key` (400), `Sec-WebSocket-Extensions` (400).
//! See [`HandshakeError::http_status`] for why each status was chosen.

mod accept;
mod client;
mod error;
mod extensions;
mod headers;
mod server;

#[cfg(test)]
mod tests;

pub use accept::accept_key;
pub use client::{
    Accepted, ClientRequest, ClientRequestBuilder, ResponseHead, parse_response, validate_response,
};
pub(crate) use error::shown;
pub use error::{AcceptMismatch, HandshakeError};
pub use extensions::Extension;
#[cfg(test)]
pub(crate) use extensions::parse_into;
pub use server::{
    Request, accept_response, parse_request, reject_response, select_protocol,
    validate_extended_connect, validate_request,
};

/// Default for [`HandshakeConfig::max_header_bytes`]: 8 KiB.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 8192;

/// Default for [`HandshakeConfig::max_headers`]: 64 header lines.
pub const DEFAULT_MAX_HEADERS: usize = 64;

/// Limits applied while parsing a request or response head.
///
/// ```
/// use tether_proto::handshake::HandshakeConfig;
///
/// let config = HandshakeConfig::default().with_max_headers(32);
/// assert_eq!(config.max_headers, 32);
/// assert_eq!(config.max_header_bytes, 8192);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeConfig {
    /// Largest header section accepted, in bytes, from the request line to the blank line
    /// included. Default [`DEFAULT_MAX_HEADER_BYTES`] (8192). A buffer holding more bytes
    /// than this without a complete header section is refused with
    /// [`HandshakeError::HeaderSectionTooLarge`] (HTTP 431).
    pub max_header_bytes: usize,
    /// Largest number of header lines accepted. Default [`DEFAULT_MAX_HEADERS`] (64). More
    /// is refused with [`HandshakeError::TooManyHeaders`] (HTTP 431).
    pub max_headers: usize,
}

impl Default for HandshakeConfig {
    fn default() -> Self {
        Self {
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
        }
    }
}

impl HandshakeConfig {
    /// Sets [`max_header_bytes`](Self::max_header_bytes).
    #[must_use]
    pub fn with_max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`max_headers`](Self::max_headers).
    #[must_use]
    pub fn with_max_headers(mut self, headers: usize) -> Self {
        self.max_headers = headers;
        self
    }
}
