//! `tether::testing::FaultProxy` between a Tether client and a real upstream (the project's
//! own echo server, or a plain TCP peer), one fault per test, measured: latency, jitter
//! without reordering, a bandwidth limit, 1-byte slices, a reset after N bytes (an abnormal
//! closure for the client, and the runner reconnects) or after a time (RST on both sides),
//! a black hole caught by the heartbeat, `down` refusing connections and coming back up, a
//! slow close, faults changed on an open connection, shutdown, and the HTTP control API.

#![cfg(feature = "testing")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tether::client::{ClientBuilder, Event, Reconnect, Runner};
use tether::server::{Server, Socket};
use tether::testing::{DirectionFaults, FaultProxy, Faults};
use tether::{ErrorKind, Message, TimeoutPhase, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Fails the test instead of hanging it.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the test took too long")
}

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

/// The project's echo server on a free loopback port, at `/ws`.
async fn ws_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .route("/ws", echo)
        .rate_limit(None)
        .build()
        .unwrap();
    tokio::spawn(server.serve_on(listener, std::future::pending()));
    addr
}

/// A proxy on a free loopback port in front of `upstream`.
async fn proxy_to(upstream: SocketAddr) -> FaultProxy {
    FaultProxy::bind("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap()
}

fn url(proxy: &FaultProxy) -> String {
    format!("ws://{}/ws", proxy.local_addr())
}

/// A Tether client connected through `proxy`.
async fn client(proxy: &FaultProxy) -> WebSocket {
    let (socket, _) = bounded(ClientBuilder::new().no_proxy().connect(&url(proxy)))
        .await
        .unwrap();
    socket
}

/// Sends `message` and waits for its echo; returns how long that took.
async fn round_trip(socket: &mut WebSocket, message: Message) -> Duration {
    let sent = Instant::now();
    socket.send(message.clone()).await.unwrap();
    let echoed = bounded(socket.recv()).await.unwrap().unwrap();
    assert_eq!(echoed, message);
    sent.elapsed()
}

/// The runner's next event, which must exist.
async fn next(runner: &mut Runner) -> Event {
    bounded(runner.next()).await.expect("an event")
}

fn latency(ms: u64) -> DirectionFaults {
    DirectionFaults::none().with_latency(Duration::from_millis(ms))
}

#[test]
fn the_proxy_can_be_shared_between_tasks() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<FaultProxy>();
    assert_send_sync::<Faults>();
}

#[tokio::test]
async fn latency_adds_its_delay_to_every_round_trip() {
    let proxy = proxy_to(ws_echo().await).await;
    let mut socket = client(&proxy).await;
    let baseline = round_trip(&mut socket, Message::text("warm up")).await;
    proxy
        .set_faults(Faults::none().with_downstream(latency(100)))
        .await;
    for n in 0..3 {
        let took = round_trip(&mut socket, Message::text(format!("slow {n}"))).await;
        eprintln!("round trip {took:?} with 100 ms downstream latency (baseline {baseline:?})");
        assert!(took >= Duration::from_millis(100), "{took:?}");
        assert!(took < Duration::from_millis(500), "{took:?}");
    }
}

#[tokio::test]
async fn jitter_varies_the_delay_but_never_reorders_bytes() {
    let proxy = proxy_to(ws_echo().await).await;
    let jittery = DirectionFaults::none()
        .with_latency(Duration::from_millis(20))
        .with_jitter(Duration::from_millis(20));
    proxy.set_faults(Faults::none().with_both(jittery)).await;
    let mut socket = client(&proxy).await;
    // Many small writes, so that many chunks each draw their own delay.
    for n in 0..200 {
        socket
            .send(Message::text(format!("message {n}")))
            .await
            .unwrap();
        if n % 20 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for n in 0..200 {
        let echoed = bounded(socket.recv()).await.unwrap().unwrap();
        assert_eq!(echoed, Message::text(format!("message {n}")));
    }
    assert!(proxy.stats().upstream.segments > 1);
}

#[tokio::test]
async fn a_bandwidth_limit_slows_a_large_message_down() {
    let proxy = proxy_to(ws_echo().await).await;
    let mut socket = client(&proxy).await;
    proxy
        .set_faults(
            Faults::none().with_downstream(DirectionFaults::none().with_bandwidth(40 * 1024)),
        )
        .await;
    let took = round_trip(&mut socket, Message::binary(vec![0x5a; 20 * 1024])).await;
    eprintln!("20 KiB at 40 KiB/s took {took:?}");
    assert!(took >= Duration::from_millis(450), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    let stats = proxy.stats();
    assert!(stats.downstream.bytes > 20 * 1024, "{stats:?}");
    assert!(stats.downstream.segments >= 20, "{stats:?}");
}

#[tokio::test]
async fn one_byte_slices_still_deliver_whole_messages() {
    let proxy = proxy_to(ws_echo().await).await;
    let sliced = DirectionFaults::none().with_slices(1, Duration::ZERO);
    proxy.set_faults(Faults::none().with_both(sliced)).await;
    // The handshake goes through in slices too.
    let mut socket = client(&proxy).await;
    let text = "sliced ".repeat(40);
    round_trip(&mut socket, Message::text(text.clone())).await;
    let stats = proxy.stats();
    for direction in [&stats.upstream, &stats.downstream] {
        assert!(direction.bytes > text.len() as u64, "{stats:?}");
        assert_eq!(
            direction.segments, direction.bytes,
            "one byte per write: {stats:?}"
        );
    }
}

#[tokio::test]
async fn a_reset_after_n_bytes_is_an_abnormal_closure_for_the_client() {
    let proxy = proxy_to(ws_echo().await).await;
    // The handshake's response (about 200 bytes) passes; the echo of 2 000 bytes does not.
    let limited = DirectionFaults::none().with_reset_after_bytes(1000);
    proxy
        .set_faults(Faults::none().with_downstream(limited))
        .await;
    let mut socket = client(&proxy).await;
    socket.send(Message::binary(vec![1u8; 2000])).await.unwrap();
    let error = bounded(socket.recv()).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed, "{error:#}");
    assert!(error.is_abnormal_closure(), "{error:#}");
    assert_eq!(error.close_info().unwrap().reason.display_code(), 1006);
    assert!(error.is_retryable());
    let stats = proxy.stats();
    assert_eq!(stats.resets, 1, "{stats:?}");
    assert_eq!(
        stats.downstream.bytes, 1000,
        "exactly the limit went through: {stats:?}"
    );
}

#[tokio::test]
async fn the_runner_reconnects_after_a_reset() {
    let proxy = proxy_to(ws_echo().await).await;
    let limited = DirectionFaults::none().with_reset_after_bytes(1000);
    proxy
        .set_faults(Faults::none().with_downstream(limited))
        .await;
    let quick = Reconnect::new()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20));
    let mut runner = Runner::new(url(&proxy), ClientBuilder::new().no_proxy(), quick);
    let Event::Open { sender, .. } = next(&mut runner).await else {
        panic!("expected Open");
    };
    sender.send(Message::binary(vec![2u8; 2000])).await.unwrap();
    match next(&mut runner).await {
        Event::Close(info) => {
            assert!(info.is_abnormal(), "{info:?}");
            assert_eq!(info.reason.display_code(), 1006);
        }
        other => panic!("expected Close, found {other:?}"),
    }
    match next(&mut runner).await {
        Event::Error(error) => assert_eq!(error.kind(), ErrorKind::ConnectionClosed),
        other => panic!("expected Error, found {other:?}"),
    }
    match next(&mut runner).await {
        Event::Reconnecting { attempt, .. } => assert_eq!(attempt, 1),
        other => panic!("expected Reconnecting, found {other:?}"),
    }
    // The fault is still there, but a handshake fits under the limit.
    let Event::Open { sender, .. } = next(&mut runner).await else {
        panic!("expected Open again");
    };
    sender.send(Message::text("back")).await.unwrap();
    match next(&mut runner).await {
        Event::Message(message) => assert_eq!(message, Message::text("back")),
        other => panic!("expected the echo, found {other:?}"),
    }
    let stats = proxy.stats();
    assert_eq!(
        (stats.resets, stats.connections_accepted),
        (1, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_reset_after_a_time_resets_both_sides() {
    // An upstream that reports how its connection ended.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let server_side = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 64];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(error) => return Err(error.kind()),
            }
        }
    });
    let proxy = proxy_to(upstream).await;
    proxy
        .set_faults(Faults::none().with_reset_after(Duration::from_millis(150)))
        .await;
    let opened = Instant::now();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    stream.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 64];
    let read = bounded(stream.read(&mut buf)).await;
    let took = opened.elapsed();
    assert_eq!(
        read.map_err(|error| error.kind()).unwrap_err(),
        std::io::ErrorKind::ConnectionReset
    );
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(
        bounded(server_side).await.unwrap(),
        Err(std::io::ErrorKind::ConnectionReset),
        "the server is reset too"
    );
    assert_eq!(proxy.stats().resets, 1);
}

#[tokio::test]
async fn a_black_hole_is_caught_by_the_heartbeat() {
    let proxy = proxy_to(ws_echo().await).await;
    let (mut socket, _) = bounded(
        ClientBuilder::new()
            .ping_interval(Duration::from_millis(200))
            .ping_timeout(Duration::from_millis(300))
            .close_timeout(Duration::from_millis(200))
            .no_proxy()
            .connect(&url(&proxy)),
    )
    .await
    .unwrap();
    round_trip(&mut socket, Message::text("before")).await;
    let hole = DirectionFaults::none().with_blackhole(true);
    proxy.set_faults(Faults::none().with_downstream(hole)).await;
    let started = Instant::now();
    let error = bounded(socket.recv()).await.unwrap_err();
    let took = started.elapsed();
    eprintln!("black hole detected after {took:?}: {error:#}");
    let timed_out = error.timeout_phase() == Some(TimeoutPhase::Pong);
    assert!(timed_out || error.is_abnormal_closure(), "{error:#}");
    assert!(error.is_retryable());
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(200 + 300 + 1000), "{took:?}");
    let stats = proxy.stats();
    assert!(
        stats.downstream.discarded_bytes > 0,
        "the pong went into the hole: {stats:?}"
    );
}

#[tokio::test]
async fn down_refuses_connections_and_up_accepts_them_again() {
    let proxy = proxy_to(ws_echo().await).await;
    let addr = proxy.local_addr();
    let mut open = client(&proxy).await;
    round_trip(&mut open, Message::text("up")).await;

    proxy.set_faults(Faults::none().with_down(true)).await;
    let error = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
    let error = ClientBuilder::new()
        .no_proxy()
        .connect(&url(&proxy))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io, "{error:#}");
    assert!(error.is_retryable());
    // The open connection was closed under it: no close frame, so abnormal.
    let error = bounded(open.recv()).await.unwrap_err();
    assert!(error.is_abnormal_closure(), "{error:#}");

    proxy.set_faults(Faults::none()).await;
    assert_eq!(proxy.local_addr(), addr);
    let mut socket = client(&proxy).await;
    round_trip(&mut socket, Message::text("up again")).await;
    let stats = proxy.stats();
    assert_eq!(stats.connections_accepted, 2, "{stats:?}");
    assert_eq!(stats.connections_active, 1, "{stats:?}");
}

/// An upstream that sends `bye` to each connection and closes it.
async fn says_bye() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            stream.write_all(b"bye").await.unwrap();
        }
    });
    addr
}

/// Reads `bye`, then the end of the stream; returns the time between them.
async fn time_to_close(proxy: &FaultProxy) -> Duration {
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut bye = [0u8; 3];
    bounded(stream.read_exact(&mut bye)).await.unwrap();
    assert_eq!(&bye, b"bye");
    let read_bye = Instant::now();
    let mut rest = Vec::new();
    bounded(stream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    read_bye.elapsed()
}

#[tokio::test]
async fn a_slow_close_passes_the_close_on_late() {
    let proxy = proxy_to(says_bye().await).await;
    let prompt = time_to_close(&proxy).await;
    proxy
        .set_faults(Faults::none().with_slow_close(Duration::from_millis(300)))
        .await;
    let slow = time_to_close(&proxy).await;
    eprintln!("close passed on after {prompt:?}, with a 300 ms slow close after {slow:?}");
    assert!(slow >= Duration::from_millis(250), "{slow:?}");
    assert!(slow < Duration::from_secs(2), "{slow:?}");
}

#[tokio::test]
async fn faults_changed_at_runtime_reach_an_open_connection() {
    let proxy = proxy_to(ws_echo().await).await;
    let mut socket = client(&proxy).await;
    round_trip(&mut socket, Message::text("fast")).await;

    proxy
        .set_faults(Faults::none().with_upstream(latency(200)))
        .await;
    let took = round_trip(&mut socket, Message::text("slow")).await;
    assert!(took >= Duration::from_millis(200), "{took:?}");
    assert!(took < Duration::from_millis(700), "{took:?}");

    // A reset timer set now runs from now, not from when the connection opened.
    proxy
        .set_faults(Faults::none().with_reset_after(Duration::from_millis(100)))
        .await;
    let started = Instant::now();
    let error = bounded(socket.recv()).await.unwrap_err();
    let took = started.elapsed();
    assert!(error.is_abnormal_closure(), "{error:#}");
    assert!(took >= Duration::from_millis(90), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert_eq!(proxy.stats().resets, 1);
}

#[tokio::test]
async fn shutdown_closes_everything_the_proxy_opened() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let proxy = proxy_to(upstream).await;
    let addr = proxy.local_addr();
    let mut client_side = TcpStream::connect(addr).await.unwrap();
    let (mut server_side, _) = bounded(listener.accept()).await.unwrap();
    client_side.write_all(b"x").await.unwrap();
    let mut byte = [0u8; 1];
    bounded(server_side.read_exact(&mut byte)).await.unwrap();

    bounded(proxy.shutdown()).await;
    let mut rest = Vec::new();
    assert_eq!(
        bounded(client_side.read_to_end(&mut rest)).await.unwrap(),
        0
    );
    assert_eq!(
        bounded(server_side.read_to_end(&mut rest)).await.unwrap(),
        0
    );
    let error = TcpStream::connect(addr).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = proxy_to(ws_echo().await).await;
    let mut socket = client(&proxy).await;
    round_trip(&mut socket, Message::text("hi")).await;
    drop(proxy);
    let error = bounded(socket.recv()).await.unwrap_err();
    assert!(error.is_abnormal_closure(), "{error:#}");
}

/// One raw HTTP request to the control API: the status, the head and the JSON body.
async fn http(addr: SocketAddr, request: &str) -> (u16, String, serde_json::Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    bounded(stream.read_to_end(&mut response)).await.unwrap();
    let text = String::from_utf8(response).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let status = head[9..12].parse().unwrap();
    (status, head.to_owned(), serde_json::from_str(body).unwrap())
}

fn put(path: &str, body: &str) -> String {
    format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn the_control_api_reads_and_changes_the_faults() {
    let proxy = proxy_to(ws_echo().await).await;
    let control = proxy
        .serve_control("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();

    let (status, _, body) = http(control, "GET /faults HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::to_value(Faults::none()).unwrap());
    assert_eq!(body["downstream"]["latency_ms"], 0);

    let (status, _, body) = http(
        control,
        &put(
            "/faults",
            r#"{"downstream":{"latency_ms":150,"bandwidth":65536}}"#,
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["downstream"]["latency_ms"], 150);
    let expected = DirectionFaults::none()
        .with_latency(Duration::from_millis(150))
        .with_bandwidth(65536);
    assert_eq!(proxy.faults(), Faults::none().with_downstream(expected));
    // And the proxy does it.
    let mut socket = client(&proxy).await;
    let took = round_trip(&mut socket, Message::text("through the API")).await;
    assert!(took >= Duration::from_millis(150), "{took:?}");

    let (status, _, body) = http(control, "GET /stats HTTP/1.1\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(body["connections_accepted"], 1);
    assert_eq!(body["connections_active"], 1);
    assert!(body["downstream"]["bytes"].as_u64().unwrap() > 0, "{body}");

    let (status, _, body) =
        http(control, "POST /reset HTTP/1.1\r\nContent-Length: 0\r\n\r\n").await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::to_value(Faults::none()).unwrap());
    assert!(proxy.faults().is_none());

    // A response means applied: `down` refuses at once.
    let (status, _, _) = http(control, &put("/faults", r#"{"down":true}"#)).await;
    assert_eq!(status, 200);
    let error = TcpStream::connect(proxy.local_addr()).await.unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[tokio::test]
async fn the_control_api_refuses_bad_requests_with_a_json_error() {
    let proxy = proxy_to(ws_echo().await).await;
    let control = proxy
        .serve_control("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let before = proxy.faults();
    let cases: [(String, u16, &str); 9] = [
        (put("/faults", "{not json"), 400, "invalid faults"),
        (
            put("/faults", r#"{"latency_ms":5}"#),
            400,
            "unknown field `latency_ms`",
        ),
        (
            put("/faults", r#"{"upstream":{"bandwidth":0}}"#),
            400,
            "nonzero",
        ),
        (
            put("/faults", r#"{"slow_close_ms":-1}"#),
            400,
            "invalid value",
        ),
        ("GET /nowhere HTTP/1.1\r\n\r\n".into(), 404, "no route"),
        (
            "DELETE /faults HTTP/1.1\r\n\r\n".into(),
            405,
            "expected GET, PUT",
        ),
        ("GET /reset HTTP/1.1\r\n\r\n".into(), 405, "expected POST"),
        ("NONSENSE\0\r\n\r\n".into(), 400, "malformed request"),
        (
            "PUT /faults HTTP/1.1\r\nContent-Length: 10000000\r\n\r\n{}".into(),
            413,
            "at most 65536 bytes",
        ),
    ];
    for (request, expected, says) in cases {
        let (status, head, body) = http(control, &request).await;
        assert_eq!(status, expected, "{request:?}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(says), "{request:?}: {message}");
        if expected == 405 {
            assert!(head.contains("\r\nAllow: "), "{head}");
        }
    }
    let huge_head = format!("GET /faults HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(9000));
    assert_eq!(http(control, &huge_head).await.0, 431);
    assert_eq!(proxy.faults(), before, "nothing changed");
}
