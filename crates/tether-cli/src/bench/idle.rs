//! Idle mode: many connections that do nothing, to measure the server's memory per connection
//! after the handshake and after one echo.

#![allow(clippy::indexing_slicing)] // Indexes JSON values this module built itself, never peer input.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use tether::client::{ClientBuilder, WsUrl};
use tether::{CloseCode, DeflateConfig, Message};
use tokio::net::TcpSocket;
use tokio::sync::watch;

use super::procfs::status_kib;
use super::report::{ErrorTally, thousands};
use super::{BenchArgs, error_kind_name};

const CONNECT_CONCURRENCY: usize = 256;

/// What the connections are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Hold,
    EchoOnce,
    Close,
}

pub(crate) async fn run(args: &BenchArgs) -> Result<serde_json::Value, String> {
    let pid = args
        .server_pid
        .ok_or("idle mode measures the server: pass --server-pid")?;
    let url = WsUrl::parse(&args.url).map_err(|error| error.to_string())?;
    let host: IpAddr = url.host.parse().map_err(|_| {
        format!(
            "idle mode needs an IP address in the URL, found {:?}",
            url.host
        )
    })?;
    let target = SocketAddr::new(host, url.port);
    let sources = args.source_addrs.clone().unwrap_or_default();
    let client = ClientBuilder::new().deflate(args.deflate.then(DeflateConfig::client));
    let errors = Arc::new(ErrorTally::default());
    let rss = |label: &str| {
        status_kib(pid, "VmRSS").ok_or(format!("cannot read the RSS of {pid} ({label})"))
    };

    let rss_before = rss("before")?;
    let (stage_tx, stage_rx) = watch::channel(Stage::Hold);
    let echoed = Arc::new(AtomicUsize::new(0));
    let deflate = args.deflate;
    let mut tasks = Vec::with_capacity(args.connections);
    let mut connected = 0usize;
    for chunk_start in (0..args.connections).step_by(CONNECT_CONCURRENCY) {
        let chunk = CONNECT_CONCURRENCY.min(args.connections - chunk_start);
        let mut pending = Vec::with_capacity(chunk);
        for i in chunk_start..chunk_start + chunk {
            let source = sources.get(i % sources.len().max(1)).copied();
            let url = args.url.clone();
            let client = client.clone();
            pending.push(tokio::spawn(async move {
                let socket = TcpSocket::new_v4()?;
                if let Some(source) = source {
                    socket.bind(SocketAddr::new(source, 0))?;
                }
                let stream = socket.connect(target).await?;
                stream.set_nodelay(true)?;
                client.connect_on(stream, &url).await
            }));
        }
        for task in pending {
            let socket = match task.await {
                Ok(Ok((socket, _))) => socket,
                Ok(Err(error)) => {
                    errors.add(format!("connect: {}", error_kind_name(&error)));
                    continue;
                }
                Err(_) => {
                    errors.add("connect: task failed");
                    continue;
                }
            };
            connected += 1;
            let mut stage = stage_rx.clone();
            let echoed = Arc::clone(&echoed);
            let errors = Arc::clone(&errors);
            tasks.push(tokio::spawn(async move {
                let mut socket = socket;
                loop {
                    if stage.changed().await.is_err() {
                        return;
                    }
                    let now = *stage.borrow_and_update();
                    match now {
                        Stage::Hold => {}
                        Stage::EchoOnce => {
                            // With --deflate, a message the server compresses (1 KiB of
                            // JSON-like text), so its compression state is counted too.
                            let message = if deflate {
                                super::load::payload(1024, false, true)
                            } else {
                                Message::text("idle-echo")
                            };
                            let echo = async {
                                socket.send(message.clone()).await?;
                                socket
                                    .recv()
                                    .await
                                    .map(|echo| echo.is_some_and(|echo| echo == message))
                            };
                            match echo.await {
                                Ok(true) => {}
                                Ok(false) => errors.add("echo: missing or different"),
                                Err(error) => {
                                    errors.add(format!("echo: {}", error_kind_name(&error)))
                                }
                            }
                            echoed.fetch_add(1, Ordering::Relaxed);
                        }
                        Stage::Close => {
                            let close = socket.close(CloseCode::NORMAL, "");
                            let _ = tokio::time::timeout(Duration::from_secs(10), close).await;
                            return;
                        }
                    }
                }
            }));
        }
    }
    if connected == 0 {
        return Err(format!(
            "no connection could be opened: {:?}",
            errors.snapshot()
        ));
    }

    let settle = Duration::from_secs(1);
    tokio::time::sleep(settle).await;
    let rss_after_handshake = rss("after the handshakes")?;
    let mut rss_after_echo = None;
    if args.echo_once {
        let _ = stage_tx.send(Stage::EchoOnce);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while echoed.load(Ordering::Relaxed) < connected && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(settle).await;
        rss_after_echo = Some(rss("after the echoes")?);
    }
    tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
    let _ = stage_tx.send(Stage::Close);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
    }

    let per_connection =
        |kib: u64| (kib.saturating_sub(rss_before) * 1024) as f64 / connected as f64;
    let mut server = json!({
        "pid": pid,
        "rss_before_kib": rss_before,
        "rss_after_handshake_kib": rss_after_handshake,
        "bytes_per_connection_after_handshake": per_connection(rss_after_handshake),
    });
    if let Some(kib) = rss_after_echo {
        server["rss_after_echo_kib"] = json!(kib);
        server["bytes_per_connection_after_echo"] = json!(per_connection(kib));
    }
    let report = json!({
        "mode": "idle",
        "url": args.url,
        "connections": connected,
        "server": server,
        "errors": errors.snapshot(),
    });
    println!(
        "tether bench {} idle: {} connections",
        args.url,
        thousands(connected as f64)
    );
    println!(
        "  server rss      before {} KiB, after the handshakes {} KiB ({:.0} B per connection)",
        thousands(rss_before as f64),
        thousands(rss_after_handshake as f64),
        per_connection(rss_after_handshake)
    );
    if let Some(kib) = rss_after_echo {
        println!(
            "                  after one echo each {} KiB ({:.0} B per connection)",
            thousands(kib as f64),
            per_connection(kib)
        );
    }
    super::load::print_errors(&report["errors"]);
    Ok(report)
}
