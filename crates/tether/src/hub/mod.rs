//! Rooms and broadcast that cannot leak and never wait for a slow member.
//!
//! A connection registers as a [`Member`] and gets its [`Outbound`] queue (bounded); it
//! [`join`](Hub::join)s rooms and holds the returned [`Membership`] guards. Dropping a guard
//! leaves the room, and dropping the member leaves every room: whatever ends the connection
//! (a return, an error, a panic), it is gone from the hub, like the reference's
//! `try`/`finally`.
//!
//! [`Hub::broadcast`] clones one message (its payload is a shared `Bytes` buffer) into each
//! member's queue with `try_send`: it never awaits. A full queue is a slow consumer, handled by
//! the [`SlowConsumer`] policy (drop the message, or disconnect the member with
//! [`SLOW_CONSUMER_CLOSE`] 1013 "try again later", which the retry advice treats as
//! retryable); a closed queue is a dead member, removed. Each broadcast returns a
//! [`BroadcastReport`].
//!
//! # A room loop
//!
//! One task per connection: it joins a room (creating it if needed), forwards what the client
//! says to the room, and what the room says to the client. The `select!` is safe because
//! both `recv`s are cancel-safe; the guards leave the room however the loop ends.
//!
//! ```no_run
//! use tether::hub::Hub;
//! use tether::server::{Path, Server, Socket, State};
//!
//! async fn room(mut socket: Socket, Path(params): Path, State(hub): State<Hub>) -> Result<(), tether::Error> {
//!     let room = params.get("room").unwrap_or("lobby").to_owned();
//!     let (member, mut outbound) = hub.member_for(&socket.sender());
//!     let _membership = hub.join_or_create(&member, &room);
//!     loop {
//!         tokio::select! {
//!             incoming = socket.recv() => match incoming? {
//!                 // A room that was closed meanwhile is not an error of this connection.
//!                 Some(message) => { let _ = hub.broadcast(&room, &message); }
//!                 None => return Ok(()), // the client left normally
//!             },
//!             Some(message) = outbound.recv() => socket.send(message).await?,
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let server = Server::with_state(Hub::default())
//!     .route("/rooms/{room}", room)
//!     .build()
//!     .expect("valid routes");
//! server.serve("127.0.0.1:9001").await
//! # }
//! ```
//!
//! # History and recovery
//!
//! Every publication in a room ([`Hub::publish`], or [`Hub::broadcast`] of a message as it
//! is) takes the room's next [`Position`]: the room's epoch (random, new whenever the room is
//! created: after a close, or in a new process) and an offset counting from 1. With
//! [`HubConfig::with_history`], each room also keeps its last [`HistoryConfig::size`]
//! publications for [`HistoryConfig::ttl`]. A connection that comes back joins with
//! [`Hub::join_since`] and the last position it saw: it gets exactly the messages it missed,
//! in order, and every later one arrives in its queue, so none is lost or repeated. When the
//! history cannot cover the gap (another epoch, too many, too old, history off) the
//! [`Recovery`] says so with a [`RecoveryFailure`], and nothing is replayed: the client must
//! reload its state of the room instead. A member whose queue is full misses the message
//! there: with [`SlowConsumer::Disconnect`] (the default) it is disconnected and can recover
//! when it comes back; with [`SlowConsumer::DropMessage`] its queue has a gap (which the
//! offsets, if the messages carry them, reveal).
//!
//! What members receive carries its position when the hub has a [stamp](Hub::set_stamp),
//! a function that writes the position into the message (once per publication per node).
//!
//! With a backplane that keeps the history (`RedisBackplane`, when history is on), positions
//! and history are shared by every node: the store gives each publication its position, and
//! a member can recover on any node ([`Hub::join_since`] then asks the store). With a
//! backplane that keeps none ([`MemoryBus`]), positions are per node (other nodes'
//! publications take this node's next offsets when they arrive) and a hub does not recover
//! ([`RecoveryFailure::Disabled`]): its history would lack the others' messages.
//!
//! ```no_run
//! use std::time::Duration;
//! use tether::Message;
//! use tether::hub::{HistoryConfig, Hub, HubConfig, Position};
//!
//! # async fn run(last_seen: Option<Position>) {
//! let config = HubConfig::default().with_history(HistoryConfig::new(1000, Duration::from_secs(300)));
//! let hub = Hub::new(config);
//! // Members get each publication with its position, for the client to remember.
//! hub.set_stamp(|message: &Message, at: &Position| {
//!     Message::text(format!("{} {} {}", at.epoch, at.offset, message.as_text().unwrap_or("")))
//! });
//! hub.create_room("lobby", None).expect("a new room");
//! let published = hub.publish("lobby", &Message::text("hello")).expect("the room exists");
//! assert_eq!(published.position.map(|at| at.offset), Some(1));
//!
//! // A client comes back with the last position it saw.
//! let (member, mut outbound) = hub.member(|| {});
//! let (_membership, recovery) =
//!     hub.join_or_create_since(&member, "lobby", last_seen.as_ref()).await;
//! if recovery.recovered() {
//!     for message in recovery.missed() {
//!         // Send these first: offsets after `last_seen`, up to `recovery.position`.
//!         # let _ = message;
//!     }
//! } else {
//!     // Tell the client it missed messages that cannot be given (it reloads the room).
//! }
//! while let Some(message) = outbound.recv().await {
//!     // Then everything published since the join, in order.
//!     # let _ = message;
//! }
//! # }
//! ```
//!
//! A [`Backplane`] carries broadcasts between server nodes: the hub publishes every local
//! broadcast and subscribes to a room while it has local members. [`MemoryBus`] is the
//! in-process implementation; `RedisBackplane` (feature `redis`) runs on Redis or a Redis
//! Cluster (sharded pub/sub) and survives broker outages.

mod backplane;
mod fanout;
mod history;
mod member;
#[cfg(feature = "redis")]
mod redis;
mod stats;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tether_proto::deflate::DeflateConfig;
use tether_proto::{CloseCode, Message};
use tokio::sync::mpsc;

#[cfg(feature = "redis")]
pub use self::redis::{
    BackplaneError, BackplaneErrorKind, BackplaneStats, RedisBackplane, RedisOptions, ShardHealth,
};
pub use backplane::{
    Backplane, HistoryFuture, LocalDelivery, MemoryBackplane, MemoryBus, RemoteSink,
};
pub use history::{HistoryConfig, Position, Published, Recovery, RecoveryFailure, RecoveryOutcome};
pub use stats::{FANOUT_BUCKETS, FanoutHistogram, HubStats, RecoveryStats};

use crate::transport::Sender;
use history::RoomHistory;
use member::{Joined, MemberShared};
pub use member::{Member, Membership, Outbound};

/// The close code for a member disconnected as a slow consumer: 1013 "try again later"
/// (retryable: the client should reconnect with backoff).
pub const SLOW_CONSUMER_CLOSE: CloseCode = CloseCode::TRY_AGAIN_LATER;

/// What to do when a member's outbound queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum SlowConsumer {
    /// Drop the message for that member (counted), keep the member.
    DropMessage,
    /// Disconnect the member with [`SLOW_CONSUMER_CLOSE`] and remove it from every room.
    #[default]
    Disconnect,
}

/// Hub settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubConfig {
    /// How many messages a member's outbound queue holds. Default: 256.
    pub queue_capacity: usize,
    /// What a full queue means. Default: disconnect the member.
    pub slow_consumer: SlowConsumer,
    /// How much each room keeps for members that come back. Default: off.
    pub history: HistoryConfig,
}

impl Default for HubConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 256,
            slow_consumer: SlowConsumer::Disconnect,
            history: HistoryConfig::default(),
        }
    }
}

impl HubConfig {
    /// This config with `capacity` messages per member queue.
    pub fn with_queue_capacity(mut self, capacity: usize) -> Self {
        self.queue_capacity = capacity.max(1);
        self
    }

    /// This config with `policy` for slow consumers.
    pub fn with_slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// This config with `history` kept per room, for [`Hub::join_since`].
    pub fn with_history(mut self, history: HistoryConfig) -> Self {
        self.history = history;
        self
    }
}

/// Why a hub operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HubError {
    /// No room has this name.
    NoSuchRoom(String),
    /// A room with this name exists already.
    RoomExists(String),
    /// Only the room's creator may do this.
    NotOwner(String),
}

impl fmt::Display for HubError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchRoom(room) => write!(f, "no room named {room:?}"),
            Self::RoomExists(room) => write!(f, "a room named {room:?} exists already"),
            Self::NotOwner(room) => write!(f, "only the creator of {room:?} may close it"),
        }
    }
}

impl std::error::Error for HubError {}

/// What one broadcast did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BroadcastReport {
    /// Members whose queue took the message.
    pub delivered: usize,
    /// Slow members that did not get it (policy: drop the message).
    pub dropped: usize,
    /// Slow members disconnected (policy: disconnect).
    pub disconnected: usize,
    /// Members found dead (their connection had ended) and removed.
    pub removed: usize,
}

/// A room's name and its number of local members.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RoomInfo {
    /// The name.
    pub name: String,
    /// Local members.
    pub members: usize,
    /// The creator, for rooms created by a user.
    pub owner: Option<String>,
}

/// Rooms and their members; cheap to clone (one shared hub).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl fmt::Debug for Hub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hub")
            .field("rooms", &self.rooms_read().len())
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: HubConfig,
    /// The room table, locked only to find, create or close a room; each room has its own
    /// lock, so a broadcast to a big room does not hold up joins elsewhere.
    rooms: RwLock<HashMap<Arc<str>, Arc<Room>>>,
    next_member: AtomicU64,
    backplane: Option<Arc<dyn Backplane>>,
    stats: stats::Counters,
    /// Writes a publication's position into what members receive ([`Hub::set_stamp`]).
    stamp: RwLock<Option<Stamp>>,
}

/// Writes a publication's position into the message the members receive: given the
/// message as published and its position, the message to deliver (see [`Hub::set_stamp`]).
pub type Stamp = Arc<dyn Fn(&Message, &Position) -> Message + Send + Sync>;

struct Room {
    name: Arc<str>,
    owner: Option<String>,
    /// The room's position and kept messages. Lock order: this lock, then `members`.
    history: Mutex<RoomHistory>,
    members: RwLock<Members>,
    /// Publications held back for members whose recovery waits on the shared store, by
    /// member id. Lock order: `members`, then this lock.
    held: Mutex<HashMap<u64, Vec<(Position, Message)>>>,
    /// How many members `held` has (read without its lock on every fan-out).
    holding: AtomicUsize,
}

#[derive(Default)]
struct Members {
    /// Members by id, with the generation of the join that put them here.
    by_id: HashMap<u64, (Arc<MemberShared>, u64)>,
    /// Set (under this lock) when the room is closed: nobody joins it any more.
    closed: bool,
}

impl Room {
    fn read(&self) -> RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Members> {
        self.members.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn history_lock(&self) -> std::sync::MutexGuard<'_, RoomHistory> {
        self.history.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn held_lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Vec<(Position, Message)>>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn new(name: Arc<str>, owner: Option<&str>) -> Self {
        Self {
            name,
            owner: owner.map(str::to_owned),
            history: Mutex::new(RoomHistory::new()),
            members: RwLock::new(Members::default()),
            held: Mutex::new(HashMap::new()),
            holding: AtomicUsize::new(0),
        }
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new(HubConfig::default())
    }
}

impl Hub {
    /// A hub on this node only.
    pub fn new(config: HubConfig) -> Self {
        Self::build(config, None)
    }

    /// A hub whose broadcasts also travel through `backplane` to other nodes.
    pub fn with_backplane(config: HubConfig, backplane: Arc<dyn Backplane>) -> Self {
        let hub = Self::build(config, Some(Arc::clone(&backplane)));
        let weak = Arc::downgrade(&hub.inner);
        backplane.attach(
            Arc::new(
                move |room: &str, message: Message, position: Option<Position>| {
                    if let Some(inner) = weak.upgrade() {
                        let _ = Hub { inner }.deliver_remote(room, &message, position);
                    }
                },
            ),
            config.history,
        );
        hub
    }

    fn build(config: HubConfig, backplane: Option<Arc<dyn Backplane>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                rooms: RwLock::new(HashMap::new()),
                next_member: AtomicU64::new(1),
                backplane,
                stats: stats::Counters::default(),
                stamp: RwLock::new(None),
            }),
        }
    }

    /// Registers a connection: `disconnect` closes it (called once, for a slow consumer).
    /// Returns the member and its outbound queue.
    pub fn member<F>(&self, disconnect: F) -> (Member, Outbound)
    where
        F: Fn() + Send + Sync + 'static,
    {
        self.register(disconnect, None)
    }

    fn register<F>(
        &self,
        disconnect: F,
        compression: Option<(DeflateConfig, (u8, u8))>,
    ) -> (Member, Outbound)
    where
        F: Fn() + Send + Sync + 'static,
    {
        let (queue, receiver) = mpsc::channel(self.inner.config.queue_capacity.max(1));
        let shared = Arc::new(MemberShared {
            id: self.inner.next_member.fetch_add(1, Ordering::Relaxed),
            queue,
            disconnect: Box::new(disconnect),
            disconnected: AtomicBool::new(false),
            rooms: Mutex::new(HashMap::new()),
            compression,
        });
        let member = Member {
            shared,
            hub: self.clone(),
        };
        (member, Outbound { queue: receiver })
    }

    /// Registers a server connection; a slow consumer is closed with
    /// [`SLOW_CONSUMER_CLOSE`] and the reason `slow consumer`. A connection that compresses
    /// with no context (permessage-deflate without server context takeover) gets broadcasts
    /// compressed once for all such members.
    pub fn member_for(&self, sender: &Sender) -> (Member, Outbound) {
        let compression = sender.shared_compression();
        let sender = sender.clone();
        // The close runs on the runtime the member registered on, whichever thread the
        // broadcast that finds it slow runs on.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let disconnect = move || {
            let sender = sender.clone();
            if let Some(runtime) = &runtime {
                runtime.spawn(async move {
                    let _ = sender.close(SLOW_CONSUMER_CLOSE, "slow consumer").await;
                });
            }
        };
        self.register(disconnect, compression)
    }

    /// Creates a room, owned by `owner` if given (only the owner may close it then).
    ///
    /// # Errors
    /// [`HubError::RoomExists`].
    pub fn create_room(&self, name: &str, owner: Option<&str>) -> Result<(), HubError> {
        let mut rooms = self.rooms_write();
        if rooms.contains_key(name) {
            return Err(HubError::RoomExists(name.to_owned()));
        }
        let name: Arc<str> = Arc::from(name);
        rooms.insert(Arc::clone(&name), Arc::new(Room::new(name, owner)));
        Ok(())
    }

    /// Closes a room; `by` must be its owner when it has one (`None` closes any room, as the
    /// server itself). Returns how many members it had; their memberships end.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`], [`HubError::NotOwner`].
    pub fn close_room(&self, name: &str, by: Option<&str>) -> Result<usize, HubError> {
        self.close_room_inner(name, by, None)
    }

    /// Closes a room as [`close_room`](Hub::close_room) does, first queueing `notice` to each
    /// of its members (under the room's lock: nobody joins in between and misses it).
    ///
    /// # Errors
    /// As [`close_room`](Hub::close_room).
    pub fn close_room_with(
        &self,
        name: &str,
        by: Option<&str>,
        notice: &Message,
    ) -> Result<usize, HubError> {
        self.close_room_inner(name, by, Some(notice))
    }

    fn close_room_inner(
        &self,
        name: &str,
        by: Option<&str>,
        notice: Option<&Message>,
    ) -> Result<usize, HubError> {
        let room = {
            let mut rooms = self.rooms_write();
            let room = rooms
                .get(name)
                .ok_or_else(|| HubError::NoSuchRoom(name.to_owned()))?;
            let allowed = match (&room.owner, by) {
                (_, None) => true,
                (Some(owner), Some(by)) => owner == by,
                (None, Some(_)) => false,
            };
            if !allowed {
                return Err(HubError::NotOwner(name.to_owned()));
            }
            rooms
                .remove(name)
                .ok_or_else(|| HubError::NoSuchRoom(name.to_owned()))?
        };
        let members: Vec<Arc<MemberShared>> = {
            let mut members = room.write();
            members.closed = true;
            if let Some(notice) = notice {
                for (member, _) in members.by_id.values() {
                    let _ = member.queue.try_send(notice.clone());
                }
            }
            members
                .by_id
                .drain()
                .map(|(_, (member, _))| member)
                .collect()
        };
        for member in &members {
            let mut joined = member.rooms_lock();
            let same_room = joined
                .get(&room.name)
                .is_some_and(|entry| std::ptr::eq(entry.room.as_ptr(), Arc::as_ptr(&room)));
            if same_room {
                joined.remove(&room.name);
            }
        }
        if !members.is_empty() {
            if let Some(backplane) = &self.inner.backplane {
                backplane.unsubscribe(&room.name);
            }
        }
        Ok(members.len())
    }

    /// A room's name, local member count and owner.
    pub fn room_info(&self, name: &str) -> Option<RoomInfo> {
        self.room(name).map(|room| RoomInfo {
            name: room.name.to_string(),
            members: room.read().by_id.len(),
            owner: room.owner.clone(),
        })
    }

    /// Whether a room exists.
    pub fn has_room(&self, name: &str) -> bool {
        self.rooms_read().contains_key(name)
    }

    /// Every room with its number of local members, by name.
    pub fn rooms(&self) -> Vec<RoomInfo> {
        let rooms: Vec<Arc<Room>> = self.rooms_read().values().cloned().collect();
        let mut infos: Vec<RoomInfo> = rooms
            .iter()
            .map(|room| RoomInfo {
                name: room.name.to_string(),
                members: room.read().by_id.len(),
                owner: room.owner.clone(),
            })
            .collect();
        infos.sort_by(|a, b| a.name.cmp(&b.name));
        infos
    }

    /// The number of local members of `room`.
    pub fn member_count(&self, room: &str) -> Option<usize> {
        self.room(room).map(|room| room.read().by_id.len())
    }

    /// Adds `member` to `room`, creating the room (without an owner) if it does not exist:
    /// the way into rooms whose names clients choose. The membership lasts until the guard
    /// (or the member) drops.
    pub fn join_or_create(&self, member: &Member, room: &str) -> Membership {
        loop {
            if let Ok(membership) = self.join(member, room) {
                return membership;
            }
            // Missing (or closed just now): create it and try again. Only a room closed
            // again between the two steps, every time, could keep this going.
            let _ = self.create_room(room, None);
        }
    }

    /// Adds `member` to `room`; the membership lasts until the guard (or the member) drops.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn join(&self, member: &Member, room: &str) -> Result<Membership, HubError> {
        let entry = self
            .room(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))?;
        self.join_room(member, &entry)
    }

    /// Adds `member` to the room `entry`, unless it was closed.
    fn join_room(&self, member: &Member, entry: &Arc<Room>) -> Result<Membership, HubError> {
        let no_room = || HubError::NoSuchRoom(entry.name.to_string());
        let joined = Joined {
            room: Arc::downgrade(entry),
            generation: self.inner.next_member.fetch_add(1, Ordering::Relaxed),
        };
        let first = {
            let mut members = entry.write();
            if members.closed {
                return Err(no_room());
            }
            let first = members.by_id.is_empty();
            members.by_id.insert(
                member.shared.id,
                (Arc::clone(&member.shared), joined.generation),
            );
            first
        };
        member
            .shared
            .rooms_lock()
            .insert(Arc::clone(&entry.name), joined.clone());
        if first {
            if let Some(backplane) = &self.inner.backplane {
                backplane.subscribe(&entry.name);
            }
        }
        Ok(Membership {
            hub: Arc::downgrade(&self.inner),
            member: Arc::clone(&member.shared),
            name: Arc::clone(&entry.name),
            joined,
        })
    }

    /// Sets how a publication's position is written into what members receive: from now
    /// on, every publication ([`publish`](Hub::publish), [`broadcast`](Hub::broadcast), from
    /// another node, or recovered by [`join_since`](Hub::join_since)) reaches the members as
    /// `stamp(message, position)`. Without one they get the message as published.
    ///
    /// The stamp runs once per publication on each node (not once per member), under the
    /// room's lock: keep it short, and do not call the hub from it. With a shared history
    /// store the position is known only when the store gives it, which is why it is written
    /// here rather than by the publisher.
    ///
    /// ```
    /// use tether::Message;
    /// use tether::hub::Hub;
    ///
    /// let hub = Hub::default();
    /// hub.set_stamp(|message: &Message, at: &tether::hub::Position| {
    ///     Message::text(format!("{}@{}:{}", message.as_text().unwrap_or(""), at.epoch, at.offset))
    /// });
    /// ```
    pub fn set_stamp<F>(&self, stamp: F)
    where
        F: Fn(&Message, &Position) -> Message + Send + Sync + 'static,
    {
        *self
            .inner
            .stamp
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(stamp));
    }

    /// `message` stamped with `position` (itself when no stamp is set).
    fn stamped(&self, message: &Message, position: &Position) -> Message {
        let stamp = self
            .inner
            .stamp
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match &*stamp {
            Some(stamp) => stamp(message, position),
            None => message.clone(),
        }
    }

    /// The hub's counters since it started.
    pub fn stats(&self) -> HubStats {
        self.inner.stats.snapshot()
    }

    /// Whether the backplane (if any) is healthy.
    pub fn backplane_healthy(&self) -> bool {
        self.inner
            .backplane
            .as_ref()
            .is_none_or(|backplane| backplane.is_healthy())
    }

    /// Leaves the room of `joined`, if that join is still the member's current one there.
    fn leave(&self, member: &MemberShared, name: &Arc<str>, joined: &Joined) {
        {
            let mut rooms = member.rooms_lock();
            let current = rooms.get(name).is_some_and(|entry| {
                entry.generation == joined.generation && entry.room.ptr_eq(&joined.room)
            });
            if !current {
                return;
            }
            rooms.remove(name);
        }
        self.remove_from(member, joined);
    }

    /// Leaves every room the member is in.
    fn leave_all(&self, member: &MemberShared) {
        let joined: Vec<Joined> = member
            .rooms_lock()
            .drain()
            .map(|(_, entry)| entry)
            .collect();
        for entry in joined {
            self.remove_from(member, &entry);
        }
    }

    fn remove_from(&self, member: &MemberShared, joined: &Joined) {
        let Some(room) = joined.room.upgrade() else {
            return;
        };
        let last = {
            let mut members = room.write();
            match members.by_id.get(&member.id) {
                Some((_, generation)) if *generation == joined.generation => {}
                _ => return,
            }
            members.by_id.remove(&member.id);
            members.by_id.is_empty() && !members.closed
        };
        if last {
            if let Some(backplane) = &self.inner.backplane {
                backplane.unsubscribe(&room.name);
            }
        }
    }

    fn room(&self, name: &str) -> Option<Arc<Room>> {
        self.rooms_read().get(name).cloned()
    }

    fn rooms_read(&self) -> RwLockReadGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        self.inner
            .rooms
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn rooms_write(&self) -> RwLockWriteGuard<'_, HashMap<Arc<str>, Arc<Room>>> {
        self.inner
            .rooms
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
