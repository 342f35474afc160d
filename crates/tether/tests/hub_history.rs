//! Room history and recovery: positions count from 1 in a random epoch, the hub's stamp
//! writes the position into what members get, `join_since` gives exactly what a member missed (or
//! says why it cannot: another epoch, an offset from the future, too many, too old, history
//! off), and, while a thread publishes 5,000 messages, every member that joins from some
//! position sees the missed messages then its queue as one contiguous run of offsets, each
//! once.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tether::Message;
use tether::hub::{
    HistoryConfig, Hub, HubConfig, MemoryBus, Outbound, Position, Published, Recovery,
    RecoveryFailure, RecoveryOutcome, RecoveryStats,
};

const ROOM: &str = "lobby";

fn hub_with(size: usize, ttl: Duration) -> Hub {
    let config = HubConfig::default()
        .with_queue_capacity(10_000)
        .with_history(HistoryConfig::new(size, ttl));
    let hub = Hub::new(config);
    stamp_offsets(&hub);
    hub.create_room(ROOM, None).unwrap();
    hub
}

/// Members get each publication as the text of its offset.
fn stamp_offsets(hub: &Hub) {
    hub.set_stamp(|_: &Message, at: &Position| Message::text(at.offset.to_string()));
}

fn hub(size: usize) -> Hub {
    hub_with(size, Duration::from_secs(300))
}

/// Publishes a message (members get its offset).
fn say(hub: &Hub) -> Published {
    hub.publish(ROOM, &Message::text("said")).unwrap()
}

/// The offset a publication took.
fn offset(published: &Published) -> u64 {
    published.position.as_ref().unwrap().offset
}

fn offset_of(message: &Message) -> u64 {
    message.as_text().unwrap().parse().unwrap()
}

fn offsets(messages: &[Message]) -> Vec<u64> {
    messages.iter().map(offset_of).collect()
}

fn drain(outbound: &mut Outbound) -> Vec<u64> {
    let mut all = Vec::new();
    while let Some(message) = outbound.try_recv() {
        all.push(offset_of(&message));
    }
    all
}

fn failure(recovery: &Recovery) -> RecoveryFailure {
    assert!(!recovery.recovered(), "{recovery:?}");
    assert!(recovery.missed().is_empty());
    recovery.failure().unwrap()
}

#[test]
fn positions_count_from_one_in_a_random_epoch_and_publish_sees_them() {
    let hub = hub(10);
    let start = hub.position(ROOM).unwrap();
    assert_eq!(start.offset, 0);
    assert!(
        start.epoch.len() == 16 && start.epoch.bytes().all(|b| b.is_ascii_hexdigit()),
        "{start:?}"
    );
    let (member, mut outbound) = hub.member(|| {});
    let _membership = hub.join(&member, ROOM).unwrap();
    hub.set_stamp(|message: &Message, at: &Position| {
        Message::text(format!(
            "{}@{}/{}",
            message.as_text().unwrap(),
            at.epoch,
            at.offset
        ))
    });
    for expected in 1..=3 {
        let published = hub.publish(ROOM, &Message::text("hi")).unwrap();
        assert_eq!(
            published.position,
            Some(Position::new(start.epoch.clone(), expected))
        );
        assert_eq!(published.report.delivered, 1);
        let got = outbound.try_recv().unwrap();
        assert_eq!(
            got.as_text().unwrap(),
            format!("hi@{}/{expected}", start.epoch)
        );
    }
    stamp_offsets(&hub);
    // A broadcast is a publication too: positions stay contiguous.
    hub.broadcast(ROOM, &Message::text("plain")).unwrap();
    assert_eq!(hub.position(ROOM).unwrap().offset, 4);
    assert_eq!(offset(&say(&hub)), 5);
    // Another room has its own epoch and count.
    hub.create_room("other", None).unwrap();
    let other = hub.position("other").unwrap();
    assert_eq!(other.offset, 0);
    assert_ne!(other.epoch, start.epoch);
    assert!(hub.position("missing").is_none());
}

#[tokio::test]
async fn join_since_gives_exactly_the_missed_messages_then_the_queue() {
    let hub = hub(100);
    let (member, mut outbound) = hub.member(|| {});
    let (membership, plain) = hub.join_since(&member, ROOM, None).await.unwrap();
    assert_eq!(plain.outcome, RecoveryOutcome::NotAsked);
    assert!(!plain.recovered());
    assert_eq!(plain.failure(), None);
    assert_eq!(plain.position.offset, 0);
    for _ in 0..3 {
        say(&hub);
    }
    assert_eq!(drain(&mut outbound), [1, 2, 3]);
    let seen = hub.position(ROOM).unwrap();
    drop(membership); // the connection is lost
    for _ in 0..7 {
        say(&hub);
    }
    let (_membership, recovery) = hub.join_since(&member, ROOM, Some(&seen)).await.unwrap();
    assert!(recovery.recovered());
    assert_eq!(offsets(recovery.missed()), [4, 5, 6, 7, 8, 9, 10]);
    assert_eq!(recovery.position.offset, 10);
    assert_eq!(recovery.position.epoch, seen.epoch);
    assert!(drain(&mut outbound).is_empty(), "nothing twice");
    say(&hub);
    assert_eq!(drain(&mut outbound), [11]);
    // Nothing missed: recovered, with nothing to replay.
    let (other, _) = hub.member(|| {});
    let now = hub.position(ROOM).unwrap();
    let (_m, recovery) = hub.join_since(&other, ROOM, Some(&now)).await.unwrap();
    assert_eq!(recovery.outcome, RecoveryOutcome::Recovered(Vec::new()));
    // The hub counted them (the plain join is not a recovery).
    let mut expected = RecoveryStats::default();
    expected.attempted = 2;
    expected.succeeded = 2;
    expected.replayed = 7;
    assert_eq!(hub.stats().recovery, expected);
}

#[tokio::test]
async fn a_room_created_again_has_a_new_epoch() {
    let hub = hub(100);
    say(&hub);
    let seen = hub.position(ROOM).unwrap();
    hub.close_room(ROOM, None).unwrap();
    let (member, mut outbound) = hub.member(|| {});
    let (_membership, recovery) = hub.join_or_create_since(&member, ROOM, Some(&seen)).await;
    assert_eq!(failure(&recovery), RecoveryFailure::EpochChanged);
    assert_ne!(recovery.position.epoch, seen.epoch);
    assert_eq!(recovery.position.offset, 0);
    // A failed recovery is still a join: later messages arrive.
    say(&hub);
    assert_eq!(drain(&mut outbound), [1]);
    // A position of another room altogether is another epoch too.
    let stranger = Position::new("0123456789abcdef", 1);
    let (_m, recovery) = hub
        .join_since(&member, ROOM, Some(&stranger))
        .await
        .unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::EpochChanged);
}

#[tokio::test]
async fn an_offset_from_the_future_is_another_epoch() {
    let hub = hub(100);
    say(&hub);
    let mut ahead = hub.position(ROOM).unwrap();
    ahead.offset += 1;
    let (member, _outbound) = hub.member(|| {});
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&ahead)).await.unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::EpochChanged);
    assert_eq!(recovery.position.offset, 1);
}

#[tokio::test]
async fn more_missed_than_the_size_is_too_many() {
    let hub = hub(5);
    let start = hub.position(ROOM).unwrap();
    for _ in 0..5 {
        say(&hub);
    }
    let (member, _outbound) = hub.member(|| {});
    // Exactly `size` missed: all there.
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&start)).await.unwrap();
    assert_eq!(offsets(recovery.missed()), [1, 2, 3, 4, 5]);
    say(&hub);
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&start)).await.unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::TooMany);
    let from_one = Position::new(start.epoch.clone(), 1);
    let (_m, recovery) = hub
        .join_since(&member, ROOM, Some(&from_one))
        .await
        .unwrap();
    assert_eq!(offsets(recovery.missed()), [2, 3, 4, 5, 6]);
    assert_eq!(hub.stats().recovery.too_many, 1);
}

#[tokio::test(start_paused = true)]
async fn messages_older_than_the_ttl_are_too_old() {
    let hub = hub_with(100, Duration::from_secs(10));
    let start = hub.position(ROOM).unwrap();
    say(&hub); // 1 at t=0
    tokio::time::advance(Duration::from_secs(6)).await;
    say(&hub); // 2 at t=6
    tokio::time::advance(Duration::from_secs(4)).await;
    let (member, _outbound) = hub.member(|| {});
    // t=10: nothing is older than the ttl yet.
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&start)).await.unwrap();
    assert_eq!(offsets(recovery.missed()), [1, 2]);
    tokio::time::advance(Duration::from_millis(1)).await;
    // t=10.001: 1 is gone, 2 is not.
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&start)).await.unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::TooOld);
    let after_one = Position::new(start.epoch.clone(), 1);
    let (_m, recovery) = hub
        .join_since(&member, ROOM, Some(&after_one))
        .await
        .unwrap();
    assert_eq!(offsets(recovery.missed()), [2]);
    tokio::time::advance(Duration::from_secs(60)).await;
    let (_m, recovery) = hub
        .join_since(&member, ROOM, Some(&after_one))
        .await
        .unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::TooOld);
    // Nothing missed is still fine, however old the history.
    let now = hub.position(ROOM).unwrap();
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&now)).await.unwrap();
    assert!(recovery.recovered());
    assert_eq!(hub.stats().recovery.too_old, 2);
}

#[tokio::test]
async fn no_history_means_no_recovery() {
    // Off by default; positions are still counted.
    let hub = Hub::default();
    hub.create_room(ROOM, None).unwrap();
    say(&hub);
    let now = hub.position(ROOM).unwrap();
    assert_eq!(now.offset, 1);
    let (member, _outbound) = hub.member(|| {});
    let (_m, recovery) = hub.join_since(&member, ROOM, Some(&now)).await.unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::Disabled);
    assert_eq!(hub.stats().recovery.disabled, 1);
    assert_eq!(hub.stats().recovery.failed(), 1);
    // With a backplane, this node's history misses the others' messages: no recovery.
    let bus = MemoryBus::default();
    let config =
        HubConfig::default().with_history(HistoryConfig::new(100, Duration::from_secs(60)));
    let node = Hub::with_backplane(config, bus.backplane());
    stamp_offsets(&node);
    node.create_room(ROOM, None).unwrap();
    let start = node.position(ROOM).unwrap();
    say(&node);
    let (member, _outbound) = node.member(|| {});
    let (_m, recovery) = node.join_since(&member, ROOM, Some(&start)).await.unwrap();
    assert_eq!(failure(&recovery), RecoveryFailure::Disabled);
}

#[test]
fn joins_racing_a_publisher_see_every_offset_once_in_order() {
    const MESSAGES: u64 = 5_000;
    const JOINERS: usize = 4;
    let hub = hub(MESSAGES as usize);
    let epoch = hub.position(ROOM).unwrap().epoch;
    let done = Arc::new(AtomicBool::new(false));
    let publisher = {
        let hub = hub.clone();
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            for expected in 1..=MESSAGES {
                assert_eq!(offset(&say(&hub)), expected);
            }
            done.store(true, Ordering::Release);
        })
    };
    let joiners: Vec<_> = (0..JOINERS)
        .map(|index| {
            let hub = hub.clone();
            let done = Arc::clone(&done);
            let epoch = epoch.clone();
            std::thread::spawn(move || {
                // On one node a join completes at once: the runtime only polls it.
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                let mut joins = Vec::new();
                let mut round = 0u64;
                while !done.load(Ordering::Acquire) || joins.len() < 3 {
                    round += 1;
                    // Join from a position some way behind the room's current one.
                    let now = hub.position(ROOM).unwrap().offset;
                    let lag = (round * 37 + index as u64 * 101) % 400;
                    let since = Position::new(epoch.clone(), now.saturating_sub(lag));
                    let (member, outbound) = hub.member(|| {});
                    let (membership, recovery) = runtime
                        .block_on(hub.join_since(&member, ROOM, Some(&since)))
                        .unwrap();
                    joins.push((since.offset, recovery, member, membership, outbound));
                    std::thread::yield_now();
                }
                joins
            })
        })
        .collect();
    publisher.join().unwrap();
    let mut checked = 0;
    let mut replayed = 0;
    for joiner in joiners {
        for (since, recovery, _member, _membership, mut outbound) in joiner.join().unwrap() {
            assert!(recovery.recovered(), "{since}: {:?}", recovery.failure());
            let missed = offsets(recovery.missed());
            replayed += missed.len();
            assert_eq!(recovery.position.offset, since + missed.len() as u64);
            let mut all = missed;
            all.extend(drain(&mut outbound));
            let expected: Vec<u64> = (since + 1..=MESSAGES).collect();
            assert!(
                all == expected,
                "join from {since}: {} messages, not contiguous",
                all.len()
            );
            checked += 1;
        }
    }
    assert!(checked >= JOINERS * 3);
    let stats = hub.stats().recovery;
    assert_eq!(
        (stats.attempted, stats.succeeded),
        (checked as u64, checked as u64)
    );
    assert_eq!(stats.replayed, replayed as u64);
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Position>();
    check::<Recovery>();
    check::<Published>();
    check::<HistoryConfig>();
}
