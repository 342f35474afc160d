//! The connection state machine: frame validation, message assembly, limits and the close
//! handshake.
//!
//! [`Connection::read`] takes the bytes received so far in a `BytesMut` and returns one
//! [`Event`] at a time, consuming the bytes it used. A frame's payload is unmasked and, for text,
//! UTF-8 checked as it arrives, so a violation is reported as soon as it is certain, even in the
//! middle of a large frame. A message that fits in one frame is handed out as a slice of the
//! input buffer without a copy. The `encode_*` methods (`encode.rs`) append frames to an
//! output buffer and refuse what the state forbids (data after a close, a second close).

use bytes::{Buf, Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::deflate::{DeflateConfig, DeflateParams, Deflater, InflateError, Inflater};
use crate::ending::{CloseInfo, CloseReason};
use crate::error::ProtocolError;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, apply_mask};
use crate::message::{Message, Utf8Bytes};
use crate::utf8::Utf8Validator;

mod encode;

pub use encode::encode_frame;

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // A WebSocket connection has exactly two ends.
pub enum Role {
    /// The client: masks what it sends, expects unmasked frames.
    Client,
    /// The server: expects masked frames, sends unmasked.
    Server,
}

/// One side of the connection, as seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // There are two sides.
pub enum Side {
    /// This endpoint.
    Local,
    /// The peer.
    Remote,
}

/// Size limits. Every limit is checked when a frame header arrives, before its payload is
/// buffered, so an oversized frame or message fails fast with 1009.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// The largest message, in bytes, after reassembly. Default: 1 MiB.
    pub max_message_size: usize,
    /// The largest single frame payload, in bytes. Default: 1 MiB.
    pub max_frame_size: usize,
}

impl Limits {
    /// The default message and frame limit: 1 MiB.
    pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 1 << 20;

    /// Limits with both maxima set to `max` bytes.
    pub const fn new(max: usize) -> Self {
        Self {
            max_message_size: max,
            max_frame_size: max,
        }
    }

    /// These limits with the frame limit set to `max` bytes.
    pub const fn with_max_frame_size(mut self, max: usize) -> Self {
        self.max_frame_size = max;
        self
    }

    /// These limits with the message limit set to `max` bytes.
    pub const fn with_max_message_size(mut self, max: usize) -> Self {
        self.max_message_size = max;
        self
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_MESSAGE_SIZE)
    }
}

/// What the peer sent, one item at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A complete data message.
    Message(Message),
    /// A ping. The caller owes the peer a pong with the same payload:
    /// [`Connection::encode_pong`].
    Ping(Bytes),
    /// A pong (solicited or not; unsolicited pongs need no action).
    Pong(Bytes),
    /// A close frame. `None` when the peer sent no status code. If this endpoint had not sent
    /// a close yet, it owes a reply: [`Connection::encode_close_reply`].
    Close(Option<CloseFrame>),
}

/// Why a frame could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// A close frame has been sent or received, or the connection failed: no more data frames
    /// may be sent.
    Closed,
    /// A close frame was already sent.
    AlreadyClosing,
    /// Only a server may send a payload separately from its header: a client must mask it.
    MaskRequired,
    /// A ping or pong payload was longer than 125 bytes.
    ControlTooLong {
        /// The payload length.
        len: usize,
    },
    /// A payload compressed elsewhere does not fit this connection's compression.
    CompressionMismatch,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed => f.write_str("the connection is closing or closed"),
            Self::AlreadyClosing => f.write_str("a close frame was already sent"),
            Self::MaskRequired => f.write_str("a client must mask its payloads"),
            Self::CompressionMismatch => {
                f.write_str("a payload compressed elsewhere does not fit this connection")
            }
            Self::ControlTooLong { len } => {
                write!(
                    f,
                    "control payload too long: expected at most 125 bytes, found {len}"
                )
            }
        }
    }
}

impl std::error::Error for SendError {}

/// The close handshake state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseState {
    /// No close frame either way: data flows.
    Open,
    /// This endpoint sent a close frame and waits for the peer's.
    CloseSent,
    /// The peer sent a close frame; this endpoint owes a reply.
    CloseReceived,
    /// Both close frames were exchanged: the handshake is complete.
    Closed,
    /// The peer violated the protocol; no more input is processed.
    Failed,
}

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

/// permessage-deflate on one connection: the negotiated codec and the sending policy.
#[derive(Debug)]
struct Deflate {
    params: DeflateParams,
    config: DeflateConfig,
    deflater: Deflater,
    inflater: Inflater,
}

/// RSV1, the bit permessage-deflate gives a compressed message's first frame.
const RSV1: u8 = 0b100;

/// The sans-IO WebSocket connection: feed it received bytes, get events; ask it to encode
/// frames, write what it appends.
#[derive(Debug)]
pub struct Connection {
    role: Role,
    limits: Limits,
    /// The reserved bits a negotiated extension allows (RSV1 with permessage-deflate).
    allowed_rsv: u8,
    frame: Option<IncomingFrame>,
    /// Boxed: fragmented messages are rare, and an idle connection should stay small.
    message: Option<Box<PartialMessage>>,
    utf8: Utf8Validator,
    /// The close frame this endpoint sent, once sent (boxed: an open connection has none).
    sent_close: Option<Box<Option<CloseFrame>>>,
    /// The peer's close frame once received (boxed for the same reason).
    received_close: Option<Box<Option<CloseFrame>>>,
    failed: bool,
    closed_by: Option<Side>,
    /// Set when the transport under the connection is finished: `Some(true)` when it ended
    /// as the protocol allows (after our close, or the close handshake), `Some(false)` when
    /// it failed (a reset, a write that failed).
    transport_end: Option<bool>,
    /// Payloads up to this many bytes are copied out of the input; larger ones share it.
    /// (`u32`: it packs with the flags, and nobody copies 4 GiB to spare a view.)
    detach_threshold: u32,
    /// permessage-deflate, when negotiated (boxed: most connections have none).
    deflate: Option<Box<Deflate>>,
}

impl Connection {
    /// A connection in the open state, after a successful opening handshake.
    pub fn new(role: Role, limits: Limits) -> Self {
        Self {
            role,
            limits,
            allowed_rsv: 0,
            frame: None,
            message: None,
            utf8: Utf8Validator::new(),
            sent_close: None,
            received_close: None,
            failed: false,
            closed_by: None,
            transport_end: None,
            detach_threshold: 0,
            deflate: None,
        }
    }

    /// Turns on permessage-deflate with the parameters the handshake negotiated; `config`
    /// gives the level and which messages are compressed. RSV1 becomes legal on the first
    /// frame of a data message, and marks it compressed.
    pub fn with_deflate(mut self, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (out_bits, out_reset) = params.outgoing(self.role);
        let (in_bits, in_reset) = params.incoming(self.role);
        self.allowed_rsv |= RSV1;
        self.deflate = Some(Box::new(Deflate {
            params,
            config: *config,
            deflater: Deflater::new(out_bits, config.level, out_reset),
            inflater: Inflater::new(in_bits, in_reset),
        }));
        self
    }

    /// The permessage-deflate parameters in force, when it was negotiated.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|deflate| deflate.params)
    }

    /// Whether [`encode_message`](Connection::encode_message) would compress `message`.
    pub fn compresses(&self, message: &Message) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|deflate| deflate.config.compresses(message.len(), message.is_text()))
    }

    /// When this connection compresses with no context: its compression config (which
    /// messages it compresses) and the `(window bits, level)` key of
    /// [`shared_compression_key`](Connection::shared_compression_key).
    pub fn shared_compression(&self) -> Option<(DeflateConfig, (u8, u8))> {
        let deflate = self.deflate.as_ref()?;
        deflate
            .deflater
            .is_stateless()
            .then(|| (deflate.config, deflate.deflater.key()))
    }

    /// When this connection compresses `message` with no context (its compressed payload
    /// depends on the message alone), the `(window bits, level)` that payload is made with:
    /// a broadcast can compress once per key and share the result with
    /// [`encode_compressed`](Connection::encode_compressed).
    pub fn shared_compression_key(&self, message: &Message) -> Option<(u8, u8)> {
        let deflate = self.deflate.as_ref()?;
        (deflate.deflater.is_stateless()
            && deflate.config.compresses(message.len(), message.is_text()))
        .then(|| deflate.deflater.key())
    }
    /// Copies payloads of up to `max` bytes into buffers of their own instead of handing out
    /// views of the input buffer (the default, `0`, never copies).
    ///
    /// A view keeps the whole input buffer alive as long as the message lives; when the input
    /// is a large buffer shared by many connections, copying small payloads (cheap) keeps a
    /// message an application holds on to from pinning it.
    /// Thresholds beyond `u32::MAX` count as `u32::MAX`.
    pub const fn with_detach_threshold(mut self, max: usize) -> Self {
        self.detach_threshold = if max > u32::MAX as usize {
            u32::MAX
        } else {
            max as u32
        };
        self
    }

    /// This endpoint's role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The limits in force.
    pub const fn limits(&self) -> Limits {
        self.limits
    }

    /// The close handshake state.
    pub const fn state(&self) -> CloseState {
        match (
            self.failed,
            self.sent_close.is_some(),
            self.received_close.is_some(),
        ) {
            (true, _, _) => CloseState::Failed,
            (false, false, false) => CloseState::Open,
            (false, true, false) => CloseState::CloseSent,
            (false, false, true) => CloseState::CloseReceived,
            (false, true, true) => CloseState::Closed,
        }
    }

    /// Who sent the first close frame, once one was sent or received.
    pub const fn closed_by(&self) -> Option<Side> {
        self.closed_by
    }

    /// The close frame the peer sent, once it sent one (`Some(None)`: it sent no status).
    pub fn peer_close(&self) -> Option<&Option<CloseFrame>> {
        self.received_close.as_deref()
    }

    /// The close frame this endpoint sent, once it sent one (`Some(None)`: without status).
    pub fn sent_close(&self) -> Option<&Option<CloseFrame>> {
        self.sent_close.as_deref()
    }

    /// Records that the transport under the connection is finished; `clean` when it ended as
    /// the protocol allows (the peer hung up after a close frame, or after a close timeout),
    /// not when it failed (a reset, a failed write). The first call counts.
    pub fn note_transport_end(&mut self, clean: bool) {
        self.transport_end.get_or_insert(clean);
    }

    /// How the connection ended, once the transport is finished
    /// ([`note_transport_end`](Connection::note_transport_end)).
    ///
    /// The side that sent the first close frame closed it, with that frame (or no status).
    /// A transport that ended before any close frame, or failed before the close handshake
    /// completed, is an abnormal closure (1006) seen by the peer's side.
    pub fn close_info(&self) -> Option<CloseInfo> {
        let clean = self.transport_end?;
        let handshake_done = self.sent_close.is_some() && self.received_close.is_some();
        let frame = match self.closed_by {
            Some(Side::Local) => self.sent_close.as_deref(),
            Some(Side::Remote) => self.received_close.as_deref(),
            None => None,
        };
        Some(match (self.closed_by, frame) {
            (Some(side), Some(frame)) if clean || handshake_done => {
                CloseInfo::new(side, CloseReason::from_frame(frame.clone()))
            }
            _ => CloseInfo::new(Side::Remote, CloseReason::Abnormal),
        })
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

    /// Whether more input is expected: false once the peer's close arrived or the connection
    /// failed.
    pub const fn wants_read(&self) -> bool {
        !self.failed && self.received_close.is_none()
    }

    /// Reads the next event from `input`, consuming the bytes it used.
    ///
    /// Returns `Ok(None)` when `input` holds no complete event yet: read more bytes, append
    /// them and call again. After the peer's close frame, or after an error, input is
    /// ignored.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the peer violated the protocol or a limit. The connection is
    /// then failed: send [`ProtocolError::close_frame`] with [`Connection::encode_close`] and
    /// drop the transport.
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        if !self.wants_read() {
            input.clear();
            return Ok(None);
        }
        let result = self.read_event(input);
        if result.is_err() {
            self.failed = true;
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
                input.advance(len);
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
                if self.sent_close.is_none() {
                    self.closed_by = Some(Side::Remote);
                }
                self.received_close = Some(Box::new(frame.clone()));
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
        let Some(deflate) = self.deflate.as_deref_mut() else {
            return Err(ProtocolError::ReservedBitsSet { bits: header.rsv });
        };
        let streams = deflate.inflater.streams_frames();
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
            deflate
                .inflater
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
