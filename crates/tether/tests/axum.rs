//! Tether inside axum and hyper (feature `axum`): the `WebSocketUpgrade` extractor and a
//! `Server` mounted as a service, each over an HTTP/1.1 upgrade and an HTTP/2 extended
//! CONNECT (RFC 8441) on the same route, with the error contract, refusals with their
//! status and JSON body, and graceful shutdown with 1001.

#![cfg(feature = "axum")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::{any, get};
use axum::{Extension, Router};
use serde_json::Value;
use tether::axum::WebSocketUpgrade;
use tether::server::{CloseError, HttpResponse, Peer, Reject, Route, Server, Socket};
use tether::{CaughtCloseCodes, CloseCode, CloseInfo, Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[path = "support/h2.rs"]
mod h2;

use h2::{H2Answer, connect_h2, echoes, opened};

const VERSION_13: (&str, &str) = ("sec-websocket-version", "13");

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

/// Serves `app` with `axum::serve` on a free loopback port.
async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn extractor_app(tether: &Server<()>) -> Router {
    Router::new()
        .route(
            "/ws/echo",
            any(|ws: WebSocketUpgrade| async { ws.protocols(["v2", "v1"]).on_upgrade(echo) }),
        )
        .route(
            "/ws/fail",
            any(|ws: WebSocketUpgrade| async {
                ws.on_upgrade(|mut socket: Socket| async move {
                    socket.recv().await?;
                    Err::<(), tether::server::BoxError>("db password=hunter2".into())
                })
            }),
        )
        .route(
            "/ws/panic",
            any(|ws: WebSocketUpgrade| async {
                ws.on_upgrade(|mut socket: Socket| async move {
                    if socket.recv().await?.is_some() {
                        panic!("handler bug");
                    }
                    Ok::<_, tether::Error>(())
                })
            }),
        )
        .route(
            "/ws/close",
            any(|ws: WebSocketUpgrade| async {
                ws.on_upgrade(|_socket: Socket| async {
                    Err::<(), _>(CloseError::from_code(4001, "closing with 4001"))
                })
            }),
        )
        .route(
            "/ws/private",
            any(|ws: WebSocketUpgrade| async move {
                if ws.request().header("authorization").is_none() {
                    return Err(Reject::error(401, "Missing token")
                        .with_header("WWW-Authenticate", "Bearer"));
                }
                Ok(ws.on_upgrade(echo))
            }),
        )
        .route(
            "/ws/strict",
            any(|ws: WebSocketUpgrade| async {
                // Only 1000 is a quiet end here: a 1001 reaches the handler as an error.
                // The handler records what it saw for the test to read.
                ws.caught_close_codes(CaughtCloseCodes::only([1000]))
                    .on_upgrade(|mut socket: Socket| async move {
                        let verdict = match socket.recv().await {
                            Ok(None) => "quiet",
                            Err(_) => "error",
                            Ok(Some(_)) => "message",
                        };
                        STRICT.lock().unwrap().push(verdict);
                        Ok::<_, tether::Error>(())
                    })
            }),
        )
        .layer(Extension(tether.clone()))
}

/// What `/ws/strict` saw of each client close.
static STRICT: std::sync::Mutex<Vec<&str>> = std::sync::Mutex::new(Vec::new());

/// Reads until the connection ends and returns how the server closed it.
async fn close_of(ws: &mut WebSocket) -> CloseInfo {
    let deadline = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = ws.recv().await {}
    });
    deadline.await.expect("the server should close");
    ws.close_info().expect("the connection has ended")
}

fn frame(info: &CloseInfo) -> (u16, String) {
    (info.reason.display_code(), info.reason.reason().to_owned())
}

/// Sends a raw HTTP/1.1 request and reads the answer until the server closes.
async fn raw_http(addr: SocketAddr, head: &str) -> (u16, String, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = stream.read_to_end(&mut answer);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server should close after a refusal")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    let body = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, head.to_ascii_lowercase(), body)
}

#[tokio::test]
async fn an_any_route_serves_http1_upgrades_and_h2_extended_connect() {
    let tether = Server::builder().build().unwrap();
    let addr = serve(extractor_app(&tether)).await;

    let mut h1 = tether::client::ClientBuilder::new()
        .protocol("v1")
        .connect(&format!("ws://{addr}/ws/echo"))
        .await
        .unwrap()
        .0;
    assert_eq!(h1.protocol(), Some("v1"));
    echoes(&mut h1, "over http/1.1").await;

    let headers = [VERSION_13, ("sec-websocket-protocol", "v1, v2")];
    let H2Answer::Open(mut h2, protocol) = connect_h2(addr, "/ws/echo", &headers).await else {
        panic!("the extended CONNECT was refused");
    };
    assert_eq!(protocol.as_deref(), Some("v2"), "server preference");
    echoes(&mut h2, "over h2").await;
    h2.send(Message::binary(vec![0u8; 70_000])).await.unwrap();
    let big = h2.recv().await.unwrap().unwrap();
    assert_eq!(big.payload().len(), 70_000);
    assert_eq!(tether.stats().open_connections, 2);

    h2.close(tether::CloseCode::NORMAL, "done").await.unwrap();
    assert_eq!(frame(&close_of(&mut h2).await), (1000, "done".to_owned()));
    h1.close(tether::CloseCode::NORMAL, "").await.unwrap();
    close_of(&mut h1).await;
}

#[tokio::test]
async fn handler_errors_and_panics_close_as_on_tethers_own_server() {
    let tether = Server::builder().build().unwrap();
    let addr = serve(extractor_app(&tether)).await;

    let mut failing = opened(connect_h2(addr, "/ws/fail", &[VERSION_13]).await);
    failing.send(Message::text("go")).await.unwrap();
    let info = close_of(&mut failing).await;
    assert_eq!(frame(&info), (1011, "internal error".to_owned()));

    let mut panicking = tether::client::connect(&format!("ws://{addr}/ws/panic"))
        .await
        .unwrap()
        .0;
    panicking.send(Message::text("go")).await.unwrap();
    assert_eq!(frame(&close_of(&mut panicking).await).0, 1011);

    let mut closing = opened(connect_h2(addr, "/ws/close", &[VERSION_13]).await);
    let info = close_of(&mut closing).await;
    assert_eq!(frame(&info), (4001, "closing with 4001".to_owned()));
}

#[tokio::test]
async fn refusals_carry_the_status_headers_and_json_body() {
    let tether = Server::builder().build().unwrap();
    let addr = serve(extractor_app(&tether)).await;

    let (status, head, body) = raw_http(addr, "GET /ws/echo HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 426);
    assert!(head.contains("upgrade: websocket"), "{head}");
    assert_eq!(body["data"]["code"], 4000);

    let old = "GET /ws/echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
               Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n";
    let (status, head, _) = raw_http(addr, old).await;
    assert_eq!(status, 426);
    assert!(head.contains("sec-websocket-version: 13"), "{head}");

    let private = "GET /ws/private HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
                   Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                   Sec-WebSocket-Version: 13\r\n\r\n";
    let (status, head, body) = raw_http(addr, private).await;
    assert_eq!(status, 401);
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    assert_eq!(body["data"]["code"], 4003);

    match connect_h2(addr, "/ws/echo", &[]).await {
        H2Answer::Refused(status, body) => {
            assert_eq!(status, 426);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert!(body["data"]["message"].as_str().unwrap().contains("13"));
        }
        H2Answer::Open(..) => panic!("a CONNECT without a version must be refused"),
    }

    // Without the Tether extension the route cannot run a handler: a 500, and a log line.
    let bare = Router::new().route(
        "/ws",
        any(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }),
    );
    let bare = serve(bare).await;
    match connect_h2(bare, "/ws", &[VERSION_13]).await {
        H2Answer::Refused(status, _) => assert_eq!(status, 500),
        H2Answer::Open(..) => panic!("no Tether server extension"),
    }
}

#[tokio::test]
async fn shutdown_closes_h1_and_h2_connections_with_1001_and_refuses_new_ones() {
    let tether = Server::builder()
        .shutdown_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let addr = serve(extractor_app(&tether)).await;
    let mut h1 = tether::client::connect(&format!("ws://{addr}/ws/echo"))
        .await
        .unwrap()
        .0;
    let mut h2 = opened(connect_h2(addr, "/ws/echo", &[VERSION_13]).await);
    echoes(&mut h1, "before").await;
    echoes(&mut h2, "before").await;

    let shutdown = tokio::spawn({
        let tether = tether.clone();
        async move { tether.shutdown().await }
    });
    for ws in [&mut h1, &mut h2] {
        let info = close_of(ws).await;
        assert_eq!(frame(&info), (1001, "server shutting down".to_owned()));
    }
    tokio::time::timeout(Duration::from_secs(10), shutdown)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tether.stats().open_connections, 0);
    match connect_h2(addr, "/ws/echo", &[VERSION_13]).await {
        H2Answer::Refused(status, _) => assert_eq!(status, 503),
        H2Answer::Open(..) => panic!("a server shutting down accepts no new WebSocket"),
    }
}

/// A server with its own routes, guards, extractors and HTTP routes.
fn routed_server() -> Server<()> {
    Server::builder()
        .route("/ws/echo", echo)
        .route("/ws/peer", |socket: Socket, Peer(peer): Peer| async move {
            socket.send(Message::text(peer.to_string())).await
        })
        .route_with(
            "/ws/private",
            Route::new(echo).guard(|_cx| Err(Reject::error(403, "Forbidden here"))),
        )
        .http_route("/ws/health", |_request, _state| {
            HttpResponse::ok("text/plain", "ok")
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_server_mounted_as_a_tower_service_keeps_its_routes_and_guards() {
    let server = routed_server();
    let app = Router::new()
        .route("/api/hello", get(|| async { "world" }))
        .route_service("/ws/{*rest}", server.clone());
    let addr = serve(app).await;

    let mut h1 = tether::client::connect(&format!("ws://{addr}/ws/echo"))
        .await
        .unwrap()
        .0;
    echoes(&mut h1, "routed over http/1.1").await;
    let mut h2 = opened(connect_h2(addr, "/ws/echo", &[VERSION_13]).await);
    echoes(&mut h2, "routed over h2").await;

    match connect_h2(addr, "/ws/private", &[VERSION_13]).await {
        H2Answer::Refused(status, body) => {
            assert_eq!(status, 403);
            let body: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["data"]["code"], 4004);
        }
        H2Answer::Open(..) => panic!("the guard must refuse"),
    }
    let (status, _, body) = raw_http(addr, "GET /ws/nowhere HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((status, body["data"]["code"].as_u64()), (404, Some(4001)));
    let (status, head, _) = raw_http(addr, "GET /ws/health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain"), "{head}");
}

#[tokio::test]
async fn hyper_alone_serves_a_server_over_http1_and_h2_with_the_peer_address() {
    use hyper::service::Service as _;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;

    let server = routed_server();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = listener.accept().await.unwrap();
            let server = server.clone();
            let service = hyper::service::service_fn(move |mut request| {
                request.extensions_mut().insert(peer);
                server.call(request)
            });
            tokio::spawn(async move {
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder.http2().enable_connect_protocol();
                let io = TokioIo::new(stream);
                let _ = builder.serve_connection_with_upgrades(io, service).await;
            });
        }
    });

    let mut h1 = tether::client::connect(&format!("ws://{addr}/ws/peer"))
        .await
        .unwrap()
        .0;
    let seen = h1.recv().await.unwrap().unwrap();
    let seen: SocketAddr = seen.as_text().unwrap().parse().unwrap();
    assert!(seen.ip().is_loopback() && seen.port() != 0, "{seen}");
    let mut h2 = opened(connect_h2(addr, "/ws/echo", &[VERSION_13]).await);
    echoes(&mut h2, "hyper alone").await;
}

#[tokio::test]
async fn caught_close_codes_apply_per_endpoint() {
    let tether = Server::builder().build().unwrap();
    let addr = serve(extractor_app(&tether)).await;
    for code in [CloseCode::NORMAL, CloseCode::GOING_AWAY] {
        let mut ws = opened(connect_h2(addr, "/ws/strict", &[VERSION_13]).await);
        ws.close(code, "bye").await.unwrap();
        close_of(&mut ws).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while STRICT.lock().unwrap().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(*STRICT.lock().unwrap(), ["quiet", "error"]);
}
