//! What a [`Runner`](super::Runner) reports: [`Event`]s, or the callbacks of an
//! [`EventHandler`].

use std::future::Future;
use std::time::Duration;

use tether_proto::Message;

use crate::client::Response;
use crate::error::Error;
use crate::transport::{CloseInfo, Sender};

/// What happened to a [`Runner`](super::Runner)'s connection.
///
/// A run reads: `Open`, then `Message`s (and `Error`s for read timeouts, after which the
/// connection stays open), then `Close` when the connection ends; then either `Error` (when
/// it ended with one) and `Reconnecting` before the next attempt, or `Stopped`. A failed
/// connection attempt gives `Error` and `Reconnecting`, or `Stopped`. `Stopped` is always
/// last; after it [`Runner::next`](super::Runner::next) returns `None`. (One `Error` may also come just before a
/// quiet `Stopped(None)`: the server did not answer the application's own close in time.)
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection is open. `sender` sends on it (from any task) until it ends.
    Open {
        /// Sends on this connection.
        sender: Sender,
        /// The server's handshake answer.
        response: Response,
    },
    /// A message from the server.
    Message(Message),
    /// An error the runner recovers from: a failed connection attempt or a connection that
    /// failed (a `Reconnecting` follows), or a read timeout (the connection stays open).
    Error(Error),
    /// The open connection ended: who closed first, and the close frame or the state
    /// (no status, 1005; abnormal, 1006).
    Close(CloseInfo),
    /// The runner waits `delay`, then makes reconnect attempt `attempt` (from 1; it counts
    /// attempts since the last stable connection).
    Reconnecting {
        /// The attempt number, from 1.
        attempt: u32,
        /// How long the runner waits before it.
        delay: Duration,
    },
    /// The runner is done: `None` after a normal close (1000), a close the application made
    /// itself, or a [`StopHandle::stop`](super::StopHandle::stop); otherwise the error that ended it (a terminal close as a
    /// [`ConnectionClosed`](crate::ErrorKind::ConnectionClosed) error with its
    /// [`close_info`](Error::close_info), a refused handshake, or the last error once the
    /// maximum number of attempts was reached).
    Stopped(Option<Error>),
}

/// Callbacks for [`Runner::run`](super::Runner::run), like the `on_*` functions of Python's `WebSocketApp`.
/// Every method has a default that does nothing.
///
/// Callbacks are awaited one at a time, and the connection is not read meanwhile: keep them
/// short, or hand long work to a task. `&mut H` is a handler too, so the caller can inspect
/// its handler after the run.
///
/// ```no_run
/// use tether::Message;
/// use tether::Sender;
/// use tether::client::{ClientBuilder, EventHandler, Reconnect, Runner};
///
/// struct Echo;
///
/// impl EventHandler for Echo {
///     async fn on_message(&mut self, sender: &Sender, message: Message) {
///         let _ = sender.send(message).await;
///     }
/// }
///
/// # async fn demo() -> Result<(), tether::Error> {
/// Runner::new("ws://127.0.0.1:9000", ClientBuilder::new(), Reconnect::new())
///     .run(Echo)
///     .await
/// # }
/// ```
pub trait EventHandler: Send {
    /// A connection opened; `sender` sends on it.
    fn on_open(&mut self, sender: &Sender, response: &Response) -> impl Future<Output = ()> + Send {
        let _ = (sender, response);
        async {}
    }

    /// A message arrived; `sender` sends on the same connection.
    fn on_message(&mut self, sender: &Sender, message: Message) -> impl Future<Output = ()> + Send {
        let _ = (sender, message);
        async {}
    }

    /// An error: one the runner recovers from, or (last) the one that stops it.
    fn on_error(&mut self, error: &Error) -> impl Future<Output = ()> + Send {
        let _ = error;
        async {}
    }

    /// The connection ended as `info` says (its code and reason, or no status, or
    /// abnormal).
    fn on_close(&mut self, info: &CloseInfo) -> impl Future<Output = ()> + Send {
        let _ = info;
        async {}
    }

    /// The runner waits `delay`, then makes reconnect attempt `attempt` (from 1).
    fn on_reconnect(&mut self, attempt: u32, delay: Duration) -> impl Future<Output = ()> + Send {
        let _ = (attempt, delay);
        async {}
    }
}

impl<H: EventHandler> EventHandler for &mut H {
    fn on_open(&mut self, sender: &Sender, response: &Response) -> impl Future<Output = ()> + Send {
        (**self).on_open(sender, response)
    }

    fn on_message(&mut self, sender: &Sender, message: Message) -> impl Future<Output = ()> + Send {
        (**self).on_message(sender, message)
    }

    fn on_error(&mut self, error: &Error) -> impl Future<Output = ()> + Send {
        (**self).on_error(error)
    }

    fn on_close(&mut self, info: &CloseInfo) -> impl Future<Output = ()> + Send {
        (**self).on_close(info)
    }

    fn on_reconnect(&mut self, attempt: u32, delay: Duration) -> impl Future<Output = ()> + Send {
        (**self).on_reconnect(attempt, delay)
    }
}
