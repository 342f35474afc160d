//! Network faults on demand (feature `testing`): [`FaultProxy`], a TCP proxy that sits
//! between a WebSocket client and its server and does to the bytes what bad networks do,
//! like Toxiproxy's toxics.
//!
//! ## Overview
//!
//! - [`FaultProxy::bind`] listens on one address and forwards every connection to an upstream
//!   address. [`FaultProxy::set_faults`] changes what it does, for the open connections as
//!   well as the next ones; [`FaultProxy::stats`] says what it did.
//! - [`Faults`] is what it does: for each direction ([`DirectionFaults`]; `upstream` is client
//!   to server, `downstream` server to client, as in Toxiproxy) latency with jitter (in order:
//!   bytes are never reordered), a bandwidth limit, slicing into small TCP segments, a reset
//!   after so many bytes and a black hole (half-open: the data is discarded, both sockets stay
//!   open); for the whole connection a reset after a time, a slow close and `down` (new
//!   connections refused with `ECONNREFUSED`, open ones closed).
//! - A reset is an abortive close of both sockets (`SO_LINGER` 0): each side sees
//!   `ECONNRESET`, and a Tether peer an abnormal closure (1006).
//! - [`FaultProxy::serve_control`] serves the same settings over HTTP (below), and the
//!   `tether proxy` command runs a proxy from the command line.
//!
//! ## Example
//!
//! ```
//! use std::time::{Duration, Instant};
//! use tether::testing::{DirectionFaults, FaultProxy, Faults};
//! use tokio::io::{AsyncReadExt, AsyncWriteExt};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! // Any TCP server will do as the upstream: here, one that echoes.
//! let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let upstream = server.local_addr()?;
//! tokio::spawn(async move {
//!     let (mut stream, _) = server.accept().await?;
//!     let (mut read, mut write) = stream.split();
//!     tokio::io::copy(&mut read, &mut write).await
//! });
//!
//! let proxy = FaultProxy::bind("127.0.0.1:0".parse().unwrap(), upstream).await?;
//! let latency = DirectionFaults::none().with_latency(Duration::from_millis(50));
//! proxy.set_faults(Faults::none().with_downstream(latency)).await;
//!
//! let mut client = tokio::net::TcpStream::connect(proxy.local_addr()).await?;
//! let sent = Instant::now();
//! client.write_all(b"ping").await?;
//! let mut echoed = [0; 4];
//! client.read_exact(&mut echoed).await?;
//! assert!(sent.elapsed() >= Duration::from_millis(50));
//! assert_eq!(proxy.stats().downstream.bytes, 4);
//! # Ok(())
//! # }
//! ```
//!
//! ## The control API
//!
//! [`FaultProxy::serve_control`] (or `tether proxy --control ADDR`) serves HTTP/1.1 on its own
//! address, one request per connection, JSON in and out:
//!
//! | Request | Answer |
//! | --- | --- |
//! | `GET /faults` | 200, the [`Faults`] in force |
//! | `PUT /faults` | the body is a whole [`Faults`] (a missing field is its default, so `{}` is no fault); 200 with the faults now in force, once the proxy applies them |
//! | `POST /reset` | no fault any more; 200 with the faults now in force |
//! | `GET /stats` | 200, the [`Stats`] |
//!
//! A body that is not valid JSON, has an unknown field or a bad value (a bandwidth of 0, a
//! negative number) gets 400; an unknown path 404; another method 405 (with `Allow`). Every
//! error body is `{"error": "..."}`. The head may take 8 KiB and 32 headers (431 beyond),
//! the body 64 KiB (413 beyond, and it must come with a `Content-Length`: 411 without), the
//! whole request 10 s (408 beyond).
//!
//! The faults, every field shown (times in milliseconds, `bandwidth` in bytes per second,
//! `null` for no limit):
//!
//! ```json
//! {
//!   "upstream": {
//!     "latency_ms": 0, "jitter_ms": 0, "bandwidth": null, "slice_bytes": null,
//!     "slice_delay_ms": 0, "reset_after_bytes": null, "blackhole": false
//!   },
//!   "downstream": {
//!     "latency_ms": 100, "jitter_ms": 20, "bandwidth": 65536, "slice_bytes": null,
//!     "slice_delay_ms": 0, "reset_after_bytes": null, "blackhole": false
//!   },
//!   "reset_after_ms": null,
//!   "slow_close_ms": 0,
//!   "down": false
//! }
//! ```
//!
//! For instance, `curl -X PUT -d '{"downstream":{"blackhole":true}}'
//! http://127.0.0.1:8475/faults` stops everything from the server to the client, and
//! `curl -X POST http://127.0.0.1:8475/reset` ends it. The stats:
//!
//! ```json
//! {
//!   "connections_accepted": 3, "connections_active": 1, "resets": 1,
//!   "upstream": { "bytes": 1520, "segments": 6, "discarded_bytes": 0 },
//!   "downstream": { "bytes": 980, "segments": 5, "discarded_bytes": 42 }
//! }
//! ```

mod connection;
mod control;
mod faults;
mod proxy;

pub use faults::{DirectionFaults, DirectionStats, Faults, Stats};
pub use proxy::FaultProxy;
