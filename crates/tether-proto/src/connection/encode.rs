//! The sending half of [`Connection`]: the `encode_*` methods append frames to an output
//! buffer, compressing where permessage-deflate was negotiated, and refuse what the state
//! forbids (data after a close, a second close).

use bytes::BytesMut;

use super::{Connection, RSV1, Role, SendError, Side};
use crate::close::CloseFrame;
use crate::frame::{FrameHeader, MAX_CONTROL_PAYLOAD, Opcode, apply_mask};
use crate::message::Message;

impl Connection {
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
        if self.sent_close.is_some() || self.received_close.is_some() || self.failed {
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
    /// [`shared_compression_key`](Connection::shared_compression_key) (a broadcast).
    ///
    /// # Errors
    /// [`SendError::Closed`] as [`Connection::encode_message`];
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
        if self.sent_close.is_some() || self.received_close.is_some() || self.failed {
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
    /// message this connection compresses ([`Connection::compresses`]);
    /// [`SendError::Closed`] as [`Connection::encode_message`].
    pub fn encode_message_header(
        &mut self,
        message: &Message,
        out: &mut BytesMut,
    ) -> Result<(), SendError> {
        if self.role == Role::Client {
            return Err(SendError::MaskRequired);
        }
        if self.sent_close.is_some() || self.received_close.is_some() || self.failed {
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
    /// As [`Connection::encode_ping`].
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
        if self.sent_close.is_some() || self.received_close.is_some() || self.failed {
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
        if self.sent_close.is_some() {
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
        self.sent_close = Some(Box::new(frame.cloned()));
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
        let reply = match self.received_close.as_deref() {
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
