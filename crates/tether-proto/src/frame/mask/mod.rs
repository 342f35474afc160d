//! Payload masking (RFC 6455 section 5.3): XOR with a repeating 4-byte key, at memory speed.
//!
//! [`apply_mask`] picks a kernel by length and CPU:
//!
//! - below [`SIMD_THRESHOLD`] bytes (every control frame, most chat-sized messages), a safe
//!   scalar loop on 8-byte words with the key doubled, which LLVM already vectorises;
//! - on x86_64, 32-byte AVX2 lanes when the CPU has AVX2 (detected at run time; the standard
//!   library caches the answer, so asking again is one relaxed load and a bit test), else
//!   16-byte SSE2 lanes (part of every x86_64 CPU);
//! - on aarch64, 16-byte NEON lanes (part of every aarch64 CPU);
//! - elsewhere, the scalar loop at every length.
//!
//! A vector kernel starts at the first lane-aligned address ([`aligned`]): the bytes before it
//! go through the scalar loop, so no load or store straddles a cache line.
//!
//! The vector kernels live in `simd.rs`, one of the two audited modules of the crate allowed
//! to use `unsafe` (the other is `Utf8Bytes::as_str` in `message.rs`); its module docs give
//! the safety argument. Every kernel is checked against [`apply_mask_bytewise`] by the tests
//! below and by the `mask_equivalence` fuzz target.

mod simd;

/// Buffers shorter than this are masked by the scalar loop. Measured with `benches/mask.rs`
/// (x86_64, AVX2): up to 384 bytes the scalar loop is as fast or faster, because a vector
/// kernel masks the bytes before the first aligned address and after the last full lane one
/// word or byte at a time; at 512 bytes the vector path is level or ahead, from 1 KiB it is
/// clearly faster, aligned or not.
const SIMD_THRESHOLD: usize = 512;

/// XORs `buf` with `key`, starting at position `offset` of the key stream.
///
/// `offset` is the number of payload bytes that came before `buf` in the same frame, so a
/// payload can be unmasked in pieces as it arrives.
#[inline]
pub fn apply_mask(buf: &mut [u8], key: [u8; 4], offset: usize) {
    if buf.len() < SIMD_THRESHOLD {
        apply_mask_scalar(buf, key, offset);
    } else {
        apply_mask_vector(buf, rotate_key(key, offset));
    }
}

/// The best vector kernel for this CPU; `key` is already rotated to `buf`'s first byte.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
fn apply_mask_vector(buf: &mut [u8], key: [u8; 4]) {
    match simd::Avx2::detect() {
        Some(avx2) => aligned(buf, key, 32, |body, key| simd::apply_avx2(avx2, body, key)),
        None => aligned(buf, key, 16, simd::apply_sse2),
    }
}

/// The vector kernel; `key` is already rotated to `buf`'s first byte.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[inline]
fn apply_mask_vector(buf: &mut [u8], key: [u8; 4]) {
    aligned(buf, key, 16, simd::apply_neon);
}

/// No vector kernel on this target: the scalar loop; `key` is already rotated to `buf`'s
/// first byte.
#[cfg(not(any(
    all(target_arch = "x86_64", target_feature = "sse2"),
    all(target_arch = "aarch64", target_feature = "neon")
)))]
#[inline]
fn apply_mask_vector(buf: &mut [u8], key: [u8; 4]) {
    apply_mask_scalar(buf, key, 0);
}

/// Masks the bytes of `buf` before the first `align`-byte boundary with the scalar loop, and
/// the rest with `kernel`, at the key phase where the scalar part stopped. `key` is rotated to
/// `buf`'s first byte.
///
/// The kernels accept any address, but a vector load or store that straddles a cache line
/// costs about twice as much: from an aligned start, none does (measured with
/// `benches/mask.rs`: AVX2 on 1 KiB halves its time).
#[cfg(any(
    all(target_arch = "x86_64", target_feature = "sse2"),
    all(target_arch = "aarch64", target_feature = "neon")
))]
#[inline(always)]
fn aligned(buf: &mut [u8], key: [u8; 4], align: usize, kernel: impl FnOnce(&mut [u8], [u8; 4])) {
    let misalignment = buf.as_ptr().addr() % align;
    let head_len = ((align - misalignment) % align).min(buf.len());
    let (head, body) = buf.split_at_mut(head_len);
    apply_mask_scalar(head, key, 0);
    kernel(body, rotate_key(key, head_len));
}

/// The safe scalar loop: 8-byte words with the key doubled, then single bytes.
#[inline]
fn apply_mask_scalar(buf: &mut [u8], key: [u8; 4], offset: usize) {
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

/// One masking kernel this CPU can run, called directly without [`apply_mask`]'s choice: for
/// the masking bench and the `mask_equivalence` fuzz target, not part of the stable API.
///
/// A value can only come from [`MaskKernel::available`], so holding one proves the CPU can run
/// it. Every kernel masks any length and key offset the way [`apply_mask_bytewise`] does.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaskKernel(Kernel);

/// The kernels behind [`MaskKernel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kernel {
    /// The safe 8-byte word loop.
    Scalar,
    /// 16-byte SSE2 lanes.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    Sse2,
    /// 32-byte AVX2 lanes, with the token proving the CPU has AVX2.
    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    Avx2(simd::Avx2),
    /// 16-byte NEON lanes.
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    Neon,
}

impl MaskKernel {
    /// Every kernel the running CPU supports, the scalar loop first, then narrow to wide.
    pub fn available() -> Vec<Self> {
        #[allow(unused_mut)] // Nothing is pushed on targets without a vector kernel.
        let mut kernels = vec![Self(Kernel::Scalar)];
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        kernels.push(Self(Kernel::Sse2));
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        if let Some(avx2) = simd::Avx2::detect() {
            kernels.push(Self(Kernel::Avx2(avx2)));
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        kernels.push(Self(Kernel::Neon));
        kernels
    }

    /// A short name for reports: `scalar`, `sse2`, `avx2` or `neon`.
    pub fn name(self) -> &'static str {
        match self.0 {
            Kernel::Scalar => "scalar",
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            Kernel::Sse2 => "sse2",
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            Kernel::Avx2(_) => "avx2",
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Kernel::Neon => "neon",
        }
    }

    /// XORs `buf` with `key` from position `offset` of the key stream, with this kernel only
    /// (at every length: no threshold).
    pub fn apply(self, buf: &mut [u8], key: [u8; 4], offset: usize) {
        match self.0 {
            Kernel::Scalar => apply_mask_scalar(buf, key, offset),
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            Kernel::Sse2 => aligned(buf, rotate_key(key, offset), 16, simd::apply_sse2),
            #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
            Kernel::Avx2(avx2) => aligned(buf, rotate_key(key, offset), 32, |body, key| {
                simd::apply_avx2(avx2, body, key);
            }),
            #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
            Kernel::Neon => aligned(buf, rotate_key(key, offset), 16, simd::apply_neon),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys with a distinct byte in each position, plus the degenerate ones.
    const KEYS: [[u8; 4]; 5] = [
        [0x37, 0xfa, 0x21, 0x3d],
        [1, 2, 3, 4],
        [0x80, 0x01, 0xfe, 0x7f],
        [0, 0, 0, 0],
        [0xff; 4],
    ];

    /// A small deterministic PRNG (xorshift64*), so failures replay.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, bound: usize) -> usize {
            (self.next() % bound as u64) as usize
        }

        fn bytes(&mut self, len: usize) -> Vec<u8> {
            (0..len).map(|_| self.next() as u8).collect()
        }
    }

    /// Miri runs the same checks on fewer and shorter inputs.
    const MIRI: bool = cfg!(miri);

    /// Asserts that `mask` agrees with `apply_mask_bytewise` on `data`, masking a copy of it
    /// in place in `buf` (as long as `data`), wherever `buf` starts.
    fn assert_same(
        mask: &impl Fn(&mut [u8], [u8; 4], usize),
        data: &[u8],
        key: [u8; 4],
        offset: usize,
        buf: &mut [u8],
        what: &str,
    ) {
        buf.copy_from_slice(data);
        mask(buf, key, offset);
        let mut slow = data.to_vec();
        apply_mask_bytewise(&mut slow, key, offset);
        assert!(
            *buf == *slow,
            "{what}: len {} key {key:02x?} offset {offset} address {:p}",
            data.len(),
            buf.as_ptr()
        );
    }

    /// The whole equivalence check for one implementation: every length 0..=300 and 480..=600
    /// with every key phase, random lengths up to 70,000, every start alignment, and masking in
    /// two pieces.
    fn check_against_bytewise(name: &str, mask: impl Fn(&mut [u8], [u8; 4], usize)) {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);

        // Every short length, and every length around `SIMD_THRESHOLD`.
        let (lens, keys) = if MIRI {
            ((0..=80).chain(508..=516), 2)
        } else {
            ((0..=300).chain(480..=600), KEYS.len())
        };
        for len in lens {
            let data = rng.bytes(len);
            for &key in KEYS.iter().take(keys) {
                // 4..8 checks that only the phase (offset mod 4) matters.
                for offset in 0..8 {
                    assert_same(&mask, &data, key, offset, &mut data.clone(), name);
                }
            }
        }

        let (rounds, max_len) = if MIRI { (4, 2_000) } else { (64, 70_000) };
        for _ in 0..rounds {
            let len = rng.below(max_len + 1);
            let data = rng.bytes(len);
            let key = (rng.next() as u32).to_ne_bytes();
            let offset = rng.below(1 << 20);
            assert_same(&mask, &data, key, offset, &mut data.clone(), name);
        }

        // The buffer starts at every address modulo 32 (aligned, then 1 to 31 bytes past a
        // 32-byte boundary), so the vector loads and stores meet every alignment.
        let lens: &[usize] = if MIRI {
            &[0, 15, 16, 17, 33, 64 + 16 + 3, 200]
        } else {
            &[
                0, 1, 3, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 100, 127, 128, 129, 130, 255,
            ]
        };
        let big: &[usize] = if MIRI {
            &[512 + 40]
        } else {
            &[256, 257, 511, 512, 513, 600, 1000, 4099, 65_536 + 7]
        };
        for &len in lens.iter().chain(big) {
            let data = rng.bytes(len);
            // 32 bytes of room to find a 32-byte boundary, 31 more to start past it.
            let mut backing = vec![0u8; len + 63];
            let boundary = (32 - backing.as_ptr() as usize % 32) % 32;
            for misalignment in 0..32 {
                let start = boundary + misalignment;
                let buf = &mut backing[start..start + len];
                assert_eq!(buf.as_ptr() as usize % 32, misalignment);
                for offset in 0..4 {
                    assert_same(&mask, &data, KEYS[0], offset, buf, name);
                }
            }
        }

        // Masking in two pieces, the second at the key phase where the first stopped, equals
        // masking the whole.
        let lens: &[usize] = if MIRI {
            &[0, 33, 100]
        } else {
            &[
                0, 1, 31, 32, 33, 100, 127, 128, 129, 300, 511, 512, 513, 1100,
            ]
        };
        for &len in lens {
            let data = rng.bytes(len);
            for offset in 0..4 {
                let mut whole = data.clone();
                apply_mask_bytewise(&mut whole, KEYS[0], offset);
                for split in 0..=len {
                    let mut pieces = data.clone();
                    let (head, tail) = pieces.split_at_mut(split);
                    mask(head, KEYS[0], offset);
                    mask(tail, KEYS[0], offset + split);
                    assert!(
                        pieces == whole,
                        "{name}: len {len} offset {offset} split at {split}"
                    );
                }
            }
        }
    }

    /// The kernel called `name`, if the running CPU has it.
    fn kernel(name: &str) -> Option<MaskKernel> {
        MaskKernel::available()
            .into_iter()
            .find(|kernel| kernel.name() == name)
    }

    /// Checks the kernel called `name`, which must be available.
    fn check_kernel(name: &str) {
        let Some(kernel) = kernel(name) else {
            panic!("kernel {name} is not available");
        };
        check_against_bytewise(name, |buf, key, offset| kernel.apply(buf, key, offset));
    }

    #[test]
    fn apply_mask_matches_the_bytewise_loop() {
        check_against_bytewise("apply_mask", apply_mask);
    }

    #[test]
    fn scalar_kernel_matches_the_bytewise_loop() {
        check_kernel("scalar");
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn sse2_kernel_matches_the_bytewise_loop() {
        check_kernel("sse2");
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn avx2_kernel_matches_the_bytewise_loop() {
        if std::is_x86_feature_detected!("avx2") {
            check_kernel("avx2");
        } else {
            assert_eq!(kernel("avx2"), None, "an AVX2 kernel without AVX2");
            eprintln!("skipped: this CPU has no AVX2");
        }
    }

    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    #[test]
    fn neon_kernel_matches_the_bytewise_loop() {
        check_kernel("neon");
    }

    // The vector kernels without the alignment prologue of `aligned`, so their loads and
    // stores meet every address (they must accept any).

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn sse2_kernel_accepts_any_address() {
        check_against_bytewise("sse2 (any address)", |buf, key, offset| {
            simd::apply_sse2(buf, rotate_key(key, offset));
        });
    }

    #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
    #[test]
    fn avx2_kernel_accepts_any_address() {
        if let Some(avx2) = simd::Avx2::detect() {
            check_against_bytewise("avx2 (any address)", |buf, key, offset| {
                simd::apply_avx2(avx2, buf, rotate_key(key, offset));
            });
        } else {
            eprintln!("skipped: this CPU has no AVX2");
        }
    }

    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    #[test]
    fn neon_kernel_accepts_any_address() {
        check_against_bytewise("neon (any address)", |buf, key, offset| {
            simd::apply_neon(buf, rotate_key(key, offset));
        });
    }

    #[test]
    fn the_kernel_list_matches_the_target() {
        let names: Vec<&str> = MaskKernel::available()
            .into_iter()
            .map(MaskKernel::name)
            .collect();
        #[allow(unused_mut)] // Nothing is pushed on targets without a vector kernel.
        let mut expected = vec!["scalar"];
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            expected.push("sse2");
            if std::is_x86_feature_detected!("avx2") {
                expected.push("avx2");
            }
        }
        #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
        expected.push("neon");
        assert_eq!(names, expected);
    }

    #[test]
    fn rfc_example() {
        // RFC 6455 section 5.7: "Hello" masked with 37 fa 21 3d.
        let mut data = *b"Hello";
        apply_mask(&mut data, [0x37, 0xfa, 0x21, 0x3d], 0);
        assert_eq!(data, [0x7f, 0x9f, 0x4d, 0x51, 0x58]);
    }
}
