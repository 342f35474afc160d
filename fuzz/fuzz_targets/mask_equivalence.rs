//! Fuzz target `mask_equivalence`: every masking kernel this CPU runs (the scalar word loop,
//! SSE2 and AVX2 on x86_64, NEON on aarch64) and the dispatching `apply_mask`, against the
//! byte-at-a-time `apply_mask_bytewise`.
//!
//! Input layout: 4 bytes of key, 1 byte of key offset (0 to 255, so every phase and the wrap
//! past 4), 1 byte choosing where the payload starts in its buffer (0 to 31 bytes past the
//! allocation, so vector loads and stores meet every alignment), 2 bytes (big-endian) choosing
//! a split point, then the payload.
//!
//! Checked, for each implementation: masking the whole payload equals the byte loop; masking
//! it in two pieces at the split point, the second at the key phase where the first stopped,
//! equals masking it whole; masking twice gives the payload back.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tether_proto::frame::{MaskKernel, apply_mask, apply_mask_bytewise};

/// A masking implementation under test: a name for failure messages and the function.
type Implementation = (
    &'static str,
    Box<dyn Fn(&mut [u8], [u8; 4], usize) + Send + Sync>,
);

/// `apply_mask`, then every kernel the running CPU supports.
fn implementations() -> &'static [Implementation] {
    static IMPLEMENTATIONS: OnceLock<Vec<Implementation>> = OnceLock::new();
    IMPLEMENTATIONS.get_or_init(|| {
        let mut all: Vec<Implementation> = vec![("apply_mask", Box::new(apply_mask))];
        for kernel in MaskKernel::available() {
            all.push((
                kernel.name(),
                Box::new(move |buf: &mut [u8], key: [u8; 4], offset: usize| {
                    kernel.apply(buf, key, offset);
                }),
            ));
        }
        all
    })
}

fuzz_target!(|data: &[u8]| {
    let (key, offset, start, split, payload) = match data {
        [k0, k1, k2, k3, offset, start, hi, lo, rest @ ..] => (
            [*k0, *k1, *k2, *k3],
            usize::from(*offset),
            usize::from(*start % 32),
            usize::from(u16::from_be_bytes([*hi, *lo])),
            rest,
        ),
        _ => return,
    };
    let split = split % (payload.len() + 1);

    let mut expected = payload.to_vec();
    apply_mask_bytewise(&mut expected, key, offset);

    // The slice under test starts `start` bytes into its buffer.
    let mut backing = vec![0u8; start + payload.len()];
    let buf = &mut backing[start..];

    for (name, mask) in implementations() {
        buf.copy_from_slice(payload);
        mask(buf, key, offset);
        assert!(
            *buf == *expected,
            "{name}: whole payload differs from the byte loop"
        );

        // Masking twice is the identity.
        mask(buf, key, offset);
        assert!(
            *buf == *payload,
            "{name}: masking twice did not give the payload back"
        );

        let (head, tail) = buf.split_at_mut(split);
        mask(head, key, offset);
        mask(tail, key, offset + split);
        assert!(
            *buf == *expected,
            "{name}: masking in two pieces (split at {split}) differs from masking whole"
        );
    }
});
