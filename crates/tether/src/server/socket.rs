//! `Socket`: the connection a handler gets, with the server's policies built in.
//!
//! While a handler waits in [`Socket::recv`], the socket keeps the connection honest: it
//! pings every `ping_interval` and closes a peer that does not answer within `ping_timeout`
//! (1011), closes an idle connection (1001), and applies the rate limit (a 4005 error message
//! per rejected message, 1008 on sustained abuse). A client's close reaches the handler as
//! the end of the stream when its code is in the route's `caught_close_codes`, and as a typed
//! [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) error otherwise.
//!
//! Every operation is safe on a closed connection: sends return a typed error that gives the
//! message back, and `close` can be called any number of times.

use std::future::{Future, poll_fn};
use std::net::SocketAddr;

use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tether_proto::{CloseCode, CloseFrame, Message, Reason, Side};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::app_error::{AppError, Outcome, error_chain};
use super::builder::Settings;
use super::limits::{RateLimit, RateLimiter, Verdict};
use super::{CaughtCloseCodes, CloseError};
use crate::codes::Severity;
use crate::error::{Error, TimeoutPhase};
use crate::error_message::ErrorMessage;
use crate::heartbeat::{Check, Heartbeat};
use crate::transport::{CloseInfo, CloseReason, Receiver, Sender};

/// The generic reason sent with 1011 when a handler fails: nothing internal reaches clients.
pub(crate) const INTERNAL_REASON: &str = "internal error";

/// What the server knows about one connection; shared by its socket, senders and driver.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) route: Arc<str>,
    pub(crate) settings: Arc<Settings>,
    /// Where the socket leaves its receiving half when it is dropped, so the server can
    /// finish the close handshake after the handler returns.
    pub(crate) parked: Mutex<Option<Receiver<TcpStream>>>,
}

/// Whether a connection can still be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SocketState {
    /// Messages can be sent and received.
    Open,
    /// A close frame was sent or received; the close handshake is finishing.
    Closing,
    /// The connection has ended.
    Closed,
}

/// The connection a handler serves.
#[derive(Debug)]
pub struct Socket {
    /// `None` only while being dropped. The mutex makes the socket `Sync` (so `&Socket` can
    /// be held across an await in a `Send` future); `recv` reaches it through `&mut self`
    /// without locking.
    receiver: Mutex<Option<Receiver<TcpStream>>>,
    sender: SocketSender,
    heartbeat: Heartbeat,
    limiter: Option<RateLimiter>,
    caught: CaughtCloseCodes,
}

/// A cloneable handle that sends on a connection from any task.
#[derive(Debug, Clone)]
pub struct SocketSender {
    sender: Sender<TcpStream>,
    ctx: Arc<ConnContext>,
}

impl Socket {
    pub(crate) fn new(
        receiver: Receiver<TcpStream>,
        sender: Sender<TcpStream>,
        ctx: Arc<ConnContext>,
        caught: CaughtCloseCodes,
        rate_limit: Option<RateLimit>,
    ) -> Self {
        let now = Instant::now();
        let settings = &ctx.settings;
        let heartbeat = Heartbeat::new(
            settings.ping_interval,
            settings.ping_timeout,
            settings.idle_timeout,
            now,
        );
        let limiter = rate_limit.map(|limit| RateLimiter::new(limit, now));
        Self {
            receiver: Mutex::new(Some(receiver)),
            sender: SocketSender { sender, ctx },
            heartbeat,
            limiter,
            caught,
        }
    }

    /// Receives the next message.
    ///
    /// Returns `Ok(None)` when the connection has ended normally: the client closed with a
    /// code in the route's `caught_close_codes` (default 1000 and 1001), or this server
    /// closed it. Messages refused by the rate limit are answered with a 4005 error message
    /// and not returned.
    ///
    /// # Errors
    /// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed): the client
    ///   closed with a code that is not caught, or vanished without a close frame (1006);
    ///   [`Error::close_info`] has the code and reason. Also after a close for sustained
    ///   rate-limit abuse (1008).
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout): no pong within the ping timeout
    ///   (closed with 1011) or no message within the idle timeout (closed with 1001).
    /// - [`ErrorKind::Protocol`](crate::ErrorKind::Protocol) /
    ///   [`ErrorKind::Payload`](crate::ErrorKind::Payload): the client broke the protocol or
    ///   sent a message over the size limit; it was closed with 1002/1007/1009.
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io): the transport failed.
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let Some(receiver) = self
                .receiver
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .as_mut()
            else {
                return Ok(None);
            };
            let heartbeat = &mut self.heartbeat;
            let polled = poll_fn(|cx| poll_event(receiver, heartbeat, cx)).await;
            match polled {
                Polled::Message(message) => {
                    // The clock is read only when the idle timeout or the rate limit needs it.
                    if self.limiter.is_none() && !self.heartbeat.tracks_idle() {
                        return Ok(Some(message));
                    }
                    let now = Instant::now();
                    self.heartbeat.on_message(now);
                    let Some(limiter) = self.limiter.as_mut() else {
                        return Ok(Some(message));
                    };
                    match limiter.check(now) {
                        Verdict::Allow => return Ok(Some(message)),
                        Verdict::Reject(wait) => {
                            let mut error = AppError::rate_limited("Rate limit exceeded", wait);
                            if let Some(id) = (self.sender.ctx.settings.request_id)(&message) {
                                error = error.with_request_id(id);
                            }
                            // A send that fails means the connection is ending; recv says so next.
                            let _ = self.sender.send_error(error).await;
                        }
                        Verdict::Abuse => {
                            tracing::warn!("closing: the client keeps exceeding the rate limit");
                            let frame =
                                CloseFrame::new(CloseCode::POLICY_VIOLATION, "rate limit exceeded");
                            return Err(self.close_and_report(frame).await);
                        }
                    }
                }
                Polled::Tick => {
                    if let Some(error) = self.on_tick().await {
                        return Err(error);
                    }
                }
                Polled::End(error) => return self.on_end(error),
            }
        }
    }

    /// Sends a message.
    ///
    /// # Errors
    /// [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once the connection
    /// is closing or closed, with the message given back ([`Error::into_message`]); an I/O
    /// error.
    pub fn send(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), Error>> + Send + '_ {
        // The future borrows only the sending half, so a handler's future stays `Send`.
        self.sender.send(message.into())
    }

    /// Sends `value` as a JSON text message.
    ///
    /// # Errors
    /// As [`Socket::send`]; a value that cannot be serialized is an
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) error of kind `InvalidData`.
    #[cfg(feature = "json")]
    pub fn send_json<'a, T: serde::Serialize + ?Sized + Sync>(
        &'a self,
        value: &'a T,
    ) -> impl Future<Output = Result<(), Error>> + Send + 'a {
        self.sender.send_json(value)
    }

    /// Sends a structured error message; for a fatal code, closes the connection after it
    /// (with the same code, or 1011 for 5000). Returns the message's size in bytes. See
    /// [`SocketSender::send_error`].
    ///
    /// # Errors
    /// As [`Socket::send`].
    pub fn send_error(
        &self,
        error: AppError,
    ) -> impl Future<Output = Result<usize, Error>> + Send + '_ {
        self.sender.send_error(error)
    }

    /// Handles an error the way the server handles a handler's error, but keeps going when
    /// the error is recoverable: an [`AppError`] (or a type mapped to one) is sent as an error
    /// message, a [`CloseError`] closes, and anything else is logged and closes with 1011.
    /// Use it for per-message errors in a receive loop.
    ///
    /// # Errors
    /// As [`Socket::send`].
    pub async fn report<E>(&mut self, error: E) -> Result<(), Error>
    where
        E: Into<super::app_error::BoxError>,
    {
        let error = error.into();
        match self.sender.ctx.settings.error_handlers.outcome(&*error) {
            Outcome::Message(app) => self.send_error(app).await.map(drop),
            Outcome::Close(close) => self.close_with(close).await,
            Outcome::Internal => {
                log_internal(&self.sender.ctx, &error_chain(&*error));
                self.close(CloseCode::INTERNAL_ERROR, INTERNAL_REASON).await
            }
        }
    }

    /// Closes the connection with `code` and `reason` and waits for the client's answer
    /// (bounded by the close timeout). Idempotent: later calls do nothing.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) if the client did not answer in time;
    /// an I/O error.
    pub async fn close(&mut self, code: CloseCode, reason: impl Into<Reason>) -> Result<(), Error> {
        self.close_frame(Some(CloseFrame::new(code, reason))).await
    }

    /// Closes the connection as `error` says; see [`Socket::close`].
    ///
    /// # Errors
    /// As [`Socket::close`].
    pub async fn close_with(&mut self, error: CloseError) -> Result<(), Error> {
        self.close_frame(Some(error.frame().clone())).await
    }

    async fn close_frame(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.sender.sender.close(frame).await?;
        self.drain().await
    }

    /// Reads until the stream ends, dropping data messages: the close handshake finishes.
    async fn drain(&mut self) -> Result<(), Error> {
        if let Some(receiver) = self.receiver_mut() {
            while let Some(next) = receiver.recv().await {
                next?;
            }
        }
        Ok(())
    }

    /// Sends our close, finishes the handshake, and returns the error that tells the handler.
    async fn close_and_report(&mut self, frame: CloseFrame) -> Error {
        let _ = self.close_frame(Some(frame.clone())).await;
        Error::disconnected(CloseInfo {
            initiated_by: Side::Local,
            reason: CloseReason::Frame(frame),
        })
    }

    /// Whether the connection is open, closing or closed.
    pub fn state(&self) -> SocketState {
        match &*self.receiver.lock().unwrap_or_else(PoisonError::into_inner) {
            Some(receiver) if !receiver.is_done() => {
                if self.sender.is_closed() {
                    SocketState::Closing
                } else {
                    SocketState::Open
                }
            }
            _ => SocketState::Closed,
        }
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .and_then(Receiver::close_info)
    }

    /// A handle to send from other tasks.
    pub fn sender(&self) -> SocketSender {
        self.sender.clone()
    }

    /// The connection id (also in the server's log lines).
    pub fn id(&self) -> u64 {
        self.sender.ctx.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.sender.ctx.peer
    }

    /// The route pattern that matched, e.g. `/ws/rooms/{room}`.
    pub fn route(&self) -> &str {
        &self.sender.ctx.route
    }

    /// The request id the server's request-id function finds in `message` (for JSON
    /// protocols, usually its `id` field), if any.
    pub fn request_id_of(&self, message: &Message) -> Option<String> {
        (self.sender.ctx.settings.request_id)(message)
    }

    async fn on_tick(&mut self) -> Option<Error> {
        let now = Instant::now();
        let pongs = self
            .receiver_mut()
            .map_or(0, |receiver| receiver.pongs_received());
        match self.heartbeat.check(now, pongs) {
            Check::Fine => None,
            Check::Ping => {
                // A failed ping means the connection is ending; the next read reports it.
                let _ = self.sender.sender.ping(b"tether").await;
                None
            }
            Check::PongMissing(timeout) => {
                tracing::warn!(
                    timeout_ms = timeout.as_millis() as u64,
                    "closing: no pong within the ping timeout"
                );
                let reason = format!("ping timeout: no pong within {} ms", timeout.as_millis());
                let _ = self
                    .close_frame(Some(CloseFrame::new(CloseCode::INTERNAL_ERROR, reason)))
                    .await;
                Some(Error::timeout(TimeoutPhase::Pong))
            }
            Check::Idle(timeout) => {
                tracing::debug!(
                    timeout_ms = timeout.as_millis() as u64,
                    "closing: idle timeout"
                );
                let _ = self
                    .close_frame(Some(CloseFrame::new(CloseCode::GOING_AWAY, "idle timeout")))
                    .await;
                Some(Error::timeout(TimeoutPhase::Idle))
            }
        }
    }

    /// The stream ended: quietly for a caught close code or our own close, as an error
    /// otherwise.
    fn on_end(&mut self, error: Option<Error>) -> Result<Option<Message>, Error> {
        let info = self.close_info();
        match error {
            Some(error) if !error.is_abnormal_closure() => Err(error),
            Some(_) => {
                let info = CloseInfo {
                    initiated_by: Side::Remote,
                    reason: CloseReason::Abnormal,
                };
                if self.caught.contains(1006) {
                    Ok(None)
                } else {
                    Err(Error::disconnected(info))
                }
            }
            None => match info {
                Some(info) if info.initiated_by == Side::Remote => {
                    if self.caught.contains(info.reason.display_code()) {
                        Ok(None)
                    } else {
                        Err(Error::disconnected(info))
                    }
                }
                _ => Ok(None),
            },
        }
    }

    fn receiver_mut(&mut self) -> Option<&mut Receiver<TcpStream>> {
        self.receiver
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .as_mut()
    }

    /// Takes the receiving half back (the server's driver finishes the close with it).
    pub(crate) fn park(&mut self) {
        let receiver = self
            .receiver
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(receiver) = receiver {
            *self
                .sender
                .ctx
                .parked
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(receiver);
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.park();
    }
}

impl SocketSender {
    pub(crate) fn from_parts(sender: Sender<TcpStream>, ctx: Arc<ConnContext>) -> Self {
        Self { sender, ctx }
    }

    /// Sends a message; see [`Socket::send`].
    ///
    /// # Errors
    /// As [`Socket::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.sender.send(message.into()).await
    }

    /// Sends `value` as a JSON text message; see [`Socket::send_json`].
    ///
    /// # Errors
    /// As [`Socket::send_json`].
    #[cfg(feature = "json")]
    pub async fn send_json<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(|error| {
            Error::from(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
        })?;
        self.sender.send(Message::text(text)).await
    }

    /// Sends `error` as a structured error message
    /// (`{"type":"error","data":{"code":..,"message":..},"meta":{"request_id":..,"timestamp":..}}`).
    /// When the server's registry marks the code fatal, the connection is then closed with
    /// the same code (1011 for 5000) and the message as the reason; the close handshake is
    /// finished by whoever is receiving. Unregistered codes are recoverable.
    ///
    /// Returns the size in bytes of the message sent (for metrics).
    ///
    /// # Errors
    /// As [`Socket::send`].
    pub async fn send_error(&self, error: AppError) -> Result<usize, Error> {
        let registered = self.ctx.settings.codes.get(error.code());
        let fatal = registered.is_some_and(|code| code.severity == Severity::Fatal);
        let mut message =
            ErrorMessage::answering(error.code(), error.message(), error.request_id());
        if let Some(delay) = error.retry_after() {
            message = message.with_retry_after(delay);
        }
        tracing::debug!(code = error.code(), request_id = %message.request_id, fatal, "sending an error message");
        let json = message.to_json();
        let sent = json.len();
        self.sender.send(Message::text(json)).await?;
        if fatal {
            let close_code = registered.map_or(CloseCode::INTERNAL_ERROR, |code| code.close_code());
            let reason = if close_code == CloseCode::INTERNAL_ERROR {
                Reason::from_static(INTERNAL_REASON)
            } else {
                Reason::from(error.message())
            };
            self.sender
                .close(Some(CloseFrame::new(close_code, reason)))
                .await?;
        }
        Ok(sent)
    }

    /// Starts closing with `code` and `reason`; the receiving side finishes the handshake.
    /// Idempotent.
    ///
    /// # Errors
    /// As [`Socket::close`].
    pub async fn close(&self, code: CloseCode, reason: impl Into<Reason>) -> Result<(), Error> {
        self.sender.close(Some(CloseFrame::new(code, reason))).await
    }

    /// Whether nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// The connection id.
    pub fn id(&self) -> u64 {
        self.ctx.id
    }
}

/// Logs an internal failure with its context; the client only ever sees 1011.
pub(crate) fn log_internal(ctx: &ConnContext, detail: &str) {
    tracing::error!(
        connection = ctx.id,
        peer = %ctx.peer,
        route = %ctx.route,
        error = detail,
        "handler failed; closing with 1011"
    );
}

enum Polled {
    Message(Message),
    Tick,
    End(Option<Error>),
}

fn poll_event(
    receiver: &mut Receiver<TcpStream>,
    heartbeat: &mut Heartbeat,
    cx: &mut Context<'_>,
) -> Poll<Polled> {
    match receiver.poll_recv(cx) {
        Poll::Ready(Some(Ok(message))) => Poll::Ready(Polled::Message(message)),
        Poll::Ready(Some(Err(error))) => Poll::Ready(Polled::End(Some(error))),
        Poll::Ready(None) => Poll::Ready(Polled::End(None)),
        Poll::Pending if receiver.is_done() => Poll::Pending,
        Poll::Pending => heartbeat.poll_tick(cx).map(|()| Polled::Tick),
    }
}
