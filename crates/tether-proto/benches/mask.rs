//! Masking throughput: the dispatching `apply_mask` against each kernel it can pick (the safe
//! scalar word loop, SSE2, AVX2 when the CPU has it, NEON on aarch64) and the plain byte loop
//! `apply_mask_bytewise`, at 16 B to 1 MiB, on a payload aligned to a cache line and on one
//! that is not, with the key mid-way (see `PLACEMENTS`).
//!
//! 125 B is the largest control frame; 256 and 512 B straddle `apply_mask`'s threshold (the
//! scalar loop below 512 bytes, a vector kernel from there).
//!
//! Every function runs in place on the same buffer, passed through `black_box` so no call can
//! be folded away; whatever LLVM makes of the byte loop (vectorised or not) is what we measure.

#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether_proto::frame::{MaskKernel, apply_mask, apply_mask_bytewise};

/// The RFC 6455 example key.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Payload sizes with their labels.
const SIZES: [(usize, &str); 7] = [
    (16, "16B"),
    (125, "125B"),
    (256, "256B"),
    (512, "512B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

/// Where the payload starts: `(label, bytes past a 64-byte boundary, key offset)`. Aligned,
/// and 6 bytes in with the key at offset 3: a payload sits after a 2 to 14 byte frame header,
/// so in a read buffer it is rarely aligned, and a piece of a payload starts mid-key.
const PLACEMENTS: [(&str, usize, usize); 2] = [("aligned", 0, 0), ("misaligned", 6, 3)];

fn mask(c: &mut Criterion) {
    let kernels = MaskKernel::available();
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("mask/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        // 64 bytes of room to find a cache-line boundary, then the misalignment.
        let mut backing: Vec<u8> = (0..size + 128).map(|i| (i * 31 + 7) as u8).collect();
        let boundary = (64 - backing.as_ptr() as usize % 64) % 64;
        for (id, misalignment, offset) in PLACEMENTS {
            let start = boundary + misalignment;
            let Some(buf) = backing.get_mut(start..start + size) else {
                unreachable!("the buffer has 128 bytes of room");
            };
            group.bench_function(BenchmarkId::new("apply_mask", id), |b| {
                b.iter(|| apply_mask(black_box(&mut *buf), black_box(KEY), black_box(offset)));
            });
            for &kernel in &kernels {
                group.bench_function(BenchmarkId::new(kernel.name(), id), |b| {
                    b.iter(|| {
                        kernel.apply(black_box(&mut *buf), black_box(KEY), black_box(offset))
                    });
                });
            }
            group.bench_function(BenchmarkId::new("bytewise", id), |b| {
                b.iter(|| {
                    apply_mask_bytewise(black_box(&mut *buf), black_box(KEY), black_box(offset));
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, mask);
criterion_main!(benches);
