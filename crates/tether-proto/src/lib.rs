//! # tether-proto
//!
//! The sans-IO core of Tether: RFC 6455 WebSocket framing, masking, streaming UTF-8 checks,
//! close codes, the opening handshake and size limits. It performs no I/O, reads no clock and
//! spawns nothing: it takes bytes and returns events and bytes to write, so the same core
//! drives the async server, the client and the fuzzers.

pub mod handshake;
