//! The rooms' history shared through Redis: hubs on two nodes with history on and a
//! `RedisBackplane` against a real `redis-server` on loopback (started per test).
//!
//! - A member that drops out while the other node publishes 500 messages comes back, on
//!   either node, and gets exactly those 500, in order, then live ones, none twice.
//! - Members that recover while a publisher never stops see one contiguous run of offsets.
//! - Redis restarted without persistence: a new epoch, so recovery from before fails.
//! - Too many, too old: `recovered` false, never a partial set.
//! - Redis down: the publishing node's members still get its messages at once (in an epoch
//!   of the node's own), the other node gets them when Redis is back.
//! - A flood while Redis is healthy drops nothing, whatever the outage buffer's capacity.
//! - On a 3-node Redis Cluster, rooms on different shards keep and recover their history
//!   (the script's keys and channel share the room's slot).

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.
#![cfg(feature = "redis")]

#[path = "support/outbound.rs"]
mod outbound;
#[path = "support/redis.rs"]
mod redis_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tether::Message;
use tether::hub::{
    HistoryConfig, Hub, HubConfig, Member, Membership, Outbound, Position, RecoveryFailure,
    RedisBackplane, RedisOptions,
};

use outbound::{assert_quiet, receive, wait_until};
use redis_support::{RedisCluster, RedisServer};

const ROOM: &str = "lobby";
const SOON: Duration = Duration::from_secs(10);
/// How long "nothing more arrives" waits.
const QUIET: Duration = Duration::from_millis(200);

/// A hub with history on a Redis backplane; members get `EPOCH OFFSET TEXT`.
struct Node {
    hub: Hub,
    backplane: Arc<RedisBackplane>,
}

impl Node {
    async fn connect(redis: &RedisServer, id: &str, history: HistoryConfig) -> Self {
        Self::with(redis, RedisOptions::new().node_id(id), history).await
    }

    async fn with(redis: &RedisServer, options: RedisOptions, history: HistoryConfig) -> Self {
        Self::on_url(&redis.url(), options, history).await
    }

    async fn on_url(url: &str, options: RedisOptions, history: HistoryConfig) -> Self {
        logs();
        let backplane = RedisBackplane::connect(url, options).await.unwrap();
        let config = HubConfig::default()
            .with_queue_capacity(20_000)
            .with_history(history);
        let hub = Hub::with_backplane(config, backplane.clone());
        hub.set_stamp(|message: &Message, at: &Position| {
            Message::text(format!(
                "{} {} {}",
                at.epoch,
                at.offset,
                message.as_text().unwrap()
            ))
        });
        hub.create_room(ROOM, None).unwrap();
        Self { hub, backplane }
    }

    fn say(&self, text: &str) {
        self.hub.publish(ROOM, &Message::text(text)).unwrap();
    }

    async fn join(
        &self,
        since: Option<&Position>,
    ) -> (Member, Membership, Outbound, tether::hub::Recovery) {
        let (member, outbound) = self.hub.member(|| {});
        let (membership, recovery) = self.hub.join_since(&member, ROOM, since).await.unwrap();
        (member, membership, outbound, recovery)
    }
}

fn logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("tether=info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

fn history(size: usize) -> HistoryConfig {
    HistoryConfig::new(size, Duration::from_secs(300))
}

/// `(epoch, offset, text)` of a delivered message.
fn parse(message: &Message) -> (String, u64, String) {
    let text = message.as_text().unwrap();
    let mut parts = text.splitn(3, ' ');
    let epoch = parts.next().unwrap().to_owned();
    let offset = parts.next().unwrap().parse().unwrap();
    (epoch, offset, parts.next().unwrap_or_default().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_back_on_either_node_gets_exactly_what_it_missed() {
    let redis = RedisServer::start();
    let a = Node::connect(&redis, "a", history(1000)).await;
    let b = Node::connect(&redis, "b", history(1000)).await;
    let (_ma, _ga, mut out_a, plain) = a.join(None).await;
    assert_eq!(plain.position.offset, 0);
    let (mb, gb, mut out_b, _) = b.join(None).await;
    assert_eq!(
        b.hub.position(ROOM).unwrap().epoch,
        plain.position.epoch,
        "one epoch for both nodes"
    );

    for index in 0..10 {
        a.say(&format!("before {index}"));
    }
    // Both nodes, the publisher's too, get the store's positions, in order.
    for out in [&mut out_a, &mut out_b] {
        let got: Vec<u64> = receive(out, 10, SOON)
            .await
            .iter()
            .map(|m| parse(m).1)
            .collect();
        assert_eq!(got, (1..=10).collect::<Vec<_>>());
    }
    let seen = b.hub.position(ROOM).unwrap();
    assert_eq!(seen.offset, 10);

    // b's member drops out; a publishes 500.
    drop(gb);
    drop(mb);
    drop(out_b);
    for index in 0..500 {
        a.say(&format!("missed {index}"));
    }
    let got = receive(&mut out_a, 500, SOON).await;
    assert_eq!(got.len(), 500);

    // Back on b: the 500, then live messages; then once more on a, from the same position
    // (it missed b's turn's live message too).
    for (node, missed_count) in [(&b, 500), (&a, 501)] {
        let (_m, _g, mut out, recovery) = node.join(Some(&seen)).await;
        assert!(recovery.recovered(), "{:?}", recovery.failure());
        let missed: Vec<(String, u64, String)> = recovery.missed().iter().map(parse).collect();
        assert_eq!(missed.len(), missed_count);
        for (index, (epoch, offset, text)) in missed.iter().enumerate() {
            assert_eq!((epoch.as_str(), *offset), (&*seen.epoch, 11 + index as u64));
            if index < 500 {
                assert_eq!(text, &format!("missed {index}"));
            }
        }
        assert_eq!(recovery.position.offset, 10 + missed_count as u64);
        assert_quiet(&mut out, QUIET).await;
        a.say("live");
        let live = receive(&mut out, 1, SOON).await;
        let (_, offset, text) = parse(&live[0]);
        assert_eq!(text, "live");
        assert_eq!(offset, recovery.position.offset + 1);
        assert_quiet(&mut out, QUIET).await;
        let _ = receive(&mut out_a, 1, SOON).await;
    }
    let stats = b.hub.stats().recovery;
    assert_eq!(
        (stats.attempted, stats.succeeded, stats.replayed),
        (1, 1, 500)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recoveries_racing_a_publisher_see_every_offset_once_in_order() {
    const MESSAGES: u64 = 3_000;
    let redis = RedisServer::start();
    let a = Node::connect(&redis, "a", history(MESSAGES as usize)).await;
    let b = Node::connect(&redis, "b", history(MESSAGES as usize)).await;
    // b is subscribed to the room before the publisher starts.
    let (_keep, _keep_guard, _keep_out, start) = b.join(None).await;
    let epoch = start.position.epoch.clone();
    let publisher = {
        let hub = a.hub.clone();
        tokio::spawn(async move {
            for index in 0..MESSAGES {
                hub.publish(ROOM, &Message::text(format!("m{index}")))
                    .unwrap();
                if index % 50 == 0 {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        })
    };
    let mut joins = Vec::new();
    let mut round = 0u64;
    while !publisher.is_finished() || joins.len() < 5 {
        round += 1;
        let now = b.hub.position(ROOM).unwrap().offset;
        let since = Position::new(epoch.clone(), now.saturating_sub((round * 37) % 300));
        let (member, membership, outbound, recovery) = b.join(Some(&since)).await;
        joins.push((since.offset, recovery, member, membership, outbound));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    publisher.await.unwrap();
    let mut replayed = 0;
    for (since, recovery, _member, _membership, outbound) in &mut joins {
        let since = *since;
        assert!(
            recovery.recovered(),
            "from {since}: {:?}",
            recovery.failure()
        );
        let mut all: Vec<u64> = recovery.missed().iter().map(|m| parse(m).1).collect();
        replayed += all.len();
        let expected_live = MESSAGES - recovery.position.offset;
        let live = receive(outbound, expected_live as usize, SOON).await;
        all.extend(live.iter().map(|m| parse(m).1));
        let expected: Vec<u64> = (since + 1..=MESSAGES).collect();
        assert!(
            all == expected,
            "from {since}: {} messages, not contiguous",
            all.len()
        );
        assert_quiet(outbound, QUIET).await;
    }
    let stats = b.hub.stats().recovery;
    assert_eq!(stats.succeeded, joins.len() as u64);
    assert_eq!(stats.replayed, replayed as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_without_persistence_starts_a_new_epoch() {
    let mut redis = RedisServer::start();
    let options = || RedisOptions::new().ping_interval(Duration::from_millis(100));
    let a = Node::with(&redis, options().node_id("a"), history(100)).await;
    let (_m, _g, mut out, _) = a.join(None).await;
    a.say("one");
    let (epoch, offset, _) = parse(&receive(&mut out, 1, SOON).await[0]);
    let seen = Position::new(epoch.clone(), offset);
    redis.restart();
    wait_until("reconnected", SOON, || {
        a.backplane.stats().reconnects >= 1 && a.hub.backplane_healthy()
    })
    .await;
    a.say("two");
    let (new_epoch, new_offset, _) = parse(&receive(&mut out, 1, SOON).await[0]);
    assert_ne!(new_epoch, epoch, "a new history");
    assert_eq!(new_offset, 1);
    let (_m2, _g2, _out2, recovery) = a.join(Some(&seen)).await;
    assert_eq!(recovery.failure(), Some(RecoveryFailure::EpochChanged));
    assert!(recovery.missed().is_empty());
    assert_eq!(recovery.position, Position::new(new_epoch, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_or_too_old_is_not_recovered() {
    let redis = RedisServer::start();
    let a = Node::connect(&redis, "a", HistoryConfig::new(5, Duration::from_secs(1))).await;
    let (_m, _g, mut out, start) = a.join(None).await;
    let start = start.position;
    for index in 0..5 {
        a.say(&format!("{index}"));
    }
    assert_eq!(receive(&mut out, 5, SOON).await.len(), 5);
    // Exactly the size: all there.
    let (_m1, _g1, _o1, recovery) = a.join(Some(&start)).await;
    assert_eq!(recovery.missed().len(), 5);
    a.say("5");
    assert_eq!(receive(&mut out, 1, SOON).await.len(), 1);
    let (_m2, _g2, _o2, recovery) = a.join(Some(&start)).await;
    assert_eq!(recovery.failure(), Some(RecoveryFailure::TooMany));
    assert!(recovery.missed().is_empty());
    // Older than the ttl.
    let after_one = Position::new(start.epoch.clone(), 1);
    tokio::time::sleep(Duration::from_millis(1_300)).await;
    let (_m3, _g3, _o3, recovery) = a.join(Some(&after_one)).await;
    assert_eq!(recovery.failure(), Some(RecoveryFailure::TooOld));
    // Nothing missed is still recovered, however old.
    let now = a.hub.position(ROOM).unwrap();
    let (_m4, _g4, _o4, recovery) = a.join(Some(&now)).await;
    assert!(recovery.recovered());
    let stats = a.hub.stats().recovery;
    assert_eq!((stats.too_many, stats.too_old), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_the_publishers_members_still_get_its_messages() {
    let mut redis = RedisServer::start();
    let options = || RedisOptions::new().ping_interval(Duration::from_millis(100));
    let a = Node::with(&redis, options().node_id("a"), history(100)).await;
    let b = Node::with(&redis, options().node_id("b"), history(100)).await;
    let (_ma, _ga, mut out_a, start) = a.join(None).await;
    let (_mb, _gb, mut out_b, _) = b.join(None).await;
    a.say("before");
    for out in [&mut out_a, &mut out_b] {
        assert_eq!(parse(&receive(out, 1, SOON).await[0]).1, 1);
    }
    // Up long enough for a health check after both nodes came: each knows the other is
    // there, and holds back what it buffered until the other is back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.stop();
    wait_until("a sees the outage", SOON, || !a.hub.backplane_healthy()).await;
    let (_m, _g, _o, recovery) = a.join(Some(&start.position)).await;
    assert_eq!(recovery.failure(), Some(RecoveryFailure::Unavailable));
    for index in 0..3 {
        a.say(&format!("alone {index}"));
    }
    let alone: Vec<(String, u64, String)> = receive(&mut out_a, 3, SOON)
        .await
        .iter()
        .map(parse)
        .collect();
    assert_eq!(alone.len(), 3, "delivered on a at once");
    assert_ne!(alone[0].0, *start.position.epoch, "in an epoch of a's own");
    assert_eq!(alone.iter().map(|m| m.1).collect::<Vec<_>>(), [1, 2, 3]);
    redis.restart();
    // b gets them once Redis is back, positioned by the store; a does not get them twice.
    let later: Vec<(String, u64, String)> = receive(&mut out_b, 3, SOON)
        .await
        .iter()
        .map(parse)
        .collect();
    assert_eq!(
        later.iter().map(|m| m.2.as_str()).collect::<Vec<_>>(),
        ["alone 0", "alone 1", "alone 2"]
    );
    assert_quiet(&mut out_a, QUIET).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_while_redis_is_healthy_drops_nothing() {
    let redis = RedisServer::start();
    let options = RedisOptions::new().node_id("a").buffer_capacity(4);
    let a = Node::with(&redis, options, history(100)).await;
    let b = Node::connect(&redis, "b", history(100)).await;
    let (_mb, _gb, mut out_b, _) = b.join(None).await;
    let (_ma, _ga, _out_a, _) = a.join(None).await;
    for index in 0..2_000 {
        a.say(&format!("{index}"));
    }
    let got = receive(&mut out_b, 2_000, SOON).await;
    assert_eq!(got.len(), 2_000);
    assert_eq!(parse(&got[1_999]).1, 2_000);
    assert_eq!(a.backplane.stats().buffer_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_on_every_shard_of_a_cluster_keep_and_recover_their_history() {
    let cluster = RedisCluster::start(3);
    // One room per primary.
    let mut rooms: Vec<(u16, String)> = Vec::new();
    for n in 0..64 {
        let room = format!("room-{n}");
        let owner = cluster.owner_of(cluster.keyslot(&format!("{{tether:room:{room}}}")));
        if !rooms.iter().any(|(known, _)| *known == owner) {
            rooms.push((owner, room));
        }
    }
    assert!(rooms.len() >= 2, "rooms on at least two shards: {rooms:?}");
    let url = cluster.url();
    let a = Node::on_url(&url, RedisOptions::new().node_id("a"), history(100)).await;
    let b = Node::on_url(&url, RedisOptions::new().node_id("b"), history(100)).await;
    for (owner, room) in &rooms {
        for node in [&a, &b] {
            node.hub.create_room(room, None).unwrap();
        }
        let (member, outbound) = b.hub.member(|| {});
        let (_guard, start) = b.hub.join_since(&member, room, None).await.unwrap();
        drop(outbound);
        for index in 0..20 {
            a.hub
                .publish(room, &Message::text(format!("{index}")))
                .unwrap();
        }
        // Recovered on b from the start: the 20, in order, with the shard's positions.
        let deadline = Instant::now() + SOON;
        let recovery = loop {
            let (again, _out) = b.hub.member(|| {});
            let (_g, recovery) = b
                .hub
                .join_since(&again, room, Some(&start.position))
                .await
                .unwrap();
            if recovery.position.offset == 20 || Instant::now() > deadline {
                break recovery;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            recovery.recovered(),
            "{room} on {owner}: {:?}",
            recovery.failure()
        );
        let texts: Vec<String> = recovery.missed().iter().map(|m| parse(m).2).collect();
        let expected: Vec<String> = (0..20).map(|index| format!("{index}")).collect();
        assert_eq!(texts, expected, "{room} on {owner}");
        // The keys live on the room's shard.
        let stream = format!("{{tether:room:{room}}}:history");
        assert_eq!(
            redis_support::cli(*owner, &["XLEN", &stream]),
            "20",
            "{room}"
        );
    }
}
