//! Plumbing shared by the peer echo servers: the `--listen` option, the single-threaded
//! tokio runtime and the accept loop (TCP_NODELAY on every accepted socket), so that each
//! `src/bin/*-echo.rs` holds only what is specific to its WebSocket crate.

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

/// Runs an echo server on a `current_thread` runtime: binds, prints `listening on ws://ADDR`,
/// then hands every accepted socket (with TCP_NODELAY set) to `on_accept`, which spawns the
/// connection's task the way its crate recommends.
pub fn serve(name: &str, mut on_accept: impl FnMut(TcpStream)) -> ExitCode {
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
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::FAILURE
        }
    }
}
