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

use std::fmt;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tether::server::{
    AppError, CloseError, ErrorAction, Path, RateLimit, Reject, RequestContext, Route, Server,
    Socket,
};
use tether::{CloseCode, Message};

#[derive(Debug, Parser)]
#[command(about = "Tether's error contract, one route per behaviour")]
struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: String,
    /// Seconds between pings (0: no pings).
    #[arg(long, default_value_t = 20.0)]
    ping_interval: f64,
    /// Seconds a pong may take before the peer is closed with 1011.
    #[arg(long, default_value_t = 20.0)]
    ping_timeout: f64,
    /// Seconds without a client message before closing with 1001 (0: never).
    #[arg(long, default_value_t = 0.0)]
    idle_timeout: f64,
    /// The largest message a client may send (over it: 1009).
    #[arg(long, default_value_t = 1024 * 1024)]
    max_message_size: usize,
    /// Messages per second allowed on /ws/json.
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Burst allowed on /ws/json.
    #[arg(long, default_value_t = 40)]
    burst: u32,
    /// Rejected messages within 10 s that close the connection with 1008.
    #[arg(long, default_value_t = 100)]
    abuse_limit: u32,
    /// Seconds a shutdown waits for close handshakes.
    #[arg(long, default_value_t = 10.0)]
    shutdown_timeout: f64,
}

/// The custom error `/ws/custom` returns; the server maps it to 1008.
#[derive(Debug)]
struct CustomError;

impl fmt::Display for CustomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a custom error the app maps to a close")
    }
}

impl std::error::Error for CustomError {}

/// An internal failure with a detail that must never reach a client.
#[derive(Debug)]
struct DatabaseError;

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection to db-primary:5432 refused (user=app password=hunter2)")
    }
}

impl std::error::Error for DatabaseError {}

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

async fn fail(mut socket: Socket) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if socket.recv().await?.is_some() {
        let cause = std::io::Error::other(DatabaseError);
        return Err(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("loading the user profile: {cause}"),
        )));
    }
    Ok(())
}

async fn panic_route(mut socket: Socket) -> Result<(), tether::Error> {
    if socket.recv().await?.is_some() {
        panic!("handler bug: index 7 out of range for a slice of length 3");
    }
    Ok(())
}

async fn close_with(_socket: Socket, Path(params): Path) -> Result<(), CloseError> {
    let text = params.get("code").unwrap_or_default();
    let code = text.parse::<u16>().unwrap_or(0);
    Err(CloseError::from_code(code, format!("closing with {text}")))
}

async fn custom(_socket: Socket) -> Result<(), CustomError> {
    Err(CustomError)
}

/// `/ws/json`: per-request errors become error messages and the connection lives on.
async fn json_api(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        if let Err(error) = answer(&socket, &message).await {
            socket.report(error).await?;
        }
    }
    Ok(())
}

async fn answer(socket: &Socket, message: &Message) -> Result<(), AppError> {
    let request: Value = serde_json::from_slice(message.payload())
        .map_err(|error| AppError::bad_request(format!("Malformed JSON: {error}")))?;
    let id = request_id(&request);
    let with_id = |error: AppError| match &id {
        Some(id) => error.with_request_id(id.clone()),
        None => error,
    };
    let Some(kind) = request.get("type").and_then(Value::as_str) else {
        return Err(with_id(AppError::bad_request("Missing field: type")));
    };
    let reply = match kind {
        "echo" => json!({"type": "echo", "id": id, "data": request.get("data")}),
        "find" => {
            let Some(name) = request.get("name").and_then(Value::as_str) else {
                return Err(with_id(AppError::bad_request("Missing field: name")));
            };
            if !["alice", "bob"].contains(&name) {
                return Err(with_id(AppError::not_found(format!(
                    "No user named {name:?}"
                ))));
            }
            json!({"type": "found", "id": id, "name": name})
        }
        "fatal" => return Err(with_id(AppError::unauthorized("Session expired"))),
        _ => {
            return Err(with_id(AppError::bad_request(format!(
                "Unknown type: {kind:?}"
            ))));
        }
    };
    // A failed send means the connection is ending; the next recv reports it.
    let _ = socket.send_json(&reply).await;
    Ok(())
}

fn request_id(request: &Value) -> Option<String> {
    match request.get("id")? {
        Value::String(id) => Some(id.clone()),
        Value::Number(id) => Some(id.to_string()),
        _ => None,
    }
}

fn check_token<S>(cx: &RequestContext<'_, S>) -> Result<(), Reject> {
    match cx.bearer_token() {
        None => Err(Reject::error(401, "Missing token").with_header("WWW-Authenticate", "Bearer")),
        Some(token) if token == "secret" => Ok(()),
        Some(_) => Err(Reject::error(403, "Invalid token")),
    }
}

fn seconds(value: f64) -> Option<Duration> {
    (value > 0.0).then(|| Duration::from_secs_f64(value))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();

    let json_limit =
        RateLimit::new(args.rate, args.burst).with_abuse(args.abuse_limit, Duration::from_secs(10));
    let server = Server::builder()
        .route("/ws/echo", echo)
        .route("/ws/fail", fail)
        .route("/ws/panic", panic_route)
        .route("/ws/close/{code}", close_with)
        .route("/ws/custom", custom)
        .route_with("/ws/json", Route::new(json_api).rate_limit(json_limit))
        .route_with("/ws/protected", Route::new(echo).guard(check_token))
        .on_error::<CustomError, _>(|_| {
            ErrorAction::Close(CloseError::new(
                CloseCode::POLICY_VIOLATION,
                "Custom exception",
            ))
        })
        .request_id(|message| {
            let text = message.as_text()?;
            request_id(&serde_json::from_str(text).ok()?)
        })
        .ping_interval(seconds(args.ping_interval))
        .ping_timeout(seconds(args.ping_timeout).unwrap_or(Duration::from_secs(20)))
        .idle_timeout(seconds(args.idle_timeout))
        .max_message_size(args.max_message_size)
        .shutdown_timeout(seconds(args.shutdown_timeout).unwrap_or_default())
        .build()?;

    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    println!("listening on ws://{}", listener.local_addr()?);
    server.serve_on(listener, shutdown_signal()).await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
