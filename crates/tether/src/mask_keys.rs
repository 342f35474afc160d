//! Unpredictable masking keys for client frames (RFC 6455 section 10.3).
//!
//! Keys come from the operating system's CSPRNG, fetched 256 bytes at a time into a
//! thread-local pool so that a key costs a copy, not a system call.

use std::cell::RefCell;

const POOL_SIZE: usize = 256;

struct Pool {
    bytes: [u8; POOL_SIZE],
    next: usize,
}

thread_local! {
    static POOL: RefCell<Pool> = const { RefCell::new(Pool { bytes: [0; POOL_SIZE], next: POOL_SIZE }) };
}

/// A fresh 4-byte masking key.
pub(crate) fn mask_key() -> [u8; 4] {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.next + 4 > POOL_SIZE {
            if getrandom::fill(&mut pool.bytes).is_err() {
                fallback_fill(&mut pool.bytes);
            }
            pool.next = 0;
        }
        let start = pool.next;
        pool.next += 4;
        match pool.bytes.get(start..start + 4) {
            Some(&[a, b, c, d]) => [a, b, c, d],
            _ => [0x5a, 0xa5, 0x3c, 0xc3],
        }
    })
}

/// 16 random bytes for `Sec-WebSocket-Key`.
pub(crate) fn handshake_key() -> [u8; 16] {
    let mut key = [0u8; 16];
    for chunk in key.chunks_exact_mut(4) {
        chunk.copy_from_slice(&mask_key());
    }
    key
}

/// Used only if the OS generator fails: std's randomly seeded hasher, which draws its keys
/// from the OS once per process. Weaker, but never predictable from outside the process.
fn fallback_fill(bytes: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    let state = std::collections::hash_map::RandomState::new();
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        let mut hasher = state.build_hasher();
        hasher.write_usize(i);
        let word = hasher.finish().to_ne_bytes();
        for (byte, value) in chunk.iter_mut().zip(word) {
            *byte = value;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ() {
        let keys: std::collections::HashSet<[u8; 4]> = (0..1000).map(|_| mask_key()).collect();
        assert!(keys.len() > 990, "keys repeat too often: {}", keys.len());
        assert_ne!(handshake_key(), handshake_key());
    }
}
