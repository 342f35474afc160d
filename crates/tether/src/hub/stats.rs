//! The hub's counters: broadcasts, deliveries, slow-consumer drops and disconnects, dead
//! members removed, a histogram of fan-out times, and recoveries (for `/metrics`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::BroadcastReport;
use super::history::{Recovery, RecoveryFailure, RecoveryOutcome};

/// Upper bounds of the fan-out time histogram's buckets, in seconds (Prometheus `le`).
pub const FANOUT_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
];

/// The fan-out time histogram: how long local deliveries of one broadcast took.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct FanoutHistogram {
    /// Cumulative counts per bucket of [`FANOUT_BUCKETS`] (`le` semantics).
    pub buckets: [u64; FANOUT_BUCKETS.len()],
    /// All observations.
    pub count: u64,
    /// Their sum, in seconds.
    pub sum_seconds: f64,
}

/// A snapshot of a hub's counters.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HubStats {
    /// Broadcasts delivered locally (including those from other nodes).
    pub broadcasts: u64,
    /// Messages queued to members.
    pub delivered: u64,
    /// Messages dropped for slow members.
    pub dropped: u64,
    /// Slow members disconnected.
    pub disconnected: u64,
    /// Dead members removed during a broadcast.
    pub removed: u64,
    /// Fan-out times.
    pub fanout: FanoutHistogram,
    /// Joins that asked to recover missed messages, and how they went.
    pub recovery: RecoveryStats,
}

#[derive(Debug, Default)]
pub(super) struct Counters {
    broadcasts: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    disconnected: AtomicU64,
    removed: AtomicU64,
    buckets: [AtomicU64; FANOUT_BUCKETS.len()],
    sum_nanos: AtomicU64,
    pub(super) recovery: RecoveryCounters,
}

impl Counters {
    pub(super) fn record(&self, report: &BroadcastReport, took: Duration) {
        let add = |counter: &AtomicU64, value: usize| {
            if value > 0 {
                counter.fetch_add(value as u64, Ordering::Relaxed);
            }
        };
        self.broadcasts.fetch_add(1, Ordering::Relaxed);
        add(&self.delivered, report.delivered);
        add(&self.dropped, report.dropped);
        add(&self.disconnected, report.disconnected);
        add(&self.removed, report.removed);
        let seconds = took.as_secs_f64();
        if let Some(bucket) = FANOUT_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .and_then(|index| self.buckets.get(index))
        {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    pub(super) fn snapshot(&self) -> HubStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut buckets = [0; FANOUT_BUCKETS.len()];
        let mut running = 0;
        for (out, bucket) in buckets.iter_mut().zip(&self.buckets) {
            running += load(bucket);
            *out = running;
        }
        let count = load(&self.broadcasts);
        HubStats {
            broadcasts: count,
            delivered: load(&self.delivered),
            dropped: load(&self.dropped),
            disconnected: load(&self.disconnected),
            removed: load(&self.removed),
            fanout: FanoutHistogram {
                buckets,
                count,
                sum_seconds: load(&self.sum_nanos) as f64 / 1e9,
            },
            recovery: self.recovery.snapshot(),
        }
    }
}

/// The recovery counters.
#[derive(Debug, Default)]
pub(super) struct RecoveryCounters {
    attempted: AtomicU64,
    succeeded: AtomicU64,
    failed: [AtomicU64; 5],
    replayed: AtomicU64,
}

impl RecoveryCounters {
    pub(super) fn record(&self, recovery: &Recovery) {
        let index = match &recovery.outcome {
            RecoveryOutcome::NotAsked => return,
            RecoveryOutcome::Recovered(missed) => {
                self.succeeded.fetch_add(1, Ordering::Relaxed);
                self.replayed
                    .fetch_add(missed.len() as u64, Ordering::Relaxed);
                None
            }
            RecoveryOutcome::Failed(failure) => Some(match failure {
                RecoveryFailure::EpochChanged => 0,
                RecoveryFailure::TooOld => 1,
                RecoveryFailure::TooMany => 2,
                RecoveryFailure::Disabled => 3,
                RecoveryFailure::Unavailable => 4,
            }),
        };
        self.attempted.fetch_add(1, Ordering::Relaxed);
        if let Some(counter) = index.and_then(|index| self.failed.get(index)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(super) fn snapshot(&self) -> RecoveryStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let [epoch_changed, too_old, too_many, disabled, unavailable] = &self.failed;
        RecoveryStats {
            attempted: load(&self.attempted),
            succeeded: load(&self.succeeded),
            epoch_changed: load(epoch_changed),
            too_old: load(too_old),
            too_many: load(too_many),
            disabled: load(disabled),
            unavailable: load(unavailable),
            replayed: load(&self.replayed),
        }
    }
}

/// The recovery counters of a hub (part of [`HubStats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryStats {
    /// Joins that asked to recover from a position.
    pub attempted: u64,
    /// Recoveries that gave every missed message.
    pub succeeded: u64,
    /// Failed with [`RecoveryFailure::EpochChanged`].
    pub epoch_changed: u64,
    /// Failed with [`RecoveryFailure::TooOld`].
    pub too_old: u64,
    /// Failed with [`RecoveryFailure::TooMany`].
    pub too_many: u64,
    /// Failed with [`RecoveryFailure::Disabled`].
    pub disabled: u64,
    /// Failed with [`RecoveryFailure::Unavailable`].
    pub unavailable: u64,
    /// Messages replayed by successful recoveries.
    pub replayed: u64,
}

impl RecoveryStats {
    /// Failed recoveries, all reasons together.
    pub fn failed(&self) -> u64 {
        self.epoch_changed + self.too_old + self.too_many + self.disabled + self.unavailable
    }
}
