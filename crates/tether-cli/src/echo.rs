//! `tether echo`: an echo server, used by the Autobahn conformance run and the benchmarks.

use std::net::SocketAddr;

use clap::Args;
use tether::server::{Accept, ServerConfig, accept};
use tether::{Config, DeflateConfig, ErrorKind};
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

/// Options of `tether echo`.
#[derive(Debug, Args)]
pub(crate) struct EchoArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001", value_parser = crate::parse_listen)]
    listen: SocketAddr,
    /// The largest message accepted, in bytes (the Autobahn suite sends up to 16 MiB).
    #[arg(long, default_value_t = 64 << 20)]
    max_message_size: usize,
    /// Worker threads; 1 runs everything on one thread, as the benchmarks compare.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Answers no permessage-deflate offer (by default an offer is accepted as made).
    #[arg(long)]
    no_deflate: bool,
    /// Answers permessage-deflate with no context takeover in either direction, as a
    /// library server does by default (no compression state kept between messages).
    #[arg(long, conflicts_with = "no_deflate")]
    no_context_takeover: bool,
}

/// The echo server's permessage-deflate: the client's offer honoured as made (context
/// takeover wherever the client allows it), so a test suite exercises every mode.
fn echo_deflate() -> DeflateConfig {
    let mut config = DeflateConfig::server();
    config.server_no_context_takeover = false;
    config.client_no_context_takeover = false;
    config
}

pub(crate) fn run(args: &EchoArgs) -> Result<(), String> {
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: &EchoArgs) -> Result<(), String> {
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    info!("echo server listening on ws://{local}");
    println!("listening on ws://{local}");
    // One config shared by every connection's task. No heartbeat: the suite judges every
    // frame the server sends, and the benchmarks compare with servers that have none.
    let config = std::sync::Arc::new(
        ServerConfig::default().with_transport(
            Config::default()
                .with_max_message_size(args.max_message_size)
                .with_ping_interval(None)
                .with_deflate(match (args.no_deflate, args.no_context_takeover) {
                    (true, _) => None,
                    (false, true) => Some(DeflateConfig::server()),
                    (false, false) => Some(echo_deflate()),
                }),
        ),
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: keep serving the others.
                warn!(%error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let config = std::sync::Arc::clone(&config);
        tokio::spawn(async move {
            let _ = stream.set_nodelay(true);
            // The request is not needed after the handshake: drop it at once.
            let (mut socket, _) = match accept(stream, &config, |_| Ok(Accept::default())).await {
                Ok(accepted) => accepted,
                Err(error) => {
                    debug!(%peer, error = %format_args!("{error:#}"), "handshake failed");
                    return;
                }
            };
            loop {
                let message = match socket.recv().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(error) => {
                        match error.kind() {
                            ErrorKind::ConnectionClosed => {
                                debug!(%peer, error = %format_args!("{error:#}"), "connection ended")
                            }
                            _ => {
                                warn!(%peer, error = %format_args!("{error:#}"), "connection failed")
                            }
                        }
                        return;
                    }
                };
                // While more messages are already buffered, queue the replies; the last one
                // of a burst writes them all at once.
                let sent = if socket.has_buffered_input() {
                    socket.feed(message).await
                } else {
                    socket.send(message).await
                };
                if let Err(error) = sent {
                    debug!(%peer, error = %format_args!("{error:#}"), "send failed");
                    return;
                }
            }
            if let Some(info) = socket.close_info() {
                debug!(%peer, code = info.reason.display_code(), "connection closed");
            }
        });
    }
}
