//! `Client`: an open client connection with the heartbeat and the read and write timeouts
//! built in, and `ClientSender`, its cloneable sending half for other tasks.

use std::future::{Future, poll_fn};
use std::sync::{Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use tether_proto::{CloseCode, CloseFrame, Message};
use tokio::time::Instant;

use super::stream::MaybeTlsStream;
use crate::error::{Error, TimeoutPhase};
use crate::heartbeat::{Check, Heartbeat};
use crate::transport::{CloseInfo, Receiver, Sender, WebSocket};

/// Heartbeat and timeout settings of a client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    pub(crate) ping_interval: Option<Duration>,
    pub(crate) ping_timeout: Duration,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
}

/// An open client connection.
///
/// `recv` answers pings, sends the heartbeat's pings and enforces the read timeout while it
/// waits; `send` enforces the write timeout. Clone a [`ClientSender`] with
/// [`Client::sender`] to send from other tasks while one task receives.
#[derive(Debug)]
pub struct Client {
    /// Behind a mutex only to make `Client` `Sync` (so `&Client` may be held across an await
    /// in a `Send` future); `&mut self` methods reach it without locking.
    receiver: Mutex<Receiver<MaybeTlsStream>>,
    sender: ClientSender,
    heartbeat: Heartbeat,
    protocol: Option<String>,
}

/// The sending half of a [`Client`]: cloneable, usable from many tasks at once.
#[derive(Debug, Clone)]
pub struct ClientSender {
    sender: Sender<MaybeTlsStream>,
    write_timeout: Option<Duration>,
}

impl Client {
    pub(crate) fn new(
        websocket: WebSocket<MaybeTlsStream>,
        liveness: Liveness,
        protocol: Option<String>,
    ) -> Self {
        let (receiver, sender) = websocket.split();
        let heartbeat = Heartbeat::new(
            liveness.ping_interval,
            liveness.ping_timeout,
            liveness.read_timeout,
            Instant::now(),
        );
        Self {
            receiver: Mutex::new(receiver),
            sender: ClientSender {
                sender,
                write_timeout: liveness.write_timeout,
            },
            heartbeat,
            protocol,
        }
    }

    /// Receives the next message.
    ///
    /// Returns `None` once the connection has closed cleanly: [`Client::close_info`] then has
    /// the code and reason. Cancel-safe.
    ///
    /// # Errors
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) with
    ///   [`TimeoutPhase::Read`]: no message within the read timeout; the connection stays
    ///   open and `recv` may be called again.
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) with
    ///   [`TimeoutPhase::Pong`]: the server did not answer a heartbeat ping in time; the
    ///   connection was closed with 1011.
    /// - [`ErrorKind::Protocol`](crate::ErrorKind::Protocol),
    ///   [`ErrorKind::Payload`](crate::ErrorKind::Payload): the server broke the protocol or
    ///   a limit; the connection was closed with the matching code.
    /// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed): the connection
    ///   ended without a close frame (abnormal closure).
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io).
    pub async fn recv(&mut self) -> Option<Result<Message, Error>> {
        loop {
            let receiver = self
                .receiver
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner);
            let heartbeat = &mut self.heartbeat;
            match poll_fn(|cx| poll_next(receiver, heartbeat, cx)).await {
                Next::Message(message) => {
                    if self.heartbeat.tracks_idle() {
                        self.heartbeat.on_message(Instant::now());
                    }
                    return Some(Ok(message));
                }
                Next::End(end) => return end,
                Next::Tick => {
                    if let Some(error) = self.on_tick().await {
                        return Some(Err(error));
                    }
                }
            }
        }
    }

    async fn on_tick(&mut self) -> Option<Error> {
        let now = Instant::now();
        let pongs = self.receiver_mut().pongs_received();
        match self.heartbeat.check(now, pongs) {
            Check::Fine => None,
            Check::Ping => {
                // A failed ping means the connection is ending; the next read says how.
                let _ = self.sender.sender.ping(b"tether").await;
                None
            }
            Check::PongMissing(timeout) => {
                let reason = format!("ping timeout: no pong within {} ms", timeout.as_millis());
                let _ = self
                    .sender
                    .sender
                    .close(Some(CloseFrame::new(CloseCode::INTERNAL_ERROR, reason)))
                    .await;
                while let Some(Ok(_)) = self.receiver_mut().recv().await {}
                Some(Error::timeout(TimeoutPhase::Pong))
            }
            Check::Idle(_) => {
                self.heartbeat.restart_idle(now);
                Some(Error::timeout(TimeoutPhase::Read))
            }
        }
    }

    /// Sends a message; see [`ClientSender::send`].
    ///
    /// # Errors
    /// As [`ClientSender::send`].
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.sender.send(message.into()).await
    }

    /// Closes the connection with `frame` (`None`: without a status) and waits for the
    /// server's answer, bounded by the close timeout. Idempotent.
    ///
    /// # Errors
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (close phase) if the server did not
    /// answer in time; a protocol or I/O error met while waiting.
    pub async fn close(&mut self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.sender.sender.close(frame).await?;
        while let Some(next) = self.receiver_mut().recv().await {
            next?;
        }
        Ok(())
    }

    /// How the connection ended, once it has: who closed first, the code and the reason.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .close_info()
    }

    fn receiver_mut(&mut self) -> &mut Receiver<MaybeTlsStream> {
        self.receiver
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The subprotocol the server selected.
    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    /// A sender for other tasks.
    pub fn sender(&self) -> ClientSender {
        self.sender.clone()
    }
}

impl ClientSender {
    /// Sends a message, within the write timeout.
    ///
    /// # Errors
    /// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) once the
    ///   connection is closing or closed, with the message given back
    ///   ([`Error::into_message`]).
    /// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) with [`TimeoutPhase::Write`]: the
    ///   server did not take the message in time (its receive buffer stayed full).
    /// - [`ErrorKind::Io`](crate::ErrorKind::Io).
    pub async fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        let mut send = std::pin::pin!(self.sender.send(message.into()));
        let Some(timeout) = self.write_timeout else {
            return send.await;
        };
        // Most sends finish at once: the timer is only armed for one that has to wait.
        if let Poll::Ready(done) = poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            return done;
        }
        tokio::time::timeout(timeout, send)
            .await
            .map_err(|_| Error::timeout(TimeoutPhase::Write))?
    }

    /// Starts closing with `frame`; the receiving task finishes the close handshake.
    /// Idempotent.
    ///
    /// # Errors
    /// As [`Client::close`].
    pub async fn close(&self, frame: Option<CloseFrame>) -> Result<(), Error> {
        self.sender.close(frame).await
    }

    /// Whether nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

enum Next {
    Message(Message),
    Tick,
    End(Option<Result<Message, Error>>),
}

fn poll_next(
    receiver: &mut Receiver<MaybeTlsStream>,
    heartbeat: &mut Heartbeat,
    cx: &mut Context<'_>,
) -> Poll<Next> {
    match receiver.poll_recv(cx) {
        Poll::Ready(Some(Ok(message))) => Poll::Ready(Next::Message(message)),
        Poll::Ready(end) => Poll::Ready(Next::End(end)),
        Poll::Pending if receiver.is_done() => Poll::Pending,
        Poll::Pending => heartbeat.poll_tick(cx).map(|()| Next::Tick),
    }
}
