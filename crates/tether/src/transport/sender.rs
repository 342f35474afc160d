//! [`Sender`]: a cloneable handle that many tasks can send through at once, and the outbox
//! behind it.
//!
//! Every frame is encoded, with the outbox locked, by the protocol's sending half into the
//! outbox, in order, so the core's close rules see every frame and a data frame can never
//! overtake a close frame. The lock is a plain mutex held for a moment, never across an
//! await: one writer at a time flushes the outbox, and frames sent meanwhile queue behind
//! and go out in the same write. `feed` queues without writing, so a burst goes out in one write; a server's large
//! payloads are written straight from their shared buffer with a vectored write, after their
//! header.

use std::future::{Future, poll_fn};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use tether_proto::{CloseCode, CloseFrame, Message, Reason, Role, SendError, WriteHalf};
use tokio::time::Instant;

use super::{Shared, Stream, Writer, precompressed};
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

thread_local! {
    /// The outbox buffer lent to a write that finds the outbox empty (see
    /// [`Shared::start_write`]).
    static OUTBOX_SCRATCH: std::cell::Cell<Option<Box<BytesMut>>> = const { std::cell::Cell::new(None) };
}

/// The slow part of a write, boxed (see [`Shared::finish_within_timeout`]).
type SlowWrite<'a> = Pin<Box<dyn Future<Output = Result<(), WriteError>> + Send + 'a>>;

/// Whether a frame must go out now or may wait in the outbox.
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
    /// The peer did not take the bytes within the write timeout.
    TimedOut,
}

impl WriteError {
    /// The error a send reports; `message` is what a refused send gives back.
    fn into_error(self, message: Option<Message>) -> Error {
        match self {
            Self::State(_) => Error::closed(message),
            Self::Io(error) => Error::io(error),
            Self::TimedOut => Error::timeout(TimeoutPhase::Write),
        }
    }
}

/// The outbox's encoded bytes. Boxed, and absent while nothing was ever queued: a write that
/// finds the outbox empty lends it the thread's buffer (see [`Shared::start_write`]), so most
/// connections need none of their own.
#[derive(Default)]
pub(crate) struct OutBuf(Option<Box<BytesMut>>);

impl OutBuf {
    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |buf| buf.len())
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn capacity(&self) -> usize {
        self.0.as_ref().map_or(0, |buf| buf.capacity())
    }

    fn as_slice(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |buf| buf.as_ref())
    }

    /// The buffer, made on first use.
    fn get_mut(&mut self) -> &mut BytesMut {
        self.0.get_or_insert_with(Box::default)
    }

    fn clear(&mut self) {
        if let Some(buf) = self.0.as_mut() {
            buf.clear();
        }
    }

    fn advance(&mut self, by: usize) {
        if let Some(buf) = self.0.as_mut() {
            buf.advance(by);
        }
    }
}

/// What few connections need, boxed and made on first use (an idle connection that never
/// sent a large payload, waited for a flush or closed holds a null pointer): a large payload
/// written after the outbox's bytes without being copied into them (a vectored write), the
/// notifier of a drained outbox, and the close deadline.
#[derive(Default)]
pub(crate) struct Rare(Option<Box<RareState>>);

#[derive(Default)]
struct RareState {
    tail: Bytes,
    /// Wakes writers waiting for a flush in progress to drain the outbox.
    drained: Option<Arc<tokio::sync::Notify>>,
    /// When the close handshake we started must be complete.
    close_deadline: Option<Instant>,
}

impl Rare {
    fn get(&mut self) -> &mut RareState {
        self.0.get_or_insert_with(Box::default)
    }

    /// The payload waiting to be written after the buffer.
    fn tail(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |rare| rare.tail.as_ref())
    }

    fn has_tail(&self) -> bool {
        !self.tail().is_empty()
    }

    fn advance_tail(&mut self, by: usize) {
        if let Some(rare) = self.0.as_mut() {
            rare.tail.advance(by);
            if rare.tail.is_empty() {
                // Written: let go of the buffer it shares (often the receive buffer the
                // payload arrived in, which can then be reused in place).
                rare.tail = Bytes::new();
            }
        }
    }

    /// The payload, leaving none.
    fn take_tail(&mut self) -> Bytes {
        self.0
            .as_mut()
            .map(|rare| std::mem::take(&mut rare.tail))
            .unwrap_or_default()
    }

    fn set_tail(&mut self, payload: Bytes) {
        self.get().tail = payload;
    }

    /// The notifier of a drained outbox, made on first use.
    fn drained(&mut self) -> Arc<tokio::sync::Notify> {
        Arc::clone(self.get().drained.get_or_insert_with(Default::default))
    }

    /// Wakes the writers waiting for the outbox to drain, if any ever waited.
    fn notify_drained(&self) {
        if let Some(drained) = self.0.as_ref().and_then(|rare| rare.drained.as_ref()) {
            drained.notify_waiters();
        }
    }

    /// When the close handshake we started must be complete.
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        self.0.as_ref()?.close_deadline
    }

    /// Starts the clock on the close handshake we start, unless it already runs.
    fn start_close_deadline(&mut self, deadline: Instant) {
        self.get().close_deadline.get_or_insert(deadline);
    }
}

impl Writer {
    /// Whether the queued bytes must be written now: on request, past the feed threshold, or
    /// when a payload waits in the tail.
    fn must_write(&self, flush: Flush) -> bool {
        flush == Flush::Now || self.rare.has_tail() || self.queued() >= FEED_WRITE_THRESHOLD
    }

    /// How many bytes wait to be written.
    fn queued(&self) -> usize {
        self.buf.len() + self.rare.tail().len()
    }
}

impl Writer {
    /// Writes the whole buffer, then the tail. Cancel-safe: what was written is removed as it
    /// goes, so a cancelled write resumes where it stopped.
    fn poll_write_buffered(&mut self, io: &Stream, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.buf.is_empty() || self.rare.has_tail() {
            let written = if !self.rare.has_tail() {
                ready!(io.poll_write(cx, self.buf.as_slice()))?
            } else if self.buf.is_empty() {
                ready!(io.poll_write(cx, self.rare.tail()))?
            } else {
                let slices = [
                    IoSlice::new(self.buf.as_slice()),
                    IoSlice::new(self.rare.tail()),
                ];
                ready!(io.poll_write_vectored(cx, &slices))?
            };
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if written == self.buf.len() && !self.rare.has_tail() {
                // All of it, the usual case: clearing is cheaper than advancing.
                self.buf.clear();
                continue;
            }
            let from_buf = written.min(self.buf.len());
            self.buf.advance(from_buf);
            self.rare.advance_tail(written - from_buf);
        }
        ready!(io.poll_flush(cx))?;
        if self.buf.capacity() > MAX_RETAINED_WRITE_BUFFER {
            self.buf = OutBuf::default();
        }
        Poll::Ready(Ok(()))
    }
}

/// What a writer still has to do after queueing its frame.
enum Pending {
    /// Be the flusher: write the queue out until it is empty.
    Flush,
    /// Another task is flushing: wait until at most this many bytes are queued (or take
    /// over if that task stops).
    DrainTo(usize),
}

/// Clears the flusher role if the flushing future is dropped before it finished, and wakes a
/// waiting writer to take over.
struct FlusherGuard<'a> {
    shared: &'a Shared,
    armed: bool,
}

impl Drop for FlusherGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut writer = self.shared.writer();
            self.shared.set_flushing(&mut writer, false);
            writer.rare.notify_drained();
        }
    }
}

impl Shared {
    /// Encodes one frame with `encode` and writes it, in order with every other writer.
    pub(crate) async fn write_frame<F>(&self, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(&mut WriteHalf, Option<[u8; 4]>, &mut BytesMut) -> Result<(), SendError>,
    {
        self.write_with(Flush::Now, |proto, mask, out| {
            encode(proto, mask, out).map(|()| None)
        })
        .await
    }

    /// Queues the frame `encode` makes (it may hand back a payload to write after the
    /// encoded bytes) and writes as `flush` says.
    ///
    /// The writer lock is a plain mutex held only for a moment, never across an await. The
    /// common case finishes at once: nobody else is writing and the socket takes the bytes.
    /// If the socket is full, this writer becomes the flusher and finishes the write in a
    /// boxed future (so the future of a send stays small); writers that come meanwhile queue
    /// their frames behind, and wait only when the queue is long.
    pub(crate) async fn write_with<F>(&self, flush: Flush, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(
            &mut WriteHalf,
            Option<[u8; 4]>,
            &mut BytesMut,
        ) -> Result<Option<Bytes>, SendError>,
    {
        match self.start_write(flush, encode)? {
            Some(pending) => self.finish_within_timeout(pending).await,
            None => Ok(()),
        }
    }

    /// The part of a write that never waits: queues the frame and writes what the socket
    /// takes. `Some` when the rest must be finished by [`Shared::finish_within_timeout`].
    fn start_write<F>(&self, flush: Flush, encode: F) -> Result<Option<Pending>, WriteError>
    where
        F: FnOnce(
            &mut WriteHalf,
            Option<[u8; 4]>,
            &mut BytesMut,
        ) -> Result<Option<Bytes>, SendError>,
    {
        let mut writer = self.writer();
        // With nothing queued, the frame is encoded into the thread's buffer and, once the
        // socket took all of it, the buffer goes back: an idle connection keeps no outbox
        // buffer. Only a write the socket does not finish keeps it.
        let borrowed = flush == Flush::Now && !self.flushing(&writer) && writer.queued() == 0;
        if borrowed {
            writer.buf = OutBuf(OUTBOX_SCRATCH.take());
        }
        let step = self
            .encode_into(&mut writer, encode)
            .and_then(|()| self.next_step(&mut writer, flush));
        if borrowed && writer.queued() == 0 {
            if let Some(mut buf) = writer.buf.0.take() {
                if buf.capacity() <= MAX_RETAINED_WRITE_BUFFER {
                    buf.clear();
                    // (`with` and `Cell::set`: `LocalKey::set` takes a slower path.)
                    OUTBOX_SCRATCH.with(|scratch| scratch.set(Some(buf)));
                }
            }
        }
        step
    }

    /// Whether a writer is flushing the outbox; `_outbox` shows the outbox is locked.
    fn flushing(&self, _outbox: &Writer) -> bool {
        self.flushing.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Takes or gives up the flusher role; `_outbox` shows the outbox is locked.
    fn set_flushing(&self, _outbox: &mut Writer, flushing: bool) {
        self.flushing
            .store(flushing, std::sync::atomic::Ordering::Relaxed);
    }

    /// The slow part of a write, boxed so that the future of every write stays small, and
    /// bounded by the write timeout when one is set.
    fn finish_within_timeout(&self, pending: Pending) -> SlowWrite<'_> {
        match self.config.write_timeout {
            None => Box::pin(self.finish(pending)),
            Some(timeout) => Box::pin(async move {
                tokio::time::timeout(timeout, self.finish(pending))
                    .await
                    .unwrap_or(Err(WriteError::TimedOut))
            }),
        }
    }

    /// Writes whatever is queued, waiting for a flush in progress to end.
    pub(crate) async fn flush_queued(&self) -> Result<(), WriteError> {
        let pending = {
            let mut writer = self.writer();
            if self.flushing(&writer) {
                Pending::DrainTo(0)
            } else {
                match self.try_write(&mut writer) {
                    Ok(Some(pending)) => pending,
                    Ok(None) => return Ok(()),
                    Err(error) => return Err(error),
                }
            }
        };
        self.finish_within_timeout(pending).await
    }

    /// Decides, with the lock held and the frame queued, what is left to do.
    #[inline]
    fn next_step(&self, writer: &mut Writer, flush: Flush) -> Result<Option<Pending>, WriteError> {
        if !writer.must_write(flush) {
            return Ok(None);
        }
        if self.flushing(writer) {
            // Our frame is behind the flusher's: it will write it. Wait only for a long queue.
            return Ok((writer.queued() > FEED_WRITE_THRESHOLD)
                .then_some(Pending::DrainTo(FEED_WRITE_THRESHOLD)));
        }
        self.try_write(writer)
    }

    /// One write attempt without a waker; if the socket does not take everything, the caller
    /// becomes the flusher.
    fn try_write(&self, writer: &mut Writer) -> Result<Option<Pending>, WriteError> {
        let mut cx = Context::from_waker(Waker::noop());
        match writer.poll_write_buffered(&self.stream, &mut cx) {
            Poll::Ready(result) => self.note_write_result(writer, result).map(|()| None),
            Poll::Pending => {
                self.set_flushing(writer, true);
                Ok(Some(Pending::Flush))
            }
        }
    }

    /// The slow part of a write: flushing with the task's real waker, or waiting for the
    /// flusher.
    async fn finish(&self, mut pending: Pending) -> Result<(), WriteError> {
        loop {
            match pending {
                Pending::Flush => {
                    let mut guard = FlusherGuard {
                        shared: self,
                        armed: true,
                    };
                    let result =
                        poll_fn(|cx| self.writer().poll_write_buffered(&self.stream, cx)).await;
                    guard.armed = false;
                    let mut writer = self.writer();
                    self.set_flushing(&mut writer, false);
                    writer.rare.notify_drained();
                    return self.note_write_result(&mut writer, result);
                }
                Pending::DrainTo(target) => {
                    let drained = self.writer().rare.drained();
                    let notified = drained.notified();
                    tokio::pin!(notified);
                    // Registered before looking, so a flush that ends in between still wakes us.
                    notified.as_mut().enable();
                    {
                        let mut writer = self.writer();
                        if self.is_terminated() {
                            return Err(WriteError::State(SendError::Closed));
                        }
                        if writer.queued() <= target {
                            return Ok(());
                        }
                        if !self.flushing(&writer) {
                            // The flusher stopped (finished early or was cancelled): take over.
                            self.set_flushing(&mut writer, true);
                            pending = Pending::Flush;
                            continue;
                        }
                    }
                    notified.await;
                }
            }
        }
    }

    /// Encodes with the sending half of the protocol, behind everything queued; a payload
    /// handed back becomes the tail.
    fn encode_into<F>(&self, writer: &mut Writer, encode: F) -> Result<(), WriteError>
    where
        F: FnOnce(
            &mut WriteHalf,
            Option<[u8; 4]>,
            &mut BytesMut,
        ) -> Result<Option<Bytes>, SendError>,
    {
        let mask = match self.role {
            Role::Client => Some(mask_key()),
            Role::Server => None,
        };
        if self.is_terminated() {
            return Err(WriteError::State(SendError::Closed));
        }
        if writer.rare.has_tail() {
            // A payload still waits behind the buffer (the socket was full): new frames go
            // after it, so it joins the buffer first.
            let tail = writer.rare.take_tail();
            writer.buf.get_mut().extend_from_slice(&tail);
        }
        let Writer { proto, buf, .. } = writer;
        if let Some(tail) = encode(proto, mask, buf.get_mut()).map_err(WriteError::State)? {
            writer.rare.set_tail(tail);
        }
        Ok(())
    }

    /// Records a failed write: the transport is finished and what was queued is dropped.
    fn note_write_result(
        &self,
        writer: &mut Writer,
        result: io::Result<()>,
    ) -> Result<(), WriteError> {
        result.map_err(|error| {
            self.terminate();
            writer.buf = OutBuf::default();
            writer.rare.take_tail();
            WriteError::Io(error)
        })
    }

    /// Sends our close frame, bounded by the close timeout; a second call does nothing.
    pub(crate) async fn send_close(&self, frame: Option<CloseFrame>) -> Result<(), Error> {
        let timeout = self.config.close_timeout;
        // Set before the frame goes, so a receiver that sees `closing` finds it.
        self.writer()
            .rare
            .start_close_deadline(Instant::now() + timeout);
        let write = self.write_frame(|proto, mask, out| {
            proto.encode_close(frame.as_ref(), mask, out)?;
            self.closing
                .store(true, std::sync::atomic::Ordering::Release);
            Ok(())
        });
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(()) | Err(WriteError::State(_))) => Ok(()),
            Ok(Err(error)) => Err(error.into_error(None)),
            Err(_) => {
                self.terminate();
                Err(Error::timeout(TimeoutPhase::Close))
            }
        }
    }
}

/// Sends on a connection; clone it to send from several tasks or threads at once.
///
/// [`WebSocket::sender`](super::WebSocket::sender) gives one. Every clone shares the
/// connection's outbox: frames go out in the order they were sent, and once a close frame
/// was sent or received, every send fails with the message given back.
#[derive(Debug, Clone)]
pub struct Sender {
    shared: Arc<Shared>,
}

impl Sender {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Sends a message. With a write timeout configured, a send that waits longer than it
    /// for the peer to take the bytes fails.
    ///
    /// # Errors
    /// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once a close
    ///   frame was sent or received or the transport ended, with the message given back
    ///   ([`Error::into_message`]).
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) with
    ///   [`TimeoutPhase::Write`]: the peer did not take the message in time.
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io): the write failed.
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
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
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
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
            .map_err(|error| error.into_error(None))
    }

    /// The one future behind `send` and `feed`.
    fn send_with(&self, message: Message, flush: Flush) -> SendFuture<'_> {
        SendFuture {
            shared: &self.shared,
            message: Some(message),
            flush,
            slow: None,
        }
    }

    /// When this connection compresses `message` with no context, the `(window, level)`
    /// key its compressed payload is made with (see `precompressed`).
    pub(crate) fn shared_compression(
        &self,
    ) -> Option<(tether_proto::deflate::DeflateConfig, (u8, u8))> {
        self.shared.writer().proto.shared_compression()
    }

    /// Sends a ping with `payload` (at most 125 bytes). The pong is consumed by the
    /// receiving side; the heartbeat pings on its own, so this is for custom liveness checks.
    ///
    /// # Errors
    /// [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once closing; an
    /// oversized payload is refused as [`ErrorKind::Io`](crate::ErrorKind::Io) with
    /// `InvalidInput`.
    pub async fn ping(&self, payload: &[u8]) -> Result<(), Error> {
        match self
            .shared
            .write_frame(|proto, mask, out| proto.encode_ping(payload, mask, out))
            .await
        {
            Ok(()) => Ok(()),
            Err(WriteError::State(SendError::ControlTooLong { len })) => {
                Err(Error::io(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("ping payload too long: expected at most 125 bytes, found {len}"),
                )))
            }
            Err(error) => Err(error.into_error(None)),
        }
    }

    /// Starts the close handshake with `code` and `reason`; whoever is receiving on the
    /// connection completes it (its `recv` then ends). Idempotent: once a close was sent,
    /// further calls do nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if the close frame could not be
    /// written within the close timeout; an I/O error.
    pub async fn close(&self, code: CloseCode, reason: impl Into<Reason>) -> Result<(), Error> {
        self.shared
            .send_close(Some(CloseFrame::new(code, reason)))
            .await
    }

    /// Starts the close handshake with `frame`, as [`Sender::close`].
    pub(crate) async fn close_frame(&self, frame: CloseFrame) -> Result<(), Error> {
        self.shared.send_close(Some(frame)).await
    }

    /// Whether nothing more can be sent (a close was sent or received, or the transport ended).
    pub fn is_closed(&self) -> bool {
        self.shared.is_terminated()
            || !matches!(
                self.shared.writer().proto.state(),
                tether_proto::CloseState::Open
            )
    }

    /// The connection's id: unique in this process, and the one in the server's log lines.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

/// The future of [`Sender::send`] and [`Sender::feed`], written by hand so that it is as small
/// as its state: a connection's task holds one for as long as it sends, and an `async fn` here
/// would keep the message, the encoder and the write's state side by side. The first poll
/// queues the frame and writes what the socket takes (the common case ends there); a write
/// that must wait continues in the boxed slow path.
struct SendFuture<'a> {
    shared: &'a Shared,
    /// Kept until the end: a refused send gives it back in its error.
    message: Option<Message>,
    flush: Flush,
    slow: Option<SlowWrite<'a>>,
}

impl Future for SendFuture<'_> {
    type Output = Result<(), Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if this.slow.is_none() {
            let Some(message) = this.message.as_ref() else {
                // Polled after it finished.
                return Poll::Ready(Ok(()));
            };
            let server = this.shared.role == Role::Server;
            let encode = |proto: &mut WriteHalf, mask, out: &mut BytesMut| {
                encode_message(proto, message, server, mask, out)
            };
            match this.shared.start_write(this.flush, encode) {
                Ok(None) => {
                    this.message = None;
                    return Poll::Ready(Ok(()));
                }
                Ok(Some(pending)) => this.slow = Some(this.shared.finish_within_timeout(pending)),
                Err(error) => return Poll::Ready(Err(error.into_error(this.message.take()))),
            }
        }
        let Some(slow) = this.slow.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let result = ready!(slow.as_mut().poll(cx));
        this.slow = None;
        let message = this.message.take();
        Poll::Ready(result.map_err(|error| error.into_error(message)))
    }
}

/// Encodes `message` into the outbox, or hands back its payload to be written after the
/// header (a server's large payload), or uses the payload a broadcast compressed once.
fn encode_message(
    proto: &mut WriteHalf,
    message: &Message,
    server: bool,
    mask: Option<[u8; 4]>,
    out: &mut BytesMut,
) -> Result<Option<Bytes>, SendError> {
    let shared = proto.shared_compression_key(message);
    if let Some((payload, key)) =
        shared.and_then(|key| Some((precompressed::lookup(message.payload(), key)?, key)))
    {
        proto
            .encode_compressed(message, &payload, key, mask, out)
            .map(|()| None)
    } else if server && message.len() >= VECTORED_PAYLOAD_MIN && !proto.compresses(message) {
        proto.encode_message_header(message, out)?;
        Ok(Some(message.payload().clone()))
    } else {
        proto.encode_message(message, mask, out).map(|()| None)
    }
}
