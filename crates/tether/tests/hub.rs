//! The hub: 1,000 members with one that never reads (everyone else gets every message in
//! order, the slow one meets the policy, nothing blocks), members that vanish are gone within
//! one heartbeat, membership counts always match a model under random joins, leaves and
//! disconnects, rooms owned and closed, and broadcasts across nodes on a `MemoryBus`.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tether::Message;
use tether::client::ClientBuilder;
use tether::hub::{Hub, HubConfig, HubError, MemoryBus, SlowConsumer};
use tether::server::{Server, Socket, State};
use tokio::net::TcpListener;

fn text(message: &Message) -> &str {
    message.as_text().unwrap()
}

async fn thousand_members_one_never_reads(policy: SlowConsumer) {
    const MEMBERS: usize = 1_000;
    const MESSAGES: usize = 400;
    let hub = Hub::new(
        HubConfig::default()
            .with_queue_capacity(64)
            .with_slow_consumer(policy),
    );
    hub.create_room("lobby", None).unwrap();
    let disconnects = Arc::new(AtomicUsize::new(0));
    let received = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    let mut slow = None;
    for index in 0..MEMBERS {
        let counter = Arc::clone(&disconnects);
        let (member, mut outbound) = hub.member(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        });
        let membership = hub.join(&member, "lobby").unwrap();
        if index == 0 {
            slow = Some((member, membership, outbound)); // never reads
            continue;
        }
        let received = Arc::clone(&received);
        readers.push(tokio::spawn(async move {
            let keep = (member, membership);
            for expected in 0..MESSAGES {
                let message = outbound.recv().await.unwrap();
                assert_eq!(text(&message), expected.to_string());
                received.fetch_add(1, Ordering::Relaxed);
            }
            keep // still a member until the checks below
        }));
    }
    let mut totals = (0, 0, 0);
    for n in 0..MESSAGES {
        let report = hub
            .broadcast("lobby", &Message::text(n.to_string()))
            .unwrap();
        totals.0 += report.delivered;
        totals.1 += report.dropped;
        totals.2 += report.disconnected;
        // Every 32 messages (half a queue), let the readers catch up, so that only the
        // member that never reads ever fills its queue. The broadcasts themselves never wait.
        if n % 32 == 31 {
            let target = (n + 1) * (MEMBERS - 1);
            let waited = tokio::time::Instant::now();
            while received.load(Ordering::Relaxed) < target {
                assert!(
                    waited.elapsed() < Duration::from_secs(20),
                    "readers stalled"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    let mut kept = Vec::new();
    for reader in readers {
        let joined = tokio::time::timeout(Duration::from_secs(20), reader).await;
        kept.push(joined.unwrap().unwrap());
    }
    let (slow_member, _membership, _outbound) = slow.unwrap();
    match policy {
        SlowConsumer::Disconnect => {
            assert_eq!(totals.2, 1, "disconnected exactly once");
            assert_eq!(disconnects.load(Ordering::SeqCst), 1);
            assert!(slow_member.was_disconnected());
            assert_eq!(hub.member_count("lobby"), Some(MEMBERS - 1));
            assert_eq!(totals.0, 64 + (MEMBERS - 1) * MESSAGES);
        }
        _ => {
            assert_eq!(
                totals.1,
                MESSAGES - 64,
                "everything past its queue is dropped"
            );
            assert_eq!(disconnects.load(Ordering::SeqCst), 0);
            assert_eq!(hub.member_count("lobby"), Some(MEMBERS));
            assert_eq!(totals.0, 64 + (MEMBERS - 1) * MESSAGES);
        }
    }
    let stats = hub.stats();
    assert_eq!(stats.broadcasts, MESSAGES as u64);
    assert_eq!(stats.fanout.count, MESSAGES as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_member_is_disconnected_and_everyone_else_gets_everything_in_order() {
    thousand_members_one_never_reads(SlowConsumer::Disconnect).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_member_can_lose_messages_instead() {
    thousand_members_one_never_reads(SlowConsumer::DropMessage).await;
}

#[tokio::test]
async fn dead_members_are_removed_by_the_next_broadcast_and_dropped_members_at_once() {
    let hub = Hub::default();
    hub.create_room("lobby", None).unwrap();
    let (alive, _alive_out) = hub.member(|| {});
    let _a = hub.join(&alive, "lobby").unwrap();
    let (dead, dead_out) = hub.member(|| {});
    let dead_membership = hub.join(&dead, "lobby").unwrap();
    drop(dead_out); // its connection ended, its guards not yet dropped
    let report = hub.broadcast("lobby", &Message::text("x")).unwrap();
    assert_eq!((report.delivered, report.removed), (1, 1));
    assert_eq!(hub.member_count("lobby"), Some(1));
    drop(dead_membership);
    drop(dead);
    let (gone, _out) = hub.member(|| {});
    let _membership = hub.join(&gone, "lobby").unwrap();
    assert_eq!(hub.member_count("lobby"), Some(2));
    drop(gone); // the member leaves every room when it drops, guards or not
    assert_eq!(hub.member_count("lobby"), Some(1));
}

#[tokio::test]
async fn rooms_have_owners_and_closing_one_ends_its_memberships() {
    let hub = Hub::default();
    hub.create_room("lobby", None).unwrap();
    assert_eq!(
        hub.create_room("lobby", Some("ann")),
        Err(HubError::RoomExists("lobby".into()))
    );
    hub.create_room("ann's", Some("ann")).unwrap();
    let (member, _out) = hub.member(|| {});
    let membership = hub.join(&member, "ann's").unwrap();
    assert_eq!(member.rooms(), ["ann's"]);
    assert_eq!(
        hub.close_room("ann's", Some("bob")),
        Err(HubError::NotOwner("ann's".into()))
    );
    assert_eq!(
        hub.close_room("lobby", Some("ann")),
        Err(HubError::NotOwner("lobby".into()))
    );
    assert_eq!(hub.close_room("ann's", Some("ann")), Ok(1));
    assert!(member.rooms().is_empty());
    assert_eq!(
        hub.broadcast("ann's", &Message::text("x")),
        Err(HubError::NoSuchRoom("ann's".into()))
    );
    assert!(matches!(
        hub.join(&member, "nowhere"),
        Err(HubError::NoSuchRoom(_))
    ));
    drop(membership); // harmless after the close
    assert_eq!(hub.rooms().len(), 1);
}

/// A tiny deterministic generator (xorshift64*), so failures replay.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

#[tokio::test]
async fn membership_counts_always_match_the_live_connections() {
    let rooms = ["a", "b", "c"];
    for seed in 1..=20u64 {
        let hub = Hub::new(HubConfig::default().with_queue_capacity(2));
        for room in rooms {
            hub.create_room(room, None).unwrap();
        }
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        // A live connection: its member, its outbound queue, its guards by room.
        type Conn = (
            tether::hub::Member,
            Option<tether::hub::Outbound>,
            HashMap<&'static str, tether::hub::Membership>,
        );
        let mut conns: Vec<Conn> = Vec::new();
        for step in 0..400 {
            match rng.below(6) {
                0 => {
                    let (member, out) = hub.member(|| {});
                    conns.push((member, Some(out), HashMap::new()));
                }
                1 | 2 if !conns.is_empty() => {
                    let index = rng.below(conns.len());
                    let room = rooms[rng.below(rooms.len())];
                    let conn = &mut conns[index];
                    if conn.1.is_some() && !conn.2.contains_key(room) && !conn.0.was_disconnected()
                    {
                        let membership = hub.join(&conn.0, room).unwrap();
                        conn.2.insert(room, membership);
                    }
                }
                3 if !conns.is_empty() => {
                    let index = rng.below(conns.len());
                    let room = rooms[rng.below(rooms.len())];
                    conns[index].2.remove(room); // leave
                }
                4 if !conns.is_empty() => {
                    let index = rng.below(conns.len());
                    conns.swap_remove(index); // the connection ends
                }
                _ => {
                    // A broadcast: queues of 2 fill up and slow members get disconnected.
                    let room = rooms[rng.below(rooms.len())];
                    hub.broadcast(room, &Message::text("m")).unwrap();
                    for conn in &mut conns {
                        if rng.below(2) == 0 {
                            if let Some(out) = conn.1.as_mut() {
                                while out.try_recv().is_some() {}
                            }
                        }
                    }
                }
            }
            // The model: a live, not disconnected member is in the rooms it holds guards for.
            for room in rooms {
                let expected = conns
                    .iter()
                    .filter(|conn| !conn.0.was_disconnected() && conn.2.contains_key(room))
                    .count();
                assert_eq!(
                    hub.member_count(room),
                    Some(expected),
                    "seed {seed} step {step} room {room}"
                );
            }
            for conn in &conns {
                let expected: HashSet<&str> = if conn.0.was_disconnected() {
                    HashSet::new()
                } else {
                    conn.2.keys().copied().collect()
                };
                let actual: Vec<String> = conn.0.rooms();
                let actual: HashSet<&str> = actual.iter().map(String::as_str).collect();
                assert_eq!(actual, expected, "seed {seed} step {step}");
            }
        }
    }
}

#[tokio::test]
async fn broadcasts_cross_nodes_on_the_bus_once_each_and_subscriptions_follow_members() {
    let bus = MemoryBus::new();
    let (plane_a, plane_b) = (bus.backplane(), bus.backplane());
    let node_a = Hub::with_backplane(HubConfig::default(), plane_a.clone());
    let node_b = Hub::with_backplane(HubConfig::default(), plane_b.clone());
    for hub in [&node_a, &node_b] {
        hub.create_room("lobby", None).unwrap();
    }
    let (on_a, mut out_a) = node_a.member(|| {});
    let (on_b, mut out_b) = node_b.member(|| {});
    assert!(plane_b.subscriptions().is_empty());
    let _ga = node_a.join(&on_a, "lobby").unwrap();
    let guard_b = node_b.join(&on_b, "lobby").unwrap();
    assert_eq!(plane_b.subscriptions(), ["lobby"]);
    for n in 0..5 {
        node_a
            .broadcast("lobby", &Message::text(format!("a{n}")))
            .unwrap();
        node_b
            .broadcast("lobby", &Message::text(format!("b{n}")))
            .unwrap();
    }
    let drain = |out: &mut tether::hub::Outbound| {
        let mut seen = Vec::new();
        while let Some(message) = out.try_recv() {
            seen.push(text(&message).to_owned());
        }
        seen
    };
    let expected: Vec<String> = (0..5)
        .flat_map(|n| [format!("a{n}"), format!("b{n}")])
        .collect();
    assert_eq!(drain(&mut out_a), expected);
    assert_eq!(drain(&mut out_b), expected);
    drop(guard_b);
    assert!(
        plane_b.subscriptions().is_empty(),
        "the last local member left"
    );
    node_a.broadcast("lobby", &Message::text("after")).unwrap();
    assert!(drain(&mut out_b).is_empty());
}

/// A connection in the room loop of the hub docs: it joins lobby, says there what its client
/// sends, and passes on what the room says.
async fn lobby(mut socket: Socket, State(hub): State<Hub>) -> Result<(), tether::Error> {
    let (member, mut outbound) = hub.member_for(&socket.sender());
    let _lobby = hub.join_or_create(&member, "lobby");
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming? {
                Some(message) => { let _ = hub.broadcast("lobby", &message); }
                None => return Ok(()),
            },
            Some(message) = outbound.recv() => socket.send(message).await?,
        }
    }
}

#[tokio::test]
async fn members_that_vanish_are_gone_within_one_heartbeat() {
    let hub = Hub::default();
    hub.create_room("lobby", None).unwrap();
    let server = Server::with_state(hub.clone())
        .route("/ws", lobby)
        .ping_interval(Duration::from_millis(100))
        .ping_timeout(Duration::from_millis(100))
        .close_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(server.serve_on(listener, std::future::pending()));
    let builder = ClientBuilder::new().no_proxy().ping_interval(None);
    let (mut reader, _) = builder.connect(&url).await.unwrap();
    let (silent, _) = builder.connect(&url).await.unwrap(); // never reads: never pongs
    let (abrupt, _) = builder.connect(&url).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hub.member_count("lobby"), Some(3));
    drop(abrupt); // the TCP connection ends without a close frame
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(hub.member_count("lobby"), Some(2));
    // The silent one is gone after a ping interval, its pong timeout and the close timeout.
    let waited = tokio::time::Instant::now();
    while hub.member_count("lobby") != Some(1) {
        assert!(
            waited.elapsed() < Duration::from_secs(2),
            "still {:?}",
            hub.member_count("lobby")
        );
        // The reader keeps answering pings.
        let _ = tokio::time::timeout(Duration::from_millis(20), reader.recv()).await;
    }
    hub.broadcast("lobby", &Message::text("still here"))
        .unwrap();
    let got = tokio::time::timeout(Duration::from_secs(2), reader.recv())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(got.as_text(), Some("still here"));
    drop(silent);
}

#[tokio::test]
async fn a_stale_guard_never_removes_a_newer_membership() {
    let hub = Hub::default();
    hub.create_room("r", Some("ann")).unwrap();
    let (member, mut out) = hub.member(|| {});
    let first = hub.join(&member, "r").unwrap();
    let second = hub.join(&member, "r").unwrap(); // joining again: this guard takes over
    drop(first);
    assert_eq!(hub.member_count("r"), Some(1));
    // The room closes (with a notice its members get) and a new one takes its name.
    let notice = Message::text("room_closed");
    assert_eq!(hub.close_room_with("r", Some("ann"), &notice), Ok(1));
    assert_eq!(out.try_recv().as_ref().map(text), Some("room_closed"));
    hub.create_room("r", None).unwrap();
    let third = hub.join(&member, "r").unwrap();
    drop(second); // from the closed room: must not touch the new one
    assert_eq!(hub.member_count("r"), Some(1));
    assert_eq!(member.rooms(), ["r"]);
    assert_eq!(hub.room_info("r").unwrap().owner, None);
    drop(third);
    assert_eq!(hub.member_count("r"), Some(0));
    assert!(member.rooms().is_empty());
}

/// One member writing 5,000 frames in one burst, under the default settings: the default rate
/// limit refuses most of the burst (4005) and closes the flooder (1008), and no healthy
/// member of the room is closed as a slow consumer.
#[tokio::test]
async fn one_members_burst_does_not_close_the_healthy_members() {
    const BURST: usize = 5_000;
    const HEALTHY: usize = 3;
    let hub = Hub::default();
    let server = Server::with_state(hub.clone())
        .route("/ws", lobby)
        .build()
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/ws", listener.local_addr().unwrap());
    tokio::spawn(server.clone().serve_on(listener, std::future::pending()));
    let builder = ClientBuilder::new().no_proxy();
    let mut healthy = Vec::new();
    for _ in 0..HEALTHY {
        let (client, _) = builder.connect(&url).await.unwrap();
        healthy.push(client);
    }
    let (mut flooder, _) = builder.connect(&url).await.unwrap();
    let waited = tokio::time::Instant::now();
    while hub.member_count("lobby") != Some(HEALTHY + 1) {
        assert!(waited.elapsed() < Duration::from_secs(5), "members missing");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Healthy members read everything, as fast as it comes, until "still here".
    let readers: Vec<_> = healthy
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                let mut seen = 0usize;
                loop {
                    match client.recv().await {
                        Ok(Some(message)) if message.as_text() == Some("still here") => {
                            return seen;
                        }
                        Ok(Some(_)) => seen += 1,
                        other => panic!("a healthy member ended: {other:?}"),
                    }
                }
            })
        })
        .collect();
    let flood = tokio::spawn(async move {
        for n in 0..BURST {
            if flooder
                .feed(Message::text(format!("flood {n}")))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = flooder.flush().await;
        // The flooder reads its 4005 errors until the server closes it.
        let mut rate_limited = 0usize;
        let end = loop {
            match flooder.recv().await {
                Ok(Some(message)) => {
                    let text = message.as_text().unwrap_or_default().to_owned();
                    if text.contains(r#""code":4005"#) {
                        rate_limited += 1;
                    }
                }
                other => break other,
            }
        };
        (rate_limited, end, flooder.close_info())
    });
    let (rate_limited, end, info) = tokio::time::timeout(Duration::from_secs(20), flood)
        .await
        .expect("the flood ends")
        .unwrap();
    assert!(rate_limited > 0, "no 4005 for the flooder");
    assert!(end.is_err(), "the flooder is closed with an error: {end:?}");
    assert_eq!(info.unwrap().reason.display_code(), 1008);
    hub.broadcast("lobby", &Message::text("still here"))
        .unwrap();
    for reader in readers {
        let seen = tokio::time::timeout(Duration::from_secs(20), reader)
            .await
            .expect("every healthy member gets the last message")
            .unwrap();
        assert!(
            seen >= 200,
            "the burst's first messages reached the room: {seen}"
        );
    }
    assert_eq!(hub.stats().disconnected, 0, "nobody was a slow consumer");
    let stats = server.stats();
    assert!(
        stats.rate_limited_messages >= rate_limited as u64,
        "{stats:?}"
    );
    assert!(stats.rate_limited_bytes > 0, "{stats:?}");
    assert_eq!(stats.rate_limit_closes, 1, "{stats:?}");
}
