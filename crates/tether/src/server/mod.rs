//! The server side: accepting the opening handshake on a stream and turning it into a
//! [`WebSocket`](crate::WebSocket).
//!
//! [`accept`] reads the upgrade request (bounded in size and time), lets a decision function
//! look at it, and answers 101 or an HTTP rejection. A malformed request gets the precise
//! status its [`HandshakeError`](tether_proto::handshake::HandshakeError) maps to (400, 405,
//! 426, 431, 505), never a panic. The full server framework (routes, guards, error mapping)
//! builds on this.

mod accept;
mod close_error;
mod router;

pub use accept::{Accept, Reject, ServerConfig, accept, accept_tcp, accept_with};
pub use close_error::CloseError;
pub use router::{PathParams, Pattern, PatternError, Routes, parse_query};
