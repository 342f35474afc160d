//! The close handshake over the transport: who closes, what each side reads, timeouts, and
//! abnormal ends.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::Duration;

use bytes::BytesMut;
use tether::{
    CloseCode, CloseFrame, CloseReason, Config, ErrorKind, Message, Side, TimeoutPhase, WebSocket,
};
use tether_proto::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

fn pair(config: Config) -> (WebSocket<DuplexStream>, WebSocket<DuplexStream>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (
        WebSocket::from_upgraded(a, Role::Client, config, BytesMut::new()),
        WebSocket::from_upgraded(b, Role::Server, config, BytesMut::new()),
    )
}

#[tokio::test]
async fn client_initiated_close_ends_both_streams_with_the_code() {
    let (mut client, mut server) = pair(Config::default());
    let server_task = tokio::spawn(async move {
        let mut received = Vec::new();
        while let Some(message) = server.recv().await {
            received.push(message.unwrap());
        }
        (received, server.close_info().unwrap())
    });
    client.send(Message::text("last words")).await.unwrap();
    let frame = CloseFrame::new(CloseCode::new(4001).unwrap(), "room not found");
    client.close(Some(frame.clone())).await.unwrap();

    let (received, server_info) = server_task.await.unwrap();
    assert_eq!(received, vec![Message::text("last words")]);
    assert_eq!(server_info.initiated_by, Side::Remote);
    assert_eq!(server_info.reason, CloseReason::Frame(frame.clone()));
    let client_info = client.close_info().unwrap();
    assert_eq!(client_info.initiated_by, Side::Local);
    assert_eq!(client_info.reason, CloseReason::Frame(frame));
    // Closing again is harmless; sending gives the message back.
    client.close(None).await.unwrap();
    let error = client.send(Message::text("too late")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert_eq!(error.into_message(), Some(Message::text("too late")));
}

#[tokio::test]
async fn server_initiated_close_without_status() {
    let (mut client, mut server) = pair(Config::default());
    let client_task = tokio::spawn(async move {
        assert!(client.recv().await.is_none());
        client.close_info().unwrap()
    });
    server.close(None).await.unwrap();
    let info = client_task.await.unwrap();
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason, CloseReason::NoStatus);
    assert_eq!(info.reason.display_code(), 1005);
}

#[tokio::test]
async fn transport_ending_without_close_is_an_abnormal_closure() {
    let (client, mut server) = pair(Config::default());
    drop(client);
    let error = server.recv().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert!(error.is_abnormal_closure());
    assert_eq!(server.close_info().unwrap().reason, CloseReason::Abnormal);
    assert!(
        server.recv().await.is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn a_peer_that_never_answers_our_close_times_out() {
    let (a, mut raw_server) = tokio::io::duplex(1024);
    let config = Config::default().with_close_timeout(Duration::from_millis(200));
    let mut client = WebSocket::from_upgraded(a, Role::Client, config, BytesMut::new());
    let started = std::time::Instant::now();
    let error = client.close(Some(CloseFrame::normal())).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Close));
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The close frame did go out: 0x88, masked, 2-byte payload.
    let mut head = [0u8; 2];
    raw_server.read_exact(&mut head).await.unwrap();
    assert_eq!(head, [0x88, 0x82]);
}

#[tokio::test]
async fn a_protocol_violation_sends_its_close_code_then_ends_the_connection() {
    let (mut raw_client, b) = tokio::io::duplex(1024);
    let mut server = WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new());
    // An unmasked text frame from a client: 1002.
    raw_client
        .write_all(&[0x81, 0x02, b'h', b'i'])
        .await
        .unwrap();
    let error = server.recv().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Protocol);
    assert_eq!(
        error.protocol_error().unwrap().close_code(),
        CloseCode::PROTOCOL_ERROR
    );
    let mut reply = Vec::new();
    raw_client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(
        &reply[..4],
        &[0x88, reply[1], 0x03, 0xea],
        "close frame with 1002"
    );
    assert_eq!(
        server.close_info().unwrap().reason.code(),
        Some(CloseCode::PROTOCOL_ERROR)
    );
}

#[tokio::test]
async fn invalid_utf8_is_a_payload_error_closed_with_1007() {
    let (mut raw_client, b) = tokio::io::duplex(1024);
    let mut server = WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new());
    // Masked with a zero key, so the payload is as written.
    raw_client
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, 0xc3, 0x28])
        .await
        .unwrap();
    let error = server.recv().await.unwrap().unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Payload);
    let mut reply = Vec::new();
    raw_client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(&reply[2..4], &[0x03, 0xef], "close code 1007");
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009() {
    let config = Config::default().with_max_message_size(16);
    let (mut client, mut server) = pair(config);
    let server_task = tokio::spawn(async move { server.recv().await.unwrap().unwrap_err() });
    client.send(Message::binary(vec![0u8; 17])).await.unwrap();
    let error = server_task.await.unwrap();
    assert_eq!(error.kind(), ErrorKind::Payload);
    assert!(client.recv().await.is_none());
    let info = client.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason.code(), Some(CloseCode::MESSAGE_TOO_BIG));
}
