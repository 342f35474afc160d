//! Positions and an in-memory history per room, so a member that comes back can be given
//! exactly what it missed, or be told that it cannot.
//!
//! Every room has an epoch (a random string made when the room is created: a room closed and
//! created again, or a new process, has a new one) and counts its publications: the first is
//! at offset 1, the next at 2, and so on; a room with no publication is at offset 0. A
//! [`Position`] is the pair.
//!
//! With a [`HistoryConfig`] of a size above 0, each room keeps its last `size` publications
//! (fewer once some are older than `ttl`). [`Hub::join_since`](super::Hub::join_since) adds a
//! member and, under the room's history lock, works out what it missed since a position: the
//! messages at the offsets after it, in order, or a [`RecoveryFailure`] when the history
//! cannot cover the whole gap (never a part of it). Everything published after that lock is
//! released goes to the member's queue, so the missed messages followed by the queue are
//! exactly the room's publications, contiguous and each once.
//!
//! With a backplane that keeps the history (a store shared by the nodes), the store gives the
//! positions and keeps the publications; [`RoomHistory`] then only follows the last position
//! this node saw, and a recovery asks the store while the room holds back the member's live
//! publications ([`HeldBack`]).
//!
//! Lock order: a room's history lock, then its members lock, then its held-back lock, never
//! the other way.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_proto::Message;
use tokio::time::Instant;

use super::{BroadcastReport, Hub, HubError, Member, Membership, Room};

/// Where a room is: its epoch and the offset of its last publication.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Position {
    /// The room's epoch: a random string made when the room was created. A room closed and
    /// created again, or one in a restarted process, has another epoch, and positions of the
    /// old one mean nothing in it.
    pub epoch: Arc<str>,
    /// The offset of the room's last publication: 1 for the first, 0 before any.
    pub offset: u64,
}

impl Position {
    /// The position `offset` in the room epoch `epoch`.
    pub fn new(epoch: impl Into<Arc<str>>, offset: u64) -> Self {
        Self {
            epoch: epoch.into(),
            offset,
        }
    }
}

/// How much history each room keeps, for [`Hub::join_since`](super::Hub::join_since).
///
/// Default: off (size 0, ttl 300 s): rooms still count positions, but keep no message and
/// every recovery fails with [`RecoveryFailure::Disabled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistoryConfig {
    /// The most publications a room keeps, and so the most one recovery may replay. 0 turns
    /// history and recovery off. Default: 0.
    pub size: usize,
    /// How long a publication stays in the history; older ones count as gone (a recovery
    /// that needs one fails with [`RecoveryFailure::TooOld`]). Default: 300 s.
    pub ttl: Duration,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            size: 0,
            ttl: Duration::from_secs(300),
        }
    }
}

impl HistoryConfig {
    /// Keep the last `size` publications of each room, each for `ttl`.
    pub fn new(size: usize, ttl: Duration) -> Self {
        Self { size, ttl }
    }

    /// Whether rooms keep messages (size above 0).
    pub fn is_enabled(&self) -> bool {
        self.size > 0
    }
}

/// Why a recovery could not give every missed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecoveryFailure {
    /// The position is of another epoch of the room (it was closed and created again, or the
    /// process restarted), or its offset is ahead of the room's: the member should treat its
    /// state of the room as stale and reload it.
    EpochChanged,
    /// A message the member missed is older than the history's `ttl`.
    TooOld,
    /// The member missed more messages than the history's `size` keeps.
    TooMany,
    /// History is off: [`HistoryConfig::size`] is 0, or the hub has a backplane that keeps
    /// no history (other nodes' messages are not in this node's history, so a recovery
    /// could be partial).
    Disabled,
    /// The shared history store (the backplane's) could not be reached or did not answer in
    /// time: whether anything was missed is unknown.
    Unavailable,
}

impl RecoveryFailure {
    /// A short `snake_case` name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::TooOld => "too_old",
            Self::TooMany => "too_many",
            Self::Disabled => "disabled",
            Self::Unavailable => "unavailable",
        }
    }
}

/// What a join with a position got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryOutcome {
    /// No position was given: a plain join (nothing is replayed).
    NotAsked,
    /// Every message missed, in order: the offsets after the given position up to the
    /// room's current one (empty when nothing was missed).
    Recovered(Vec<Message>),
    /// The history cannot cover the gap; nothing is replayed.
    Failed(RecoveryFailure),
}

/// The result of [`Hub::join_since`](super::Hub::join_since): the room's position when the
/// member joined, and what was recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovery {
    /// The room's position when the member joined: every later publication goes to the
    /// member's queue.
    pub position: Position,
    /// Whether the missed messages could be given, and which.
    pub outcome: RecoveryOutcome,
}

impl Recovery {
    /// Whether every missed message is in [`missed`](Recovery::missed).
    pub fn recovered(&self) -> bool {
        matches!(self.outcome, RecoveryOutcome::Recovered(_))
    }

    /// The missed messages (empty unless recovered).
    pub fn missed(&self) -> &[Message] {
        match &self.outcome {
            RecoveryOutcome::Recovered(missed) => missed,
            _ => &[],
        }
    }

    /// The missed messages, taken out (empty unless recovered).
    pub fn into_missed(self) -> Vec<Message> {
        match self.outcome {
            RecoveryOutcome::Recovered(missed) => missed,
            _ => Vec::new(),
        }
    }

    /// Why the recovery failed; `None` when it succeeded or was not asked for.
    pub fn failure(&self) -> Option<RecoveryFailure> {
        match self.outcome {
            RecoveryOutcome::Failed(failure) => Some(failure),
            _ => None,
        }
    }
}

/// What one publication did: its position and the local fan-out's report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Published {
    /// The publication's position in its room; `None` when a shared history store gives it
    /// (a backplane that [keeps history](super::Backplane::keeps_history)): the publication
    /// then reaches this node's members too through the backplane, stamped with it.
    pub position: Option<Position>,
    /// What the fan-out to the local members did (nothing yet when `position` is `None`).
    pub report: BroadcastReport,
}

impl Hub {
    /// Adds `member` to `room` as [`join`](Hub::join) does and, when `since` is given,
    /// recovers what the member missed since that position: every message published in the
    /// room after it, in order (see [`Recovery`]), or why that is impossible. Nothing is
    /// ever replayed in part.
    ///
    /// Every message published after the join goes to the member's queue, and none of the
    /// recovered ones does: send the missed messages before anything from the queue, and the
    /// member sees every publication once, in order. `since: None` is a plain join that
    /// reports the room's position ([`RecoveryOutcome::NotAsked`]).
    ///
    /// On one node (or with a backplane that keeps no history) this completes at once, under
    /// the room's history lock. With a backplane that [keeps the
    /// history](super::Backplane::keeps_history), it asks the shared store, which takes a
    /// round trip: meanwhile the room's new publications for this member are held back, then
    /// those the store's answer already covers are dropped and the others queued, in order.
    /// A store that cannot be reached gives [`RecoveryFailure::Unavailable`].
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub async fn join_since(
        &self,
        member: &Member,
        room: &str,
        since: Option<&Position>,
    ) -> Result<(Membership, Recovery), HubError> {
        let entry = self
            .room(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        let (membership, recovery) = match self.shared_store() {
            Some(backplane) => self.join_shared(member, &entry, since, backplane).await?,
            None => {
                let mut history = entry.history_lock();
                let membership = self.join_room(member, &entry)?;
                let recovery = history.recover(
                    since,
                    &self.inner.config.history,
                    self.recovery_enabled(),
                    Instant::now(),
                );
                (membership, recovery)
            }
        };
        self.inner.stats.recovery.record(&recovery);
        Ok((membership, recovery))
    }

    /// [`join_since`](Hub::join_since) with a shared history store.
    async fn join_shared(
        &self,
        member: &Member,
        entry: &Arc<Room>,
        since: Option<&Position>,
        backplane: Arc<dyn super::Backplane>,
    ) -> Result<(Membership, Recovery), HubError> {
        // Hold back what the room publishes for this member until the store has answered.
        let held = HeldBack::start(entry, member.shared.id);
        let membership = self.join_room(member, entry)?;
        let read = backplane
            .recover(&entry.name, since.cloned(), self.inner.config.history)
            .await;
        let recovery = match read {
            Ok(mut recovery) => {
                entry.history_lock().observe(&recovery.position);
                if let RecoveryOutcome::Recovered(missed) = &mut recovery.outcome {
                    let first = recovery.position.offset - missed.len() as u64 + 1;
                    for (offset, message) in (first..).zip(missed.iter_mut()) {
                        let at = Position::new(Arc::clone(&recovery.position.epoch), offset);
                        *message = self.stamped(message, &at);
                    }
                }
                if since.is_none() {
                    recovery.outcome = RecoveryOutcome::NotAsked;
                }
                recovery
            }
            Err(failure) => Recovery {
                position: entry.history_lock().position(),
                outcome: match since {
                    Some(_) => RecoveryOutcome::Failed(failure),
                    None => RecoveryOutcome::NotAsked,
                },
            },
        };
        let started = Instant::now();
        let delivery = held.release(self, &recovery.position);
        self.settle(delivery, started);
        Ok((membership, recovery))
    }

    /// [`join_since`](Hub::join_since), creating the room (without an owner) if it does not
    /// exist, as [`join_or_create`](Hub::join_or_create) does. A room created here on one
    /// node has a new epoch: a `since` of an older one fails with
    /// [`RecoveryFailure::EpochChanged`].
    pub async fn join_or_create_since(
        &self,
        member: &Member,
        room: &str,
        since: Option<&Position>,
    ) -> (Membership, Recovery) {
        loop {
            if let Ok(joined) = self.join_since(member, room, since).await {
                return joined;
            }
            // Missing (or closed just now): create it and try again.
            let _ = self.create_room(room, None);
        }
    }

    /// The position of `room`: its epoch and the offset of its last publication (with a
    /// shared history store: of the last one this node saw).
    pub fn position(&self, room: &str) -> Option<Position> {
        self.room(room).map(|room| room.history_lock().position())
    }

    /// Whether rooms keep messages on this node and recover them: history on and no
    /// backplane (the other nodes' messages are not in this node's history, so a recovery
    /// could miss some). With a backplane that keeps the history, see
    /// [`shared_store`](Hub::shared_store).
    pub(super) fn recovery_enabled(&self) -> bool {
        self.inner.config.history.is_enabled() && self.inner.backplane.is_none()
    }

    /// The backplane, when it keeps the rooms' history (and history is on).
    pub(super) fn shared_store(&self) -> Option<Arc<dyn super::Backplane>> {
        self.inner
            .backplane
            .as_ref()
            .filter(|backplane| self.inner.config.history.is_enabled() && backplane.keeps_history())
            .cloned()
    }
}

/// A member whose room publications are held back while its recovery asks the shared store
/// (see [`Hub::join_since`]). Dropped without [`release`](HeldBack::release) (the join was
/// abandoned), it forgets them.
struct HeldBack {
    room: Arc<Room>,
    member: u64,
}

impl HeldBack {
    fn start(room: &Arc<Room>, member: u64) -> Self {
        room.held_lock().insert(member, Vec::new());
        room.holding.fetch_add(1, Ordering::AcqRel);
        Self {
            room: Arc::clone(room),
            member,
        }
    }

    /// Queues what was held back and is not covered by `position` (the store's answer), in
    /// order, under the room's members lock: no publication overtakes them.
    fn release(self, hub: &Hub, position: &Position) -> super::fanout::Delivery {
        let members = self.room.write();
        let held = self.take().unwrap_or_default();
        let mut delivery = super::fanout::Delivery::default();
        let Some((member, _)) = members.by_id.get(&self.member) else {
            return delivery;
        };
        for (at, message) in held {
            if at.epoch == position.epoch && at.offset <= position.offset {
                continue; // The recovery (or the position reported) covers it.
            }
            hub.offer(member, message, &mut delivery);
        }
        delivery
    }

    fn take(&self) -> Option<Vec<(Position, Message)>> {
        let held = self.room.held_lock().remove(&self.member);
        if held.is_some() {
            self.room.holding.fetch_sub(1, Ordering::AcqRel);
        }
        held
    }
}

impl Drop for HeldBack {
    fn drop(&mut self) {
        let _ = self.take();
    }
}

/// One room's epoch, last offset and kept publications. Guarded by the room's history lock.
pub(super) struct RoomHistory {
    epoch: Arc<str>,
    last: u64,
    /// With a shared store: whether `epoch` is this node's own, for publications delivered
    /// while the store was unreachable (see [`advance_alone`](RoomHistory::advance_alone)).
    alone: bool,
    /// `(offset, when, message)`, oldest first; offsets contiguous.
    entries: VecDeque<(u64, Instant, Message)>,
}

impl RoomHistory {
    pub(super) fn new() -> Self {
        Self {
            epoch: new_epoch(),
            last: 0,
            alone: false,
            entries: VecDeque::new(),
        }
    }

    /// The room's current position.
    pub(super) fn position(&self) -> Position {
        Position {
            epoch: Arc::clone(&self.epoch),
            offset: self.last,
        }
    }

    /// Takes the next offset and returns its position.
    pub(super) fn advance(&mut self) -> Position {
        self.last += 1;
        self.position()
    }

    /// With a shared store: the room is at `position` (a publication it delivered, or the
    /// store's answer to a join).
    pub(super) fn observe(&mut self, position: &Position) {
        if position.epoch != self.epoch || position.offset > self.last || self.alone {
            self.epoch = Arc::clone(&position.epoch);
            self.last = position.offset;
            self.alone = false;
        }
    }

    /// With a shared store that cannot be reached: the next position in an epoch of this
    /// node's own (a new one when the room was following the store), so that no position
    /// handed out now can be mistaken for one of the store's. A member holding one of these
    /// gets [`RecoveryFailure::EpochChanged`] from the store later: it reloads the room.
    pub(super) fn advance_alone(&mut self) -> Position {
        if !self.alone {
            self.epoch = new_epoch();
            self.last = 0;
            self.alone = true;
        }
        self.advance()
    }

    /// Keeps `message` as the publication at the current offset, dropping what is too many
    /// or too old.
    pub(super) fn append(&mut self, config: &HistoryConfig, now: Instant, message: &Message) {
        self.entries.push_back((self.last, now, message.clone()));
        while self.entries.len() > config.size {
            self.entries.pop_front();
        }
        self.prune(config, now);
    }

    fn prune(&mut self, config: &HistoryConfig, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|(_, at, _)| now.saturating_duration_since(*at) > config.ttl)
        {
            self.entries.pop_front();
        }
    }

    /// What a member at `since` missed; `enabled` is false when recovery is off.
    pub(super) fn recover(
        &mut self,
        since: Option<&Position>,
        config: &HistoryConfig,
        enabled: bool,
        now: Instant,
    ) -> Recovery {
        let position = self.position();
        let outcome = match since {
            None => RecoveryOutcome::NotAsked,
            Some(since) => match self.missed_since(since, config, enabled, now) {
                Ok(missed) => RecoveryOutcome::Recovered(missed),
                Err(failure) => RecoveryOutcome::Failed(failure),
            },
        };
        Recovery { position, outcome }
    }

    fn missed_since(
        &mut self,
        since: &Position,
        config: &HistoryConfig,
        enabled: bool,
        now: Instant,
    ) -> Result<Vec<Message>, RecoveryFailure> {
        if !enabled {
            return Err(RecoveryFailure::Disabled);
        }
        if since.epoch != self.epoch || since.offset > self.last {
            return Err(RecoveryFailure::EpochChanged);
        }
        let count = self.last - since.offset;
        if count == 0 {
            return Ok(Vec::new());
        }
        // The history keeps the last `size` offsets unless age removed them: a gap within
        // `size` whose first offset is gone was cut by age.
        if !usize::try_from(count).is_ok_and(|count| count <= config.size) {
            return Err(RecoveryFailure::TooMany);
        }
        self.prune(config, now);
        let first = since.offset + 1;
        let Some(&(oldest, _, _)) = self.entries.front() else {
            return Err(RecoveryFailure::TooOld);
        };
        if oldest > first {
            return Err(RecoveryFailure::TooOld);
        }
        // Offsets are contiguous, so `first` is at index `first - oldest`.
        let skip = usize::try_from(first - oldest).map_err(|_| RecoveryFailure::TooMany)?;
        Ok(self
            .entries
            .iter()
            .skip(skip)
            .map(|(_, _, message)| message.clone())
            .collect())
    }
}

/// A new epoch: 16 hex digits, random (or, should the system's source fail, from the clock
/// and a counter: still different for every room of the process and across restarts).
pub(super) fn new_epoch() -> Arc<str> {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_nanos() as u64);
        let count = FALLBACK.fetch_add(1, Ordering::Relaxed);
        bytes = (nanos ^ count.rotate_left(48) ^ u64::from(std::process::id())).to_be_bytes();
    }
    let mut epoch = String::with_capacity(16);
    for byte in bytes {
        let _ = write!(epoch, "{byte:02x}");
    }
    Arc::from(epoch)
}
