//! Messages over the transport: echo, automatic pongs, and a sender shared by many tasks.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use bytes::BytesMut;
use tether::{CloseCode, Config, Message, WebSocket};
use tether_proto::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn pair() -> (WebSocket, WebSocket) {
    let (a, b) = tokio::io::duplex(8 * 1024);
    (
        WebSocket::from_upgraded(a, Role::Client, Config::default(), BytesMut::new()),
        WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new()),
    )
}

#[tokio::test]
async fn echo_text_and_binary_of_every_length_form() {
    let (mut client, mut server) = pair();
    tokio::spawn(async move {
        while let Ok(Some(message)) = server.recv().await {
            server.send(message).await.unwrap();
        }
    });
    for len in [0usize, 1, 125, 126, 65_535, 65_536, 300_000] {
        let text = Message::text("é".repeat(len / 2));
        client.send(text.clone()).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), text);
        let binary = Message::binary((0..len).map(|i| i as u8).collect::<Vec<_>>());
        client.send(binary.clone()).await.unwrap();
        assert_eq!(client.recv().await.unwrap().unwrap(), binary);
    }
}

/// A server writes a large payload straight from its buffer, after the frame header. Once it
/// is written, the connection must hold no reference to that buffer: often it is the receive
/// buffer the payload arrived in, which is then reused in place instead of reallocated, and an
/// idle connection must not pin it.
#[tokio::test]
async fn a_large_payload_is_let_go_once_written() {
    let (mut client, server) = pair();
    let payload = bytes::Bytes::from(vec![5u8; 100_000]);
    let reading = tokio::spawn(async move { client.recv().await.unwrap().unwrap().len() });
    server.send(Message::binary(payload.clone())).await.unwrap();
    assert_eq!(reading.await.unwrap(), 100_000);
    assert!(
        payload.is_unique(),
        "the connection still refers to a payload it has written"
    );
    drop(server);
}

#[tokio::test]
async fn pings_are_answered_while_receiving() {
    let (mut raw_client, b) = tokio::io::duplex(1024);
    let mut server = WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new());
    tokio::spawn(async move { while let Ok(Some(_)) = server.recv().await {} });
    // Masked ping "ab" with key 1,2,3,4.
    raw_client
        .write_all(&[0x89, 0x82, 1, 2, 3, 4, b'a' ^ 1, b'b' ^ 2])
        .await
        .unwrap();
    let mut pong = [0u8; 4];
    raw_client.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, [0x8A, 0x02, b'a', b'b']);
}

#[tokio::test]
async fn leftover_handshake_bytes_are_read_first() {
    let (a, mut raw_client) = tokio::io::duplex(1024);
    // A masked "hi" that arrived in the same read as the handshake request.
    let leftover = BytesMut::from(&[0x81, 0x82, 0, 0, 0, 0, b'h', b'i'][..]);
    let mut server = WebSocket::from_upgraded(a, Role::Server, Config::default(), leftover);
    assert_eq!(server.recv().await.unwrap().unwrap(), Message::text("hi"));
    raw_client.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_share_one_sender_without_corrupting_frames() {
    let (client, mut server) = pair();
    let client_tx = client.sender();
    let mut tasks = Vec::new();
    for task in 0..8u8 {
        let sender = client_tx.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..200u32 {
                let body = vec![task; 100 + (i as usize % 300)];
                sender.send(Message::binary(body)).await.unwrap();
            }
        }));
    }
    let mut counts = [0u32; 8];
    for _ in 0..8 * 200 {
        let message = server.recv().await.unwrap().unwrap();
        let payload = message.payload();
        let task = payload[0];
        assert!(
            payload.iter().all(|&b| b == task),
            "a frame was interleaved"
        );
        counts[task as usize] += 1;
    }
    assert_eq!(counts, [200; 8]);
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn fed_messages_wait_for_flush_and_go_out_together() {
    let (b, mut raw_client) = tokio::io::duplex(64 * 1024);
    let server = WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new());
    for text in ["one", "two", "three"] {
        server.feed(Message::text(text)).await.unwrap();
    }
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        raw_client.read(&mut byte),
    )
    .await;
    assert!(
        early.is_err(),
        "fed messages must not be written before flush"
    );
    server.flush().await.unwrap();
    let mut wire = [0u8; 5 + 5 + 7];
    raw_client.read_exact(&mut wire).await.unwrap();
    assert_eq!(&wire[..5], b"\x81\x03one");
    assert_eq!(&wire[5..10], b"\x81\x03two");
    assert_eq!(&wire[10..], b"\x81\x05three");
}

#[tokio::test]
async fn a_cancelled_large_send_resumes_intact_before_the_next_message() {
    // A pipe far smaller than the message, with nobody reading: the send cannot finish.
    let (a, b) = tokio::io::duplex(1024);
    let server = WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new());
    let mut client = WebSocket::from_upgraded(a, Role::Client, Config::default(), BytesMut::new());
    let big = Message::binary((0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let cancelled = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        server.send(big.clone()),
    )
    .await;
    assert!(cancelled.is_err(), "the send should still be blocked");
    let reader = tokio::spawn(async move {
        let first = client.recv().await.unwrap().unwrap();
        let second = client.recv().await.unwrap().unwrap();
        (first, second)
    });
    server.send(Message::text("after")).await.unwrap();
    let (first, second) = reader.await.unwrap();
    assert_eq!(first, big, "the interrupted message arrives whole");
    assert_eq!(second, Message::text("after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_socket_and_cancelled_sends_never_corrupt_or_reorder_frames() {
    // A pipe far smaller than the traffic, so writers queue behind a flusher, take over from
    // cancelled ones, and wait for the queue to drain.
    let (a, b) = tokio::io::duplex(2 * 1024);
    let client = WebSocket::from_upgraded(a, Role::Client, Config::default(), BytesMut::new());
    let mut server = WebSocket::from_upgraded(b, Role::Server, Config::default(), BytesMut::new());
    let sender = client.sender();
    let mut tasks = Vec::new();
    for task in 0..8u8 {
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..150u32 {
                let mut body = vec![task; 8 + (seq as usize * 37) % 3000];
                body[1..5].copy_from_slice(&seq.to_be_bytes());
                let send = sender.send(Message::binary(body));
                if seq % 7 == 3 {
                    // Cancel some sends part-way: a frame is either queued whole or not at all.
                    let _ = tokio::time::timeout(std::time::Duration::from_micros(50), send).await;
                } else {
                    send.await.unwrap();
                }
            }
        }));
    }
    let reader = tokio::spawn(async move {
        let mut last = [None::<u32>; 8];
        let mut received = 0;
        loop {
            let next =
                tokio::time::timeout(std::time::Duration::from_secs(10), server.recv()).await;
            let Some(message) = next
                .expect("the stream must end with the close, not hang")
                .unwrap()
            else {
                break;
            };
            let payload = message.payload().clone();
            let task = payload[0];
            assert!(
                payload.iter().skip(5).all(|&b| b == task),
                "a frame was corrupted"
            );
            let seq = u32::from_be_bytes(payload[1..5].try_into().unwrap());
            if let Some(previous) = last[task as usize] {
                assert!(seq > previous, "task {task}: {seq} after {previous}");
            }
            last[task as usize] = Some(seq);
            received += 1;
            if received % 50 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await; // a slow reader
            }
        }
        received
    });
    for task in tasks {
        task.await.unwrap();
    }
    sender.flush().await.unwrap();
    sender.close(CloseCode::NORMAL, "").await.unwrap();
    let received = reader.await.unwrap();
    drop(client);
    // Every non-cancelled send arrived (8 tasks x 129 of 150), plus any cancelled one that
    // was already queued.
    assert!(received >= 8 * 129, "only {received} messages arrived");
    assert!(received <= 8 * 150);
}
