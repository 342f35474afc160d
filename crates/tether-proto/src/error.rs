//! Protocol violations by the peer, each knowing the close code it fails the connection with.

use std::fmt;

use crate::close::{CloseCode, CloseFrame, Reason};

/// A violation of RFC 6455 by the peer, or a limit it exceeded.
///
/// Every variant knows its close code ([`ProtocolError::close_code`]): invalid UTF-8 and
/// invalid compressed data are 1007,
/// a frame or message over the configured limit is 1009, everything else is 1002. When the
/// core returns one of these, the endpoint sends [`ProtocolError::close_frame`] and then
/// fails the connection; the core refuses further input.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV1, RSV2 or RSV3 was set, and no negotiated extension defines it.
    ReservedBitsSet {
        /// The three reserved bits, RSV1 as `0b100`.
        bits: u8,
    },
    /// The opcode is not one RFC 6455 defines (3-7 and 11-15 are reserved).
    UnknownOpcode(u8),
    /// A control frame (close, ping, pong) had FIN clear.
    FragmentedControlFrame,
    /// A control frame's payload was longer than 125 bytes.
    ControlFrameTooLong {
        /// The payload length found.
        len: u64,
    },
    /// A continuation frame arrived with no fragmented message in progress.
    UnexpectedContinuation,
    /// A new text or binary frame arrived while a fragmented message was in progress.
    ExpectedContinuation,
    /// A client sent an unmasked frame (clients must mask every frame).
    UnmaskedFrame,
    /// A server sent a masked frame (servers must not mask).
    MaskedFrame,
    /// A 64-bit payload length had its most significant bit set.
    LengthOverflow,
    /// A text message (or a close reason) was not valid UTF-8.
    InvalidUtf8,
    /// A compressed message (permessage-deflate) was not valid deflate data.
    InvalidCompressedData,
    /// A close frame's reason was not valid UTF-8.
    InvalidCloseReason,
    /// A close frame carried a code that may never be sent (1005, 1006, 1015, below 1000, ...).
    InvalidCloseCode(u16),
    /// A close frame's payload was a single byte (a code needs two).
    InvalidClosePayloadLength,
    /// A frame's payload was larger than the configured maximum frame size.
    FrameTooBig {
        /// The payload length announced by the frame header.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message was larger than the configured maximum message size.
    MessageTooBig {
        /// The size the message reached (at least).
        size: u64,
        /// The configured limit.
        max: usize,
    },
}

impl ProtocolError {
    /// The close code the endpoint sends when it fails the connection for this error.
    pub const fn close_code(&self) -> CloseCode {
        match self {
            Self::InvalidUtf8 | Self::InvalidCloseReason | Self::InvalidCompressedData => {
                CloseCode::INVALID_PAYLOAD
            }
            Self::FrameTooBig { .. } | Self::MessageTooBig { .. } => CloseCode::MESSAGE_TOO_BIG,
            Self::ReservedBitsSet { .. }
            | Self::UnknownOpcode(_)
            | Self::FragmentedControlFrame
            | Self::ControlFrameTooLong { .. }
            | Self::UnexpectedContinuation
            | Self::ExpectedContinuation
            | Self::UnmaskedFrame
            | Self::MaskedFrame
            | Self::LengthOverflow
            | Self::InvalidCloseCode(_)
            | Self::InvalidClosePayloadLength => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// The close frame to send: the error's code and a short reason naming the violation.
    pub fn close_frame(&self) -> CloseFrame {
        CloseFrame::new(self.close_code(), Reason::new(&self.to_string()))
    }
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ReservedBitsSet { bits } => {
                write!(
                    f,
                    "reserved bits set without an extension: found {bits:#05b}"
                )
            }
            Self::UnknownOpcode(op) => write!(f, "unknown opcode: found {op:#x}"),
            Self::FragmentedControlFrame => f.write_str("fragmented control frame"),
            Self::ControlFrameTooLong { len } => {
                write!(
                    f,
                    "control frame too long: expected at most 125 bytes, found {len}"
                )
            }
            Self::UnexpectedContinuation => {
                f.write_str("continuation frame without a message in progress")
            }
            Self::ExpectedContinuation => {
                f.write_str("new data frame inside a fragmented message: expected continuation")
            }
            Self::UnmaskedFrame => f.write_str("unmasked frame from a client"),
            Self::MaskedFrame => f.write_str("masked frame from a server"),
            Self::LengthOverflow => f.write_str("payload length with the most significant bit set"),
            Self::InvalidUtf8 => f.write_str("invalid utf-8 in a text message"),
            Self::InvalidCompressedData => {
                f.write_str("invalid deflate data in a compressed message")
            }
            Self::InvalidCloseReason => f.write_str("invalid utf-8 in a close reason"),
            Self::InvalidCloseCode(code) => write!(f, "invalid close code: found {code}"),
            Self::InvalidClosePayloadLength => {
                f.write_str("close payload of 1 byte: expected 0 or at least 2")
            }
            Self::FrameTooBig { size, max } => {
                write!(
                    f,
                    "frame too big: expected at most {max} bytes, found {size}"
                )
            }
            Self::MessageTooBig { size, max } => {
                write!(
                    f,
                    "message too big: expected at most {max} bytes, found {size}"
                )
            }
        }
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_close_code() {
        let table: &[(ProtocolError, u16)] = &[
            (ProtocolError::ReservedBitsSet { bits: 0b100 }, 1002),
            (ProtocolError::UnknownOpcode(3), 1002),
            (ProtocolError::FragmentedControlFrame, 1002),
            (ProtocolError::ControlFrameTooLong { len: 126 }, 1002),
            (ProtocolError::UnexpectedContinuation, 1002),
            (ProtocolError::ExpectedContinuation, 1002),
            (ProtocolError::UnmaskedFrame, 1002),
            (ProtocolError::MaskedFrame, 1002),
            (ProtocolError::LengthOverflow, 1002),
            (ProtocolError::InvalidUtf8, 1007),
            (ProtocolError::InvalidCloseReason, 1007),
            (ProtocolError::InvalidCloseCode(1005), 1002),
            (ProtocolError::InvalidClosePayloadLength, 1002),
            (ProtocolError::FrameTooBig { size: 10, max: 5 }, 1009),
            (ProtocolError::MessageTooBig { size: 10, max: 5 }, 1009),
        ];
        for (error, code) in table {
            assert_eq!(error.close_code().as_u16(), *code, "{error:?}");
            let frame = error.close_frame();
            assert_eq!(frame.code.as_u16(), *code);
            assert!(!frame.reason.is_empty());
            assert!(frame.reason.as_bytes().len() <= Reason::MAX_LEN);
        }
    }

    #[test]
    fn display_is_lowercase_without_trailing_period() {
        let text = ProtocolError::FrameTooBig { size: 10, max: 5 }.to_string();
        assert_eq!(text, "frame too big: expected at most 5 bytes, found 10");
        assert!(!text.ends_with('.'));
    }
}
