//! Client role: request encoding and building, response parsing and validation.

use super::*;

/// A 101 answering `request`, with `extra` header lines (CRLF-terminated) appended.
fn switching(request: &ClientRequest, extra: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\
         {extra}\r\n",
        request.expected_accept()
    )
}

fn head(response: &str) -> ResponseHead {
    parse_response(response.as_bytes(), &config())
        .expect("valid response")
        .expect("complete response")
        .0
}

fn validate(response: &str, request: &ClientRequest) -> Result<Accepted, HandshakeError> {
    validate_response(&head(response), request)
}

#[test]
fn encodes_the_request_head() {
    let request = ClientRequest::builder("server.example.com", "/chat", *b"the sample nonce")
        .protocol("chat")
        .protocol("superchat")
        .origin("http://example.com")
        .build()
        .expect("valid");
    assert_eq!(request.key(), RFC_KEY);
    assert_eq!(request.expected_accept(), RFC_ACCEPT);
    assert_eq!(
        String::from_utf8_lossy(&request.encode()),
        "GET /chat HTTP/1.1\r\n\
         Host: server.example.com\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\
         Origin: http://example.com\r\n\
         Sec-WebSocket-Protocol: chat, superchat\r\n\
         \r\n"
    );
}

#[test]
fn builder_refuses_unsendable_values() {
    let key = [0; 16];
    let cases = [
        ClientRequest::builder("", "/", key),
        ClientRequest::builder("a b", "/", key),
        ClientRequest::builder("user@host", "/", key),
        ClientRequest::builder("host", "chat", key),
        ClientRequest::builder("host", "/a b", key),
        ClientRequest::builder("host", "/a#frag", key),
        ClientRequest::builder("host", "/", key).protocol("a b"),
        ClientRequest::builder("host", "/", key)
            .protocol("a")
            .protocol("a"),
        ClientRequest::builder("host", "/", key).extension("x; =1"),
        ClientRequest::builder("host", "/", key).origin("http://a\r\nX: 1"),
        ClientRequest::builder("host", "/", key).header("X-A", "1\r\nX-B: 2"),
        ClientRequest::builder("host", "/", key).header("X A", "1"),
        ClientRequest::builder("host", "/", key).header("sec-websocket-key", "x"),
        ClientRequest::builder("host", "/", key).header("HOST", "x"),
    ];
    for builder in cases {
        let debug = format!("{builder:?}");
        let err = builder.build().expect_err(&debug);
        assert!(
            matches!(err, HandshakeError::InvalidClientRequest { .. }),
            "{err:?}"
        );
        assert!(!err.to_string().contains('\n'), "{err}");
    }
}

#[test]
fn accepts_a_valid_response_and_keeps_following_bytes() {
    let request = client_request();
    let response = switching(&request, "Sec-WebSocket-Protocol: v2.chat\r\n");
    let wire = format!("{response}\u{81}\u{2}hi");
    let (head, used) = parse_response(wire.as_bytes(), &config())
        .expect("valid")
        .expect("complete");
    assert_eq!(used, response.len());
    let accepted = validate_response(&head, &request).expect("accepted");
    assert_eq!(accepted.protocol.as_deref(), Some("v2.chat"));
    assert!(accepted.extensions.is_empty());
}

#[test]
fn partial_response_at_every_split_point() {
    let response = switching(&client_request(), "");
    for cut in 0..response.len() {
        let partial = response
            .as_bytes()
            .get(..cut)
            .expect("cut within the response");
        assert!(
            matches!(parse_response(partial, &config()), Ok(None)),
            "cut at {cut} should ask for more"
        );
    }
}

#[test]
fn rejects_a_wrong_accept() {
    let request = client_request();
    let response = switching(&request, "").replace(request.expected_accept(), RFC_ACCEPT);
    let Err(HandshakeError::InvalidAccept(mismatch)) = validate(&response, &request) else {
        panic!("expected InvalidAccept");
    };
    assert_eq!(mismatch.expected(), request.expected_accept());
    assert_eq!(mismatch.found(), Some(RFC_ACCEPT));
}

#[test]
fn rejects_a_missing_or_repeated_accept() {
    let request = client_request();
    let missing = "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n";
    let Err(HandshakeError::InvalidAccept(mismatch)) = validate(missing, &request) else {
        panic!("expected InvalidAccept");
    };
    assert_eq!(mismatch.found(), None);
    assert!(mismatch.expected() == request.expected_accept());

    let line = format!("Sec-WebSocket-Accept: {}\r\n", request.expected_accept());
    let repeated = switching(&request, &line);
    let err = validate(&repeated, &request).expect_err("two accept headers");
    assert!(matches!(err, HandshakeError::InvalidAccept(_)), "{err:?}");
}

#[test]
fn rejects_an_unoffered_protocol() {
    let request = client_request();
    for value in ["v3.chat", "V2.CHAT", "v1.chat, v2.chat"] {
        let response = switching(&request, &format!("Sec-WebSocket-Protocol: {value}\r\n"));
        let err = validate(&response, &request).expect_err(value);
        assert_eq!(
            err,
            HandshakeError::UnofferedProtocol {
                found: value.into()
            }
        );
    }
}

#[test]
fn rejects_any_protocol_when_none_was_offered() {
    let request = ClientRequest::builder("host", "/", [1; 16])
        .build()
        .expect("valid");
    let response = switching(&request, "Sec-WebSocket-Protocol: chat\r\n");
    let err = validate(&response, &request).expect_err("none offered");
    assert_eq!(
        err,
        HandshakeError::UnofferedProtocol {
            found: "chat".into()
        }
    );
    let accepted = validate(&switching(&request, ""), &request).expect("no protocol is fine");
    assert_eq!(accepted.protocol, None);
}

#[test]
fn rejects_an_unoffered_extension() {
    let request = client_request();
    let response = switching(
        &request,
        "Sec-WebSocket-Extensions: x-webkit-deflate-frame\r\n",
    );
    let err = validate(&response, &request).expect_err("unoffered");
    assert_eq!(
        err,
        HandshakeError::UnofferedExtension {
            found: "x-webkit-deflate-frame".into()
        }
    );

    let plain = ClientRequest::builder("host", "/", [1; 16])
        .build()
        .expect("valid");
    let response = switching(&plain, "Sec-WebSocket-Extensions: permessage-deflate\r\n");
    let err = validate(&response, &plain).expect_err("none offered");
    assert!(
        matches!(err, HandshakeError::UnofferedExtension { .. }),
        "{err:?}"
    );

    let response = switching(
        &request,
        "Sec-WebSocket-Extensions: permessage-deflate; ;\r\n",
    );
    let err = validate(&response, &request).expect_err("malformed");
    assert!(
        matches!(err, HandshakeError::InvalidExtensions { .. }),
        "{err:?}"
    );
}

#[test]
fn accepts_an_offered_extension_with_parameters() {
    let request = client_request();
    let response = switching(
        &request,
        "Sec-WebSocket-Extensions: Permessage-Deflate; server_no_context_takeover\r\n",
    );
    let accepted = validate(&response, &request).expect("offered");
    let [deflate] = accepted.extensions.as_slice() else {
        panic!("one extension expected");
    };
    assert_eq!(deflate.param("server_no_context_takeover"), Some(None));
}

#[test]
fn rejects_missing_upgrade_connection_and_old_http() {
    let request = client_request();
    let no_upgrade = switching(&request, "").replace("Upgrade: websocket\r\n", "");
    let err = validate(&no_upgrade, &request).expect_err("no upgrade");
    assert_eq!(err, HandshakeError::MissingUpgrade { found: None });

    let no_connection = switching(&request, "").replace("Connection: Upgrade", "Connection: close");
    let err = validate(&no_connection, &request).expect_err("no connection upgrade");
    assert_eq!(
        err,
        HandshakeError::MissingConnectionUpgrade {
            found: Some("close".into())
        }
    );

    let old = switching(&request, "").replace("HTTP/1.1", "HTTP/1.0");
    let err = validate(&old, &request).expect_err("http/1.0");
    assert_eq!(
        err,
        HandshakeError::UnsupportedHttpVersion {
            found: "HTTP/1.0".into()
        }
    );
}

#[test]
fn non_101_status_keeps_the_head_readable() {
    let request = client_request();
    let response = "HTTP/1.1 429 Too Many Requests\r\n\
                    Retry-After: 30\r\n\
                    content-length: 9\r\n\
                    Content-Type: text/plain\r\n\
                    \r\n";
    let wire = format!("{response}slow down");
    let (head, used) = parse_response(wire.as_bytes(), &config())
        .expect("valid")
        .expect("complete");
    assert_eq!(used, response.len(), "the body is left to the caller");
    let err = validate_response(&head, &request).expect_err("not 101");
    let HandshakeError::UnexpectedStatus { status, head } = &err else {
        panic!("expected UnexpectedStatus, found {err:?}");
    };
    assert_eq!(*status, 429);
    assert_eq!(head.reason, "Too Many Requests");
    assert_eq!(head.header_str("retry-after"), Some("30"));
    assert_eq!(head.content_length(), Some(9));
    assert!(!head.is_chunked());
    assert_eq!(
        err.to_string(),
        "unexpected http status: expected 101, found 429 Too Many Requests"
    );
}

#[test]
fn content_length_edge_cases() {
    let length =
        |headers: &str| head(&format!("HTTP/1.1 404 Not Found\r\n{headers}\r\n")).content_length();
    assert_eq!(length(""), None);
    assert_eq!(length("Content-Length: 5, 5\r\n"), Some(5));
    assert_eq!(length("Content-Length: 5\r\nContent-Length: 6\r\n"), None);
    assert_eq!(length("Content-Length: -1\r\n"), None);
    assert_eq!(length("Content-Length: 99999999999999999999999\r\n"), None);
    assert_eq!(
        length("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"),
        None
    );
}

#[test]
fn response_limits_apply() {
    let lines: String = (0..70).map(|i| format!("X-H{i}: v\r\n")).collect();
    let response = format!("HTTP/1.1 200 OK\r\n{lines}\r\n");
    let err = parse_response(response.as_bytes(), &config()).expect_err("too many");
    assert_eq!(err, HandshakeError::TooManyHeaders { limit: 64 });

    let endless = format!("HTTP/1.1 200 OK\r\nX: {}", "a".repeat(9000));
    let err = parse_response(endless.as_bytes(), &config()).expect_err("too large");
    assert_eq!(err, HandshakeError::HeaderSectionTooLarge { limit: 8192 });

    let err = parse_response(b"HTTP/2 200 OK\r\n\r\n", &config()).expect_err("http/2");
    assert!(
        matches!(err, HandshakeError::UnsupportedHttpVersion { .. }),
        "{err:?}"
    );
}

#[test]
fn debug_hides_extra_header_values() {
    let debug = format!("{:?}", client_request());
    assert!(
        debug.contains("Authorization") && !debug.contains("secret"),
        "{debug}"
    );
}
