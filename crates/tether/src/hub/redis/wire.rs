//! What a broadcast looks like on a Redis channel, and the receiving side's duplicate filter.
//!
//! One Redis message is one broadcast, in a binary envelope:
//!
//! | bytes | field |
//! | --- | --- |
//! | 1 | format version, [`VERSION`] |
//! | 1 | `0` text, `1` binary; plus `0x80` when the publishing node delivered it to its own members already |
//! | 8 | the publishing backplane's instance (random per process, big-endian) |
//! | 8 | its sequence number for this broadcast (big-endian) |
//! | 1 | length of the node id |
//! | n | the node id (UTF-8) |
//! | rest | the payload, unchanged |
//!
//! The instance tells a node its own broadcasts apart (and two processes that were given the
//! same node id); the sequence number lets a receiver drop a broadcast it has seen already
//! (a publisher that lost its connection mid-batch sends the batch again).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use tether_proto::{Message, Utf8Bytes};

/// The envelope's format version.
pub(super) const VERSION: u8 = 1;

const TEXT: u8 = 0;
const BINARY: u8 = 1;
/// Set in the kind byte: the publishing node delivered the message to its own members.
const DELIVERED: u8 = 0x80;
/// Where the sequence number starts.
const SEQ_AT: usize = 10;
/// Version, kind, instance, sequence number and the id's length.
const FIXED: usize = 19;
/// The longest node id the envelope carries, in bytes.
pub(super) const MAX_NODE_ID: usize = 255;

/// `node_id` cut to at most [`MAX_NODE_ID`] bytes, on a character boundary.
pub(super) fn cut_node_id(node_id: &str) -> &str {
    let mut end = node_id.len().min(MAX_NODE_ID);
    while !node_id.is_char_boundary(end) {
        end -= 1;
    }
    node_id.get(..end).unwrap_or_default()
}

/// An encoded broadcast whose sequence number is set later ([`Draft::finish`]), so that the
/// copy happens outside the publisher's lock.
pub(super) struct Draft(BytesMut);

/// Encodes `message` from this node; the sequence number is filled in by [`Draft::finish`].
/// `delivered`: this node delivered it to its own members already (it must skip it when it
/// comes back).
pub(super) fn draft(node_id: &str, instance: u64, message: &Message, delivered: bool) -> Draft {
    let id = cut_node_id(node_id).as_bytes();
    let payload = message.payload();
    let mut buf = BytesMut::with_capacity(FIXED + id.len() + payload.len());
    buf.put_u8(VERSION);
    let kind = if message.is_text() { TEXT } else { BINARY };
    buf.put_u8(if delivered { kind | DELIVERED } else { kind });
    buf.put_u64(instance);
    buf.put_u64(0);
    // `id` is at most 255 bytes long.
    buf.put_u8(u8::try_from(id.len()).unwrap_or(u8::MAX));
    buf.put_slice(id);
    buf.put_slice(payload);
    Draft(buf)
}

impl Draft {
    /// The envelope, numbered `seq`.
    pub(super) fn finish(mut self, seq: u64) -> Bytes {
        if let Some(slot) = self.0.get_mut(SEQ_AT..SEQ_AT + 8) {
            slot.copy_from_slice(&seq.to_be_bytes());
        }
        self.0.freeze()
    }
}

/// A broadcast received from a channel.
#[derive(Debug)]
pub(super) struct Envelope {
    /// The id of the node that published it.
    pub(super) node_id: String,
    /// The publishing backplane's instance.
    pub(super) instance: u64,
    /// Its number in the publisher's sequence.
    pub(super) seq: u64,
    /// The message, text or binary as it was published.
    pub(super) message: Message,
    /// The publishing node delivered it to its own members already.
    pub(super) delivered: bool,
}

/// Why a channel message is not a broadcast this version can read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Malformed {
    /// Shorter than its header says.
    Truncated,
    /// Another format version (a node running another release, or another program).
    Version(u8),
    /// Neither text nor binary.
    Kind(u8),
    /// A text message or node id that is not UTF-8.
    NotUtf8,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("truncated envelope"),
            Self::Version(version) => write!(f, "unknown envelope version {version}"),
            Self::Kind(kind) => write!(f, "unknown message kind {kind}"),
            Self::NotUtf8 => f.write_str("text that is not UTF-8"),
        }
    }
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at + 8)?;
    let array: [u8; 8] = slice.try_into().ok()?;
    Some(u64::from_be_bytes(array))
}

/// Reads an envelope; the payload shares `bytes`.
pub(super) fn decode(bytes: Bytes) -> Result<Envelope, Malformed> {
    let (&version, &kind) = match (bytes.first(), bytes.get(1)) {
        (Some(version), Some(kind)) => (version, kind),
        _ => return Err(Malformed::Truncated),
    };
    if version != VERSION {
        return Err(Malformed::Version(version));
    }
    let instance = u64_at(&bytes, 2).ok_or(Malformed::Truncated)?;
    let seq = u64_at(&bytes, SEQ_AT).ok_or(Malformed::Truncated)?;
    let id_len = usize::from(*bytes.get(FIXED - 1).ok_or(Malformed::Truncated)?);
    let id = bytes
        .get(FIXED..FIXED + id_len)
        .ok_or(Malformed::Truncated)?;
    let node_id = std::str::from_utf8(id)
        .map_err(|_| Malformed::NotUtf8)?
        .to_owned();
    let payload = bytes.slice(FIXED + id_len..);
    let message = match kind & !DELIVERED {
        TEXT => Message::Text(Utf8Bytes::try_from_bytes(payload).map_err(|_| Malformed::NotUtf8)?),
        BINARY => Message::Binary(payload),
        other => return Err(Malformed::Kind(other)),
    };
    Ok(Envelope {
        node_id,
        instance,
        seq,
        message,
        delivered: kind & DELIVERED != 0,
    })
}

/// Past this many (publisher, room) pairs the filter starts again (a duplicate may then get
/// through once; memory stays bounded whatever the churn of nodes and rooms).
const MAX_TRACKED: usize = 1 << 16;

/// The highest sequence number seen per publisher and room: a broadcast at or below it is a
/// duplicate. Sequence numbers of one publisher only grow, and Redis keeps the order of one
/// publisher's messages on a channel.
#[derive(Default)]
pub(super) struct Dedupe {
    /// Room → publisher instance → the last sequence number.
    last: HashMap<Arc<str>, HashMap<u64, u64>>,
    tracked: usize,
}

impl Dedupe {
    /// Whether the broadcast numbered `seq` from `instance` in `room` is new (and records it).
    pub(super) fn is_new(&mut self, instance: u64, room: &str, seq: u64) -> bool {
        if let Some(last) = self
            .last
            .get_mut(room)
            .and_then(|publishers| publishers.get_mut(&instance))
        {
            if seq <= *last {
                return false;
            }
            *last = seq;
            return true;
        }
        if self.tracked >= MAX_TRACKED {
            self.last.clear();
            self.tracked = 0;
        }
        self.tracked += 1;
        match self.last.get_mut(room) {
            Some(publishers) => {
                publishers.insert(instance, seq);
            }
            None => {
                self.last
                    .insert(Arc::from(room), HashMap::from([(instance, seq)]));
            }
        }
        true
    }

    /// Forgets `room` (this node no longer receives it).
    pub(super) fn forget(&mut self, room: &str) {
        if let Some(publishers) = self.last.remove(room) {
            self.tracked = self.tracked.saturating_sub(publishers.len());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn text_and_binary_round_trip() {
        for message in [
            Message::text("héllo"),
            Message::binary(vec![0u8, 159, 146, 150]),
            Message::text(""),
            Message::binary(Vec::new()),
        ] {
            let bytes = draft("node-a", 7, &message, false).finish(42);
            let envelope = decode(bytes).unwrap();
            assert_eq!(envelope.node_id, "node-a");
            assert_eq!(envelope.instance, 7);
            assert_eq!(envelope.seq, 42);
            assert_eq!(envelope.message, message);
        }
    }

    #[test]
    fn long_node_ids_are_cut() {
        let id = "x".repeat(300);
        let bytes = draft(&id, 1, &Message::text("a"), false).finish(1);
        assert_eq!(decode(bytes).unwrap().node_id.len(), MAX_NODE_ID);
        let id = "é".repeat(200);
        let bytes = draft(&id, 1, &Message::text("a"), false).finish(1);
        assert_eq!(decode(bytes).unwrap().node_id.len(), 254);
    }

    #[test]
    fn malformed_envelopes_are_errors() {
        assert_eq!(
            decode(Bytes::from_static(b"")).unwrap_err(),
            Malformed::Truncated
        );
        assert_eq!(
            decode(Bytes::from_static(b"hello world")).unwrap_err(),
            Malformed::Version(b'h')
        );
        let mut bytes = draft("n", 1, &Message::binary(vec![0xff]), false)
            .finish(1)
            .to_vec();
        bytes[1] = TEXT;
        assert_eq!(decode(Bytes::from(bytes)).unwrap_err(), Malformed::NotUtf8);
        let mut bytes = draft("n", 1, &Message::text("a"), false).finish(1).to_vec();
        bytes[1] = 9;
        assert_eq!(decode(Bytes::from(bytes)).unwrap_err(), Malformed::Kind(9));
        let bytes = draft("node", 1, &Message::text("a"), false).finish(1);
        assert_eq!(decode(bytes.slice(..20)).unwrap_err(), Malformed::Truncated);
    }

    #[test]
    fn duplicates_are_dropped_per_publisher_and_room() {
        let mut dedupe = Dedupe::default();
        assert!(dedupe.is_new(1, "a", 1));
        assert!(dedupe.is_new(1, "a", 2));
        assert!(!dedupe.is_new(1, "a", 2));
        assert!(!dedupe.is_new(1, "a", 1));
        assert!(dedupe.is_new(1, "b", 1));
        assert!(dedupe.is_new(2, "a", 1));
        dedupe.forget("a");
        assert!(dedupe.is_new(1, "a", 1));
    }
}
