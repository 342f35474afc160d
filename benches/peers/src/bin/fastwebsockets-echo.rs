//! `fastwebsockets-echo`: a WebSocket echo server on fastwebsockets, written as the crate's
//! own `echo_server` example: hyper 1 serves the HTTP/1.1 upgrade (`upgrade` feature), a
//! `FragmentCollector` hands over whole messages, and the connection task runs under
//! `tokio::task::unconstrained` as that example does.
//!
//! Settings are the defaults: auto-pong on, auto-close on (a close frame is answered, then
//! the read returns it), 64 MiB max message, vectored writes above 1 KiB.

use std::process::ExitCode;

use fastwebsockets::upgrade::{self, UpgradeFut};
use fastwebsockets::{FragmentCollector, OpCode, WebSocketError};
use http_body_util::Empty;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() -> ExitCode {
    tether_bench_peers::serve("fastwebsockets-echo", |stream| {
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(upgrade_request))
                .with_upgrades();
            // A refused or dropped handshake is the client's business: nothing to report.
            let _ = connection.await;
        });
    })
}

/// Answers the upgrade request and starts the echo once hyper hands the socket over.
async fn upgrade_request(
    mut request: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, upgraded) = upgrade::upgrade(&mut request)?;
    tokio::spawn(tokio::task::unconstrained(echo(upgraded)));
    Ok(response)
}

async fn echo(upgraded: UpgradeFut) {
    let Ok(socket) = upgraded.await else {
        return;
    };
    let mut socket = FragmentCollector::new(socket);
    while let Ok(frame) = socket.read_frame().await {
        let echoed = match frame.opcode {
            OpCode::Close => return,
            OpCode::Text | OpCode::Binary => socket.write_frame(frame).await,
            // Pings were answered by auto-pong; pongs need nothing.
            _ => Ok(()),
        };
        if echoed.is_err() {
            return;
        }
    }
}
