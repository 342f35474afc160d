//! The error contract, one route per behaviour.
//!
//! ```text
//! cargo run -p tether --example error_contract -- --listen 127.0.0.1:9001
//! ```
//!
//! Prints `listening on ws://ADDR` once bound (`--listen 127.0.0.1:0` picks a free port).
//! Flags: `--ping-interval SECS` and `--ping-timeout SECS` (20/20; 0 turns pings off),
//! `--idle-timeout SECS` (0: none), `--max-message-size BYTES` (1 MiB), `--rate PER_SEC`,
//! `--burst N` and `--abuse-limit N` (20/s, 40, 100 rejections within 10 s; they apply to
//! `/ws/json`), `--shutdown-timeout SECS` (10). Ctrl-C or SIGTERM closes every connection
//! with 1001.
//!
//! Routes:
//! - `/ws/echo`: echoes every message.
//! - `/ws/fail`: returns an unmapped error on the first message: the client sees 1011
//!   `internal error`, the log has the whole error chain.
//! - `/ws/panic`: panics on the first message: 1011 `internal error`, other connections
//!   unaffected.
//! - `/ws/close/{code}`: closes at once with that code and the reason `closing with {code}`;
//!   a code that may not be sent (1005, 1006, 999, `abc`...) becomes 1011 `internal error`.
//! - `/ws/custom`: returns `CustomError`, which a registered handler maps to 1008
//!   `Custom exception` (Starlette's `app.exception_handler`).
//! - `/ws/json`: JSON requests `{"type":..., "id":..., ...}`:
//!   - `{"type":"echo","id":"1","data":...}` -> `{"type":"echo","id":"1","data":...}`;
//!   - `{"type":"find","id":"2","name":"alice"}` -> `{"type":"found","id":"2","name":"alice"}`
//!     for `alice` and `bob`, else a 4001 error message;
//!   - `{"type":"fatal","id":"3"}` -> a 4003 error message, then close 4003;
//!   - malformed JSON, a missing `type` or an unknown one -> a 4000 error message, and the
//!     connection stays open;
//!   - over the rate limit, each rejected message gets a 4005 error message with
//!     `retry_after_ms`; 100 rejections within 10 s close with 1008.
//!
//!   Every error message echoes the request's `id` as `meta.request_id`.
//! - `/ws/protected`: echo behind a token: `Authorization: Bearer secret` or `?token=secret`.
//!   No token -> HTTP 401 with `WWW-Authenticate: Bearer`, a wrong one -> HTTP 403; both with
//!   the JSON error body.
//! - Any other path -> HTTP 404 with the JSON error body.

mod contract;

use contract::Args;
use tether::server::{Path, RequestContext, Route, Server, Socket};

async fn close_with(_socket: Socket, Path(params): Path) -> Result<(), tether::server::CloseError> {
    Err(contract::close_with(params.get("code").unwrap_or_default()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = <Args as clap::Parser>::parse();
    contract::init_logging();
    let protected = |cx: &RequestContext<'_, ()>| contract::check_token(cx.request);
    let builder = Server::builder()
        .route("/ws/echo", contract::echo)
        .route("/ws/fail", contract::fail)
        .route("/ws/panic", contract::panic_route)
        .route("/ws/close/{code}", close_with)
        .route("/ws/custom", contract::custom)
        .route_with(
            "/ws/json",
            Route::new(contract::json_api).rate_limit(args.json_limit()),
        )
        .route_with("/ws/protected", Route::new(contract::echo).guard(protected));
    let server = args.settings(builder).build()?;

    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    server
        .serve_on(listener, contract::shutdown_signal())
        .await?;
    Ok(())
}
