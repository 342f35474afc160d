//! The receive loop: reads, drives the core, answers pings and completes the close
//! handshake. [`WebSocket::recv`](super::WebSocket::recv) drives it and adds the heartbeat
//! and the caught close codes on top.
//!
//! `recv` is a small poll-based state machine, so the future a connection's task keeps while
//! it waits is a few bytes. The rare steps that must write (a pong, the reply to a close, the
//! close frame of a protocol error) or wait (a timeout) run as boxed side tasks kept in the
//! receiver: they cost memory only while they run, and a cancelled `recv` resumes them.
//!
//! After a close handshake the server ends the TCP connection first, as RFC 6455 section 7.1.1
//! asks, and the client waits (bounded by the close timeout) for the server to do so. After a
//! protocol violation the receiver sends the error's close frame, ends its write side and
//! drains what the peer still sends until it hangs up, so the close frame is not lost to a TCP
//! reset. The draining happens in a background task that owns the read half, so `recv`
//! reports the end at once.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tether_proto::{Event, Message, ProtocolError, ReadHalf, Role};
use tokio::time::Sleep;

use super::sender::WriteError;
use super::{CloseInfo, Shared};
use crate::error::{Error, TimeoutPhase};

/// The smallest read offered into a connection's own buffer.
const READ_CHUNK: usize = 4096;

/// How far a connection's own buffer may grow ahead of the bytes it holds while a large frame
/// arrives: growth follows what the peer actually sent, so announcing a huge frame does not
/// make us allocate it up front.
const MAX_READ_AHEAD: usize = 256 * 1024;

/// A read from the shared buffer is offered at least this much room: a whole 64 KiB frame
/// with its header, so such a message arrives in one read.
const SCRATCH_MIN_SPARE: usize = 64 * 1024 + 32;

/// The size of a fresh chunk of the shared receive buffer: two of the largest reads, so a
/// message handed out without a copy pins no more than about its own size.
const SCRATCH_CHUNK: usize = 2 * SCRATCH_MIN_SPARE;

/// Payloads up to this size are copied out of the shared buffer by the core, so that a small
/// message an application keeps does not pin a whole chunk; larger ones are handed out without
/// a copy.
pub(crate) const COPY_OUT_MAX: usize = 4 * 1024;

thread_local! {
    /// The receive buffer shared by every connection on this thread. An idle connection holds
    /// no read buffer: it reads into this one, and keeps only the bytes of a frame still
    /// arriving.
    static SCRATCH: RefCell<Option<BytesMut>> = const { RefCell::new(None) };
}

/// What a side task decides when it finishes.
enum Step {
    /// Keep receiving.
    Continue,
    /// The stream ends, with this error if it ended badly.
    End(Option<Error>),
}

/// A step that writes or waits, run to completion before receiving goes on.
type SideTask = Pin<Box<dyn Future<Output = Step> + Send>>;

/// The receiving side of a connection.
pub(crate) struct Reader {
    shared: Arc<Shared>,
    buf: BytesMut,
    task: Option<SideTask>,
    /// The protocol's receiving half and its companions (boxed: the reader lives in every
    /// connection's task, whose size is idle memory).
    state: Box<ReadState>,
    done: bool,
    /// Set once reading was handed to the background task that ends the connection.
    released: bool,
    /// Set once `WebSocket::recv` has told how the stream ended: later calls say `Ok(None)`.
    pub(crate) end_reported: bool,
}

/// The size of the receiver's own allocation (see the footprint tests).
#[cfg(test)]
pub(crate) const READ_STATE_SIZE: usize = std::mem::size_of::<ReadState>();

/// What the receiver keeps for itself: the protocol's receiving half, which no other task
/// touches (so receiving takes no lock), and what rarely changes.
struct ReadState {
    proto: ReadHalf,
    /// How many pongs arrived: heartbeats compare it before and after their ping.
    pongs: u64,
    /// Fires at the close deadline, once we have sent a close frame.
    close_timer: Option<Pin<Box<Sleep>>>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("buffered", &self.buf.len())
            .field("side_task", &self.task.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// The receiver of the connection `shared`, reading with `proto` (whose sending half is
    /// in `shared`).
    pub(crate) fn new(shared: Arc<Shared>, proto: ReadHalf, leftover: BytesMut) -> Self {
        // An empty leftover may still hold the handshake's buffer: let it go.
        let buf = if leftover.is_empty() {
            BytesMut::new()
        } else {
            leftover
        };
        Self {
            shared,
            buf,
            task: None,
            state: Box::new(ReadState {
                proto,
                pongs: 0,
                close_timer: None,
            }),
            done: false,
            released: false,
            end_reported: false,
        }
    }

    /// Receives the next data message, or `None` once the stream has ended. Cancel-safe:
    /// dropping the future loses no message and no protocol step.
    pub(crate) async fn recv(&mut self) -> Option<Result<Message, Error>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Polls for the next data message; [`Reader::recv`] as a poll function.
    pub(crate) fn poll_recv(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if let Some(task) = self.task.as_mut() {
                let step = ready!(task.as_mut().poll(cx));
                self.task = None;
                if let Step::End(error) = step {
                    self.done = true;
                    self.buf = BytesMut::new();
                    return Poll::Ready(error.map(Err));
                }
            }
            if self.done {
                return Poll::Ready(None);
            }
            // With nothing buffered the core has nothing to say (its state waits for bytes).
            let event = if self.buf.is_empty() {
                Ok(None)
            } else {
                self.state.proto.read(&mut self.buf)
            };
            match event {
                Ok(Some(Event::Message(message))) => {
                    self.release_idle_buffer();
                    return Poll::Ready(Some(Ok(message)));
                }
                Ok(Some(Event::Ping(payload))) => self.task = Some(self.answer_ping(payload)),
                Ok(Some(Event::Close(frame))) => {
                    // Recorded at once: from now on, sends are refused.
                    self.shared.writer().proto.note_peer_close(frame);
                    self.task = Some(self.on_peer_close());
                }
                Ok(Some(Event::Pong(_))) => self.state.pongs = self.state.pongs.wrapping_add(1),
                Ok(Some(_)) => {}
                Ok(None) => {
                    if self.close_deadline_passed(cx) {
                        self.task = Some(self.on_close_timeout());
                        continue;
                    }
                    match ready!(self.poll_fill(cx)) {
                        Ok(0) => self.task = Some(self.on_eof()),
                        Ok(_) => {}
                        Err(error) => {
                            self.shared.writer().proto.note_transport_end(false);
                            self.shared.terminate();
                            self.done = true;
                            return Poll::Ready(Some(Err(Error::from_read(error))));
                        }
                    }
                }
                Err(error) => {
                    self.shared.writer().proto.note_failure();
                    self.task = Some(self.fail(error));
                }
            }
        }
    }

    /// Whether a complete frame is already buffered, so the next `recv` can make progress
    /// without waiting for the network.
    pub(crate) fn has_buffered_input(&self) -> bool {
        // Mid-frame, the buffer starts with payload, not a header: say no rather than guess.
        !self.buf.is_empty()
            && !self.done
            && !self.state.proto.has_partial_frame()
            && tether_proto::frame::FrameHeader::decode(&self.buf)
                .ok()
                .flatten()
                .is_some_and(|(header, len)| (self.buf.len() - len) as u64 >= header.payload_len)
    }

    /// How the connection ended, once it has.
    pub(crate) fn close_info(&self) -> Option<CloseInfo> {
        self.shared.writer().proto.close_info()
    }

    /// How many pongs have been received so far. A heartbeat notes it when it pings and
    /// knows the peer is alive once it grows (pongs are read while receiving).
    pub(crate) fn pongs_received(&self) -> u64 {
        self.state.pongs
    }

    /// Whether the stream has ended (the next `recv` returns `None`).
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    /// Whether we sent a close frame and the peer's answer is overdue; registers the timer.
    fn close_deadline_passed(&mut self, cx: &mut Context<'_>) -> bool {
        if !self
            .shared
            .closing
            .load(std::sync::atomic::Ordering::Acquire)
        {
            return false;
        }
        let Some(deadline) = self.shared.writer().rare.close_deadline() else {
            return false;
        };
        let timer = self
            .state
            .close_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        timer.as_mut().poll(cx).is_ready()
    }

    /// One read: into the thread's shared buffer when nothing is buffered (the common case
    /// between messages), else into this connection's buffer, sized by what the frame in
    /// progress still needs.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Self {
            shared,
            buf,
            state,
            released,
            ..
        } = self;
        if *released {
            return Poll::Ready(Ok(0));
        }
        let io = &shared.stream;
        if buf.is_empty() {
            let shared_read = SCRATCH.with(|cell| {
                // Only a re-entrant poll could find it borrowed; then use our own buffer.
                let mut cell = cell.try_borrow_mut().ok()?;
                let scratch = cell.get_or_insert_with(BytesMut::new);
                if scratch.capacity() < SCRATCH_MIN_SPARE {
                    // Reuses the old chunk in place when no message still refers to it.
                    scratch.reserve(SCRATCH_CHUNK);
                }
                Some(match io.poll_read_buf(cx, scratch) {
                    Poll::Ready(Ok(read)) => {
                        *buf = scratch.split_to(read);
                        Poll::Ready(Ok(read))
                    }
                    other => other,
                })
            });
            if let Some(poll) = shared_read {
                return poll;
            }
        }
        let needed = state.proto.bytes_needed(buf.len());
        let want = needed.clamp(READ_CHUNK, buf.len().max(MAX_READ_AHEAD));
        if buf.capacity() - buf.len() < want {
            // A fresh buffer of exactly the size needed: growing a slice of the shared chunk in
            // place would allocate at least the chunk's whole size for this one connection.
            let mut grown = BytesMut::with_capacity(buf.len() + want);
            grown.extend_from_slice(buf);
            *buf = grown;
        }
        io.poll_read_buf(cx, buf)
    }

    fn answer_ping(&self, payload: Bytes) -> SideTask {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let pong =
                shared.write_frame(|proto, mask, out| proto.encode_pong(&payload, mask, out));
            match pong.await {
                // Closing (no pong is owed any more), or a peer slow to read: go on.
                Ok(()) | Err(WriteError::State(_) | WriteError::TimedOut) => Step::Continue,
                Err(WriteError::Io(error)) => {
                    shared.writer().proto.note_transport_end(false);
                    Step::End(Some(Error::io(error)))
                }
            }
        })
    }

    fn on_peer_close(&mut self) -> SideTask {
        let shared = Arc::clone(&self.shared);
        let io = !std::mem::replace(&mut self.released, true);
        Box::pin(async move {
            let replied = shared.writer().proto.sent_close().is_some();
            if !replied {
                let reply =
                    shared.write_frame(|proto, mask, out| proto.encode_close_reply(mask, out));
                // If the reply cannot be written the peer learns of the end from the TCP
                // close; the handshake is over from our side either way.
                let _ = tokio::time::timeout(shared.config.close_timeout, reply).await;
            }
            shared.writer().proto.note_transport_end(true);
            // The server ends the TCP connection first; the client waits for it to.
            let client = shared.role == Role::Client;
            if !client {
                shutdown_write(&shared).await;
            }
            linger(shared, io, client);
            Step::End(None)
        })
    }

    fn on_eof(&self) -> SideTask {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            shutdown_write(&shared).await;
            // After our close, a peer that hangs up without answering gives the end we asked
            // for, without its confirmation; before it, the end is abnormal.
            let info = {
                let mut writer = shared.writer();
                writer.proto.note_transport_end(true);
                writer.proto.close_info()
            };
            match info {
                Some(info) if info.is_abnormal() => Step::End(Some(Error::abnormal_closure())),
                _ => Step::End(None),
            }
        })
    }

    fn on_close_timeout(&self) -> SideTask {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            shared.writer().proto.note_transport_end(true);
            shutdown_write(&shared).await;
            Step::End(Some(Error::timeout(TimeoutPhase::Close)))
        })
    }

    /// Fails the connection: sends the error's close frame, then ends the transport.
    fn fail(&mut self, error: ProtocolError) -> SideTask {
        let shared = Arc::clone(&self.shared);
        let io = !std::mem::replace(&mut self.released, true);
        Box::pin(async move {
            let frame = error.close_frame();
            let write =
                shared.write_frame(|proto, mask, out| proto.encode_close(Some(&frame), mask, out));
            let _ = tokio::time::timeout(shared.config.close_timeout, write).await;
            shared.writer().proto.note_transport_end(true);
            shutdown_write(&shared).await;
            linger(shared, io, false);
            Step::End(Some(Error::protocol(error)))
        })
    }

    /// Reads with `proto` from now on (a negotiated extension, set before any byte was read).
    pub(crate) fn replace_proto(&mut self, proto: ReadHalf) {
        self.state.proto = proto;
    }

    /// Drops the read buffer once it is empty: an idle connection holds none, and a chunk of
    /// the shared buffer is not kept alive by a connection that has finished with it.
    fn release_idle_buffer(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
    }
}

/// Hands reading to a background task that reads and discards until the peer ends the
/// connection (bounded by the close timeout), then, if asked, shuts down the write side.
/// `read` says whether reading was still ours to hand over.
fn linger(shared: Arc<Shared>, read: bool, shutdown_after: bool) {
    if !read {
        return;
    }
    tokio::spawn(async move {
        let timeout = shared.config.close_timeout;
        let drain = async {
            let mut scratch = BytesMut::with_capacity(1024);
            while let Ok(1..) = std::future::poll_fn(|cx| {
                scratch.clear();
                shared.stream.poll_read_buf(cx, &mut scratch)
            })
            .await
            {}
        };
        let _ = tokio::time::timeout(timeout, drain).await;
        if shutdown_after {
            shutdown_write(&shared).await;
        }
    });
}

/// Marks the transport finished and shuts down its write side (TCP FIN), bounded by the close
/// timeout.
async fn shutdown_write(shared: &Shared) {
    shared.terminate();
    let shutdown = std::future::poll_fn(|cx| shared.stream.poll_shutdown(cx));
    let _ = tokio::time::timeout(shared.config.close_timeout, shutdown).await;
}
