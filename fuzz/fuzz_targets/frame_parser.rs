//! Fuzz target `frame_parser`: raw bytes into `FrameHeader::decode` and into
//! `Connection::read` in both roles.
//!
//! Input layout: two bytes (big-endian) choose the split point, the rest is the wire data.
//! Checked: a decoded header agrees with the raw bits, re-encodes to a header that decodes
//! equal (byte for byte when the input used the minimal length form), and every shorter prefix
//! is incomplete or fails the same way; a connection yields the same events and the same final
//! error whether the data arrives whole, in two pieces at the chosen split, or (for short
//! inputs) one byte at a time; and every outcome holds the invariants of `check_outcome`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tether_fuzz::{check_outcome, feed_pieces};
use tether_proto::frame::{FrameHeader, MAX_HEADER_LEN};
use tether_proto::{Connection, Limits, Role};

/// Small limits, frame below message, so both limit errors are reachable with short inputs.
const LIMITS: Limits = Limits::new(1024).with_max_frame_size(512);

/// Inputs up to this length are also fed one byte at a time.
const BYTEWISE_MAX: usize = 512;

fuzz_target!(|data: &[u8]| {
    let (split, wire) = match data {
        [hi, lo, rest @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), rest),
        _ => return,
    };
    let split = split % (wire.len() + 1);

    check_header(wire);

    for role in [Role::Server, Role::Client] {
        let mut whole_conn = Connection::new(role, LIMITS);
        let whole = feed_pieces(&mut whole_conn, [wire]);
        check_outcome(&whole_conn, LIMITS, &whole);

        let (head, tail) = wire.split_at(split);
        let mut split_conn = Connection::new(role, LIMITS);
        let halves = feed_pieces(&mut split_conn, [head, tail]);
        assert_eq!(whole, halves, "{role:?}: whole vs split at {split}");
        assert_eq!(whole_conn.state(), split_conn.state());

        if wire.len() <= BYTEWISE_MAX {
            let mut byte_conn = Connection::new(role, LIMITS);
            let bytewise = feed_pieces(&mut byte_conn, wire.chunks(1));
            assert_eq!(whole, bytewise, "{role:?}: whole vs one byte at a time");
            assert_eq!(whole_conn.state(), byte_conn.state());
        }
    }
});

/// The header checks: agreement with the raw bits, re-encoding, and prefix consistency.
fn check_header(wire: &[u8]) {
    let decoded = FrameHeader::decode(wire);
    let prefix_len = wire.len().min(MAX_HEADER_LEN + 1);
    match &decoded {
        Ok(Some((header, used))) => {
            let used = *used;
            let (first, second) = match wire {
                [first, second, ..] => (*first, *second),
                _ => panic!("a header decoded from fewer than 2 bytes"),
            };
            let extended = match second & 0x7F {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let masked = second & 0x80 != 0;
            assert_eq!(used, 2 + extended + if masked { 4 } else { 0 });
            assert!(used <= wire.len() && used <= MAX_HEADER_LEN);
            assert_eq!(header.fin, first & 0x80 != 0);
            assert_eq!(header.rsv, (first >> 4) & 0x07);
            assert_eq!(header.opcode.as_u8(), first & 0x0F);
            assert_eq!(header.mask.is_some(), masked);
            assert!(header.payload_len < 1 << 63);

            let mut encoded = Vec::new();
            header.encode(&mut encoded);
            assert_eq!(encoded.len(), header.encoded_len());
            assert!(encoded.len() <= used, "re-encoding grew the header");
            assert_eq!(
                FrameHeader::decode(&encoded),
                Ok(Some((*header, encoded.len()))),
                "re-encoded header decodes differently"
            );
            if encoded.len() == used {
                assert_eq!(
                    Some(encoded.as_slice()),
                    wire.get(..used),
                    "minimal form changed"
                );
            }
            for cut in 0..used {
                let prefix = wire.get(..cut).unwrap_or_default();
                assert_eq!(
                    FrameHeader::decode(prefix),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
        }
        Ok(None) => {
            assert!(wire.len() < MAX_HEADER_LEN);
            for cut in 0..prefix_len {
                let prefix = wire.get(..cut).unwrap_or_default();
                assert_eq!(
                    FrameHeader::decode(prefix),
                    Ok(None),
                    "prefix of {cut} bytes"
                );
            }
        }
        Err(error) => {
            for cut in 0..prefix_len {
                let prefix = wire.get(..cut).unwrap_or_default();
                match FrameHeader::decode(prefix) {
                    Ok(None) => {}
                    Err(e) => assert_eq!(&e, error, "prefix of {cut} bytes"),
                    Ok(Some(h)) => panic!("prefix of {cut} bytes decoded {h:?} but whole failed"),
                }
            }
        }
    }
}
