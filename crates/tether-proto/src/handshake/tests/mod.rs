//! Handshake tests: shared fixtures here, one file per role, and property-style loops.

mod client;
mod props;
mod server;

use super::*;

/// The key from RFC 6455 section 1.3 and the accept value it calls for.
const RFC_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const RFC_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// The sample request of RFC 6455 section 1.2.
const RFC_REQUEST: &str = "GET /chat HTTP/1.1\r\n\
    Host: server.example.com\r\n\
    Upgrade: websocket\r\n\
    Connection: Upgrade\r\n\
    Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
    Origin: http://example.com\r\n\
    Sec-WebSocket-Protocol: chat, superchat\r\n\
    Sec-WebSocket-Version: 13\r\n\
    \r\n";

fn config() -> HandshakeConfig {
    HandshakeConfig::default()
}

/// `RFC_REQUEST` with the header line starting with `prefix` replaced by `line` (without
/// CRLF; an empty `line` removes the header).
fn request_with(prefix: &str, line: &str) -> String {
    let mut out = String::new();
    for l in RFC_REQUEST.split_inclusive("\r\n") {
        if l.starts_with(prefix) {
            if !line.is_empty() {
                out.push_str(line);
                out.push_str("\r\n");
            }
        } else {
            out.push_str(l);
        }
    }
    out
}

/// `RFC_REQUEST` with `lines` (each CRLF-terminated) added before the blank line.
fn request_plus(lines: &str) -> String {
    let head = RFC_REQUEST.strip_suffix("\r\n").unwrap_or(RFC_REQUEST);
    format!("{head}{lines}\r\n")
}

fn parse_ok(request: &str) -> (Request, usize) {
    parse_request(request.as_bytes(), &config())
        .expect("request should be valid")
        .expect("request should be complete")
}

fn parse_err(request: &str) -> HandshakeError {
    parse_request(request.as_bytes(), &config()).expect_err("request should be refused")
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

fn client_request() -> ClientRequest {
    ClientRequest::builder("example.com:9001", "/ws?room=1", *b"0123456789abcdef")
        .protocol("v2.chat")
        .protocol("v1.chat")
        .extension("permessage-deflate; client_max_window_bits")
        .origin("https://example.com")
        .header("Authorization", "Bearer secret")
        .build()
        .expect("valid client request")
}

#[test]
fn rfc_accept_example() {
    assert_eq!(accept_key(RFC_KEY), RFC_ACCEPT);
    let (req, _) = parse_ok(RFC_REQUEST);
    assert_eq!(req.accept_key(), RFC_ACCEPT);
}

#[test]
fn round_trip_through_both_roles() {
    let request = client_request();
    let mut wire = request.encode();
    let head_len = wire.len();
    wire.extend_from_slice(b"\x81\x85frame");

    let (req, used) = parse_request(&wire, &config())
        .expect("valid")
        .expect("complete");
    assert_eq!(used, head_len);
    assert_eq!(req.host(), "example.com:9001");
    assert_eq!(req.path(), "/ws?room=1");
    assert_eq!(req.key(), request.key());
    assert_eq!(req.protocols(), ["v2.chat", "v1.chat"]);
    assert_eq!(req.origin(), Some("https://example.com"));
    assert_eq!(
        req.header("authorization"),
        Some(b"Bearer secret".as_slice())
    );
    let [offer] = req.extensions() else {
        panic!("one extension offer expected, found {:?}", req.extensions());
    };
    assert_eq!(offer.name(), "permessage-deflate");
    assert_eq!(offer.param("client_max_window_bits"), Some(None));

    let protocol = req.select_protocol(&["v1.chat", "v2.chat"]);
    assert_eq!(protocol, Some("v1.chat"));
    let mut response = accept_response(&req, protocol, Some("permessage-deflate"), &[]);
    let response_len = response.len();
    response.extend_from_slice(b"\x81\x02hi");

    let (head, used) = parse_response(&response, &config())
        .expect("valid")
        .expect("complete");
    assert_eq!(used, response_len);
    assert_eq!(head.status, 101);
    let accepted = validate_response(&head, &request).expect("accepted");
    assert_eq!(accepted.protocol.as_deref(), Some("v1.chat"));
    let [extension] = accepted.extensions.as_slice() else {
        panic!("one extension expected, found {:?}", accepted.extensions);
    };
    assert_eq!(extension.name(), "permessage-deflate");
}

#[test]
fn error_is_small_and_thread_safe() {
    fn assert_traits<T: std::error::Error + Send + Sync + 'static>() {}
    assert_traits::<HandshakeError>();
    assert!(
        std::mem::size_of::<HandshakeError>() <= 24,
        "HandshakeError grew to {} bytes",
        std::mem::size_of::<HandshakeError>()
    );
}
