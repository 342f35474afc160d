//! permessage-deflate (RFC 7692): negotiation in both roles (`negotiate.rs`) and the codec
//! that compresses and inflates messages (`codec.rs`), sans-IO like the rest of the core.
//!
//! [`DeflateConfig`] is what one endpoint is willing to do; the handshake turns it and the
//! peer's offer or answer into the [`DeflateParams`] of one connection, which
//! [`Connection::with_deflate`](crate::Connection::with_deflate) takes.
//!
//! Window bits 8 never reach zlib (which silently turns 8 into 9 when compressing): an offer
//! that would make this endpoint compress with an 8-bit window is declined (server) or fails
//! the handshake (client); a peer that compresses with 8 bits is inflated with a 9-bit
//! window, which reads it exactly.

mod codec;
mod negotiate;

pub use codec::{Deflater, InflateError, Inflater, compress_stateless};
pub use negotiate::{NegotiatedResponse, client_offer, server_answer, validate_answer};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION_NAME: &str = "permessage-deflate";

/// The smallest LZ77 window zlib can compress with, as a power of two.
pub const MIN_WINDOW_BITS: u8 = 9;

/// The largest LZ77 window, as a power of two (32 KiB).
pub const MAX_WINDOW_BITS: u8 = 15;

/// What this endpoint is willing to negotiate and how it compresses.
///
/// The defaults are chosen for many connections per process: the server asks for no context
/// takeover in both directions (allowed by RFC 7692 7.1.1), so a connection keeps no
/// compression state between messages and the compressor is shared by the connections of a
/// thread; the client offers to reset its own context after each message and lets the server
/// choose for its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Server: answer with `server_no_context_takeover` even when the client did not ask for
    /// it; client: offer `server_no_context_takeover`. Default: `true` on a server (see
    /// [`DeflateConfig::server`]), `false` on a client.
    pub server_no_context_takeover: bool,
    /// Server: answer with `client_no_context_takeover` even when the client did not offer
    /// it; client: offer `client_no_context_takeover`. Default: `true` in both roles.
    pub client_no_context_takeover: bool,
    /// The largest window this endpoint compresses with when it is the server, or asks the
    /// server to use when it is the client (9..=15; 15 means no request). Default 15.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with: a server answers
    /// `client_max_window_bits=N` with it when the client offered the parameter, a client
    /// offers it. 9..=15. Default 15.
    pub client_max_window_bits: u8,
    /// zlib compression level, 0..=9. Default 1: most of the gain on chat-like JSON, at a
    /// fraction of the CPU of level 6.
    pub level: u8,
    /// Messages shorter than this many bytes are sent uncompressed (the decision is taken
    /// before the compressor sees the message). Default 64.
    pub threshold: usize,
    /// Whether binary messages are compressed too (above the threshold). Default `true`;
    /// turn it off when binary payloads are already compressed (images, protobuf+zstd...).
    pub compress_binary: bool,
}

impl DeflateConfig {
    /// The defaults of a server: no context takeover in either direction.
    pub const fn server() -> Self {
        Self {
            server_no_context_takeover: true,
            client_no_context_takeover: true,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
            level: 1,
            threshold: 64,
            compress_binary: true,
        }
    }

    /// The defaults of a client: it resets its own context after each message and leaves
    /// the server's direction to the server.
    pub const fn client() -> Self {
        Self {
            server_no_context_takeover: false,
            ..Self::server()
        }
    }

    /// Whether `len` bytes of a text (`is_text`) or binary message are compressed.
    pub const fn compresses(&self, len: usize, is_text: bool) -> bool {
        len >= self.threshold && (is_text || self.compress_binary)
    }
}

/// The parameters one connection negotiated. Both ends agree on them, except that a server
/// configured with a window under 15 bits that the client did not ask about compresses with
/// it silently (RFC 7692 allows it); the client then reads 15, which inflates it exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server resets its compression context after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compression context after each message.
    pub client_no_context_takeover: bool,
    /// The server's LZ77 window, 9..=15 (a peer's 8 is read as 9).
    pub server_max_window_bits: u8,
    /// The client's LZ77 window, 9..=15 (a peer's 8 is read as 9).
    pub client_max_window_bits: u8,
}

impl DeflateParams {
    /// Parameters with both windows at 15 bits and context takeover in both directions: what
    /// a bare `permessage-deflate` answer means.
    pub const fn new() -> Self {
        Self {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: MAX_WINDOW_BITS,
            client_max_window_bits: MAX_WINDOW_BITS,
        }
    }

    /// The window and takeover of what `role` sends: `(window_bits, no_context_takeover)`.
    pub const fn outgoing(&self, role: crate::Role) -> (u8, bool) {
        match role {
            crate::Role::Server => (self.server_max_window_bits, self.server_no_context_takeover),
            crate::Role::Client => (self.client_max_window_bits, self.client_no_context_takeover),
        }
    }

    /// The window and takeover of what `role` receives.
    pub const fn incoming(&self, role: crate::Role) -> (u8, bool) {
        match role {
            crate::Role::Server => self.outgoing(crate::Role::Client),
            crate::Role::Client => self.outgoing(crate::Role::Server),
        }
    }
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self::new()
    }
}
