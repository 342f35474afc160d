//! The server's connection policies over loopback: handshake rejections (404, guards with
//! 401/403, `Origin`, connection caps with 503/429, extractors), the handshake timeout,
//! heartbeats, the idle timeout, the size and rate limits, graceful shutdown, and a bounded
//! load test in which half the connections panic.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::{Duration, Instant};

use serde_json::Value;
use tether::client::{ClientBuilder, ClientConfig, connect};
use tether::server::{
    FromRequest, Headers, Path, Peer, Query, RateLimit, Reject, RequestContext, Route, Server,
    Socket, State,
};
use tether::{CloseCode, CloseInfo, ErrorKind, Message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

type Client = tether::WebSocket;

struct Running {
    url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

async fn start<S: Clone + Send + Sync + 'static>(server: Server<S>) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve_on(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        url,
        stop: Some(stop),
        task,
    }
}

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

async fn close_of(client: &mut Client) -> CloseInfo {
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = client.recv().await {}
    })
    .await
    .expect("the server should close");
    client.close_info().expect("the connection has ended")
}

fn code_and_reason(info: &CloseInfo) -> (u16, String) {
    (info.reason.display_code(), info.reason.reason().to_owned())
}

/// The status, headers and JSON body of a refused handshake.
async fn refused(url: &str, config: &ClientConfig) -> (u16, Vec<(String, String)>, Value) {
    let error = ClientBuilder::from(config.clone())
        .connect(url)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadStatus, "{error}");
    let status = error.bad_status().unwrap();
    let body = serde_json::from_slice(&status.body).unwrap();
    (status.status, status.headers.clone(), body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
}

#[derive(Clone)]
struct AppState {
    greeting: &'static str,
}

/// An extractor that insists on a `room` query parameter.
struct RoomName(String);

impl<S> FromRequest<S> for RoomName {
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject> {
        cx.query("room")
            .map(Self)
            .ok_or_else(|| Reject::error(400, "Missing query parameter: room"))
    }
}

fn token_guard<S>(cx: &RequestContext<'_, S>) -> Result<(), Reject> {
    match cx.bearer_token() {
        None => Err(Reject::error(401, "Missing token").with_header("WWW-Authenticate", "Bearer")),
        Some(token) if token == "secret" => Ok(()),
        Some(_) => Err(Reject::error(403, "Invalid token")),
    }
}

#[tokio::test]
async fn guards_routes_and_extractors_decide_before_the_upgrade() {
    let server = Server::with_state(AppState { greeting: "hello" })
        .route(
            "/rooms/{room}",
            |socket: Socket,
             Path(params): Path,
             Query(query): Query,
             Headers(headers): Headers,
             Peer(peer): Peer,
             State(state): State<AppState>| async move {
                let agent = headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("x-agent"));
                let text = format!(
                    "{} {} {:?} {} {}",
                    state.greeting,
                    params.get("room").unwrap(),
                    query,
                    agent,
                    peer.ip()
                );
                socket.send(Message::text(text)).await
            },
        )
        .route(
            "/needs-room",
            |socket: Socket, RoomName(room): RoomName| async move {
                socket.send(Message::text(room)).await
            },
        )
        .route_with("/protected", Route::new(echo).guard(token_guard))
        .route_with(
            "/buggy-guard",
            Route::new(echo).guard(|cx: &RequestContext<'_, AppState>| {
                if cx.peer.port() > 0 {
                    panic!("guard bug");
                }
                Ok(())
            }),
        )
        .build()
        .unwrap();
    let running = start(server).await;
    let url = &running.url;

    let config = ClientConfig::default().with_header("X-Agent", "test");
    let (mut client, _) = ClientBuilder::from(config.clone())
        .connect(&format!("{url}/rooms/caf%C3%A9?a=1&b=x%20y"))
        .await
        .unwrap();
    let reply = client.recv().await.unwrap().unwrap();
    assert_eq!(
        reply.as_text().unwrap(),
        r#"hello café [("a", "1"), ("b", "x y")] true 127.0.0.1"#
    );

    let (mut client, _) = connect(&format!("{url}/needs-room?room=lobby"))
        .await
        .unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap().as_text(),
        Some("lobby")
    );
    let (status, _, body) = refused(&format!("{url}/needs-room"), &ClientConfig::default()).await;
    assert_eq!((status, body["data"]["code"].as_u64()), (400, Some(4000)));
    assert_eq!(body["data"]["message"], "Missing query parameter: room");

    let (status, headers, body) =
        refused(&format!("{url}/nowhere"), &ClientConfig::default()).await;
    assert_eq!((status, body["data"]["code"].as_u64()), (404, Some(4001)));
    assert_eq!(header(&headers, "content-type"), Some("application/json"));

    let (status, headers, body) =
        refused(&format!("{url}/protected"), &ClientConfig::default()).await;
    assert_eq!((status, body["data"]["code"].as_u64()), (401, Some(4003)));
    assert_eq!(header(&headers, "www-authenticate"), Some("Bearer"));
    let wrong = ClientConfig::default().with_header("Authorization", "Bearer nope");
    let (status, _, body) = refused(&format!("{url}/protected"), &wrong).await;
    assert_eq!((status, body["data"]["code"].as_u64()), (403, Some(4004)));
    let right = ClientConfig::default().with_header("Authorization", "Bearer secret");
    let (mut client, _) = ClientBuilder::from(right.clone())
        .connect(&format!("{url}/protected"))
        .await
        .unwrap();
    client.send(Message::text("in")).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap().as_text(), Some("in"));
    let (mut client, _) = connect(&format!("{url}/protected?token=secret"))
        .await
        .unwrap();
    client.send(Message::text("query")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap().as_text(),
        Some("query")
    );
}

#[tokio::test]
async fn origins_outside_the_allow_list_are_refused_with_403() {
    let server = Server::builder()
        .route("/ws", echo)
        .allowed_origins(["https://chat.example.com"])
        .build()
        .unwrap();
    let running = start(server).await;
    let url = format!("{}/ws", running.url);
    let evil = ClientConfig::default().with_origin("https://evil.example.net");
    let (status, _, body) = refused(&url, &evil).await;
    assert_eq!(
        (status, body["data"]["message"].as_str()),
        (403, Some("Origin not allowed"))
    );
    let good = ClientConfig::default().with_origin("https://chat.example.com");
    assert!(
        ClientBuilder::from(good.clone())
            .connect(&url)
            .await
            .is_ok()
    );
    assert!(
        connect(&url).await.is_ok(),
        "a client without Origin is not a browser"
    );
}

#[tokio::test]
async fn connection_caps_refuse_with_retry_after_and_free_their_slot_on_every_exit() {
    let server = Server::builder()
        .route("/ws", echo)
        .route("/panic", |mut socket: Socket| async move {
            socket.recv().await?;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<_, tether::Error>(())
        })
        .max_connections(2)
        .max_connections_per_ip(1)
        .build()
        .unwrap();
    let running = start(server).await;
    let url = &running.url;
    let (mut first, _) = connect(&format!("{url}/panic")).await.unwrap();
    let (status, headers, body) = refused(&format!("{url}/ws"), &ClientConfig::default()).await;
    assert_eq!((status, body["data"]["code"].as_u64()), (429, Some(4005)));
    assert_eq!(header(&headers, "retry-after"), Some("5"));
    // The panic ends the first connection; its slot is released.
    first.send(Message::text("boom")).await.unwrap();
    assert_eq!(close_of(&mut first).await.reason.display_code(), 1011);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut second, _) = connect(&format!("{url}/ws")).await.unwrap();
    second.send(Message::text("x")).await.unwrap();
    assert_eq!(second.recv().await.unwrap().unwrap().as_text(), Some("x"));
}

#[tokio::test]
async fn the_global_cap_answers_503() {
    let server = Server::builder()
        .route("/ws", echo)
        .max_connections(1)
        .build()
        .unwrap();
    let running = start(server).await;
    let _held = connect(&format!("{}/ws", running.url)).await.unwrap();
    let (status, headers, body) =
        refused(&format!("{}/ws", running.url), &ClientConfig::default()).await;
    assert_eq!((status, body["data"]["code"].as_u64()), (503, Some(5000)));
    assert!(header(&headers, "retry-after").is_some());
}

#[tokio::test]
async fn a_handshake_that_does_not_complete_in_time_is_dropped() {
    let server = Server::builder()
        .route("/ws", echo)
        .handshake_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let running = start(server).await;
    let mut stream = TcpStream::connect(running.url.trim_start_matches("ws://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // and nothing more
    let started = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the server should hang up"
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
    // A malformed upgrade gets its exact status and the JSON body.
    let mut stream = TcpStream::connect(running.url.trim_start_matches("ws://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 426 "), "{response}");
    assert!(
        response.contains(r#"{"type":"error","data":{"code":4000,"#),
        "{response}"
    );
}

#[tokio::test]
async fn heartbeats_keep_live_peers_and_close_dead_ones_with_1011() {
    let server = Server::builder()
        .route("/ws", echo)
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let running = start(server).await;
    // A live client keeps receiving (which answers pings) and stays connected.
    let (mut live, _) = connect(&format!("{}/ws", running.url)).await.unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(600), live.recv()).await;
    assert!(
        waited.is_err(),
        "nothing but pings should arrive: {waited:?}"
    );
    live.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        live.recv().await.unwrap().unwrap().as_text(),
        Some("still here")
    );
    // A client that stops reading never answers: the server gives up on it.
    let (mut dead, _) = connect(&format!("{}/ws", running.url)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, reason) = code_and_reason(&close_of(&mut dead).await);
    assert_eq!(code, 1011);
    assert!(reason.starts_with("ping timeout"), "{reason}");
}

#[tokio::test]
async fn idle_size_and_rate_limits_close_with_their_codes() {
    let limited =
        Route::new(echo).rate_limit(RateLimit::new(5.0, 5).with_abuse(10, Duration::from_secs(10)));
    let server = Server::builder()
        .route("/ws", echo)
        .route_with("/limited", limited)
        .request_id(|message| Some(format!("req-{}", message.as_text()?)))
        .idle_timeout(Duration::from_millis(300))
        .max_message_size(1024)
        .build()
        .unwrap();
    let running = start(server).await;
    let url = &running.url;

    let (mut idle, _) = connect(&format!("{url}/ws")).await.unwrap();
    let started = Instant::now();
    assert_eq!(
        code_and_reason(&close_of(&mut idle).await),
        (1001, "idle timeout".to_owned())
    );
    assert!(started.elapsed() >= Duration::from_millis(250));

    let (mut big, _) = connect(&format!("{url}/ws")).await.unwrap();
    big.send(Message::text("x".repeat(2000))).await.unwrap();
    assert_eq!(close_of(&mut big).await.reason.display_code(), 1009);

    let (mut flood, _) = connect(&format!("{url}/limited")).await.unwrap();
    for i in 0..8 {
        flood.send(Message::text(i.to_string())).await.unwrap();
    }
    let mut echoes = 0;
    let mut limited = Vec::new();
    for _ in 0..8 {
        let text = flood
            .recv()
            .await
            .unwrap()
            .unwrap()
            .as_text()
            .unwrap()
            .to_owned();
        if text.starts_with('{') {
            let json: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["data"]["code"], 4005);
            assert!(json["data"]["retry_after_ms"].as_u64().unwrap() > 0);
            limited.push(json["meta"]["request_id"].as_str().unwrap().to_owned());
        } else {
            echoes += 1;
        }
    }
    assert_eq!(echoes, 5);
    assert_eq!(limited, ["req-5", "req-6", "req-7"]);
    for i in 0..20 {
        if flood.send(Message::text(i.to_string())).await.is_err() {
            break;
        }
    }
    assert_eq!(
        code_and_reason(&close_of(&mut flood).await),
        (1008, "rate limit exceeded".to_owned())
    );
}

#[tokio::test]
async fn shutdown_closes_every_connection_with_1001_and_returns() {
    let server = Server::builder()
        .route("/ws", echo)
        .shutdown_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut running = start(server.clone()).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(connect(&format!("{}/ws", running.url)).await.unwrap().0);
    }
    // One client never reads again: the deadline drops it.
    let (stuck, _) = connect(&format!("{}/ws", running.url)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(server.stats().open_connections, 4);
    let started = Instant::now();
    running.stop.take().unwrap().send(()).unwrap();
    for client in &mut clients {
        assert_eq!(
            code_and_reason(&close_of(client).await),
            (1001, "server shutting down".to_owned())
        );
    }
    tokio::time::timeout(Duration::from_secs(5), &mut running.task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(server.stats().open_connections, 0);
    assert!(
        connect(&format!("{}/ws", running.url)).await.is_err(),
        "no longer accepting"
    );
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_the_connections_panic_and_the_other_half_are_all_served() {
    const CONNECTIONS: usize = 500;
    let server = Server::builder()
        .route("/ws/echo", echo)
        .route("/ws/panic", |mut socket: Socket| async move {
            socket.recv().await?;
            panic!("handler bug");
            #[allow(unreachable_code)]
            Ok::<_, tether::Error>(())
        })
        .build()
        .unwrap();
    let running = start(server).await;
    let mut tasks = Vec::new();
    for i in 0..CONNECTIONS {
        let url = running.url.clone();
        tasks.push(tokio::spawn(async move {
            let panics = i % 2 == 0;
            let path = if panics { "/ws/panic" } else { "/ws/echo" };
            let (mut client, _) = connect(&format!("{url}{path}")).await.unwrap();
            if panics {
                client.send(Message::text("boom")).await.unwrap();
                return code_and_reason(&close_of(&mut client).await)
                    == (1011, "internal error".to_owned());
            }
            for n in 0..5 {
                let text = format!("{i}-{n}");
                client.send(Message::text(text.clone())).await.unwrap();
                let reply = client.recv().await.unwrap().unwrap();
                if reply.as_text() != Some(&text) {
                    return false;
                }
            }
            client.close(CloseCode::NORMAL, "").await.is_ok()
        }));
    }
    let mut served = 0;
    for task in tasks {
        if tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap()
        {
            served += 1;
        }
    }
    assert_eq!(served, CONNECTIONS);
}

#[tokio::test]
async fn plain_http_requests_get_their_route_a_404_or_a_426() {
    let server = Server::with_state(AppState { greeting: "ok" })
        .route("/ws", echo)
        .http_route(
            "/healthz",
            |request: &tether::server::HttpRequest, state: &AppState| {
                let body = format!(
                    "{} {}",
                    state.greeting,
                    request.query("verbose").unwrap_or_default()
                );
                tether::server::HttpResponse::ok("text/plain", body)
                    .with_header("Cache-Control", "no-store")
            },
        )
        .build()
        .unwrap();
    let running = start(server).await;
    let address = running.url.trim_start_matches("ws://").to_owned();
    let get = |target: &'static str| {
        let address = address.clone();
        async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            let request = format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            stream.read_to_end(&mut response).await.unwrap();
            String::from_utf8(response).unwrap()
        }
    };
    let health = get("/healthz?verbose=yes").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health}");
    assert!(health.contains("Cache-Control: no-store\r\n"), "{health}");
    assert!(health.ends_with("\r\n\r\nok yes"), "{health}");
    let missing = get("/nowhere").await;
    assert!(missing.starts_with("HTTP/1.1 404 "), "{missing}");
    assert!(
        missing
            .contains(r#"{"type":"error","data":{"code":4001,"message":"Nothing at this path"}"#),
        "{missing}"
    );
    let not_upgraded = get("/ws").await;
    assert!(not_upgraded.starts_with("HTTP/1.1 426 "), "{not_upgraded}");
    // The WebSocket route still upgrades.
    let (mut client, _) = connect(&format!("{}/ws", running.url)).await.unwrap();
    client.send(Message::text("x")).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap().as_text(), Some("x"));
}

/// The server runs on any stream: a connection handed over as an in-memory duplex gets the
/// routes, the guards (a refusal is a real HTTP answer), the handler and the close, and
/// counts in the server's figures like an accepted one.
#[tokio::test]
async fn a_server_serves_a_stream_accepted_elsewhere() {
    let server = Server::builder()
        .route("/ws", echo)
        .route_with("/protected", Route::new(echo).guard(token_guard))
        .build()
        .unwrap();
    let peer: std::net::SocketAddr = "127.0.0.1:4242".parse().unwrap();
    let (ours, theirs) = tokio::io::duplex(4096);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_stream(ours, peer).await }
    });
    let builder = ClientBuilder::new().ping_interval(None);
    let (mut client, _) = builder
        .connect_on(theirs, "ws://in-memory/ws")
        .await
        .unwrap();
    assert_eq!(server.stats().open_connections, 1);
    client.send(Message::text("over a duplex")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap(),
        Some(Message::text("over a duplex"))
    );
    client.close(CloseCode::NORMAL, "").await.unwrap();
    serving.await.unwrap();
    assert_eq!(server.stats().open_connections, 0);

    let (ours, theirs) = tokio::io::duplex(4096);
    let serving = tokio::spawn({
        let server = server.clone();
        async move { server.serve_stream(ours, peer).await }
    });
    let error = builder
        .connect_on(theirs, "ws://in-memory/protected")
        .await
        .unwrap_err();
    assert_eq!(error.bad_status().unwrap().status, 401);
    serving.await.unwrap();
}
