//! The blocking client (feature `blocking`), like Python's `create_connection`: every call
//! blocks the calling thread until it is done, on a small tokio runtime the connection owns.
//!
//! [`ClientBuilder::connect_blocking`] gives a [`BlockingClient`]; its [`BlockingSender`]
//! sends from other threads while one thread waits in [`BlockingClient::recv`].
//!
//! The connection is served (pings answered, the heartbeat run) only while a call is in
//! progress, as with the async [`WebSocket`]: a thread that keeps calling `recv` keeps it alive.
//! The blocking API refuses to run on a thread that is inside an async runtime (blocking there
//! would stall the runtime): use [`crate::client`] there.
//!
//! ```no_run
//! use std::time::Duration;
//! use tether::client::ClientBuilder;
//! use tether::{CloseCode, Message};
//!
//! # fn demo() -> Result<(), tether::Error> {
//! let (mut client, _response) = ClientBuilder::new()
//!     .connect_timeout(Duration::from_secs(5))
//!     .connect_blocking("ws://127.0.0.1:9000")?;
//! client.send(Message::text("hello"))?;
//! if let Some(reply) = client.recv_timeout(Duration::from_secs(1))? {
//!     println!("{reply:?}");
//! }
//! client.close(CloseCode::NORMAL, "bye")?;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::{CloseCode, Message, Reason};
use tokio::runtime::Runtime;

#[cfg(doc)]
use crate::client::ClientBuilder;
use crate::client::{self, ClientConfig, Response};
use crate::error::{Error, TimeoutPhase};
use crate::transport::{CloseInfo, Sender, WebSocket};

/// Connects to `url` with `config`; see [`ClientBuilder::connect_blocking`].
pub(crate) fn connect(
    url: &str,
    config: &ClientConfig,
) -> Result<(BlockingClient, Response), Error> {
    outside_runtime()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let runtime = Arc::new(Rt(Some(runtime)));
    let (client, response) = runtime.block_on(client::connect::connect_with(url, config))??;
    Ok((BlockingClient { client, runtime }, response))
}

/// An open connection for blocking code. `Send` and `Sync`: move it to the thread that
/// receives, and clone [`BlockingSender`]s for the threads that send.
#[derive(Debug)]
pub struct BlockingClient {
    // Declared first so it is dropped before (this handle on) the runtime.
    client: WebSocket,
    runtime: Arc<Rt>,
}

/// The sending half of a [`BlockingClient`]: cloneable, usable from many threads at once,
/// also while another thread waits in [`BlockingClient::recv`].
#[derive(Debug, Clone)]
pub struct BlockingSender {
    sender: Sender,
    runtime: Arc<Rt>,
}

impl BlockingClient {
    /// Sends a message; see [`Sender::send`].
    ///
    /// # Errors
    /// As [`Sender::send`]; [`ErrorKind::Io`](crate::ErrorKind::Io) inside an async
    /// runtime.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.runtime.block_on(self.client.send(message))?
    }

    /// Waits for the next message; `Ok(None)` once the connection has ended normally
    /// ([`close_info`](Self::close_info) then says how). See [`WebSocket::recv`].
    ///
    /// # Errors
    /// As [`WebSocket::recv`]; [`ErrorKind::Io`](crate::ErrorKind::Io) inside an async
    /// runtime.
    pub fn recv(&mut self) -> Result<Option<Message>, Error> {
        let Self { client, runtime } = self;
        runtime.block_on(client.recv())?
    }

    /// Waits at most `timeout` for the next message. Out of time, returns an
    /// [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) error with [`TimeoutPhase::Read`]:
    /// the connection stays open and nothing is lost.
    ///
    /// # Errors
    /// As [`recv`](Self::recv), and the timeout.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Message>, Error> {
        let Self { client, runtime } = self;
        // The timer is made inside the runtime: it needs the runtime's clock.
        let recv = async move { tokio::time::timeout(timeout, client.recv()).await };
        match runtime.block_on(recv)? {
            Ok(next) => next,
            Err(_elapsed) => Err(Error::timeout(TimeoutPhase::Read)),
        }
    }

    /// Closes with `code` and `reason` and waits for the server's answer, bounded by the
    /// close timeout. See [`WebSocket::close`].
    ///
    /// # Errors
    /// As [`WebSocket::close`]; [`ErrorKind::Io`](crate::ErrorKind::Io) inside an async
    /// runtime.
    pub fn close(&mut self, code: CloseCode, reason: impl Into<Reason>) -> Result<(), Error> {
        let Self { client, runtime } = self;
        runtime.block_on(client.close(code, reason))?
    }

    /// How the connection ended, once it has.
    pub fn close_info(&self) -> Option<CloseInfo> {
        self.client.close_info()
    }

    /// The subprotocol the server selected.
    pub fn protocol(&self) -> Option<&str> {
        self.client.protocol()
    }

    /// A sender for other threads.
    pub fn sender(&self) -> BlockingSender {
        BlockingSender {
            sender: self.client.sender(),
            runtime: Arc::clone(&self.runtime),
        }
    }
}

impl BlockingSender {
    /// Sends a message; see [`Sender::send`].
    ///
    /// # Errors
    /// As [`Sender::send`]; [`ErrorKind::Io`](crate::ErrorKind::Io) inside an async
    /// runtime.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), Error> {
        self.runtime.block_on(self.sender.send(message))?
    }

    /// Starts closing with `code` and `reason`; the receiving thread finishes the close
    /// handshake. See [`Sender::close`].
    ///
    /// # Errors
    /// As [`Sender::close`]; [`ErrorKind::Io`](crate::ErrorKind::Io) inside an async
    /// runtime.
    pub fn close(&self, code: CloseCode, reason: impl Into<Reason>) -> Result<(), Error> {
        self.runtime.block_on(self.sender.close(code, reason))?
    }

    /// Whether nothing more can be sent.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

/// The connection's current-thread runtime. Several threads may `block_on` it at once: one
/// drives the I/O and timers, the others poll their own futures as they are woken.
struct Rt(Option<Runtime>);

impl Rt {
    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, Error> {
        outside_runtime()?;
        match &self.0 {
            Some(runtime) => Ok(runtime.block_on(future)),
            // Only taken in `drop`.
            None => Err(Error::io(io::Error::other("the runtime has shut down"))),
        }
    }
}

impl Drop for Rt {
    fn drop(&mut self) {
        // Without waiting for blocking work (a name lookup) to end: a plain drop would wait,
        // and panic if the last handle went away inside an async runtime.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl fmt::Debug for Rt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Runtime")
    }
}

/// Refuses to block a thread that runs an async runtime (tokio would panic).
fn outside_runtime() -> Result<(), Error> {
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::io(io::Error::other(
            "tether::blocking called inside an async runtime: blocking would stall it; use \
             the async tether::client there",
        )));
    }
    Ok(())
}
