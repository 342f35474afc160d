//! Frames (RFC 6455 section 5.2): opcodes and the header codec for all three length forms.
//!
//! Length encoding: RFC 6455 requires the *sender* to use the minimal length form. Tether
//! always sends minimal lengths, and as a receiver it accepts a non-minimal form (say, a
//! 5-byte payload announced with the 16-bit form): the value is unambiguous, rejecting it
//! protects nothing, and a 64-bit length with its most significant bit set is still refused
//! ([`ProtocolError::LengthOverflow`]).

mod mask;

#[doc(hidden)]
pub use mask::MaskKernel;
pub use mask::{apply_mask, apply_mask_bytewise};

use bytes::BufMut;

use crate::error::ProtocolError;

/// The largest frame header: 2 bytes, 8 bytes of extended length, 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// The largest payload of a control frame.
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// A frame opcode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // RFC 6455 fixes the set; new opcodes would be a new protocol.
pub enum Opcode {
    /// 0x0: continues a fragmented message.
    Continuation,
    /// 0x1: starts a text message.
    Text,
    /// 0x2: starts a binary message.
    Binary,
    /// 0x8: close.
    Close,
    /// 0x9: ping.
    Ping,
    /// 0xA: pong.
    Pong,
}

impl Opcode {
    /// Decodes the low 4 bits of the first header byte.
    pub const fn from_u8(value: u8) -> Result<Self, ProtocolError> {
        Ok(match value {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            other => return Err(ProtocolError::UnknownOpcode(other)),
        })
    }

    /// The wire value.
    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Whether this is a control opcode (close, ping, pong).
    pub const fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// FIN: this frame ends its message.
    pub fin: bool,
    /// RSV1-RSV3 as a 3-bit value, RSV1 as `0b100`.
    pub rsv: u8,
    /// The opcode.
    pub opcode: Opcode,
    /// The masking key, present on client-to-server frames.
    pub mask: Option<[u8; 4]>,
    /// The payload length.
    pub payload_len: u64,
}

impl FrameHeader {
    /// Decodes a header from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` does not hold the whole header yet, and the header with
    /// its length in bytes otherwise. Only the header's own encoding is checked here (opcode,
    /// 64-bit length); the rules that depend on the connection's state are checked by
    /// [`crate::Connection`].
    pub fn decode(buf: &[u8]) -> Result<Option<(Self, usize)>, ProtocolError> {
        let (first, second) = match buf {
            [first, second, ..] => (*first, *second),
            _ => return Ok(None),
        };
        let opcode = Opcode::from_u8(first & 0x0F)?;
        let masked = second & 0x80 != 0;
        let (payload_len, mut pos) = match second & 0x7F {
            126 => match buf.get(2..4) {
                Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
                _ => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(bytes) => {
                    let mut word = [0u8; 8];
                    word.copy_from_slice(bytes);
                    let len = u64::from_be_bytes(word);
                    if len >> 63 != 0 {
                        return Err(ProtocolError::LengthOverflow);
                    }
                    (len, 10)
                }
                None => return Ok(None),
            },
            len => (u64::from(len), 2),
        };
        let mask = if masked {
            match buf.get(pos..pos + 4) {
                Some(&[a, b, c, d]) => {
                    pos += 4;
                    Some([a, b, c, d])
                }
                _ => return Ok(None),
            }
        } else {
            None
        };
        Ok(Some((
            Self {
                fin: first & 0x80 != 0,
                rsv: (first >> 4) & 0x07,
                opcode,
                mask,
                payload_len,
            },
            pos,
        )))
    }

    /// The encoded length of this header.
    pub const fn encoded_len(&self) -> usize {
        let len = match self.payload_len {
            0..=125 => 2,
            126..=0xFFFF => 4,
            _ => 10,
        };
        if self.mask.is_some() { len + 4 } else { len }
    }

    /// Appends the header to `out`, using the minimal length form.
    pub fn encode(&self, out: &mut impl BufMut) {
        let first = (u8::from(self.fin) << 7) | ((self.rsv & 0x07) << 4) | self.opcode.as_u8();
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        out.put_u8(first);
        match self.payload_len {
            len @ 0..=125 => out.put_u8(mask_bit | len as u8),
            len @ 126..=0xFFFF => {
                out.put_u8(mask_bit | 126);
                out.put_u16(len as u16);
            }
            len => {
                out.put_u8(mask_bit | 127);
                out.put_u64(len);
            }
        }
        if let Some(key) = self.mask {
            out.put_slice(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(len: u64, mask: Option<[u8; 4]>) -> FrameHeader {
        FrameHeader {
            fin: true,
            rsv: 0,
            opcode: Opcode::Binary,
            mask,
            payload_len: len,
        }
    }

    #[test]
    fn round_trips_all_three_length_forms() {
        for len in [0, 1, 125, 126, 127, 0xFFFF, 0x1_0000, u64::MAX >> 1] {
            for mask in [None, Some([9, 8, 7, 6])] {
                let h = header(len, mask);
                let mut out = Vec::new();
                h.encode(&mut out);
                assert_eq!(out.len(), h.encoded_len());
                assert_eq!(FrameHeader::decode(&out), Ok(Some((h, out.len()))));
                // Every strict prefix is incomplete, never an error.
                for cut in 0..out.len() {
                    assert_eq!(
                        FrameHeader::decode(&out[..cut]),
                        Ok(None),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn minimal_length_forms_are_sent() {
        let mut out = Vec::new();
        header(125, None).encode(&mut out);
        assert_eq!(out, [0x82, 125]);
        out.clear();
        header(126, None).encode(&mut out);
        assert_eq!(out, [0x82, 126, 0, 126]);
        out.clear();
        header(0x1_0000, None).encode(&mut out);
        assert_eq!(out, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    }

    #[test]
    fn non_minimal_lengths_are_accepted() {
        // 5 bytes announced with the 16-bit form, then with the 64-bit form.
        let (h, used) = FrameHeader::decode(&[0x82, 126, 0, 5])
            .expect("ok")
            .expect("complete");
        assert_eq!((h.payload_len, used), (5, 4));
        let (h, used) = FrameHeader::decode(&[0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5])
            .expect("ok")
            .expect("complete");
        assert_eq!((h.payload_len, used), (5, 10));
    }

    #[test]
    fn length_with_msb_set_is_refused() {
        let buf = [0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(
            FrameHeader::decode(&buf),
            Err(ProtocolError::LengthOverflow)
        );
    }

    #[test]
    fn reserved_opcodes_are_refused() {
        for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            assert_eq!(
                FrameHeader::decode(&[0x80 | op, 0]),
                Err(ProtocolError::UnknownOpcode(op)),
                "opcode {op}"
            );
        }
    }

    #[test]
    fn reads_fin_rsv_and_mask() {
        let (h, used) = FrameHeader::decode(&[0x71, 0x81, 1, 2, 3, 4])
            .expect("ok")
            .expect("complete");
        assert_eq!(used, 6);
        assert!(!h.fin);
        assert_eq!(h.rsv, 0b111);
        assert_eq!(h.opcode, Opcode::Text);
        assert_eq!(h.mask, Some([1, 2, 3, 4]));
        assert_eq!(h.payload_len, 1);
    }
}
