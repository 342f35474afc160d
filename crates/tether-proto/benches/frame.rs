//! Frame benchmarks: `FrameHeader` decode and encode for each length form (masked, as a
//! client sends), and `Connection::read` of whole masked messages as a server receives them:
//! 20 B text, 1 KiB text, 64 KiB binary, and 64 KiB of text in 16 fragments.
//!
//! The wire bytes are prepared once; each iteration reads from its own clone of them
//! (`iter_batched`), so only the read is timed.

#![allow(missing_docs)] // criterion_group! generates undocumented public items.
#![allow(clippy::expect_used)] // A bench whose setup is wrong should stop loudly.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN, Opcode, apply_mask};
use tether_proto::{Connection, Event, Limits, Message, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// One payload length per length form: 7-bit, 16-bit, 64-bit.
const FORMS: [(u64, &str); 3] = [(100, "7bit"), (1000, "16bit"), (100_000, "64bit")];

fn header(payload_len: u64) -> FrameHeader {
    FrameHeader {
        fin: true,
        rsv: 0,
        opcode: Opcode::Binary,
        mask: Some(KEY),
        payload_len,
    }
}

fn headers(c: &mut Criterion) {
    let mut group = c.benchmark_group("header");
    for (len, label) in FORMS {
        let header = header(len);
        let mut wire = Vec::new();
        header.encode(&mut wire);
        group.bench_function(BenchmarkId::new("decode", label), |b| {
            b.iter(|| FrameHeader::decode(black_box(wire.as_slice())));
        });
        group.bench_function(BenchmarkId::new("encode", label), |b| {
            let mut out = [0u8; MAX_HEADER_LEN];
            b.iter(|| {
                let mut cursor = out.as_mut_slice();
                black_box(&header).encode(&mut cursor);
                black_box(&out);
            });
        });
    }
    group.finish();
}

/// Text of `len` bytes mixing ASCII with 2-, 3- and 4-byte characters, cut on a character
/// boundary and padded with ASCII.
fn mixed_text(len: usize) -> String {
    const SAMPLE: &str = "WebSocket κόσμε żółć 世界 🦀 — ";
    let mut text = String::with_capacity(len);
    while text.len() + SAMPLE.len() <= len {
        text.push_str(SAMPLE);
    }
    while text.len() < len {
        text.push('.');
    }
    text
}

/// One masked message as a client encodes it.
fn single_frame(message: &Message) -> BytesMut {
    let mut client = Connection::new(Role::Client, Limits::default());
    let mut wire = BytesMut::new();
    client
        .encode_message(message, Some(KEY), &mut wire)
        .expect("an open connection encodes");
    wire
}

/// `text` as `count` masked frames: a text frame, then continuations, FIN on the last.
fn fragmented(text: &str, count: usize) -> BytesMut {
    let bytes = text.as_bytes();
    let piece = bytes.len().div_ceil(count);
    let mut wire = BytesMut::new();
    for (i, chunk) in bytes.chunks(piece).enumerate() {
        let header = FrameHeader {
            fin: (i + 1) * piece >= bytes.len(),
            rsv: 0,
            opcode: if i == 0 {
                Opcode::Text
            } else {
                Opcode::Continuation
            },
            mask: Some(KEY),
            payload_len: chunk.len() as u64,
        };
        header.encode(&mut wire);
        let start = wire.len();
        wire.extend_from_slice(chunk);
        apply_mask(wire.get_mut(start..).expect("just written"), KEY, 0);
    }
    wire
}

fn reads(c: &mut Criterion) {
    let text_64k = mixed_text(64 << 10);
    let cases: [(&str, usize, BytesMut); 4] = [
        ("text_20B", 20, single_frame(&Message::text(mixed_text(20)))),
        (
            "text_1KiB",
            1 << 10,
            single_frame(&Message::text(mixed_text(1 << 10))),
        ),
        (
            "binary_64KiB",
            64 << 10,
            single_frame(&Message::binary(vec![0xA5; 64 << 10])),
        ),
        (
            "text_64KiB_16_fragments",
            64 << 10,
            fragmented(&text_64k, 16),
        ),
    ];
    let mut group = c.benchmark_group("read");
    for (label, len, wire) in cases {
        // Check once, outside the timing, that the bytes make the one message expected.
        let mut check = wire.clone();
        let event = Connection::new(Role::Server, Limits::default())
            .read(&mut check)
            .expect("valid wire bytes");
        match event {
            Some(Event::Message(message)) => assert_eq!(message.len(), len, "{label}"),
            other => panic!("{label}: expected a message, got {other:?}"),
        }

        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(label, |b| {
            b.iter_batched(
                || {
                    (
                        Connection::new(Role::Server, Limits::default()),
                        wire.clone(),
                    )
                },
                |(mut conn, mut input)| conn.read(&mut input),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, headers, reads);
criterion_main!(benches);
