//! Resuming subscriptions across reconnects: [`Positions`] keeps, for each room a client
//! follows, the [`Position`] of the last message it saw there, re-sends every subscription
//! with it on each connection the [`Runner`](super::Runner) opens, and tells each arriving
//! message apart ([`Observed`]: new, a duplicate, a gap, another epoch). The steps, a
//! complete example and the guarantees are in the documentation of [`Positions`] (this
//! module is private: `tether::client` exports both types).

use std::collections::BTreeMap;

use tether_proto::Message;

use crate::error::Error;
use crate::hub::Position;
use crate::transport::Sender;

/// What a message's position means for a room: see [`Positions::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Observed {
    /// The message right after the last one seen (or the first seen in a room without a
    /// position yet): act on it.
    Next,
    /// A later message, but `missed` messages between the last one seen and this one never
    /// arrived: act on it, knowing the room has a hole.
    Gap {
        /// How many offsets were skipped.
        missed: u64,
    },
    /// Seen already: its offset is not above the last one seen in the same epoch. Skip it.
    Duplicate,
    /// A message of another epoch than the last one seen: the room was created again (or
    /// the server restarted) and what was shown of it before is stale. Act on it.
    NewEpoch,
    /// Not a tracked room (say, a message still in flight when the room was forgotten):
    /// nothing was recorded.
    Untracked,
}

impl Observed {
    /// Whether to act on the message: [`Next`](Self::Next), [`Gap`](Self::Gap) or
    /// [`NewEpoch`](Self::NewEpoch); not a [`Duplicate`](Self::Duplicate), nor a message of
    /// an [`Untracked`](Self::Untracked) room.
    pub fn is_new(self) -> bool {
        matches!(self, Self::Next | Self::Gap { .. } | Self::NewEpoch)
    }
}

/// The rooms a client follows and the last [`Position`] it saw in each: what to resume on
/// every connection the [`Runner`](super::Runner) opens, and which arriving messages are
/// new ([`Observed`]). It knows nothing of the wire format: the application builds its own
/// subscribe message from a room and a position, and reads positions out of its own
/// messages. The [`Position`] is the hub's
/// ([`Hub::publish`](crate::hub::Hub::publish) hands it out,
/// [`Hub::join_since`](crate::hub::Hub::join_since) recovers from it), so a server built on
/// [`hub`](crate::hub) and a client built on this speak of the same thing.
///
/// Only [`track`](Self::track) adds a room and only [`forget`](Self::forget) removes one;
/// the other methods leave untracked rooms alone, so a late answer or message of a room the
/// client left does not subscribe it again.
///
/// # Use
///
/// 1. [`track`](Self::track) each room to follow (and [`forget`](Self::forget) it
///    on leaving).
/// 2. On every [`Event::Open`](super::Event::Open), [`resume`](Self::resume) with the
///    event's sender: one subscribe message per tracked room, with the last position seen in
///    it, or none yet.
/// 3. On the server's answer to a subscription, unless it says that the missed messages
///    follow, [`reset`](Self::reset) the room to the position it gives (a first
///    subscription, or a resume that could not be recovered: then what the application shows
///    of the room misses what was said meanwhile, and it should reload it).
/// 4. On every message that carries a position, [`observe`](Self::observe) it and act
///    on it only when it [`is_new`](Observed::is_new).
///
/// # The `tether serve` chat
///
/// The demo chat's protocol (`docs/demo-chat.md`): a `join` may carry
/// `"since": {"epoch": E, "offset": N}`; the `joined` reply carries the room's `epoch` and
/// `offset`, and `"recovered": true` when the missed messages follow it; every `message`
/// carries its own `epoch` and `offset`.
///
/// ```no_run
/// use serde_json::{Value, json};
/// use tether::Message;
/// use tether::client::{ClientBuilder, Event, Positions, Reconnect, Runner};
/// use tether::hub::Position;
///
/// /// The `epoch` and `offset` fields of a chat message or a `joined` reply.
/// fn position_of(value: &Value) -> Option<Position> {
///     Some(Position::new(value["epoch"].as_str()?, value["offset"].as_u64()?))
/// }
///
/// /// `{"type":"join","room":R}`, with `"since"` once a position is known.
/// fn join(room: &str, since: Option<&Position>) -> Message {
///     let join = match since {
///         None => json!({"type": "join", "room": room}),
///         Some(since) => json!({
///             "type": "join",
///             "room": room,
///             "since": {"epoch": &*since.epoch, "offset": since.offset},
///         }),
///     };
///     Message::text(join.to_string())
/// }
///
/// # async fn demo() {
/// let url = "ws://127.0.0.1:8080/ws?name=reader";
/// let mut runner = Runner::new(url, ClientBuilder::new(), Reconnect::new());
/// let mut positions = Positions::new();
/// positions.track("lobby");
/// positions.track("random");
/// while let Some(event) = runner.next().await {
///     match event {
///         // Every connection, the first and each after a reconnect: join every room from
///         // where this client was. A failed send means this connection is gone already:
///         // the runner reports it and the next `Open` resumes again.
///         Event::Open { sender, .. } => {
///             let _ = positions.resume(&sender, join).await;
///         }
///         Event::Message(message) => {
///             let Some(value) = message
///                 .as_text()
///                 .and_then(|text| serde_json::from_str::<Value>(text).ok())
///             else {
///                 continue;
///             };
///             let (Some(room), Some(position)) = (value["room"].as_str(), position_of(&value))
///             else {
///                 continue; // welcome, pong, errors...: no position
///             };
///             match value["type"].as_str() {
///                 // Recovered: the missed messages follow, keep the position. Otherwise
///                 // (a first join, or `"recovered": false`) start from the room's.
///                 Some("joined") if value["recovered"] != true => {
///                     if positions.since(room).is_some() {
///                         println!("[{room}] messages were missed: reloading the room");
///                     }
///                     positions.reset(room, position);
///                 }
///                 Some("message") if positions.observe(room, &position).is_new() => {
///                     println!("[{room}] {}: {}", value["from"], value["text"]);
///                 }
///                 _ => {}
///             }
///         }
///         Event::Stopped(error) => eprintln!("stopped: {error:?}"),
///         _ => {}
///     }
/// }
/// # }
/// ```
///
/// # Guarantees, and what they rest on
///
/// A client that follows the steps above acts on every message of a room once, in order,
/// across any number of reconnects, when:
///
/// - the server replays, in answer to a subscription with a position, exactly the messages
///   after it, in order, and before any live message of that room on the same connection
///   (what [`Hub::join_since`](crate::hub::Hub::join_since) makes possible: the live
///   messages wait in the member's queue while the missed ones are sent), or says that it
///   cannot;
/// - the subscriptions are resumed on every connection before its messages are handled: the
///   runner reports [`Open`](super::Event::Open) before any message of that connection, and
///   its messages in the order they came;
/// - every message the application acts on was first [`observe`](Self::observe)d;
/// - a room is one sequence of positions: one epoch at a time, offsets rising by one per
///   message (a hub whose history is its own, without a backplane: with one, messages from
///   other nodes carry those nodes' positions).
///
/// What it cannot give back is reported, never hidden: a resume the server cannot recover
/// (its answer says so; the application resets the room), a message that skips offsets
/// ([`Observed::Gap`]: a server that dropped messages for a slow consumer), a room created
/// again ([`Observed::NewEpoch`]). Positions live in memory: a new process starts without
/// any, unless the application saved them ([`rooms`](Self::rooms)) and restores them
/// ([`track`](Self::track), then [`reset`](Self::reset)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Positions {
    /// Room name -> the last position seen there (`None`: none yet).
    rooms: BTreeMap<String, Option<Position>>,
}

impl Positions {
    /// No room tracked.
    pub fn new() -> Self {
        Self::default()
    }

    /// Follows `room` from now on, without a position yet: [`resume`](Self::resume)
    /// subscribes to it on every connection. Returns `false` (and keeps the position) when
    /// it was tracked already.
    pub fn track(&mut self, room: impl Into<String>) -> bool {
        let mut added = false;
        self.rooms.entry(room.into()).or_insert_with(|| {
            added = true;
            None
        });
        added
    }

    /// Stops following `room`: it is no longer resumed, and its messages are
    /// [`Untracked`](Observed::Untracked). Returns whether it was tracked.
    pub fn forget(&mut self, room: &str) -> bool {
        self.rooms.remove(room).is_some()
    }

    /// The last position seen in `room`: what to resume it from. `None` when the room is not
    /// tracked or has no position yet.
    pub fn since(&self, room: &str) -> Option<&Position> {
        self.rooms.get(room).and_then(Option::as_ref)
    }

    /// Takes `position` as the last seen in `room`, whatever was there: for the answer to a
    /// subscription that gives the room's position without replaying anything (a first
    /// subscription, or a resume that could not be recovered). Never for a recovered one:
    /// the replayed messages would then count as duplicates. Returns `false`, and records
    /// nothing, when the room is not tracked.
    pub fn reset(&mut self, room: &str, position: Position) -> bool {
        match self.rooms.get_mut(room) {
            Some(last) => {
                *last = Some(position);
                true
            }
            None => false,
        }
    }

    /// Records the position of a message of `room` and says whether it is new (see
    /// [`Observed`]); a duplicate changes nothing. Call it for every message before acting
    /// on it, in the order the messages arrive.
    pub fn observe(&mut self, room: &str, position: &Position) -> Observed {
        let Some(last) = self.rooms.get_mut(room) else {
            return Observed::Untracked;
        };
        let observed = match last {
            None => Observed::Next,
            Some(last) if last.epoch != position.epoch => Observed::NewEpoch,
            Some(last) if position.offset <= last.offset => return Observed::Duplicate,
            Some(last) => match position.offset - last.offset - 1 {
                0 => Observed::Next,
                missed => Observed::Gap { missed },
            },
        };
        match last {
            Some(last) if observed != Observed::NewEpoch => last.offset = position.offset,
            _ => *last = Some(position.clone()),
        }
        observed
    }

    /// Every tracked room, by name, with the last position seen there (to save them, or to
    /// show them).
    pub fn rooms(&self) -> impl Iterator<Item = (&str, Option<&Position>)> + '_ {
        self.rooms
            .iter()
            .map(|(room, last)| (room.as_str(), last.as_ref()))
    }

    /// Sends, on the connection of `sender`, one subscription per tracked room (by name),
    /// each built by `subscribe` from the room and the last position seen there (`None`:
    /// subscribe without one). Call it on every [`Event::Open`](super::Event::Open) before
    /// handling that connection's messages. The messages go out in one write where they fit.
    ///
    /// # Errors
    /// The first failed send (the rest are not sent): the connection is gone, the runner
    /// reports it, and the next connection resumes again.
    pub async fn resume<F>(&self, sender: &Sender, mut subscribe: F) -> Result<(), Error>
    where
        F: FnMut(&str, Option<&Position>) -> Message,
    {
        for (room, since) in self.rooms() {
            sender.feed(subscribe(room, since)).await?;
        }
        sender.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(epoch: &str, offset: u64) -> Position {
        Position::new(epoch, offset)
    }

    fn following(room: &str, since: Option<Position>) -> Positions {
        let mut positions = Positions::new();
        positions.track(room);
        if let Some(since) = since {
            positions.reset(room, since);
        }
        positions
    }

    #[test]
    fn messages_in_order_are_each_next_and_advance_the_position() {
        let mut positions = following("lobby", Some(at("e1", 0)));
        for offset in 1..=5 {
            assert_eq!(
                positions.observe("lobby", &at("e1", offset)),
                Observed::Next
            );
            assert_eq!(positions.since("lobby"), Some(&at("e1", offset)));
        }
    }

    #[test]
    fn an_offset_not_above_the_last_is_a_duplicate_and_changes_nothing() {
        let mut positions = following("lobby", Some(at("e1", 3)));
        for offset in [0, 1, 3] {
            let observed = positions.observe("lobby", &at("e1", offset));
            assert_eq!(observed, Observed::Duplicate, "offset {offset}");
            assert!(!observed.is_new());
        }
        assert_eq!(positions.since("lobby"), Some(&at("e1", 3)));
        assert_eq!(positions.observe("lobby", &at("e1", 4)), Observed::Next);
        // A replay that overlaps what was seen: only the unseen part is new.
        let replay: Vec<Observed> = (2..=6)
            .map(|offset| positions.observe("lobby", &at("e1", offset)))
            .collect();
        assert_eq!(
            replay,
            [
                Observed::Duplicate,
                Observed::Duplicate,
                Observed::Duplicate,
                Observed::Next,
                Observed::Next
            ]
        );
    }

    #[test]
    fn skipped_offsets_are_a_gap_and_the_message_is_still_new() {
        let mut positions = following("lobby", Some(at("e1", 2)));
        let observed = positions.observe("lobby", &at("e1", 7));
        assert_eq!(observed, Observed::Gap { missed: 4 });
        assert!(observed.is_new());
        assert_eq!(positions.since("lobby"), Some(&at("e1", 7)));
        // The skipped ones, should they come late, are out of order: duplicates.
        assert_eq!(
            positions.observe("lobby", &at("e1", 5)),
            Observed::Duplicate
        );
    }

    #[test]
    fn another_epoch_is_new_whatever_its_offset_and_replaces_the_position() {
        let mut positions = following("lobby", Some(at("e1", 40)));
        let observed = positions.observe("lobby", &at("e2", 1));
        assert_eq!(observed, Observed::NewEpoch);
        assert!(observed.is_new());
        assert_eq!(positions.since("lobby"), Some(&at("e2", 1)));
        assert_eq!(positions.observe("lobby", &at("e2", 2)), Observed::Next);
        // The old epoch's messages are not the room's any more: each is another epoch.
        assert_eq!(
            positions.observe("lobby", &at("e1", 41)),
            Observed::NewEpoch
        );
    }

    #[test]
    fn a_room_without_a_position_takes_the_first_one() {
        let mut positions = following("lobby", None);
        assert_eq!(positions.since("lobby"), None);
        assert_eq!(positions.observe("lobby", &at("e1", 17)), Observed::Next);
        assert_eq!(positions.since("lobby"), Some(&at("e1", 17)));
    }

    #[test]
    fn untracked_rooms_are_left_alone() {
        let mut positions = following("lobby", Some(at("e1", 1)));
        let observed = positions.observe("random", &at("e9", 1));
        assert_eq!(observed, Observed::Untracked);
        assert!(!observed.is_new());
        assert!(!positions.reset("random", at("e9", 1)));
        assert_eq!(positions.rooms().count(), 1);
        // A message that comes after the room was forgotten stays untracked.
        assert!(positions.forget("lobby"));
        assert!(!positions.forget("lobby"));
        assert_eq!(
            positions.observe("lobby", &at("e1", 2)),
            Observed::Untracked
        );
        assert_eq!(positions.rooms().count(), 0);
    }

    #[test]
    fn reset_replaces_the_position_and_tracking_again_keeps_it() {
        let mut positions = following("lobby", Some(at("e1", 50)));
        // A resume that was not recovered: the room's position now, in a new epoch.
        assert!(positions.reset("lobby", at("e2", 3)));
        assert_eq!(positions.observe("lobby", &at("e2", 4)), Observed::Next);
        assert!(!positions.track("lobby"));
        assert_eq!(positions.since("lobby"), Some(&at("e2", 4)));
        // A reset may also go back within an epoch: later offsets are new again.
        assert!(positions.reset("lobby", at("e2", 1)));
        assert_eq!(positions.observe("lobby", &at("e2", 2)), Observed::Next);
    }

    #[test]
    fn rooms_are_listed_by_name_with_their_positions() {
        let mut positions = Positions::new();
        assert!(positions.track("random"));
        assert!(positions.track("lobby"));
        positions.reset("lobby", at("e1", 4));
        let rooms: Vec<(&str, Option<&Position>)> = positions.rooms().collect();
        assert_eq!(rooms, [("lobby", Some(&at("e1", 4))), ("random", None)]);
    }

    #[test]
    fn each_room_has_its_own_sequence() {
        let mut positions = following("a", Some(at("ea", 0)));
        positions.track("b");
        positions.reset("b", at("eb", 10));
        assert_eq!(positions.observe("a", &at("ea", 1)), Observed::Next);
        assert_eq!(positions.observe("b", &at("eb", 11)), Observed::Next);
        assert_eq!(positions.observe("a", &at("ea", 1)), Observed::Duplicate);
        assert_eq!(positions.observe("b", &at("ea", 2)), Observed::NewEpoch);
        assert_eq!(positions.since("a"), Some(&at("ea", 1)));
        assert_eq!(positions.since("b"), Some(&at("ea", 2)));
    }
}
