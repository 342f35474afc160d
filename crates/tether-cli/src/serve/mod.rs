//! `tether serve`: the demo chat (`docs/demo-chat.md`). One process, everything in memory:
//! the page at `/`, the JSON chat protocol at `/ws`, `/healthz` and `/metrics`; with
//! `--backplane`, one node of several sharing their rooms through Redis.
//!
//! - [`session`]: one connection (identity, rooms, the serving loop);
//! - [`protocol`]: the JSON messages both ways;
//! - [`tokens`]: `--tokens FILE`;
//! - [`metrics`]: the counters and the Prometheus text;
//! - [`backplane`]: `--backplane`, `--node-id`, `--backplane-optional`;
//! - `page/`: the HTML, CSS and JavaScript, embedded in the binary.

mod backplane;
mod metrics;
mod protocol;
mod session;
mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use clap::Args;
use tether::hub::{HistoryConfig, Hub, HubConfig};
use tether::server::{HttpRequest, HttpResponse, RateLimit, Reject, Route, Server, ServerStats};
use tether::{CaughtCloseCodes, DeflateConfig};
use tokio::net::TcpListener;

use self::metrics::Metrics;
use self::tokens::Tokens;

/// The rooms that always exist and nobody may close.
const FIXED_ROOMS: [&str; 2] = ["lobby", "random"];

/// Rejected messages within [`ABUSE_WINDOW`] that close a connection with 1008.
const ABUSE_LIMIT: u32 = 50;
const ABUSE_WINDOW: Duration = Duration::from_secs(10);

const INDEX_HTML: &str = include_str!("page/index.html");
const CHAT_JS: &str = include_str!("page/chat.js");
const CHAT_CSS: &str = include_str!("page/chat.css");

/// Options of `tether serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = crate::parse_listen)]
    listen: SocketAddr,
    /// Require a token: a file of `name:token[:ttl_secs]` lines (`#` comments). The token
    /// comes as `?token=` or `Authorization: Bearer`; it decides the name.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Messages per second each connection may send (over it: 4005, then 1008 after 50
    /// rejections within 10 s).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// Messages a connection may send at once.
    #[arg(long, default_value_t = 20)]
    burst: u32,
    /// Seconds between pings (0: no pings).
    #[arg(long, default_value_t = 20.0)]
    ping_interval: f64,
    /// Seconds a pong may take before the connection is closed with 1011.
    #[arg(long, default_value_t = 20.0)]
    ping_timeout: f64,
    /// The largest message a client may send, in bytes (over it: close 1009).
    #[arg(long, default_value_t = 64 * 1024)]
    max_message_size: usize,
    /// Serve https:// and wss:// with this certificate chain (PEM, leaf first); needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Never compresses: answers no permessage-deflate offer. By default an offer is
    /// accepted with no context takeover either way (no compression memory kept per
    /// connection between messages), level 1, messages of 64 bytes and more.
    #[arg(long)]
    no_deflate: bool,
    /// Messages each room keeps for clients that come back (`join` with `since`), and so
    /// the most one recovery replays; 0 turns recovery off.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    history_size: usize,
    /// Seconds a message stays in its room's history.
    #[arg(long, value_name = "SECS", default_value_t = 300.0)]
    history_ttl: f64,
    #[command(flatten)]
    backplane: backplane::BackplaneArgs,
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    hub: Hub,
    metrics: Arc<Metrics>,
    tokens: Option<Arc<Tokens>>,
    /// The backplane to the other nodes, with `--backplane`.
    backplane: Option<backplane::Backplane>,
    /// The server itself, for its open-connection count in `/metrics`; set once built and
    /// cleared when it stops (the server holds this state: the cycle must be broken).
    server: Arc<Mutex<Option<Server<App>>>>,
}

impl App {
    fn server_stats(&self) -> ServerStats {
        self.server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(Server::stats)
            .unwrap_or_default()
    }
}

pub(crate) fn run(args: &ServeArgs) -> Result<(), String> {
    if !(args.rate.is_finite() && args.rate > 0.0) {
        return Err(format!(
            "--rate must be a positive number, found {}",
            args.rate
        ));
    }
    if args.burst == 0 {
        return Err("--burst must be at least 1".to_owned());
    }
    if seconds(args.history_ttl).is_none() {
        return Err(format!(
            "--history-ttl must be a positive number of seconds, found {}",
            args.history_ttl
        ));
    }
    let tokens = args.tokens.as_deref().map(Tokens::load).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(serve(args, tokens))
}

fn seconds(value: f64) -> Option<Duration> {
    (value.is_finite() && value > 0.0).then(|| Duration::from_secs_f64(value))
}

async fn serve(args: &ServeArgs, tokens: Option<Tokens>) -> Result<(), String> {
    let backplane = backplane::connect(&args.backplane).await?;
    let history = HistoryConfig::new(
        args.history_size,
        seconds(args.history_ttl).unwrap_or(Duration::from_secs(300)),
    );
    let config = HubConfig::default().with_history(history);
    // With a backplane the history is Redis' (shared by the nodes), on one node the hub's.
    let hub = match &backplane {
        Some(backplane) => Hub::with_backplane(config, backplane.for_hub()),
        None => Hub::new(config),
    };
    hub.set_stamp(protocol::stamp);
    for room in FIXED_ROOMS {
        hub.create_room(room, None)
            .map_err(|error| format!("cannot create {room}: {error}"))?;
    }
    if let Some(tokens) = &tokens {
        tracing::info!(tokens = tokens.len(), "a token is required");
    }
    let app = App {
        hub,
        metrics: Arc::new(Metrics::default()),
        tokens: tokens.map(Arc::new),
        backplane,
        server: Arc::default(),
    };
    let limit = RateLimit::new(args.rate, args.burst).with_abuse(ABUSE_LIMIT, ABUSE_WINDOW);
    let route = Route::new(session::chat)
        .rate_limit(limit)
        // Every way a client leaves is ordinary for a chat: the handler sees the end of the
        // stream and counts the close by its code.
        .caught_close_codes(CaughtCloseCodes::all());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            tether::server::tls_config_from_pem(cert, key).map_err(|error| format!("{error:#}"))?,
        ),
        _ => None,
    };
    let secure = tls.is_some();
    let mut server = Server::with_state(app.clone())
        .route_with("/ws", route)
        .http_route("/", |request: &HttpRequest, _: &App| {
            page(request, "text/html; charset=utf-8", INDEX_HTML)
        })
        .http_route("/chat.js", |request: &HttpRequest, _: &App| {
            page(request, "text/javascript; charset=utf-8", CHAT_JS)
        })
        .http_route("/chat.css", |request: &HttpRequest, _: &App| {
            page(request, "text/css; charset=utf-8", CHAT_CSS)
        })
        .http_route("/healthz", |_: &HttpRequest, app: &App| health(app))
        .http_route("/metrics", |_: &HttpRequest, app: &App| {
            let mut server = app.server_stats();
            // The scrape's own connection is in the server's table while it is answered.
            server.open_connections = server.open_connections.saturating_sub(1);
            let backplane = app.backplane.as_ref().map(backplane::Backplane::figures);
            HttpResponse::ok(
                metrics::CONTENT_TYPE,
                app.metrics
                    .render(&server, &app.hub.stats(), backplane.as_ref()),
            )
            .with_header("Cache-Control", "no-store")
        })
        // The rate limiter answers a refused message itself (4005) with the message's id.
        .request_id(protocol::request_id_text)
        .ping_interval(seconds(args.ping_interval))
        .ping_timeout(seconds(args.ping_timeout).unwrap_or(Duration::from_secs(20)))
        .max_message_size(args.max_message_size)
        .deflate((!args.no_deflate).then(DeflateConfig::server));
    if let Some(tls) = tls {
        server = server.tls(tls);
    }
    let server = server.build().map_err(|error| error.to_string())?;
    *app.server.lock().unwrap_or_else(PoisonError::into_inner) = Some(server.clone());

    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let local = listener.local_addr().map_err(|error| error.to_string())?;
    let (http, ws) = if secure {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("serving {http}://{local}/ (WebSocket: {ws}://{local}/ws)");
    let served = server.serve_on(listener, shutdown_signal()).await;
    app.server
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    served.map_err(|error| format!("serving failed: {error}"))
}

/// A page of the chat: GET only, never cached stale, nothing loaded from elsewhere.
fn page(request: &HttpRequest, content_type: &str, body: &str) -> HttpResponse {
    if request.method != "GET" {
        return HttpResponse::from(
            Reject::error(405, "Only GET is served here").with_header("Allow", "GET"),
        );
    }
    HttpResponse::ok(content_type, body)
        .with_header("Cache-Control", "no-cache")
        .with_header("X-Content-Type-Options", "nosniff")
        .with_header(
            "Content-Security-Policy",
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
             base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        )
}

/// `/healthz`: 200 `{"status":"ok"}`, or 503 while the backplane is unreachable (the node
/// serves its own rooms, but broadcasts do not reach the other nodes).
fn health(app: &App) -> HttpResponse {
    if app.hub.backplane_healthy() {
        HttpResponse::ok("application/json", r#"{"status":"ok"}"#)
    } else {
        HttpResponse::new(
            503,
            "application/json",
            r#"{"status":"degraded","backplane":"unreachable"}"#,
        )
    }
    .with_header("Cache-Control", "no-store")
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
