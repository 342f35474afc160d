//! The opening handshake over real loopback TCP: accepted upgrades, malformed requests
//! answered with their exact HTTP status, rejections seen by the client with status, headers
//! and body, and both handshake timeouts.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::Duration;

use tether::client::{ClientBuilder, ClientConfig, connect};
use tether::server::{Accept, Reject, ServerConfig, accept};
use tether::{CloseCode, ErrorKind, Message, TimeoutPhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A listener on a free loopback port whose first connection is handed to `decide`.
async fn serve_once<F>(
    config: ServerConfig,
    decide: F,
) -> (String, JoinHandle<Result<(), tether::Error>>)
where
    F: FnOnce(&tether_proto::handshake::Request) -> Result<Accept, Reject> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let (mut socket, _) = accept(stream, &config, decide).await?;
        while let Some(message) = socket.recv().await? {
            socket.send(message).await?;
        }
        Ok(())
    });
    (format!("ws://{address}"), task)
}

/// Sends `request` on raw TCP and returns the whole response.
async fn raw_exchange(url: &str, request: &[u8]) -> String {
    let address = url.trim_start_matches("ws://");
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

#[tokio::test]
async fn client_and_server_agree_on_an_upgrade_and_a_subprotocol() {
    let (url, server) = serve_once(ServerConfig::default(), |request| {
        assert_eq!(request.path(), "/chat?room=lobby");
        Ok(request
            .select_protocol(&["v2.chat", "v1.chat"])
            .map(Accept::with_protocol)
            .unwrap_or_default())
    })
    .await;
    let config = ClientConfig::default()
        .with_protocol("v1.chat")
        .with_protocol("v2.chat");
    let (mut socket, response) = ClientBuilder::from(config.clone())
        .connect(&format!("{url}/chat?room=lobby"))
        .await
        .unwrap();
    assert_eq!(response.protocol.as_deref(), Some("v2.chat"));
    socket.send(Message::text("ping")).await.unwrap();
    assert_eq!(socket.recv().await.unwrap().unwrap(), Message::text("ping"));
    socket.close(CloseCode::NORMAL, "").await.unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn malformed_requests_get_their_exact_status() {
    let valid_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        (
            format!("POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {valid_key}\r\n\r\n"),
            "405",
            Some("allow: get"),
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: {valid_key}\r\n\r\n"),
            "426",
            Some("sec-websocket-version: 13"),
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n".to_owned(),
            "400",
            None,
        ),
        (
            "GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n".to_owned(),
            "400",
            None,
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {valid_key}\r\n\r\n"),
            "426",
            Some("upgrade: websocket"),
        ),
        (
            format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(9000)),
            "431",
            None,
        ),
        ("\x00\x01garbage\r\n\r\n".to_owned(), "400", None),
    ];
    for (request, status, header) in cases {
        let (url, server) = serve_once(ServerConfig::default(), |_| Ok(Accept::default())).await;
        let response = raw_exchange(&url, request.as_bytes()).await;
        assert!(
            response.starts_with(&format!("HTTP/1.1 {status} ")),
            "expected {status} for {request:?}, found {response:?}"
        );
        if let Some(header) = header {
            assert!(
                response.to_ascii_lowercase().contains(header),
                "{header} missing: {response:?}"
            );
        }
        // The body is a structured error message: code 4000, the reason in the message.
        let (_, body) = response.split_once("\r\n\r\n").unwrap();
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["type"], "error", "{response}");
        assert_eq!(body["data"]["code"], 4000, "{response}");
        assert!(!body["data"]["message"].as_str().unwrap().is_empty());
        assert!(body["meta"]["timestamp"].as_str().unwrap().ends_with('Z'));
        let error = server.await.unwrap().unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Protocol);
        assert_eq!(error.rejected_status().unwrap().to_string(), status);
    }
}

#[tokio::test]
async fn a_rejected_handshake_reaches_the_client_with_status_headers_and_body() {
    let (url, server) = serve_once(ServerConfig::default(), |_| {
        Err(Reject::error(401, "Unauthorized").with_header("WWW-Authenticate", "Bearer"))
    })
    .await;
    let error = connect(&url).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadStatus);
    let status = error.bad_status().unwrap();
    assert_eq!(status.status, 401);
    assert!(
        status.headers.iter().any(
            |(name, value)| name.eq_ignore_ascii_case("www-authenticate") && value == "Bearer"
        )
    );
    let body: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(body["data"]["code"], 4003);
    assert_eq!(body["data"]["message"], "Unauthorized");
    assert!(status.headers.iter().any(|(name, value)| {
        name.eq_ignore_ascii_case("content-type") && value == "application/json"
    }));
    let server_error = server.await.unwrap().unwrap_err();
    assert_eq!(server_error.kind(), ErrorKind::Rejected);
    assert_eq!(server_error.rejected_status(), Some(401));
}

#[tokio::test]
async fn a_client_that_never_finishes_its_request_is_dropped() {
    let config = ServerConfig::default().with_handshake_timeout(Duration::from_millis(200));
    let (url, server) = serve_once(config, |_| Ok(Accept::default())).await;
    let mut stream = TcpStream::connect(url.trim_start_matches("ws://"))
        .await
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let error = server.await.unwrap().unwrap_err();
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Handshake));
}

#[tokio::test]
async fn a_server_that_never_answers_times_the_client_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let _silent = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(stream);
    });
    let config = ClientConfig::default().with_handshake_timeout(Duration::from_millis(200));
    let error = ClientBuilder::from(config.clone())
        .connect(&format!("ws://{address}/"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Handshake));
}

#[tokio::test]
async fn a_refused_port_is_an_io_error_and_a_bad_url_an_address_error() {
    // Bind then drop to find a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let error = connect(&format!("ws://127.0.0.1:{port}/"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Io);
    let error = connect("http://127.0.0.1/").await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Address);
}
