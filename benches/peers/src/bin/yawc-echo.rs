//! `yawc-echo`: a WebSocket echo server on yawc with permessage-deflate (RFC 7692) enabled,
//! the deflate-capable peer. Written as the crate's `echo_server` example: hyper 1 serves the
//! HTTP/1.1 upgrade, `WebSocket::upgrade_with_options` answers it, and a spawned task echoes
//! with `next()`/`send()` on the unsplit socket.
//!
//! Compression is `Options::with_balanced_compression()`, the profile yawc's docs call "a
//! good default for most applications": deflate level 6 (flate2's default), context takeover
//! kept in both directions unless the client asks otherwise, no compression threshold (every
//! message is compressed), no deflate pool. Without yawc's `zlib` feature it negotiates no
//! window bits: it answers a `client_max_window_bits` offer without the parameter and
//! compresses with a 15-bit window. A client that offers nothing gets uncompressed frames.
//! flate2's backend is zlib-rs, not the miniz_oxide yawc gets on its own: this crate also
//! builds Tether, which turns flate2's `zlib-rs` feature on, and Cargo unifies features.
//!
//! Everything else is yawc's default, unlike that example (which lifts the limits for
//! Autobahn and turns UTF-8 checks on): frames and messages under 1 MiB (reassembled
//! fragments under 2 MiB), 8 KiB initial read and write buffers, no automatic
//! fragmentation, and no UTF-8 validation of text messages. Pings are answered and a close
//! frame is acknowledged by yawc.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use yawc::{OpCode, Options, UpgradeFut, WebSocket};

fn main() -> ExitCode {
    tether_bench_peers::serve("yawc-echo", |stream| {
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
                .with_upgrades();
            // A refused or dropped handshake is the client's business: nothing to report.
            let _ = connection.await;
        });
    })
}

/// Answers the upgrade request, agreeing to permessage-deflate when the client offers it,
/// and starts the echo once hyper hands the socket over.
async fn upgrade_request(mut request: Request<Incoming>) -> yawc::Result<Response<Empty<Bytes>>> {
    let options = Options::default().with_balanced_compression();
    let (response, upgraded) = WebSocket::upgrade_with_options(&mut request, options)?;
    tokio::spawn(echo(upgraded));
    Ok(response)
}

async fn echo(upgraded: UpgradeFut) {
    let Ok(mut socket) = upgraded.await else {
        return;
    };
    // Frames arrive whole and inflated; `send` deflates them again when it was negotiated.
    // Pings, pongs and the close frame (already answered by yawc) need nothing; after the
    // close, or on any error, the stream ends.
    while let Some(frame) = socket.next().await {
        if matches!(frame.opcode(), OpCode::Text | OpCode::Binary)
            && socket.send(frame).await.is_err()
        {
            return;
        }
    }
}
