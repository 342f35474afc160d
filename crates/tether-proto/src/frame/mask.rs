//! Payload masking (RFC 6455 section 5.3), word at a time, in safe code.
//!
//! XOR with a repeating 4-byte key. The loop works on 8-byte words with the key doubled, which
//! the compiler turns into vector instructions; no `unsafe` is needed to run at memory speed.

/// XORs `buf` with `key`, starting at position `offset` of the key stream.
///
/// `offset` is the number of payload bytes that came before `buf` in the same frame, so a
/// payload can be unmasked in pieces as it arrives.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    let key = rotate_key(key, offset);
    let [k0, k1, k2, k3] = key;
    let word = u64::from_ne_bytes([k0, k1, k2, k3, k0, k1, k2, k3]);
    let mut chunks = buf.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 8];
        // `chunks_exact_mut(8)` yields slices of exactly 8 bytes, so the copies cannot fail.
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(bytes) ^ word).to_ne_bytes());
    }
    // The remainder starts at a multiple of 8, hence of 4: the key phase is unchanged.
    for (byte, k) in chunks.into_remainder().iter_mut().zip(key.iter().cycle()) {
        *byte ^= k;
    }
}

/// The key as seen from position `offset` of the key stream.
#[inline]
fn rotate_key(key: [u8; 4], offset: usize) -> [u8; 4] {
    // A rotation of the key's 4 bytes is a rotation of a u32 read in memory order: one
    // instruction instead of a slice rotation with a variable count.
    let shift = (offset % 4) as u32 * 8;
    let word = u32::from_le_bytes(key);
    word.rotate_right(shift).to_le_bytes()
}

/// The reference implementation: one byte at a time. Used by tests and the masking bench as
/// the baseline.
pub fn apply_mask_bytewise(buf: &mut [u8], key: [u8; 4], offset: usize) {
    for (byte, k) in buf.iter_mut().zip(key.iter().cycle().skip(offset % 4)) {
        *byte ^= k;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_bytewise_loop_at_every_length_and_offset() {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        for len in 0..70 {
            for offset in 0..8 {
                let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
                let mut fast = data.clone();
                let mut slow = data.clone();
                apply_mask(&mut fast, key, offset);
                apply_mask_bytewise(&mut slow, key, offset);
                assert_eq!(fast, slow, "len {len} offset {offset}");
            }
        }
    }

    #[test]
    fn masking_in_pieces_equals_masking_whole() {
        let key = [1, 2, 3, 4];
        let data: Vec<u8> = (0..100u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, key, 0);
        for split in 0..data.len() {
            let mut pieces = data.clone();
            let (head, tail) = pieces.split_at_mut(split);
            apply_mask(head, key, 0);
            apply_mask(tail, key, split);
            assert_eq!(pieces, whole, "split at {split}");
        }
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
