//! The one live connection: [`WebSocket`], a thin async loop driving the sans-IO core over
//! any byte stream, and its cloneable [`Sender`].
//!
//! - `config`: every setting of a connection ([`Config`], [`CaughtCloseCodes`]).
//! - `websocket`: [`WebSocket`], the face users hold: `recv`, `send`, `close`, with the
//!   heartbeat, the idle and read timeouts and the caught close codes applied in `recv`.
//! - `reader`: the poll-based receive loop (pings, the close handshake, failing on a
//!   protocol error) that `WebSocket::recv` drives.
//! - `sender`: the outbox shared by every [`Sender`] of a connection.
//! - `liveness`: the heartbeat timer (ping interval, pong deadline, idle and read timeouts).
//! - `precompressed`: payloads a broadcast compressed once for every member.
//! - `stream`: the byte stream both sides use at once (TCP without a lock, others with one).
//!
//! How a connection ended is decided by the core's close record
//! ([`WriteHalf::close_info`](tether_proto::WriteHalf::close_info)); the transport only tells
//! it when the stream is finished.
//!
//! Plain TCP is kept as it is; any other stream is boxed (`Box<dyn Io>`): rustls, hyper's
//! upgraded connection and an in-memory duplex all give the same type, and a virtual call per
//! read or write syscall costs nothing measurable next to the syscall.

mod config;
mod liveness;
pub(crate) mod precompressed;
mod reader;
mod sender;
mod stream;
mod websocket;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tether_proto::{Role, WriteHalf};

pub use config::{CaughtCloseCodes, Config};
pub(crate) use reader::Reader;
pub use sender::Sender;
pub(crate) use stream::{BoxIo, Stream, downcast};
pub use tether_proto::{CloseInfo, CloseReason};
pub use websocket::{ConnectionState, WebSocket};

/// Gives every connection of the process its own id (for logs and hub membership).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A fresh connection id.
pub(crate) fn next_connection_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

/// The outbox and the sending half of the protocol, under one lock. `buf` holds encoded
/// frames not yet written, and `rare` may hold a large payload that goes out right after
/// `buf` without being copied into it (a vectored write). A write that is cancelled leaves
/// exactly the unwritten rest in them, so the stream stays intact.
///
/// The receiving half of the protocol is the [`Reader`]'s alone: receiving takes no lock.
pub(crate) struct Writer {
    /// Encodes frames and keeps the close record (the reader reports the peer's close and a
    /// violation to it).
    pub(crate) proto: WriteHalf,
    pub(crate) buf: sender::OutBuf,
    /// The tail payload, the drain notifier and the close deadline, made when first needed.
    pub(crate) rare: sender::Rare,
}

/// State shared by the receiving loop and every sender of one connection.
pub(crate) struct Shared {
    pub(crate) id: u64,
    pub(crate) role: Role,
    /// Set once a close frame was sent, so the receiver looks for a close deadline (under
    /// the lock) only when there can be one.
    pub(crate) closing: AtomicBool,
    /// Set once the transport is finished: nothing more may be written.
    terminated: AtomicBool,
    /// Whether a writer is flushing the outbox; others queue behind it. Read and written only
    /// with the outbox locked (kept out of `Writer` to pack with the other flags).
    flushing: AtomicBool,
    pub(crate) config: Arc<Config>,
    /// The byte stream, read by the receiving loop and written by the flushing sender.
    pub(crate) stream: Stream,
    /// The outbox; locked only for a moment, never across an await.
    writer: Mutex<Writer>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// The state of a connection whose sending half is `proto`.
    pub(crate) fn new(id: u64, config: Arc<Config>, stream: Stream, proto: WriteHalf) -> Self {
        Self {
            id,
            role: proto.role(),
            closing: AtomicBool::new(false),
            terminated: AtomicBool::new(false),
            flushing: AtomicBool::new(false),
            config,
            stream,
            writer: Mutex::new(Writer {
                proto,
                buf: sender::OutBuf::default(),
                rare: sender::Rare::default(),
            }),
        }
    }

    /// Whether the transport is finished: nothing more may be written.
    pub(crate) fn is_terminated(&self) -> bool {
        self.terminated.load(Ordering::Acquire)
    }

    /// Marks the transport finished.
    pub(crate) fn terminate(&self) {
        self.terminated.store(true, Ordering::Release);
    }

    /// The outbox and the sending half of the protocol.
    pub(crate) fn writer(&self) -> MutexGuard<'_, Writer> {
        // A panic while holding this lock cannot leave the state half-updated in a way that
        // matters more than losing the connection; keep going with the inner value.
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod footprint {
    //! Every open connection's task holds a `WebSocket` and, most of its life, the future of
    //! a `recv` or a `send`: their sizes are idle memory. tokio rounds a task up to 128-byte
    //! steps, so a few bytes more can cost a whole step for every connection.

    use std::mem::size_of_val;

    use tether_proto::Role;

    use super::{Config, WebSocket};
    use crate::Message;

    /// The state the receiver and the senders share is one allocation per connection: 128
    /// bytes with its reference counts (a size class of jemalloc and of glibc's bins, no
    /// slack). The receiver's own state is another, of 96.
    #[test]
    fn the_per_connection_allocations_fit_their_size_classes() {
        let counts = 2 * std::mem::size_of::<usize>();
        let shared = std::mem::size_of::<super::Shared>();
        assert!(shared + counts <= 128, "Shared: {shared} bytes");
        let read = super::reader::READ_STATE_SIZE;
        assert!(read <= 96, "the reader's state: {read} bytes");
    }

    #[tokio::test]
    async fn the_futures_of_recv_and_send_stay_small() {
        let (stream, _peer) = tokio::io::duplex(64);
        let mut ws =
            WebSocket::from_upgraded(stream, Role::Server, Config::default(), Default::default());
        assert!(
            size_of_val(&ws) <= 112,
            "WebSocket: {} bytes",
            size_of_val(&ws)
        );
        let send = ws.send(Message::text("x"));
        assert!(
            size_of_val(&send) <= 72,
            "send: {} bytes",
            size_of_val(&send)
        );
        drop(send);
        let recv = ws.recv();
        assert!(
            size_of_val(&recv) <= 56,
            "recv: {} bytes",
            size_of_val(&recv)
        );
    }
}
