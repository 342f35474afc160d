//! The transport: a thin async loop driving the sans-IO core over any
//! `AsyncRead + AsyncWrite` stream.
//!
//! [`WebSocket`] is a connection after a successful opening handshake. It can be used whole
//! (`recv`, `send`, `close`) or split into a [`Receiver`] and a cloneable [`Sender`] that many
//! tasks may use at once. Both halves share one protocol state: the close rules of the core
//! (never send after close, reply once to the peer's close) hold whoever sends.
//!
//! Pings are answered automatically while receiving. A close handshake ends the message stream
//! (`recv` returns `None`) and its code and reason stay readable in [`CloseInfo`]; a TCP
//! connection that ends without a close frame is an error of kind
//! [`ConnectionClosed`](crate::ErrorKind::ConnectionClosed) (abnormal closure).

mod receiver;
mod sender;

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::BytesMut;
use tether_proto::{CloseCode, CloseFrame, Connection, Limits, Message, Role, Side};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::Instant;

pub use receiver::Receiver;
pub use sender::Sender;

use crate::error::Error;

/// Transport settings, each with a documented default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// Message and frame size limits. Default: 1 MiB each; over it the connection is closed
    /// with 1009.
    pub limits: Limits,
    /// How long to wait for the peer's close frame after sending ours, and for the TCP
    /// connection to end after the close handshake. Default: 5 s.
    pub close_timeout: Duration,
}

impl Config {
    /// The default close timeout: 5 s.
    pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

    /// This config with the message and frame limit set to `max` bytes.
    pub const fn with_max_message_size(mut self, max: usize) -> Self {
        self.limits = Limits::new(max);
        self
    }

    /// This config with the close timeout set to `timeout`.
    pub const fn with_close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            close_timeout: Self::DEFAULT_CLOSE_TIMEOUT,
        }
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// A close frame with this code and reason.
    Frame(CloseFrame),
    /// A close frame without a status code (1005 "no status received", as a state).
    NoStatus,
    /// The transport ended without a close frame (1006 "abnormal closure", as a state).
    Abnormal,
}

impl CloseReason {
    /// The close code, when a close frame carried one.
    pub fn code(&self) -> Option<CloseCode> {
        match self {
            Self::Frame(frame) => Some(frame.code),
            Self::NoStatus | Self::Abnormal => None,
        }
    }

    /// The code as a number for logs and displays: the frame's code, or 1005 / 1006 for the
    /// states that have no code on the wire.
    pub fn display_code(&self) -> u16 {
        match self {
            Self::Frame(frame) => frame.code.as_u16(),
            Self::NoStatus => 1005,
            Self::Abnormal => 1006,
        }
    }

    /// The reason text (empty for the states without a frame).
    pub fn reason(&self) -> &str {
        match self {
            Self::Frame(frame) => frame.reason.as_str(),
            Self::NoStatus | Self::Abnormal => "",
        }
    }

    pub(crate) fn from_frame(frame: Option<CloseFrame>) -> Self {
        frame.map_or(Self::NoStatus, Self::Frame)
    }
}

/// The end of a connection: who closed first and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseInfo {
    /// Who started the close (or, for an abnormal closure, whose side saw the transport end).
    pub initiated_by: Side,
    /// The initiator's close frame, or the state when there was none.
    pub reason: CloseReason,
}

/// The protocol state shared by both halves; locked only for CPU-bound steps, never across an
/// await.
#[derive(Debug)]
pub(crate) struct Proto {
    pub(crate) conn: Connection,
    /// Set once the transport is finished: nothing more may be written.
    pub(crate) terminated: bool,
    /// What only a closing connection needs, allocated when closing starts.
    closing: Option<Box<Closing>>,
}

/// The state of a close in progress or done.
#[derive(Debug, Default)]
pub(crate) struct Closing {
    /// When the close handshake we started must be complete.
    pub(crate) deadline: Option<Instant>,
    /// The close frame this endpoint sent, once sent (`Some(None)`: without a status).
    pub(crate) sent: Option<Option<CloseFrame>>,
    /// How the connection ended, once it has.
    pub(crate) info: Option<CloseInfo>,
}

impl Proto {
    /// The closing state, created on first use.
    pub(crate) fn closing_mut(&mut self) -> &mut Closing {
        self.closing.get_or_insert_with(Box::default)
    }

    /// When the close handshake we started must be complete.
    pub(crate) fn close_deadline(&self) -> Option<Instant> {
        self.closing.as_ref().and_then(|closing| closing.deadline)
    }

    /// The close frame this endpoint sent, once sent.
    pub(crate) fn sent_close(&self) -> Option<Option<CloseFrame>> {
        self.closing
            .as_ref()
            .and_then(|closing| closing.sent.clone())
    }

    /// How the connection ended, once it has.
    pub(crate) fn close_info(&self) -> Option<CloseInfo> {
        self.closing
            .as_ref()
            .and_then(|closing| closing.info.clone())
    }
}

/// The write half and its buffers. `buf` holds encoded frames not yet written, and `tail` a
/// large payload that goes out right after `buf` without being copied into it (a vectored
/// write). A write that is cancelled leaves exactly the unwritten rest in them, so the stream
/// stays intact.
#[derive(Debug)]
pub(crate) struct Writer<S> {
    pub(crate) io: WriteHalf<S>,
    pub(crate) buf: BytesMut,
    pub(crate) tail: bytes::Bytes,
    /// Whether a writer is flushing the outbox; others queue behind it.
    pub(crate) flushing: bool,
}

/// State shared by the receiver and every sender of one connection.
#[derive(Debug)]
pub(crate) struct Shared<S> {
    pub(crate) role: Role,
    /// Set once a close frame was sent, so the receiver looks for a close deadline (under
    /// the lock) only when there can be one.
    pub(crate) closing: std::sync::atomic::AtomicBool,
    pub(crate) config: Config,
    proto: Mutex<Proto>,
    /// The outbox; locked only for a moment, never across an await.
    writer: Mutex<Writer<S>>,
    /// Wakes writers waiting for a flush in progress to drain the outbox.
    pub(crate) drained: tokio::sync::Notify,
}

impl<S> Shared<S> {
    /// The outbox. Lock order: the outbox before the protocol state.
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer<S>> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn proto(&self) -> MutexGuard<'_, Proto> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than losing the connection; keep going with the inner value.
        self.proto
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A WebSocket connection after a successful opening handshake.
pub struct WebSocket<S> {
    receiver: Receiver<S>,
    sender: Sender<S>,
}

impl<S> std::fmt::Debug for WebSocket<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("receiver", &self.receiver)
            .finish_non_exhaustive()
    }
}

impl<S> WebSocket<S>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    /// Wraps a stream on which the opening handshake has completed. `leftover` holds bytes
    /// that arrived after the handshake and belong to the WebSocket stream.
    pub fn from_upgraded(stream: S, role: Role, config: Config, leftover: BytesMut) -> Self {
        let (read_half, write_half): (ReadHalf<S>, WriteHalf<S>) = tokio::io::split(stream);
        let shared = Arc::new(Shared {
            role,
            closing: std::sync::atomic::AtomicBool::new(false),
            config,
            proto: Mutex::new(Proto {
                conn: Connection::new(role, config.limits)
                    .with_detach_threshold(receiver::COPY_OUT_MAX),
                terminated: false,
                closing: None,
            }),
            writer: Mutex::new(Writer {
                io: write_half,
                buf: BytesMut::new(),
                tail: bytes::Bytes::new(),
                flushing: false,
            }),
            drained: tokio::sync::Notify::new(),
        });
        Self {
            receiver: Receiver::new(Arc::clone(&shared), read_half, leftover),
            sender: Sender::new(shared),
        }
    }

    /// Receives the next data message, answering pings and the close handshake on the way.
    ///
    /// Returns `None` once the connection has ended cleanly (see [`WebSocket::close_info`]).
    /// An error ends the stream too: the next call returns `None`.
    ///
    /// # Errors
    /// - [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) or
    ///   [`ErrorKind::Payload`](crate::ErrorKind::Payload): the peer violated the protocol
    ///   or a limit; the connection was closed with the matching code (1002, 1007, 1009).
    /// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed): the transport
    ///   ended without a close frame.
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (close phase): the peer did not
    ///   answer our close in time.
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io): the transport failed.
    pub fn recv(&mut self) -> impl Future<Output = Option<Result<Message, Error>>> + '_ {
        self.receiver.recv()
    }

    /// Sends a message.
    ///
    /// # Errors
    /// [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once the connection
    /// is closing or closed, with the message given back ([`Error::into_message`]); or an I/O
    /// error.
    pub fn send(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        self.sender.send(message)
    }

    /// Queues a message without writing it yet; see [`Sender::feed`].
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub fn feed(
        &mut self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + '_ {
        self.sender.feed(message)
    }

    /// Writes every queued message; see [`Sender::flush`].
    ///
    /// # Errors
    /// An I/O error.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.sender.flush().await
    }

    /// Whether a complete message is already buffered, so the next
    /// [`recv`](WebSocket::recv) will not wait for the network. An echo loop uses it to
    /// [`feed`](WebSocket::feed) replies and [`flush`](WebSocket::flush) once per batch.
    pub fn has_buffered_input(&self) -> bool {
        self.receiver.has_buffered_input()
    }

    /// Closes the connection: sends `frame` (or a close without status for `None`), then
    /// reads until the peer's close arrives or the close timeout passes. Data messages that
    /// arrive meanwhile are dropped. Calling it again is harmless.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if the peer did not answer in time;
    /// a protocol or I/O error met while waiting.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.sender.close(frame).await?;
        while let Some(next) = self.receiver.recv().await {
            next?;
        }
        Ok(())
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.receiver.close_info()
    }

    /// A sender for this connection that other tasks can use.
    pub fn sender(&self) -> Sender<S> {
        self.sender.clone()
    }

    /// Splits the connection into its receiving half and a cloneable sending half.
    pub fn split(self) -> (Receiver<S>, Sender<S>) {
        (self.receiver, self.sender)
    }
}
