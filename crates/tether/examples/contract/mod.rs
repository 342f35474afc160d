//! What the two error-contract examples share: the flags, the handlers, the `/ws/protected`
//! guard and the server settings. `error_contract.rs` routes them on Tether's own listener,
//! `axum_app.rs` on an axum `Router`; the Python contract tests run against both.

use std::fmt;
use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tether::server::{
    AppError, CloseError, ErrorAction, RateLimit, Reject, ServerBuilder, Socket, parse_query,
};
use tether::{CloseCode, Message, Request};

#[derive(Debug, Parser)]
#[command(about = "Tether's error contract, one route per behaviour")]
pub(crate) struct Args {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    pub(crate) listen: String,
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

impl Args {
    /// The rate limit of `/ws/json`.
    pub(crate) fn json_limit(&self) -> RateLimit {
        RateLimit::new(self.rate, self.burst).with_abuse(self.abuse_limit, Duration::from_secs(10))
    }

    /// Everything but the routes: the custom error's mapping, request ids, heartbeats,
    /// timeouts and limits.
    pub(crate) fn settings(&self, builder: ServerBuilder<()>) -> ServerBuilder<()> {
        builder
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
            .ping_interval(seconds(self.ping_interval))
            .ping_timeout(seconds(self.ping_timeout).unwrap_or(Duration::from_secs(20)))
            .idle_timeout(seconds(self.idle_timeout))
            .max_message_size(self.max_message_size)
            .shutdown_timeout(seconds(self.shutdown_timeout).unwrap_or_default())
    }
}

/// Logs to stderr at `RUST_LOG` (default `info`).
pub(crate) fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}

/// The custom error `/ws/custom` returns; the server maps it to 1008.
#[derive(Debug)]
pub(crate) struct CustomError;

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

pub(crate) async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

pub(crate) async fn fail(
    mut socket: Socket,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if socket.recv().await?.is_some() {
        let cause = std::io::Error::other(DatabaseError);
        return Err(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("loading the user profile: {cause}"),
        )));
    }
    Ok(())
}

pub(crate) async fn panic_route(mut socket: Socket) -> Result<(), tether::Error> {
    if socket.recv().await?.is_some() {
        panic!("handler bug: index 7 out of range for a slice of length 3");
    }
    Ok(())
}

/// `/ws/close/{code}`: closes at once with `code` (1011 when it may not be sent).
pub(crate) fn close_with(code: &str) -> CloseError {
    let number = code.parse::<u16>().unwrap_or(0);
    CloseError::from_code(number, format!("closing with {code}"))
}

pub(crate) async fn custom(_socket: Socket) -> Result<(), CustomError> {
    Err(CustomError)
}

/// `/ws/json`: per-request errors become error messages and the connection lives on.
pub(crate) async fn json_api(mut socket: Socket) -> Result<(), tether::Error> {
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

/// The `/ws/protected` guard: `Authorization: Bearer secret` or `?token=secret`.
pub(crate) fn check_token(request: &Request) -> Result<(), Reject> {
    let header = request
        .header("authorization")
        .and_then(|value| std::str::from_utf8(value).ok())
        .and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let token = header
        .or_else(|| {
            parse_query(request.path())
                .into_iter()
                .find(|(key, _)| key == "token")
                .map(|(_, value)| value)
        })
        .filter(|token| !token.is_empty());
    match token {
        None => Err(Reject::error(401, "Missing token").with_header("WWW-Authenticate", "Bearer")),
        Some(token) if token == "secret" => Ok(()),
        Some(_) => Err(Reject::error(403, "Invalid token")),
    }
}

fn seconds(value: f64) -> Option<Duration> {
    (value > 0.0).then(|| Duration::from_secs_f64(value))
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
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
