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
//! Lock order: a room's history lock, then its members lock, never the other way.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tether_proto::Message;
use tokio::time::Instant;

use super::{BroadcastReport, Hub, HubError, Member, Membership};

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
    /// History is off: [`HistoryConfig::size`] is 0, or the hub has a backplane (other
    /// nodes' messages are not in this node's history, so a recovery could be partial).
    Disabled,
}

impl RecoveryFailure {
    /// A short `snake_case` name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::TooOld => "too_old",
            Self::TooMany => "too_many",
            Self::Disabled => "disabled",
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
    /// The publication's position in its room.
    pub position: Position,
    /// What the fan-out to the local members did.
    pub report: BroadcastReport,
}

impl Hub {
    /// Adds `member` to `room` as [`join`](Hub::join) does and, when `since` is given,
    /// recovers what the member missed since that position: every message published in the
    /// room after it, in order (see [`Recovery`]), or why that is impossible. Nothing is
    /// ever replayed in part.
    ///
    /// Under the room's history lock, so every message published after the join goes to
    /// the member's queue: send the missed messages before anything from the queue, and the
    /// member sees every publication once, in order. `since: None` is a plain join that
    /// reports the room's position ([`RecoveryOutcome::NotAsked`]).
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn join_since(
        &self,
        member: &Member,
        room: &str,
        since: Option<&Position>,
    ) -> Result<(Membership, Recovery), HubError> {
        let entry = self
            .room(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        let (membership, recovery) = {
            let mut history = entry.history_lock();
            let membership = self.join_room(member, &entry)?;
            let recovery = history.recover(
                since,
                &self.inner.config.history,
                self.recovery_enabled(),
                Instant::now(),
            );
            (membership, recovery)
        };
        self.inner.stats.recovery.record(&recovery);
        Ok((membership, recovery))
    }

    /// [`join_since`](Hub::join_since), creating the room (without an owner) if it does not
    /// exist, as [`join_or_create`](Hub::join_or_create) does. A room created here has a new
    /// epoch: a `since` of an older one fails with [`RecoveryFailure::EpochChanged`].
    pub fn join_or_create_since(
        &self,
        member: &Member,
        room: &str,
        since: Option<&Position>,
    ) -> (Membership, Recovery) {
        loop {
            if let Ok(joined) = self.join_since(member, room, since) {
                return joined;
            }
            // Missing (or closed just now): create it and try again.
            let _ = self.create_room(room, None);
        }
    }

    /// The position of `room`: its epoch and the offset of its last publication.
    pub fn position(&self, room: &str) -> Option<Position> {
        self.room(room).map(|room| room.history_lock().position())
    }

    /// Whether rooms keep messages and recover them: history on and no backplane (the other
    /// nodes' messages are not in this node's history, so a recovery could miss some).
    pub(super) fn recovery_enabled(&self) -> bool {
        self.inner.config.history.is_enabled() && self.inner.backplane.is_none()
    }
}

/// One room's epoch, last offset and kept publications. Guarded by the room's history lock.
pub(super) struct RoomHistory {
    epoch: Arc<str>,
    last: u64,
    /// `(offset, when, message)`, oldest first; offsets contiguous.
    entries: VecDeque<(u64, Instant, Message)>,
}

impl RoomHistory {
    pub(super) fn new() -> Self {
        Self {
            epoch: new_epoch(),
            last: 0,
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
fn new_epoch() -> Arc<str> {
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
