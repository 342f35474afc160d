//! Fuzz target `handshake_request`: raw bytes into `parse_request`, as the server reads a
//! client's upgrade request, under the default limits and under small ones.
//!
//! Checked: an incomplete head is only reported below the size limit; a refusal has a
//! server-side HTTP status and a well-formed rejection response; an accepted request used no
//! more than the input and the limits allow, parses the same from its head alone, is
//! incomplete one byte short, and its `accept_response` parses back with `parse_response` as
//! a `101` that a client holding the same key (and offering the chosen subprotocol) accepts.

#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use tether_fuzz::check_rejection;
use tether_proto::handshake::{
    ClientRequest, HandshakeConfig, Request, accept_key, accept_response, parse_request,
    parse_response, validate_response,
};

/// The statuses a server-side refusal may carry.
const SERVER_STATUSES: &[u16] = &[400, 405, 426, 431, 505];

fuzz_target!(|data: &[u8]| {
    let small = HandshakeConfig::default()
        .with_max_header_bytes(256)
        .with_max_headers(8);
    for config in [HandshakeConfig::default(), small] {
        check(data, &config);
    }
});

fn check(data: &[u8], config: &HandshakeConfig) {
    match parse_request(data, config) {
        Ok(None) => assert!(data.len() < config.max_header_bytes),
        Err(error) => check_rejection(&error, SERVER_STATUSES),
        Ok(Some((request, used))) => {
            assert!(used > 0 && used <= data.len() && used <= config.max_header_bytes);
            assert!(request.headers().len() <= config.max_headers);
            let head = data.get(..used).unwrap_or_default();
            assert_eq!(
                parse_request(head, config),
                Ok(Some((request.clone(), used))),
                "the bytes after the head changed the result"
            );
            let short = head.get(..used - 1).unwrap_or_default();
            assert_eq!(parse_request(short, config), Ok(None), "one byte short");
            check_accepted(&request);
        }
    }
}

/// What must hold of any request the server accepts.
fn check_accepted(request: &Request) {
    assert_eq!(request.method(), "GET");
    assert!(!request.host().is_empty());
    let key = STANDARD.decode(request.key()).ok();
    let key: Option<[u8; 16]> = key.and_then(|k| k.try_into().ok());
    let Some(key) = key else {
        panic!(
            "accepted a key that is not base64 of 16 bytes: {:?}",
            request.key()
        );
    };
    assert_eq!(request.accept_key(), accept_key(request.key()));

    let protocol = request.protocols().first().map(String::as_str);
    assert_eq!(request.select_protocol(request.protocols()), protocol);
    let response = accept_response(request, protocol, None, &[]);
    let head = match parse_response(&response, &HandshakeConfig::default()) {
        Ok(Some((head, used))) => {
            assert_eq!(used, response.len());
            head
        }
        other => panic!("accept_response for {request:?} does not parse: {other:?}"),
    };
    assert_eq!((head.status, head.version), (101, 1));
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(request.accept_key().as_bytes())
    );

    // A client that sent this request, where the builder can express it, accepts the answer.
    let mut builder = ClientRequest::builder(request.host(), request.path(), key);
    if let Some(protocol) = protocol {
        builder = builder.protocol(protocol);
    }
    if let Ok(client) = builder.build() {
        assert_eq!(client.key(), request.key());
        match validate_response(&head, &client) {
            Ok(accepted) => assert_eq!(accepted.protocol.as_deref(), protocol),
            Err(error) => panic!("client refused the accept for {request:?}: {error}"),
        }
    }
}
