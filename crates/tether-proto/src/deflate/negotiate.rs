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
mod tests;
