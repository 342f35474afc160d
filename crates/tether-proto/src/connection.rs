//! The connection state machine: frame validation, message assembly, limits and the close
//! handshake.
//!
//! [`Connection::read`] takes the bytes received so far in a `BytesMut` and returns one
//! [`Event`] at a time, consuming the bytes it used. A frame's payload is unmasked and, for text,
//! UTF-8 checked as it arrives, so a violation is reported as soon as it is certain, even in the
//! middle of a large frame. A message that fits in one frame is handed out as a slice of the
//! input buffer without a copy. The `encode_*` methods append frames to an output buffer and
//! refuse what the state forbids (data after a close, a second close).
//!
//! A connection is two halves that share nothing: [`ReadHalf`] (`read.rs`) keeps what
//! reading needs, [`WriteHalf`] (`write.rs`) what sending needs and the close record.
//! [`Connection`] holds both and passes the peer's close and a violation from one to the
//! other; [`Connection::split`] hands them out, so a transport can read on one task and
//! send on others without a lock between them.

use bytes::{Bytes, BytesMut};

use crate::close::CloseFrame;
use crate::deflate::{DeflateConfig, DeflateParams, Inflater};
use crate::ending::{CloseInfo, Side};
use crate::error::ProtocolError;
use crate::message::Message;

mod read;
mod write;

pub use read::ReadHalf;
pub use write::{WriteHalf, encode_frame};

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // A WebSocket connection has exactly two ends.
pub enum Role {
    /// The client: masks what it sends, expects unmasked frames.
    Client,
    /// The server: expects masked frames, sends unmasked.
    Server,
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
    /// [`WriteHalf::encode_pong`].
    Ping(Bytes),
    /// A pong (solicited or not; unsolicited pongs need no action).
    Pong(Bytes),
    /// A close frame. `None` when the peer sent no status code. If this endpoint had not sent
    /// a close yet, it owes a reply: [`WriteHalf::encode_close_reply`].
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

/// RSV1, the bit permessage-deflate gives a compressed message's first frame.
const RSV1: u8 = 0b100;

/// The sans-IO WebSocket connection: feed it received bytes, get events; ask it to encode
/// frames, write what it appends.
///
/// Its methods are those of its two halves ([`ReadHalf`], [`WriteHalf`]); it passes what the
/// read half learns (the peer's close, a violation) to the write half itself.
#[derive(Debug)]
pub struct Connection {
    read: ReadHalf,
    write: WriteHalf,
}

impl Connection {
    /// A connection in the open state, after a successful opening handshake.
    pub fn new(role: Role, limits: Limits) -> Self {
        Self {
            read: ReadHalf::new(role, limits),
            write: WriteHalf::new(role),
        }
    }

    /// The two halves, to read on one task and send on others. The one that reads must pass
    /// the peer's close and a violation to the write half (see [`ReadHalf`]).
    pub fn split(self) -> (ReadHalf, WriteHalf) {
        (self.read, self.write)
    }

    /// Turns on permessage-deflate with the parameters the handshake negotiated; `config`
    /// gives the level and which messages are compressed. RSV1 becomes legal on the first
    /// frame of a data message, and marks it compressed.
    pub fn with_deflate(mut self, params: DeflateParams, config: &DeflateConfig) -> Self {
        let (bits, reset) = params.incoming(self.read.role());
        self.read.set_inflater(Inflater::new(bits, reset));
        self.write.set_deflate(params, config);
        self
    }

    /// Copies payloads of up to `max` bytes into buffers of their own instead of handing out
    /// views of the input buffer (the default, `0`, never copies).
    ///
    /// A view keeps the whole input buffer alive as long as the message lives; when the input
    /// is a large buffer shared by many connections, copying small payloads (cheap) keeps a
    /// message an application holds on to from pinning it.
    /// Thresholds beyond `u32::MAX` count as `u32::MAX`.
    pub const fn with_detach_threshold(mut self, max: usize) -> Self {
        let max = if max > u32::MAX as usize {
            u32::MAX
        } else {
            max as u32
        };
        self.read.set_detach_threshold(max);
        self
    }

    /// Reads the next event from `input`, consuming the bytes it used; see
    /// [`ReadHalf::read`]. The peer's close and a violation are recorded for sending.
    ///
    /// # Errors
    /// A [`ProtocolError`] when the peer violated the protocol or a limit. The connection is
    /// then failed: send [`ProtocolError::close_frame`] with [`Connection::encode_close`] and
    /// drop the transport.
    pub fn read(&mut self, input: &mut BytesMut) -> Result<Option<Event>, ProtocolError> {
        let result = self.read.read(input);
        match &result {
            Ok(Some(Event::Close(frame))) => self.write.note_peer_close(frame.clone()),
            Err(_) => self.write.note_failure(),
            Ok(_) => {}
        }
        result
    }

    /// This endpoint's role.
    pub const fn role(&self) -> Role {
        self.read.role()
    }

    /// The limits in force.
    pub const fn limits(&self) -> Limits {
        self.read.limits()
    }

    /// Whether a fragmented message or a partial frame is in progress; see
    /// [`ReadHalf::is_mid_message`].
    pub const fn is_mid_message(&self) -> bool {
        self.read.is_mid_message()
    }

    /// Whether a frame's payload is still arriving; see [`ReadHalf::has_partial_frame`].
    pub const fn has_partial_frame(&self) -> bool {
        self.read.has_partial_frame()
    }

    /// How many more bytes the frame in progress needs; see [`ReadHalf::bytes_needed`].
    pub fn bytes_needed(&self, buffered: usize) -> usize {
        self.read.bytes_needed(buffered)
    }

    /// Whether more input is expected: false once the peer's close arrived or the connection
    /// failed.
    pub const fn wants_read(&self) -> bool {
        self.read.wants_read()
    }

    /// The close handshake state.
    pub fn state(&self) -> CloseState {
        self.write.state()
    }

    /// Who sent the first close frame, once one was sent or received.
    pub const fn closed_by(&self) -> Option<Side> {
        self.write.closed_by()
    }

    /// The close frame the peer sent, once it sent one (`Some(None)`: it sent no status).
    pub fn peer_close(&self) -> Option<&Option<CloseFrame>> {
        self.write.peer_close()
    }

    /// The close frame this endpoint sent, once it sent one (`Some(None)`: without status).
    pub fn sent_close(&self) -> Option<&Option<CloseFrame>> {
        self.write.sent_close()
    }

    /// Records that the transport is finished; see [`WriteHalf::note_transport_end`].
    pub fn note_transport_end(&mut self, clean: bool) {
        self.write.note_transport_end(clean);
    }

    /// How the connection ended, once the transport is finished; see
    /// [`WriteHalf::close_info`].
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.write.close_info()
    }

    /// The permessage-deflate parameters in force, when it was negotiated.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.write.deflate_params()
    }

    /// Whether [`encode_message`](Connection::encode_message) would compress `message`.
    pub fn compresses(&self, message: &Message) -> bool {
        self.write.compresses(message)
    }

    /// See [`WriteHalf::shared_compression`].
    pub fn shared_compression(&self) -> Option<(DeflateConfig, (u8, u8))> {
        self.write.shared_compression()
    }

    /// See [`WriteHalf::shared_compression_key`].
    pub fn shared_compression_key(&self, message: &Message) -> Option<(u8, u8)> {
        self.write.shared_compression_key(message)
    }

    /// Appends a data message as one frame; see [`WriteHalf::encode_message`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_message`].
    pub fn encode_message(
        &mut self,
        message: &Message,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write.encode_message(message, mask, out)
    }

    /// Appends a frame compressed once for many connections; see
    /// [`WriteHalf::encode_compressed`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_compressed`].
    pub fn encode_compressed(
        &mut self,
        message: &Message,
        compressed: &[u8],
        key: (u8, u8),
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write
            .encode_compressed(message, compressed, key, mask, out)
    }

    /// Appends only the header of a data message; see [`WriteHalf::encode_message_header`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_message_header`].
    pub fn encode_message_header(
        &mut self,
        message: &Message,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write.encode_message_header(message, out)
    }

    /// Appends a ping; see [`WriteHalf::encode_ping`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_ping`].
    pub fn encode_ping(
        &mut self,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write.encode_ping(payload, mask, out)
    }

    /// Appends the pong owed for a ping; see [`WriteHalf::encode_pong`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_ping`].
    pub fn encode_pong(
        &mut self,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write.encode_pong(payload, mask, out)
    }

    /// Appends a close frame; see [`WriteHalf::encode_close`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_close`].
    pub fn encode_close(
        &mut self,
        frame: Option<&CloseFrame>,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write.encode_close(frame, mask, out)
    }

    /// Appends the reply owed to the peer's close frame; see
    /// [`WriteHalf::encode_close_reply`].
    ///
    /// # Errors
    /// As [`WriteHalf::encode_close_reply`].
    pub fn encode_close_reply(
        &mut self,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.write.encode_close_reply(mask, out)
    }
}
