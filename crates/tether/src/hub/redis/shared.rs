//! The state a [`RedisBackplane`](super::RedisBackplane) shares with its task: the outbox of
//! broadcasts waiting to be published (while Redis is reachable a publish queue bounded only
//! by [`QUEUE_BYTES`]; during an outage the buffer bounded by the configured capacity), the
//! rooms this node wants, the recoveries waiting for the task, the counters, and the
//! receiving side (push messages from Redis, decoded and handed to the hub).

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use ::redis::{PushInfo, PushKind, Value};
use bytes::Bytes;
use tether_proto::Message;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::{Notify, oneshot};

use super::BackplaneStats;
use super::shards::ShardHealth;
use super::store::{self, Append};
use super::wire::{self, Dedupe};
use crate::hub::history::{HistoryConfig, Position, Recovery, RecoveryFailure, new_epoch};
use crate::hub::{HistoryFuture, LocalDelivery, RemoteSink};

/// How often, at most, the outbox warns about dropped broadcasts.
const DROP_WARNING_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// While Redis is reachable, how many bytes of broadcasts may wait to be published before
/// the oldest are dropped: a flood only waits for the task, it is not an outage.
pub(super) const QUEUE_BYTES: usize = 64 << 20;

/// A broadcast waiting to be published.
pub(super) struct Outgoing {
    pub(super) channel: Arc<str>,
    pub(super) payload: Bytes,
    /// With a shared history: what the publish script needs.
    pub(super) append: Option<Append>,
}

/// A recovery waiting for the task: it reads the history once the room is subscribed.
pub(super) struct HistoryRequest {
    pub(super) channel: Arc<str>,
    pub(super) since: Option<Position>,
    pub(super) history: HistoryConfig,
    pub(super) reply: oneshot::Sender<Result<Recovery, RecoveryFailure>>,
}

#[derive(Default)]
struct Outbox {
    queue: VecDeque<Outgoing>,
    /// The payload bytes in `queue`.
    bytes: usize,
    next_seq: u64,
    /// Drops not yet reported in a warning, and when the last warning was.
    unreported: u64,
    last_warning: Option<Instant>,
}

#[derive(Default)]
struct Rooms {
    /// The rooms with local members.
    wanted: HashSet<Arc<str>>,
    /// Rooms whose wish changed since the task last looked (or that Redis unsubscribed).
    changed: HashSet<Arc<str>>,
}

/// What the receiving side tells the task.
pub(super) enum Control {
    /// The connection of this session is gone.
    Lost,
    /// Redis unsubscribed this channel (our own `UNSUBSCRIBE`, or a shard channel whose slot
    /// moved to another node).
    Dropped(Vec<u8>),
}

#[derive(Default)]
struct Counters {
    errors: AtomicU64,
    reconnects: AtomicU64,
    published: AtomicU64,
    received: AtomicU64,
    buffer_dropped: AtomicU64,
}

/// See the module documentation.
pub(super) struct Shared {
    pub(super) node_id: String,
    /// Random per backplane: tells this process's broadcasts apart from all others.
    pub(super) instance: u64,
    /// `{PREFIX:room:`.
    channel_prefix: String,
    /// The hub's history settings, when the backplane keeps its history (set on attach).
    history: Mutex<Option<HistoryConfig>>,
    /// This process's instance in hex (the publish script's duplicate filter).
    instance_hex: Arc<str>,
    /// Recoveries for the task.
    requests: UnboundedSender<HistoryRequest>,
    /// How long a recovery waits for the task's answer.
    recovery_timeout: std::time::Duration,
    /// `PREFIX:nodes`.
    presence: Arc<str>,
    capacity: usize,
    sink: Mutex<Option<RemoteSink>>,
    outbox: Mutex<Outbox>,
    rooms: Mutex<Rooms>,
    /// The rooms subscribed on Redis now.
    subscribed: Mutex<Vec<String>>,
    dedupe: Mutex<Dedupe>,
    /// Wakes the task: something to publish, a room to (un)subscribe, or the end.
    pub(super) wake: Notify,
    closed: AtomicBool,
    healthy: AtomicBool,
    counters: Counters,
    /// Whether the warning about another node with this node id was given.
    warned_same_id: AtomicBool,
    /// The shards of a cluster as the last check saw them (empty for a single server).
    shards: Mutex<Vec<ShardHealth>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    pub(super) fn new(
        node_id: String,
        instance: u64,
        prefix: &str,
        capacity: usize,
        requests: UnboundedSender<HistoryRequest>,
        recovery_timeout: std::time::Duration,
    ) -> Self {
        Self {
            node_id,
            instance,
            channel_prefix: format!("{{{prefix}:room:"),
            history: Mutex::new(None),
            instance_hex: Arc::from(format!("{instance:016x}")),
            requests,
            recovery_timeout,
            presence: Arc::from(format!("{prefix}:nodes")),
            capacity: capacity.max(1),
            sink: Mutex::new(None),
            outbox: Mutex::new(Outbox::default()),
            rooms: Mutex::new(Rooms::default()),
            subscribed: Mutex::new(Vec::new()),
            dedupe: Mutex::new(Dedupe::default()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            healthy: AtomicBool::new(false),
            counters: Counters::default(),
            warned_same_id: AtomicBool::new(false),
            shards: Mutex::new(Vec::new()),
        }
    }

    /// The deployment's presence channel: `PREFIX:nodes`.
    pub(super) fn presence_channel(&self) -> Arc<str> {
        Arc::clone(&self.presence)
    }

    /// The channel of `room`: `{PREFIX:room:NAME}` (the braces make the whole name the
    /// Redis Cluster hash tag, which the room's history keys share).
    pub(super) fn channel(&self, room: &str) -> Arc<str> {
        let mut channel = String::with_capacity(self.channel_prefix.len() + room.len() + 1);
        channel.push_str(&self.channel_prefix);
        channel.push_str(room);
        channel.push('}');
        Arc::from(channel)
    }

    /// The room of a channel of this prefix.
    pub(super) fn room_of<'a>(&self, channel: &'a [u8]) -> Option<&'a str> {
        let room = channel
            .strip_prefix(self.channel_prefix.as_bytes())?
            .strip_suffix(b"}")?;
        std::str::from_utf8(room).ok()
    }

    pub(super) fn attach(&self, sink: RemoteSink, history: HistoryConfig) {
        *lock(&self.sink) = Some(sink);
        *lock(&self.history) = history.is_enabled().then_some(history);
    }

    /// Whether the hub's history is kept here.
    pub(super) fn keeps_history(&self) -> bool {
        lock(&self.history).is_some()
    }

    /// Queues a broadcast (never waits); the oldest queued one goes when the outbox is full.
    /// With a shared history it goes through the publish script, and comes back to this node
    /// with its position, unless Redis is unreachable now: this node's hub delivers it then.
    pub(super) fn publish(&self, room: &str, message: &Message) -> LocalDelivery {
        let history = *lock(&self.history);
        let local = match history {
            Some(_) if self.is_healthy() => LocalDelivery::Positioned,
            _ => LocalDelivery::Now,
        };
        let delivered = history.is_some() && local == LocalDelivery::Now;
        let draft = wire::draft(&self.node_id, self.instance, message, delivered);
        let channel = self.channel(room);
        {
            let mut outbox = lock(&self.outbox);
            let seq = outbox.next_seq;
            outbox.next_seq += 1;
            let append = history.map(|history| Append {
                size: history.size,
                ttl_secs: history.ttl.as_secs().max(1),
                new_epoch: new_epoch(),
                instance: Arc::clone(&self.instance_hex),
                seq,
            });
            let payload = draft.finish(seq);
            outbox.bytes += payload.len();
            outbox.queue.push_back(Outgoing {
                channel,
                payload,
                append,
            });
            self.trim(&mut outbox);
        }
        self.wake.notify_one();
        local
    }

    /// Reads `room`'s history through the task (see [`Backplane::recover`](crate::hub::Backplane::recover)).
    pub(super) fn recover(
        &self,
        room: &str,
        since: Option<Position>,
        history: HistoryConfig,
    ) -> HistoryFuture {
        if !self.is_healthy() || self.is_closed() {
            return Box::pin(async { Err(RecoveryFailure::Unavailable) });
        }
        let (reply, answer) = oneshot::channel();
        let request = HistoryRequest {
            channel: self.channel(room),
            since,
            history,
            reply,
        };
        let sent = self.requests.send(request).is_ok();
        self.wake.notify_one();
        let timeout = self.recovery_timeout;
        Box::pin(async move {
            if !sent {
                return Err(RecoveryFailure::Unavailable);
            }
            match tokio::time::timeout(timeout, answer).await {
                Ok(Ok(answer)) => answer,
                _ => Err(RecoveryFailure::Unavailable),
            }
        })
    }

    /// Trims the outbox to what an outage may keep (called when the connection is lost).
    pub(super) fn trim_for_outage(&self) {
        let mut outbox = lock(&self.outbox);
        self.trim(&mut outbox);
    }

    /// Drops the oldest broadcasts beyond what the outbox may keep now (the outage buffer's
    /// capacity, or [`QUEUE_BYTES`] while Redis is reachable), counted and (at most once a
    /// second) logged.
    fn trim(&self, outbox: &mut Outbox) {
        let healthy = self.is_healthy();
        let mut dropped = 0u64;
        while (!healthy && outbox.queue.len() > self.capacity)
            || (healthy && outbox.bytes > QUEUE_BYTES && outbox.queue.len() > 1)
        {
            if let Some(gone) = outbox.queue.pop_front() {
                outbox.bytes -= gone.payload.len();
            }
            dropped += 1;
        }
        if dropped == 0 {
            return;
        }
        let total = self
            .counters
            .buffer_dropped
            .fetch_add(dropped, Ordering::Relaxed)
            + dropped;
        outbox.unreported += dropped;
        let now = Instant::now();
        let due = outbox
            .last_warning
            .is_none_or(|last| now.duration_since(last) >= DROP_WARNING_EVERY);
        if due {
            tracing::warn!(
                node = %self.node_id,
                dropped = outbox.unreported,
                total_dropped = total,
                capacity = self.capacity,
                healthy = self.is_healthy(),
                "backplane buffer full: dropped the oldest broadcasts (other nodes will not get them)"
            );
            outbox.unreported = 0;
            outbox.last_warning = Some(now);
        }
    }

    /// Logs the drops that the last warning did not count yet (called when the connection
    /// is back, so that the end of an outage never hides any).
    pub(super) fn report_drops(&self) {
        let mut outbox = lock(&self.outbox);
        if outbox.unreported > 0 {
            tracing::warn!(
                node = %self.node_id,
                dropped = outbox.unreported,
                total_dropped = self.counters.buffer_dropped.load(Ordering::Relaxed),
                capacity = self.capacity,
                "backplane buffer was full: dropped the oldest broadcasts (other nodes will not get them)"
            );
            outbox.unreported = 0;
            outbox.last_warning = Some(Instant::now());
        }
    }

    /// Up to `max` queued broadcasts (and at most about `max_bytes`), oldest first.
    pub(super) fn take_batch(&self, max: usize, max_bytes: usize) -> Vec<Outgoing> {
        let mut outbox = lock(&self.outbox);
        let mut batch = Vec::new();
        let mut bytes = 0;
        while batch.len() < max && bytes < max_bytes {
            let Some(outgoing) = outbox.queue.pop_front() else {
                break;
            };
            bytes += outgoing.payload.len();
            outbox.bytes -= outgoing.payload.len();
            batch.push(outgoing);
        }
        batch
    }

    /// Puts broadcasts that were not published back at the front, in their order.
    pub(super) fn requeue(&self, unsent: Vec<Outgoing>) {
        if unsent.is_empty() {
            return;
        }
        let mut outbox = lock(&self.outbox);
        for outgoing in unsent.into_iter().rev() {
            outbox.bytes += outgoing.payload.len();
            outbox.queue.push_front(outgoing);
        }
        self.trim(&mut outbox);
    }

    pub(super) fn has_queued(&self) -> bool {
        !lock(&self.outbox).queue.is_empty()
    }

    pub(super) fn want(&self, room: &str, wanted: bool) {
        {
            let mut rooms = lock(&self.rooms);
            let room: Arc<str> = Arc::from(room);
            if wanted {
                rooms.wanted.insert(Arc::clone(&room));
            } else {
                rooms.wanted.remove(&room);
            }
            rooms.changed.insert(room);
        }
        self.wake.notify_one();
    }

    /// Marks `room` for the task to look at again (Redis dropped its subscription).
    pub(super) fn recheck(&self, room: &str) {
        lock(&self.rooms).changed.insert(Arc::from(room));
    }

    /// The wanted rooms: all of them (`all`), or those that changed since the last call; with
    /// whether each is wanted.
    pub(super) fn room_changes(&self, all: bool) -> Vec<(Arc<str>, bool)> {
        let mut rooms = lock(&self.rooms);
        let changed = std::mem::take(&mut rooms.changed);
        if all {
            return rooms
                .wanted
                .iter()
                .map(|room| (Arc::clone(room), true))
                .collect();
        }
        changed
            .into_iter()
            .map(|room| {
                let wanted = rooms.wanted.contains(&room);
                (room, wanted)
            })
            .collect()
    }

    pub(super) fn is_wanted(&self, room: &str) -> bool {
        lock(&self.rooms).wanted.contains(room)
    }

    pub(super) fn set_subscribed(&self, rooms: &HashSet<Arc<str>>) {
        let mut names: Vec<String> = rooms.iter().map(|room| room.to_string()).collect();
        names.sort();
        *lock(&self.subscribed) = names;
    }

    pub(super) fn subscribed(&self) -> Vec<String> {
        lock(&self.subscribed).clone()
    }

    pub(super) fn forget(&self, room: &str) {
        lock(&self.dedupe).forget(room);
    }

    /// Handles a push message of the session numbered `generation`.
    pub(super) fn on_push(
        &self,
        generation: u64,
        info: PushInfo,
        control: &UnboundedSender<(u64, Control)>,
    ) {
        let mut data = info.data.into_iter();
        match info.kind {
            PushKind::Message | PushKind::SMessage => {
                if let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (data.next(), data.next())
                {
                    self.deliver(&channel, Bytes::from(payload));
                }
            }
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                if let Some(Value::BulkString(channel)) = data.next() {
                    let _ = control.send((generation, Control::Dropped(channel)));
                }
            }
            PushKind::Disconnection => {
                let _ = control.send((generation, Control::Lost));
            }
            _ => {}
        }
    }

    /// Hands a broadcast to the hub: another node's, or (with a shared history) any that
    /// came with its position, this node's own included unless it delivered it already.
    fn deliver(&self, channel: &[u8], payload: Bytes) {
        let Some(room) = self.room_of(channel) else {
            return;
        };
        let (position, payload) = match store::split_positioned(&payload) {
            Ok(Some((position, envelope))) => (Some(position), envelope),
            Ok(None) => (None, payload),
            Err(malformed) => {
                self.count_error();
                tracing::warn!(node = %self.node_id, room, "unreadable message on the backplane: {malformed}");
                return;
            }
        };
        let envelope = match wire::decode(payload) {
            Ok(envelope) => envelope,
            Err(malformed) => {
                self.count_error();
                tracing::warn!(node = %self.node_id, room, "unreadable message on the backplane: {malformed}");
                return;
            }
        };
        if envelope.instance == self.instance && (position.is_none() || envelope.delivered) {
            return; // Our own broadcast: its local members had it already.
        }
        if envelope.node_id == self.node_id
            && envelope.instance != self.instance
            && !self.warned_same_id.swap(true, Ordering::Relaxed)
        {
            tracing::warn!(
                node = %self.node_id,
                "another node publishes with this node's id: give each node its own --node-id"
            );
        }
        if !lock(&self.dedupe).is_new(envelope.instance, room, envelope.seq) {
            return; // Published again after a lost connection: delivered already.
        }
        if envelope.instance != self.instance {
            self.counters.received.fetch_add(1, Ordering::Relaxed);
        }
        let sink = lock(&self.sink).clone();
        if let Some(sink) = sink {
            sink(room, envelope.message, position);
        }
    }

    /// The shards of the last cluster health check.
    pub(super) fn set_shards(&self, shards: Vec<ShardHealth>) {
        *lock(&self.shards) = shards;
    }

    /// The connection was lost: no shard is known to be healthy until the next check, unless
    /// that check is what failed (then its report says which shard and why).
    pub(super) fn shards_unchecked(&self, why: &str) {
        let mut shards = lock(&self.shards);
        if shards
            .iter()
            .any(|shard| !shard.healthy && shard.error.is_some())
        {
            return;
        }
        for shard in shards.iter_mut().filter(|shard| shard.healthy) {
            shard.healthy = false;
            shard.error = Some(format!("not checked since the connection was lost ({why})"));
        }
    }

    /// The addresses of the shards the last check saw.
    pub(super) fn shard_addresses(&self) -> Vec<String> {
        lock(&self.shards)
            .iter()
            .map(|shard| shard.address.clone())
            .collect()
    }

    pub(super) fn shards(&self) -> Vec<ShardHealth> {
        lock(&self.shards).clone()
    }

    pub(super) fn count_error(&self) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_reconnect(&self) {
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn count_published(&self, count: u64) {
        self.counters.published.fetch_add(count, Ordering::Relaxed);
    }

    pub(super) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Ordering::Release);
    }

    pub(super) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(super) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.set_healthy(false);
        self.wake.notify_one();
    }

    pub(super) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(super) fn stats(&self) -> BackplaneStats {
        BackplaneStats {
            healthy: self.is_healthy(),
            errors: self.counters.errors.load(Ordering::Relaxed),
            reconnects: self.counters.reconnects.load(Ordering::Relaxed),
            published: self.counters.published.load(Ordering::Relaxed),
            received: self.counters.received.load(Ordering::Relaxed),
            buffered: lock(&self.outbox).queue.len(),
            buffer_dropped: self.counters.buffer_dropped.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    fn shared(prefix: &str, capacity: usize) -> Shared {
        let (requests, _) = tokio::sync::mpsc::unbounded_channel();
        Shared::new(
            "n".to_owned(),
            1,
            prefix,
            capacity,
            requests,
            std::time::Duration::from_secs(1),
        )
    }

    #[test]
    fn channels_are_namespaced_by_the_prefix() {
        let shared = shared("room", 4);
        assert_eq!(&*shared.channel("lobby"), "{room:room:lobby}");
        assert_eq!(&*shared.presence_channel(), "room:nodes");
        assert_eq!(shared.room_of(b"{room:room:lobby}"), Some("lobby"));
        assert_eq!(shared.room_of(b"{room:room:a}b}"), Some("a}b"));
        assert_eq!(shared.room_of(b"{other:room:lobby}"), None);
        assert_eq!(shared.room_of(b"room:room:lobby"), None);
        assert_eq!(shared.room_of(b"room:nodes"), None);
    }

    #[test]
    fn a_full_outbox_drops_the_oldest_and_counts() {
        let shared = shared("t", 2);
        for text in ["a", "b", "c"] {
            shared.publish("lobby", &Message::text(text));
        }
        let stats = shared.stats();
        assert_eq!((stats.buffered, stats.buffer_dropped), (2, 1));
        let batch = shared.take_batch(10, usize::MAX);
        let seqs: Vec<u64> = batch
            .iter()
            .map(|outgoing| wire::decode(outgoing.payload.clone()).unwrap().seq)
            .collect();
        assert_eq!(seqs, [1, 2], "the oldest (0) went");
        shared.publish("lobby", &Message::text("d"));
        shared.requeue(batch);
        let seqs: Vec<u64> = shared
            .take_batch(10, usize::MAX)
            .iter()
            .map(|outgoing| wire::decode(outgoing.payload.clone()).unwrap().seq)
            .collect();
        assert_eq!(seqs, [2, 3], "requeued in front, the oldest dropped again");
        assert_eq!(shared.stats().buffer_dropped, 2);
    }
}
