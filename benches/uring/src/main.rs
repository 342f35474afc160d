//! `tether-uring-echo`: a WebSocket echo server on io_uring, a prototype of a second
//! transport for Tether (Linux only, never the default). One thread runs one ring: multishot
//! accept, multishot receive into a provided buffer ring, tether-proto for the protocol, and
//! the sends of all connections submitted together once per wake-up.
//!
//! `tether-uring-echo [--listen ADDR]` prints `listening on ws://ADDR` once it accepts, as
//! the other echo servers of scripts/bench do.
//!
//! All `unsafe` code lives in [`ring`].

#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod ring;
mod server;
mod session;

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

const NAME: &str = "tether-uring-echo";
const DEFAULT_LISTEN: &str = "127.0.0.1:9001";

fn listen_arg() -> Result<SocketAddr, String> {
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
                    "{NAME}: a WebSocket echo server on io_uring (one thread, one ring)\n\n\
                     usage: {NAME} [--listen ADDR]   (default {DEFAULT_LISTEN}; port 0 picks one)"
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

fn main() -> ExitCode {
    let listen = match listen_arg() {
        Ok(listen) => listen,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            return ExitCode::from(2);
        }
    };
    let listener = match TcpListener::bind(listen) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("{NAME}: cannot listen on {listen}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut server = match server::Server::new(listener) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("{NAME}: cannot set up io_uring: {error}");
            return ExitCode::FAILURE;
        }
    };
    // Connections queue in the listener's backlog until the loop arms its accept.
    println!("listening on ws://{local}");
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{NAME}: {error}");
            ExitCode::FAILURE
        }
    }
}
