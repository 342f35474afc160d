//! permessage-deflate negotiation (RFC 7692 sections 5 and 7.1), both roles: the client's
//! offer ([`client_offer`]), the server's choice among the client's offers
//! ([`server_answer`]) and the client's check of that choice ([`validate_answer`]).
//!
//! Everything works on parsed [`Extension`]s and gives the [`DeflateParams`] of the
//! connection. Extension and parameter names compare ASCII case-insensitively. Window bits
//! in a [`DeflateConfig`] outside 9..=15 are clamped into that range.

use super::{DeflateConfig, DeflateParams, EXTENSION_NAME, MAX_WINDOW_BITS, MIN_WINDOW_BITS};
use crate::handshake::{Extension, HandshakeError, shown};

const SERVER_NO_CONTEXT_TAKEOVER: &str = "server_no_context_takeover";
const CLIENT_NO_CONTEXT_TAKEOVER: &str = "client_no_context_takeover";
const SERVER_MAX_WINDOW_BITS: &str = "server_max_window_bits";
const CLIENT_MAX_WINDOW_BITS: &str = "client_max_window_bits";

/// The smallest window bits value the RFC lets a peer name (zlib compresses 8 as 9).
const RFC_MIN_WINDOW_BITS: u8 = 8;

/// A server's acceptance of one permessage-deflate offer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NegotiatedResponse {
    /// What both ends will use.
    pub params: DeflateParams,
    /// The `Sec-WebSocket-Extensions` value to answer with, e.g.
    /// "permessage-deflate; server_no_context_takeover; client_no_context_takeover".
    pub header: String,
}

/// Server: answers the first acceptable permessage-deflate offer among `offers` (all
/// extensions the client offered, in its preference order; other extension names are
/// skipped). `None` when no offer is acceptable.
///
/// An offer is declined (and the next one tried) when it has an unknown or repeated
/// parameter, a `*_no_context_takeover` with a value, a `server_max_window_bits` without a
/// value, a window bits value other than a decimal 8..=15 without leading zeros, or
/// `server_max_window_bits=8` (zlib cannot compress with an 8-bit window).
///
/// The answer adds `server_no_context_takeover` and `client_no_context_takeover` when
/// `config` asks for them, lowers the offered windows to the configured ones, and names
/// `server_max_window_bits` only when the client did (the server may still compress with a
/// smaller window than 15: [`NegotiatedResponse::params`] has the configured one).
///
/// ```
/// # use tether_proto::deflate::{DeflateConfig, client_offer, server_answer};
/// # use tether_proto::handshake::{ClientRequest, HandshakeConfig, parse_request};
/// let request = ClientRequest::builder("example.com", "/", [7; 16])
///     .extension(client_offer(&DeflateConfig::client()))
///     .build()?;
/// let (request, _) = parse_request(&request.encode(), &HandshakeConfig::default())?
///     .ok_or("incomplete")?;
/// let answer = server_answer(request.extensions(), &DeflateConfig::server()).ok_or("declined")?;
/// assert_eq!(
///     answer.header,
///     "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn server_answer(offers: &[Extension], config: &DeflateConfig) -> Option<NegotiatedResponse> {
    offers
        .iter()
        .filter(|offer| offer.name().eq_ignore_ascii_case(EXTENSION_NAME))
        .find_map(|offer| answer_one(offer, config))
}

/// The answer to one permessage-deflate offer, `None` to decline it.
fn answer_one(offer: &Extension, config: &DeflateConfig) -> Option<NegotiatedResponse> {
    let requested = Requested::parse(offer).ok()?;
    let server_nct = requested.server_no_context_takeover || config.server_no_context_takeover;
    let client_nct = requested.client_no_context_takeover || config.client_no_context_takeover;
    let our_server_bits = clamp_bits(config.server_max_window_bits);
    let our_client_bits = clamp_bits(config.client_max_window_bits);

    let mut header = String::from(EXTENSION_NAME);
    if server_nct {
        push_flag(&mut header, SERVER_NO_CONTEXT_TAKEOVER);
    }
    if client_nct {
        push_flag(&mut header, CLIENT_NO_CONTEXT_TAKEOVER);
    }

    let server_bits = match requested.server_max_window_bits {
        // Not offered: not answered either; the server may compress with a smaller window.
        WindowBits::Absent => our_server_bits,
        // A value is required in an offer, and 8 cannot be honoured by zlib.
        WindowBits::Bare => return None,
        WindowBits::Value(bits) if bits < MIN_WINDOW_BITS => return None,
        WindowBits::Value(bits) => {
            let bits = bits.min(our_server_bits);
            push_bits(&mut header, SERVER_MAX_WINDOW_BITS, bits);
            bits
        }
    };

    let client_bits = match requested.client_max_window_bits {
        WindowBits::Absent => MAX_WINDOW_BITS,
        WindowBits::Bare => {
            if our_client_bits < MAX_WINDOW_BITS {
                push_bits(&mut header, CLIENT_MAX_WINDOW_BITS, our_client_bits);
            }
            our_client_bits
        }
        WindowBits::Value(bits) => {
            let bits = bits.min(our_client_bits);
            push_bits(&mut header, CLIENT_MAX_WINDOW_BITS, bits);
            // A client compressing with 8 bits is read exactly with a 9-bit window.
            bits.max(MIN_WINDOW_BITS)
        }
    };

    Some(NegotiatedResponse {
        params: DeflateParams {
            server_no_context_takeover: server_nct,
            client_no_context_takeover: client_nct,
            server_max_window_bits: server_bits,
            client_max_window_bits: client_bits,
        },
        header,
    })
}

/// Client: the offer to send in `Sec-WebSocket-Extensions`.
///
/// It names `server_no_context_takeover` and `client_no_context_takeover` when `config`
/// asks for them, `server_max_window_bits=N` when the configured server window is under
/// 15, and always `client_max_window_bits` (with the configured value when under 15), so
/// the server may choose a smaller window for the client.
///
/// ```
/// # use tether_proto::deflate::{DeflateConfig, client_offer};
/// assert_eq!(
///     client_offer(&DeflateConfig::client()),
///     "permessage-deflate; client_no_context_takeover; client_max_window_bits"
/// );
/// ```
pub fn client_offer(config: &DeflateConfig) -> String {
    let mut offer = String::from(EXTENSION_NAME);
    if config.server_no_context_takeover {
        push_flag(&mut offer, SERVER_NO_CONTEXT_TAKEOVER);
    }
    if config.client_no_context_takeover {
        push_flag(&mut offer, CLIENT_NO_CONTEXT_TAKEOVER);
    }
    let server_bits = clamp_bits(config.server_max_window_bits);
    if server_bits < MAX_WINDOW_BITS {
        push_bits(&mut offer, SERVER_MAX_WINDOW_BITS, server_bits);
    }
    let client_bits = clamp_bits(config.client_max_window_bits);
    if client_bits < MAX_WINDOW_BITS {
        push_bits(&mut offer, CLIENT_MAX_WINDOW_BITS, client_bits);
    } else {
        push_flag(&mut offer, CLIENT_MAX_WINDOW_BITS);
    }
    offer
}

/// Client: checks the server's answer (every extension in the response's
/// `Sec-WebSocket-Extensions`, parsed) against what `client_offer(config)` offered.
/// Ok(None): the server did not enable deflate. Err: the answer must fail the connection.
///
/// Other extension names are ignored here. The answer fails with
/// [`HandshakeError::UnacceptableExtension`] when it holds permessage-deflate more than
/// once, an unknown or repeated parameter, a `*_no_context_takeover` with a value, a
/// window bits parameter without a valid value (a decimal 8..=15), a window larger than the
/// one offered, `client_max_window_bits=8` (zlib cannot compress with an 8-bit window), or
/// when it leaves out `server_no_context_takeover` or `server_max_window_bits` that the
/// client offered. A server window of 8 is accepted and inflated with a 9-bit window.
///
/// ```
/// # use tether_proto::deflate::{DeflateConfig, client_offer, validate_answer};
/// # use tether_proto::handshake::{ClientRequest, HandshakeConfig, parse_response, validate_response};
/// let config = DeflateConfig::client();
/// let request = ClientRequest::builder("example.com", "/", [7; 16])
///     .extension(client_offer(&config))
///     .build()?;
/// let response = format!(
///     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
///      Sec-WebSocket-Accept: {}\r\n\
///      Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10\r\n\r\n",
///     request.expected_accept()
/// );
/// let (head, _) = parse_response(response.as_bytes(), &HandshakeConfig::default())?.ok_or("incomplete")?;
/// let accepted = validate_response(&head, &request)?;
/// let params = validate_answer(&accepted.extensions, &config)?.ok_or("not enabled")?;
/// assert!(params.client_no_context_takeover);
/// assert_eq!(params.server_max_window_bits, 10);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn validate_answer(
    answer: &[Extension],
    config: &DeflateConfig,
) -> Result<Option<DeflateParams>, HandshakeError> {
    let mut deflates = answer
        .iter()
        .filter(|extension| extension.name().eq_ignore_ascii_case(EXTENSION_NAME));
    let Some(chosen) = deflates.next() else {
        return Ok(None);
    };
    let extra = deflates.count();
    if extra > 0 {
        return Err(unacceptable(format!(
            "expected one {EXTENSION_NAME}, found {}",
            extra.saturating_add(1)
        )));
    }

    let answered = Requested::parse(chosen).map_err(unacceptable)?;
    let offered_server_bits = clamp_bits(config.server_max_window_bits);
    let offered_client_bits = clamp_bits(config.client_max_window_bits);

    if config.server_no_context_takeover && !answered.server_no_context_takeover {
        return Err(unacceptable(format!(
            "expected {SERVER_NO_CONTEXT_TAKEOVER} as offered, found none"
        )));
    }

    let server_bits = match answered.server_max_window_bits {
        WindowBits::Absent if offered_server_bits < MAX_WINDOW_BITS => {
            return Err(unacceptable(format!(
                "expected {SERVER_MAX_WINDOW_BITS}={RFC_MIN_WINDOW_BITS}..={offered_server_bits} \
                 as offered, found none"
            )));
        }
        WindowBits::Absent => MAX_WINDOW_BITS,
        WindowBits::Bare => return Err(missing_value(SERVER_MAX_WINDOW_BITS)),
        WindowBits::Value(bits) if bits > offered_server_bits => {
            return Err(too_large(SERVER_MAX_WINDOW_BITS, offered_server_bits, bits));
        }
        // A server compressing with 8 bits is read exactly with a 9-bit window.
        WindowBits::Value(bits) => bits.max(MIN_WINDOW_BITS),
    };

    let client_bits = match answered.client_max_window_bits {
        WindowBits::Absent => offered_client_bits,
        WindowBits::Bare => return Err(missing_value(CLIENT_MAX_WINDOW_BITS)),
        WindowBits::Value(bits) if bits < MIN_WINDOW_BITS || bits > offered_client_bits => {
            return Err(unacceptable(format!(
                "expected {CLIENT_MAX_WINDOW_BITS}={MIN_WINDOW_BITS}..={offered_client_bits}, \
                 found {CLIENT_MAX_WINDOW_BITS}={bits}"
            )));
        }
        WindowBits::Value(bits) => bits.min(offered_client_bits),
    };

    Ok(Some(DeflateParams {
        server_no_context_takeover: answered.server_no_context_takeover,
        client_no_context_takeover: answered.client_no_context_takeover
            || config.client_no_context_takeover,
        server_max_window_bits: server_bits,
        client_max_window_bits: client_bits,
    }))
}

/// A window bits parameter as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowBits {
    /// Not sent.
    Absent,
    /// Sent without a value.
    Bare,
    /// Sent with a valid value, 8..=15.
    Value(u8),
}

/// The parameters of one permessage-deflate offer or answer, checked for syntax only: no
/// unknown or repeated parameter, no flag with a value, window values 8..=15.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Requested {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: WindowBits,
    client_max_window_bits: WindowBits,
}

impl Requested {
    /// `Err` carries what was wrong, for an error message.
    fn parse(extension: &Extension) -> Result<Self, String> {
        let mut out = Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: WindowBits::Absent,
            client_max_window_bits: WindowBits::Absent,
        };
        let mut seen = 0u8;
        for (name, value) in extension.params() {
            let Some(param) = Param::from_name(name) else {
                return Err(format!(
                    "expected a {EXTENSION_NAME} parameter, found {}",
                    shown(name.as_bytes())
                ));
            };
            let name = param.name();
            let bit = 1u8 << (param as u8);
            if seen & bit != 0 {
                return Err(format!("expected {name} once, found it repeated"));
            }
            seen |= bit;
            match param {
                Param::ServerNoContextTakeover | Param::ClientNoContextTakeover => {
                    if let Some(value) = value {
                        return Err(format!(
                            "expected {name} without a value, found {name}={}",
                            shown(value.as_bytes())
                        ));
                    }
                    if param == Param::ServerNoContextTakeover {
                        out.server_no_context_takeover = true;
                    } else {
                        out.client_no_context_takeover = true;
                    }
                }
                Param::ServerMaxWindowBits | Param::ClientMaxWindowBits => {
                    let bits = match value {
                        None => WindowBits::Bare,
                        Some(value) => WindowBits::Value(parse_bits(value).ok_or_else(|| {
                            format!(
                                "expected {name}={RFC_MIN_WINDOW_BITS}..={MAX_WINDOW_BITS}, \
                                 found {name}={}",
                                shown(value.as_bytes())
                            )
                        })?),
                    };
                    if param == Param::ServerMaxWindowBits {
                        out.server_max_window_bits = bits;
                    } else {
                        out.client_max_window_bits = bits;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The parameters RFC 7692 defines for permessage-deflate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    ServerNoContextTakeover,
    ClientNoContextTakeover,
    ServerMaxWindowBits,
    ClientMaxWindowBits,
}

impl Param {
    const ALL: [Self; 4] = [
        Self::ServerNoContextTakeover,
        Self::ClientNoContextTakeover,
        Self::ServerMaxWindowBits,
        Self::ClientMaxWindowBits,
    ];

    /// The parameter called `name`, ASCII case-insensitively.
    fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|param| param.name().eq_ignore_ascii_case(name))
    }

    fn name(self) -> &'static str {
        match self {
            Self::ServerNoContextTakeover => SERVER_NO_CONTEXT_TAKEOVER,
            Self::ClientNoContextTakeover => CLIENT_NO_CONTEXT_TAKEOVER,
            Self::ServerMaxWindowBits => SERVER_MAX_WINDOW_BITS,
            Self::ClientMaxWindowBits => CLIENT_MAX_WINDOW_BITS,
        }
    }
}

/// A window bits value: a decimal 8..=15 without sign or leading zeros (RFC 7692 7.1.2).
fn parse_bits(value: &str) -> Option<u8> {
    let bits = match value {
        "8" => 8,
        "9" => 9,
        "10" => 10,
        "11" => 11,
        "12" => 12,
        "13" => 13,
        "14" => 14,
        "15" => 15,
        _ => return None,
    };
    Some(bits)
}

/// A configured window brought into what zlib can compress with.
fn clamp_bits(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

fn push_flag(header: &mut String, name: &str) {
    header.push_str("; ");
    header.push_str(name);
}

fn push_bits(header: &mut String, name: &str, bits: u8) {
    push_flag(header, name);
    header.push('=');
    header.push_str(&bits.to_string());
}

fn unacceptable(detail: String) -> HandshakeError {
    HandshakeError::UnacceptableExtension {
        detail: detail.into_boxed_str(),
    }
}

fn missing_value(name: &str) -> HandshakeError {
    unacceptable(format!(
        "expected {name}={RFC_MIN_WINDOW_BITS}..={MAX_WINDOW_BITS}, found {name} without a value"
    ))
}

fn too_large(name: &str, offered: u8, found: u8) -> HandshakeError {
    unacceptable(format!(
        "expected {name}={RFC_MIN_WINDOW_BITS}..={offered} as offered, found {name}={found}"
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::handshake::parse_into;

    /// Parses a `Sec-WebSocket-Extensions` value.
    fn parse(value: &str) -> Vec<Extension> {
        let mut out = Vec::new();
        parse_into(value.as_bytes(), &mut out).unwrap();
        out
    }

    fn config(
        server_nct: bool,
        client_nct: bool,
        server_bits: u8,
        client_bits: u8,
    ) -> DeflateConfig {
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

    fn validate(
        answer: &str,
        config: &DeflateConfig,
    ) -> Result<Option<DeflateParams>, HandshakeError> {
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
        for (offered, configured, expected) in
            [(9, 15, 9), (12, 10, 10), (10, 12, 10), (15, 15, 15)]
        {
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
        for (offered, configured, expected) in
            [(15, 15, 15), (12, 10, 10), (10, 12, 10), (9, 15, 9)]
        {
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
}
