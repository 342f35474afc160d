//! The client's liveness over loopback: the read timeout (the connection survives it), the
//! heartbeat against a peer that never answers pings (pong timeout, close 1011), the write
//! timeout against a peer that never reads, a sender shared by many tasks, and sends after
//! the close.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::{Duration, Instant};

use tether::client::ClientBuilder;
use tether::server::{Server, Socket};
use tether::{CloseCode, ErrorKind, Message, TimeoutPhase};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

async fn echo_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    // Unlimited: the tests below send hundreds of messages at once.
    let server = Server::builder()
        .route("/ws", echo)
        .rate_limit(None)
        .build()
        .unwrap();
    tokio::spawn(server.serve_on(listener, std::future::pending()));
    url
}

/// A peer that completes the opening handshake by hand and then neither reads nor writes
/// until told; returns its URL and the accepted stream.
async fn silent_peer() -> (String, tokio::task::JoinHandle<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.unwrap());
        }
        let head = String::from_utf8(head).unwrap();
        let key = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .unwrap();
        let accept = tether_proto::handshake::accept_key(&key);
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
        );
        stream.write_all(response.as_bytes()).await.unwrap();
        stream
    });
    (url, task)
}

#[tokio::test]
async fn a_read_timeout_is_reported_and_the_connection_lives_on() {
    let url = echo_server().await;
    let (mut client, _) = ClientBuilder::new()
        .read_timeout(Duration::from_millis(200))
        .no_proxy()
        .connect(&url)
        .await
        .unwrap();
    let started = Instant::now();
    let error = client.recv().await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Read));
    assert!(started.elapsed() >= Duration::from_millis(150));
    client.send(Message::text("still open")).await.unwrap();
    assert_eq!(
        client.recv().await.unwrap().unwrap(),
        Message::text("still open")
    );
    // A second timeout comes a whole period later, not at once.
    let started = Instant::now();
    let error = client.recv().await.unwrap_err();
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Read));
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_peer_that_never_answers_pings_fails_with_a_pong_timeout_and_a_1011() {
    let (url, peer) = silent_peer().await;
    let (mut client, _) = ClientBuilder::new()
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(150))
        .close_timeout(Duration::from_millis(200))
        .no_proxy()
        .connect(&url)
        .await
        .unwrap();
    let started = Instant::now();
    let error = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Pong));
    assert!(error.is_retryable());
    assert!(started.elapsed() >= Duration::from_millis(250));
    // What the peer received: a ping, then a close frame with 1011.
    let mut stream = peer.await.unwrap();
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.read_to_end(&mut bytes)).await;
    assert_eq!(bytes[0], 0x89, "a ping first");
    let ping_len = usize::from(bytes[1] & 0x7f) + 2 + 4;
    let close = &bytes[ping_len..];
    assert_eq!(close[0], 0x88, "then a close");
    let mask = [close[2], close[3], close[4], close[5]];
    let payload: Vec<u8> = close[6..6 + usize::from(close[1] & 0x7f)]
        .iter()
        .enumerate()
        .map(|(i, byte)| byte ^ mask[i % 4])
        .collect();
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1011);
    assert!(String::from_utf8_lossy(&payload[2..]).starts_with("ping timeout"));
}

#[tokio::test]
async fn a_peer_that_never_reads_fails_sends_with_a_write_timeout() {
    let (url, peer) = silent_peer().await;
    let (client, _) = ClientBuilder::new()
        .write_timeout(Duration::from_millis(200))
        .ping_interval(None)
        .max_message_size(2 << 20)
        .no_proxy()
        .connect(&url)
        .await
        .unwrap();
    let _stream = peer.await.unwrap(); // kept open, never read
    let chunk = Message::binary(vec![7u8; 1 << 20]);
    let mut outcome = None;
    for _ in 0..256 {
        if let Err(error) = client.send(chunk.clone()).await {
            outcome = Some(error);
            break;
        }
    }
    let error = outcome.expect("the socket buffers should fill up");
    assert_eq!(error.kind(), ErrorKind::Timeout);
    assert_eq!(error.timeout_phase(), Some(TimeoutPhase::Write));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_sender_while_one_receives() {
    let url = echo_server().await;
    let (mut client, _) = ClientBuilder::new().no_proxy().connect(&url).await.unwrap();
    let mut senders = Vec::new();
    for task in 0..8 {
        let sender = client.sender();
        senders.push(tokio::spawn(async move {
            for n in 0..50 {
                sender
                    .send(Message::text(format!("{task}:{n}")))
                    .await
                    .unwrap();
            }
        }));
    }
    let mut last = [None::<u32>; 8];
    for _ in 0..400 {
        let message = client.recv().await.unwrap().unwrap();
        let (task, n) = message.as_text().unwrap().split_once(':').unwrap();
        let (task, n): (usize, u32) = (task.parse().unwrap(), n.parse().unwrap());
        // Each task's messages arrive in its order.
        assert_eq!(last[task].map_or(0, |prev| prev + 1), n);
        last[task] = Some(n);
    }
    for sender in senders {
        sender.await.unwrap();
    }
    client.close(CloseCode::NORMAL, "").await.unwrap();
    let error = client.send(Message::text("late")).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    assert_eq!(error.into_message(), Some(Message::text("late")));
    let error = client
        .sender()
        .send(Message::text("later"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
}

#[tokio::test]
async fn a_peer_that_resets_mid_message_is_an_abnormal_closure() {
    let (url, peer) = silent_peer().await;
    let (mut client, _) = ClientBuilder::new()
        .ping_interval(None)
        .no_proxy()
        .connect(&url)
        .await
        .unwrap();
    let mut stream = peer.await.unwrap();
    // A binary frame announcing 256 bytes, of which only 10 arrive; then a reset (RST).
    stream.write_all(&[0x82, 126, 0x01, 0x00]).await.unwrap();
    stream.write_all(&[0u8; 10]).await.unwrap();
    stream.set_zero_linger().unwrap();
    drop(stream);
    let error = tokio::time::timeout(Duration::from_secs(5), client.recv())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed, "{error}");
    assert!(error.is_abnormal_closure(), "{error}");
    assert!(error.is_retryable());
    assert!(
        error
            .to_string()
            .starts_with("connection closed abnormally"),
        "{error}"
    );
    let info = client.close_info().unwrap();
    assert_eq!(info.reason.display_code(), 1006);
    assert!(client.recv().await.unwrap().is_none());
}
