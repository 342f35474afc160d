//! One connection's WebSocket state, free of any I/O: the opening handshake, then
//! tether-proto's server-role [`Connection`] echoing every message, answering pings and
//! replying to the close. Bytes go in with [`Session::receive`]; the bytes owed to the peer
//! pile up until [`Session::take_output`].

use bytes::{Buf, BytesMut};
use tether_proto::handshake::{HandshakeConfig, accept_response, parse_request};
use tether_proto::{Connection, Event, Limits, Role};

/// The largest message echoed, as `tether echo` and the peers allow: 64 MiB.
const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// Where the connection is.
#[derive(Debug)]
enum State {
    /// Waiting for the complete HTTP upgrade request.
    Handshake,
    /// Echoing.
    Open(Connection),
    /// The last bytes are in the output (a close frame, or a refusal): nothing more is read.
    Done,
}

/// A WebSocket echo connection, transport-free.
#[derive(Debug)]
pub struct Session {
    state: State,
    input: BytesMut,
    output: BytesMut,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A connection waiting for its upgrade request.
    pub fn new() -> Self {
        Self {
            state: State::Handshake,
            input: BytesMut::new(),
            output: BytesMut::new(),
        }
    }

    /// Takes bytes from the peer, answering everything complete in what arrived so far.
    pub fn receive(&mut self, data: &[u8]) {
        if matches!(self.state, State::Done) {
            return;
        }
        self.input.extend_from_slice(data);
        loop {
            match &mut self.state {
                State::Handshake => {
                    if !self.handshake() {
                        return;
                    }
                }
                State::Open(connection) => {
                    if !echo(connection, &mut self.input, &mut self.output) {
                        self.state = State::Done;
                        self.input = BytesMut::new();
                    }
                    return;
                }
                State::Done => return,
            }
        }
    }

    /// Answers the upgrade request once complete; true when the connection is now open.
    fn handshake(&mut self) -> bool {
        match parse_request(&self.input, &HandshakeConfig::default()) {
            Ok(Some((request, used))) => {
                // No subprotocol and no extension: permessage-deflate offers are declined.
                self.output
                    .extend_from_slice(&accept_response(&request, None, None, &[]));
                self.input.advance(used);
                self.state =
                    State::Open(Connection::new(Role::Server, Limits::new(MAX_MESSAGE_SIZE)));
                true
            }
            Ok(None) => false,
            Err(error) => {
                self.output.extend_from_slice(&error.to_response());
                self.state = State::Done;
                self.input = BytesMut::new();
                false
            }
        }
    }

    /// Whether bytes are waiting to be sent.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// The bytes waiting to be sent; `spare` (emptied) takes their place, so that the two
    /// buffers of a connection take turns and a steady echo allocates nothing.
    pub fn take_output(&mut self, mut spare: BytesMut) -> BytesMut {
        spare.clear();
        std::mem::replace(&mut self.output, spare)
    }

    /// Whether the connection is over once the output is sent: the close was answered, the
    /// protocol was violated or the handshake refused.
    pub fn finished(&self) -> bool {
        matches!(self.state, State::Done)
    }
}

/// Echoes every complete event in `input` into `output`; false once the connection is over
/// (a close frame answered, or a protocol error reported with a close frame).
fn echo(connection: &mut Connection, input: &mut BytesMut, output: &mut BytesMut) -> bool {
    loop {
        match connection.read(input) {
            Ok(Some(Event::Message(message))) => {
                // Fails only once a close frame went either way, which ends this loop first.
                let _ = connection.encode_message(&message, None, output);
            }
            Ok(Some(Event::Ping(payload))) => {
                let _ = connection.encode_pong(&payload, None, output);
            }
            Ok(Some(Event::Close(_))) => {
                let _ = connection.encode_close_reply(None, output);
                return false;
            }
            // Pongs, and whatever else a later tether-proto may report: nothing to answer.
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(error) => {
                let _ = connection.encode_close(Some(&error.close_frame()), None, output);
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::handshake::{ClientRequest, parse_response, validate_response};
    use tether_proto::{CloseCode, CloseFrame, Message, Reason};

    const MASK: Option<[u8; 4]> = Some([0x11, 0x22, 0x33, 0x44]);

    fn open() -> (Session, Connection) {
        let request = ClientRequest::builder("localhost", "/", [3; 16])
            .build()
            .expect("request");
        let mut session = Session::new();
        let wire = request.encode();
        // In two pieces: a split head must wait for its end.
        session.receive(&wire[..10]);
        assert!(!session.has_output());
        session.receive(&wire[10..]);
        let out = session.take_output(BytesMut::new());
        let (head, used) = parse_response(&out, &HandshakeConfig::default())
            .expect("response")
            .expect("complete");
        assert_eq!(used, out.len());
        validate_response(&head, &request).expect("accepted");
        (
            session,
            Connection::new(Role::Client, Limits::new(MAX_MESSAGE_SIZE)),
        )
    }

    fn events(client: &mut Connection, mut bytes: BytesMut) -> Vec<Event> {
        let mut events = Vec::new();
        while let Some(event) = client.read(&mut bytes).expect("valid frames") {
            events.push(event);
        }
        assert!(bytes.is_empty());
        events
    }

    #[test]
    fn echoes_messages_byte_by_byte_and_answers_pings() {
        let (mut session, mut client) = open();
        let mut wire = BytesMut::new();
        client
            .encode_message(&Message::text("hello"), MASK, &mut wire)
            .expect("encode");
        client.encode_ping(b"p", MASK, &mut wire).expect("ping");
        client
            .encode_message(&Message::binary(vec![7u8; 70_000]), MASK, &mut wire)
            .expect("encode");
        for byte in wire.iter() {
            session.receive(&[*byte]);
        }
        let events = events(&mut client, session.take_output(BytesMut::new()));
        assert_eq!(events.len(), 3);
        assert!(matches!(&events[0], Event::Message(m) if m.as_text() == Some("hello")));
        assert!(matches!(&events[1], Event::Pong(p) if &p[..] == b"p"));
        assert!(matches!(&events[2], Event::Message(m) if m.payload().len() == 70_000));
        assert!(!session.finished());
    }

    #[test]
    fn replies_to_a_close_and_finishes() {
        let (mut session, mut client) = open();
        let mut wire = BytesMut::new();
        let frame = CloseFrame::new(CloseCode::NORMAL, Reason::empty());
        client
            .encode_close(Some(&frame), MASK, &mut wire)
            .expect("close");
        session.receive(&wire);
        assert!(session.finished());
        let events = events(&mut client, session.take_output(BytesMut::new()));
        assert!(matches!(&events[..], [Event::Close(Some(f))] if f.code == CloseCode::NORMAL));
        // Nothing more is read.
        session.receive(b"\x81\x85junk");
        assert!(!session.has_output());
    }

    #[test]
    fn an_unmasked_frame_fails_with_1002() {
        let (mut session, mut client) = open();
        session.receive(b"\x81\x02hi");
        assert!(session.finished());
        let events = events(&mut client, session.take_output(BytesMut::new()));
        assert!(
            matches!(&events[..], [Event::Close(Some(f))] if f.code == CloseCode::PROTOCOL_ERROR)
        );
    }

    #[test]
    fn a_bad_request_is_refused() {
        let mut session = Session::new();
        session.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(session.finished());
        let out = session.take_output(BytesMut::new());
        assert!(out.starts_with(b"HTTP/1.1 4"), "{out:?}");
    }
}
