//! The sending half: a cloneable handle that many tasks can send through at once.
//!
//! Every write takes the connection's write lock, encodes under the protocol lock (so the
//! core's close rules see every frame in order) and writes the encoded bytes before the lock
//! is released; a data frame can never overtake a close frame. `feed` encodes without
//! writing, so a burst of messages goes out in one write; a server's large payloads are
//! written straight from their shared buffer with a vectored write, after their header.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use tether_proto::{CloseFrame, Message, Role, SendError};
use tokio::io::AsyncWrite;
use tokio::time::Instant;

use super::{Proto, Shared, Writer};
use crate::error::{Error, TimeoutPhase};
use crate::mask_keys::mask_key;

/// A write buffer larger than this is released once it has been written, so an idle
/// connection does not keep a large buffer after one large message.
const MAX_RETAINED_WRITE_BUFFER: usize = 16 * 1024;

/// A server payload at least this large is written from its own buffer instead of being
/// copied behind its header.
const VECTORED_PAYLOAD_MIN: usize = 16 * 1024;

/// `feed` writes once this much is queued, so a long burst does not grow the buffer without
/// bound.
const FEED_WRITE_THRESHOLD: usize = 64 * 1024;

/// Whether a frame must be written before the write lock is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// Write everything queued, this frame included.
    Now,
    /// Queue the frame; write only past the feed threshold.
    Later,
}

/// Why a frame was not written.
#[derive(Debug)]
pub(crate) enum WriteError {
    /// The protocol state forbids the frame (closing, closed, failed).
    State(SendError),
    /// The transport failed.
    Io(io::Error),
}

impl<S> Writer<S> {
    /// Whether the queued bytes must be written now: on request, past the feed threshold, or
    /// when a payload waits in the tail (nothing can be queued behind it).
    fn must_write(&self, flush: Flush) -> bool {
        flush == Flush::Now || !self.tail.is_empty() || self.buf.len() >= FEED_WRITE_THRESHOLD
    }
}

impl<S: AsyncWrite> Writer<S> {
    /// Writes the whole buffer, then the tail. Cancel-safe: what was written is removed as it
    /// goes, so a cancelled write resumes where it stopped.
    pub(crate) async fn write_buffered(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_write_buffered(cx)).await
    }

    /// [`Writer::write_buffered`] as a poll function.
    fn poll_write_buffered(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() || !self.tail.is_empty() {
            let io = Pin::new(&mut self.io);
            let written = if self.tail.is_empty() {
                ready!(io.poll_write(cx, &self.buf))?
            } else if self.buf.is_empty() {
                ready!(io.poll_write(cx, &self.tail))?
            } else {
                let slices = [IoSlice::new(&self.buf), IoSlice::new(&self.tail)];
                ready!(io.poll_write_vectored(cx, &slices))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if written == self.buf.len() && self.tail.is_empty() {
                // All of it, the usual case: clearing is cheaper than advancing.
                self.buf.clear();
                continue;
            }
            let from_buf = written.min(self.buf.len());
            self.buf.advance(from_buf);
            self.tail.advance(written - from_buf);
        }
        ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        if self.buf.capacity() > MAX_RETAINED_WRITE_BUFFER {
            self.buf = BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

/// The outcome of trying to write without waiting.
enum Attempt<F> {
    /// Finished (written, queued, or refused).
    Done(Result<(), WriteError>),
    /// The write lock was taken: nothing was encoded, here is the encoder back.
    Busy(F),
    /// Encoded, but the socket did not take everything: the rest must be written.
    Unfinished,
}

impl<S: AsyncWrite> Shared<S> {
    /// Encodes one frame with `encode` and writes it, in order with every other writer.
    pub(crate) async fn write_frame<F>(&self, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut Proto, Option<[u8; 4]>, &mut BytesMut) -> Result<(), SendError>,
    {
        self.write_with(Flush::Now, |proto, mask, out| {
            encode(proto, mask, out).map(|()| None)
        })
        .await
    }

    /// Encodes with `encode`, which may hand back a payload to write after the encoded bytes,
    /// then writes as `flush` says.
    ///
    /// The common case finishes without waiting: the write lock is free and the socket takes
    /// the bytes at once. Only a contended lock or a full socket waits, in a boxed future, so
    /// the future of a send stays small.
    pub(crate) async fn write_with<F>(&self, flush: Flush, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut Proto, Option<[u8; 4]>, &mut BytesMut) -> Result<Option<Bytes>, SendError>,
    {
        match self.try_write_now(flush, encode) {
            Attempt::Done(result) => result,
            Attempt::Busy(encode) => Box::pin(self.write_waiting(flush, encode)).await,
            Attempt::Unfinished => Box::pin(self.flush_queued()).await,
        }
    }

    fn try_write_now<F>(&self, flush: Flush, encode: F) -> Attempt<F>
    where
        F: FnOnce(&mut Proto, Option<[u8; 4]>, &mut BytesMut) -> Result<Option<Bytes>, SendError>,
    {
        let Ok(mut writer) = self.writer.try_lock() else {
            return Attempt::Busy(encode);
        };
        if !writer.tail.is_empty() {
            // A cancelled vectored write left its payload: the waiting path writes it first.
            return Attempt::Busy(encode);
        }
        if let Err(error) = self.encode_into(&mut writer, encode) {
            return Attempt::Done(Err(error));
        }
        if !writer.must_write(flush) {
            return Attempt::Done(Ok(()));
        }
        // One attempt without a waker: a full socket hands over to the waiting path, which
        // polls again with the task's real waker.
        let mut cx = Context::from_waker(Waker::noop());
        match writer.poll_write_buffered(&mut cx) {
            Poll::Ready(result) => {
                Attempt::Done(self.note_write_result(result).map_err(WriteError::Io))
            }
            Poll::Pending => Attempt::Unfinished,
        }
    }

    async fn write_waiting<F>(&self, flush: Flush, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut Proto, Option<[u8; 4]>, &mut BytesMut) -> Result<Option<Bytes>, SendError>,
    {
        let mut writer = self.writer.lock().await;
        if !writer.tail.is_empty() {
            let result = writer.write_buffered().await;
            self.note_write_result(result).map_err(WriteError::Io)?;
        }
        self.encode_into(&mut writer, encode)?;
        if !writer.must_write(flush) {
            return Ok(());
        }
        let result = writer.write_buffered().await;
        self.note_write_result(result).map_err(WriteError::Io)
    }

    /// Encodes under the protocol lock; a payload handed back becomes the writer's tail.
    fn encode_into<F>(&self, writer: &mut Writer<S>, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut Proto, Option<[u8; 4]>, &mut BytesMut) -> Result<Option<Bytes>, SendError>,
    {
        let mask = match self.role {
            Role::Client => Some(mask_key()),
            Role::Server => None,
        };
        let mut proto = self.proto();
        if proto.terminated {
            return Err(WriteError::State(SendError::Closed));
        }
        if let Some(tail) = encode(&mut proto, mask, &mut writer.buf).map_err(WriteError::State)? {
            writer.tail = tail;
        }
        Ok(())
    }

    /// Writes whatever is queued.
    pub(crate) async fn flush_queued(&self) -> Result<(), WriteError> {
        let mut writer = self.writer.lock().await;
        let result = writer.write_buffered().await;
        self.note_write_result(result).map_err(WriteError::Io)
    }

    fn note_write_result(&self, result: io::Result<()>) -> io::Result<()> {
        if result.is_err() {
            self.proto().terminated = true;
        }
        result
    }

    /// Sends our close frame, bounded by the close timeout; a second call does nothing.
    pub(crate) async fn send_close(&self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let timeout = self.config.close_timeout;
        let write = self.write_frame(|proto, mask, out| {
            proto.conn.encode_close(frame.as_ref(), mask, out)?;
            let closing = proto.closing_mut();
            closing.sent = Some(frame.clone());
            closing.deadline = Some(Instant::now() + timeout);
            self.closing
                .store(true, std::sync::atomic::Ordering::Release);
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
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        self.send_with(message.into(), Flush::Now)
    }

    /// Queues a message without writing it yet, so that several go out in one write; call
    /// [`Sender::flush`] after the last. Past 64 KiB queued, it writes anyway. Sending,
    /// pinging or closing also writes what was queued first.
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn feed(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        self.send_with(message.into(), Flush::Later)
    }

    /// Writes every queued message.
    ///
    /// # Errors
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) if the write failed.
    pub async fn flush(&self) -> Result<(), Error> {
        self.shared
            .flush_queued()
            .await
            .map_err(|error| match error {
                WriteError::Io(error) => Error::io(error),
                WriteError::State(_) => Error::closed(None),
            })
    }

    /// The one future behind `send` and `feed`, kept flat (no nested async layers, each of
    /// which would keep its own copy of the message) so that a connection's task stays small.
    async fn send_with(&self, message: Message, flush: Flush) -> Result<(), Error> {
        let server = self.shared.role == Role::Server;
        let encode = |proto: &mut Proto, mask, out: &mut BytesMut| {
            if server && message.len() >= VECTORED_PAYLOAD_MIN {
                proto.conn.encode_message_header(&message, out)?;
                Ok(Some(message.payload().clone()))
            } else {
                proto
                    .conn
                    .encode_message(&message, mask, out)
                    .map(|()| None)
            }
        };
        let result = match self.shared.try_write_now(flush, encode) {
            Attempt::Done(result) => result,
            Attempt::Busy(encode) => Box::pin(self.shared.write_waiting(flush, encode)).await,
            Attempt::Unfinished => Box::pin(self.shared.flush_queued()).await,
        };
        match result {
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
