//! The sending half: a cloneable handle that many tasks can send through at once.
//!
//! Every write takes the connection's write lock, encodes under the protocol lock (so the
//! core's close rules see every frame in order) and writes the encoded bytes before the lock
//! is released; a data frame can never overtake a close frame.

use std::io;
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use tether_proto::{CloseFrame, Message, Role, SendError};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::{Proto, Shared, Writer};
use crate::error::{Error, TimeoutPhase};
use crate::mask_keys::mask_key;

/// A write buffer larger than this is released once it has been written, so an idle
/// connection does not keep a large buffer after one large message.
const MAX_RETAINED_WRITE_BUFFER: usize = 16 * 1024;

/// Why a frame was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The protocol state forbids the frame (closing, closed, failed).
    State(SendError),
    /// The transport failed.
    Io(io::Error),
}

impl<S: AsyncWrite> Writer<S> {
    /// Writes the whole buffer. Cancel-safe: what was written is removed from the buffer as
    /// it goes, so a cancelled write resumes where it stopped.
    pub(crate) async fn write_buffered(&mut self) -> io::Result<()> {
        while !self.buf.is_empty() {
            let written = self.io.write(&self.buf).await?;
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            self.buf.advance(written);
        }
        self.io.flush().await?;
        if self.buf.capacity() > MAX_RETAINED_WRITE_BUFFER {
            self.buf = BytesMut::new();
        }
        Ok(())
    }
}

impl<S: AsyncWrite> Shared<S> {
    /// Encodes one frame with `encode` and writes it, in order with every other writer.
    pub(crate) async fn write_frame<F>(&self, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut Proto, Option<[u8; 4]>, &mut BytesMut) -> Result<(), SendError>,
    {
        let mut writer = self.writer.lock().await;
        let mask = match self.role {
            Role::Client => Some(mask_key()),
            Role::Server => None,
        };
        {
            let mut proto = self.proto();
            if proto.terminated {
                return Err(WriteError::State(SendError::Closed));
            }
            encode(&mut proto, mask, &mut writer.buf).map_err(WriteError::State)?;
        }
        let result = writer.write_buffered().await;
        if result.is_err() {
            self.proto().terminated = true;
        }
        result.map_err(WriteError::Io)
    }

    /// Sends our close frame, bounded by the close timeout; a second call does nothing.
    pub(crate) async fn send_close(&self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let timeout = self.config.close_timeout;
        let write = self.write_frame(|proto, mask, out| {
            proto.conn.encode_close(frame.as_ref(), mask, out)?;
            proto.sent_close = Some(frame.clone());
            proto.close_deadline = Some(Instant::now() + timeout);
            Ok(())
        });
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(()) | Err(WriteError::State(_))) => Ok(()),
            Ok(Err(WriteError::Io(error))) => Err(Error::io(error)),
            Err(_) => {
                self.proto().terminated = true;
                Err(Error::timeout(TimeoutPhase::Close))
            }
        }
    }
}

/// The sending half of a connection. Clone it to send from several tasks.
#[derive(Debug)]
pub struct Sender<S> {
    shared: Arc<Shared<S>>,
}

impl<S> Clone for Sender<S> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl<S: AsyncWrite> Sender<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>) -> Self {
        Self { shared }
    }

    /// Sends a message.
    ///
    /// # Errors
    /// [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once a close frame
    /// was sent or received or the transport ended, with the message given back
    /// ([`Error::into_message`]); [`ErrorKind::Io`](crate::ErrorKind::Io) if the write failed.
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        let message = message.into();
        match self
            .shared
            .write_frame(|proto, mask, out| proto.conn.encode_message(&message, mask, out))
            .await
        {
            Ok(()) => Ok(()),
            Err(WriteError::State(_)) => Err(Error::closed(Some(message))),
            Err(WriteError::Io(error)) => Err(Error::io(error)),
        }
    }

    /// Sends a ping with `payload` (at most 125 bytes). The pong is consumed by the receiver.
    ///
    /// # Errors
    /// [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once closing;
    /// [`ErrorKind::Protocol`](crate::ErrorKind::Protocol)-free: an oversized payload is
    /// refused as [`ErrorKind::Io`](crate::ErrorKind::Io) with `InvalidInput`.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        match self
            .shared
            .write_frame(|proto, mask, out| proto.conn.encode_ping(payload, mask, out))
            .await
        {
            Ok(()) => Ok(()),
            Err(WriteError::State(SendError::ControlTooLong { len })) => {
                Err(Error::io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("ping payload too long: expected at most 125 bytes, found {len}"),
                )))
            }
            Err(WriteError::State(_)) => Err(Error::closed(None)),
            Err(WriteError::Io(error)) => Err(Error::io(error)),
        }
    }

    /// Starts the close handshake with `frame` (`None`: a close without status). The
    /// receiving half completes it: keep receiving until it returns `None`. Idempotent: once
    /// a close was sent, further calls do nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if the close frame could not be
    /// written within the close timeout; an I/O error.
    pub async fn close(&self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.shared.send_close(frame).await
    }

    /// Whether nothing more can be sent (a close was sent or received, or the transport ended).
    pub fn is_closed(&self) -> bool {
        let proto = self.shared.proto();
        proto.terminated || !matches!(proto.conn.state(), tether_proto::CloseState::Open)
    }
}
