//! The backplane: how broadcasts travel between server nodes. [`MemoryBus`] connects hubs in
//! one process (tests, and the shape a broker-backed backplane follows).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tether_proto::Message;

/// Where a backplane delivers broadcasts from other nodes: the hub's local delivery.
pub type RemoteSink = Arc<dyn Fn(&str, Message) + Send + Sync>;

/// Carries broadcasts between nodes. Implementations must not block: `publish` queues or
/// sends without waiting on the network.
pub trait Backplane: Send + Sync + 'static {
    /// Called once by the hub: deliver other nodes' broadcasts to `sink`.
    fn attach(&self, sink: RemoteSink);
    /// Sends a local broadcast to the other nodes.
    fn publish(&self, room: &str, message: &Message);
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
    fn attach(&self, sink: RemoteSink) {
        *self
            .node
            .sink
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(sink);
    }

    fn publish(&self, room: &str, message: &Message) {
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
                sink(room, message.clone());
            }
        }
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
