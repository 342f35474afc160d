//! permessage-deflate in the core: messages round-trip through compression in both roles
//! across context-takeover settings, window sizes and fragmentations; RSV1 is legal only on
//! a compressed message's first frame; a decompression bomb fails with 1009 after inflating
//! at most a step past the limit; corrupt data fails with 1007.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // Tests may panic: that is how they fail.

use bytes::BytesMut;
use tether_proto::deflate::{DeflateConfig, DeflateParams, Deflater};
use tether_proto::frame::{FrameHeader, Opcode, apply_mask};
use tether_proto::{CloseCode, Connection, Event, Limits, Message, ProtocolError, Role};

const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn params(server_reset: bool, client_reset: bool, bits: u8) -> DeflateParams {
    let mut params = DeflateParams::new();
    params.server_no_context_takeover = server_reset;
    params.client_no_context_takeover = client_reset;
    params.server_max_window_bits = bits;
    params.client_max_window_bits = bits;
    params
}

fn pair(params: DeflateParams, limits: Limits) -> (Connection, Connection) {
    let config = DeflateConfig::server();
    (
        Connection::new(Role::Client, limits).with_deflate(params, &config),
        Connection::new(Role::Server, limits).with_deflate(params, &config),
    )
}

fn chat_line(i: usize) -> String {
    format!(
        "{{\"type\":\"message\",\"room\":\"lobby\",\"from\":\"ann\",\"text\":\"line {i} of the chat, with some repetition repetition\"}}"
    )
}

/// Sends `message` from `from` to `to` in one frame; returns the wire size and what arrived.
fn send(from: &mut Connection, to: &mut Connection, message: &Message) -> (usize, Event) {
    let mask = (from.role() == Role::Client).then_some(KEY);
    let mut wire = BytesMut::new();
    from.encode_message(message, mask, &mut wire).unwrap();
    let size = wire.len();
    (size, to.read(&mut wire).unwrap().unwrap())
}

#[test]
fn messages_round_trip_in_both_roles_for_every_takeover_and_window() {
    for server_reset in [false, true] {
        for client_reset in [false, true] {
            for bits in [9, 12, 15] {
                let (mut client, mut server) =
                    pair(params(server_reset, client_reset, bits), Limits::default());
                for i in 0..20 {
                    let text = Message::text(chat_line(i).repeat(1 + i % 4));
                    let (_, event) = send(&mut client, &mut server, &text);
                    assert_eq!(event, Event::Message(text.clone()));
                    let binary = Message::binary(vec![(i % 7) as u8; 3000 + i]);
                    let (_, event) = send(&mut server, &mut client, &binary);
                    assert_eq!(event, Event::Message(binary));
                    // Below the threshold: sent as is, RSV1 clear.
                    let small = Message::text("hi");
                    let (size, event) = send(&mut server, &mut client, &small);
                    assert_eq!((size, event), (4, Event::Message(small)));
                }
            }
        }
    }
}

#[test]
fn context_takeover_makes_repeated_messages_smaller() {
    let line = Message::text(chat_line(1).repeat(3));
    let (mut client, mut server) = pair(params(false, false, 15), Limits::default());
    let (first, _) = send(&mut server, &mut client, &line);
    let (second, _) = send(&mut server, &mut client, &line);
    let (mut client, mut server) = pair(params(true, true, 15), Limits::default());
    let (reset_first, _) = send(&mut server, &mut client, &line);
    let (reset_second, _) = send(&mut server, &mut client, &line);
    assert!(second < first / 2, "{second} vs {first}");
    assert_eq!(reset_first, reset_second);
    assert!(
        reset_first < line.len() / 2,
        "{reset_first} vs {}",
        line.len()
    );
}

/// Compresses `payload` as `deflater` would for a message and cuts it into frames of about
/// `pieces` parts: RSV1 and the opcode on the first, continuations after.
fn fragmented(
    deflater: &mut Deflater,
    opcode: Opcode,
    payload: &[u8],
    pieces: usize,
    mask: Option<[u8; 4]>,
) -> BytesMut {
    let mut compressed = BytesMut::new();
    deflater.compress(payload, &mut compressed);
    frames(opcode, &compressed, pieces, mask)
}

/// Cuts a compressed message into frames of about `pieces` parts.
fn frames(opcode: Opcode, compressed: &[u8], pieces: usize, mask: Option<[u8; 4]>) -> BytesMut {
    let step = compressed.len().div_ceil(pieces).max(1);
    let chunks: Vec<&[u8]> = compressed.chunks(step).collect();
    let mut wire = BytesMut::new();
    for (i, chunk) in chunks.iter().enumerate() {
        let header = FrameHeader {
            fin: i + 1 == chunks.len(),
            rsv: if i == 0 { 0b100 } else { 0 },
            opcode: if i == 0 { opcode } else { Opcode::Continuation },
            mask,
            payload_len: chunk.len() as u64,
        };
        header.encode(&mut wire);
        let start = wire.len();
        wire.extend_from_slice(chunk);
        if let Some(key) = mask {
            apply_mask(&mut wire[start..], key, 0);
        }
    }
    wire
}

#[test]
fn fragmented_compressed_messages_are_reassembled_then_checked() {
    for reset in [false, true] {
        let (_, mut server) = pair(params(reset, reset, 15), Limits::default());
        let mut peer = Deflater::new(15, 6, reset);
        for pieces in [1, 2, 3, 7, 40] {
            let text: String = (0..30).map(chat_line).collect();
            let wire = fragmented(&mut peer, Opcode::Text, text.as_bytes(), pieces, Some(KEY));
            // The bytes arrive 37 at a time, cutting frames and headers anywhere.
            let mut input = BytesMut::new();
            let mut events = Vec::new();
            for chunk in wire.chunks(37) {
                input.extend_from_slice(chunk);
                while let Some(event) = server.read(&mut input).unwrap() {
                    events.push(event);
                }
            }
            assert!(input.is_empty());
            let [event] = <[Event; 1]>::try_from(events).unwrap();
            assert_eq!(
                event,
                Event::Message(Message::text(text)),
                "{pieces} pieces"
            );
        }
    }
}

#[test]
fn invalid_utf8_inside_compressed_text_is_1007() {
    let (_, mut server) = pair(params(true, true, 15), Limits::default());
    let mut peer = Deflater::new(15, 1, true);
    let mut bytes = chat_line(0).into_bytes();
    bytes.extend_from_slice(&[0xc3, 0x28]);
    let mut wire = fragmented(&mut peer, Opcode::Text, &bytes, 2, Some(KEY));
    let error = server.read(&mut wire).unwrap_err();
    assert_eq!(error, ProtocolError::InvalidUtf8);
    assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn rsv1_is_legal_only_on_the_first_frame_of_a_negotiated_message() {
    fn frame(opcode: Opcode, rsv: u8, fin: bool, payload: &[u8]) -> BytesMut {
        let mut wire = BytesMut::new();
        FrameHeader {
            fin,
            rsv,
            opcode,
            mask: Some(KEY),
            payload_len: payload.len() as u64,
        }
        .encode(&mut wire);
        let start = wire.len();
        wire.extend_from_slice(payload);
        apply_mask(&mut wire[start..], KEY, 0);
        wire
    }
    // Without negotiation: 1002.
    let mut plain = Connection::new(Role::Server, Limits::default());
    let error = plain
        .read(&mut frame(Opcode::Text, 0b100, true, b"x"))
        .unwrap_err();
    assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
    // On a control frame: 1002.
    let (_, mut server) = pair(params(true, true, 15), Limits::default());
    let error = server
        .read(&mut frame(Opcode::Ping, 0b100, true, b""))
        .unwrap_err();
    assert!(matches!(
        error,
        ProtocolError::ReservedBitsSet { bits: 0b100 }
    ));
    // On a continuation: 1002.
    let (_, mut server) = pair(params(true, true, 15), Limits::default());
    let mut wire = frame(Opcode::Text, 0, false, b"plain ");
    wire.extend_from_slice(&frame(Opcode::Continuation, 0b100, true, b"x"));
    assert!(server.read(&mut wire).is_err());
    // RSV2 stays illegal.
    let (_, mut server) = pair(params(true, true, 15), Limits::default());
    let error = server
        .read(&mut frame(Opcode::Text, 0b010, true, b"x"))
        .unwrap_err();
    assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
    // Corrupt deflate data: 1007.
    let (_, mut server) = pair(params(true, true, 15), Limits::default());
    let error = server
        .read(&mut frame(Opcode::Binary, 0b100, true, &[0xff; 40]))
        .unwrap_err();
    assert_eq!(error, ProtocolError::InvalidCompressedData);
    assert_eq!(error.close_code(), CloseCode::INVALID_PAYLOAD);
}

#[test]
fn a_decompression_bomb_fails_with_1009_near_the_limit() {
    // 32 MiB of zeros in about 32 KiB, well under the 1 MiB frame limit.
    let mut bomb = BytesMut::new();
    Deflater::new(15, 9, true).compress(&vec![0u8; 32 << 20], &mut bomb);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    for reset in [true, false] {
        let (_, mut server) = pair(params(reset, reset, 15), Limits::default());
        for pieces in [1, 4] {
            let (_, mut server_n) = pair(params(reset, reset, 15), Limits::default());
            let mut wire = frames(Opcode::Binary, &bomb, pieces, Some(KEY));
            let error = server_n.read(&mut wire).unwrap_err();
            assert!(
                matches!(error, ProtocolError::MessageTooBig { size, max } if size > max as u64 && size < 2 << 20),
                "{error:?}"
            );
            assert_eq!(error.close_code(), CloseCode::MESSAGE_TOO_BIG);
        }
        // A message at the limit still passes.
        let fits = Message::binary(vec![0u8; 1 << 20]);
        let mut client = Connection::new(Role::Client, Limits::default())
            .with_deflate(params(reset, reset, 15), &DeflateConfig::server());
        let (_, event) = send(&mut client, &mut server, &fits);
        assert_eq!(event, Event::Message(fits));
    }
}

#[test]
fn the_uncompressed_vectored_path_refuses_a_message_it_would_compress() {
    let (_, mut server) = pair(params(true, true, 15), Limits::default());
    let mut out = BytesMut::new();
    let big = Message::binary(vec![1u8; 4096]);
    assert!(server.compresses(&big));
    assert!(server.encode_message_header(&big, &mut out).is_err());
    let key = server.shared_compression_key(&big).unwrap();
    let mut shared = BytesMut::new();
    tether_proto::deflate::compress_stateless(key.0, key.1, big.payload(), &mut shared);
    server
        .encode_compressed(&big, &shared, key, None, &mut out)
        .unwrap();
    let mut client = Connection::new(Role::Client, Limits::default())
        .with_deflate(params(true, true, 15), &DeflateConfig::server());
    assert_eq!(client.read(&mut out).unwrap(), Some(Event::Message(big)));
}
