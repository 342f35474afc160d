//! The sending half of a connection: [`WriteHalf`] appends frames to an output buffer,
//! compressing where permessage-deflate was negotiated, and refuses what the state forbids
//! (data after a close, a second close). It keeps the close record, so it is also the one
//! that says how the connection ended ([`WriteHalf::close_info`]).

use bytes::BytesMut;

use super::{CloseState, RSV1, Role, SendError};
use crate::close::CloseFrame;
use crate::deflate::{DeflateConfig, DeflateParams, Deflater};
use crate::ending::{CloseInfo, CloseReason, Side};
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, apply_mask};
use crate::message::Message;

/// The sending half of a [`Connection`](super::Connection), from
/// [`Connection::split`](super::Connection::split): encodes frames, and keeps the close
/// record (which close frames went each way, whether the peer failed, how the transport
/// ended). The [`ReadHalf`](super::ReadHalf)'s holder reports the peer's close frame and a
/// protocol violation to it.
#[derive(Debug)]
pub struct WriteHalf {
    role: Role,
    /// The peer broke the protocol.
    failed: bool,
    closed_by: Option<Side>,
    /// Set when the transport under the connection is finished: `Some(true)` when it ended
    /// as the protocol allows (after our close, or the close handshake), `Some(false)` when
    /// it failed (a reset, a write that failed).
    transport_end: Option<bool>,
    /// The close frames sent and received (boxed: an open connection has none).
    close: Option<Box<CloseRecord>>,
    /// permessage-deflate, when negotiated (boxed: most connections have none).
    deflate: Option<Box<Outflate>>,
}

/// The close frames of a connection, each once it went (`Some(None)`: without status).
#[derive(Debug, Default)]
struct CloseRecord {
    sent: Option<Option<CloseFrame>>,
    received: Option<Option<CloseFrame>>,
}

/// permessage-deflate's sending side: the negotiated parameters and the sending policy.
#[derive(Debug)]
struct Outflate {
    params: DeflateParams,
    config: DeflateConfig,
    deflater: Deflater,
}

impl WriteHalf {
    pub(super) fn new(role: Role) -> Self {
        Self {
            role,
            failed: false,
            closed_by: None,
            transport_end: None,
            close: None,
            deflate: None,
        }
    }

    /// Compresses as `config` says, with the negotiated `params`.
    pub(super) fn set_deflate(&mut self, params: DeflateParams, config: &DeflateConfig) {
        let (bits, reset) = params.outgoing(self.role);
        self.deflate = Some(Box::new(Outflate {
            params,
            config: *config,
            deflater: Deflater::new(bits, config.level, reset),
        }));
    }

    fn record(&mut self) -> &mut CloseRecord {
        self.close.get_or_insert_with(Box::default)
    }

    /// Whether no data or control frame but a close may be sent: a close frame went either
    /// way, or the peer failed.
    fn is_closed(&self) -> bool {
        self.failed || self.close.is_some()
    }

    /// Records the peer's close frame, as the read half reported it
    /// ([`Event::Close`](super::Event::Close)): no more frames may be sent but the reply.
    pub fn note_peer_close(&mut self, frame: Option<CloseFrame>) {
        // Ours went first if we sent one: `encode_close` has set it then.
        self.closed_by.get_or_insert(Side::Remote);
        self.record().received = Some(frame);
    }

    /// Records that the peer broke the protocol (the read half returned an error): no more
    /// frames may be sent but the close frame that says why.
    pub fn note_failure(&mut self) {
        self.failed = true;
    }

    /// This endpoint's role.
    pub const fn role(&self) -> Role {
        self.role
    }

    /// The close handshake state.
    pub fn state(&self) -> CloseState {
        match (
            self.failed,
            self.sent_close().is_some(),
            self.peer_close().is_some(),
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
        self.close.as_ref()?.received.as_ref()
    }

    /// The close frame this endpoint sent, once it sent one (`Some(None)`: without status).
    pub fn sent_close(&self) -> Option<&Option<CloseFrame>> {
        self.close.as_ref()?.sent.as_ref()
    }

    /// Records that the transport under the connection is finished; `clean` when it ended as
    /// the protocol allows (the peer hung up after a close frame, or after a close timeout),
    /// not when it failed (a reset, a failed write). The first call counts.
    pub fn note_transport_end(&mut self, clean: bool) {
        self.transport_end.get_or_insert(clean);
    }

    /// How the connection ended, once the transport is finished
    /// ([`note_transport_end`](WriteHalf::note_transport_end)).
    ///
    /// The side that sent the first close frame closed it, with that frame (or no status).
    /// A transport that ended before any close frame, or failed before the close handshake
    /// completed, is an abnormal closure (1006) seen by the peer's side.
    pub fn close_info(&self) -> Option<CloseInfo> {
        let clean = self.transport_end?;
        let handshake_done = self.sent_close().is_some() && self.peer_close().is_some();
        let frame = match self.closed_by {
            Some(Side::Local) => self.sent_close(),
            Some(Side::Remote) => self.peer_close(),
            None => None,
        };
        Some(match (self.closed_by, frame) {
            (Some(side), Some(frame)) if clean || handshake_done => {
                CloseInfo::new(side, CloseReason::from_frame(frame.clone()))
            }
            _ => CloseInfo::new(Side::Remote, CloseReason::Abnormal),
        })
    }

    /// The permessage-deflate parameters in force, when it was negotiated.
    pub fn deflate_params(&self) -> Option<DeflateParams> {
        self.deflate.as_ref().map(|deflate| deflate.params)
    }

    /// Whether [`encode_message`](WriteHalf::encode_message) would compress `message`.
    pub fn compresses(&self, message: &Message) -> bool {
        self.deflate
            .as_ref()
            .is_some_and(|deflate| deflate.config.compresses(message.len(), message.is_text()))
    }

    /// When this connection compresses with no context: its compression config (which
    /// messages it compresses) and the `(window bits, level)` key of
    /// [`shared_compression_key`](WriteHalf::shared_compression_key).
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
    /// [`encode_compressed`](WriteHalf::encode_compressed).
    pub fn shared_compression_key(&self, message: &Message) -> Option<(u8, u8)> {
        let deflate = self.deflate.as_ref()?;
        (deflate.deflater.is_stateless()
            && deflate.config.compresses(message.len(), message.is_text()))
        .then(|| deflate.deflater.key())
    }
}

impl WriteHalf {
    /// Appends a data message as one frame.
    ///
    /// `mask` must be a fresh, unpredictable key for a client and `None` for a server.
    ///
    /// # Errors
    /// [`SendError::Closed`] once a close frame was sent or received, or the connection failed.
    pub fn encode_message(
        &mut self,
        message: &Message,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let opcode = if message.is_text() {
            Opcode::Text
        } else {
            Opcode::Binary
        };
        match self.deflate.as_deref_mut() {
            // The decision is taken before the compressor sees the message: once fed, a
            // message is always sent compressed, so both windows stay in step.
            Some(deflate) if deflate.config.compresses(message.len(), message.is_text()) => {
                let mut compressed = BytesMut::with_capacity(message.len() / 2 + 16);
                deflate
                    .deflater
                    .compress(message.payload(), &mut compressed);
                encode_frame_rsv(opcode, RSV1, &compressed, mask, out);
            }
            _ => encode_frame(opcode, message.payload(), mask, out),
        }
        Ok(())
    }

    /// Appends `message` as a compressed frame whose payload, `compressed`, was made
    /// once for many connections with the `key` of
    /// [`shared_compression_key`](WriteHalf::shared_compression_key) (a broadcast).
    ///
    /// # Errors
    /// [`SendError::Closed`] as [`WriteHalf::encode_message`];
    /// [`SendError::CompressionMismatch`] when this connection does not compress `message`
    /// with no context and that key: encode the message itself instead.
    pub fn encode_compressed(
        &mut self,
        message: &Message,
        compressed: &[u8],
        key: (u8, u8),
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if self.shared_compression_key(message) != Some(key) {
            return Err(SendError::CompressionMismatch);
        }
        let opcode = if message.is_text() {
            Opcode::Text
        } else {
            Opcode::Binary
        };
        encode_frame_rsv(opcode, RSV1, compressed, mask, out);
        Ok(())
    }

    /// Appends only the header of a data message; the caller writes the payload right after
    /// it, as is, for example from a shared buffer with a vectored write. Server role only,
    /// and only for a message sent uncompressed.
    ///
    /// # Errors
    /// [`SendError::MaskRequired`] for a client; [`SendError::CompressionMismatch`] for a
    /// message this connection compresses ([`WriteHalf::compresses`]);
    /// [`SendError::Closed`] as [`WriteHalf::encode_message`].
    pub fn encode_message_header(
        &mut self,
        message: &Message,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.role == Role::Client {
            return Err(SendError::MaskRequired);
        }
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if self.compresses(message) {
            return Err(SendError::CompressionMismatch);
        }
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode: if message.is_text() {
                Opcode::Text
            } else {
                Opcode::Binary
            },
            mask: None,
            payload_len: message.len() as u64,
        };
        header.encode(out);
        Ok(())
    }

    /// Appends a ping.
    ///
    /// # Errors
    /// [`SendError::ControlTooLong`] for a payload over 125 bytes; [`SendError::Closed`] once
    /// a close frame was sent or received.
    pub fn encode_ping(
        &mut self,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.encode_control(Opcode::Ping, payload, mask, out)
    }

    /// Appends the pong owed for a ping with `payload`.
    ///
    /// # Errors
    /// As [`WriteHalf::encode_ping`].
    pub fn encode_pong(
        &mut self,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        self.encode_control(Opcode::Pong, payload, mask, out)
    }

    fn encode_control(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong { len: payload.len() });
        }
        encode_frame(opcode, payload, mask, out);
        Ok(())
    }

    /// Appends a close frame: this endpoint starts the close handshake (or, after the peer's
    /// close, replies with `frame`; or fails the connection after a protocol error).
    ///
    /// `None` sends a close frame without a status code.
    ///
    /// # Errors
    /// [`SendError::AlreadyClosing`] if a close frame was already sent: never send two.
    pub fn encode_close(
        &mut self,
        frame: Option<&CloseFrame>,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.sent_close().is_some() {
            return Err(SendError::AlreadyClosing);
        }
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        let len = match frame {
            Some(frame) => {
                let mut cursor = payload.as_mut_slice();
                frame.encode_payload(&mut cursor);
                frame.encoded_len()
            }
            None => 0,
        };
        encode_frame(
            Opcode::Close,
            payload.get(..len).unwrap_or_default(),
            mask,
            out,
        );
        self.record().sent = Some(frame.cloned());
        if self.closed_by.is_none() {
            self.closed_by = Some(Side::Local);
        }
        Ok(())
    }

    /// Appends the reply owed to the peer's close frame: the same code (or no code if the peer
    /// sent none), without a reason.
    ///
    /// # Errors
    /// [`SendError::AlreadyClosing`] if a close frame was already sent.
    pub fn encode_close_reply(
        &mut self,
        mask: Option<[u8; 4]>,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        let reply = match self.peer_close() {
            Some(Some(frame)) => Some(CloseFrame::new(frame.code, crate::close::Reason::empty())),
            _ => None,
        };
        self.encode_close(reply.as_ref(), mask, out)
    }
}

/// Appends one complete (FIN) frame with `payload`, masked with `mask` when given.
pub fn encode_frame(opcode: Opcode, payload: &[u8], mask: Option<[u8; 4]>, out: &mut BytesMut) {
    encode_frame_rsv(opcode, 0, payload, mask, out);
}

/// As [`encode_frame`], with the reserved bits `rsv` (RSV1 as `0b100`).
fn encode_frame_rsv(
    opcode: Opcode,
    rsv: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) {
    let header = FrameHeader {
        fin: true,
        rsv,
        opcode,
        mask,
        payload_len: payload.len() as u64,
    };
    // The header goes through a small stack buffer, so the output buffer is reserved once and
    // written twice, instead of byte by byte.
    let mut head = [0u8; crate::frame::MAX_HEADER_LEN];
    let head_len = {
        let mut cursor = head.as_mut_slice();
        header.encode(&mut cursor);
        crate::frame::MAX_HEADER_LEN - cursor.len()
    };
    out.reserve(head_len + payload.len());
    out.extend_from_slice(head.get(..head_len).unwrap_or_default());
    let start = out.len();
    out.extend_from_slice(payload);
    if let (Some(key), Some(body)) = (mask, out.get_mut(start..)) {
        apply_mask(body, key, 0);
    }
}
