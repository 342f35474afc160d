//! Compressed fan-out: one [`Hub::broadcast`] of a 1 KiB JSON-like text message to 1,000
//! members whose connections negotiated permessage-deflate without context takeover (what
//! `ServerBuilder::deflate(DeflateConfig::server())` answers), timed until every member's
//! connection has encoded and written it. Throughput is in elements = members.
//!
//! - `once`: members registered with [`Hub::member_for`], so the broadcast compresses the
//!   message once and every send reuses the compressed payload;
//! - `per_member`: the same connections registered with [`Hub::member`], which knows nothing
//!   of their compression, so every send compresses the message itself.
//!
//! Each member is a real server-side `WebSocket` over an in-memory duplex, opened by
//! `server::accept` with a client handshake written by hand; the client ends are drained of
//! raw bytes by a task each, without parsing, so only the server side's work is measured.
//! Member tasks run on a two-worker tokio runtime and send what their `Outbound` gives.

#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether::hub::{Hub, HubConfig, Member, Membership, Outbound};
use tether::server::{Accept, ServerConfig, accept};
use tether::{Config, DeflateConfig, Message, WebSocket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MEMBERS: usize = 1_000;
const ROOM: &str = "room";
const WORKERS: usize = 2;

/// A chat-like JSON message of about 1 KiB.
fn message() -> Message {
    let mut text = String::from("[");
    let mut i = 0u64;
    while text.len() < 1000 {
        text.push_str(&format!(
            "{{\"type\":\"message\",\"room\":\"lobby\",\"from\":\"user{}\",\"offset\":{},\"text\":\"hello {}\"}},",
            i % 7,
            1_000_000 + i * 7919,
            i * 104_729 % 9973
        ));
        i += 1;
    }
    text.truncate(1024);
    Message::text(text)
}

/// A server-side connection that negotiated permessage-deflate; the client end is drained.
async fn connection(config: &ServerConfig) -> WebSocket {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let request = "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    client.write_all(request.as_bytes()).await.expect("write");
    let (ws, _) = accept(server, config, |_| Ok(Accept::default()))
        .await
        .expect("the handshake");
    assert!(ws.deflate().is_some(), "deflate negotiated");
    tokio::spawn(async move {
        let mut sink = vec![0u8; 64 * 1024];
        while matches!(client.read(&mut sink).await, Ok(1..)) {}
    });
    ws
}

/// A room of connections whose tasks send what their queues give, counting the sends.
struct Room {
    hub: Hub,
    _members: Vec<(Member, Membership)>,
    sent: Arc<AtomicU64>,
}

async fn room(once: bool) -> Room {
    let config = ServerConfig::default().with_transport(
        Config::default()
            .with_ping_interval(None)
            .with_deflate(DeflateConfig::server()),
    );
    let hub = Hub::new(HubConfig::default().with_queue_capacity(64));
    hub.create_room(ROOM, None).expect("a new room");
    let sent = Arc::new(AtomicU64::new(0));
    let mut members = Vec::with_capacity(MEMBERS);
    for _ in 0..MEMBERS {
        let ws = connection(&config).await;
        let (member, outbound): (Member, Outbound) = if once {
            hub.member_for(&ws.sender())
        } else {
            hub.member(|| {})
        };
        let membership = hub.join(&member, ROOM).expect("the room exists");
        members.push((member, membership));
        let sent = Arc::clone(&sent);
        let mut outbound = outbound;
        tokio::spawn(async move {
            while let Some(message) = outbound.recv().await {
                if ws.send(message).await.is_err() {
                    return;
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    Room {
        hub,
        _members: members,
        sent,
    }
}

fn fan_out(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("broadcast_deflate");
    group.throughput(Throughput::Elements(MEMBERS as u64));
    for (name, once) in [("once", true), ("per_member", false)] {
        // A buffer of its own per variant: a payload compressed once stays findable for a
        // while, and must not serve the other variant's sends.
        let message = message();
        let room = runtime.block_on(room(once));
        group.bench_function(BenchmarkId::new(name, MEMBERS), |b| {
            b.iter_custom(|iters| {
                let hub = room.hub.clone();
                let sent = Arc::clone(&room.sent);
                let message = message.clone();
                runtime
                    .block_on(runtime.spawn(async move {
                        let mut timed = Duration::ZERO;
                        for _ in 0..iters {
                            let target = sent.load(Ordering::Acquire) + MEMBERS as u64;
                            let started = Instant::now();
                            let report = hub.broadcast(ROOM, &message).expect("the room");
                            assert_eq!(report.delivered, MEMBERS, "{report:?}");
                            while sent.load(Ordering::Acquire) < target {
                                tokio::task::yield_now().await;
                            }
                            timed += started.elapsed();
                        }
                        timed
                    }))
                    .expect("the broadcaster")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, fan_out);
criterion_main!(benches);
