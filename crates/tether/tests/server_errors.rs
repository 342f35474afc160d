//! The server's error contract over loopback, seen by the project's own client and raw TCP:
//! handler errors become exact closes, mapped types follow their handlers, unmapped errors
//! and panics become 1011 with a generic reason, application errors become structured
//! messages, `caught_close_codes` decides which disconnects are quiet, and socket operations
//! stay safe after a close.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::fmt;
use std::time::Duration;

use serde_json::Value;
use tether::client::connect;
use tether::server::{AppError, CloseError, ErrorAction, Route, Server, Socket};
use tether::{
    CaughtCloseCodes, CloseCode, CloseFrame, CloseInfo, CloseReason, ConnectionState, Message, Side,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

type Client = tether::WebSocket;

/// Runs `server` on a free loopback port; dropping the returned sender shuts it down.
async fn start<S: Clone + Send + Sync + 'static>(
    server: Server<S>,
) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_on(listener, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

/// Reads until the connection ends and returns how the server closed it.
async fn close_of(client: &mut Client) -> CloseInfo {
    let deadline = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = client.recv().await {}
    });
    deadline.await.expect("the server should close");
    client.close_info().expect("the connection has ended")
}

fn frame(info: &CloseInfo) -> (u16, String) {
    (info.reason.display_code(), info.reason.reason().to_owned())
}

#[derive(Debug)]
struct CustomError;
impl fmt::Display for CustomError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("custom")
    }
}
impl std::error::Error for CustomError {}

#[derive(Debug)]
struct Context(CustomError);
impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("while doing something")
    }
}
impl std::error::Error for Context {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

fn error_server() -> Server<()> {
    Server::builder()
        .route("/ok", |_socket: Socket| async {
            Ok::<_, tether::Error>(())
        })
        .route("/close", |_socket: Socket| async {
            Err::<(), _>(CloseError::from_code(4001, "closing with 4001"))
        })
        .route("/unsendable", |_socket: Socket| async {
            Err::<(), _>(CloseError::from_code(1005, "secret"))
        })
        .route("/custom", |_socket: Socket| async {
            Err::<(), _>(CustomError)
        })
        .route("/wrapped", |_socket: Socket| async {
            Err::<(), _>(Context(CustomError))
        })
        .route("/internal", |mut socket: Socket| async move {
            socket.recv().await?;
            Err::<(), _>(std::io::Error::other("password=hunter2 refused"))?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .route("/panic", |mut socket: Socket| async move {
            socket.recv().await?;
            if socket.id() > 0 {
                panic!("secret panic detail");
            }
            Ok::<_, tether::Error>(())
        })
        .route("/app", |_socket: Socket| async {
            Err::<(), _>(AppError::not_found("Room not found").with_request_id("abc-123"))
        })
        // `?` carries application errors through `tether::Error` and boxed errors alike.
        .route("/app-through-tether-error", |_socket: Socket| async {
            Err(AppError::not_found("Room not found").with_request_id("abc-123"))?;
            Ok::<_, tether::Error>(())
        })
        .route("/app-through-box", |_socket: Socket| async {
            Err(AppError::not_found("Room not found").with_request_id("abc-123"))?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .route("/close-through-tether-error", |_socket: Socket| async {
            Err(CloseError::from_code(4001, "closing with 4001"))?;
            Ok::<_, tether::Error>(())
        })
        .route("/internal-message", |_socket: Socket| async {
            Err::<(), _>(AppError::new(5000, "Internal server error"))
        })
        .on_error::<CustomError, _>(|_| {
            ErrorAction::Close(CloseError::new(
                CloseCode::POLICY_VIOLATION,
                "Custom exception",
            ))
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn handler_results_become_exact_closes() {
    let (url, _stop) = start(error_server()).await;
    let cases: [(&str, u16, &str); 7] = [
        ("/ok", 1000, ""),
        ("/close", 4001, "closing with 4001"),
        ("/close-through-tether-error", 4001, "closing with 4001"),
        ("/unsendable", 1011, "internal error"),
        ("/custom", 1008, "Custom exception"),
        ("/wrapped", 1008, "Custom exception"),
        ("/internal-message", 1011, "internal error"),
    ];
    for (path, code, reason) in cases {
        let (mut client, _) = connect(&format!("{url}{path}")).await.unwrap();
        let info = close_of(&mut client).await;
        assert_eq!(frame(&info), (code, reason.to_owned()), "{path}");
        assert_eq!(info.initiated_by, Side::Remote, "{path}");
    }
}

#[tokio::test]
async fn unmapped_errors_and_panics_close_with_1011_and_nothing_internal() {
    let (url, _stop) = start(error_server()).await;
    for path in ["/internal", "/panic"] {
        let (mut client, _) = connect(&format!("{url}{path}")).await.unwrap();
        client.send(Message::text("go")).await.unwrap();
        let info = close_of(&mut client).await;
        assert_eq!(frame(&info), (1011, "internal error".to_owned()), "{path}");
    }
    // The server is still serving after a panic.
    let (mut client, _) = connect(&format!("{url}/close")).await.unwrap();
    assert_eq!(close_of(&mut client).await.reason.display_code(), 4001);
}

#[tokio::test]
async fn a_returned_app_error_sends_the_message_then_closes_with_its_code() {
    let (url, _stop) = start(error_server()).await;
    for path in ["/app", "/app-through-tether-error", "/app-through-box"] {
        let (mut client, _) = connect(&format!("{url}{path}")).await.unwrap();
        expect_app_error_then_close(&mut client).await;
    }
}

async fn expect_app_error_then_close(client: &mut Client) {
    let Ok(Some(Message::Text(text))) = client.recv().await else {
        panic!("expected the error message");
    };
    let json: Value = serde_json::from_str(text.as_str()).unwrap();
    assert_eq!(json["type"], "error");
    assert_eq!(json["data"]["code"], 4001);
    assert_eq!(json["data"]["message"], "Room not found");
    assert_eq!(json["meta"]["request_id"], "abc-123");
    assert!(
        text.as_str()
            .starts_with(r#"{"type":"error","data":{"code":4001,"#)
    );
    let info = close_of(client).await;
    assert_eq!(frame(&info), (4001, "Room not found".to_owned()));
}

/// A route whose handler reports how its receive loop ended.
fn caught_server(report: mpsc::UnboundedSender<String>) -> Server<()> {
    let route = |caught: CaughtCloseCodes| {
        let report = report.clone();
        Route::new(move |mut socket: Socket| {
            let report = report.clone();
            async move {
                let outcome = loop {
                    match socket.recv().await {
                        Ok(Some(_)) => continue,
                        Ok(None) => break "quiet".to_owned(),
                        Err(error) => {
                            let code = error.close_info().map(|info| info.reason.display_code());
                            break format!("{:?} {:?}", error.kind(), code);
                        }
                    }
                };
                report.send(outcome).unwrap();
                Ok::<_, tether::Error>(())
            }
        })
        .caught_close_codes(caught)
    };
    Server::builder()
        .route_with("/default", route(CaughtCloseCodes::default()))
        .route_with("/all", route(CaughtCloseCodes::all()))
        .route_with("/none", route(CaughtCloseCodes::none()))
        .route_with("/only4000", route(CaughtCloseCodes::only([4000])))
        .build()
        .unwrap()
}

#[tokio::test]
async fn caught_close_codes_decide_which_disconnects_are_quiet() {
    let (report, mut reports) = mpsc::unbounded_channel();
    let (url, _stop) = start(caught_server(report)).await;
    let cases: [(&str, Option<u16>, &str); 8] = [
        ("/default", Some(1000), "quiet"),
        ("/default", Some(1001), "quiet"),
        ("/default", Some(4000), "ConnectionClosed Some(4000)"),
        ("/default", None, "ConnectionClosed Some(1006)"),
        ("/all", Some(4000), "quiet"),
        ("/all", None, "quiet"),
        ("/none", Some(1000), "ConnectionClosed Some(1000)"),
        ("/only4000", Some(4000), "quiet"),
    ];
    for (path, code, expected) in cases {
        let (mut client, _) = connect(&format!("{url}{path}")).await.unwrap();
        match code {
            Some(code) => {
                client
                    .close(CloseCode::new(code).unwrap(), "bye")
                    .await
                    .unwrap();
            }
            None => drop(client), // the TCP connection ends without a close frame
        }
        let outcome = tokio::time::timeout(Duration::from_secs(5), reports.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(outcome, expected, "{path} closed with {code:?}");
    }
}

async fn next_json(client: &mut Client) -> Value {
    let Ok(Some(Message::Text(text))) = client.recv().await else {
        panic!("expected a text message");
    };
    serde_json::from_str(text.as_str()).unwrap()
}

#[tokio::test]
async fn error_messages_follow_the_registry_and_the_socket_stays_safe() {
    let (report, mut reports) = mpsc::unbounded_channel::<String>();
    let server = Server::builder()
        .route("/errors", move |mut socket: Socket| {
            let report = report.clone();
            async move {
                // Recoverable: the connection stays open.
                socket
                    .report(AppError::invalid_action("Room is closed").with_request_id("r1"))
                    .await?;
                socket
                    .send_error(AppError::rate_limited(
                        "Slow down",
                        Duration::from_millis(1500),
                    ))
                    .await?;
                assert_eq!(socket.state(), ConnectionState::Open);
                socket.recv().await?; // the client's go-ahead
                // Fatal (4003): the message, then close 4003.
                socket
                    .send_error(AppError::unauthorized("Token expired"))
                    .await?;
                assert_ne!(socket.state(), ConnectionState::Open);
                // Sending after the close is a typed error that gives the message back.
                let error = socket.send(Message::text("late")).await.unwrap_err();
                report.send(format!("{:?}", error.kind())).unwrap();
                let back = error.into_message() == Some(Message::text("late"));
                report.send(format!("message given back: {back}")).unwrap();
                // Closing again is harmless.
                socket.close(CloseCode::NORMAL, "again").await?;
                socket.close(CloseCode::NORMAL, "again").await?;
                report.send(format!("{:?}", socket.state())).unwrap();
                Ok::<_, tether::Error>(())
            }
        })
        .build()
        .unwrap();
    let (url, _stop) = start(server).await;
    let (mut client, _) = connect(&format!("{url}/errors")).await.unwrap();
    let first = next_json(&mut client).await;
    assert_eq!(first["data"]["code"], 4002);
    assert_eq!(first["meta"]["request_id"], "r1");
    let second = next_json(&mut client).await;
    assert_eq!(second["data"]["code"], 4005);
    assert_eq!(second["data"]["retry_after_ms"], 1500);
    assert_eq!(second["meta"]["request_id"].as_str().unwrap().len(), 16);
    client.send(Message::text("go")).await.unwrap();
    let third = next_json(&mut client).await;
    assert_eq!(third["data"]["code"], 4003);
    assert_eq!(third["data"]["message"], "Token expired");
    let info = close_of(&mut client).await;
    assert_eq!(frame(&info), (4003, "Token expired".to_owned()));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(
            tokio::time::timeout(Duration::from_secs(5), reports.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert_eq!(
        seen,
        ["ConnectionClosed", "message given back: true", "Closed"]
    );
}

#[tokio::test]
async fn a_handler_that_stops_reading_mid_stream_still_closes_cleanly() {
    let server = Server::builder()
        .route("/one", |mut socket: Socket| async move {
            let first = socket.recv().await?;
            socket.send(first.unwrap()).await?;
            Ok::<_, tether::Error>(())
        })
        .build()
        .unwrap();
    let (url, _stop) = start(server).await;
    let (mut client, _) = connect(&format!("{url}/one")).await.unwrap();
    client.send(Message::text("a")).await.unwrap();
    client.send(Message::text("b")).await.unwrap();
    assert_eq!(client.recv().await.unwrap().unwrap(), Message::text("a"));
    let info = close_of(&mut client).await;
    assert_eq!(
        info.reason,
        CloseReason::Frame(CloseFrame::new(CloseCode::NORMAL, ""))
    );
}

/// A log sink for one test: a `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct LogSink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test] // one thread: every task logs to this test's subscriber
async fn failures_are_logged_at_error_with_chain_route_peer_and_connection() {
    let sink = LogSink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let (url, _stop) = start(error_server()).await;
    for path in ["/wrapped-internal", "/internal", "/panic"] {
        let Ok((mut client, _)) = connect(&format!("{url}{path}")).await else {
            continue; // the unknown path is refused: it only adds a debug line
        };
        client.send(Message::text("go")).await.unwrap();
        close_of(&mut client).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let errors: Vec<&str> = logs.lines().filter(|line| line.contains("ERROR")).collect();
    assert_eq!(errors.len(), 2, "{logs}");
    assert!(errors[0].contains("route=/internal"), "{}", errors[0]);
    assert!(
        errors[0].contains("password=hunter2 refused"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("peer=127.0.0.1:"), "{}", errors[0]);
    assert!(errors[0].contains("connection="), "{}", errors[0]);
    assert!(errors[1].contains("route=/panic"), "{}", errors[1]);
    assert!(
        errors[1].contains("panic: secret panic detail"),
        "{}",
        errors[1]
    );
    // The refused path is not an error.
    assert!(logs.contains("handshake refused"), "{logs}");
}
