//! UTF-8 validation throughput: `Utf8Validator::feed` over ASCII and over mixed multibyte text
//! at 1 KiB and 64 KiB, fed whole and (64 KiB) in 1 KiB pieces that cut characters, against
//! `std::str::from_utf8` on the whole.

#![allow(missing_docs)] // criterion_group! generates undocumented public items.
#![allow(clippy::expect_used)] // A bench whose input is wrong should stop loudly.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether_proto::utf8::Utf8Validator;

/// The piece size for streamed validation.
const PIECE: usize = 1 << 10;

/// `len` bytes of text built from `sample`, cut on a character boundary, padded with ASCII.
fn text(sample: &str, len: usize) -> Vec<u8> {
    let mut text = String::with_capacity(len);
    while text.len() + sample.len() <= len {
        text.push_str(sample);
    }
    while text.len() < len {
        text.push('.');
    }
    text.into_bytes()
}

fn validate(c: &mut Criterion) {
    let ascii = "The quick brown fox jumps over the lazy dog. 0123456789 ";
    let mixed = "WebSocket κόσμε żółć 世界 🦀 — ";
    for (kind, sample) in [("ascii", ascii), ("mixed", mixed)] {
        for (len, size) in [(1usize << 10, "1KiB"), (64 << 10, "64KiB")] {
            let input = text(sample, len);
            assert!(std::str::from_utf8(&input).is_ok());
            let mut group = c.benchmark_group(format!("utf8/{kind}/{size}"));
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_function(BenchmarkId::from_parameter("validator_whole"), |b| {
                b.iter(|| {
                    let mut validator = Utf8Validator::new();
                    validator.feed(black_box(&input)).expect("valid");
                    validator.finish().expect("complete")
                });
            });
            if len > PIECE {
                // Pieces cut characters in the mixed text, exercising the carried tail.
                group.bench_function(BenchmarkId::from_parameter("validator_1KiB_pieces"), |b| {
                    b.iter(|| {
                        let mut validator = Utf8Validator::new();
                        for piece in black_box(&input).chunks(PIECE) {
                            validator.feed(piece).expect("valid");
                        }
                        validator.finish().expect("complete")
                    });
                });
            }
            group.bench_function(BenchmarkId::from_parameter("std_from_utf8"), |b| {
                b.iter(|| std::str::from_utf8(black_box(&input)).is_ok());
            });
            group.finish();
        }
    }
}

criterion_group!(benches, validate);
criterion_main!(benches);
