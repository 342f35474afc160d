//! How a connection ended, as the core decides it: who closed first, with which frame, and
//! when the end was abnormal. Every layer above reads `Connection::close_info`.

#![allow(clippy::unwrap_used)] // Tests may panic: that is how they fail.

use bytes::BytesMut;
use tether_proto::{
    CloseCode, CloseFrame, CloseInfo, CloseReason, Connection, Event, Limits, Role, Side,
};

const KEY: [u8; 4] = [9, 8, 7, 6];

fn pair() -> (Connection, Connection) {
    (
        Connection::new(Role::Client, Limits::default()),
        Connection::new(Role::Server, Limits::default()),
    )
}

/// Sends `frame` from `from` and lets `to` read it; returns what `to` saw.
fn deliver(from: &mut Connection, to: &mut Connection, frame: Option<&CloseFrame>) -> Event {
    let mask = (from.role() == Role::Client).then_some(KEY);
    let mut wire = BytesMut::new();
    from.encode_close(frame, mask, &mut wire).unwrap();
    to.read(&mut wire).unwrap().unwrap()
}

fn reply(from: &mut Connection, to: &mut Connection) {
    let mask = (from.role() == Role::Client).then_some(KEY);
    let mut wire = BytesMut::new();
    from.encode_close_reply(mask, &mut wire).unwrap();
    to.read(&mut wire).unwrap();
}

#[test]
fn nothing_is_known_until_the_transport_is_finished() {
    let (mut client, mut server) = pair();
    let bye = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
    deliver(&mut client, &mut server, Some(&bye));
    assert_eq!(client.close_info(), None);
    assert_eq!(server.close_info(), None);
}

#[test]
fn a_completed_handshake_is_told_from_both_sides() {
    let (mut client, mut server) = pair();
    let frame = CloseFrame::new(CloseCode::new(4001).unwrap(), "room closed");
    deliver(&mut server, &mut client, Some(&frame));
    reply(&mut client, &mut server);
    client.note_transport_end(true);
    server.note_transport_end(true);
    let expected = CloseReason::Frame(frame);
    assert_eq!(
        server.close_info(),
        Some(CloseInfo::new(Side::Local, expected.clone()))
    );
    assert_eq!(
        client.close_info(),
        Some(CloseInfo::new(Side::Remote, expected))
    );
}

#[test]
fn a_close_without_status_is_no_status_not_abnormal() {
    let (mut client, mut server) = pair();
    deliver(&mut client, &mut server, None);
    reply(&mut server, &mut client);
    server.note_transport_end(true);
    let info = server.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason, CloseReason::NoStatus);
    assert_eq!(info.reason.display_code(), 1005);
    assert!(!info.is_abnormal());
}

#[test]
fn a_transport_that_ends_before_any_close_frame_is_abnormal() {
    let (_, mut server) = pair();
    server.note_transport_end(true);
    let info = server.close_info().unwrap();
    assert!(info.is_abnormal());
    assert_eq!(info.initiated_by, Side::Remote);
    assert_eq!(info.reason.display_code(), 1006);
}

#[test]
fn our_close_unanswered_is_still_our_close_unless_the_transport_failed() {
    let bye = CloseFrame::new(CloseCode::NORMAL, "done");
    // The peer hangs up (or the close timeout passes) without answering: the end we asked for.
    let (mut client, mut server) = pair();
    deliver(&mut client, &mut server, Some(&bye));
    client.note_transport_end(true);
    assert_eq!(
        client.close_info(),
        Some(CloseInfo::new(Side::Local, CloseReason::Frame(bye.clone())))
    );
    // A reset before the answer: abnormal.
    let (mut client, mut server) = pair();
    deliver(&mut client, &mut server, Some(&bye));
    client.note_transport_end(false);
    assert!(client.close_info().unwrap().is_abnormal());
    // A reset after a completed handshake changes nothing.
    let (mut client, mut server) = pair();
    deliver(&mut client, &mut server, Some(&bye));
    reply(&mut server, &mut client);
    client.note_transport_end(false);
    assert_eq!(
        client.close_info(),
        Some(CloseInfo::new(Side::Local, CloseReason::Frame(bye)))
    );
}

#[test]
fn a_protocol_failure_ends_with_the_close_frame_we_sent_for_it() {
    let (_, mut server) = pair();
    // An unmasked frame from a client.
    let mut wire = BytesMut::from(&[0x81, 0x01, b'x'][..]);
    let error = server.read(&mut wire).unwrap_err();
    let frame = error.close_frame();
    server
        .encode_close(Some(&frame), None, &mut BytesMut::new())
        .unwrap();
    server.note_transport_end(true);
    let info = server.close_info().unwrap();
    assert_eq!(info.initiated_by, Side::Local);
    assert_eq!(info.reason.code(), Some(CloseCode::PROTOCOL_ERROR));
}

#[test]
fn the_first_report_of_the_transport_end_counts() {
    let (_, mut server) = pair();
    server.note_transport_end(false);
    server.note_transport_end(true);
    assert!(server.close_info().unwrap().is_abnormal());
}
