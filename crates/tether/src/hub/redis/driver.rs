//! The backplane's task: it keeps a session to Redis, publishes the outbox in order, keeps the
//! subscriptions equal to the rooms with local members, and when anything fails drops the
//! session, waits (exponential backoff, full jitter) and starts again: connect, subscribe to
//! every wanted room, then flush what was buffered meanwhile.
//!
//! Every node also subscribes to its deployment's presence channel, `PREFIX:nodes`, once its
//! rooms are subscribed, and the task notes how many subscribers that channel has (with each
//! health check). Before flushing a buffer kept through an outage the task waits, at most the
//! longest backoff, until as many nodes are back as before (`PUBSUB NUMSUB`), so that nodes
//! that reconnect a little later still get those broadcasts; when it never knew (a degraded
//! start) it waits its own next backoff delay, which bounds the others' too.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ::redis::{PushInfo, RedisError, RedisResult};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::time::{Instant, sleep_until};

use super::conn::{Publication, PushHandler, Session, ShardReport, Target, Timeouts};
use super::shared::{Control, HistoryRequest, Outgoing, Shared};
use super::store::{self, Scripts};
use crate::client::{Backoff, Reconnect};
use crate::hub::history::{RecoveryFailure, new_epoch};

/// The most broadcasts, and about the most bytes, in one pipeline.
const BATCH: usize = 256;
const BATCH_BYTES: usize = 1 << 20;
/// The most channels in one `SUBSCRIBE`.
const SUBSCRIBE_CHUNK: usize = 512;
/// How often the flush gate asks Redis whether the other nodes are back.
const GATE_POLL: Duration = Duration::from_millis(50);

/// The task's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    pub(super) timeouts: Timeouts,
    pub(super) initial_backoff: Duration,
    pub(super) max_backoff: Duration,
    pub(super) ping_interval: Duration,
}

/// See the module documentation.
pub(super) struct Driver {
    shared: Arc<Shared>,
    target: Target,
    settings: Settings,
    reconnect: Reconnect,
    backoff: Backoff,
    control_tx: UnboundedSender<(u64, Control)>,
    control_rx: UnboundedReceiver<(u64, Control)>,
    /// The number of the current session (push messages of older ones are ignored).
    generation: u64,
    /// How many nodes (this one included) were on the presence channel at the last check
    /// while healthy.
    nodes: Option<u64>,
    /// Whether something failed since the last healthy session.
    failed: bool,
    /// When the current session became healthy.
    healthy_since: Option<Instant>,
    /// Redis dropped the presence subscription (its slot moved): subscribe again.
    presence_dropped: bool,
    /// Recoveries waiting to read the history.
    requests: UnboundedReceiver<HistoryRequest>,
    scripts: Scripts,
    /// Hands each cluster health check's shards to the shared state.
    report: ShardReport,
}

/// Holds buffered broadcasts back after a reconnection until the other nodes are back.
struct Gate {
    /// The number of nodes to wait for on the presence channel, if known.
    nodes: Option<u64>,
    /// When the number is unknown: how long to wait.
    settle_until: Instant,
    deadline: Instant,
    next_poll: Instant,
}

impl Driver {
    pub(super) fn new(
        shared: Arc<Shared>,
        target: Target,
        settings: Settings,
        requests: UnboundedReceiver<HistoryRequest>,
    ) -> Self {
        let reconnect = Reconnect::new()
            .initial_delay(settings.initial_backoff)
            .max_delay(settings.max_backoff)
            .reset_after(settings.max_backoff);
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let shared_for_report = Arc::clone(&shared);
        Self {
            shared,
            target,
            settings,
            reconnect,
            backoff: Backoff::new(reconnect),
            control_tx,
            control_rx,
            generation: 0,
            nodes: None,
            failed: false,
            healthy_since: None,
            presence_dropped: false,
            requests,
            scripts: Scripts::new(),
            report: {
                let shared = Arc::downgrade(&shared_for_report);
                Arc::new(move |shards| {
                    if let Some(shared) = shared.upgrade() {
                        shared.set_shards(shards);
                    }
                })
            },
        }
    }

    /// One connection attempt.
    pub(super) async fn open(&mut self) -> RedisResult<Session> {
        self.generation += 1;
        let generation = self.generation;
        let shared = Arc::downgrade(&self.shared);
        let control = self.control_tx.clone();
        let push: PushHandler = Arc::new(move |info: PushInfo| {
            if let Some(shared) = shared.upgrade() {
                shared.on_push(generation, info, &control);
            }
        });
        let known = self.shared.shard_addresses();
        Session::open(
            &self.target,
            self.settings.timeouts,
            push,
            &self.report,
            &known,
        )
        .await
    }

    /// Runs until the backplane is dropped; `session` is an open one to start with.
    pub(super) async fn run(mut self, mut session: Option<Session>) {
        if session.is_none() {
            // Started degraded: the first success counts as a reconnection.
            self.failed = true;
        }
        loop {
            if self.shared.is_closed() {
                return;
            }
            let current = match session.take() {
                Some(current) => current,
                None => match self.open().await {
                    Ok(current) => current,
                    Err(_) if self.shared.is_closed() => return,
                    Err(error) => {
                        self.note_failure(&error, "cannot connect to redis");
                        if !self.pause().await {
                            return;
                        }
                        continue;
                    }
                },
            };
            match self.serve(current).await {
                Ok(()) => return,
                Err(_) if self.shared.is_closed() => return,
                Err(error) => {
                    self.note_failure(&error, "lost the connection to redis");
                    if !self.pause().await {
                        return;
                    }
                }
            }
        }
    }

    fn note_failure(&mut self, error: &RedisError, what: &str) {
        let was_healthy = self.shared.is_healthy();
        self.shared.set_healthy(false);
        self.shared.trim_for_outage();
        self.shared.shards_unchecked(&error.to_string());
        // Recoveries waiting now cannot be answered by this session.
        while let Ok(request) = self.requests.try_recv() {
            let _ = request.reply.send(Err(RecoveryFailure::Unavailable));
        }
        self.shared.set_subscribed(&HashSet::new());
        self.shared.count_error();
        self.failed = true;
        if let Some(since) = self.healthy_since.take() {
            self.backoff.record_uptime(since.elapsed());
        }
        let stats = self.shared.stats();
        if was_healthy {
            tracing::warn!(
                node = %self.shared.node_id,
                redis = %self.target.shown(),
                %error,
                buffered = stats.buffered,
                "{what}: this node's rooms keep working locally; buffering broadcasts and reconnecting"
            );
        } else {
            tracing::warn!(
                node = %self.shared.node_id,
                redis = %self.target.shown(),
                %error,
                buffered = stats.buffered,
                attempt = self.backoff.attempts() + 1,
                "{what}; retrying"
            );
        }
    }

    /// Waits the next backoff delay; `false` when the backplane was dropped meanwhile.
    async fn pause(&mut self) -> bool {
        let delay = self
            .backoff
            .next_delay(None)
            .unwrap_or(self.settings.max_backoff);
        let until = Instant::now() + delay;
        loop {
            if self.shared.is_closed() {
                return false;
            }
            tokio::select! {
                () = sleep_until(until) => return !self.shared.is_closed(),
                () = self.shared.wake.notified() => {}
            }
        }
    }

    /// Runs one session until it fails (`Err`) or the backplane is dropped (`Ok`).
    async fn serve(&mut self, mut session: Session) -> RedisResult<()> {
        let mut subscribed: HashSet<Arc<str>> = HashSet::new();
        // Drop what the previous sessions reported.
        while self.control_rx.try_recv().is_ok() {}
        self.presence_dropped = false;
        self.sync(&mut session, &mut subscribed, true).await?;
        // Present once every room is subscribed: others may count on this node then.
        let presence = self.shared.presence_channel();
        session.subscribe(std::slice::from_ref(&presence)).await?;
        self.shared.set_healthy(true);
        self.healthy_since = Some(Instant::now());
        let mut gate = None;
        if self.failed {
            self.failed = false;
            self.shared.count_reconnect();
            if self.shared.has_queued() {
                gate = Some(self.gate());
            }
            tracing::info!(
                node = %self.shared.node_id,
                redis = %self.target.shown(),
                rooms = subscribed.len(),
                buffered = self.shared.stats().buffered,
                "connected to redis; subscribed to this node's rooms"
            );
        }
        if gate.is_none() {
            if let Some(count) = session.subscribers(&presence).await? {
                self.nodes = Some(count);
            }
        }
        self.shared.report_drops();
        let mut next_ping = Instant::now() + self.settings.ping_interval;
        loop {
            if self.shared.is_closed() {
                return Ok(());
            }
            while let Ok((generation, control)) = self.control_rx.try_recv() {
                self.control(generation, control, &mut subscribed)?;
            }
            self.sync(&mut session, &mut subscribed, false).await?;
            if std::mem::take(&mut self.presence_dropped) {
                session.subscribe(std::slice::from_ref(&presence)).await?;
            }
            if let Some(open) = &mut gate {
                if Instant::now() >= open.next_poll
                    && self.poll_gate(&mut session, &presence, open).await?
                {
                    gate = None;
                }
            }
            let mut busy = false;
            if gate.is_none() {
                let batch = self.shared.take_batch(BATCH, BATCH_BYTES);
                if !batch.is_empty() {
                    self.send(&mut session, batch).await?;
                    busy = self.shared.has_queued();
                }
            }
            // Every wanted room is subscribed now (what a history read misses reaches the hub
            // on the channel), and this node's publications so far are in the history.
            if let Ok(request) = self.requests.try_recv() {
                self.read_history(&mut session, request).await?;
                busy = true;
            }
            if Instant::now() >= next_ping {
                let known = self.shared.shard_addresses();
                session
                    .ping(self.settings.timeouts.response, &self.report, &known)
                    .await?;
                if gate.is_none() {
                    if let Some(count) = session.subscribers(&presence).await? {
                        self.nodes = Some(count);
                    }
                }
                next_ping = Instant::now() + self.settings.ping_interval;
            }
            if busy {
                continue;
            }
            let gate_poll = gate.as_ref().map(|gate| gate.next_poll);
            tokio::select! {
                () = self.shared.wake.notified() => {}
                Some((generation, control)) = self.control_rx.recv() => {
                    self.control(generation, control, &mut subscribed)?;
                }
                () = sleep_until(next_ping) => {}
                () = sleep_until(gate_poll.unwrap_or(next_ping)), if gate_poll.is_some() => {}
            }
        }
    }

    /// Answers one recovery: reads the room's history (the room is subscribed already).
    async fn read_history(
        &mut self,
        session: &mut Session,
        request: HistoryRequest,
    ) -> RedisResult<()> {
        if request.reply.is_closed() {
            return Ok(()); // The join was abandoned.
        }
        let read = session
            .read_history(
                &self.scripts,
                &request.channel,
                request.since.as_ref().map(|since| since.offset),
                request.history.size,
                &new_epoch(),
            )
            .await;
        match read {
            Ok(reply) => {
                let answer = store::recovery_from(reply, request.since.as_ref(), &request.history);
                let _ = request.reply.send(answer);
                Ok(())
            }
            Err(error) => {
                let _ = request.reply.send(Err(RecoveryFailure::Unavailable));
                Err(error)
            }
        }
    }

    /// Handles what the receiving side reported.
    fn control(
        &mut self,
        generation: u64,
        control: Control,
        subscribed: &mut HashSet<Arc<str>>,
    ) -> RedisResult<()> {
        if generation != self.generation {
            return Ok(());
        }
        match control {
            Control::Lost => Err(RedisError::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "the connection to redis closed",
            ))),
            Control::Dropped(channel) => {
                if *channel == *self.shared.presence_channel().as_bytes() {
                    self.presence_dropped = true;
                    return Ok(());
                }
                let room = self
                    .shared
                    .room_of(&channel)
                    .and_then(|room| subscribed.get(room).cloned());
                if let Some(room) = room {
                    subscribed.remove(&room);
                    self.shared.set_subscribed(subscribed);
                    if self.shared.is_wanted(&room) {
                        // A shard channel whose slot moved: subscribe again (routed anew).
                        tracing::info!(node = %self.shared.node_id, room = %room, "redis dropped a room's subscription; subscribing again");
                        self.shared.recheck(&room);
                    }
                }
                Ok(())
            }
        }
    }

    /// Makes the subscriptions follow the wanted rooms: every one (`all`, a new session) or
    /// those that changed.
    async fn sync(
        &mut self,
        session: &mut Session,
        subscribed: &mut HashSet<Arc<str>>,
        all: bool,
    ) -> RedisResult<()> {
        let changes = self.shared.room_changes(all);
        if changes.is_empty() {
            return Ok(());
        }
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for (room, wanted) in changes {
            match (wanted, subscribed.contains(&room)) {
                (true, false) => add.push(room),
                (false, true) => remove.push(room),
                _ => {}
            }
        }
        for rooms in add.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<Arc<str>> =
                rooms.iter().map(|room| self.shared.channel(room)).collect();
            session.subscribe(&channels).await?;
            subscribed.extend(rooms.iter().cloned());
        }
        for rooms in remove.chunks(SUBSCRIBE_CHUNK) {
            let channels: Vec<Arc<str>> =
                rooms.iter().map(|room| self.shared.channel(room)).collect();
            session.unsubscribe(&channels).await?;
            for room in rooms {
                subscribed.remove(room);
                self.shared.forget(room);
            }
        }
        self.shared.set_subscribed(subscribed);
        Ok(())
    }

    /// Publishes one batch; what was not published goes back to the front of the outbox.
    async fn send(&mut self, session: &mut Session, batch: Vec<Outgoing>) -> RedisResult<()> {
        let publications: Vec<Publication> = batch
            .iter()
            .map(|outgoing| Publication {
                channel: Arc::clone(&outgoing.channel),
                payload: outgoing.payload.clone(),
                append: outgoing.append.clone(),
            })
            .collect();
        let published = session.publish(&self.scripts, &publications).await;
        let mut unsent = Vec::new();
        let mut sent = 0u64;
        for (outgoing, receivers) in batch.into_iter().zip(published.receivers) {
            match receivers {
                Some(_) => sent += 1,
                None => unsent.push(outgoing),
            }
        }
        self.shared.count_published(sent);
        self.shared.requeue(unsent);
        match published.error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// The gate for the broadcasts buffered through an outage.
    fn gate(&self) -> Gate {
        let now = Instant::now();
        // Other nodes wait at most their next backoff delay before they try again.
        let settle = match self.nodes {
            Some(_) => Duration::ZERO,
            None => self.reconnect.ceiling(self.backoff.attempts()),
        };
        Gate {
            nodes: self.nodes,
            settle_until: now + settle,
            deadline: now + self.settings.max_backoff,
            next_poll: now,
        }
    }

    /// Asks whether the other nodes are back; `true`: flush now.
    async fn poll_gate(
        &mut self,
        session: &mut Session,
        presence: &str,
        gate: &mut Gate,
    ) -> RedisResult<bool> {
        let mut back = true;
        if let Some(expected) = gate.nodes {
            // An answer lost to a push counts as "not yet": the gate asks again.
            let present = session.subscribers(presence).await?;
            back = present.is_some_and(|present| present >= expected);
        }
        let now = Instant::now();
        gate.next_poll = now + GATE_POLL;
        if now >= gate.deadline {
            if !back {
                tracing::info!(
                    node = %self.shared.node_id,
                    "flushing buffered broadcasts although fewer nodes are back than before the outage"
                );
            }
            return Ok(true);
        }
        Ok(back && now >= gate.settle_until)
    }
}
