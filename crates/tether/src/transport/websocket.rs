//! [`WebSocket`]: the one live connection, on the server and on the client, over any stream.

use std::future::poll_fn;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::{
    CloseCode, CloseFrame, Connection, Message, ReadHalf, Reason, Role, Side, WriteHalf,
};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::liveness::{Check, Heartbeat};
use super::{BoxIo, CloseInfo, Config, Reader, Sender, Shared, Stream};
use crate::error::{Error, TimeoutPhase};

/// Whether a connection can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Messages can be sent and received.
    Open,
    /// A close frame was sent or received; the close handshake is finishing.
    Closing,
    /// The connection has ended.
    Closed,
}

/// A WebSocket connection after a successful opening handshake, on either end.
///
/// The server hands one to each handler (inside [`Socket`](crate::server::Socket), which adds
/// the server's rate limit and error reporting); [`client::connect`](crate::client::connect)
/// returns one. While a task waits in [`recv`](WebSocket::recv), the connection answers
/// pings, pings the peer every `ping_interval` and closes it (1011) when a pong is overdue,
/// applies the idle or read timeout and the size limits, and completes the close handshake.
///
/// - **Receiving**: `recv` returns `Ok(Some(message))`, `Ok(None)` once the connection has
///   ended normally, or an error that says why it did not. `Result<Option<_>>` rather than
///   `Option<Result<_>>`: in a handler or any function returning `Result`,
///   `while let Some(message) = ws.recv().await? { .. }` passes every failure on with `?`
///   and stops quietly at a normal end, which is what almost every loop wants.
/// - **Sending**: [`send`](WebSocket::send) here, or from any other task through a
///   cloneable [`Sender`] ([`WebSocket::sender`]).
/// - **Closing**: [`close`](WebSocket::close) with a code and a reason; idempotent.
/// - **How it ended**: [`close_info`](WebSocket::close_info), also carried by the error of a
///   disconnect.
pub struct WebSocket {
    /// `None` once the server took it back to finish the close after the handler. The mutex
    /// makes the connection `Sync` (so `&WebSocket` can be held across an await in a `Send`
    /// future); `recv` reaches it through `&mut self` without locking.
    reader: Mutex<Option<Reader>>,
    sender: Sender,
    /// The heartbeat and the idle or read timeout; allocated only when one is configured.
    liveness: Option<Box<Heartbeat>>,
    /// The subprotocol agreed in the opening handshake.
    protocol: Option<Box<str>>,
}

impl std::fmt::Debug for WebSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocket")
            .field("id", &self.id())
            .field("role", &self.sender.shared().role)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl WebSocket {
    /// Wraps a stream on which the opening handshake has completed: TCP, TLS, hyper's
    /// upgraded connection, or `tokio::io::duplex` in tests. `leftover` holds bytes that
    /// arrived after the handshake and belong to the WebSocket stream (empty if none).
    pub fn from_upgraded<S>(stream: S, role: Role, config: Config, leftover: BytesMut) -> Self
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        Self::new(
            Box::new(stream),
            role,
            Arc::new(config),
            leftover,
            super::next_connection_id(),
        )
    }

    /// As [`from_upgraded`](WebSocket::from_upgraded), with a config shared by many
    /// connections and an id chosen by the caller.
    pub(crate) fn new(
        stream: BoxIo,
        role: Role,
        config: Arc<Config>,
        leftover: BytesMut,
        id: u64,
    ) -> Self {
        let liveness = config.has_liveness().then(|| {
            Box::new(Heartbeat::new(
                config.ping_interval,
                config.ping_timeout,
                config.idle_timeout.or(config.read_timeout),
                Instant::now(),
            ))
        });
        let (read, write) = protocol_halves(role, &config, None);
        let shared = Arc::new(Shared::new(id, config, Stream::new(stream), write));
        Self {
            reader: Mutex::new(Some(Reader::new(Arc::clone(&shared), read, leftover))),
            sender: Sender::new(shared),
            liveness,
            protocol: None,
        }
    }

    /// This connection with the permessage-deflate parameters the handshake negotiated
    /// (`None`: none), compressing as its config's [`deflate`](Config::deflate) says.
    pub(crate) fn with_deflate(mut self, params: Option<DeflateParams>) -> Self {
        if let Some(params) = params {
            let shared = Arc::clone(self.sender.shared());
            let config = shared.config.deflate.unwrap_or(match shared.role {
                Role::Server => DeflateConfig::server(),
                Role::Client => DeflateConfig::client(),
            });
            let (read, write) =
                protocol_halves(shared.role, &shared.config, Some((params, &config)));
            // Before any byte was read or written: both halves start afresh.
            shared.writer().proto = write;
            if let Some(reader) = self.reader_mut() {
                reader.replace_proto(read);
            }
        }
        self
    }

    /// The permessage-deflate parameters this connection negotiated, if it did.
    pub fn deflate(&self) -> Option<DeflateParams> {
        self.sender.shared().writer().proto.deflate_params()
    }

    /// This connection with the subprotocol agreed in the handshake.
    pub(crate) fn with_protocol(mut self, protocol: Option<String>) -> Self {
        self.protocol = protocol.map(String::into_boxed_str);
        self
    }

    /// Receives the next data message, answering pings, keeping the heartbeat and completing
    /// the close handshake on the way. Cancel-safe: a `recv` dropped in a `select!` loses no
    /// message.
    ///
    /// Returns `Ok(None)` once the connection has ended normally: the peer closed with a code
    /// in [`Config::caught_close_codes`] (default 1000, 1001 and a close without status,
    /// 1005), or this endpoint closed it. [`close_info`](WebSocket::close_info) then says how.
    ///
    /// # Errors
    /// Each error ends the connection, except a read timeout. The next call returns
    /// `Ok(None)`.
    /// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed): the peer closed
    ///   with a code that is not caught, or vanished without a close frame (1006);
    ///   [`Error::close_info`] has the code and reason.
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout): no pong within the ping timeout
    ///   ([`TimeoutPhase::Pong`], closed with 1011), no message within the idle timeout
    ///   ([`TimeoutPhase::Idle`], closed with 1001), no message within the read timeout
    ///   ([`TimeoutPhase::Read`]: the connection stays open, call `recv` again to go on), or
    ///   no answer to our close ([`TimeoutPhase::Close`]).
    /// - [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) /
    ///   [`ErrorKind::Payload`](crate::ErrorKind::Payload): the peer broke the protocol or
    ///   sent a message over the size limit; the connection was closed with 1002/1007/1009.
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io): the transport failed.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let Some(reader) = self
                .reader
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
                .filter(|reader| !reader.end_reported)
            else {
                return Ok(None);
            };
            let mut liveness = self.liveness.as_deref_mut();
            // Matched in place, so the event is not kept in the future across the heartbeat
            // step below.
            match poll_fn(|cx| poll_event(reader, liveness.as_deref_mut(), cx)).await {
                Polled::Message(message) => {
                    // The clock is read only when the idle or read timeout needs it.
                    if let Some(liveness) = self.liveness.as_mut() {
                        if liveness.tracks_idle() {
                            liveness.on_message(Instant::now());
                        }
                    }
                    return Ok(Some(message));
                }
                Polled::End(error) => {
                    reader.end_reported = true;
                    return self.on_end(error);
                }
                Polled::Tick => {}
            }
            // Boxed: the rare heartbeat step (a ping, a close) would otherwise make every
            // idle connection's task as large as its biggest state.
            if let Some(error) = Box::pin(self.on_tick()).await {
                return Err(error);
            }
        }
    }

    /// Sends a message; see [`Sender::send`].
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        self.sender.send(message)
    }

    /// Queues a message without writing it yet; see [`Sender::feed`].
    ///
    /// # Errors
    /// As [`Sender::send`].
    pub fn feed(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        self.sender.feed(message)
    }

    /// Writes every queued message; see [`Sender::flush`].
    ///
    /// # Errors
    /// An I/O error.
    pub async fn flush(&self) -> Result<(), Error> {
        self.sender.flush().await
    }

    /// Whether a complete message is already buffered, so the next
    /// [`recv`](WebSocket::recv) will not wait for the network. An echo loop uses it to
    /// [`feed`](WebSocket::feed) replies and [`flush`](WebSocket::flush) once per batch.
    pub fn has_buffered_input(&self) -> bool {
        self.reader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(Reader::has_buffered_input)
    }

    /// Closes the connection with `code` and `reason`, then reads until the peer's close
    /// arrives or the close timeout passes (data messages that arrive meanwhile are dropped).
    /// Idempotent: once a close was sent, later calls only finish the handshake.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if the peer did not answer in time;
    /// a protocol or I/O error met while waiting.
    pub async fn close(&mut self, code: CloseCode, reason: impl Into<Reason>) -> Result<(), Error> {
        self.close_frame(CloseFrame::new(code, reason)).await
    }

    pub(crate) async fn close_frame(&mut self, frame: CloseFrame) -> Result<(), Error> {
        self.sender.close_frame(frame).await?;
        self.finish_close().await
    }

    /// Reads until the stream ends, dropping data messages: a close that was sent completes.
    pub(crate) async fn finish_close(&mut self) -> Result<(), Error> {
        if let Some(reader) = self.reader_mut() {
            while let Some(next) = reader.recv().await {
                next?;
            }
        }
        Ok(())
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.sender.shared().writer().proto.close_info()
    }

    /// Whether the connection is open, closing or closed.
    pub fn state(&self) -> ConnectionState {
        let reader = self.reader.lock().unwrap_or_else(PoisonError::into_inner);
        match &*reader {
            Some(reader) if !reader.is_done() => {
                if self.sender.is_closed() {
                    ConnectionState::Closing
                } else {
                    ConnectionState::Open
                }
            }
            _ => ConnectionState::Closed,
        }
    }

    /// A sender for this connection that other tasks can use.
    pub fn sender(&self) -> Sender {
        self.sender.clone()
    }

    /// The subprotocol agreed in the opening handshake, if any.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// The connection's id: unique in this process, and the one in the server's log lines.
    pub fn id(&self) -> u64 {
        self.sender.id()
    }

    /// Takes the receive loop out (the server finishes the close with it after the handler
    /// dropped its socket); the connection then reads as ended.
    pub(crate) fn take_reader(&mut self) -> Option<Reader> {
        self.reader
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    fn reader_mut(&mut self) -> Option<&mut Reader> {
        self.reader
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
    }

    async fn on_tick(&mut self) -> Option<Error> {
        let now = Instant::now();
        let pongs = self
            .reader_mut()
            .map_or(0, |reader| reader.pongs_received());
        let check = self.liveness.as_mut()?.check(now, pongs);
        match check {
            Check::Fine => None,
            Check::Ping => {
                // A failed ping means the connection is ending; the next read reports it.
                let _ = self.sender.ping(b"tether").await;
                None
            }
            Check::PongMissing(timeout) => {
                tracing::warn!(
                    connection = self.id(),
                    timeout_ms = timeout.as_millis() as u64,
                    "closing: no pong within the ping timeout"
                );
                let reason = format!("ping timeout: no pong within {} ms", timeout.as_millis());
                let frame = CloseFrame::new(CloseCode::INTERNAL_ERROR, reason);
                let _ = self.close_frame(frame).await;
                Some(Error::timeout(TimeoutPhase::Pong))
            }
            Check::Idle(timeout) if self.sender.shared().config.idle_timeout.is_some() => {
                tracing::debug!(
                    connection = self.id(),
                    timeout_ms = timeout.as_millis() as u64,
                    "closing: idle timeout"
                );
                let frame = CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout");
                let _ = self.close_frame(frame).await;
                Some(Error::timeout(TimeoutPhase::Idle))
            }
            Check::Idle(_) => {
                if let Some(liveness) = self.liveness.as_mut() {
                    liveness.restart_idle(now);
                }
                Some(Error::timeout(TimeoutPhase::Read))
            }
        }
    }

    /// The stream ended: quietly for a caught close code or our own close, as an error
    /// otherwise.
    fn on_end(&self, error: Option<Error>) -> Result<Option<Message>, Error> {
        let caught = &self.sender.shared().config.caught_close_codes;
        match error {
            Some(error) if !error.is_abnormal_closure() => Err(error),
            Some(error) => {
                if caught.contains(1006) {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
            None => match self.close_info() {
                Some(info) if info.initiated_by == Side::Remote => {
                    if caught.contains(info.reason.display_code()) {
                        Ok(None)
                    } else {
                        Err(Error::disconnected(info))
                    }
                }
                _ => Ok(None),
            },
        }
    }
}

/// The protocol state of a fresh connection, in its receiving and sending halves, with
/// permessage-deflate when the handshake negotiated it.
fn protocol_halves(
    role: Role,
    config: &Config,
    deflate: Option<(DeflateParams, &DeflateConfig)>,
) -> (ReadHalf, WriteHalf) {
    let conn =
        Connection::new(role, config.limits).with_detach_threshold(super::reader::COPY_OUT_MAX);
    match deflate {
        Some((params, deflate)) => conn.with_deflate(params, deflate),
        None => conn,
    }
    .split()
}

/// What the receive loop and the heartbeat's timer produced.
enum Polled {
    Message(Message),
    Tick,
    End(Option<Error>),
}

fn poll_event(
    reader: &mut Reader,
    liveness: Option<&mut Heartbeat>,
    cx: &mut Context<'_>,
) -> Poll<Polled> {
    match reader.poll_recv(cx) {
        Poll::Ready(Some(Ok(message))) => Poll::Ready(Polled::Message(message)),
        Poll::Ready(Some(Err(error))) => Poll::Ready(Polled::End(Some(error))),
        Poll::Ready(None) => Poll::Ready(Polled::End(None)),
        Poll::Pending if reader.is_done() => Poll::Pending,
        Poll::Pending => match liveness {
            Some(liveness) => liveness.poll_tick(cx).map(|()| Polled::Tick),
            None => Poll::Pending,
        },
    }
}
