//! Server role: request parsing, one test per rejection rule, responses.

use super::*;

#[test]
fn parses_the_rfc_request() {
    let (req, used) = parse_ok(RFC_REQUEST);
    assert_eq!(used, RFC_REQUEST.len());
    assert_eq!(req.method(), "GET");
    assert_eq!(req.path(), "/chat");
    assert_eq!(req.host(), "server.example.com");
    assert_eq!(req.key(), RFC_KEY);
    assert_eq!(req.protocols(), ["chat", "superchat"]);
    assert_eq!(req.origin(), Some("http://example.com"));
    assert!(req.extensions().is_empty());
    assert_eq!(req.headers().len(), 7);
}

#[test]
fn leaves_bytes_after_the_head_alone() {
    let wire = format!("{RFC_REQUEST}\u{81}\u{0}GET / HTTP/1.1\r\n\r\n");
    let (_, used) = parse_ok(&wire);
    assert_eq!(used, RFC_REQUEST.len());
}

#[test]
fn partial_request_at_every_split_point() {
    for cut in 0..RFC_REQUEST.len() {
        let partial = RFC_REQUEST
            .as_bytes()
            .get(..cut)
            .expect("cut within the request");
        assert!(
            matches!(parse_request(partial, &config()), Ok(None)),
            "cut at {cut} should ask for more"
        );
    }
    assert!(matches!(
        parse_request(RFC_REQUEST.as_bytes(), &config()),
        Ok(Some(_))
    ));
}

/// Checks the variant's status, the extra header in its response and a lowercase body.
fn assert_rejection(err: &HandshakeError, status: u16, header: Option<&str>) {
    assert_eq!(err.http_status(), status, "{err:?}");
    let response = err.to_response();
    let status_line = format!("HTTP/1.1 {status} ");
    assert!(response.starts_with(status_line.as_bytes()), "{err:?}");
    if let Some(header) = header {
        assert!(contains(&response, header), "{header} missing for {err:?}");
    }
    assert!(contains(&response, "Connection: "), "{err:?}");
    let message = err.to_string();
    assert!(contains(&response, &message));
    assert!(!message.ends_with('.'));
    assert!(
        message.starts_with(|c: char| c.is_ascii_lowercase()),
        "{message}"
    );
}

#[test]
fn rejects_a_method_other_than_get() {
    let err = parse_err(&RFC_REQUEST.replacen("GET", "POST", 1));
    assert_eq!(
        err,
        HandshakeError::MethodNotAllowed {
            found: "POST".into()
        }
    );
    assert_rejection(&err, 405, Some("\r\nAllow: GET\r\n"));
}

#[test]
fn rejects_http_1_0_with_505() {
    let err = parse_err(&RFC_REQUEST.replacen("HTTP/1.1", "HTTP/1.0", 1));
    assert_eq!(
        err,
        HandshakeError::UnsupportedHttpVersion {
            found: "HTTP/1.0".into()
        }
    );
    assert_rejection(&err, 505, None);
    let err = parse_err(&RFC_REQUEST.replacen("HTTP/1.1", "HTTP/2.0", 1));
    assert_eq!(
        err,
        HandshakeError::UnsupportedHttpVersion {
            found: "HTTP/2.0".into()
        }
    );
}

#[test]
fn rejects_malformed_http() {
    let err = parse_err("GET /chat HTTP/1.1\r\nHost example.com\r\n\r\n");
    assert!(matches!(err, HandshakeError::Malformed { .. }), "{err:?}");
    assert_rejection(&err, 400, None);
    let err = parse_err("\0\0\0\0");
    assert!(matches!(err, HandshakeError::Malformed { .. }), "{err:?}");
}

#[test]
fn rejects_a_missing_or_repeated_host() {
    let err = parse_err(&request_with("Host:", ""));
    assert_eq!(err, HandshakeError::MissingHost);
    assert_rejection(&err, 400, None);
    let err = parse_err(&request_plus("host: evil.example\r\n"));
    assert!(matches!(err, HandshakeError::InvalidHost { .. }), "{err:?}");
    assert_rejection(&err, 400, None);
}

#[test]
fn upgrade_is_matched_token_wise() {
    parse_ok(&request_with("Upgrade:", "upgrade: foo, WebSocket"));
    for line in ["", "Upgrade: h2c", "Upgrade: websockets"] {
        let err = parse_err(&request_with("Upgrade:", line));
        assert!(
            matches!(err, HandshakeError::MissingUpgrade { .. }),
            "{err:?}"
        );
        assert_rejection(&err, 426, Some("\r\nUpgrade: websocket\r\n"));
        assert!(contains(
            &err.to_response(),
            "\r\nConnection: Upgrade, close\r\n"
        ));
    }
}

#[test]
fn connection_is_matched_token_wise() {
    parse_ok(&request_with(
        "Connection:",
        "CONNECTION: keep-alive, Upgrade",
    ));
    let err = parse_err(&request_with("Connection:", "Connection: keep-alive"));
    assert_eq!(
        err,
        HandshakeError::MissingConnectionUpgrade {
            found: Some("keep-alive".into())
        }
    );
    assert_rejection(&err, 400, None);
    let err = parse_err(&request_with("Connection:", ""));
    assert_eq!(
        err,
        HandshakeError::MissingConnectionUpgrade { found: None }
    );
}

#[test]
fn rejects_a_websocket_version_other_than_13() {
    let err = parse_err(&request_with(
        "Sec-WebSocket-Version:",
        "Sec-WebSocket-Version: 8",
    ));
    assert_eq!(
        err,
        HandshakeError::UnsupportedVersion {
            found: Some("8".into())
        }
    );
    assert_eq!(
        err.to_string(),
        "unsupported websocket version: expected 13, found 8"
    );
    assert_rejection(&err, 426, Some("\r\nSec-WebSocket-Version: 13\r\n"));

    let err = parse_err(&request_with("Sec-WebSocket-Version:", ""));
    assert_eq!(err, HandshakeError::UnsupportedVersion { found: None });
    assert_rejection(&err, 426, Some("\r\nSec-WebSocket-Version: 13\r\n"));

    let err = parse_err(&request_plus("Sec-WebSocket-Version: 13\r\n"));
    assert!(
        matches!(err, HandshakeError::UnsupportedVersion { .. }),
        "{err:?}"
    );
}

#[test]
fn rejects_a_missing_key() {
    let err = parse_err(&request_with("Sec-WebSocket-Key:", ""));
    assert_eq!(err, HandshakeError::MissingKey);
    assert_rejection(&err, 400, None);
}

#[test]
fn rejects_a_duplicated_key() {
    let err = parse_err(&request_plus(
        "sec-websocket-key: AAAAAAAAAAAAAAAAAAAAAA==\r\n",
    ));
    assert_eq!(err, HandshakeError::DuplicateKey);
    assert_rejection(&err, 400, None);
}

#[test]
fn rejects_a_key_that_is_not_16_bytes_of_base64() {
    for key in [
        "not base64 at all!!!!!!!",
        "AAAAAAAAAAAAAAAAAAAA",     // 15 bytes
        "AAAAAAAAAAAAAAAAAAAAAAA=", // 17 bytes
        "AAAAAAAAAAAAAAAAAAAAAA",   // unpadded
        "AAAAAAAAAAAAAAAAAAAAAB==", // non-canonical trailing bits
        "",
    ] {
        let line = format!("Sec-WebSocket-Key: {key}");
        let err = parse_err(&request_with("Sec-WebSocket-Key:", &line));
        assert!(
            matches!(err, HandshakeError::InvalidKey { .. }),
            "{key}: {err:?}"
        );
        assert_rejection(&err, 400, None);
    }
}

#[test]
fn rejects_malformed_extension_offers() {
    for value in [
        "permessage-deflate; =1",
        "a; b=\"c d\"",
        "a b",
        "a; b=\"unterminated",
    ] {
        let err = parse_err(&request_plus(&format!(
            "Sec-WebSocket-Extensions: {value}\r\n"
        )));
        assert!(
            matches!(err, HandshakeError::InvalidExtensions { .. }),
            "{value}: {err:?}"
        );
        assert_rejection(&err, 400, None);
    }
}

#[test]
fn oversized_header_section_is_431() {
    let filler = format!("X-Filler: {}\r\n", "a".repeat(9000));
    let mut wire = request_plus(&filler).into_bytes();
    let err = parse_request(&wire, &config()).expect_err("too large");
    assert_eq!(err, HandshakeError::HeaderSectionTooLarge { limit: 8192 });
    assert_rejection(&err, 431, None);
    // Also refused while still incomplete, once the limit is passed.
    wire.truncate(8500);
    assert_eq!(parse_request(&wire, &config()), Err(err));
    // Just under the limit still asks for more.
    wire.truncate(8191);
    assert!(matches!(parse_request(&wire, &config()), Ok(None)));
}

#[test]
fn too_many_headers_is_431() {
    let lines: String = (0..64).map(|i| format!("X-H{i}: v\r\n")).collect();
    let err = parse_err(&request_plus(&lines));
    assert_eq!(err, HandshakeError::TooManyHeaders { limit: 64 });
    assert_rejection(&err, 431, None);
}

#[test]
fn protocols_span_lines_and_header_case() {
    let wire = request_with(
        "Sec-WebSocket-Protocol:",
        "sec-websocket-PROTOCOL: chat ,Super\r\nSEC-WEBSOCKET-PROTOCOL: ,v2.chat,, x",
    );
    let (req, _) = parse_ok(&wire);
    assert_eq!(req.protocols(), ["chat", "Super", "v2.chat", "x"]);
    assert_eq!(req.select_protocol(&["super", "x", "chat"]), Some("x"));
    assert_eq!(req.select_protocol(&["nope"]), None);
}

#[test]
fn parses_extension_offers_with_parameters() {
    let wire = request_plus(
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits; \
         server_max_window_bits=\"10\", x-foo\r\nsec-websocket-extensions: x-bar;a=1\r\n",
    );
    let (req, _) = parse_ok(&wire);
    let names: Vec<&str> = req.extensions().iter().map(Extension::name).collect();
    assert_eq!(names, ["permessage-deflate", "x-foo", "x-bar"]);
    let deflate = req.extensions().first().expect("deflate offer");
    assert_eq!(deflate.param("client_max_window_bits"), Some(None));
    assert_eq!(deflate.param("SERVER_MAX_WINDOW_BITS"), Some(Some("10")));
    assert_eq!(deflate.param("missing"), None);
    assert_eq!(
        deflate.to_string(),
        "permessage-deflate; client_max_window_bits; server_max_window_bits=10"
    );
}

#[test]
fn accept_response_for_the_rfc_request() {
    let (req, _) = parse_ok(RFC_REQUEST);
    let response = accept_response(&req, Some("chat"), None, &[("Set-Cookie", "a=b")]);
    assert_eq!(
        String::from_utf8_lossy(&response),
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
         Sec-WebSocket-Protocol: chat\r\n\
         Set-Cookie: a=b\r\n\
         \r\n"
    );
}

#[test]
fn emitted_headers_cannot_be_injected() {
    let (req, _) = parse_ok(RFC_REQUEST);
    let extra = [
        ("X-Evil", "a\r\nSet-Cookie: stolen=1"),
        ("Bad Name", "x"),
        ("Bad\r\nName", "x"),
        ("sec-websocket-accept", "forged"),
        ("Content-Length", "5"),
    ];
    let response = accept_response(&req, Some("chat\r\nX-Injected: 1"), Some("a\nb"), &extra);
    let text = String::from_utf8_lossy(&response);
    assert!(!text.contains("\r\nSet-Cookie"), "{text}");
    assert!(!text.contains("\r\nX-Injected"), "{text}");
    assert!(
        !text.contains("forged") && !text.contains("Content-Length"),
        "{text}"
    );
    assert!(!text.contains("Bad"), "{text}");
    assert_eq!(text.matches("\r\n").count(), 8, "{text}");
    assert!(!text.replace("\r\n", "").contains(['\r', '\n']), "{text}");

    let response = reject_response(403, &extra, None, b"");
    let text = String::from_utf8_lossy(&response);
    assert!(
        !text.contains("\r\nSet-Cookie") && !text.contains("Content-Length: 5"),
        "{text}"
    );
}

#[test]
fn reject_response_frames_the_body() {
    let response = reject_response(
        429,
        &[
            ("Retry-After", "5"),
            ("content-type", "ignored"),
            ("connection", "keep-alive"),
        ],
        Some("text/plain"),
        b"slow down",
    );
    assert_eq!(
        String::from_utf8_lossy(&response),
        "HTTP/1.1 429 Too Many Requests\r\n\
         Retry-After: 5\r\n\
         Content-Type: text/plain\r\n\
         Content-Length: 9\r\n\
         Connection: close\r\n\
         \r\n\
         slow down"
    );
    assert!(reject_response(101, &[], None, b"").starts_with(b"HTTP/1.1 500 Internal"));
    assert!(reject_response(499, &[], None, b"").starts_with(b"HTTP/1.1 499 Client Error\r\n"));
}

#[test]
fn debug_hides_header_values() {
    let (req, _) = parse_ok(&request_plus("Authorization: Bearer hunter2\r\n"));
    let debug = format!("{req:?}");
    assert!(
        debug.contains("Authorization") && !debug.contains("hunter2"),
        "{debug}"
    );
}

#[test]
fn error_values_are_escaped_and_truncated() {
    let long = format!("X{}", "y".repeat(200));
    let err = parse_err(&RFC_REQUEST.replacen("GET", &long, 1));
    let message = err.to_string();
    assert!(message.ends_with("..."), "{message}");
    assert!(message.len() < 150, "{message}");
}

fn h2_headers(pairs: &[(&str, &str)]) -> Vec<(String, Vec<u8>)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), value.as_bytes().to_vec()))
        .collect()
}

#[test]
fn validates_an_extended_connect_without_a_key() {
    let headers = h2_headers(&[
        ("sec-websocket-version", "13"),
        ("sec-websocket-protocol", "chat, superchat"),
        ("origin", "https://example.com"),
    ]);
    let req = validate_extended_connect(
        "CONNECT",
        "/chat?room=1",
        "example.com:443",
        Some("websocket"),
        headers,
    )
    .unwrap();
    assert!(req.is_extended_connect());
    assert_eq!(req.method(), "CONNECT");
    assert_eq!(req.path(), "/chat?room=1");
    assert_eq!(req.host(), "example.com:443");
    assert_eq!(req.key(), "");
    assert_eq!(req.protocols(), ["chat", "superchat"]);
    assert_eq!(req.origin(), Some("https://example.com"));
}

#[test]
fn refuses_an_extended_connect_by_rfc_8441_rules() {
    let version = || h2_headers(&[("sec-websocket-version", "13")]);
    let err = validate_extended_connect("GET", "/", "a", Some("websocket"), version());
    assert_rejection(&err.unwrap_err(), 426, None);
    let err = validate_extended_connect("CONNECT", "/", "a", None, version()).unwrap_err();
    assert_eq!(err, HandshakeError::InvalidConnectProtocol { found: None });
    assert_eq!(err.http_status(), 400);
    let err = validate_extended_connect("CONNECT", "/", "a", Some("h3"), version()).unwrap_err();
    assert!(err.to_string().contains("found h3"), "{err}");
    let err = validate_extended_connect("CONNECT", "/", "", Some("websocket"), version());
    assert_eq!(err.unwrap_err(), HandshakeError::MissingHost);
    let wrong = h2_headers(&[("sec-websocket-version", "8")]);
    let err = validate_extended_connect("CONNECT", "/", "a", Some("websocket"), wrong);
    assert_rejection(&err.unwrap_err(), 426, Some("Sec-WebSocket-Version: 13"));
}

#[test]
fn validate_request_applies_the_parser_rules_to_a_parsed_head() {
    let (parsed, _) = parse_ok(RFC_REQUEST);
    let again = validate_request("GET", "/chat", 1, parsed.headers().to_vec()).unwrap();
    assert_eq!(again, parsed);
    assert!(!again.is_extended_connect());
    let err = validate_request("GET", "/chat", 0, parsed.headers().to_vec()).unwrap_err();
    assert_eq!(err.http_status(), 505);
}
