//! The backplane: how broadcasts travel between server nodes. [`MemoryBus`] connects hubs in
//! one process (tests, and the shape a broker-backed backplane follows).
//!
//! A backplane may also keep the rooms' history for every node (a shared history store, as
//! `RedisBackplane` does): then it gives each publication its position, delivers it to every
//! node (the publishing one too) with that position, and reads the history back for a
//! recovery. See [`Backplane::keeps_history`].

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tether_proto::Message;

use super::history::{HistoryConfig, Position, Recovery, RecoveryFailure};

/// Where a backplane delivers broadcasts: the hub's local delivery. The position is given
/// when the backplane keeps the history (it gave the publication its position).
pub type RemoteSink = Arc<dyn Fn(&str, Message, Option<Position>) + Send + Sync>;

/// What [`Backplane::recover`] returns: the room's position and the missed publications as
/// they were published (the hub stamps them), or why there is no answer (the store is
/// unreachable: [`RecoveryFailure::Unavailable`]).
pub type HistoryFuture = Pin<Box<dyn Future<Output = Result<Recovery, RecoveryFailure>> + Send>>;

/// Who delivers a publication to the publishing node's own members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LocalDelivery {
    /// The hub, now (the backplane only carries it to the other nodes).
    Now,
    /// The backplane, with the position the shared history gives it, like every other node.
    Positioned,
}

/// Carries broadcasts between nodes. Implementations must not block: `publish` queues or
/// sends without waiting on the network.
pub trait Backplane: Send + Sync + 'static {
    /// Called once by the hub: deliver broadcasts to `sink`. `history` is the hub's: a
    /// backplane that can keep the rooms' history keeps this much (nothing when it is off).
    fn attach(&self, sink: RemoteSink, history: HistoryConfig);
    /// Sends a local broadcast to the other nodes; says who delivers it on this node. A
    /// backplane that keeps no history always answers [`LocalDelivery::Now`].
    fn publish(&self, room: &str, message: &Message) -> LocalDelivery;
    /// Whether this backplane keeps the rooms' history for every node: it then answers
    /// [`LocalDelivery::Positioned`] while it can reach its store, delivers every
    /// publication with its position, and [`recover`](Backplane::recover) reads the history.
    /// Default: no.
    fn keeps_history(&self) -> bool {
        false
    }
    /// Reads `room`'s position and, with `since`, the publications after it, checked against
    /// `history`'s bounds. Called after the hub's member joined (so the backplane is, or is
    /// about to be, subscribed to the room): it must answer only once its subscription is in
    /// place, so that every later publication reaches the hub. Default:
    /// [`RecoveryFailure::Disabled`].
    fn recover(
        &self,
        room: &str,
        since: Option<Position>,
        history: HistoryConfig,
    ) -> HistoryFuture {
        let _ = (room, since, history);
        Box::pin(async { Err(RecoveryFailure::Disabled) })
    }
    /// This node has local members in `room` now: receive its broadcasts.
    fn subscribe(&self, room: &str);
    /// This node has no local member in `room` any more.
    fn unsubscribe(&self, room: &str);
    /// Whether broadcasts currently reach the other nodes.
    fn is_healthy(&self) -> bool {
        true
    }
}

/// An in-process bus joining several hubs, each through its own [`MemoryBackplane`].
#[derive(Clone, Default)]
pub struct MemoryBus {
    nodes: Arc<Mutex<Vec<Weak<Node>>>>,
}

impl std::fmt::Debug for MemoryBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBus").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Node {
    sink: Mutex<Option<RemoteSink>>,
    rooms: Mutex<HashSet<String>>,
}

/// One node's connection to a [`MemoryBus`].
pub struct MemoryBackplane {
    bus: MemoryBus,
    node: Arc<Node>,
}

impl std::fmt::Debug for MemoryBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackplane").finish_non_exhaustive()
    }
}

impl MemoryBus {
    /// A new, empty bus.
    pub fn new() -> Self {
        Self::default()
    }

    /// A backplane for one more node on this bus.
    pub fn backplane(&self) -> Arc<MemoryBackplane> {
        let node = Arc::new(Node::default());
        let mut nodes = self.nodes.lock().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|node| node.strong_count() > 0);
        nodes.push(Arc::downgrade(&node));
        Arc::new(MemoryBackplane {
            bus: self.clone(),
            node,
        })
    }
}

impl MemoryBackplane {
    /// The rooms this node is subscribed to, sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        let mut rooms: Vec<String> = self
            .node
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        rooms.sort();
        rooms
    }
}

impl Backplane for MemoryBackplane {
    fn attach(&self, sink: RemoteSink, _history: HistoryConfig) {
        *self
            .node
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    fn publish(&self, room: &str, message: &Message) -> LocalDelivery {
        let nodes: Vec<Arc<Node>> = self
            .bus
            .nodes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .filter(|node| !Arc::ptr_eq(node, &self.node))
            .collect();
        for node in nodes {
            let subscribed = node
                .rooms
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(room);
            let sink = node
                .sink
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            if let (true, Some(sink)) = (subscribed, sink) {
                sink(room, message.clone(), None);
            }
        }
        LocalDelivery::Now
    }

    fn subscribe(&self, room: &str) {
        self.node
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(room.to_owned());
    }

    fn unsubscribe(&self, room: &str) {
        self.node
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(room);
    }
}
