//! Fuzz target `handshake_response`: raw bytes into `parse_response`, as a client reads the
//! server's answer, then into `validate_response` against a fixed `ClientRequest`.
//!
//! Checked: an incomplete head is only reported below the size limit; a parse error has a
//! status and a well-formed rejection response; a parsed head used no more than the input and
//! the limits allow, parses the same from its head alone and is incomplete one byte short; a
//! response the client accepts is a `101` over HTTP/1.1 with the upgrade tokens, exactly one
//! matching `Sec-WebSocket-Accept`, an offered subprotocol (or none) and offered extensions;
//! any other status is refused as `UnexpectedStatus`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tether_fuzz::check_rejection;
use tether_proto::handshake::{
    ClientRequest, HandshakeConfig, HandshakeError, ResponseHead, parse_response, validate_response,
};

/// The statuses a response parse error may carry.
const PARSE_STATUSES: &[u16] = &[400, 431, 505];

/// The request every response is checked against: the key is 16 bytes of 7, whose accept
/// value is in the seed corpus.
fn request() -> &'static ClientRequest {
    static REQUEST: OnceLock<ClientRequest> = OnceLock::new();
    REQUEST.get_or_init(|| {
        let built = ClientRequest::builder("example.com", "/chat", [7; 16])
            .protocol("chat")
            .protocol("superchat")
            .extension("permessage-deflate; client_max_window_bits")
            .build();
        match built {
            Ok(request) => request,
            Err(error) => panic!("the fixed request does not build: {error}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let small = HandshakeConfig::default()
        .with_max_header_bytes(256)
        .with_max_headers(8);
    for config in [HandshakeConfig::default(), small] {
        check(data, &config);
    }
});

fn check(data: &[u8], config: &HandshakeConfig) {
    match parse_response(data, config) {
        Ok(None) => assert!(data.len() < config.max_header_bytes),
        Err(error) => check_rejection(&error, PARSE_STATUSES),
        Ok(Some((head, used))) => {
            assert!(used > 0 && used <= data.len() && used <= config.max_header_bytes);
            assert!(head.headers.len() <= config.max_headers);
            assert!(head.version <= 1);
            let only_head = data.get(..used).unwrap_or_default();
            assert_eq!(
                parse_response(only_head, config),
                Ok(Some((head.clone(), used))),
                "the bytes after the head changed the result"
            );
            let short = only_head.get(..used - 1).unwrap_or_default();
            assert_eq!(parse_response(short, config), Ok(None), "one byte short");
            if head.content_length().is_some() {
                assert!(head.header("transfer-encoding").is_none());
            }
            check_validation(&head);
        }
    }
}

/// Checks `validate_response` against the rules, independently of how it is written.
fn check_validation(head: &ResponseHead) {
    let request = request();
    match validate_response(head, request) {
        Ok(accepted) => {
            assert_eq!((head.status, head.version), (101, 1));
            assert!(head.has_token("upgrade", "websocket"));
            assert!(head.has_token("connection", "upgrade"));
            let accepts: Vec<&[u8]> = head.header_values("sec-websocket-accept").collect();
            assert_eq!(accepts, [request.expected_accept().as_bytes()]);
            if let Some(protocol) = &accepted.protocol {
                assert!(
                    request.protocols().contains(protocol),
                    "unoffered {protocol}"
                );
            }
            for extension in &accepted.extensions {
                let offered = request
                    .extensions()
                    .iter()
                    .any(|o| o.name().eq_ignore_ascii_case(extension.name()));
                assert!(offered, "unoffered extension {extension:?}");
            }
        }
        Err(error) => {
            if head.status != 101 {
                assert!(
                    matches!(&error, HandshakeError::UnexpectedStatus { status, head: got }
                        if *status == head.status && **got == *head),
                    "status {} refused with {error:?}",
                    head.status
                );
            }
            let status = error.http_status();
            assert!(
                matches!(status, 400 | 426 | 502 | 505),
                "{error:?}: {status}"
            );
            assert!(!error.to_string().is_empty());
        }
    }
}
