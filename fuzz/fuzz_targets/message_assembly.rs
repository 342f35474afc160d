//! Fuzz target `message_assembly`: a sequence of well-formed frames, encoded here, fed to a
//! server `Connection` with small limits, and compared with a reference model of the rules.
//!
//! Input layout (every field one byte unless said otherwise; missing bytes read as zero):
//!
//! * `max_frame_size`, then `max_message_size / 2`, then the feed chunk size (0: all at once);
//! * then frames until the input ends, each: a flags byte (bit 7 FIN, bits 0-2 the opcode
//!   among continuation, text, binary, close, ping, pong, taken modulo 6, bit 3 masked, bits
//!   4-5 the length form: 1 forces 16 bits, 2 forces 64 bits, else minimal), the payload
//!   length, the 4-byte mask key when masked, and the payload (cut short if the input ends).
//!
//! The model (written from RFC 6455, not from the connection's code) predicts the events and
//! the error; the connection must agree exactly. So every complete text message is valid
//! UTF-8, and every error is the one the rules name, with its close code: invalid UTF-8 in a
//! text message is always `InvalidUtf8` (1007), a limit is 1009, the rest 1002.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tether_fuzz::{Outcome, check_error, check_outcome, feed_pieces};
use tether_proto::frame::apply_mask_bytewise;
use tether_proto::{
    CloseCode, CloseFrame, Connection, Event, Limits, Message, ProtocolError, Reason, Role,
};

/// Opcodes in the order the flags byte numbers them, with their wire values.
const OPCODES: [u8; 6] = [0x0, 0x1, 0x2, 0x8, 0x9, 0xA];

/// One frame as the input describes it.
#[derive(Debug)]
struct Frame<'a> {
    fin: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    length_form: u8,
    payload: &'a [u8],
}

/// Reads the input front to back; missing bytes read as zero.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }
}

fuzz_target!(|data: &[u8]| {
    let mut cursor = Cursor(data);
    let limits =
        Limits::new(usize::from(cursor.byte()) * 2).with_max_frame_size(usize::from(cursor.byte()));
    let chunk = usize::from(cursor.byte());
    let mut frames = Vec::new();
    while !cursor.0.is_empty() {
        let flags = cursor.byte();
        let len = usize::from(cursor.byte());
        let mask = (flags & 0x08 != 0).then(|| {
            let key = cursor.take(4);
            let mut out = [0u8; 4];
            out.iter_mut().zip(key).for_each(|(o, k)| *o = *k);
            out
        });
        frames.push(Frame {
            fin: flags & 0x80 != 0,
            opcode: OPCODES
                .get(usize::from(flags & 0x07) % 6)
                .copied()
                .unwrap_or(0),
            mask,
            length_form: (flags >> 4) & 0x03,
            payload: cursor.take(len),
        });
    }

    let mut wire = Vec::new();
    for frame in &frames {
        encode(frame, &mut wire);
    }

    let mut conn = Connection::new(Role::Server, limits);
    let actual = if chunk == 0 {
        feed_pieces(&mut conn, [wire.as_slice()])
    } else {
        feed_pieces(&mut conn, wire.chunks(chunk))
    };
    check_outcome(&conn, limits, &actual);

    let (expected, mid_message) = model(&frames, limits);
    if expected.error == Some(ProtocolError::InvalidUtf8) {
        assert_eq!(actual.error, Some(ProtocolError::InvalidUtf8));
    }
    assert_eq!(actual, expected, "frames: {frames:?}");
    if let Some(error) = &actual.error {
        check_error(error, limits);
    } else if conn.wants_read() {
        assert_eq!(conn.is_mid_message(), mid_message);
    }
});

/// Writes `frame` with the length form it asks for, masked byte by byte when it has a key.
fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    out.push((u8::from(frame.fin) << 7) | frame.opcode);
    let mask_bit = if frame.mask.is_some() { 0x80 } else { 0 };
    let len = frame.payload.len();
    match (frame.length_form, u16::try_from(len)) {
        (2, _) | (_, Err(_)) => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        (1, Ok(len16)) => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len16.to_be_bytes());
        }
        (_, Ok(len16)) if len16 >= 126 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&len16.to_be_bytes());
        }
        (_, Ok(_)) => out.push(mask_bit | len as u8),
    }
    let start = out.len();
    out.extend_from_slice(frame.payload);
    if let (Some(key), Some(body)) = (frame.mask, out.get_mut(start..)) {
        // The key precedes the payload on the wire.
        apply_mask_bytewise(body, key, 0);
        out.splice(start..start, key);
    }
}

/// What RFC 6455 says a server reading `frames` sees: the events and the error, and whether
/// a fragmented message is left unfinished.
fn model(frames: &[Frame<'_>], limits: Limits) -> (Outcome, bool) {
    let mut events = Vec::new();
    // The fragmented message in progress: whether it is text, and its bytes so far.
    let mut partial: Option<(bool, Vec<u8>)> = None;
    let fail = |events, error| {
        (
            Outcome {
                events,
                error: Some(error),
            },
            false,
        )
    };
    for frame in frames {
        if frame.mask.is_none() {
            return fail(events, ProtocolError::UnmaskedFrame);
        }
        let len = frame.payload.len();
        let payload = Bytes::copy_from_slice(frame.payload);
        if frame.opcode >= 0x8 {
            if !frame.fin {
                return fail(events, ProtocolError::FragmentedControlFrame);
            }
            if len > 125 {
                return fail(
                    events,
                    ProtocolError::ControlFrameTooLong { len: len as u64 },
                );
            }
            match frame.opcode {
                0x9 => events.push(Event::Ping(payload)),
                0xA => events.push(Event::Pong(payload)),
                _ => {
                    let close = match frame.payload {
                        [] => None,
                        [_] => return fail(events, ProtocolError::InvalidClosePayloadLength),
                        [hi, lo, reason @ ..] => {
                            let raw = u16::from_be_bytes([*hi, *lo]);
                            let sendable = matches!(raw, 1000..=1003 | 1007..=1014 | 3000..=4999);
                            let code = match CloseCode::new(raw) {
                                Ok(code) if sendable => code,
                                _ => return fail(events, ProtocolError::InvalidCloseCode(raw)),
                            };
                            let Ok(reason) = std::str::from_utf8(reason) else {
                                return fail(events, ProtocolError::InvalidCloseReason);
                            };
                            Some(CloseFrame::new(code, Reason::new(reason)))
                        }
                    };
                    events.push(Event::Close(close));
                    // Nothing after the peer's close is read.
                    return (
                        Outcome {
                            events,
                            error: None,
                        },
                        false,
                    );
                }
            }
            continue;
        }

        let (is_text, mut buf) = match (frame.opcode, partial.take()) {
            (0x0, None) => return fail(events, ProtocolError::UnexpectedContinuation),
            (0x0, Some(message)) => message,
            (_, Some(_)) => return fail(events, ProtocolError::ExpectedContinuation),
            (opcode, None) => (opcode == 0x1, Vec::new()),
        };
        if len > limits.max_frame_size {
            return fail(
                events,
                ProtocolError::FrameTooBig {
                    size: len as u64,
                    max: limits.max_frame_size,
                },
            );
        }
        if buf.len() + len > limits.max_message_size {
            return fail(
                events,
                ProtocolError::MessageTooBig {
                    size: (buf.len() + len) as u64,
                    max: limits.max_message_size,
                },
            );
        }
        buf.extend_from_slice(frame.payload);
        if is_text {
            // Invalid as soon as no continuation could make it valid; at the end, invalid
            // unless it is valid as it stands.
            match std::str::from_utf8(&buf) {
                Err(e) if e.error_len().is_some() || frame.fin => {
                    return fail(events, ProtocolError::InvalidUtf8);
                }
                _ => {}
            }
        }
        if !frame.fin {
            partial = Some((is_text, buf));
            continue;
        }
        let message = if is_text {
            match String::from_utf8(buf) {
                Ok(text) => Message::text(text),
                Err(_) => return fail(events, ProtocolError::InvalidUtf8),
            }
        } else {
            Message::binary(buf)
        };
        events.push(Event::Message(message));
    }
    let mid_message = partial.is_some();
    (
        Outcome {
            events,
            error: None,
        },
        mid_message,
    )
}
