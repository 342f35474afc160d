//! Server role: parse and validate a client's upgrade request into a [`Request`], choose a
//! subprotocol, and write the `101` accept or an HTTP rejection.

use std::fmt;

use super::HandshakeConfig;
use super::accept::{accept_key, is_valid_key};
use super::error::{HandshakeError, shown};
use super::extensions::{self, Extension};
use super::headers::{
    Occurs, StartLine, has_token, head_window, incomplete, is_reserved, joined, list_elements,
    occurs, parse_error, to_owned_headers, values, write_header,
};

/// Headers [`accept_response`] writes itself, or that make no sense on a 101; extra headers
/// with these names are dropped.
const ACCEPT_RESERVED: &[&str] = &[
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
    "content-length",
    "transfer-encoding",
];

/// Headers [`reject_response`] writes itself; extra headers with these names are dropped.
const REJECT_RESERVED: &[&str] = &["connection", "content-length", "transfer-encoding"];

/// A client's validated WebSocket upgrade request (RFC 6455 4.2.1).
///
/// Only [`parse_request`], [`validate_request`] and [`validate_extended_connect`] build one,
/// so a `Request` is either an HTTP/1.1 `GET` with one `Host`, the `websocket` and `upgrade`
/// tokens, version 13 and a valid key, or an HTTP/2 extended `CONNECT` with
/// `:protocol = websocket`, an authority and version 13 (see
/// [`is_extended_connect`](Self::is_extended_connect)). Header names compare ASCII
/// case-insensitively. `Debug` shows header names but not their values, which
/// may hold credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    method: String,
    path: String,
    host: String,
    key: String,
    protocols: Vec<String>,
    extensions: Vec<Extension>,
    origin: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    extended_connect: bool,
}

impl Request {
    /// The method: `GET`, or `CONNECT` for an HTTP/2 extended CONNECT.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The request target as sent, path and query (for example `/chat?room=1`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The `Host` value as sent (the `:authority` over HTTP/2), port included when present.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The `Sec-WebSocket-Key` as sent (base64 of 16 bytes); empty for an extended CONNECT,
    /// which has no key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Whether this is an HTTP/2 extended CONNECT (RFC 8441) rather than an HTTP/1.1
    /// upgrade. Such a request is accepted with `200` and no `Sec-WebSocket-Accept`, and the
    /// WebSocket runs on the HTTP/2 stream.
    pub fn is_extended_connect(&self) -> bool {
        self.extended_connect
    }

    /// The `Sec-WebSocket-Accept` value answering this request's key.
    pub fn accept_key(&self) -> String {
        accept_key(&self.key)
    }

    /// The offered subprotocols in the client's order: every `Sec-WebSocket-Protocol` line,
    /// split on commas, trimmed, empty elements dropped. Case is kept.
    pub fn protocols(&self) -> &[String] {
        &self.protocols
    }

    /// The offered extensions in the client's order, from every `Sec-WebSocket-Extensions`
    /// line.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }

    /// The `Origin` header, if any. Browsers always send one; other clients may not. Several
    /// `Origin` lines are joined with `, ` and bytes that are not UTF-8 are replaced, so a
    /// malformed origin never equals a legitimate one in an allow-list check.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_deref()
    }

    /// All headers in the order received: name as sent, value as raw bytes without
    /// surrounding whitespace.
    pub fn headers(&self) -> &[(String, Vec<u8>)] {
        &self.headers
    }

    /// The first value of the header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        values(&self.headers, name).next()
    }

    /// Every value of the header `name` (case-insensitive), in order.
    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        values(&self.headers, name)
    }

    /// The subprotocol to answer with: see [`select_protocol`].
    pub fn select_protocol<'s, S: AsRef<str>>(&self, supported: &'s [S]) -> Option<&'s str> {
        select_protocol(supported, &self.protocols)
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("host", &self.host)
            .field("key", &self.key)
            .field("protocols", &self.protocols)
            .field("extensions", &self.extensions)
            .field("origin", &self.origin)
            .field("extended_connect", &self.extended_connect)
            .field("header_names", &names)
            .finish()
    }
}

/// Chooses a subprotocol by **server preference**: the first entry of `supported` that the
/// client offered, compared exactly (subprotocol names are case-sensitive). `None` means
/// answer without `Sec-WebSocket-Protocol`; a client that insisted on one will then fail
/// the connection.
///
/// ```
/// use tether_proto::handshake::select_protocol;
///
/// let offered = vec!["v1.chat".to_owned(), "v2.chat".to_owned()];
/// assert_eq!(select_protocol(&["v2.chat", "v1.chat"], &offered), Some("v2.chat"));
/// assert_eq!(select_protocol(&["V2.CHAT"], &offered), None);
/// ```
pub fn select_protocol<'s, S: AsRef<str>>(
    supported: &'s [S],
    offered: &[String],
) -> Option<&'s str> {
    supported
        .iter()
        .map(AsRef::as_ref)
        .find(|s| offered.iter().any(|o| o == s))
}

/// Parses a client's request head from `buf` and validates it as a WebSocket upgrade.
///
/// Returns `Ok(None)` while the header section is incomplete: read more and call again with
/// the whole buffer. On success returns the request and the length of the header section;
/// bytes after it are the start of the WebSocket stream and are left alone.
///
/// # Errors
///
/// Any [`HandshakeError`] of the server side, checked in the order described in the
/// [module docs](super). Answer with [`HandshakeError::to_response`] and close.
pub fn parse_request(
    buf: &[u8],
    config: &HandshakeConfig,
) -> Result<Option<(Request, usize)>, HandshakeError> {
    let window = head_window(buf, config);
    let mut slots = vec![httparse::EMPTY_HEADER; config.max_headers];
    let mut parsed = httparse::Request::new(&mut slots);
    let used = match parsed.parse(window) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return incomplete(buf, config),
        Err(err) => return Err(parse_error(err, window, config, StartLine::Request)),
    };
    let (Some(method), Some(path), Some(minor)) = (parsed.method, parsed.path, parsed.version)
    else {
        return Err(HandshakeError::Malformed {
            reason: "incomplete request line",
        });
    };
    let headers = to_owned_headers(parsed.headers);
    validate_request(method, path, minor, headers).map(|req| Some((req, used)))
}

/// Validates an HTTP/1.x request head that another HTTP implementation parsed (hyper, a
/// proxy) as a WebSocket upgrade: the same rules, in the same order, as [`parse_request`]
/// after its parsing and size limits. `minor_version` is the `x` of `HTTP/1.x`; `headers`
/// are name and value pairs in the order received.
///
/// ```
/// use tether_proto::handshake::validate_request;
///
/// let headers = [
///     ("Host", "example.com"),
///     ("Upgrade", "websocket"),
///     ("Connection", "Upgrade"),
///     ("Sec-WebSocket-Version", "13"),
///     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
/// ];
/// let headers = headers.map(|(n, v)| (n.to_owned(), v.as_bytes().to_vec())).to_vec();
/// let request = validate_request("GET", "/chat", 1, headers)?;
/// assert_eq!(request.accept_key(), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// # Ok::<(), tether_proto::handshake::HandshakeError>(())
/// ```
///
/// # Errors
///
/// The first [`HandshakeError`] of the server side that applies.
pub fn validate_request(
    method: &str,
    path: &str,
    minor_version: u8,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<Request, HandshakeError> {
    let minor = minor_version;
    if method != "GET" {
        return Err(HandshakeError::MethodNotAllowed {
            found: shown(method.as_bytes()),
        });
    }
    if minor != 1 {
        return Err(HandshakeError::UnsupportedHttpVersion {
            found: format!("HTTP/1.{minor}").into(),
        });
    }

    let visible = |v: &[u8]| !v.is_empty() && v.iter().all(|b| (0x21..=0x7e).contains(b));
    let host = match occurs(&headers, "host") {
        Occurs::Never => return Err(HandshakeError::MissingHost),
        Occurs::Once(host) if visible(host) => host,
        Occurs::Once(_) | Occurs::Repeated => {
            return Err(HandshakeError::InvalidHost {
                found: joined(&headers, "host").unwrap_or_default(),
            });
        }
    };

    if !has_token(&headers, "upgrade", "websocket") {
        return Err(HandshakeError::MissingUpgrade {
            found: joined(&headers, "upgrade"),
        });
    }
    if !has_token(&headers, "connection", "upgrade") {
        return Err(HandshakeError::MissingConnectionUpgrade {
            found: joined(&headers, "connection"),
        });
    }

    if !matches!(
        occurs(&headers, "sec-websocket-version"),
        Occurs::Once(b"13")
    ) {
        return Err(HandshakeError::UnsupportedVersion {
            found: joined(&headers, "sec-websocket-version"),
        });
    }

    let key = match occurs(&headers, "sec-websocket-key") {
        Occurs::Never => return Err(HandshakeError::MissingKey),
        Occurs::Repeated => return Err(HandshakeError::DuplicateKey),
        Occurs::Once(key) if is_valid_key(key) => key,
        Occurs::Once(key) => return Err(HandshakeError::InvalidKey { found: shown(key) }),
    };

    // Both are visible ASCII (checked above), so the lossy conversion changes nothing.
    let host = String::from_utf8_lossy(host).into_owned();
    let key = String::from_utf8_lossy(key).into_owned();

    let (extensions, protocols, origin) = offers(&headers)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        host,
        key,
        protocols,
        extensions,
        origin,
        headers,
        extended_connect: false,
    })
}

/// Validates an HTTP/2 request as a WebSocket over an extended CONNECT (RFC 8441 sections
/// 4 and 5): method `CONNECT`, `:protocol` `websocket`, `Sec-WebSocket-Version: 13`.
/// `authority` is the `:authority` pseudo-header, `path` the `:path` one and `protocol` the
/// `:protocol` one. There is no key, no `Upgrade` and no `Connection`; subprotocols,
/// extensions and `Origin` are read as over HTTP/1.1. Accept with a `200` response.
///
/// # Errors
///
/// - [`HandshakeError::MissingUpgrade`] (426) for a method other than `CONNECT`: a plain
///   request to a WebSocket endpoint, as over HTTP/1.1;
/// - [`HandshakeError::InvalidConnectProtocol`] (400) for a `CONNECT` without
///   `:protocol = websocket`;
/// - [`HandshakeError::MissingHost`] or [`HandshakeError::InvalidHost`] (400) for an empty
///   or malformed authority;
/// - [`HandshakeError::UnsupportedVersion`] (426) and
///   [`HandshakeError::InvalidExtensions`] (400) as over HTTP/1.1.
pub fn validate_extended_connect(
    method: &str,
    path: &str,
    authority: &str,
    protocol: Option<&str>,
    headers: Vec<(String, Vec<u8>)>,
) -> Result<Request, HandshakeError> {
    if method != "CONNECT" {
        return Err(HandshakeError::MissingUpgrade { found: None });
    }
    if protocol != Some("websocket") {
        return Err(HandshakeError::InvalidConnectProtocol {
            found: protocol.map(|p| shown(p.as_bytes())),
        });
    }
    if authority.is_empty() {
        return Err(HandshakeError::MissingHost);
    }
    if !authority.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(HandshakeError::InvalidHost {
            found: shown(authority.as_bytes()),
        });
    }
    if !matches!(
        occurs(&headers, "sec-websocket-version"),
        Occurs::Once(b"13")
    ) {
        return Err(HandshakeError::UnsupportedVersion {
            found: joined(&headers, "sec-websocket-version"),
        });
    }
    let (extensions, protocols, origin) = offers(&headers)?;
    Ok(Request {
        method: method.to_owned(),
        path: path.to_owned(),
        host: authority.to_owned(),
        key: String::new(),
        protocols,
        extensions,
        origin,
        headers,
        extended_connect: true,
    })
}

/// The offers both kinds of request carry: extensions, subprotocols, and the origin.
type Offers = (Vec<Extension>, Vec<String>, Option<String>);

fn offers(headers: &[(String, Vec<u8>)]) -> Result<Offers, HandshakeError> {
    let extensions = extensions::parse_all(values(headers, "sec-websocket-extensions"))
        .map_err(|bad| HandshakeError::InvalidExtensions { found: shown(bad) })?;
    let protocols = list_elements(values(headers, "sec-websocket-protocol"))
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let origins: Vec<&[u8]> = values(headers, "origin").collect();
    let origin = (!origins.is_empty())
        .then(|| String::from_utf8_lossy(&origins.join(b", ".as_slice())).into_owned());
    Ok((extensions, protocols, origin))
}

/// Writes the `101 Switching Protocols` response accepting `req`.
///
/// `protocol` must be one the client offered (use [`select_protocol`]) and `extensions` the
/// negotiated `Sec-WebSocket-Extensions` value, both `None` to send none. `extra_headers` are
/// appended (for example `Set-Cookie`); those named like a header this function writes, or
/// `Content-Length`/`Transfer-Encoding`, are dropped, as are names that are not HTTP tokens.
/// Control characters in values, CR and LF included, are written as spaces, so no input can
/// inject a header line.
pub fn accept_response(
    req: &Request,
    protocol: Option<&str>,
    extensions: Option<&str>,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    write_header(&mut out, "Upgrade", "websocket");
    write_header(&mut out, "Connection", "Upgrade");
    write_header(&mut out, "Sec-WebSocket-Accept", &req.accept_key());
    if let Some(protocol) = protocol.filter(|p| !p.trim().is_empty()) {
        write_header(&mut out, "Sec-WebSocket-Protocol", protocol);
    }
    if let Some(extensions) = extensions.filter(|e| !e.trim().is_empty()) {
        write_header(&mut out, "Sec-WebSocket-Extensions", extensions);
    }
    for (name, value) in extra_headers {
        if !is_reserved(name, ACCEPT_RESERVED) {
            write_header(&mut out, name, value);
        }
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Writes an HTTP/1.1 response refusing the upgrade, to send before closing the connection.
///
/// `status` outside 200..=599 is replaced by 500 (1xx cannot carry a body or end the
/// exchange). The reason phrase is the standard one. `headers` are written (with the same
/// sanitising as [`accept_response`]) except `Connection`, `Content-Length`,
/// `Transfer-Encoding`, and `Content-Type` when `content_type` is given; then come
/// `Content-Type`, `Content-Length` and `Connection: close`, or `Connection: Upgrade, close`
/// when `headers` hold `Upgrade` (RFC 9110 7.8 asks for the `upgrade` option then).
///
/// ```
/// use tether_proto::handshake::reject_response;
///
/// let response = reject_response(403, &[], Some("text/plain"), b"forbidden");
/// assert!(response.starts_with(b"HTTP/1.1 403 Forbidden\r\n"));
/// assert!(response.ends_with(b"\r\n\r\nforbidden"));
/// ```
pub fn reject_response(
    status: u16,
    headers: &[(&str, &str)],
    content_type: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let status = if (200..=599).contains(&status) {
        status
    } else {
        500
    };
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status)).as_bytes());
    let mut upgrade = false;
    for (name, value) in headers {
        let content_type_clash =
            content_type.is_some() && name.trim().eq_ignore_ascii_case("content-type");
        if is_reserved(name, REJECT_RESERVED) || content_type_clash {
            continue;
        }
        upgrade |= name.eq_ignore_ascii_case("upgrade");
        write_header(&mut out, name, value);
    }
    if let Some(content_type) = content_type {
        write_header(&mut out, "Content-Type", content_type);
    }
    write_header(&mut out, "Content-Length", &body.len().to_string());
    let connection = if upgrade { "Upgrade, close" } else { "close" };
    write_header(&mut out, "Connection", connection);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// The standard reason phrase, or a generic one for the status class.
fn reason_phrase(status: u16) -> &'static str {
    known_reason(status).unwrap_or(match status / 100 {
        2 => "Success",
        3 => "Redirection",
        4 => "Client Error",
        _ => "Server Error",
    })
}

/// Reason phrases from RFC 9110 section 15 (and RFC 6585) for the statuses a handshake
/// rejection plausibly uses.
fn known_reason(status: u16) -> Option<&'static str> {
    Some(match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => return None,
    })
}
