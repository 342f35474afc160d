//! Hub fan-out: the time of one [`Hub::broadcast`] of a 64-byte text message to every member
//! of one room, at 1,000 and 10,000 members. Throughput is in elements = members, so
//! criterion's "elem/s" reads as deliveries per second.
//!
//! Two settings, so that queues never fill (a full queue would disconnect the member and
//! shrink the room):
//!
//! - `drained`: nobody waits on the queues; the bench thread broadcasts a batch of at most
//!   [`BATCH`] messages (timed), then empties every queue with `try_recv` (not timed). This is
//!   the bare fan-out: one `Message` clone and one `try_send` per member, no task to wake.
//! - `consumers`: every member has a task parked in `Outbound::recv` on a multi-thread tokio
//!   runtime (two workers), and the broadcaster is itself a task on that runtime, like a
//!   connection handler. Each broadcast is timed alone, then the broadcaster waits (yielding
//!   its worker) until every member has taken the message, so each send wakes a parked task,
//!   which is the case of a live room.
//!
//! Every broadcast's report is checked: all members got the message.
//!
//! `history`: the cost of room history, `drained` as above with [`HISTORY_MEMBERS`] members,
//! with history off and on (1,000 messages kept per room, the `tether serve` default), and
//! the time of one [`Hub::join_since`] that recovers 1,000 missed messages.

#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether::Message;
use tether::hub::{HistoryConfig, Hub, HubConfig, Member, Membership, Outbound, Position};

/// Room sizes.
const MEMBERS: [usize; 2] = [1_000, 10_000];
/// The room's name.
const ROOM: &str = "room";
/// Member queue capacity: more than a batch, so `drained` never fills a queue.
const QUEUE: usize = 256;
/// Broadcasts per timed batch in `drained`.
const BATCH: u64 = 8;
/// Worker threads of the `consumers` runtime.
const WORKERS: usize = 2;

/// Room size of the `history` benches.
const HISTORY_MEMBERS: usize = 100;
/// Messages kept per room, and missed by the recovering member, in the `history` benches.
const HISTORY_SIZE: usize = 1_000;

/// A 64-byte text message.
fn message() -> Message {
    let text = "x".repeat(64);
    Message::text(text)
}

/// A hub with one room of `count` members; the members and guards must be kept alive.
fn room(count: usize) -> (Hub, Vec<(Member, Membership)>, Vec<Outbound>) {
    room_with(count, HubConfig::default())
}

/// [`room`] with `config` (its queue capacity set to [`QUEUE`]).
fn room_with(count: usize, config: HubConfig) -> (Hub, Vec<(Member, Membership)>, Vec<Outbound>) {
    let hub = Hub::new(config.with_queue_capacity(QUEUE));
    hub.create_room(ROOM, None).expect("a new room");
    let mut members = Vec::with_capacity(count);
    let mut outbounds = Vec::with_capacity(count);
    for _ in 0..count {
        let (member, outbound) = hub.member(|| {});
        let membership = hub.join(&member, ROOM).expect("the room exists");
        members.push((member, membership));
        outbounds.push(outbound);
    }
    (hub, members, outbounds)
}

/// Broadcasts once and checks that every member got the message.
fn broadcast_all(hub: &Hub, message: &Message, members: usize) {
    let report = hub
        .broadcast(black_box(ROOM), black_box(message))
        .expect("the room exists");
    assert_eq!(
        (report.delivered, report.dropped, report.disconnected),
        (members, 0, 0),
        "a queue filled: {report:?}"
    );
}

fn drained(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/drained");
    for count in MEMBERS {
        group.throughput(Throughput::Elements(count as u64));
        let (hub, _members, mut outbounds) = room(count);
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            bench_drained(b, &hub, &mut outbounds, count);
        });
    }
    group.finish();
}

/// Broadcasts in timed batches, emptying the queues between them (untimed).
fn bench_drained(
    b: &mut criterion::Bencher<'_>,
    hub: &Hub,
    outbounds: &mut [Outbound],
    count: usize,
) {
    let message = message();
    b.iter_custom(|iters| {
        let mut timed = Duration::ZERO;
        let mut done = 0;
        while done < iters {
            let batch = BATCH.min(iters - done);
            let started = Instant::now();
            for _ in 0..batch {
                broadcast_all(hub, &message, count);
            }
            timed += started.elapsed();
            for outbound in outbounds.iter_mut() {
                let mut taken = 0;
                while outbound.try_recv().is_some() {
                    taken += 1;
                }
                assert_eq!(taken, batch);
            }
            done += batch;
        }
        timed
    });
}

fn history(c: &mut Criterion) {
    let mut group = c.benchmark_group("broadcast/history");
    group.throughput(Throughput::Elements(HISTORY_MEMBERS as u64));
    let kept = HistoryConfig::new(HISTORY_SIZE, Duration::from_secs(300));
    for (name, history) in [("off", HistoryConfig::default()), ("on", kept)] {
        let config = HubConfig::default().with_history(history);
        let (hub, _members, mut outbounds) = room_with(HISTORY_MEMBERS, config);
        group.bench_function(BenchmarkId::new(name, HISTORY_MEMBERS), |b| {
            bench_drained(b, &hub, &mut outbounds, HISTORY_MEMBERS);
        });
    }
    group.finish();

    // One join that recovers HISTORY_SIZE missed messages (the membership is dropped, untimed).
    let mut group = c.benchmark_group("recovery");
    group.throughput(Throughput::Elements(HISTORY_SIZE as u64));
    let hub = Hub::new(HubConfig::default().with_history(kept));
    hub.create_room(ROOM, None).expect("a new room");
    let since = hub.position(ROOM).expect("the room exists");
    let message = message();
    for _ in 0..HISTORY_SIZE {
        hub.broadcast(ROOM, &message).expect("the room exists");
    }
    let (member, _outbound) = hub.member(|| {});
    // On one node the join completes at once; the runtime only polls it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    group.bench_function(BenchmarkId::new("join_since", HISTORY_SIZE), |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let started = Instant::now();
                let joined = runtime.block_on(recover(&hub, &member, &since));
                timed += started.elapsed();
                drop(joined);
            }
            timed
        });
    });
    group.finish();
}

/// Joins from `since`, checking that every missed message came back.
async fn recover(hub: &Hub, member: &Member, since: &Position) -> (Membership, Vec<Message>) {
    let (membership, recovery) = hub
        .join_since(member, black_box(ROOM), Some(since))
        .await
        .expect("the room exists");
    let missed = recovery.into_missed();
    assert_eq!(missed.len(), HISTORY_SIZE);
    (membership, missed)
}

fn consumers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a runtime");
    let message = message();
    let mut group = c.benchmark_group("broadcast/consumers");
    for count in MEMBERS {
        group.throughput(Throughput::Elements(count as u64));
        let (hub, members, outbounds) = room(count);
        // Deliveries taken by the member tasks, all members together.
        let taken = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = outbounds
            .into_iter()
            .map(|mut outbound| {
                let taken = Arc::clone(&taken);
                runtime.spawn(async move {
                    while let Some(message) = outbound.recv().await {
                        drop(black_box(message));
                        taken.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        group.bench_function(BenchmarkId::from_parameter(count), |b| {
            b.iter_custom(|iters| {
                let hub = hub.clone();
                let message = message.clone();
                let taken = Arc::clone(&taken);
                let broadcaster = runtime.spawn(async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let target = taken.load(Ordering::Acquire) + count as u64;
                        let started = Instant::now();
                        broadcast_all(&hub, &message, count);
                        timed += started.elapsed();
                        while taken.load(Ordering::Acquire) < target {
                            tokio::task::yield_now().await;
                        }
                    }
                    timed
                });
                runtime.block_on(broadcaster).expect("the broadcaster")
            });
        });
        // Dropping the members closes the queues; the tasks end.
        drop(members);
        runtime.block_on(async {
            for task in tasks {
                task.await.expect("a member task");
            }
        });
    }
    group.finish();
}

criterion_group!(benches, drained, consumers, history);
criterion_main!(benches);
