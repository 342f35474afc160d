//! Masking throughput: the word-at-a-time `apply_mask` against the plain byte loop
//! `apply_mask_bytewise`, at 16 B, 1 KiB, 64 KiB and 1 MiB, with the key at offset 0 and at
//! an odd offset (3, as when a payload is unmasked in pieces).
//!
//! Both run in place on the same buffer, passed through `black_box` so neither call can be
//! folded away; whatever LLVM makes of the byte loop (vectorised or not) is what we measure.

#![allow(missing_docs)] // criterion_group! generates undocumented public items.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether_proto::frame::{apply_mask, apply_mask_bytewise};

/// The RFC 6455 example key.
const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// Payload sizes with their labels.
const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

/// Key offsets: aligned, and odd.
const OFFSETS: [usize; 2] = [0, 3];

fn mask(c: &mut Criterion) {
    for (size, label) in SIZES {
        let mut group = c.benchmark_group(format!("mask/{label}"));
        group.throughput(Throughput::Bytes(size as u64));
        let mut buf: Vec<u8> = (0..size).map(|i| (i * 31 + 7) as u8).collect();
        for offset in OFFSETS {
            let id = format!("offset{offset}");
            group.bench_function(BenchmarkId::new("apply_mask", &id), |b| {
                b.iter(|| {
                    apply_mask(
                        black_box(buf.as_mut_slice()),
                        black_box(KEY),
                        black_box(offset),
                    )
                });
            });
            group.bench_function(BenchmarkId::new("bytewise", &id), |b| {
                b.iter(|| {
                    apply_mask_bytewise(
                        black_box(buf.as_mut_slice()),
                        black_box(KEY),
                        black_box(offset),
                    );
                });
            });
        }
        group.finish();
    }
}

criterion_group!(benches, mask);
criterion_main!(benches);
