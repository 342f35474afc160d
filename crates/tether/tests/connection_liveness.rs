//! The heartbeat and the timeouts of the one live connection, over an in-memory duplex on
//! tokio's paused clock: pings go out on time, a missing pong closes with 1011, an idle
//! connection closes with 1001, a read timeout leaves the connection open. No wall-clock
//! waits: the clock jumps to each deadline.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::Duration;

use bytes::BytesMut;
use tether::{
    CloseCode, Config, ConnectionState, ErrorKind, Message, Role, TimeoutPhase, WebSocket,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::time::Instant;

/// A server connection on one end of a duplex; the other end is driven by hand as the client.
fn server(config: Config) -> (WebSocket, DuplexStream) {
    let (ours, theirs) = tokio::io::duplex(4096);
    (
        WebSocket::from_upgraded(ours, Role::Server, config, BytesMut::new()),
        theirs,
    )
}

/// Reads one unmasked frame from the server: its first byte and payload.
async fn read_frame(raw: &mut DuplexStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    raw.read_exact(&mut head).await.unwrap();
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    raw.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

/// A masked frame from the client (key 0: the payload as written).
fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![first, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

#[tokio::test(start_paused = true)]
async fn pings_go_out_every_interval_while_pongs_come_back() {
    let config = Config::default()
        .with_ping_interval(Duration::from_secs(20))
        .with_ping_timeout(Duration::from_secs(20));
    let (mut ws, mut raw) = server(config);
    let started = Instant::now();
    let receiving = tokio::spawn(async move { ws.recv().await.map(|m| m.map(|m| m.len())) });
    for n in 1..=3u32 {
        let (first, payload) = read_frame(&mut raw).await;
        assert_eq!(first, 0x89, "a ping");
        assert_eq!(started.elapsed(), Duration::from_secs(20) * n);
        raw.write_all(&client_frame(0x8a, &payload)).await.unwrap();
    }
    raw.write_all(&client_frame(0x81, b"hi")).await.unwrap();
    assert_eq!(receiving.await.unwrap().unwrap(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn a_missing_pong_closes_with_1011_at_the_deadline() {
    let config = Config::default()
        .with_ping_interval(Duration::from_secs(20))
        .with_ping_timeout(Duration::from_secs(5))
        .with_close_timeout(Duration::from_secs(1));
    let (mut ws, mut raw) = server(config);
    let started = Instant::now();
    let receiving = tokio::spawn(async move {
        let error = ws.recv().await.unwrap_err();
        (error, ws.close_info(), ws.state())
    });
    let (first, _) = read_frame(&mut raw).await;
    assert_eq!(first, 0x89);
    // No pong: the close comes at the ping's deadline.
    let (first, payload) = read_frame(&mut raw).await;
    assert_eq!(first, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1011);
    assert!(String::from_utf8_lossy(&payload[2..]).starts_with("ping timeout"));
    assert_eq!(started.elapsed(), Duration::from_secs(25));
    drop(raw); // the peer is gone for good
    let (error, info, state) = receiving.await.unwrap();
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Pong));
    let info = info.unwrap();
    assert_eq!(info.reason.code(), Some(CloseCode::INTERNAL_ERROR));
    assert_eq!(state, ConnectionState::Closed);
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_closes_with_1001_and_a_message_resets_the_clock() {
    let config = Config::default()
        .with_ping_interval(None)
        .with_idle_timeout(Duration::from_secs(30));
    let (mut ws, mut raw) = server(config);
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(20)).await;
    raw.write_all(&client_frame(0x81, b"hi")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("hi")));
    let receiving = tokio::spawn(async move { ws.recv().await.unwrap_err() });
    let (first, payload) = read_frame(&mut raw).await;
    assert_eq!(first, 0x88);
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(50),
        "30 s after the message"
    );
    // The client answers the close; the server ends the connection.
    raw.write_all(&client_frame(0x88, &1001u16.to_be_bytes()))
        .await
        .unwrap();
    let error = receiving.await.unwrap();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Idle));
}

#[tokio::test(start_paused = true)]
async fn a_read_timeout_reports_and_keeps_the_connection_open() {
    let config = Config::default()
        .with_ping_interval(None)
        .with_read_timeout(Duration::from_secs(3));
    let (mut ws, mut raw) = server(config);
    for _ in 0..2 {
        let error = ws.recv().await.unwrap_err();
        assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Read));
        assert_eq!(ws.state(), ConnectionState::Open);
    }
    raw.write_all(&client_frame(0x81, b"late")).await.unwrap();
    assert_eq!(ws.recv().await.unwrap(), Some(Message::text("late")));
}

#[tokio::test(start_paused = true)]
async fn recv_is_cancel_safe_across_heartbeats() {
    let config = Config::default()
        .with_ping_interval(Duration::from_secs(1))
        .with_ping_timeout(Duration::from_secs(10));
    let (mut ws, mut raw) = server(config);
    let client = tokio::spawn(async move {
        // Answers every ping, then sends one message after a while.
        for _ in 0..5 {
            let (first, payload) = read_frame(&mut raw).await;
            assert_eq!(first, 0x89);
            raw.write_all(&client_frame(0x8a, &payload)).await.unwrap();
        }
        raw.write_all(&client_frame(0x81, b"kept")).await.unwrap();
        raw
    });
    // A recv dropped every 300 ms loses nothing and keeps the heartbeat going.
    let message = loop {
        match tokio::time::timeout(Duration::from_millis(300), ws.recv()).await {
            Ok(received) => break received.unwrap(),
            Err(_) => continue,
        }
    };
    assert_eq!(message, Some(Message::text("kept")));
    drop(client.await.unwrap());
}
