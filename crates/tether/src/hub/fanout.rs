//! Publishing: a message gets its room's next position, goes into the room's history and
//! into every local member's queue (stamped with its position, compressed once for the
//! members that compress with no context), then through the backplane to the other nodes.
//! With a shared history store, the store gives the position and the backplane delivers.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tether_proto::Message;
use tether_proto::deflate::compress_stateless;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::backplane::LocalDelivery;
use super::history::{Position, Published};
use super::{BroadcastReport, Hub, HubError, MemberShared, Members, Room, SlowConsumer};
use crate::transport::precompressed;

/// What one fan-out did, and the members to disconnect or forget once no lock is held.
#[derive(Default)]
pub(super) struct Delivery {
    report: BroadcastReport,
    gone: Vec<Arc<MemberShared>>,
}

impl Hub {
    /// Publishes `message` to `room`: it takes the room's next position, the room's history
    /// keeps it (with [`HubConfig::with_history`](super::HubConfig::with_history)), every
    /// local member's queue gets it ([stamped](Hub::set_stamp) with its position) and the
    /// backplane carries it to the other nodes. Never waits.
    ///
    /// Positions and fan-out happen under the room's history lock: every member's queue gets
    /// the room's publications in offset order, and a [`join_since`](Hub::join_since) sees
    /// each publication either in the history or in its queue, never both.
    ///
    /// With a backplane that [keeps the history](super::Backplane::keeps_history), the
    /// shared store gives the position: the publication comes back through the backplane to
    /// this node's members as to every other node's, and [`Published::position`] is `None`.
    /// While the store cannot be reached, this node's members get it at once, at a position
    /// in an epoch of this node's own (a later recovery from it fails with
    /// [`RecoveryFailure::EpochChanged`](super::RecoveryFailure::EpochChanged)), and the
    /// backplane delivers it to the others when it can.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn publish(&self, room: &str, message: &Message) -> Result<Published, HubError> {
        let started = Instant::now();
        let entry = self.room_or_err(room)?;
        if let Some(backplane) = self.shared_store() {
            // The backplane's answer and the fan-out under one lock: a publication of this
            // node's own epoch never lands between two of the store's in a queue.
            let mut history = entry.history_lock();
            return Ok(match backplane.publish(room, message) {
                LocalDelivery::Positioned => Published {
                    position: None,
                    report: BroadcastReport::default(),
                },
                LocalDelivery::Now => {
                    let position = history.advance_alone();
                    let stamped = self.stamped(message, &position);
                    let delivery = self.fan_out(&entry, &stamped, None);
                    drop(history);
                    Published {
                        position: Some(position),
                        report: self.settle(delivery, started),
                    }
                }
            });
        }
        let (position, delivery) = {
            let mut history = entry.history_lock();
            let position = history.advance();
            let stamped = self.stamped(message, &position);
            if self.recovery_enabled() {
                history.append(&self.inner.config.history, started, &stamped);
            }
            (position.clone(), self.fan_out(&entry, &stamped, None))
        };
        let report = self.settle(delivery, started);
        if let Some(backplane) = &self.inner.backplane {
            let _ = backplane.publish(room, message);
        }
        Ok(Published {
            position: Some(position),
            report,
        })
    }

    /// Sends `message` to every member of `room` on this node and, through the backplane, on
    /// the others: a [`publish`](Hub::publish) that reports only the local fan-out.
    ///
    /// # Errors
    /// [`HubError::NoSuchRoom`].
    pub fn broadcast(&self, room: &str, message: &Message) -> Result<BroadcastReport, HubError> {
        self.publish(room, message)
            .map(|published| published.report)
    }

    /// Delivers `message` to the local members of `room` only, as it is: it takes no
    /// position, is not stamped and is not kept in the history.
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
        let delivery = self.fan_out(&entry, message, None);
        Ok(self.settle(delivery, started))
    }

    /// Delivers what the backplane brought: a publication of the shared store at `position`,
    /// or (with no position: a backplane that keeps no history) one of another node, which
    /// takes this node's next position.
    pub(super) fn deliver_remote(
        &self,
        room: &str,
        message: &Message,
        position: Option<Position>,
    ) -> Result<BroadcastReport, HubError> {
        let started = Instant::now();
        let entry = self.room_or_err(room)?;
        let delivery = {
            let mut history = entry.history_lock();
            match position {
                Some(position) => {
                    history.observe(&position);
                    let stamped = self.stamped(message, &position);
                    self.fan_out(&entry, &stamped, Some(&position))
                }
                None => {
                    let position = history.advance();
                    let stamped = self.stamped(message, &position);
                    self.fan_out(&entry, &stamped, None)
                }
            }
        };
        Ok(self.settle(delivery, started))
    }

    fn room_or_err(&self, room: &str) -> Result<Arc<Room>, HubError> {
        self.room(room)
            .ok_or_else(|| HubError::NoSuchRoom(room.to_owned()))
    }

    /// Queues `message` to every member of `room` with `try_send`, under the members lock.
    /// A publication of the shared store (`at`) is held back for the members whose recovery
    /// is still waiting on the store.
    fn fan_out(&self, room: &Room, message: &Message, at: Option<&Position>) -> Delivery {
        let mut delivery = Delivery::default();
        let members = room.read();
        compress_once(&members, message);
        let mut held = match at {
            Some(_) if room.holding.load(Ordering::Acquire) > 0 => Some(room.held_lock()),
            _ => None,
        };
        for (member, _) in members.by_id.values() {
            if let (Some(held), Some(at)) = (held.as_mut(), at) {
                if let Some(waiting) = held.get_mut(&member.id) {
                    waiting.push((at.clone(), message.clone()));
                    delivery.report.delivered += 1;
                    continue;
                }
            }
            self.offer(member, message.clone(), &mut delivery);
        }
        delivery
    }

    /// Queues `message` to one member, or notes it as slow or gone.
    pub(super) fn offer(
        &self,
        member: &Arc<MemberShared>,
        message: Message,
        delivery: &mut Delivery,
    ) {
        match member.queue.try_send(message) {
            Ok(()) => delivery.report.delivered += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => {
                delivery.report.removed += 1;
                delivery.gone.push(Arc::clone(member));
            }
            Err(mpsc::error::TrySendError::Full(_)) => match self.inner.config.slow_consumer {
                SlowConsumer::DropMessage => delivery.report.dropped += 1,
                SlowConsumer::Disconnect => {
                    delivery.report.disconnected += 1;
                    delivery.gone.push(Arc::clone(member));
                }
            },
        }
    }

    /// Disconnects the slow members and forgets the dead ones of a fan-out (with no lock
    /// held), and counts it.
    pub(super) fn settle(&self, delivery: Delivery, started: Instant) -> BroadcastReport {
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
