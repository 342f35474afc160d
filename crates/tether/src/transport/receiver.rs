//! The receiving half: reads, drives the core, answers pings and completes the close
//! handshake.
//!
//! After a close handshake the server ends the TCP connection first, as RFC 6455 section 7.1.1
//! asks, and the client waits (bounded by the close timeout) for the server to do so. After a
//! protocol violation the receiver sends the error's close frame, ends its write side and
//! drains what the peer still sends until it hangs up, so the close frame is not lost to a TCP
//! reset. The waiting happens in a background task that owns the read half, so `recv` reports
//! the end at once.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tether_proto::{CloseFrame, Event, Message, ProtocolError, Role, Side};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};

use super::sender::WriteError;
use super::{CloseInfo, CloseReason, Shared};
use crate::error::{Error, TimeoutPhase};

/// The smallest read offered into a connection's own buffer.
const READ_CHUNK: usize = 4096;

/// How far a connection's own buffer may grow ahead of the bytes it holds while a large frame
/// arrives: growth follows what the peer actually sent, so announcing a huge frame does not
/// make us allocate it up front.
const MAX_READ_AHEAD: usize = 256 * 1024;

/// The size of a fresh chunk of the shared receive buffer.
const SCRATCH_CHUNK: usize = 128 * 1024;

/// A read from the shared buffer is offered at least this much room, so a 64 KiB message
/// arrives in one read.
const SCRATCH_MIN_SPARE: usize = 72 * 1024;

/// Payloads up to this size are copied out of the shared buffer, so that a small message an
/// application keeps does not pin a whole chunk; larger ones are handed out without a copy.
const COPY_OUT_MAX: usize = 4 * 1024;

thread_local! {
    /// The receive buffer shared by every connection on this thread. An idle connection holds
    /// no read buffer: it reads into this one, and keeps only the bytes of a frame still
    /// arriving.
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The receiving half of a connection.
#[derive(Debug)]
pub struct Receiver<S> {
    shared: Arc<Shared<S>>,
    /// `None` once handed to the background task that ends the connection.
    io: Option<ReadHalf<S>>,
    buf: BytesMut,
    close_info: Option<CloseInfo>,
    done: bool,
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Receiver<S> {
    pub(crate) fn new(shared: Arc<Shared<S>>, io: ReadHalf<S>, leftover: BytesMut) -> Self {
        // An empty leftover may still hold the handshake's buffer: let it go.
        let buf = if leftover.is_empty() {
            BytesMut::new()
        } else {
            leftover
        };
        Self {
            shared,
            io: Some(io),
            buf,
            close_info: None,
            done: false,
        }
    }

    /// Receives the next data message; see [`WebSocket::recv`](super::WebSocket::recv).
    ///
    /// # Errors
    /// As [`WebSocket::recv`](super::WebSocket::recv).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        if self.done {
            return None;
        }
        let next = self.next_message().await;
        match next {
            Ok(Some(message)) => Some(Ok(message)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }

    /// Whether a complete frame is already buffered, so the next `recv` can make progress
    /// without waiting for the network.
    pub fn has_buffered_input(&self) -> bool {
        // Mid-frame, the buffer starts with payload, not a header: say no rather than guess.
        !self.done
            && !self.shared.proto().conn.has_partial_frame()
            && tether_proto::frame::FrameHeader::decode(&self.buf)
                .ok()
                .flatten()
                .is_some_and(|(header, len)| (self.buf.len() - len) as u64 >= header.payload_len)
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<&CloseInfo> {
        self.close_info.as_ref()
    }

    async fn next_message(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let event = self.shared.proto().conn.read(&mut self.buf);
            match event {
                Ok(Some(Event::Message(message))) => {
                    self.release_idle_buffer();
                    return Ok(Some(detach_small(message)));
                }
                Ok(Some(Event::Ping(payload))) => self.answer_ping(&payload).await?,
                Ok(Some(Event::Close(frame))) => {
                    self.on_peer_close(frame).await;
                    return Ok(None);
                }
                Ok(Some(_)) => {} // pongs need no action
                Ok(None) => {
                    if !self.fill().await? {
                        return self.on_eof().await;
                    }
                }
                Err(error) => {
                    self.fail(&error).await;
                    return Err(Error::protocol(error));
                }
            }
        }
    }

    /// Reads more bytes; `false` at end of stream. Bounded by the close deadline once we
    /// have sent a close frame.
    async fn fill(&mut self) -> Result<bool, Error> {
        let deadline = self.shared.proto().close_deadline;
        let read = std::future::poll_fn(|cx| self.poll_fill(cx));
        let result = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(result) => result,
                Err(_) => {
                    let ours = self.shared.proto().sent_close.clone().flatten();
                    self.close_info = Some(CloseInfo {
                        initiated_by: Side::Local,
                        reason: CloseReason::from_frame(ours),
                    });
                    shutdown_write(&self.shared).await;
                    return Err(Error::timeout(TimeoutPhase::Close));
                }
            },
            None => read.await,
        };
        match result {
            Ok(read) => Ok(read > 0),
            Err(error) => {
                self.shared.proto().terminated = true;
                self.close_info = Some(CloseInfo {
                    initiated_by: Side::Remote,
                    reason: CloseReason::Abnormal,
                });
                Err(Error::io(error))
            }
        }
    }

    /// One read: into the thread's shared buffer when nothing is buffered (the common case
    /// between messages), else into this connection's buffer, sized by what the frame in
    /// progress still needs.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Self {
            shared, io, buf, ..
        } = self;
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        if buf.is_empty() {
            let shared_read = SCRATCH.with(|cell| {
                // Only a re-entrant poll could find it borrowed; then use our own buffer.
                let mut scratch = cell.try_borrow_mut().ok()?;
                if scratch.capacity() < SCRATCH_MIN_SPARE {
                    // Reuses the old chunk in place when no message still refers to it.
                    scratch.reserve(SCRATCH_CHUNK);
                }
                Some(
                    match tokio_util::io::poll_read_buf(Pin::new(&mut *io), cx, &mut *scratch) {
                        Poll::Ready(Ok(read)) => {
                            *buf = scratch.split_to(read);
                            Poll::Ready(Ok(read))
                        }
                        other => other,
                    },
                )
            });
            if let Some(poll) = shared_read {
                return poll;
            }
        }
        let needed = shared.proto().conn.bytes_needed(buf.len());
        let want = needed.clamp(READ_CHUNK, buf.len().max(MAX_READ_AHEAD));
        if buf.capacity() - buf.len() < want {
            buf.reserve(want);
        }
        tokio_util::io::poll_read_buf(Pin::new(io), cx, buf)
    }

    async fn answer_ping(&mut self, payload: &[u8]) -> Result<(), Error> {
        match self
            .shared
            .write_frame(|proto, mask, out| proto.conn.encode_pong(payload, mask, out))
            .await
        {
            // Closing: no pong is owed any more.
            Ok(()) | Err(WriteError::State(_)) => Ok(()),
            Err(WriteError::Io(error)) => Err(Error::io(error)),
        }
    }

    async fn on_peer_close(&mut self, frame: Option<CloseFrame>) {
        let ours = self.shared.proto().sent_close.clone();
        let info = match ours {
            Some(ours) => CloseInfo {
                initiated_by: Side::Local,
                reason: CloseReason::from_frame(ours),
            },
            None => {
                let reply = self
                    .shared
                    .write_frame(|proto, mask, out| proto.conn.encode_close_reply(mask, out));
                // If the reply cannot be written the peer learns of the end from the TCP
                // close; the handshake is over from our side either way.
                let _ = tokio::time::timeout(self.shared.config.close_timeout, reply).await;
                CloseInfo {
                    initiated_by: Side::Remote,
                    reason: CloseReason::from_frame(frame),
                }
            }
        };
        self.close_info = Some(info);
        self.end_transport().await;
    }

    async fn on_eof(&mut self) -> Result<Option<Message>, Error> {
        let ours = self.shared.proto().sent_close.clone();
        shutdown_write(&self.shared).await;
        match ours {
            // We started the close and the peer hung up without answering: the end we
            // asked for, without its confirmation.
            Some(ours) => {
                self.close_info = Some(CloseInfo {
                    initiated_by: Side::Local,
                    reason: CloseReason::from_frame(ours),
                });
                Ok(None)
            }
            None => {
                self.close_info = Some(CloseInfo {
                    initiated_by: Side::Remote,
                    reason: CloseReason::Abnormal,
                });
                Err(Error::abnormal_closure())
            }
        }
    }

    /// Fails the connection: sends the error's close frame, then ends the transport.
    async fn fail(&mut self, error: &ProtocolError) {
        let frame = error.close_frame();
        let write = self.shared.write_frame(|proto, mask, out| {
            proto.conn.encode_close(Some(&frame), mask, out)?;
            proto.sent_close = Some(Some(frame.clone()));
            Ok(())
        });
        let _ = tokio::time::timeout(self.shared.config.close_timeout, write).await;
        self.close_info = Some(CloseInfo {
            initiated_by: Side::Local,
            reason: CloseReason::Frame(frame),
        });
        shutdown_write(&self.shared).await;
        self.linger(false);
    }

    /// Ends the TCP connection after a complete close handshake: the server first, the
    /// client after the server.
    async fn end_transport(&mut self) {
        let client = self.shared.role == Role::Client;
        if !client {
            shutdown_write(&self.shared).await;
        }
        self.linger(client);
    }

    /// Hands the read half to a background task that reads and discards until the peer ends
    /// the connection (bounded by the close timeout), then, if asked, shuts down the write side.
    fn linger(&mut self, shutdown_after: bool) {
        self.buf = BytesMut::new();
        let Some(mut io) = self.io.take() else {
            return;
        };
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let timeout = shared.config.close_timeout;
            let drain = async {
                let mut scratch = [0u8; 1024];
                while let Ok(1..) = io.read(&mut scratch).await {}
            };
            let _ = tokio::time::timeout(timeout, drain).await;
            if shutdown_after {
                shutdown_write(&shared).await;
            }
        });
    }

    /// Drops the read buffer once it is empty: an idle connection holds none, and a chunk of
    /// the shared buffer is not kept alive by a connection that has finished with it.
    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

/// Marks the transport finished and shuts down its write side (TCP FIN), bounded by the close
/// timeout.
async fn shutdown_write<S: AsyncWrite>(shared: &Shared<S>) {
    shared.proto().terminated = true;
    let shutdown = async {
        let mut writer = shared.writer.lock().await;
        let _ = writer.io.shutdown().await;
    };
    let _ = tokio::time::timeout(shared.config.close_timeout, shutdown).await;
}

/// Copies a small payload out of the (possibly shared) read buffer; see [`COPY_OUT_MAX`].
fn detach_small(message: Message) -> Message {
    if message.len() > COPY_OUT_MAX {
        return message;
    }
    match message {
        Message::Text(text) => Message::Text(tether_proto::Utf8Bytes::from(text.as_str())),
        Message::Binary(bytes) => Message::Binary(Bytes::copy_from_slice(&bytes)),
        other => other,
    }
}
