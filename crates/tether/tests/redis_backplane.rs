//! The Redis backplane against real Redis, started by each test on a free loopback port
//! (`support/redis.rs`): two and three hubs whose members all get every broadcast exactly
//! once and in each sender's order (text and binary kept apart); subscriptions that follow
//! local membership in namespaced channels; rooms spread over the shards of a real 3-node
//! Redis Cluster, and one whose slot moves to another shard; Redis killed mid-run and
//! started again on the same port (local delivery goes on, the outage buffer is flushed, a
//! tiny buffer counts what it drops), and killed in the middle of a stream of broadcasts
//! (none lost, none repeated); Redis unreachable at startup (a quick clear error, or a
//! degraded start that recovers).
//!
//! Redis pub/sub delivers only to the subscribers of the moment, so each test waits until
//! every backplane has its subscriptions confirmed before it counts. Every wait is bounded.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.
#![cfg(feature = "redis")]

#[path = "support/outbound.rs"]
mod outbound;
#[path = "support/redis.rs"]
mod redis_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use outbound::{assert_quiet, receive, wait_until};
use redis_support::{RedisCluster, RedisServer, free_port};
use tether::Message;
use tether::hub::{
    Backplane, BackplaneErrorKind, Hub, HubConfig, Member, Membership, Outbound, RedisBackplane,
    RedisOptions,
};
use tokio::time::Instant;

/// How long anything that should happen soon may take.
const SOON: Duration = Duration::from_secs(10);
/// How long to watch for a message that must not come.
const QUIET: Duration = Duration::from_millis(300);

/// The backplane's logs, shown when a test fails (`RUST_LOG` overrides the filter).
fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tether=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A hub on a Redis backplane.
struct Node {
    hub: Hub,
    backplane: Arc<RedisBackplane>,
}

impl Node {
    async fn connect(url: &str, options: RedisOptions) -> Self {
        let backplane = RedisBackplane::connect(url, options).await.unwrap();
        Self::on(backplane)
    }

    fn on(backplane: Arc<RedisBackplane>) -> Self {
        let config = HubConfig::default().with_queue_capacity(8192);
        let hub = Hub::with_backplane(config, backplane.clone());
        Self { hub, backplane }
    }

    /// A member in each of `rooms` (created when missing).
    fn member(&self, rooms: &[&str]) -> (Member, Vec<Membership>, Outbound) {
        let (member, outbound) = self.hub.member(|| {});
        let memberships = rooms
            .iter()
            .map(|room| {
                if !self.hub.has_room(room) {
                    self.hub.create_room(room, None).unwrap();
                }
                self.hub.join(&member, room).unwrap()
            })
            .collect();
        (member, memberships, outbound)
    }
}

/// Waits until every node's backplane has confirmed its subscription to every room.
async fn wait_subscribed(nodes: &[&Node], rooms: &[&str]) {
    wait_until("every node subscribed", SOON, || {
        nodes.iter().all(|node| {
            let subscribed = node.backplane.subscriptions();
            rooms
                .iter()
                .all(|room| subscribed.iter().any(|s| s == room))
        })
    })
    .await;
}

fn body(message: &Message) -> String {
    String::from_utf8(message.payload().to_vec()).unwrap()
}

/// Broadcast `index` of `sender`: text when even, binary when odd, `sender:index` either way.
fn numbered(sender: &str, index: usize) -> Message {
    let body = format!("{sender}:{index}");
    if index % 2 == 0 {
        Message::text(body)
    } else {
        Message::binary(body.into_bytes())
    }
}

/// Checks that `messages` hold `0..count` of each sender exactly once, each sender's in order,
/// each text or binary as it was sent.
fn assert_each_senders_order(messages: &[Message], senders: &[&str], count: usize, who: &str) {
    let mut by_sender: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for message in messages {
        let text = body(message);
        let (sender, index) = text.rsplit_once(':').unwrap();
        let index: usize = index.parse().unwrap();
        assert_eq!(
            message.is_text(),
            index % 2 == 0,
            "{who}: {text} changed kind on the way"
        );
        by_sender.entry(sender.to_owned()).or_default().push(index);
    }
    let expected: Vec<usize> = (0..count).collect();
    for sender in senders {
        let got = by_sender.remove(*sender).unwrap_or_default();
        assert_eq!(got, expected, "{who}: the broadcasts of {sender}");
    }
    assert!(
        by_sender.is_empty(),
        "{who}: unexpected senders {by_sender:?}"
    );
}

/// `nodes` hubs with two members each in `lobby`; each node broadcasts `count` messages, all
/// at once; every member sees all of them once, in each sender's order.
async fn every_member_gets_every_message_once(nodes: usize, count: usize) {
    logs();
    let redis = RedisServer::start();
    let names: Vec<String> = (0..nodes).map(|n| format!("node{n}")).collect();
    let mut hubs = Vec::new();
    for name in &names {
        hubs.push(Node::connect(&redis.url(), RedisOptions::new().node_id(name.clone())).await);
    }
    let mut members = Vec::new();
    for node in &hubs {
        for _ in 0..2 {
            members.push(node.member(&["lobby"]));
        }
    }
    let refs: Vec<&Node> = hubs.iter().collect();
    wait_subscribed(&refs, &["lobby"]).await;

    let mut senders = Vec::new();
    for (node, name) in hubs.iter().zip(&names) {
        let hub = node.hub.clone();
        let name = name.clone();
        senders.push(tokio::spawn(async move {
            for index in 0..count {
                let report = hub.broadcast("lobby", &numbered(&name, index)).unwrap();
                assert_eq!(report.delivered, 2, "both local members, at once");
                if index % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for sender in senders {
        sender.await.unwrap();
    }
    let sender_names: Vec<&str> = names.iter().map(String::as_str).collect();
    for (index, (_, _, outbound)) in members.iter_mut().enumerate() {
        let messages = receive(outbound, nodes * count, SOON).await;
        assert_each_senders_order(&messages, &sender_names, count, &format!("member {index}"));
        assert_quiet(outbound, QUIET).await;
    }
    for node in &hubs {
        let stats = node.backplane.stats();
        assert!(stats.healthy);
        assert_eq!(stats.published, count as u64, "{stats:?}");
        assert_eq!(stats.received, ((nodes - 1) * count) as u64, "{stats:?}");
        assert_eq!(
            (stats.errors, stats.buffered, stats.buffer_dropped),
            (0, 0, 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_every_member_gets_every_broadcast_once_in_each_senders_order() {
    every_member_gets_every_message_once(2, 500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_every_member_gets_every_broadcast_once_in_each_senders_order() {
    every_member_gets_every_message_once(3, 300).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_follow_local_members_in_namespaced_channels() {
    logs();
    let redis = RedisServer::start();
    let a = Node::connect(&redis.url(), RedisOptions::new().node_id("a")).await;
    let b = Node::connect(&redis.url(), RedisOptions::new().node_id("b")).await;
    let elsewhere = Node::connect(&redis.url(), RedisOptions::new().prefix("elsewhere")).await;
    assert_eq!(elsewhere.backplane.node_id().len(), 16, "a random node id");
    let (_a1, _ga, mut out_a) = a.member(&["lobby"]);
    let (b1, guard_b, mut out_b) = b.member(&["lobby"]);
    let (_e1, _ge, mut out_e) = elsewhere.member(&["lobby"]);
    wait_subscribed(&[&a, &b, &elsewhere], &["lobby"]).await;
    let channels = redis.cli(&["PUBSUB", "CHANNELS", "*"]);
    let channels: BTreeSet<&str> = channels.lines().collect();
    assert_eq!(
        channels,
        BTreeSet::from([
            "{tether:room:lobby}",
            "tether:nodes",
            "{elsewhere:room:lobby}",
            "elsewhere:nodes"
        ])
    );
    assert_eq!(
        redis.cli(&["PUBSUB", "NUMSUB", "{tether:room:lobby}"]),
        "{tether:room:lobby}\n2"
    );

    a.hub.broadcast("lobby", &Message::text("hello")).unwrap();
    assert_eq!(body(&receive(&mut out_b, 1, SOON).await[0]), "hello");
    assert_eq!(body(&receive(&mut out_a, 1, SOON).await[0]), "hello");
    assert_quiet(&mut out_a, QUIET).await; // not twice on its own node
    assert_quiet(&mut out_e, QUIET).await; // another prefix is another deployment

    // The last local member leaves: the node unsubscribes.
    drop(guard_b);
    wait_until("b unsubscribed", SOON, || {
        b.backplane.subscriptions().is_empty()
    })
    .await;
    assert_eq!(
        redis.cli(&["PUBSUB", "NUMSUB", "{tether:room:lobby}"]),
        "{tether:room:lobby}\n1"
    );
    a.hub.broadcast("lobby", &Message::text("gone")).unwrap();
    assert_eq!(body(&receive(&mut out_a, 1, SOON).await[0]), "gone");
    assert_quiet(&mut out_b, QUIET).await;
    assert_eq!(b1.rooms(), Vec::<String>::new());
    // Back in: subscribed again.
    let _again = b.hub.join(&b1, "lobby").unwrap();
    wait_subscribed(&[&b], &["lobby"]).await;
    a.hub.broadcast("lobby", &Message::text("back")).unwrap();
    assert_eq!(body(&receive(&mut out_b, 1, SOON).await[0]), "back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_different_shards_of_a_cluster_and_a_slot_that_moves() {
    logs();
    let cluster = RedisCluster::start(3);
    // One room per shard: channels that hash to slots owned by different primaries.
    let mut by_owner: BTreeMap<u16, (String, u16)> = BTreeMap::new();
    for n in 0..64 {
        let room = format!("room-{n}");
        let slot = cluster.keyslot(&format!("{{tether:room:{room}}}"));
        by_owner
            .entry(cluster.owner_of(slot))
            .or_insert((room, slot));
        if by_owner.len() == 3 {
            break;
        }
    }
    assert!(
        by_owner.len() >= 2,
        "rooms on at least two shards: {by_owner:?}"
    );
    let slots: BTreeSet<u16> = by_owner.values().map(|(_, slot)| *slot).collect();
    assert_eq!(slots.len(), by_owner.len(), "different slots");
    let rooms: Vec<&str> = by_owner.values().map(|(room, _)| room.as_str()).collect();

    let url = cluster.url();
    let names = ["n0", "n1", "n2"];
    let mut nodes = Vec::new();
    for name in names {
        nodes.push(Node::connect(&url, RedisOptions::new().node_id(name)).await);
    }
    let mut members: Vec<_> = nodes.iter().map(|node| node.member(&rooms)).collect();
    let refs: Vec<&Node> = nodes.iter().collect();
    wait_subscribed(&refs, &rooms).await;
    // Each room's channel has its subscribers on the primary that owns its slot (sharded).
    for (owner, (room, _)) in &by_owner {
        let channel = format!("{{tether:room:{room}}}");
        assert_eq!(
            redis_support::cli(*owner, &["PUBSUB", "SHARDNUMSUB", &channel]),
            format!("{channel}\n3"),
            "subscribers of {channel} on its shard"
        );
    }

    let count = 100;
    for index in 0..count {
        for (node, name) in nodes.iter().zip(names) {
            for room in &rooms {
                let sender = format!("{name}@{room}");
                node.hub.broadcast(room, &numbered(&sender, index)).unwrap();
            }
        }
    }
    let senders: Vec<String> = names
        .iter()
        .flat_map(|name| rooms.iter().map(move |room| format!("{name}@{room}")))
        .collect();
    let senders: Vec<&str> = senders.iter().map(String::as_str).collect();
    let total = names.len() * rooms.len() * count;
    for (index, (_, _, outbound)) in members.iter_mut().enumerate() {
        let messages = receive(outbound, total, SOON).await;
        assert_each_senders_order(&messages, &senders, count, &format!("node {index}"));
        assert_quiet(outbound, QUIET).await;
    }
    for node in &nodes {
        let stats = node.backplane.stats();
        assert!(stats.healthy);
        assert_eq!(stats.published, (rooms.len() * count) as u64);
        assert_eq!(stats.received, (2 * rooms.len() * count) as u64);
    }

    // Resharding: the first room's slot moves to another primary. Its old owner drops the
    // subscriptions (`sunsubscribe`), the backplanes subscribe again where it lives now.
    let (&from, (room, slot)) = by_owner.iter().next().unwrap();
    let to = cluster
        .nodes()
        .iter()
        .map(|node| node.port())
        .find(|&port| port != from)
        .unwrap();
    cluster.move_slot(*slot, to);
    let channel = format!("{{tether:room:{room}}}");
    wait_until("the subscriptions follow the slot", SOON, || {
        redis_support::cli(to, &["PUBSUB", "SHARDNUMSUB", &channel]) == format!("{channel}\n3")
    })
    .await;
    wait_subscribed(&refs, &rooms).await;
    for index in 0..count {
        nodes[0]
            .hub
            .broadcast(room, &numbered("moved", index))
            .unwrap();
    }
    for (index, (_, _, outbound)) in members.iter_mut().enumerate() {
        let messages = receive(outbound, count, SOON).await;
        assert_each_senders_order(&messages, &["moved"], count, &format!("node {index}"));
        assert_quiet(outbound, QUIET).await;
    }
    // A node's connection may see the slot leave under it (one error, one reconnect, as
    // seen about one run in eight); what matters is that it is healthy and lost nothing.
    for node in &nodes {
        let stats = node.backplane.stats();
        assert!(
            stats.healthy && stats.buffer_dropped == 0 && stats.errors <= stats.reconnects,
            "{stats:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_lost_mid_run_then_back_on_the_same_port() {
    logs();
    let mut redis = RedisServer::start();
    let url = redis.url();
    // Frequent health checks: each node soon knows how many nodes are up.
    let options = || RedisOptions::new().ping_interval(Duration::from_millis(100));
    let a = Node::connect(&url, options().node_id("a")).await;
    let b = Node::connect(&url, options().node_id("b")).await;
    // A node with a tiny buffer: an outage overflows it.
    let c = Node::connect(&url, options().node_id("c").buffer_capacity(3)).await;
    let (_a1, _ga, mut out_a) = a.member(&["lobby"]);
    let (_b1, _gb, mut out_b) = b.member(&["lobby"]);
    let (_c1, _gc, mut out_c) = c.member(&["lobby"]);
    wait_subscribed(&[&a, &b, &c], &["lobby"]).await;
    // Up long enough for a health check after the last node came.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.hub.broadcast("lobby", &Message::text("before")).unwrap();
    for out in [&mut out_a, &mut out_b, &mut out_c] {
        assert_eq!(body(&receive(out, 1, SOON).await[0]), "before");
    }

    redis.stop();
    wait_until("every node sees the outage", SOON, || {
        [&a, &b, &c]
            .iter()
            .all(|node| !node.hub.backplane_healthy())
    })
    .await;
    for index in 0..10 {
        let report = a.hub.broadcast("lobby", &numbered("a", index)).unwrap();
        assert_eq!(report.delivered, 1, "local delivery goes on");
        c.hub.broadcast("lobby", &numbered("c", index)).unwrap();
    }
    let local = receive(&mut out_a, 10, SOON).await;
    assert_each_senders_order(&local, &["a"], 10, "a's own member during the outage");
    let a_stats = a.backplane.stats();
    assert_eq!((a_stats.buffered, a_stats.buffer_dropped), (10, 0));
    assert!(!a_stats.healthy && a_stats.errors >= 1, "{a_stats:?}");
    let c_stats = c.backplane.stats();
    assert_eq!((c_stats.buffered, c_stats.buffer_dropped), (3, 7));

    // An outage long enough for the reconnection delays to grow.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let restarted = Instant::now();
    redis.restart();
    wait_until("every node healthy again", SOON, || {
        [&a, &b, &c].iter().all(|node| node.hub.backplane_healthy())
    })
    .await;
    println!("healthy again {:?} after the restart", restarted.elapsed());
    // The buffered broadcasts arrive: all of a's; the 3 newest of c's.
    let mut flushed = receive(&mut out_b, 13, SOON).await;
    println!("flushed {:?} after the restart", restarted.elapsed());
    let (from_a, from_c): (Vec<Message>, Vec<Message>) = flushed
        .drain(..)
        .partition(|message| body(message).starts_with("a:"));
    assert_each_senders_order(&from_a, &["a"], 10, "b, from a");
    let from_c: Vec<String> = from_c.iter().map(body).collect();
    assert_eq!(from_c, ["c:7", "c:8", "c:9"]);
    assert_quiet(&mut out_b, QUIET).await;

    // Cross-node delivery resumed by itself (every node subscribed again).
    b.hub.broadcast("lobby", &Message::text("after")).unwrap();
    let on_a: Vec<String> = receive(&mut out_a, 4, SOON)
        .await
        .iter()
        .map(body)
        .collect();
    assert_eq!(on_a, ["c:7", "c:8", "c:9", "after"]);
    let mut on_c = receive(&mut out_c, 21, SOON).await;
    assert_eq!(
        on_c.pop().map(|message| body(&message)).as_deref(),
        Some("after")
    );
    let (from_a, own): (Vec<Message>, Vec<Message>) = on_c
        .into_iter()
        .partition(|message| body(message).starts_with("a:"));
    assert_each_senders_order(&from_a, &["a"], 10, "c, from a");
    assert_each_senders_order(&own, &["c"], 10, "c's own member");
    assert_eq!(body(&receive(&mut out_b, 1, SOON).await[0]), "after");
    for out in [&mut out_a, &mut out_b, &mut out_c] {
        assert_quiet(out, QUIET).await;
    }
    for node in [&a, &b, &c] {
        let stats = node.backplane.stats();
        assert!(stats.healthy, "{stats:?}");
        assert!(stats.reconnects >= 1 && stats.errors >= 1, "{stats:?}");
        assert_eq!(stats.buffered, 0, "{stats:?}");
    }
    assert_eq!(c.backplane.stats().buffer_dropped, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_in_the_middle_of_a_stream_loses_no_broadcast_and_repeats_none() {
    logs();
    let mut redis = RedisServer::start();
    let url = redis.url();
    // A buffer big enough for the whole stream, frequent health checks.
    let options = || {
        RedisOptions::new()
            .buffer_capacity(100_000)
            .ping_interval(Duration::from_millis(100))
    };
    let a = Node::connect(&url, options().node_id("a")).await;
    let b = Node::connect(&url, options().node_id("b")).await;
    let (_a1, _ga, _out_a) = a.member(&["lobby"]);
    let (_b1, _gb, mut out_b) = b.member(&["lobby"]);
    wait_subscribed(&[&a, &b], &["lobby"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Batches in flight when Redis dies are sent again; b drops what it had already.
    let count = 8000;
    let hub = a.hub.clone();
    let stream = tokio::spawn(async move {
        for index in 0..count {
            hub.broadcast("lobby", &numbered("a", index)).unwrap();
            if index % 200 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    redis.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.restart();
    stream.await.unwrap();
    let messages = receive(&mut out_b, count, SOON).await;
    assert_each_senders_order(&messages, &["a"], count, "b");
    assert_quiet(&mut out_b, QUIET).await;
    let (sent, got) = (a.backplane.stats(), b.backplane.stats());
    assert_eq!((sent.published, got.received), (count as u64, count as u64));
    assert!(
        sent.reconnects >= 1 && got.reconnects >= 1,
        "{sent:?} {got:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_startup_is_a_quick_clear_error_or_a_degraded_start() {
    logs();
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let started = Instant::now();
    let error = RedisBackplane::connect(&url, RedisOptions::new())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), BackplaneErrorKind::Unreachable);
    let text = error.to_string();
    assert!(text.starts_with("redis at 127.0.0.1:"), "{text}");
    assert!(
        text.contains("unreachable") && !text.contains('\n'),
        "{text}"
    );
    assert!(std::error::Error::source(&error).is_some());
    let cluster = format!("redis+cluster://127.0.0.1:{port},127.0.0.1:{}", free_port());
    let started = Instant::now();
    let error = RedisBackplane::connect(&cluster, RedisOptions::new())
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(error.kind(), BackplaneErrorKind::Unreachable, "{error}");

    for bad in ["http://127.0.0.1:1", "redis+cluster://", "127.0.0.1:6379"] {
        let error = RedisBackplane::connect_degraded(bad, RedisOptions::new()).unwrap_err();
        assert_eq!(error.kind(), BackplaneErrorKind::InvalidUrl, "{bad}");
    }

    let degraded =
        Node::on(RedisBackplane::connect_degraded(&url, RedisOptions::new().node_id("d")).unwrap());
    assert!(!degraded.backplane.is_healthy());
    assert!(!degraded.hub.backplane_healthy());
    let (_d1, _gd, mut out_d) = degraded.member(&["lobby"]);
    degraded
        .hub
        .broadcast("lobby", &Message::text("early"))
        .unwrap();
    assert_eq!(body(&receive(&mut out_d, 1, SOON).await[0]), "early");
    assert_eq!(degraded.backplane.stats().buffered, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(degraded.backplane.stats().errors >= 1);

    let mut redis = RedisServer::stopped_on(port);
    redis.restart();
    let other = Node::connect(&url, RedisOptions::new().node_id("o")).await;
    let (_o1, _go, mut out_o) = other.member(&["lobby"]);
    wait_subscribed(&[&other], &["lobby"]).await;
    wait_until("the degraded node healthy", SOON, || {
        degraded.hub.backplane_healthy()
    })
    .await;
    wait_subscribed(&[&degraded], &["lobby"]).await;
    assert_eq!(body(&receive(&mut out_o, 1, SOON).await[0]), "early");
    other.hub.broadcast("lobby", &Message::text("hi")).unwrap();
    assert_eq!(body(&receive(&mut out_d, 1, SOON).await[0]), "hi");
    let stats = degraded.backplane.stats();
    assert_eq!((stats.reconnects, stats.buffered), (1, 0), "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_reports_the_health_of_each_shard() {
    logs();
    let cluster = RedisCluster::start(3);
    let options = RedisOptions::new()
        .node_id("a")
        .ping_interval(Duration::from_millis(100))
        .response_timeout(Duration::from_millis(500))
        .reconnect_backoff(Duration::from_millis(50), Duration::from_millis(200));
    let node = Node::connect(&cluster.url(), options).await;
    let ports: Vec<u16> = cluster.nodes().iter().map(|node| node.port()).collect();
    wait_until("three healthy shards", SOON, || {
        let shards = node.backplane.shards();
        shards.len() == 3 && shards.iter().all(|shard| shard.healthy)
    })
    .await;
    let shards = node.backplane.shards();
    assert_eq!(shards.iter().map(|shard| shard.slots).sum::<u32>(), 16_384);
    let mut addresses: Vec<String> = shards.iter().map(|shard| shard.address.clone()).collect();
    let mut expected: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    addresses.sort();
    expected.sort();
    assert_eq!(addresses, expected);

    // One primary goes away: the backplane is unhealthy and says which shard is.
    let down = format!("127.0.0.1:{}", ports[1]);
    let _ = redis_support::cli(ports[1], &["SHUTDOWN", "NOSAVE"]);
    let deadline = Instant::now() + SOON;
    loop {
        let shards = node.backplane.shards();
        let named = !node.backplane.is_healthy()
            && shards.len() == 3
            && shards
                .iter()
                .all(|shard| shard.healthy == (shard.address != down));
        if named {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{down} down, not named: {shards:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let shards = node.backplane.shards();
    let failed = shards.iter().find(|shard| shard.address == down).unwrap();
    assert!(failed.error.is_some(), "{failed:?}");

    // A single server is one shard.
    let redis = RedisServer::start();
    let single = Node::connect(&redis.url(), RedisOptions::new()).await;
    let shards = single.backplane.shards();
    assert_eq!(shards.len(), 1);
    assert!(shards[0].healthy);
    assert_eq!(shards[0].address, format!("127.0.0.1:{}", redis.port()));
}
