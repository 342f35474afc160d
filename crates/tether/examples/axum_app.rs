//! The error contract inside an axum app: the same WebSocket routes, behaviour and status
//! codes as `error_contract.rs`, next to an ordinary JSON API on the same port.
//!
//! ```text
//! cargo run -p tether --features axum --example axum_app -- --listen 127.0.0.1:9001
//! ```
//!
//! Prints `listening on ws://ADDR` once bound and takes the same flags as `error_contract`.
//! `GET /api/hello` answers `{"hello":"world"}`; `/ws/echo`, `/ws/fail`, `/ws/panic`,
//! `/ws/close/{code}`, `/ws/custom`, `/ws/json` and `/ws/protected` behave as described
//! there; any other path is a JSON 404. Every route accepts HTTP/1.1 upgrades and HTTP/2
//! extended CONNECT. Requests are traced by `tower-http` (`RUST_LOG=tower_http=debug`).
//! Ctrl-C or SIGTERM closes every WebSocket with 1001, then axum stops.

mod contract;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, Request};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Json, Router};
use contract::Args;
use serde_json::json;
use tether::axum::WebSocketUpgrade;
use tether::server::{Reject, Server, Socket};
use tower_http::trace::TraceLayer;

/// `/ws/protected`: the guard runs on the upgrade request, before the 101.
async fn protected(ws: WebSocketUpgrade) -> Result<Response, Reject> {
    contract::check_token(ws.request())?;
    Ok(ws.on_upgrade(contract::echo))
}

/// `/ws/close/{code}`: axum extracts the code, the handler closes with it.
async fn close_with(ws: WebSocketUpgrade, Path(code): Path<String>) -> Response {
    ws.on_upgrade(move |_socket: Socket| async move { Err(contract::close_with(&code)) })
}

/// Hands the client's address to Tether handlers (they read a `SocketAddr` extension).
async fn peer_address(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    request.extensions_mut().insert(peer);
    next.run(request).await
}

/// The app: the API, the WebSocket routes, tracing, and the Tether server that holds the
/// settings and the open connections.
fn app(args: &Args) -> Result<(Router, Server<()>), tether::server::BuildError> {
    // No routes: axum routes, this server holds the settings and the open connections.
    let tether = args.settings(Server::builder()).build()?;
    let json_limit = args.json_limit();
    let router = Router::new()
        .route(
            "/api/hello",
            get(|| async { Json(json!({"hello": "world"})) }),
        )
        .route(
            "/ws/echo",
            any(|ws: WebSocketUpgrade| async { ws.on_upgrade(contract::echo) }),
        )
        .route(
            "/ws/fail",
            any(|ws: WebSocketUpgrade| async { ws.on_upgrade(contract::fail) }),
        )
        .route(
            "/ws/panic",
            any(|ws: WebSocketUpgrade| async { ws.on_upgrade(contract::panic_route) }),
        )
        .route("/ws/close/{code}", any(close_with))
        .route(
            "/ws/custom",
            any(|ws: WebSocketUpgrade| async { ws.on_upgrade(contract::custom) }),
        )
        .route(
            "/ws/json",
            any(move |ws: WebSocketUpgrade| async move {
                ws.rate_limit(json_limit).on_upgrade(contract::json_api)
            }),
        )
        .route("/ws/protected", any(protected))
        .fallback(|| async {
            Reject::error(404, "No WebSocket endpoint at this path").into_response()
        })
        .layer(TraceLayer::new_for_http())
        .layer(middleware::from_fn(peer_address))
        .layer(Extension(tether.clone()));
    Ok((router, tether))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = <Args as clap::Parser>::parse();
    contract::init_logging();
    let (router, tether) = app(&args)?;
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        contract::shutdown_signal().await;
        // Close the WebSockets with 1001 first: upgraded connections are no longer axum's
        // to wait for, and HTTP/2 ones would hold its shutdown open.
        tether.shutdown().await;
    })
    .await?;
    Ok(())
}

#[cfg(test)]
#[allow(dead_code)] // The client of tests/axum.rs, which uses the rest.
#[path = "../tests/support/h2.rs"]
mod h2;

/// `cargo test -p tether --features axum --example axum_app`: the app itself, over HTTP/1.1
/// and HTTP/2 on the same route (the Python contract tests cannot speak HTTP/2).
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use std::net::SocketAddr;

    use super::{Args, app, h2};
    use h2::echoes;

    #[tokio::test]
    async fn h2_extended_connect_and_http1_echo_on_the_same_route() {
        let args = <Args as clap::Parser>::parse_from(["axum_app"]);
        let (router, tether) = app(&args).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });

        let (mut over_h1, _) = tether::client::connect(&format!("ws://{addr}/ws/echo"))
            .await
            .unwrap();
        echoes(&mut over_h1, "over http/1.1").await;
        let headers = [("sec-websocket-version", "13")];
        let mut over_h2 = h2::opened(h2::connect_h2(addr, "/ws/echo", &headers).await);
        echoes(&mut over_h2, "over h2").await;
        assert_eq!(tether.stats().open_connections, 2);

        let mut closing = h2::opened(h2::connect_h2(addr, "/ws/close/4001", &headers).await);
        while let Ok(Some(_)) = closing.recv().await {}
        let info = closing.close_info().unwrap();
        assert_eq!(info.reason.display_code(), 4001);
    }
}
