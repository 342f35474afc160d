//! Every protocol rule of the core, fed as raw bytes, checked by typed error and close code.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use bytes::BytesMut;
use tether_proto::frame::{FrameHeader, Opcode, apply_mask};
use tether_proto::{
    CloseCode, CloseFrame, CloseState, Connection, Event, Limits, Message, ProtocolError, Role,
    SendError, Side,
};

const KEY: [u8; 4] = [0xa1, 0xb2, 0xc3, 0xd4];

/// Builds one raw frame as a client would send it (masked with `KEY`).
fn client_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8]) -> Vec<u8> {
    raw_frame(fin, rsv, opcode, payload, Some(KEY))
}

fn raw_frame(fin: bool, rsv: u8, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = Vec::new();
    out.push((u8::from(fin) << 7) | (rsv << 4) | opcode);
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    let start = out.len();
    if let Some(key) = mask {
        out.extend_from_slice(&key);
    }
    let body = out.len();
    out.extend_from_slice(payload);
    if let Some(key) = mask {
        apply_mask(&mut out[body..], key, 0);
    }
    let _ = start;
    out
}

fn server() -> Connection {
    Connection::new(Role::Server, Limits::default())
}

/// Feeds `bytes` to a fresh server and collects events until an error or the input runs out.
fn feed(conn: &mut Connection, bytes: &[u8]) -> Result<Vec<Event>, ProtocolError> {
    let mut input = BytesMut::from(bytes);
    let mut events = Vec::new();
    while let Some(event) = conn.read(&mut input)? {
        events.push(event);
    }
    Ok(events)
}

fn expect_error(bytes: &[u8], expected: ProtocolError, code: u16) {
    let mut conn = server();
    let error = feed(&mut conn, bytes).expect_err("must be refused");
    assert_eq!(error, expected);
    assert_eq!(error.close_code().as_u16(), code, "{error}");
    assert_eq!(conn.state(), CloseState::Failed);
    // A failed connection ignores further input.
    assert_eq!(
        feed(&mut conn, &client_frame(true, 0, 1, b"hi")),
        Ok(vec![])
    );
}

fn text(s: &str) -> Event {
    Event::Message(Message::text(s))
}

#[test]
fn reserved_bits_without_extension_are_1002() {
    for rsv in 1..8u8 {
        expect_error(
            &client_frame(true, rsv, 1, b"x"),
            ProtocolError::ReservedBitsSet { bits: rsv },
            1002,
        );
    }
}

#[test]
fn unknown_opcodes_are_1002() {
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        expect_error(
            &client_frame(true, 0, op, b""),
            ProtocolError::UnknownOpcode(op),
            1002,
        );
    }
}

#[test]
fn fragmented_control_frames_are_1002() {
    for op in [8u8, 9, 0xA] {
        expect_error(
            &client_frame(false, 0, op, b""),
            ProtocolError::FragmentedControlFrame,
            1002,
        );
    }
}

#[test]
fn control_frames_over_125_bytes_are_1002() {
    for op in [8u8, 9, 0xA] {
        expect_error(
            &client_frame(true, 0, op, &[b'a'; 126]),
            ProtocolError::ControlFrameTooLong { len: 126 },
            1002,
        );
    }
    // 125 is fine.
    let mut conn = server();
    let events = feed(&mut conn, &client_frame(true, 0, 9, &[b'a'; 125])).expect("ok");
    assert!(matches!(&events[..], [Event::Ping(p)] if p.len() == 125));
}

#[test]
fn continuation_without_a_start_is_1002() {
    expect_error(
        &client_frame(true, 0, 0, b"x"),
        ProtocolError::UnexpectedContinuation,
        1002,
    );
}

#[test]
fn new_data_frame_inside_a_fragmented_message_is_1002() {
    let mut bytes = client_frame(false, 0, 1, b"part");
    bytes.extend(client_frame(true, 0, 2, b"new"));
    expect_error(&bytes, ProtocolError::ExpectedContinuation, 1002);
}

#[test]
fn unmasked_client_frames_are_1002() {
    expect_error(
        &raw_frame(true, 0, 1, b"x", None),
        ProtocolError::UnmaskedFrame,
        1002,
    );
}

#[test]
fn masked_server_frames_are_1002() {
    let mut client = Connection::new(Role::Client, Limits::default());
    let error = feed(&mut client, &client_frame(true, 0, 1, b"x")).expect_err("refused");
    assert_eq!(error, ProtocolError::MaskedFrame);
    assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
}

#[test]
fn length_with_msb_set_is_1002() {
    let mut bytes = vec![0x82, 0xFF];
    bytes.extend_from_slice(&(1u64 << 63).to_be_bytes());
    bytes.extend_from_slice(&KEY);
    expect_error(&bytes, ProtocolError::LengthOverflow, 1002);
}

#[test]
fn invalid_utf8_in_a_single_frame_is_1007() {
    expect_error(
        &client_frame(true, 0, 1, b"abc\xff"),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

#[test]
fn invalid_utf8_fails_on_the_fragment_where_it_is_certain() {
    let mut conn = server();
    // First fragment valid, second fragment carries the invalid byte; the third never comes.
    assert_eq!(
        feed(&mut conn, &client_frame(false, 0, 1, b"hello")),
        Ok(vec![])
    );
    let error = feed(&mut conn, &client_frame(false, 0, 0, b"\xf4\x90")).expect_err("invalid");
    assert_eq!(error, ProtocolError::InvalidUtf8);
    assert_eq!(error.close_code().as_u16(), 1007);
}

#[test]
fn invalid_utf8_fails_mid_frame_before_the_payload_is_complete() {
    let mut conn = server();
    let payload = [b"valid start ".as_slice(), b"\xce\xba\xff", &[b'x'; 1000]].concat();
    let frame = client_frame(true, 0, 1, &payload);
    // Deliver only the header and the first 20 payload bytes: the invalid byte is among them.
    let mut input = BytesMut::from(&frame[..6 + 20]);
    assert_eq!(conn.read(&mut input), Err(ProtocolError::InvalidUtf8));
}

#[test]
fn a_character_split_across_fragments_is_valid() {
    let euro = "€".as_bytes();
    let mut bytes = client_frame(false, 0, 1, &euro[..1]);
    bytes.extend(client_frame(false, 0, 0, &euro[1..2]));
    bytes.extend(client_frame(true, 0, 0, &euro[2..]));
    assert_eq!(feed(&mut server(), &bytes), Ok(vec![text("€")]));
}

#[test]
fn a_message_ending_mid_character_is_1007() {
    let euro = "€".as_bytes();
    expect_error(
        &client_frame(true, 0, 1, &euro[..2]),
        ProtocolError::InvalidUtf8,
        1007,
    );
}

#[test]
fn frame_over_the_limit_is_1009_before_its_payload_arrives() {
    let limits = Limits::new(1000).with_max_frame_size(100);
    let mut conn = Connection::new(Role::Server, limits);
    let frame = client_frame(true, 0, 2, &[0; 101]);
    let mut input = BytesMut::from(&frame[..8]); // the header only
    let error = conn.read(&mut input).expect_err("too big");
    assert_eq!(
        error,
        ProtocolError::FrameTooBig {
            size: 101,
            max: 100
        }
    );
    assert_eq!(error.close_code().as_u16(), 1009);
}

#[test]
fn message_over_the_limit_is_1009() {
    let mut conn = Connection::new(Role::Server, Limits::new(10));
    let mut bytes = client_frame(false, 0, 2, &[0; 6]);
    bytes.extend(client_frame(true, 0, 0, &[0; 6]));
    let error = feed(&mut conn, &bytes).expect_err("too big");
    assert_eq!(error, ProtocolError::MessageTooBig { size: 12, max: 10 });
    assert_eq!(error.close_code(), CloseCode::MESSAGE_TOO_BIG);
    // Exactly at the limit is fine.
    let mut conn = Connection::new(Role::Server, Limits::new(12));
    let events = feed(&mut conn, &bytes).expect("at the limit");
    assert_eq!(events, vec![Event::Message(Message::binary(vec![0u8; 12]))]);
}

#[test]
fn close_with_unsendable_codes_is_1002() {
    for code in [
        0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        expect_error(
            &client_frame(true, 0, 8, &code.to_be_bytes()),
            ProtocolError::InvalidCloseCode(code),
            1002,
        );
    }
}

#[test]
fn close_with_a_one_byte_payload_is_1002() {
    expect_error(
        &client_frame(true, 0, 8, &[0x03]),
        ProtocolError::InvalidClosePayloadLength,
        1002,
    );
}

#[test]
fn close_with_a_non_utf8_reason_is_1007() {
    expect_error(
        &client_frame(true, 0, 8, b"\x03\xe8\xff\xfe"),
        ProtocolError::InvalidCloseReason,
        1007,
    );
}

#[test]
fn peer_initiated_close_is_answered_with_the_same_code() {
    let mut conn = server();
    let events = feed(&mut conn, &client_frame(true, 0, 8, b"\x0f\xa1done")).expect("valid");
    let expected = CloseFrame::new(CloseCode::new(4001).expect("app code"), "done");
    assert_eq!(events, vec![Event::Close(Some(expected))]);
    assert_eq!(conn.state(), CloseState::CloseReceived);
    assert_eq!(conn.closed_by(), Some(Side::Remote));
    assert!(!conn.wants_read());

    // Data may no longer be sent; the reply echoes 4001.
    let mut out = BytesMut::new();
    assert_eq!(
        conn.encode_message(&Message::text("late"), None, &mut out),
        Err(SendError::Closed)
    );
    conn.encode_close_reply(None, &mut out).expect("reply owed");
    assert_eq!(&out[..], &[0x88, 0x02, 0x0f, 0xa1]);
    assert_eq!(conn.state(), CloseState::Closed);
    // Never a second close.
    assert_eq!(
        conn.encode_close(None, None, &mut out),
        Err(SendError::AlreadyClosing)
    );
}

#[test]
fn close_without_status_is_answered_without_status() {
    let mut conn = server();
    assert_eq!(
        feed(&mut conn, &client_frame(true, 0, 8, b"")),
        Ok(vec![Event::Close(None)])
    );
    let mut out = BytesMut::new();
    conn.encode_close_reply(None, &mut out).expect("reply owed");
    assert_eq!(&out[..], &[0x88, 0x00]);
}

#[test]
fn locally_initiated_close_completes_on_the_peer_reply() {
    let mut conn = server();
    let mut out = BytesMut::new();
    conn.encode_close(
        Some(&CloseFrame::new(CloseCode::GOING_AWAY, "bye")),
        None,
        &mut out,
    )
    .expect("first close");
    assert_eq!(&out[..], b"\x88\x05\x03\xe9bye");
    assert_eq!(conn.state(), CloseState::CloseSent);
    assert_eq!(conn.closed_by(), Some(Side::Local));
    // Data still arriving before the peer's close is delivered.
    let mut bytes = client_frame(true, 0, 1, b"in flight");
    bytes.extend(client_frame(true, 0, 8, b"\x03\xe9"));
    let events = feed(&mut conn, &bytes).expect("valid");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], text("in flight"));
    assert_eq!(conn.state(), CloseState::Closed);
    assert_eq!(conn.closed_by(), Some(Side::Local));
}

#[test]
fn ping_returns_the_pong_owed_and_unsolicited_pongs_are_ignored() {
    let mut conn = server();
    let mut bytes = client_frame(true, 0, 0xA, b"unsolicited");
    bytes.extend(client_frame(true, 0, 9, b"are you there"));
    let events = feed(&mut conn, &bytes).expect("valid");
    assert_eq!(
        events,
        vec![
            Event::Pong(bytes::Bytes::from_static(b"unsolicited")),
            Event::Ping(bytes::Bytes::from_static(b"are you there")),
        ]
    );
    let mut out = BytesMut::new();
    conn.encode_pong(b"are you there", None, &mut out)
        .expect("pong");
    assert_eq!(&out[..2], &[0x8A, 13]);
    assert_eq!(
        conn.encode_ping(&[0; 126], None, &mut out),
        Err(SendError::ControlTooLong { len: 126 })
    );
}

#[test]
fn control_frames_may_interleave_with_fragments() {
    let mut bytes = client_frame(false, 0, 1, b"frag");
    bytes.extend(client_frame(true, 0, 9, b"p"));
    bytes.extend(client_frame(true, 0, 0, b"mented"));
    let events = feed(&mut server(), &bytes).expect("valid");
    assert_eq!(
        events,
        vec![
            Event::Ping(bytes::Bytes::from_static(b"p")),
            text("fragmented")
        ]
    );
}

#[test]
fn every_byte_split_of_a_stream_gives_the_same_events() {
    let mut bytes = client_frame(true, 0, 1, "κόσμε".as_bytes());
    bytes.extend(client_frame(false, 0, 2, &[1, 2, 3]));
    bytes.extend(client_frame(true, 0, 9, b""));
    bytes.extend(client_frame(true, 0, 0, &[4; 300]));
    bytes.extend(client_frame(true, 0, 8, b"\x03\xe8"));
    let whole = feed(&mut server(), &bytes).expect("valid");
    assert_eq!(whole.len(), 4);
    for split in 0..bytes.len() {
        let mut conn = server();
        let mut input = BytesMut::from(&bytes[..split]);
        let mut events = Vec::new();
        while let Some(event) = conn.read(&mut input).expect("valid") {
            events.push(event);
        }
        input.extend_from_slice(&bytes[split..]);
        while let Some(event) = conn.read(&mut input).expect("valid") {
            events.push(event);
        }
        assert_eq!(events, whole, "split at {split}");
    }
}

#[test]
fn client_frames_are_masked_and_server_frames_are_not() {
    let mut client = Connection::new(Role::Client, Limits::default());
    let mut out = BytesMut::new();
    client
        .encode_message(&Message::binary(vec![0u8; 200]), Some(KEY), &mut out)
        .expect("open");
    let (header, len) = FrameHeader::decode(&out).expect("ok").expect("complete");
    assert_eq!(header.opcode, Opcode::Binary);
    assert_eq!(header.mask, Some(KEY));
    assert_eq!(header.payload_len, 200);
    assert_eq!(&out[len..len + 4], &KEY);
    // The server decodes it back to zeros.
    let events = feed(&mut server(), &out).expect("valid");
    assert_eq!(
        events,
        vec![Event::Message(Message::binary(vec![0u8; 200]))]
    );
}

#[test]
fn single_frame_messages_are_not_copied() {
    let frame = client_frame(true, 0, 2, &[7; 64]);
    let mut input = BytesMut::from(&frame[..]);
    let base = input.as_ptr() as usize;
    let Some(Event::Message(Message::Binary(payload))) = server().read(&mut input).expect("ok")
    else {
        panic!("expected a binary message");
    };
    assert_eq!(
        payload.as_ptr() as usize,
        base + 6,
        "payload is a view of the input buffer"
    );
}

#[test]
fn a_server_may_send_a_header_alone_and_a_client_may_not() {
    let mut conn = server();
    let mut out = BytesMut::new();
    let message = Message::binary(vec![9u8; 300]);
    conn.encode_message_header(&message, &mut out)
        .expect("server role");
    assert_eq!(&out[..], &[0x82, 126, 0x01, 0x2c]);
    let mut client = Connection::new(Role::Client, Limits::default());
    assert_eq!(
        client.encode_message_header(&message, &mut out),
        Err(SendError::MaskRequired)
    );
}

#[test]
fn payloads_under_the_detach_threshold_are_copied_and_larger_ones_shared() {
    let mut conn = Connection::new(Role::Server, Limits::default()).with_detach_threshold(64);
    for (len, shared) in [(64usize, false), (65, true)] {
        let frame = client_frame(true, 0, 2, &vec![3u8; len]);
        let mut input = BytesMut::from(&frame[..]);
        let start = input.as_ptr() as usize;
        let end = start + input.len();
        let Some(Event::Message(Message::Binary(payload))) = conn.read(&mut input).expect("ok")
        else {
            panic!("expected a binary message");
        };
        assert_eq!(payload.len(), len);
        let inside = (start..end).contains(&(payload.as_ptr() as usize));
        assert_eq!(inside, shared, "len {len}");
        assert!(input.is_empty());
    }
}
