//! Payloads compressed once for many connections: a broadcast to members that negotiated
//! permessage-deflate without server context takeover compresses the message once per
//! (window, level) and publishes the result here; each member's send finds it instead of
//! compressing again.
//!
//! Entries are recognised by the identity of the payload's buffer (a broadcast hands every
//! member a clone of the same `Bytes`), and each entry holds that buffer, so the identity
//! cannot be reused by other bytes while the entry lives. A handful of recent entries are
//! kept; a send that finds none compresses as usual, so eviction only costs speed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

/// How many recent broadcasts keep their compressed payload.
const CAPACITY: usize = 32;

struct Entry {
    payload: Bytes,
    key: (u8, u8),
    compressed: Bytes,
}

static ENTRIES: Mutex<VecDeque<Entry>> = Mutex::new(VecDeque::new());
/// Set once anything was published: until then a send skips the lock.
static USED: AtomicBool = AtomicBool::new(false);

fn entries() -> std::sync::MutexGuard<'static, VecDeque<Entry>> {
    ENTRIES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Makes `compressed` (compressed with no context, window and level `key`) the payload of
/// every send of `payload` that would compress it the same way.
pub(crate) fn publish(payload: &Bytes, key: (u8, u8), compressed: Bytes) {
    let mut entries = entries();
    if entries.len() == CAPACITY {
        entries.pop_front();
    }
    entries.push_back(Entry {
        payload: payload.clone(),
        key,
        compressed,
    });
    USED.store(true, Ordering::Release);
}

/// The compressed payload published for this very `payload` buffer and `key`, if any.
pub(crate) fn lookup(payload: &Bytes, key: (u8, u8)) -> Option<Bytes> {
    if !USED.load(Ordering::Acquire) {
        return None;
    }
    entries()
        .iter()
        .rev()
        .find(|entry| {
            entry.key == key
                && entry.payload.len() == payload.len()
                && std::ptr::eq(entry.payload.as_ptr(), payload.as_ptr())
        })
        .map(|entry| entry.compressed.clone())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn finds_the_same_buffer_only() {
        let payload = Bytes::from(vec![7u8; 100]);
        let clone = payload.clone();
        let twin = Bytes::from(vec![7u8; 100]);
        publish(&payload, (15, 1), Bytes::from_static(b"z"));
        assert_eq!(lookup(&clone, (15, 1)).unwrap(), Bytes::from_static(b"z"));
        assert_eq!(lookup(&twin, (15, 1)), None, "equal bytes, another buffer");
        assert_eq!(lookup(&clone, (12, 1)), None, "another window");
        assert_eq!(lookup(&clone.slice(1..), (15, 1)), None, "a part of it");
    }
}
