//! # tether
//!
//! The async WebSocket library of Tether on tokio: a server framework with the error contract
//! built in, a client, and the transport loop they share over the sans-IO [`tether_proto`]
//! core.
//!
//! ## Overview
//!
//! - [`server::Server`] is the framework: routes with path parameters, app state, extractors,
//!   guards, the mapping from handler errors to close codes and error messages, heartbeats,
//!   limits and graceful shutdown.
//! - [`WebSocket`] is the one live connection, on either end and over any stream: `recv`,
//!   `send`, `close(code, reason)`, and a cloneable [`Sender`] for other tasks. The
//!   heartbeat, the idle and read timeouts, the size limits and the close handshake run
//!   inside `recv`; [`Config`] holds their settings.
//! - [`client::connect`] and [`client::ClientBuilder`] open a client connection (`ws://`,
//!   `wss://` with rustls, through HTTP or SOCKS5 proxies); [`client::Runner`] keeps one
//!   alive across failures, and [`client::Positions`] resumes room subscriptions on each
//!   new connection from the last position seen; `blocking` (feature `blocking`) is the
//!   same for threads.
//! - [`server::accept`] opens a bare connection on the server side.
//! - [`hub::Hub`] is rooms and broadcast: membership guards that leave on drop, a bounded
//!   queue per member, a slow-consumer policy, reports, and a [`hub::Backplane`] between
//!   nodes.
//! - [`codes`] is the error-code registry and the retry advice shared by servers and
//!   clients; [`error_message::ErrorMessage`] is the structured error message format.
//! - [`Error`] is one opaque error with a [`kind`](Error::kind) for every failure;
//!   `{error}` prints one line, `{error:#}` the chain.
//! - The protocol types that public signatures use are here too: [`Role`], [`Limits`],
//!   [`ProtocolError`], [`HandshakeError`] and the upgrade [`Request`]; no other crate is
//!   needed to name them.
//! - `testing::FaultProxy` (feature `testing`) is a TCP proxy that injects latency,
//!   throttling, resets, black holes and refused connections between a client and a server,
//!   to test how both survive bad networks.
//!
//! ## One way to do each thing
//!
//! | To | Call |
//! | --- | --- |
//! | serve | `Server::builder().route(pattern, handler).build()?.serve(addr)` (or `serve_on`, `serve_stream`) |
//! | connect | [`client::connect`]`(url)`, or [`client::ClientBuilder`] for options |
//! | receive | `while let Some(message) = ws.recv().await? { .. }`: `Ok(None)` is a normal end |
//! | send | `ws.send(message)`, or `ws.sender()` for other tasks |
//! | close | `ws.close(code, reason)`: idempotent; how it ended is `ws.close_info()` |
//! | resume rooms after a reconnect | [`client::Positions`]: `resume(&sender, ..)` on each `Event::Open`, `observe` each message |
//!
//! ## Features
//!
//! | Feature | Adds |
//! | --- | --- |
//! | `json` (default) | `Socket::send_json`; the runner reads `retry_after_ms` from error messages |
//! | `tls` (default) | `wss://` with rustls and the web PKI roots |
//! | `native-roots` | the operating system's certificate store for `wss://` |
//! | `blocking` | `tether::blocking`: the client for threads |
//! | `redis` | `hub::RedisBackplane`: broadcasts between nodes through Redis |
//! | `hyper` | `Server` as a tower and hyper `Service` (HTTP/1.1 upgrades, HTTP/2 extended CONNECT) |
//! | `axum` | `tether::axum`: the `WebSocketUpgrade` extractor |
//! | `testing` | `tether::testing`: `FaultProxy`, network faults on demand, and its HTTP control API |
//!
#![doc = include_str!("../docs/error-handling.md")]
//!
#![doc = include_str!("../docs/client-guide.md")]

#[cfg(feature = "axum")]
pub mod axum;
#[cfg(feature = "blocking")]
pub mod blocking;
pub mod client;
pub mod codes;
mod error;
pub mod error_message;
pub mod hub;
mod mask_keys;
pub mod server;
#[cfg(feature = "testing")]
pub mod testing;
mod transport;

pub use error::{BadStatus, Error, ErrorKind, TimeoutPhase};
pub use tether_proto::deflate::{DeflateConfig, DeflateParams};
pub use tether_proto::handshake::{HandshakeError, Request};
pub use tether_proto::{
    CloseCode, CloseFrame, Limits, Message, ProtocolError, Reason, Role, Side, Utf8Bytes,
};
pub use transport::{
    CaughtCloseCodes, CloseInfo, CloseReason, Config, ConnectionState, Sender, WebSocket,
};

/// The README's examples, compiled as doctests so they stay true.
#[doc = include_str!("../../../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
