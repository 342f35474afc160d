//! `tokio-websockets-echo`: a WebSocket echo server on tokio-websockets (`server` feature,
//! `sha1_smol` for the handshake digest), written as the crate's `echo_server` example:
//! `ServerBuilder::accept`, then `next()`/`send()`, in a task under
//! `tokio::task::unconstrained`.
//!
//! Settings are the defaults, unlike the example (which lifts every limit for Autobahn):
//! 64 MiB max payload, outgoing messages split into 4 MiB frames, writes flushed past 8 KiB
//! or when `send` completes. Pings are answered and a close frame is answered by the crate.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_websockets::ServerBuilder;

fn main() -> ExitCode {
    tether_bench_peers::serve("tokio-websockets-echo", |stream| {
        tokio::spawn(tokio::task::unconstrained(echo(stream)));
    })
}

async fn echo(stream: TcpStream) {
    let Ok((_request, mut socket)) = ServerBuilder::new().accept(stream).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}
