//! Vector masking kernels: AVX2 and SSE2 on x86_64, NEON on aarch64.
//!
//! # Unsafe code
//!
//! This is one of the two audited places in tether-proto that use `unsafe` (the other is
//! `Utf8Bytes::as_str` in `message.rs`); the rest of the workspace denies `unsafe_code`. What
//! this module guarantees, and how:
//!
//! - **Only in-bounds memory is touched.** Every vector load and store goes through a chunk
//!   from `chunks_exact_mut(LANES)`, so the pointer is valid for exactly `LANES` bytes of reads
//!   and writes and no pointer arithmetic is done here. The loads and stores are the unaligned
//!   forms (`loadu`/`storeu`, `vld1q`/`vst1q`), so any start address is allowed.
//! - **An instruction set is only used where the CPU has it.** SSE2 and NEON are part of the
//!   baseline of every x86_64 and aarch64 target (the kernels are compiled only when
//!   `target_feature = "sse2"` / `"neon"` is on). AVX2 is not: the AVX2 kernel can only be
//!   reached with an [`Avx2`] token, which nothing but [`Avx2::detect`] can make, and that only
//!   after `is_x86_feature_detected!("avx2")` said yes.
//! - **The result equals the byte loop.** Each kernel XORs whole chunks with the key repeated
//!   across the register, then hands the tail to the safe scalar code at the right key phase;
//!   tests and the `mask_equivalence` fuzz target check every kernel against
//!   `apply_mask_bytewise`.
//!
//! Miri runs the same tests through each kernel and finds no undefined behaviour:
//! `cargo +nightly miri test -p tether-proto --lib frame::mask` (SSE2), the same with
//! `RUSTFLAGS="-C target-feature=+avx2"` (AVX2) or `--target aarch64-unknown-linux-gnu`
//! (NEON, interpreted on any host).
//!
//! Each kernel takes the key already rotated to the buffer's first byte ([`super::rotate_key`]):
//! a chunk length is a multiple of 4, so every chunk starts at the same key phase.

#![allow(unsafe_code)]

/// Proof that the running CPU supports AVX2: the only way to get one is [`Avx2::detect`].
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Avx2 {
    /// Keeps the token from being built outside this module.
    _private: (),
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
impl Avx2 {
    /// A token if the CPU supports AVX2.
    ///
    /// `is_x86_feature_detected!` runs CPUID once and caches the answer in a static; every
    /// later call is one relaxed atomic load and a bit test.
    #[inline]
    pub(super) fn detect() -> Option<Self> {
        if std::is_x86_feature_detected!("avx2") {
            Some(Self { _private: () })
        } else {
            None
        }
    }
}

/// XORs `buf` with `key` (rotated to `buf`'s first byte) in 32-byte AVX2 lanes, a 16-byte lane
/// for what is left of 16 or more, and the scalar code for the last 0 to 15 bytes.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(super) fn apply_avx2(_proof: Avx2, buf: &mut [u8], key: [u8; 4]) {
    // SAFETY: the caller holds an `Avx2` token, which `Avx2::detect` only makes once the CPU
    // has been seen to support AVX2, so the `avx2` instructions of `xor_avx2` are available.
    unsafe { xor_avx2(buf, key) }
}

/// The AVX2 loop behind [`apply_avx2`].
///
/// # Safety
///
/// The CPU must support AVX2.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "avx2")]
unsafe fn xor_avx2(buf: &mut [u8], key: [u8; 4]) {
    use std::arch::x86_64::{
        __m128i, __m256i, _mm_loadu_si128, _mm_storeu_si128, _mm_xor_si128, _mm256_loadu_si256,
        _mm256_storeu_si256, _mm256_xor_si256,
    };

    // The key repeated over 32 bytes, in memory order.
    let pattern = key_pattern::<32>(key);
    // SAFETY: `pattern` is a 32-byte array, valid for a 32-byte read; `loadu` allows any
    // alignment. AVX2 is available (this function's contract).
    let key256 = unsafe { _mm256_loadu_si256(pattern.as_ptr().cast::<__m256i>()) };
    // SAFETY: as above, reading the first 16 of the 32 bytes. SSE2 is part of AVX2.
    let key128 = unsafe { _mm_loadu_si128(pattern.as_ptr().cast::<__m128i>()) };

    let mut chunks = buf.chunks_exact_mut(32);
    for chunk in &mut chunks {
        let ptr = chunk.as_mut_ptr().cast::<__m256i>();
        // SAFETY: `chunks_exact_mut(32)` gives a chunk of exactly 32 bytes, borrowed mutably,
        // so `ptr` is valid for a 32-byte read and write; `loadu`/`storeu` allow any alignment.
        // AVX2 is available (this function's contract).
        unsafe { _mm256_storeu_si256(ptr, _mm256_xor_si256(_mm256_loadu_si256(ptr), key256)) };
    }
    // The remainder is shorter than 32 bytes: at most one 16-byte chunk.
    let mut halves = chunks.into_remainder().chunks_exact_mut(16);
    for chunk in &mut halves {
        let ptr = chunk.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `chunks_exact_mut(16)` gives a chunk of exactly 16 bytes, borrowed mutably,
        // so `ptr` is valid for a 16-byte read and write; `loadu`/`storeu` allow any alignment.
        // SSE2 is part of AVX2.
        unsafe { _mm_storeu_si128(ptr, _mm_xor_si128(_mm_loadu_si128(ptr), key128)) };
    }
    // Everything before the last 0 to 15 bytes was a multiple of 16 bytes long, so the key
    // phase is unchanged.
    super::apply_mask_scalar(halves.into_remainder(), key, 0);
}

/// XORs `buf` with `key` (rotated to `buf`'s first byte) in 16-byte SSE2 lanes, and the last 0
/// to 15 bytes with the scalar code.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
pub(super) fn apply_sse2(buf: &mut [u8], key: [u8; 4]) {
    use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_storeu_si128, _mm_xor_si128};

    let pattern = key_pattern::<16>(key);
    // SAFETY: `pattern` is a 16-byte array, valid for a 16-byte read; `loadu` allows any
    // alignment. SSE2 is enabled at compile time (see the `cfg`).
    let key128 = unsafe { _mm_loadu_si128(pattern.as_ptr().cast::<__m128i>()) };

    let mut chunks = buf.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let ptr = chunk.as_mut_ptr().cast::<__m128i>();
        // SAFETY: `chunks_exact_mut(16)` gives a chunk of exactly 16 bytes, borrowed mutably,
        // so `ptr` is valid for a 16-byte read and write; `loadu`/`storeu` allow any alignment.
        // SSE2 is enabled at compile time (see the `cfg`).
        unsafe { _mm_storeu_si128(ptr, _mm_xor_si128(_mm_loadu_si128(ptr), key128)) };
    }
    // The chunks covered a multiple of 16 bytes, so the key phase is unchanged.
    super::apply_mask_scalar(chunks.into_remainder(), key, 0);
}

/// XORs `buf` with `key` (rotated to `buf`'s first byte) in 16-byte NEON lanes, and the last 0
/// to 15 bytes with the scalar code.
#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
#[inline]
pub(super) fn apply_neon(buf: &mut [u8], key: [u8; 4]) {
    use std::arch::aarch64::{veorq_u8, vld1q_u8, vst1q_u8};

    let pattern = key_pattern::<16>(key);
    // SAFETY: `pattern` is a 16-byte array, valid for a 16-byte read; `vld1q_u8` has no
    // alignment requirement beyond that of `u8`. NEON is enabled at compile time (see the `cfg`).
    let key128 = unsafe { vld1q_u8(pattern.as_ptr()) };

    let mut chunks = buf.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let ptr = chunk.as_mut_ptr();
        // SAFETY: `chunks_exact_mut(16)` gives a chunk of exactly 16 bytes, borrowed mutably,
        // so `ptr` is valid for a 16-byte read and write; `vld1q_u8`/`vst1q_u8` need only the
        // alignment of `u8`. NEON is enabled at compile time (see the `cfg`).
        unsafe { vst1q_u8(ptr, veorq_u8(vld1q_u8(ptr), key128)) };
    }
    // The chunks covered a multiple of 16 bytes, so the key phase is unchanged.
    super::apply_mask_scalar(chunks.into_remainder(), key, 0);
}

/// `key` repeated over `N` bytes (`N` a multiple of 4), to load into a vector register.
#[cfg(any(
    all(target_arch = "x86_64", target_feature = "sse2"),
    all(target_arch = "aarch64", target_feature = "neon")
))]
#[inline(always)]
fn key_pattern<const N: usize>(key: [u8; 4]) -> [u8; N] {
    let mut pattern = [0u8; N];
    for (byte, k) in pattern.iter_mut().zip(key.iter().cycle()) {
        *byte = *k;
    }
    pattern
}
