//! The receiving half of a connection: [`ReadHalf::read`] turns received bytes into
//! [`Event`]s, validating frames, unmasking, checking UTF-8 as it arrives, inflating and
//! reassembling messages within the limits.
//!
//! It keeps only what reading needs. What the peer's close or a violation means for sending
//! is the [`WriteHalf`](super::WriteHalf)'s to know: [`Connection`](super::Connection) tells
//! it, and a transport that holds the halves apart tells it itself.

use bytes::{Buf, Bytes, BytesMut};

use super::{Event, Limits, RSV1, Role};
use crate::close::CloseFrame;
use crate::deflate::{InflateError, Inflater};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, apply_mask};
use crate::message::{Message, Utf8Bytes};
use crate::utf8::Utf8Validator;

/// A frame whose header has been read and whose payload is arriving.
#[derive(Debug, Clone, Copy)]
struct IncomingFrame {
    /// The header; its payload length was checked to fit in `usize` (see [`IncomingFrame::len`]).
    header: FrameHeader,
    /// How many payload bytes at the start of the input have been unmasked and checked.
    processed: usize,
    /// Whether the payload is text that must be UTF-8 checked as it arrives (never for a
    /// compressed frame: its text is checked once inflated).
    is_text: bool,
    /// Whether the frame belongs to a compressed message (RSV1 on its first frame).
    compressed: bool,
}

impl IncomingFrame {
    /// The payload length, checked against the limits and `usize` when the header was read.
    fn len(&self) -> usize {
        self.header.payload_len as usize
    }
}

/// A fragmented message being reassembled.
#[derive(Debug)]
struct PartialMessage {
    is_text: bool,
    /// The message so far: inflated when the inflater streams frames, else still
    /// compressed (for a compressed message) until its last frame.
    buf: BytesMut,
    compressed: bool,
}

/// The receiving half of a [`Connection`](super::Connection), from
/// [`Connection::split`](super::Connection::split): feed it received bytes, get events.
///
/// It needs no lock against the [`WriteHalf`](super::WriteHalf): a transport can read on
/// one task while others send. Two events concern the sending side too, and the holder of
/// the halves passes them on: after [`Event::Close`], call
/// [`WriteHalf::note_peer_close`](super::WriteHalf::note_peer_close); after an error,
/// [`WriteHalf::note_failure`](super::WriteHalf::note_failure).
#[derive(Debug)]
pub struct ReadHalf {
    role: Role,
    /// The reserved bits a negotiated extension allows (RSV1 with permessage-deflate).
    allowed_rsv: u8,
    /// Set once the peer's close frame arrived or the peer broke the protocol: input is
    /// ignored from then on.
    finished: bool,
    /// Payloads up to this many bytes are copied out of the input; larger ones share it.
    /// (`u32`: it packs with the flags, and nobody copies 4 GiB to spare a view.)
    detach_threshold: u32,
    limits: Limits,
    frame: Option<IncomingFrame>,
    /// Boxed: fragmented messages are rare, and an idle connection should stay small.
    message: Option<Box<PartialMessage>>,
    utf8: Utf8Validator,
    /// The permessage-deflate decoder, when negotiated (boxed: most connections have none).
    inflater: Option<Box<Inflater>>,
}

impl ReadHalf {
    pub(super) fn new(role: Role, limits: Limits) -> Self {
        Self {
            role,
            allowed_rsv: 0,
            finished: false,
            detach_threshold: 0,
            limits,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            inflater: None,
        }
    }

    /// Accepts compressed messages (RSV1), inflating them with `inflater`.
    pub(super) fn set_inflater(&mut self, inflater: Inflater) {
        self.allowed_rsv |= RSV1;
        self.inflater = Some(Box::new(inflater));
    }

    pub(super) const fn set_detach_threshold(&mut self, max: u32) {
        self.detach_threshold = max;
    }

    /// This endpoint's role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether a fragmented message or a partial frame is in progress (the caller must keep
    /// its buffered bytes).
    pub const fn is_mid_message(&self) -> bool {
        self.frame.is_some() || self.message.is_some()
    }

    /// Whether a frame's header has been read and its payload is still arriving (the input
    /// buffer then starts with payload bytes).
    pub const fn has_partial_frame(&self) -> bool {
        self.frame.is_some()
    }

    /// How many more bytes the frame in progress needs, given `buffered` bytes of input: the
    /// rest of its payload once its header is known, else the largest header. A reader can
    /// size its next read with it (one read for a large frame).
    pub fn bytes_needed(&self, buffered: usize) -> usize {
        match &self.frame {
            Some(frame) => frame.len().saturating_sub(buffered),
            None => crate::frame::MAX_HEADER_LEN.saturating_sub(buffered),
        }
    }

    /// Whether more input is expected: false once the peer's close arrived or the peer broke
    /// the protocol.
    pub const fn wants_read(&self) -> bool {
        !self.finished
    }

    /// Reads the next event from `input`, consuming the bytes it used.
    ///
    /// Returns `Ok(None)` when `input` holds no complete event yet: read more bytes, append
    /// them and call again. After the peer's close frame, or after an error, input is
    /// ignored.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the peer violated the protocol or a limit. The connection is
    /// then failed: tell the write half ([`WriteHalf::note_failure`](super::WriteHalf::note_failure)),
    /// send [`ProtocolError::close_frame`] with
    /// [`WriteHalf::encode_close`](super::WriteHalf::encode_close) and drop the transport.
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        if !self.wants_read() {
            input.clear();
            return Ok(None);
        }
        let result = self.read_event(input);
        if result.is_err() {
            self.finished = true;
            self.frame = None;
            self.message = None;
            input.clear();
        }
        result
    }

    fn read_event(&mut self, input: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        loop {
            if self.frame.is_none() {
                let Some((header, header_len)) = FrameHeader::decode(input)? else {
                    return Ok(None);
                };
                let frame = self.accept_header(header)?;
                input.advance(header_len);
                self.frame = Some(frame);
            }
            let Some(frame) = &mut self.frame else {
                continue;
            };

            let available = input.len().min(frame.len());
            if available > frame.processed {
                if let Some(fresh) = input.get_mut(frame.processed..available) {
                    if let Some(key) = frame.header.mask {
                        apply_mask(fresh, key, frame.processed);
                    }
                    if frame.is_text {
                        self.utf8
                            .feed(fresh)
                            .map_err(|_| ProtocolError::InvalidUtf8)?;
                    }
                }
                frame.processed = available;
            }
            if frame.processed < frame.len() {
                return Ok(None);
            }

            let header = frame.header;
            let len = frame.len();
            let compressed = frame.compressed;
            self.frame = None;
            let payload = if len <= self.detach_threshold as usize {
                let copy = Bytes::copy_from_slice(input.get(..len).unwrap_or_default());
                if len == input.len() {
                    // The usual end of a read: emptying is cheaper than advancing.
                    input.clear();
                } else {
                    input.advance(len);
                }
                copy
            } else {
                input.split_to(len).freeze()
            };
            let event = if compressed {
                self.complete_compressed(header, payload)?
            } else {
                self.complete_frame(header, payload)?
            };
            if let Some(event) = event {
                return Ok(Some(event));
            }
        }
    }

    /// Checks a header against the role, the state and the limits.
    fn accept_header(&mut self, header: FrameHeader) -> Result<IncomingFrame, ProtocolError> {
        if header.rsv & !self.allowed_rsv != 0 {
            return Err(ProtocolError::ReservedBitsSet { bits: header.rsv });
        }
        // RSV1 marks a compressed message on its first frame only, never on a control frame
        // or a continuation (RFC 7692 6).
        let rsv1 = header.rsv & RSV1 != 0;
        if rsv1 && !matches!(header.opcode, Opcode::Text | Opcode::Binary) {
            return Err(ProtocolError::ReservedBitsSet { bits: header.rsv });
        }
        match (self.role, header.mask.is_some()) {
            (Role::Server, false) => return Err(ProtocolError::UnmaskedFrame),
            (Role::Client, true) => return Err(ProtocolError::MaskedFrame),
            _ => {}
        }
        let compressed = rsv1
            || (header.opcode == Opcode::Continuation
                && self
                    .message
                    .as_ref()
                    .is_some_and(|partial| partial.compressed));
        let is_text = if header.opcode.is_control() {
            if !header.fin {
                return Err(ProtocolError::FragmentedControlFrame);
            }
            if header.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(ProtocolError::ControlFrameTooLong {
                    len: header.payload_len,
                });
            }
            false
        } else {
            let is_text = match (header.opcode, &self.message) {
                (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
                (Opcode::Continuation, Some(partial)) => partial.is_text,
                (_, Some(_)) => return Err(ProtocolError::ExpectedContinuation),
                (opcode, None) => {
                    self.utf8.reset();
                    opcode == Opcode::Text
                }
            };
            if header.payload_len > self.limits.max_frame_size as u64 {
                return Err(ProtocolError::FrameTooBig {
                    size: header.payload_len,
                    max: self.limits.max_frame_size,
                });
            }
            let so_far = self.message.as_ref().map_or(0, |partial| partial.buf.len());
            let total = so_far as u64 + header.payload_len;
            // A compressed message is held to the limit once inflated, while it inflates;
            // on the wire it may take a little more than the limit (stored blocks).
            let max = self.limits.max_message_size;
            let wire_max = if compressed {
                max + max / 256 + 64
            } else {
                max
            };
            if total > wire_max as u64 {
                return Err(ProtocolError::MessageTooBig { size: total, max });
            }
            is_text && !compressed
        };
        // The limits above bound data frames and control frames are at most 125 bytes, so the
        // length fits in usize; a 32-bit target with a huge limit still fails cleanly here.
        if usize::try_from(header.payload_len).is_err() {
            return Err(ProtocolError::FrameTooBig {
                size: header.payload_len,
                max: self.limits.max_frame_size,
            });
        }
        Ok(IncomingFrame {
            header,
            processed: 0,
            is_text,
            compressed,
        })
    }

    /// Turns a complete frame into an event, or folds it into the message being assembled.
    fn complete_frame(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        let message = match header.opcode {
            Opcode::Ping => return Ok(Some(Event::Ping(payload))),
            Opcode::Pong => return Ok(Some(Event::Pong(payload))),
            Opcode::Close => {
                let frame = CloseFrame::parse(payload)?;
                self.finished = true;
                self.frame = None;
                self.message = None;
                return Ok(Some(Event::Close(frame)));
            }
            Opcode::Text | Opcode::Binary if header.fin => {
                if header.opcode == Opcode::Text {
                    self.finish_text()?;
                    Message::Text(Utf8Bytes::from_validated(payload))
                } else {
                    Message::Binary(payload)
                }
            }
            Opcode::Text | Opcode::Binary => {
                let mut buf = BytesMut::with_capacity(payload.len().max(256));
                buf.extend_from_slice(&payload);
                self.message = Some(Box::new(PartialMessage {
                    is_text: header.opcode == Opcode::Text,
                    buf,
                    compressed: false,
                }));
                return Ok(None);
            }
            Opcode::Continuation => {
                let Some(partial) = &mut self.message else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                partial.buf.extend_from_slice(&payload);
                if !header.fin {
                    return Ok(None);
                }
                let Some(partial) = self.message.take() else {
                    return Err(ProtocolError::UnexpectedContinuation);
                };
                let bytes = partial.buf.freeze();
                if partial.is_text {
                    self.finish_text()?;
                    Message::Text(Utf8Bytes::from_validated(bytes))
                } else {
                    Message::Binary(bytes)
                }
            }
        };
        Ok(Some(Event::Message(message)))
    }

    fn finish_text(&mut self) -> Result<(), ProtocolError> {
        self.utf8.finish().map_err(|_| ProtocolError::InvalidUtf8)
    }

    /// A frame of a compressed message: inflated (with its size checked as it grows) into
    /// the message, as it arrives when the inflater keeps a stream of its own, at the last
    /// frame otherwise; text is UTF-8 checked as it is inflated.
    fn complete_compressed(
        &mut self,
        header: FrameHeader,
        payload: Bytes,
    ) -> Result<Option<Event>, ProtocolError> {
        let max = self.limits.max_message_size;
        let Some(inflater) = self.inflater.as_deref_mut() else {
            return Err(ProtocolError::ReservedBitsSet { bits: header.rsv });
        };
        let streams = inflater.streams_frames();
        let mut partial = match (header.opcode, self.message.take()) {
            (Opcode::Continuation, Some(partial)) => partial,
            (Opcode::Continuation, None) => return Err(ProtocolError::UnexpectedContinuation),
            (opcode, _) => Box::new(PartialMessage {
                is_text: opcode == Opcode::Text,
                buf: BytesMut::new(),
                compressed: true,
            }),
        };
        let inflated_before = if streams { partial.buf.len() } else { 0 };
        if streams || header.fin {
            let (input, mut out) = if streams {
                (payload, std::mem::take(&mut partial.buf))
            } else {
                // The whole compressed message, inflated now in one go.
                let mut wire = std::mem::take(&mut partial.buf);
                wire.extend_from_slice(&payload);
                let estimate = (wire.len() * 4).min(max).max(64);
                (wire.freeze(), BytesMut::with_capacity(estimate))
            };
            inflater
                .inflate(&input, header.fin, &mut out, max)
                .map_err(|error| match error {
                    InflateError::TooBig { size } => ProtocolError::MessageTooBig { size, max },
                    _ => ProtocolError::InvalidCompressedData,
                })?;
            if partial.is_text {
                let fresh = out.get(inflated_before..).unwrap_or_default();
                self.utf8
                    .feed(fresh)
                    .map_err(|_| ProtocolError::InvalidUtf8)?;
            }
            partial.buf = out;
        } else {
            partial.buf.extend_from_slice(&payload);
        }
        if !header.fin {
            self.message = Some(partial);
            return Ok(None);
        }
        let bytes = partial.buf.freeze();
        let message = if partial.is_text {
            self.finish_text()?;
            Message::Text(Utf8Bytes::from_validated(bytes))
        } else {
            Message::Binary(bytes)
        };
        Ok(Some(Event::Message(message)))
    }
}
