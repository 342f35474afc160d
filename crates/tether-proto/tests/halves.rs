//! A connection split into its halves (`Connection::split`): each half does its own part with
//! no state shared with the other, and once the holder passes on the peer's close and a
//! violation, the halves behave exactly as the whole connection does: same bytes on the wire,
//! same refusals, same ending. Compression keeps its context across the split.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // Tests may panic: that is how they fail.

use bytes::BytesMut;
use tether_proto::deflate::{DeflateConfig, DeflateParams};
use tether_proto::{
    CloseCode, CloseFrame, CloseReason, CloseState, Connection, Event, Limits, Message,
    ProtocolError, Role, SendError, Side,
};

const KEY: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

/// What the client sends: its frames, encoded by a whole client connection.
fn client_bytes(build: impl FnOnce(&mut Connection, &mut BytesMut)) -> BytesMut {
    let mut client = Connection::new(Role::Client, Limits::default());
    let mut wire = BytesMut::new();
    build(&mut client, &mut wire);
    wire
}

#[test]
fn the_halves_read_and_write_what_the_whole_connection_does() {
    let wire = client_bytes(|client, wire| {
        client
            .encode_message(&Message::text("héllo"), Some(KEY), wire)
            .unwrap();
        client
            .encode_ping(b"are you there", Some(KEY), wire)
            .unwrap();
        client
            .encode_message(&Message::binary(vec![7u8; 70_000]), Some(KEY), wire)
            .unwrap();
    });

    let mut whole = Connection::new(Role::Server, Limits::default());
    let (mut read, mut write) = Connection::new(Role::Server, Limits::default()).split();
    let (mut from_whole, mut from_halves) = (Vec::new(), Vec::new());
    let (mut whole_input, mut split_input) = (wire.clone(), wire);
    while let Some(event) = whole.read(&mut whole_input).unwrap() {
        from_whole.push(event);
    }
    while let Some(event) = read.read(&mut split_input).unwrap() {
        from_halves.push(event);
    }
    assert_eq!(from_whole, from_halves);
    assert_eq!(from_halves.len(), 3);

    let (mut whole_out, mut split_out) = (BytesMut::new(), BytesMut::new());
    for event in &from_whole {
        match event {
            Event::Message(message) => {
                whole.encode_message(message, None, &mut whole_out).unwrap();
                write.encode_message(message, None, &mut split_out).unwrap();
            }
            Event::Ping(payload) => {
                whole.encode_pong(payload, None, &mut whole_out).unwrap();
                write.encode_pong(payload, None, &mut split_out).unwrap();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(whole_out, split_out);
    assert_eq!(write.state(), CloseState::Open);
}

#[test]
fn the_peer_close_passed_on_refuses_data_and_gives_the_reply_and_the_ending() {
    let frame = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
    let mut wire = client_bytes(|client, wire| {
        client.encode_close(Some(&frame), Some(KEY), wire).unwrap();
    });
    let (mut read, mut write) = Connection::new(Role::Server, Limits::default()).split();

    let event = read.read(&mut wire).unwrap().unwrap();
    assert_eq!(event, Event::Close(Some(frame.clone())));
    assert!(!read.wants_read());
    // Until the holder passes it on, the write half has not heard of it.
    assert_eq!(write.state(), CloseState::Open);
    let Event::Close(received) = event else {
        unreachable!()
    };
    write.note_peer_close(received);
    assert_eq!(write.state(), CloseState::CloseReceived);
    assert_eq!(write.closed_by(), Some(Side::Remote));

    let mut out = BytesMut::new();
    assert_eq!(
        write.encode_message(&Message::text("late"), None, &mut out),
        Err(SendError::Closed)
    );
    assert_eq!(
        write.encode_ping(b"", None, &mut out),
        Err(SendError::Closed)
    );
    assert!(out.is_empty());
    write.encode_close_reply(None, &mut out).unwrap();
    assert_eq!(write.state(), CloseState::Closed);

    // The reply carries the peer's code, as the whole connection's does.
    let mut client = Connection::new(Role::Client, Limits::default());
    client
        .encode_close(Some(&frame), Some(KEY), &mut BytesMut::new())
        .unwrap();
    assert_eq!(
        client.read(&mut out).unwrap(),
        Some(Event::Close(Some(CloseFrame::new(
            CloseCode::GOING_AWAY,
            ""
        ))))
    );

    write.note_transport_end(true);
    let info = write.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason, CloseReason::from_frame(Some(frame)));
}

#[test]
fn a_violation_passed_on_leaves_only_the_close_frame_that_says_why() {
    // An unmasked frame from a client.
    let mut wire = BytesMut::from(&[0x81u8, 0x02, b'h', b'i'][..]);
    let (mut read, mut write) = Connection::new(Role::Server, Limits::default()).split();

    let error = read.read(&mut wire).unwrap_err();
    assert_eq!(error, ProtocolError::UnmaskedFrame);
    assert!(!read.wants_read());
    // Input after the violation is ignored.
    let mut more = BytesMut::from(&[0x81u8, 0x80, 1, 2, 3, 4][..]);
    assert_eq!(read.read(&mut more).unwrap(), None);

    write.note_failure();
    assert_eq!(write.state(), CloseState::Failed);
    let mut out = BytesMut::new();
    assert_eq!(
        write.encode_message(&Message::text("no"), None, &mut out),
        Err(SendError::Closed)
    );
    write
        .encode_close(Some(&error.close_frame()), None, &mut out)
        .unwrap();
    assert_eq!(out[0], 0x88, "a close frame went out");
    write.note_transport_end(true);
    let info = write.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Local);
    assert_eq!(info.reason.display_code(), 1002);
}

#[test]
fn compression_keeps_its_context_in_both_halves() {
    let params = DeflateParams::new();
    let config = DeflateConfig::server();
    let mut client = Connection::new(Role::Client, Limits::default()).with_deflate(params, &config);
    let (mut read, mut write) = Connection::new(Role::Server, Limits::default())
        .with_deflate(params, &config)
        .split();
    assert_eq!(write.deflate_params(), Some(params));

    let line = "a chat line that repeats itself, repeats itself, repeats itself";
    let mut sizes = Vec::new();
    for i in 0..5 {
        let message = Message::text(format!("{line} #{i}"));
        let mut wire = BytesMut::new();
        client
            .encode_message(&message, Some(KEY), &mut wire)
            .unwrap();
        assert_eq!(
            read.read(&mut wire).unwrap(),
            Some(Event::Message(message.clone()))
        );

        let mut reply = BytesMut::new();
        assert!(write.compresses(&message));
        write.encode_message(&message, None, &mut reply).unwrap();
        sizes.push(reply.len());
        assert_eq!(
            client.read(&mut reply).unwrap(),
            Some(Event::Message(message))
        );
    }
    // With the context kept, later replies are much smaller than the first.
    assert!(sizes[4] * 2 < sizes[0], "reply sizes {sizes:?}");
}
