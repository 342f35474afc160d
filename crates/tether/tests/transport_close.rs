//! The close handshake over the transport: who closes, what each side reads, timeouts, and
//! abnormal ends.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::Duration;

use bytes::BytesMut;
use tether::{
    CloseCode, CloseFrame, CloseReason, Config, ErrorKind, Message, Side, TimeoutPhase, WebSocket,
};
use tether_proto::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pair(config: Config) -> (WebSocket, WebSocket) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (
        WebSocket::from_upgraded(a, Role::Client, config.clone(), BytesMut::new()),
        WebSocket::from_upgraded(b, Role::Server, config, BytesMut::new()),
    )
}

#[tokio::test]
async fn client_initiated_close_ends_both_streams_with_the_code() {
    let (mut client, mut server) = pair(Config::default());
    let server_task = tokio::spawn(async move {
        let mut received = Vec::new();
        // 4001 is not among the caught close codes: the end is an error that carries it.
        let error = loop {
            match server.recv().await {
                Ok(Some(message)) => received.push(message),
                Ok(None) => panic!("4001 ended the stream quietly"),
                Err(error) => break error,
            }
        };
        assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
        assert_eq!(error.close_info(), server.close_info().as_ref());
        (received, server.close_info().unwrap())
    });
    client.send(Message::text("last words")).await.unwrap();
    let frame = CloseFrame::new(CloseCode::new(4001).unwrap(), "room not found");
    client
        .close(frame.code, frame.reason.clone())
        .await
        .unwrap();

    let (received, server_info) = server_task.await.unwrap();
    assert_eq!(received, vec![Message::text("last words")]);
    assert_eq!(server_info.initiated_by, Side::Remote);
    assert_eq!(server_info.reason, CloseReason::Frame(frame.clone()));
    let client_info = client.close_info().unwrap();
    assert_eq!(client_info.initiated_by, Side::Local);
    assert_eq!(client_info.reason, CloseReason::Frame(frame));
    // Closing again is harmless; sending gives the message back.
    client.close(CloseCode::NORMAL, "").await.unwrap();
    assert!(client.recv().await.unwrap().is_none());
    let error = client.send(Message::text("too late")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert_eq!(error.into_message(), Some(Message::text("too late")));
}

/// A close frame without a status code (1005 on the receiving side) is a clean end by
/// default, as Python `websockets` treats it: `recv` ends quietly.
#[tokio::test]
async fn a_close_without_status_is_a_clean_end() {
    let (a, mut raw_server) = tokio::io::duplex(1024);
    let mut client = WebSocket::from_upgraded(a, Role::Client, Config::default(), BytesMut::new());
    raw_server.write_all(&[0x88, 0x00]).await.unwrap();
    let server = tokio::spawn(async move {
        // The client's reply: a masked close frame echoing no status.
        let mut reply = [0u8; 6];
        raw_server.read_exact(&mut reply).await.unwrap();
        assert_eq!(reply[..2], [0x88, 0x80]);
        drop(raw_server);
    });
    assert!(client.recv().await.unwrap().is_none());
    let info = client.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason, CloseReason::NoStatus);
    assert_eq!(info.reason.display_code(), 1005);
    server.await.unwrap();
}

#[tokio::test]
async fn transport_ending_without_close_is_an_abnormal_closure() {
    let (client, mut server) = pair(Config::default());
    drop(client);
    let error = server.recv().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert!(error.is_abnormal_closure());
    assert_eq!(error.close_info().unwrap().reason, CloseReason::Abnormal);
    assert_eq!(server.close_info().unwrap().reason, CloseReason::Abnormal);
    assert!(
        server.recv().await.unwrap().is_none(),
        "the stream ends after the error"
    );
}

#[tokio::test]
async fn a_peer_that_never_answers_our_close_times_out() {
    let (a, mut raw_server) = tokio::io::duplex(1024);
    let config = Config::default().with_close_timeout(Duration::from_millis(200));
    let mut client = WebSocket::from_upgraded(a, Role::Client, config, BytesMut::new());
    let started = std::time::Instant::now();
    let error = client.close(CloseCode::NORMAL, "").await.unwrap_err();
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
    let error = server.recv().await.unwrap_err();
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
    let error = server.recv().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Payload);
    let mut reply = Vec::new();
    raw_client.read_to_end(&mut reply).await.unwrap();
    assert_eq!(&reply[2..4], &[0x03, 0xef], "close code 1007");
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009() {
    let config = Config::default().with_max_message_size(16);
    let (mut client, mut server) = pair(config);
    let server_task = tokio::spawn(async move { server.recv().await.unwrap_err() });
    client.send(Message::binary(vec![0u8; 17])).await.unwrap();
    let error = server_task.await.unwrap();
    assert_eq!(error.kind(), ErrorKind::Payload);
    // 1009 is not a caught close code: the client hears of it as a disconnect error.
    let error = client.recv().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    let info = client.close_info().unwrap();
    assert_eq!(error.close_info(), Some(&info));
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason.code(), Some(CloseCode::MESSAGE_TOO_BIG));
}
