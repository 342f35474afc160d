//! `Socket`: the connection a handler gets: the one [`WebSocket`] plus the server's rate
//! limit and its error reporting.
//!
//! The heartbeat, the idle timeout, the size limits, the caught close codes and the close
//! handshake all run inside the [`WebSocket`] it derefs to; the socket adds what only a
//! server has: the route's rate limit (a 4005 error message per rejected message, 1008 on
//! sustained abuse), [`Socket::send_error`] and [`Socket::report`] with the server's error
//! registry and mappings, and the connection's peer and route.

use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};

use tether_proto::{CloseCode, CloseFrame, Message, Side};
use tokio::time::Instant;

use super::app_error::{AppError, BoxError, Outcome, error_chain};
use super::context::ConnContext;
use super::limits::{RateLimit, RateLimiter, Verdict};
use super::policy::{Then, deliver};
use crate::error::Error;
use crate::transport::{CloseInfo, CloseReason, WebSocket};

/// The connection a handler serves: a [`WebSocket`] (every method of it is available on the
/// socket) with the server's rate limit and error reporting.
///
/// [`recv`](Socket::recv) has the shape of [`WebSocket::recv`]; it also answers messages
/// over the route's rate limit with a 4005 error message instead of returning them (calling
/// `WebSocket::recv` on the socket explicitly would skip the rate limit).
#[derive(Debug)]
pub struct Socket {
    /// Boxed: a handler's `async fn` keeps its arguments twice in its future (as given and as
    /// moved into its body), for the connection's whole life; a pointer costs 8 bytes twice.
    inner: Box<Parts>,
}

/// What a [`Socket`] holds.
#[derive(Debug)]
struct Parts {
    ws: WebSocket,
    limiter: Option<RateLimiter>,
    ctx: Arc<ConnContext>,
}

impl Deref for Socket {
    type Target = WebSocket;

    fn deref(&self) -> &WebSocket {
        &self.inner.ws
    }
}

impl DerefMut for Socket {
    fn deref_mut(&mut self) -> &mut WebSocket {
        &mut self.inner.ws
    }
}

impl Socket {
    pub(crate) fn new(ws: WebSocket, ctx: Arc<ConnContext>, rate_limit: Option<RateLimit>) -> Self {
        let limiter = rate_limit.map(|limit| RateLimiter::new(limit, Instant::now()));
        Self {
            inner: Box::new(Parts { ws, limiter, ctx }),
        }
    }

    /// Receives the next message: as [`WebSocket::recv`], and messages refused by the rate
    /// limit are answered with a 4005 error message (with `retry_after_ms` and the message's
    /// request id) and not returned. Cancel-safe.
    ///
    /// Returns `Ok(None)` when the connection has ended normally: the client closed with a
    /// code in the route's `caught_close_codes` (default 1000, 1001 and 1005), or this
    /// server closed it.
    ///
    /// # Errors
    /// As [`WebSocket::recv`]; also [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed)
    /// after a close for sustained rate-limit abuse (1008).
    pub async fn recv(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let Some(message) = self.inner.ws.recv().await? else {
                return Ok(None);
            };
            let Some(limiter) = self.inner.limiter.as_mut() else {
                return Ok(Some(message));
            };
            let verdict = limiter.check(Instant::now());
            if let Verdict::Allow = verdict {
                return Ok(Some(message));
            }
            // Boxed, as every rare step of `recv`: it keeps the handler's task small.
            Box::pin(self.refuse(message, verdict)).await?;
        }
    }

    /// A message over the rate limit: answered with a 4005 error message, or, on sustained
    /// abuse, the connection closed with 1008 (the error says so).
    async fn refuse(&mut self, message: Message, verdict: Verdict) -> Result<(), Error> {
        let counters = &self.inner.ctx.settings.rate_limited;
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Reject(wait) => {
                counters.messages.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes
                    .fetch_add(message.len() as u64, Ordering::Relaxed);
                let mut error = AppError::rate_limited("Rate limit exceeded", wait);
                if let Some(id) = self.request_id_of(&message) {
                    error = error.with_request_id(id);
                }
                drop(message);
                // A send that fails means the connection is ending; recv says so next.
                let _ = self.send_error(error).await;
                Ok(())
            }
            Verdict::Abuse => {
                counters.closes.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("closing: the client keeps exceeding the rate limit");
                let frame = CloseFrame::new(CloseCode::POLICY_VIOLATION, "rate limit exceeded");
                let _ = self.inner.ws.close_frame(frame.clone()).await;
                let info = CloseInfo::new(Side::Local, CloseReason::Frame(frame));
                Err(Error::disconnected(info))
            }
        }
    }

    /// Sends `value` as a JSON text message.
    ///
    /// # Errors
    /// As [`WebSocket::send`]; a value that cannot be serialized is an
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) error of kind `InvalidData`.
    #[cfg(feature = "json")]
    pub async fn send_json<T: serde::Serialize + ?Sized + Sync>(
        &self,
        value: &T,
    ) -> Result<(), Error> {
        let text = serde_json::to_string(value).map_err(|error| {
            Error::from(std::io::Error::new(std::io::ErrorKind::InvalidData, error))
        })?;
        self.inner.ws.send(Message::text(text)).await
    }

    /// Sends `error` as a structured error message
    /// (`{"type":"error","data":{"code":..,"message":..},"meta":{"request_id":..,"timestamp":..}}`).
    /// When the server's registry marks the code fatal, the connection is then closed with
    /// the same code (1011 for 5000) and the message as the reason. Unregistered codes are
    /// recoverable.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn send_error(&self, error: AppError) -> Result<(), Error> {
        let sender = self.inner.ws.sender();
        deliver(
            &sender,
            &self.inner.ctx,
            Outcome::Message(error),
            Then::KeepOpen,
            String::new,
        )
        .await
        .map(drop)
    }

    /// Handles an error the way the server handles a handler's error, but keeps going when
    /// the error is recoverable: an [`AppError`] (or a type mapped to one) is sent as an error
    /// message, a [`CloseError`](super::CloseError) closes, and anything else is logged and
    /// closes with 1011. Use it for per-message errors in a receive loop.
    ///
    /// # Errors
    /// As [`WebSocket::send`].
    pub async fn report<E>(&mut self, error: E) -> Result<(), Error>
    where
        E: Into<BoxError>,
    {
        let error = error.into();
        let outcome = self.inner.ctx.settings.error_handlers.outcome(&*error);
        let sender = self.inner.ws.sender();
        let closed = deliver(&sender, &self.inner.ctx, outcome, Then::KeepOpen, || {
            error_chain(&*error)
        })
        .await?;
        if closed.is_some() {
            // Finish the close handshake our close started.
            self.inner.ws.finish_close().await?;
        }
        Ok(())
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.inner.ctx.peer
    }

    /// The route pattern that matched, e.g. `/ws/rooms/{room}`.
    pub fn route(&self) -> &str {
        &self.inner.ctx.route
    }

    /// The request id the server's request-id function finds in `message` (for JSON
    /// protocols, usually its `id` field), if any.
    pub fn request_id_of(&self, message: &Message) -> Option<String> {
        (self.inner.ctx.settings.request_id)(message)
    }

    /// Takes the receive loop back (the server's driver finishes the close with it).
    fn park(&mut self) {
        if let Some(reader) = self.inner.ws.take_reader() {
            *self
                .inner
                .ctx
                .parked
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Box::new(reader));
        }
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.park();
    }
}
