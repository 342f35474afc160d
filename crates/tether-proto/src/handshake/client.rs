//! Client role: build the upgrade request ([`ClientRequest`]), parse the server's response
//! head ([`ResponseHead`]) and validate it against the request ([`Accepted`]).

use std::fmt;

use super::HandshakeConfig;
use super::accept::{accept_key, encode_key};
use super::error::{AcceptMismatch, HandshakeError, shown};
use super::extensions::{self, Extension};
use super::headers::{
    Occurs, StartLine, has_token, head_window, incomplete, is_reserved, is_safe_value, is_token,
    joined, list_elements, occurs, parse_error, to_owned_headers, values, write_header,
};

/// Headers [`ClientRequest::encode`] writes itself, or that a GET upgrade must not carry;
/// [`ClientRequestBuilder::header`] refuses them.
const CLIENT_RESERVED: &[&str] = &[
    "host",
    "upgrade",
    "connection",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "sec-websocket-accept",
    "origin",
    "content-length",
    "transfer-encoding",
];

/// A validated client upgrade request, ready to [`encode`](Self::encode).
///
/// Built with [`ClientRequest::builder`]; every value was checked then, so encoding cannot
/// fail or produce a malformed head. `Debug` shows extra header names but not their values,
/// which may hold credentials.
#[derive(Clone)]
pub struct ClientRequest {
    host: String,
    path: String,
    key: String,
    accept: String,
    protocols: Vec<String>,
    extensions: Vec<Extension>,
    origin: Option<String>,
    headers: Vec<(String, String)>,
}

/// Builder for [`ClientRequest`]; nothing is checked until [`build`](Self::build).
#[derive(Clone)]
pub struct ClientRequestBuilder {
    host: String,
    path: String,
    key: [u8; 16],
    protocols: Vec<String>,
    extensions: Vec<String>,
    origin: Option<String>,
    headers: Vec<(String, String)>,
}

impl ClientRequest {
    /// Starts a request for `host` (sent as the `Host` header, with the port when it is not
    /// the scheme's default, for example `example.com:8080`) and `path` (path and query, for
    /// example `/chat?room=1`, already percent-encoded).
    ///
    /// `key` must be 16 fresh random bytes per connection (RFC 6455 4.1); the core has no
    /// randomness, so the caller supplies them.
    pub fn builder(
        host: impl Into<String>,
        path: impl Into<String>,
        key: [u8; 16],
    ) -> ClientRequestBuilder {
        ClientRequestBuilder {
            host: host.into(),
            path: path.into(),
            key,
            protocols: Vec::new(),
            extensions: Vec::new(),
            origin: None,
            headers: Vec::new(),
        }
    }

    /// The `Host` value.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The request target (path and query).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Sec-WebSocket-Key` value: base64 of the 16 key bytes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The `Sec-WebSocket-Accept` value a genuine server answers with.
    pub fn expected_accept(&self) -> &str {
        &self.accept
    }

    /// The offered subprotocols, in preference order.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The offered extensions, in preference order.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// The `Origin` value, if any.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// The extra headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The request head to write, blank line included.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(self.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        write_header(&mut out, "Host", &self.host);
        write_header(&mut out, "Upgrade", "websocket");
        write_header(&mut out, "Connection", "Upgrade");
        write_header(&mut out, "Sec-WebSocket-Key", &self.key);
        write_header(&mut out, "Sec-WebSocket-Version", "13");
        if let Some(origin) = &self.origin {
            write_header(&mut out, "Origin", origin);
        }
        if !self.protocols.is_empty() {
            write_header(
                &mut out,
                "Sec-WebSocket-Protocol",
                &self.protocols.join(", "),
            );
        }
        if !self.extensions.is_empty() {
            let offers: Vec<String> = self.extensions.iter().map(ToString::to_string).collect();
            write_header(&mut out, "Sec-WebSocket-Extensions", &offers.join(", "));
        }
        for (name, value) in &self.headers {
            write_header(&mut out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        out
    }
}

impl fmt::Debug for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ClientRequest")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("key", &self.key)
            .field("protocols", &self.protocols)
            .field("extensions", &self.extensions)
            .field("origin", &self.origin)
            .field("header_names", &names)
            .finish()
    }
}

impl ClientRequestBuilder {
    /// Offers a subprotocol (`Sec-WebSocket-Protocol`); call again for more, most preferred
    /// first. Each must be an HTTP token and appear once.
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// Offers one or more extensions in `Sec-WebSocket-Extensions` syntax, for example
    /// `permessage-deflate; client_max_window_bits`.
    pub fn extension(mut self, offer: impl Into<String>) -> Self {
        self.extensions.push(offer.into());
        self
    }

    /// Sets `Origin`, for clients acting on behalf of a web page.
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// Adds a header such as `Authorization` or `Cookie`. Names this request sets itself
    /// (`Host`, `Upgrade`, `Connection`, `Origin`, `Sec-WebSocket-*`) and body framing
    /// headers are refused by [`build`](Self::build); use the dedicated methods.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Checks every value and builds the request.
    ///
    /// # Errors
    ///
    /// [`HandshakeError::InvalidClientRequest`] when the host is empty or holds characters
    /// other than visible ASCII or any of `/?#@\`; the path does not start with `/` or holds
    /// spaces, controls, non-ASCII or `#`; a subprotocol is not a token or is repeated; an
    /// extension offer does not parse; the origin is not visible ASCII; a header name is not a
    /// token or is reserved; or a header value holds a control character (CR, LF...).
    pub fn build(self) -> Result<ClientRequest, HandshakeError> {
        let visible = |v: &str| !v.is_empty() && v.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !visible(&self.host) || self.host.contains(['/', '?', '#', '@', '\\']) {
            return Err(invalid("host", "a host name and optional port", &self.host));
        }
        if !visible(&self.path) || !self.path.starts_with('/') || self.path.contains('#') {
            return Err(invalid(
                "path",
                "an encoded path starting with /",
                &self.path,
            ));
        }
        for (i, protocol) in self.protocols.iter().enumerate() {
            let repeated = self.protocols.iter().take(i).any(|p| p == protocol);
            if !is_token(protocol.as_bytes()) || repeated {
                return Err(invalid("subprotocol", "a unique token", protocol));
            }
        }
        let mut extensions = Vec::new();
        for offer in &self.extensions {
            if extensions::parse_into(offer.as_bytes(), &mut extensions).is_err() {
                return Err(invalid("extension offer", "an extension list", offer));
            }
        }
        if let Some(origin) = self.origin.as_deref().filter(|o| !visible(o)) {
            return Err(invalid("origin", "visible ascii", origin));
        }
        for (name, value) in &self.headers {
            if !is_token(name.as_bytes()) || is_reserved(name, CLIENT_RESERVED) {
                return Err(invalid(
                    "header name",
                    "a token not set by the handshake",
                    name,
                ));
            }
            if !is_safe_value(value.as_bytes()) {
                return Err(invalid("header value", "no control characters", value));
            }
        }
        let key = encode_key(&self.key);
        Ok(ClientRequest {
            accept: accept_key(&key),
            key,
            host: self.host,
            path: self.path,
            protocols: self.protocols,
            extensions,
            origin: self.origin,
            headers: self.headers,
        })
    }
}

impl fmt::Debug for ClientRequestBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("ClientRequestBuilder")
            .field("host", &self.host)
            .field("path", &self.path)
            .field("protocols", &self.protocols)
            .field("extensions", &self.extensions)
            .field("origin", &self.origin)
            .field("header_names", &names)
            .finish_non_exhaustive()
    }
}

fn invalid(what: &str, expected: &str, found: &str) -> HandshakeError {
    HandshakeError::InvalidClientRequest {
        detail: format!(
            "{what}: expected {expected}, found {}",
            shown(found.as_bytes())
        )
        .into(),
    }
}

/// A parsed HTTP response head, whatever its status.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResponseHead {
    /// The status code.
    pub status: u16,
    /// The reason phrase, possibly empty.
    pub reason: String,
    /// The HTTP minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub version: u8,
    /// All headers in the order received: name as sent, value as raw bytes without
    /// surrounding whitespace.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl ResponseHead {
    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        values(&self.headers, name).next()
    }

    /// The first value of the header `name` (case-insensitive), if it is UTF-8.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values(&self.headers, name)
    }

    /// True when the header `name` has `token` in its comma-separated list (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        has_token(&self.headers, name, token)
    }

    /// The body length from `Content-Length`, for reading the body of a refusal.
    ///
    /// `None` when the header is absent or invalid (not decimal, or several different values)
    /// and when `Transfer-Encoding` is present, which overrides it (RFC 9112 6.3): the body
    /// then ends with the chunked encoding or when the connection closes, so read it with a
    /// size cap.
    pub fn content_length(&self) -> Option<u64> {
        if self.header("transfer-encoding").is_some() {
            return None;
        }
        let mut length = None;
        for element in list_elements(values(&self.headers, "content-length")) {
            if element.is_empty() || !element.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = std::str::from_utf8(element).ok()?.parse::<u64>().ok()?;
            if length.is_some_and(|l| l != n) {
                return None;
            }
            length = Some(n);
        }
        length
    }

    /// True when the body uses the chunked transfer coding.
    pub fn is_chunked(&self) -> bool {
        has_token(&self.headers, "transfer-encoding", "chunked")
    }
}

/// The outcome of a successful handshake, from [`validate_response`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accepted {
    /// The subprotocol the server chose, one the client offered.
    pub protocol: Option<String>,
    /// The extensions the server enabled, with its parameters, in its order. Each name was
    /// offered by the client; checking the parameters is the extension's job.
    pub extensions: Vec<Extension>,
}

/// Parses a response head from `buf`, whatever its status.
///
/// Returns `Ok(None)` while the header section is incomplete. On success returns the head
/// and its length; bytes after it (WebSocket frames after a 101, a body otherwise) are left
/// to the caller.
///
/// # Errors
///
/// [`HandshakeError::Malformed`], [`HandshakeError::UnsupportedHttpVersion`] for a version
/// other than HTTP/1.x, and the 431-class limit errors.
pub fn parse_response(
    buf: &[u8],
    config: &HandshakeConfig,
) -> Result<Option<(ResponseHead, usize)>, HandshakeError> {
    let window = head_window(buf, config);
    let mut slots = vec![httparse::EMPTY_HEADER; config.max_headers];
    let mut parsed = httparse::Response::new(&mut slots);
    let used = match parsed.parse(window) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return incomplete(buf, config),
        Err(err) => return Err(parse_error(err, window, config, StartLine::Response)),
    };
    let (Some(status), Some(version)) = (parsed.code, parsed.version) else {
        return Err(HandshakeError::Malformed {
            reason: "incomplete status line",
        });
    };
    let head = ResponseHead {
        status,
        reason: parsed.reason.unwrap_or_default().to_owned(),
        version,
        headers: to_owned_headers(parsed.headers),
    };
    Ok(Some((head, used)))
}

/// Checks that `head` accepts `request` (RFC 6455 4.1, the client's duties).
///
/// # Errors
///
/// In order: [`HandshakeError::UnexpectedStatus`] unless the status is 101 (it carries the
/// head so the caller can read the body and report the refusal);
/// [`HandshakeError::UnsupportedHttpVersion`] unless HTTP/1.1;
/// [`HandshakeError::MissingUpgrade`] and [`HandshakeError::MissingConnectionUpgrade`];
/// [`HandshakeError::InvalidAccept`]; [`HandshakeError::UnofferedProtocol`] for a
/// subprotocol not offered, any when none was, or several;
/// [`HandshakeError::InvalidExtensions`] and [`HandshakeError::UnofferedExtension`] for an
/// extension whose name (ASCII case-insensitive) was not offered.
pub fn validate_response(
    head: &ResponseHead,
    request: &ClientRequest,
) -> Result<Accepted, HandshakeError> {
    if head.status != 101 {
        return Err(HandshakeError::UnexpectedStatus {
            status: head.status,
            head: Box::new(head.clone()),
        });
    }
    if head.version != 1 {
        return Err(HandshakeError::UnsupportedHttpVersion {
            found: format!("HTTP/1.{}", head.version).into(),
        });
    }
    if !head.has_token("upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade {
            found: joined(&head.headers, "upgrade"),
        });
    }
    if !head.has_token("connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade {
            found: joined(&head.headers, "connection"),
        });
    }

    let accept = occurs(&head.headers, "sec-websocket-accept");
    if !matches!(accept, Occurs::Once(found) if found == request.accept.as_bytes()) {
        return Err(HandshakeError::InvalidAccept(Box::new(AcceptMismatch {
            expected: request.accept.as_str().into(),
            found: joined(&head.headers, "sec-websocket-accept"),
        })));
    }

    let chosen: Vec<&[u8]> = list_elements(head.header_values("sec-websocket-protocol")).collect();
    let protocol = match chosen.as_slice() {
        [] => None,
        [one] if request.protocols.iter().any(|p| p.as_bytes() == *one) => {
            Some(String::from_utf8_lossy(one).into_owned())
        }
        _ => {
            return Err(HandshakeError::UnofferedProtocol {
                found: joined(&head.headers, "sec-websocket-protocol").unwrap_or_default(),
            });
        }
    };

    let extensions = extensions::parse_all(head.header_values("sec-websocket-extensions"))
        .map_err(|bad| HandshakeError::InvalidExtensions { found: shown(bad) })?;
    for extension in &extensions {
        let offered = request
            .extensions
            .iter()
            .any(|o| o.name().eq_ignore_ascii_case(extension.name()));
        if !offered {
            return Err(HandshakeError::UnofferedExtension {
                found: shown(extension.name().as_bytes()),
            });
        }
    }

    Ok(Accepted {
        protocol,
        extensions,
    })
}
