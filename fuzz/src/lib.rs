//! Helpers shared by the fuzz targets: driving a `Connection` over byte pieces and checking
//! the invariants every event and error must hold whatever the input.

use bytes::BytesMut;
use tether_proto::frame::MAX_CONTROL_PAYLOAD;
use tether_proto::{CloseState, Connection, Event, Limits, Message, ProtocolError};

/// What a connection made of some input: the events in order, then the error that stopped it
/// (`None` when it ran out of input or stopped reading after a close frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Every event read, in order.
    pub events: Vec<Event>,
    /// The error that failed the connection, if any.
    pub error: Option<ProtocolError>,
}

/// Feeds `pieces` one after another into `conn` through one buffer, reading events until each
/// piece is used up (`Ok(None)`) or the connection fails.
pub fn feed_pieces<'a>(
    conn: &mut Connection,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Outcome {
    let mut buf = BytesMut::new();
    let mut outcome = Outcome {
        events: Vec::new(),
        error: None,
    };
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match conn.read(&mut buf) {
                Ok(Some(event)) => outcome.events.push(event),
                Ok(None) => break,
                Err(error) => {
                    assert!(buf.is_empty(), "a failed read must drop the buffered input");
                    outcome.error = Some(error);
                    return outcome;
                }
            }
        }
    }
    outcome
}

/// Checks what must hold of any outcome whatever the input: text is UTF-8, sizes respect the
/// limits, control payloads fit, nothing follows a close, errors carry the close code their
/// kind calls for, and the connection state agrees.
pub fn check_outcome(conn: &Connection, limits: Limits, outcome: &Outcome) {
    let mut closed = false;
    for event in &outcome.events {
        assert!(!closed, "an event after the peer's close: {event:?}");
        match event {
            Event::Message(message) => {
                assert!(
                    message.len() <= limits.max_message_size,
                    "{message:?} over the limit"
                );
                if let Message::Text(text) = message {
                    assert!(
                        std::str::from_utf8(text.as_bytes()).is_ok(),
                        "a text message that is not UTF-8"
                    );
                }
            }
            Event::Ping(payload) | Event::Pong(payload) => {
                assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
            }
            Event::Close(frame) => {
                closed = true;
                if let Some(frame) = frame {
                    let code = frame.code.as_u16();
                    assert!(
                        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999),
                        "a close code that may not be sent: {code}"
                    );
                    assert!(frame.reason.as_bytes().len() <= 123);
                }
            }
            other => panic!("an event this version does not know: {other:?}"),
        }
    }
    if let Some(error) = &outcome.error {
        assert!(!closed, "an error after the peer's close: {error:?}");
        check_error(error, limits);
        assert_eq!(conn.state(), CloseState::Failed);
        assert!(!conn.wants_read());
    } else if closed {
        assert_eq!(conn.state(), CloseState::CloseReceived);
        assert!(!conn.wants_read());
    } else {
        assert_eq!(conn.state(), CloseState::Open);
        assert!(conn.wants_read());
    }
}

/// Checks that `error` carries the close code its kind calls for (1007 for bad UTF-8, 1009
/// for a limit, 1002 for the rest) and that limit errors really exceed the limit.
pub fn check_error(error: &ProtocolError, limits: Limits) {
    let expected = match error {
        ProtocolError::InvalidUtf8 | ProtocolError::InvalidCloseReason => 1007,
        ProtocolError::FrameTooBig { size, max } => {
            assert_eq!(*max, limits.max_frame_size);
            assert!(*size > *max as u64, "{error:?} within the limit");
            1009
        }
        ProtocolError::MessageTooBig { size, max } => {
            assert_eq!(*max, limits.max_message_size);
            assert!(*size > *max as u64, "{error:?} within the limit");
            1009
        }
        ProtocolError::ControlFrameTooLong { len } => {
            assert!(*len > MAX_CONTROL_PAYLOAD as u64);
            1002
        }
        ProtocolError::ReservedBitsSet { bits } => {
            assert!(*bits != 0 && *bits <= 0b111);
            1002
        }
        ProtocolError::UnknownOpcode(op) => {
            assert!(matches!(op, 3..=7 | 0xB..=0xF));
            1002
        }
        ProtocolError::InvalidCloseCode(code) => {
            assert!(!matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999));
            1002
        }
        _ => 1002,
    };
    assert_eq!(error.close_code().as_u16(), expected, "{error:?}");
    let frame = error.close_frame();
    assert_eq!(frame.code.as_u16(), expected);
    assert!(frame.reason.as_bytes().len() <= 123);
}

/// Checks that a handshake error has one of the `allowed` HTTP statuses and that its
/// rejection response is a complete HTTP response with that status, whose `Content-Length`
/// covers exactly the body that follows the head.
pub fn check_rejection(error: &tether_proto::handshake::HandshakeError, allowed: &[u16]) {
    use tether_proto::handshake::{HandshakeConfig, parse_response};

    let status = error.http_status();
    assert!(allowed.contains(&status), "{error:?} has status {status}");
    assert!(!error.to_string().is_empty());
    let response = error.to_response();
    match parse_response(&response, &HandshakeConfig::default()) {
        Ok(Some((head, used))) => {
            assert_eq!(head.status, status);
            assert_eq!(head.version, 1);
            let body_len = response.len().checked_sub(used).map(|n| n as u64);
            assert_eq!(head.content_length(), body_len, "body length of {error:?}");
            assert!(head.has_token("connection", "close"));
        }
        other => panic!("the response for {error:?} does not parse: {other:?}"),
    }
}
