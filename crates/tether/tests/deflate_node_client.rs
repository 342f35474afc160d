//! Node's `ws` as a client of a Tether server with permessage-deflate (the other role is in
//! `deflate_interop.rs`): `ws` offers `perMessageDeflate`, the server accepts with no
//! context takeover either way, and 50 different 2 KiB JSON-like messages echo exactly.
//! Node and `ws` come from `TETHER_NODE` and `TETHER_NODE_PATH` (see `client_interop.rs`).

#![allow(clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tether::DeflateConfig;
use tether::server::{Server, Socket};
use tokio::net::TcpListener;

/// The Node client: prints the server's extension answer, echoes 50 messages, prints what
/// `ws` negotiated and how the close went.
const CLIENT: &str = r#"
const WebSocket = require('ws');
const ws = new WebSocket(process.argv[1], { perMessageDeflate: true });
const sent = [];
ws.on('upgrade', (res) => { console.log('answer ' + res.headers['sec-websocket-extensions']); });
ws.on('open', () => {
  for (let i = 0; i < 50; i++) {
    const line = JSON.stringify({ type: 'message', room: 'lobby', from: 'node', n: i,
      text: ('chat line ' + i + ' ').repeat(120) });
    sent.push(line);
    ws.send(line);
  }
});
let got = 0;
ws.on('message', (data, isBinary) => {
  if (isBinary || data.toString() !== sent[got]) { console.log('mismatch ' + got); process.exit(1); }
  got += 1;
  if (got === sent.length) {
    console.log('extensions ' + ws.extensions);
    ws.close(1000, 'done');
  }
});
ws.on('close', (code) => { console.log('closed ' + code + ' after ' + got); process.exit(0); });
ws.on('error', (e) => { console.log('error ' + e.message); process.exit(1); });
setTimeout(() => { console.log('timeout after ' + got); process.exit(1); }, 20000);
"#;

fn env_or(name: &str, fallback: PathBuf) -> PathBuf {
    match std::env::var_os(name) {
        Some(value) if !value.is_empty() => PathBuf::from(value),
        _ => fallback,
    }
}

#[tokio::test]
async fn node_ws_exchanges_compressed_messages_with_a_tether_server() {
    let compressed = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&compressed);
    let server = Server::builder()
        .deflate(DeflateConfig::server())
        .route("/echo", move |mut socket: Socket| {
            let seen = Arc::clone(&seen);
            async move {
                seen.store(socket.deflate().is_some(), Ordering::SeqCst);
                while let Some(message) = socket.recv().await? {
                    socket.send(message).await?;
                }
                Ok::<_, tether::Error>(())
            }
        })
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/echo", listener.local_addr().unwrap());
    tokio::spawn(server.serve_on(listener, std::future::pending()));

    let cache = PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/tether");
    let node = env_or("TETHER_NODE", PathBuf::from("node"));
    let modules = env_or("TETHER_NODE_PATH", cache.join("node/node_modules"));
    let run = tokio::process::Command::new(&node)
        .args(["-e", CLIENT, &url])
        .env("NODE_PATH", &modules)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("node finishes")
        .unwrap_or_else(|error| {
            panic!(
                "cannot run {}: {error}; install Node and ws as client_interop.rs says",
                node.display()
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node: {stdout}\n{stderr}");
    assert!(
        stdout.contains(
            "answer permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("extensions permessage-deflate"), "{stdout}");
    assert!(stdout.contains("closed 1000 after 50"), "{stdout}");
    assert!(compressed.load(Ordering::SeqCst), "the server saw deflate");
}
