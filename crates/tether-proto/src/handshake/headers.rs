//! Header helpers shared by both roles: case-insensitive lookup, comma-separated token lists,
//! the HTTP token grammar, safe writing of header lines, and the limits around `httparse`.

use super::HandshakeConfig;
use super::error::{HandshakeError, shown};

/// Every value of the header `name`, compared case-insensitively, in the order received.
pub(crate) fn values<'h, 'n>(
    headers: &'h [(String, Vec<u8>)],
    name: &'n str,
) -> impl Iterator<Item = &'h [u8]> + use<'h, 'n> {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_slice())
}

/// How many times a header occurs, keeping the value when it occurs once.
pub(crate) enum Occurs<'h> {
    Never,
    Once(&'h [u8]),
    Repeated,
}

/// Looks up a header that must appear at most once.
pub(crate) fn occurs<'h>(headers: &'h [(String, Vec<u8>)], name: &str) -> Occurs<'h> {
    let mut found = values(headers, name);
    match (found.next(), found.next()) {
        (None, _) => Occurs::Never,
        (Some(v), None) => Occurs::Once(v),
        (Some(_), Some(_)) => Occurs::Repeated,
    }
}

/// The non-empty elements of comma-separated lists spread over several header lines, with
/// optional whitespace trimmed (RFC 9110 5.6.1: recipients ignore empty elements).
pub(crate) fn list_elements<'a>(
    values: impl Iterator<Item = &'a [u8]>,
) -> impl Iterator<Item = &'a [u8]> {
    values
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// True when any list element of the header `name` equals `token`, ignoring ASCII case.
pub(crate) fn has_token(headers: &[(String, Vec<u8>)], name: &str, token: &str) -> bool {
    list_elements(values(headers, name)).any(|e| e.eq_ignore_ascii_case(token.as_bytes()))
}

/// All values of `name` joined with ", " for an error message, or `None` when absent.
pub(crate) fn joined(headers: &[(String, Vec<u8>)], name: &str) -> Option<Box<str>> {
    let mut all = Vec::new();
    for v in values(headers, name) {
        if !all.is_empty() {
            all.extend_from_slice(b", ");
        }
        all.extend_from_slice(v);
    }
    let present = values(headers, name).next().is_some();
    present.then(|| shown(&all))
}

/// Strips leading and trailing optional whitespace (space and horizontal tab).
pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// `tchar` from RFC 9110 5.6.2.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A non-empty run of `tchar`.
pub(crate) fn is_token(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&b| is_tchar(b))
}

/// Control characters other than horizontal tab may never appear in a header value we write.
fn is_forbidden_in_value(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// True when `v` can be written as a header value as is.
pub(crate) fn is_safe_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| is_forbidden_in_value(b))
}

/// Appends `name: value\r\n`. A name that is not a token makes the line be skipped; control
/// characters in the value (CR and LF above all) become spaces, so no caller input can end
/// the line early or inject another header.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &str, value: &str) {
    if !is_token(name.as_bytes()) {
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend(
        trim_ows(value.as_bytes())
            .iter()
            .map(|&b| if is_forbidden_in_value(b) { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// True when `name` is one of `reserved`, ignoring ASCII case.
pub(crate) fn is_reserved(name: &str, reserved: &[&str]) -> bool {
    reserved.iter().any(|r| r.eq_ignore_ascii_case(name.trim()))
}

/// The part of `buf` the parser may look at: at most `max_header_bytes`, so parsing work is
/// bounded however much the peer sends.
pub(crate) fn head_window<'a>(buf: &'a [u8], config: &HandshakeConfig) -> &'a [u8] {
    buf.get(..config.max_header_bytes).unwrap_or(buf)
}

/// What to return when `httparse` needs more bytes: `Ok(None)` while the limit allows more.
pub(crate) fn incomplete<T>(
    buf: &[u8],
    config: &HandshakeConfig,
) -> Result<Option<T>, HandshakeError> {
    if buf.len() >= config.max_header_bytes {
        // The window was full and still held no complete header section.
        Err(HandshakeError::HeaderSectionTooLarge {
            limit: config.max_header_bytes,
        })
    } else {
        Ok(None)
    }
}

/// Which start line a parse error came from; it tells where the HTTP version sits.
#[derive(Clone, Copy)]
pub(crate) enum StartLine {
    Request,
    Response,
}

/// Maps an `httparse` error to ours. `window` is the parsed input, used to show the version
/// the peer sent when that is what failed.
pub(crate) fn parse_error(
    err: httparse::Error,
    window: &[u8],
    config: &HandshakeConfig,
    line: StartLine,
) -> HandshakeError {
    let reason = match err {
        httparse::Error::TooManyHeaders => {
            return HandshakeError::TooManyHeaders {
                limit: config.max_headers,
            };
        }
        httparse::Error::Version => {
            let first = window.split(|&b| b == b'\n').next().unwrap_or_default();
            let first = first.strip_suffix(b"\r").unwrap_or(first);
            let mut words = first.split(|&b| b == b' ');
            let found = match line {
                StartLine::Request => words.next_back(),
                StartLine::Response => words.next(),
            }
            .unwrap_or_default();
            if found.starts_with(b"HTTP/") {
                return HandshakeError::UnsupportedHttpVersion {
                    found: shown(found),
                };
            }
            "invalid http version"
        }
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token in the start line",
    };
    HandshakeError::Malformed { reason }
}

/// Copies parsed headers into owned pairs, keeping names as sent and values as raw bytes.
pub(crate) fn to_owned_headers(parsed: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    parsed
        .iter()
        .map(|h| (h.name.to_owned(), trim_ows(h.value).to_vec()))
        .collect()
}
