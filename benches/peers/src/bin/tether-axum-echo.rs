//! `tether-axum-echo`: the same echo handler and settings as `tether-server-echo`, on an axum
//! route through `tether::axum::WebSocketUpgrade`, served by `axum::serve` (TCP_NODELAY on):
//! the overhead of mounting Tether in axum.

use std::process::ExitCode;

use axum::routing::any;
use axum::serve::ListenerExt;
use axum::{Extension, Router};
use tether::axum::WebSocketUpgrade;
use tether_bench_peers::tether_framework::{echo, settings};

fn main() -> ExitCode {
    tether_bench_peers::serve_listener("tether-axum-echo", |listener| async move {
        let tether = settings().build().map_err(|error| error.to_string())?;
        let app = Router::new()
            .route("/", any(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }))
            .layer(Extension(tether));
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        axum::serve(listener, app)
            .await
            .map_err(|error| error.to_string())
    })
}
