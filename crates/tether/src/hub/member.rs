//! A hub's members: [`Member`] (a connection registered with the hub), its [`Outbound`]
//! queue of delivered messages, and [`Membership`] (one room joined, left when dropped).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tether_proto::deflate::DeflateConfig;
use tokio::sync::mpsc;

use super::{Hub, Inner, Room};
use tether_proto::Message;

/// What the hub keeps of a member.
pub(super) struct MemberShared {
    pub(super) id: u64,
    pub(super) queue: mpsc::Sender<Message>,
    /// Closes the member's connection (used for slow consumers).
    pub(super) disconnect: Box<dyn Fn() + Send + Sync>,
    pub(super) disconnected: AtomicBool,
    /// The rooms joined: the room itself (not just its name: a closed room and a new one
    /// with the same name are different rooms) and the join's generation.
    pub(super) rooms: Mutex<HashMap<Arc<str>, Joined>>,
    /// When the connection compresses with no context (permessage-deflate without server
    /// context takeover): which messages and with what key, so a broadcast compresses
    /// once for every such member.
    pub(super) compression: Option<(DeflateConfig, (u8, u8))>,
}

/// One room a member is in.
#[derive(Clone)]
pub(super) struct Joined {
    pub(super) room: Weak<Room>,
    pub(super) generation: u64,
}

impl MemberShared {
    pub(super) fn rooms_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Joined>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A connection registered with a hub. Dropping it leaves every room.
pub struct Member {
    pub(super) shared: Arc<MemberShared>,
    pub(super) hub: Hub,
}

impl fmt::Debug for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Member")
            .field("id", &self.shared.id)
            .finish_non_exhaustive()
    }
}

/// A member's outbound queue: what broadcasts delivered to it, for its connection to send.
#[derive(Debug)]
pub struct Outbound {
    pub(super) queue: mpsc::Receiver<Message>,
}

impl Outbound {
    /// The next queued message; `None` once the member is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Message> {
        self.queue.recv().await
    }

    /// A queued message, if one is waiting.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.queue.try_recv().ok()
    }
}

/// Membership of one room; leaves the room when dropped. Joining the same room again makes
/// a new guard that takes over: dropping the older one then does nothing.
pub struct Membership {
    pub(super) hub: Weak<Inner>,
    pub(super) member: Arc<MemberShared>,
    pub(super) name: Arc<str>,
    pub(super) joined: Joined,
}

impl fmt::Debug for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Membership")
            .field("member", &self.member.id)
            .field("room", &self.name)
            .finish()
    }
}

impl Membership {
    /// The room's name.
    pub fn room(&self) -> &str {
        &self.name
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(inner) = self.hub.upgrade() {
            Hub { inner }.leave(&self.member, &self.name, &self.joined);
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.hub.leave_all(&self.shared);
    }
}

impl Member {
    /// The member's id in this hub.
    pub fn id(&self) -> u64 {
        self.shared.id
    }

    /// The rooms the member is in.
    pub fn rooms(&self) -> Vec<String> {
        let rooms = self
            .shared
            .rooms
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut names: Vec<String> = rooms.keys().map(|room| room.to_string()).collect();
        names.sort();
        names
    }

    /// Whether the hub disconnected this member as a slow consumer.
    pub fn was_disconnected(&self) -> bool {
        self.shared.disconnected.load(Ordering::Acquire)
    }
}
