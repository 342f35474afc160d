//! Property-style loops without extra dependencies: mutated and random input never panics,
//! consumed lengths stay in bounds, and errors keep their message rules.

use super::*;

/// A small deterministic xorshift generator, enough to vary inputs reproducibly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes().first().copied().unwrap_or(0)
    }
}

/// Bytes that matter to the parsers, so mutations hit interesting paths often.
const INTERESTING: &[u8] = b"\r\n:;,= \t\"\\\0\x7f\xffaZ9/";

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(out.len() + 1);
        let byte = if rng.below(2) == 0 {
            INTERESTING
                .get(rng.below(INTERESTING.len()))
                .copied()
                .unwrap_or(b'x')
        } else {
            rng.byte()
        };
        match rng.below(3) {
            0 => out.insert(at, byte),
            1 if at < out.len() => {
                out.remove(at);
            }
            _ => {
                if let Some(b) = out.get_mut(at) {
                    *b = byte;
                }
            }
        }
    }
    out
}

/// Every error must render as a lowercase message without a trailing period of its own, and turn into
/// a response whose status matches.
fn check_error(err: &HandshakeError) {
    let message = err.to_string();
    // A trailing period may only come from the peer's value, shown last.
    let from_value = message
        .rsplit("found ")
        .next()
        .is_some_and(|v| v != message);
    assert!(!message.ends_with('.') || from_value, "{message}");
    assert!(
        message.starts_with(|c: char| c.is_ascii_lowercase()),
        "{message}"
    );
    let response = err.to_response();
    let status = format!("HTTP/1.1 {} ", err.http_status());
    assert!(response.starts_with(status.as_bytes()), "{err:?}");
    let head_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response has a head");
    let head = response.get(..head_end).expect("head within response");
    assert!(
        head.split(|&b| b == b'\n')
            .all(|line| !line.contains(&b'\r') || line.ends_with(b"\r")),
        "stray CR in {err:?}"
    );
}

#[test]
fn mutated_requests_never_panic() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut accepted = 0;
    for _ in 0..20_000 {
        let input = mutate(&mut rng, RFC_REQUEST.as_bytes());
        match parse_request(&input, &config()) {
            Ok(Some((req, used))) => {
                accepted += 1;
                assert!(used <= input.len());
                let response =
                    accept_response(&req, req.protocols().first().map(String::as_str), None, &[]);
                assert!(matches!(parse_response(&response, &config()), Ok(Some(_))));
            }
            Ok(None) => {}
            Err(err) => check_error(&err),
        }
    }
    assert!(accepted > 0, "some mutations should stay valid");
}

#[test]
fn mutated_responses_never_panic() {
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let request = client_request();
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: v1.chat\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=\"12\"\r\n\r\n",
        request.expected_accept()
    );
    assert!(validate_response(&head_of(response.as_bytes()), &request).is_ok());
    for _ in 0..20_000 {
        let input = mutate(&mut rng, response.as_bytes());
        match parse_response(&input, &config()) {
            Ok(Some((head, used))) => {
                assert!(used <= input.len());
                if let Err(err) = validate_response(&head, &request) {
                    check_error(&err);
                }
            }
            Ok(None) => {}
            Err(err) => check_error(&err),
        }
    }
}

fn head_of(bytes: &[u8]) -> ResponseHead {
    parse_response(bytes, &config())
        .expect("valid")
        .expect("complete")
        .0
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng(0xdead_beef_cafe_f00d);
    for _ in 0..5_000 {
        let len = rng.below(300);
        let input: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        let _ = parse_request(&input, &config());
        let _ = parse_response(&input, &config());
    }
}

#[test]
fn tight_limits_never_panic() {
    for max_header_bytes in 0..40 {
        for max_headers in 0..3 {
            let config = HandshakeConfig::default()
                .with_max_header_bytes(max_header_bytes)
                .with_max_headers(max_headers);
            match parse_request(RFC_REQUEST.as_bytes(), &config) {
                Err(
                    HandshakeError::HeaderSectionTooLarge { .. }
                    | HandshakeError::TooManyHeaders { .. },
                ) => {}
                other => panic!("limits {max_header_bytes}/{max_headers}: {other:?}"),
            }
        }
    }
}

#[test]
fn extensions_display_round_trips() {
    let mut rng = Rng(0x1234_5678_9abc_def0);
    let names = ["permessage-deflate", "x-a", "b"];
    let params = ["client_max_window_bits", "p", "q"];
    for _ in 0..500 {
        let mut value = String::new();
        for e in 0..=rng.below(3) {
            if e > 0 {
                value.push_str(if rng.below(2) == 0 { "," } else { " ,, " });
            }
            value.push_str(names.get(rng.below(names.len())).copied().unwrap_or("x"));
            for _ in 0..rng.below(3) {
                value.push_str(if rng.below(2) == 0 { ";" } else { " ; " });
                value.push_str(params.get(rng.below(params.len())).copied().unwrap_or("p"));
                match rng.below(3) {
                    0 => value.push_str(&format!("={}", rng.below(16))),
                    1 => value.push_str(&format!("=\"{}\"", rng.below(16))),
                    _ => {}
                }
            }
        }
        let wire = request_plus(&format!("Sec-WebSocket-Extensions: {value}\r\n"));
        let (req, _) = parse_ok(&wire);
        let shown: Vec<String> = req.extensions().iter().map(ToString::to_string).collect();
        let again = request_plus(&format!(
            "Sec-WebSocket-Extensions: {}\r\n",
            shown.join(", ")
        ));
        let (again, _) = parse_ok(&again);
        assert_eq!(req.extensions(), again.extensions(), "{value}");
    }
}
