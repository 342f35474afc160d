//! Plumbing shared by the peer echo servers: the `--listen` option, the single-threaded
//! tokio runtime and the accept loop (TCP_NODELAY on every accepted socket), so that each
//! `src/bin/*-echo.rs` holds only what is specific to its WebSocket crate; and the handler
//! and settings of the two echo servers on Tether's framework.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The address a server listens on when `--listen` is not given.
const DEFAULT_LISTEN: &str = "127.0.0.1:9001";

/// Reads `--listen ADDR` from the command line (`--help` prints the usage and exits).
///
/// `127.0.0.1:0` picks a free port; the server prints the one it got.
pub fn listen_arg(name: &str) -> Result<SocketAddr, String> {
    let mut listen = DEFAULT_LISTEN.to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                listen = args
                    .next()
                    .ok_or_else(|| "--listen expects an address like 127.0.0.1:9001".to_owned())?;
            }
            "-h" | "--help" => {
                println!(
                    "{name}: a WebSocket echo server (one thread)\n\n\
                     usage: {name} [--listen ADDR]   (default {DEFAULT_LISTEN}; port 0 picks one)"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    listen
        .parse()
        .map_err(|_| format!("expected an address like 127.0.0.1:9001, found {listen:?}"))
}

/// Runs `server` on a `current_thread` runtime with a listener bound to `--listen`, after
/// printing `listening on ws://ADDR`; for servers that run their own accept loop.
pub fn serve_listener<F, Fut>(name: &str, server: F) -> ExitCode
where
    F: FnOnce(TcpListener) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let listen = match listen_arg(name) {
        Ok(listen) => listen,
        Err(error) => {
            eprintln!("{name}: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{name}: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result: Result<(), String> = runtime.block_on(async {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|error| format!("cannot listen on {listen}: {error}"))?;
        let local = listener.local_addr().map_err(|error| error.to_string())?;
        println!("listening on ws://{local}");
        server(listener).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs an echo server on a `current_thread` runtime: binds, prints `listening on ws://ADDR`,
/// then hands every accepted socket (with TCP_NODELAY set) to `on_accept`, which spawns the
/// connection's task the way its crate recommends.
pub fn serve(name: &str, mut on_accept: impl FnMut(TcpStream)) -> ExitCode {
    serve_listener(name, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _peer)) => {
                    // Closed-loop echo is latency bound: never let Nagle hold a reply back.
                    if let Err(error) = stream.set_nodelay(true) {
                        eprintln!("{name}: cannot set TCP_NODELAY: {error}");
                    }
                    on_accept(stream);
                }
                Err(error) => {
                    // Out of file descriptors and the like: keep serving the others.
                    eprintln!("{name}: accept failed: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    })
}

/// What the two servers on Tether's framework share (`tether-server-echo` on Tether's own
/// listener, `tether-axum-echo` inside axum), so that they differ only in the HTTP stack.
pub mod tether_framework {
    use tether::server::{ServerBuilder, Socket};

    /// Echoes every message; feeds while more input is buffered, as `tether echo` does.
    pub async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
        while let Some(message) = socket.recv().await? {
            if socket.has_buffered_input() {
                socket.feed(message).await?;
            } else {
                socket.send(message).await?;
            }
        }
        Ok(())
    }

    /// The settings of a load test: no pings, no rate limit, 64 MiB messages.
    pub fn settings() -> ServerBuilder<()> {
        tether::server::Server::builder()
            .ping_interval(None)
            .rate_limit(None)
            .max_message_size(64 << 20)
    }
}
