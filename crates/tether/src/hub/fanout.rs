//! Publishing: a message gets its room's next position, goes into the room's history and
//! into every local member's queue (compressed once for the members that compress with no
//! context), then through the backplane to the other nodes.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tether_proto::Message;
use tether_proto::deflate::compress_stateless;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::history::{Position, Published};
use super::{BroadcastReport, Hub, HubError, MemberShared, Members, Room, SlowConsumer};
use crate::transport::precompressed;

/// What one fan-out did, and the members to disconnect or forget once no lock is held.
struct Delivery {
    report: BroadcastReport,
    gone: Vec<Arc<MemberShared>>,
}

impl Hub {
    /// Publishes a message to `room`: `make` builds it from its position (so a protocol can
    /// write the position into the message), the room's history keeps it (with
    /// [`HubConfig::with_history`](super::HubConfig::with_history)), every local member's
    /// queue gets it and the backplane carries it to the other nodes. Never waits.
    ///
    /// Positions and fan-out happen under the room's history lock: every member's queue gets
    /// the room's publications in offset order, and a [`join_since`](Hub::join_since) sees
    /// each publication either in the history or in its queue, never both. `make` runs under
    /// that lock: keep it short, and do not call the hub from it.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn publish(
        &self,
        room: &str,
        make: impl FnOnce(&Position) -> Message,
    ) -> Result<Published, HubError> {
        let started = Instant::now();
        let entry = self.room_or_err(room)?;
        let (message, position, delivery) = {
            let mut history = entry.history_lock();
            let position = history.advance();
            let message = make(&position);
            if self.recovery_enabled() {
                history.append(&self.inner.config.history, started, &message);
            }
            let delivery = self.fan_out(&entry, &message);
            (message, position, delivery)
        };
        let report = self.settle(delivery, started);
        if let Some(backplane) = &self.inner.backplane {
            backplane.publish(room, &message);
        }
        Ok(Published { position, report })
    }

    /// Sends `message` to every member of `room` on this node and, through the backplane, on
    /// the others: a [`publish`](Hub::publish) of the message as it is (it takes the room's
    /// next position). Never waits: see the module documentation.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn broadcast(&self, room: &str, message: &Message) -> Result<BroadcastReport, HubError> {
        self.publish(room, |_| message.clone())
            .map(|published| published.report)
    }

    /// Delivers `message` to the local members of `room` only (what a backplane does with a
    /// remote broadcast). It takes no position and is not kept in the history: positions and
    /// history are per node.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn deliver_local(
        &self,
        room: &str,
        message: &Message,
    ) -> Result<BroadcastReport, HubError> {
        let started = Instant::now();
        let entry = self.room_or_err(room)?;
        let delivery = self.fan_out(&entry, message);
        Ok(self.settle(delivery, started))
    }

    fn room_or_err(&self, room: &str) -> Result<Arc<Room>, HubError> {
        self.room(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))
    }

    /// Queues `message` to every member of `room` with `try_send`, under the members lock.
    fn fan_out(&self, room: &Room, message: &Message) -> Delivery {
        let mut report = BroadcastReport::default();
        let mut gone = Vec::new();
        let members = room.read();
        compress_once(&members, message);
        for (member, _) in members.by_id.values() {
            match member.queue.try_send(message.clone()) {
                Ok(()) => report.delivered += 1,
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    report.removed += 1;
                    gone.push(Arc::clone(member));
                }
                Err(mpsc::error::TrySendError::Full(_)) => match self.inner.config.slow_consumer {
                    SlowConsumer::DropMessage => report.dropped += 1,
                    SlowConsumer::Disconnect => {
                        report.disconnected += 1;
                        gone.push(Arc::clone(member));
                    }
                },
            }
        }
        Delivery { report, gone }
    }

    /// Disconnects the slow members and forgets the dead ones of a fan-out (with no lock
    /// held), and counts it.
    fn settle(&self, delivery: Delivery, started: Instant) -> BroadcastReport {
        for member in delivery.gone {
            let full = !member.queue.is_closed();
            if full && !member.disconnected.swap(true, Ordering::AcqRel) {
                (member.disconnect)();
            }
            self.leave_all(&member);
        }
        self.inner.stats.record(&delivery.report, started.elapsed());
        delivery.report
    }
}

/// Compresses `message` once per compression key shared by at least two members that will
/// compress it with no context, and publishes the result for their sends.
fn compress_once(members: &Members, message: &Message) {
    let mut keys: Vec<((u8, u8), usize)> = Vec::new();
    for (member, _) in members.by_id.values() {
        let Some((config, key)) = &member.compression else {
            continue;
        };
        if !config.compresses(message.len(), message.is_text()) {
            continue;
        }
        match keys.iter_mut().find(|(known, _)| known == key) {
            Some((_, count)) => *count += 1,
            None => keys.push((*key, 1)),
        }
    }
    for (key, count) in keys {
        if count >= 2 {
            let mut compressed = bytes::BytesMut::new();
            compress_stateless(key.0, key.1, message.payload(), &mut compressed);
            precompressed::publish(message.payload(), key, compressed.freeze());
        }
    }
}
