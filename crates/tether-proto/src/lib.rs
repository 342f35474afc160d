//! # tether-proto
//!
//! The sans-IO core of Tether: RFC 6455 WebSocket framing, masking, streaming UTF-8 checks,
//! close codes, the opening handshake and size limits.
//!
//! ## Overview
//!
//! Nothing here performs I/O, reads a clock, draws random numbers or spawns: the core takes
//! bytes and returns events and bytes to write, so the same code drives the async server, the
//! client and the fuzzers.
//!
//! - [`Connection`] is the state machine of an open connection: [`Connection::read`] turns
//!   received bytes into [`Event`]s, the `encode_*` methods append frames to an output buffer.
//!   [`Connection::split`] gives its [`ReadHalf`] and [`WriteHalf`] to a transport that reads
//!   on one task and sends on others, with no lock between them.
//! - [`handshake`] builds and validates the opening handshake in both roles.
//! - [`CloseCode`], [`Reason`] and [`CloseFrame`] can only hold what may be sent;
//!   [`CloseInfo`] says how a connection ended ([`Connection::close_info`]).
//!
//! ## Errors
//!
//! Every violation by the peer is a [`ProtocolError`] that knows its close code: invalid UTF-8
//! is 1007, a frame or message over the limit is 1009, everything else is 1002. A handshake
//! that cannot be accepted is a [`handshake::HandshakeError`] that knows its HTTP status.
//!
//! ## Unsafe code
//!
//! The workspace denies `unsafe_code`; two audited places in this crate are the exceptions,
//! each with its safety argument written down: [`Utf8Bytes::as_str`] (no second UTF-8 check
//! of bytes that were checked on the way in) and the SIMD masking kernels behind
//! [`frame::apply_mask`] (SSE2 and AVX2 on x86_64, AVX2 only where the CPU has it, NEON on
//! aarch64), which are tested and fuzzed against a byte-at-a-time loop.
//!
//! ## Examples
//!
//! ```
//! use bytes::BytesMut;
//! use tether_proto::{Connection, Event, Limits, Message, Role};
//!
//! let mut server = Connection::new(Role::Server, Limits::default());
//! let mut client = Connection::new(Role::Client, Limits::default());
//!
//! // The client masks what it sends; the key must be unpredictable in real use.
//! let mut wire = BytesMut::new();
//! client.encode_message(&Message::text("hello"), Some([1, 2, 3, 4]), &mut wire)?;
//!
//! match server.read(&mut wire)? {
//!     Some(Event::Message(message)) => assert_eq!(message.as_text(), Some("hello")),
//!     other => panic!("unexpected {other:?}"),
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod close;
mod connection;
pub mod deflate;
mod ending;
mod error;
pub mod frame;
pub mod handshake;
mod message;
pub mod utf8;

pub use close::{CloseCode, CloseFrame, InvalidCloseCode, Reason};
pub use connection::{
    CloseState, Connection, Event, Limits, ReadHalf, Role, SendError, WriteHalf, encode_frame,
};
pub use ending::{CloseInfo, CloseReason, Side};
pub use error::ProtocolError;
pub use message::{Message, Utf8Bytes};
