//! `tungstenite-echo`: a WebSocket echo server on tokio-tungstenite with its default
//! `WebSocketConfig` (64 MiB max message, 16 MiB max frame, 128 KiB read and write buffers).
//!
//! Pings are answered by tungstenite itself (the pong goes out with the next read or write),
//! and a close frame is answered with a close frame before the stream ends. The loop is the
//! one of the crate's `autobahn-server` example: no `split()`, so no lock between the halves.

use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;

fn main() -> ExitCode {
    tether_bench_peers::serve("tungstenite-echo", |stream| {
        tokio::spawn(echo(stream));
    })
}

async fn echo(stream: TcpStream) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if (message.is_text() || message.is_binary()) && socket.send(message).await.is_err() {
            return;
        }
    }
}
