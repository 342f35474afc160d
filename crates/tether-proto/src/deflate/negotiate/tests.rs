//! The negotiation's tests: the server's answer to offers (browsers', Autobahn's, malformed
//! ones), the client's checks of answers, and round trips between the two.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use super::*;
use crate::handshake::parse_into;

/// Parses a `Sec-WebSocket-Extensions` value.
fn parse(value: &str) -> Vec<Extension> {
    let mut out = Vec::new();
    parse_into(value.as_bytes(), &mut out).unwrap();
    out
}

fn config(server_nct: bool, client_nct: bool, server_bits: u8, client_bits: u8) -> DeflateConfig {
    DeflateConfig {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
        ..DeflateConfig::server()
    }
}

/// A server that asks for nothing: answers exactly what is offered.
fn plain() -> DeflateConfig {
    config(false, false, 15, 15)
}

fn dp(server_nct: bool, client_nct: bool, server_bits: u8, client_bits: u8) -> DeflateParams {
    DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }
}

fn answer(offer: &str, config: &DeflateConfig) -> Option<NegotiatedResponse> {
    server_answer(&parse(offer), config)
}

fn header(offer: &str, config: &DeflateConfig) -> String {
    answer(offer, config).unwrap().header
}

fn validate(answer: &str, config: &DeflateConfig) -> Result<Option<DeflateParams>, HandshakeError> {
    validate_answer(&parse(answer), config)
}

fn rejected(answer: &str, config: &DeflateConfig) -> String {
    match validate(answer, config) {
        Err(err @ HandshakeError::UnacceptableExtension { .. }) => err.to_string(),
        other => panic!("{answer:?}: expected UnacceptableExtension, got {other:?}"),
    }
}

#[test]
fn server_answers_a_bare_offer_bare() {
    let response = answer("permessage-deflate", &plain()).unwrap();
    assert_eq!(response.header, "permessage-deflate");
    assert_eq!(response.params, DeflateParams::new());
}

#[test]
fn server_defaults_add_both_no_context_takeovers() {
    let response = answer("permessage-deflate", &DeflateConfig::server()).unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(response.params, dp(true, true, 15, 15));
}

#[test]
fn server_declines_malformed_offers() {
    let declined = [
        "permessage-deflate; foo",
        "permessage-deflate; foo=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; Client_No_Context_Takeover",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=true",
        "permessage-deflate; client_no_context_takeover=\"x\"",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; server_max_window_bits=0",
        "permessage-deflate; server_max_window_bits=255",
        "permessage-deflate; server_max_window_bits=9999999999999999999999",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=+9",
        "permessage-deflate; client_max_window_bits=-9",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=9.0",
        "permessage-deflate; client_max_window_bits=0x9",
    ];
    for offer in declined {
        for config in [plain(), DeflateConfig::server(), config(true, true, 9, 9)] {
            assert_eq!(answer(offer, &config), None, "{offer:?}");
        }
    }
}

#[test]
fn server_declines_an_empty_window_value() {
    // The header parser refuses `=` without a value and an empty quoted string is not
    // a token, so an empty value cannot reach the negotiation; check the value parser.
    assert_eq!(parse_bits(""), None);
    let mut out = Vec::new();
    assert!(parse_into(b"permessage-deflate; server_max_window_bits=", &mut out).is_err());
    assert!(parse_into(b"permessage-deflate; server_max_window_bits=\"\"", &mut out).is_err());
}

#[test]
fn window_values_are_decimal_8_to_15() {
    for bits in 8..=15u8 {
        assert_eq!(parse_bits(&bits.to_string()), Some(bits));
    }
    for value in [
        "", "0", "1", "7", "16", "08", "015", "+8", "-8", " 9", "9 ", "a", "１０",
    ] {
        assert_eq!(parse_bits(value), None, "{value:?}");
    }
}

#[test]
fn quoted_window_values_are_read_unquoted() {
    assert_eq!(
        header(
            "permessage-deflate; server_max_window_bits=\"10\"",
            &plain()
        ),
        "permessage-deflate; server_max_window_bits=10"
    );
}

#[test]
fn names_compare_case_insensitively() {
    let response = answer(
        "PerMessage-Deflate; SERVER_NO_CONTEXT_TAKEOVER; Client_Max_Window_Bits=10",
        &plain(),
    )
    .unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
    );
    assert_eq!(response.params, dp(true, false, 15, 10));

    let params = validate(
        "PERMESSAGE-DEFLATE; Client_No_Context_Takeover; SERVER_MAX_WINDOW_BITS=12",
        &DeflateConfig::client(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(params, dp(false, true, 12, 15));
}

#[test]
fn server_skips_other_extensions_and_declined_offers() {
    let response = answer(
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, \
         permessage-deflate; foo, permessage-deflate; server_max_window_bits=10, \
         permessage-deflate",
        &plain(),
    )
    .unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; server_max_window_bits=10"
    );
    assert_eq!(response.params, dp(false, false, 10, 15));

    let response = answer(
        "permessage-deflate; client_max_window_bits=16, permessage-deflate; client_max_window_bits",
        &config(false, false, 15, 11),
    )
    .unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; client_max_window_bits=11"
    );
    assert_eq!(response.params.client_max_window_bits, 11);
}

#[test]
fn server_answers_none_without_an_acceptable_offer() {
    assert_eq!(server_answer(&[], &plain()), None);
    assert_eq!(answer("x-webkit-deflate-frame, foo; bar=1", &plain()), None);
    assert_eq!(
        answer(
            "permessage-deflate; server_max_window_bits=8, permessage-deflate; bar",
            &plain()
        ),
        None
    );
}

#[test]
fn server_no_context_takeover_from_offer_or_config() {
    for (offer, config, expected) in [
        ("permessage-deflate", plain(), false),
        (
            "permessage-deflate; server_no_context_takeover",
            plain(),
            true,
        ),
        ("permessage-deflate", config(true, false, 15, 15), true),
        (
            "permessage-deflate; server_no_context_takeover",
            config(true, false, 15, 15),
            true,
        ),
    ] {
        let response = answer(offer, &config).unwrap();
        assert_eq!(
            response.params.server_no_context_takeover, expected,
            "{offer}"
        );
        assert_eq!(
            response.header.contains("server_no_context_takeover"),
            expected,
            "{offer}"
        );
    }
}

#[test]
fn client_no_context_takeover_from_offer_or_config() {
    for (offer, config, expected) in [
        ("permessage-deflate", plain(), false),
        (
            "permessage-deflate; client_no_context_takeover",
            plain(),
            true,
        ),
        ("permessage-deflate", config(false, true, 15, 15), true),
        (
            "permessage-deflate; client_no_context_takeover",
            config(false, true, 15, 15),
            true,
        ),
    ] {
        let response = answer(offer, &config).unwrap();
        assert_eq!(
            response.params.client_no_context_takeover, expected,
            "{offer}"
        );
        assert_eq!(
            response.header.contains("client_no_context_takeover"),
            expected,
            "{offer}"
        );
    }
}

#[test]
fn server_max_window_bits_answered_only_when_offered() {
    // Not offered: not in the answer, but the server may compress with a smaller window.
    let response = answer("permessage-deflate", &config(false, false, 10, 15)).unwrap();
    assert_eq!(response.header, "permessage-deflate");
    assert_eq!(response.params.server_max_window_bits, 10);

    // Offered: the smaller of the offer and the configuration.
    for (offered, configured, expected) in [(9, 15, 9), (12, 10, 10), (10, 12, 10), (15, 15, 15)] {
        let response = answer(
            &format!("permessage-deflate; server_max_window_bits={offered}"),
            &config(false, false, configured, 15),
        )
        .unwrap();
        assert_eq!(
            response.header,
            format!("permessage-deflate; server_max_window_bits={expected}")
        );
        assert_eq!(response.params.server_max_window_bits, expected);
    }
}

#[test]
fn client_max_window_bits_rules() {
    // Not offered: never in the answer, whatever the configuration.
    let response = answer("permessage-deflate", &config(false, false, 15, 10)).unwrap();
    assert_eq!(response.header, "permessage-deflate");
    assert_eq!(response.params.client_max_window_bits, 15);

    // Offered without a value: the configured window, named only when under 15.
    let response = answer("permessage-deflate; client_max_window_bits", &plain()).unwrap();
    assert_eq!(response.header, "permessage-deflate");
    assert_eq!(response.params.client_max_window_bits, 15);
    let response = answer(
        "permessage-deflate; client_max_window_bits",
        &config(false, false, 15, 10),
    )
    .unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; client_max_window_bits=10"
    );
    assert_eq!(response.params.client_max_window_bits, 10);

    // Offered with a value: always answered, the smaller of the two.
    for (offered, configured, expected) in [(15, 15, 15), (12, 10, 10), (10, 12, 10), (9, 15, 9)] {
        let response = answer(
            &format!("permessage-deflate; client_max_window_bits={offered}"),
            &config(false, false, 15, configured),
        )
        .unwrap();
        assert_eq!(
            response.header,
            format!("permessage-deflate; client_max_window_bits={expected}")
        );
        assert_eq!(response.params.client_max_window_bits, expected);
    }
}

#[test]
fn server_window_bits_8() {
    // The server cannot compress with 8: declined.
    assert_eq!(
        answer("permessage-deflate; server_max_window_bits=8", &plain()),
        None
    );
    // The client may: answered 8, inflated with 9.
    let response = answer("permessage-deflate; client_max_window_bits=8", &plain()).unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; client_max_window_bits=8"
    );
    assert_eq!(response.params, dp(false, false, 15, 9));
}

#[test]
fn client_window_bits_8() {
    // The server compresses with 8: accepted, inflated with 9.
    let mut client = DeflateConfig::client();
    client.server_max_window_bits = 10;
    let params = validate("permessage-deflate; server_max_window_bits=8", &client)
        .unwrap()
        .unwrap();
    assert_eq!(params.server_max_window_bits, 9);
    let params = validate(
        "permessage-deflate; server_max_window_bits=8",
        &DeflateConfig::client(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(params.server_max_window_bits, 9);
    // The client cannot compress with 8.
    let message = rejected(
        "permessage-deflate; client_max_window_bits=8",
        &DeflateConfig::client(),
    );
    assert_eq!(
        message,
        "unacceptable extension answer: expected client_max_window_bits=9..=15, \
         found client_max_window_bits=8"
    );
}

#[test]
fn header_parameter_order() {
    let response = answer(
        "permessage-deflate; client_max_window_bits=12; server_max_window_bits=11; \
         client_no_context_takeover; server_no_context_takeover",
        &plain(),
    )
    .unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=11; client_max_window_bits=12"
    );
    assert_eq!(response.params, dp(true, true, 11, 12));
}

#[test]
fn browser_offer() {
    let offer = "permessage-deflate; client_max_window_bits";
    let response = answer(offer, &DeflateConfig::server()).unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    assert_eq!(response.params, dp(true, true, 15, 15));
    let response = answer(offer, &plain()).unwrap();
    assert_eq!(response.header, "permessage-deflate");
    assert_eq!(response.params, DeflateParams::new());
}

#[test]
fn autobahn_offers() {
    let server = DeflateConfig::server();
    for (offer, expected_header, expected) in [
        (
            "permessage-deflate",
            "permessage-deflate",
            DeflateParams::new(),
        ),
        (
            "permessage-deflate; client_no_context_takeover; client_max_window_bits",
            "permessage-deflate; client_no_context_takeover",
            dp(false, true, 15, 15),
        ),
        (
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
            dp(true, false, 15, 15),
        ),
        (
            "permessage-deflate; server_max_window_bits=9",
            "permessage-deflate; server_max_window_bits=9",
            dp(false, false, 9, 15),
        ),
        (
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15",
            DeflateParams::new(),
        ),
        (
            "permessage-deflate; client_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=9",
            dp(false, false, 15, 9),
        ),
        (
            "permessage-deflate; client_max_window_bits=15",
            "permessage-deflate; client_max_window_bits=15",
            DeflateParams::new(),
        ),
        (
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=8",
            dp(false, false, 15, 9),
        ),
        (
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=10",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=10",
            dp(true, true, 12, 10),
        ),
    ] {
        let response = answer(offer, &plain()).unwrap();
        assert_eq!(response.header, expected_header, "{offer}");
        assert_eq!(response.params, expected, "{offer}");
        // With the server defaults both no-context-takeover flags are added.
        let response = answer(offer, &server).unwrap();
        assert!(response.header.starts_with(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ));
        assert_eq!(
            response.params,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                ..expected
            },
            "{offer}"
        );
    }
    // Autobahn 13.x also offers several alternatives in one header.
    let response = answer(
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; client_max_window_bits=9",
        &plain(),
    )
    .unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; client_max_window_bits=9"
    );
}

#[test]
fn client_offers() {
    assert_eq!(
        client_offer(&DeflateConfig::client()),
        "permessage-deflate; client_no_context_takeover; client_max_window_bits"
    );
    assert_eq!(
        client_offer(&plain()),
        "permessage-deflate; client_max_window_bits"
    );
    assert_eq!(
        client_offer(&config(true, true, 10, 12)),
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
         server_max_window_bits=10; client_max_window_bits=12"
    );
    // Out-of-range configuration is clamped into 9..=15.
    assert_eq!(
        client_offer(&config(false, false, 0, 8)),
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"
    );
    assert_eq!(
        client_offer(&config(false, false, 200, 16)),
        "permessage-deflate; client_max_window_bits"
    );
    // Every offer parses as one extension that a server accepts.
    let offer = parse(&client_offer(&config(true, true, 9, 9)));
    assert_eq!(offer.len(), 1);
    assert!(server_answer(&offer, &plain()).is_some());
}

#[test]
fn client_without_deflate_in_the_answer() {
    assert_eq!(validate_answer(&[], &DeflateConfig::client()), Ok(None));
    assert_eq!(validate("x-other; a=1", &DeflateConfig::client()), Ok(None));
}

#[test]
fn client_rejects_malformed_answers() {
    let client = DeflateConfig::client();
    for answer in [
        "permessage-deflate, permessage-deflate",
        "permessage-deflate; server_no_context_takeover, PERMESSAGE-DEFLATE",
        "permessage-deflate; foo",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; CLIENT_NO_CONTEXT_TAKEOVER",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_max_window_bits=10; client_max_window_bits=10",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=1",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; server_max_window_bits=+9",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=abc",
        "permessage-deflate; client_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=8",
    ] {
        let message = rejected(answer, &client);
        assert!(
            message.starts_with("unacceptable extension answer: "),
            "{message}"
        );
    }
    assert_eq!(
        rejected(
            "permessage-deflate, permessage-deflate, permessage-deflate",
            &client
        ),
        "unacceptable extension answer: expected one permessage-deflate, found 3"
    );
    assert_eq!(
        rejected("permessage-deflate; foo=1", &client),
        "unacceptable extension answer: expected a permessage-deflate parameter, found foo"
    );
    assert_eq!(
        rejected("permessage-deflate; server_max_window_bits=16", &client),
        "unacceptable extension answer: expected server_max_window_bits=8..=15, \
         found server_max_window_bits=16"
    );
}

#[test]
fn client_checks_windows_against_its_offer() {
    let client = config(false, false, 10, 12);
    // Larger than offered.
    assert_eq!(
        rejected("permessage-deflate; server_max_window_bits=11", &client),
        "unacceptable extension answer: expected server_max_window_bits=8..=10 as offered, \
         found server_max_window_bits=11"
    );
    rejected(
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits=13",
        &client,
    );
    // Offered server_max_window_bits must be answered.
    assert_eq!(
        rejected("permessage-deflate", &client),
        "unacceptable extension answer: expected server_max_window_bits=8..=10 as offered, \
         found none"
    );
    // Equal or smaller: accepted.
    let params = validate(
        "permessage-deflate; server_max_window_bits=9; client_max_window_bits=11",
        &client,
    )
    .unwrap()
    .unwrap();
    assert_eq!(params, dp(false, false, 9, 11));
    let params = validate("permessage-deflate; server_max_window_bits=10", &client)
        .unwrap()
        .unwrap();
    assert_eq!(params, dp(false, false, 10, 12));
}

#[test]
fn client_accepts_unrequested_server_window_and_client_window() {
    // The client did not ask for a server window: any 8..=15 is fine.
    let params = validate("permessage-deflate; server_max_window_bits=12", &plain())
        .unwrap()
        .unwrap();
    assert_eq!(params.server_max_window_bits, 12);
    // client_max_window_bits is always offered, bare when the client allows 15.
    let params = validate("permessage-deflate; client_max_window_bits=15", &plain())
        .unwrap()
        .unwrap();
    assert_eq!(params.client_max_window_bits, 15);
    let params = validate("permessage-deflate; client_max_window_bits=9", &plain())
        .unwrap()
        .unwrap();
    assert_eq!(params.client_max_window_bits, 9);
    // Absent: the client's own configuration.
    let params = validate("permessage-deflate", &config(false, false, 15, 11))
        .unwrap()
        .unwrap();
    assert_eq!(params.client_max_window_bits, 11);
    assert_eq!(params.server_max_window_bits, 15);
}

#[test]
fn client_no_context_takeover_flags() {
    // Answered without being offered: allowed, and they set the flags.
    let params = validate(
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover",
        &plain(),
    )
    .unwrap()
    .unwrap();
    assert_eq!(params, dp(true, true, 15, 15));
    // client_no_context_takeover offered: the client resets anyway.
    let params = validate("permessage-deflate", &DeflateConfig::client())
        .unwrap()
        .unwrap();
    assert_eq!(params, dp(false, true, 15, 15));
    // server_no_context_takeover offered and left out: the offer was not accepted as made.
    assert_eq!(
        rejected("permessage-deflate", &config(true, false, 15, 15)),
        "unacceptable extension answer: expected server_no_context_takeover as offered, \
         found none"
    );
    let params = validate(
        "permessage-deflate; server_no_context_takeover",
        &config(true, false, 15, 15),
    )
    .unwrap()
    .unwrap();
    assert_eq!(params, dp(true, false, 15, 15));
}

#[test]
fn error_is_a_client_side_502() {
    let err = validate("permessage-deflate; foo", &plain()).unwrap_err();
    assert_eq!(err.http_status(), 502);
    assert!(err.response_headers().is_empty());
}

#[test]
fn long_peer_values_are_cut_in_messages() {
    let name = "x".repeat(500);
    let message = rejected(&format!("permessage-deflate; {name}"), &plain());
    assert!(message.len() < 200, "{message}");
    assert!(message.ends_with("..."), "{message}");
}

#[test]
fn round_trips() {
    let bits = [9, 10, 12, 15];
    let mut configs = Vec::new();
    for server_nct in [false, true] {
        for client_nct in [false, true] {
            for &server_bits in &bits {
                for &client_bits in &bits {
                    configs.push(config(server_nct, client_nct, server_bits, client_bits));
                }
            }
        }
    }
    let mut checked = 0;
    for client in &configs {
        let offer = client_offer(client);
        let offers = parse(&offer);
        for server in &configs {
            let response = server_answer(&offers, server)
                .unwrap_or_else(|| panic!("{offer:?} declined by {server:?}"));
            let answered = parse(&response.header);
            let params = validate_answer(&answered, client)
                .unwrap_or_else(|err| panic!("{offer:?} -> {:?}: {err}", response.header))
                .unwrap();
            let mut expected = response.params;
            if client.server_max_window_bits >= MAX_WINDOW_BITS {
                // Not offered, so not answered: the server may compress with a smaller
                // window than the client's 15, which reads it all the same.
                assert_eq!(
                    expected.server_max_window_bits,
                    server.server_max_window_bits
                );
                expected.server_max_window_bits = MAX_WINDOW_BITS;
            }
            assert_eq!(params, expected, "{offer:?} -> {:?}", response.header);
            // What each end sends fits in what the other end reads with.
            assert!(params.server_max_window_bits >= response.params.server_max_window_bits);
            assert!(params.client_max_window_bits <= client.client_max_window_bits);
            checked += 1;
        }
    }
    assert_eq!(checked, configs.len() * configs.len());
}

#[test]
fn round_trip_with_defaults() {
    let client = DeflateConfig::client();
    let server = DeflateConfig::server();
    let response = server_answer(&parse(&client_offer(&client)), &server).unwrap();
    assert_eq!(
        response.header,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
    );
    let params = validate_answer(&parse(&response.header), &client).unwrap();
    assert_eq!(params, Some(response.params));
    assert_eq!(response.params, dp(true, true, 15, 15));
}

#[test]
fn arbitrary_parameters_never_panic() {
    let names = [
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
        "x",
    ];
    let values = [
        None,
        Some("8"),
        Some("9"),
        Some("15"),
        Some("16"),
        Some("08"),
        Some("a"),
    ];
    let mut headers = Vec::new();
    for a in names {
        for va in values {
            for b in names {
                for vb in values {
                    let mut h = String::from("permessage-deflate");
                    for (n, v) in [(a, va), (b, vb)] {
                        h.push_str("; ");
                        h.push_str(n);
                        if let Some(v) = v {
                            h.push('=');
                            h.push_str(v);
                        }
                    }
                    headers.push(h);
                }
            }
        }
    }
    for h in &headers {
        let extensions = parse(h);
        for config in [
            plain(),
            DeflateConfig::server(),
            DeflateConfig::client(),
            config(true, true, 9, 9),
        ] {
            if let Some(response) = server_answer(&extensions, &config) {
                // An accepted answer is itself a valid, parseable answer.
                assert_eq!(parse(&response.header).len(), 1);
                let p = response.params;
                assert!((9..=15).contains(&p.server_max_window_bits), "{h}");
                assert!((9..=15).contains(&p.client_max_window_bits), "{h}");
            }
            if let Ok(Some(p)) = validate_answer(&extensions, &config) {
                assert!((9..=15).contains(&p.server_max_window_bits), "{h}");
                assert!((9..=15).contains(&p.client_max_window_bits), "{h}");
            }
        }
    }
}
