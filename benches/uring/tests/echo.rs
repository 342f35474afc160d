//! End-to-end checks of `tether-uring-echo` over real sockets on 127.0.0.1: a client built on
//! tether-proto's client role (std sockets, no runtime) sends messages of 0 B to 1 MiB, pings
//! and closes, on one connection and on many at once, next to connections that misbehave;
//! and the server must close every socket it opened once its peers are gone.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tether_proto::handshake::{ClientRequest, HandshakeConfig, parse_response, validate_response};
use tether_proto::{CloseCode, CloseFrame, Connection, Event, Limits, Message, Reason, Role};

/// A fixed masking key: fine for a test, where nobody attacks a proxy cache.
const MASK: Option<[u8; 4]> = Some([0x5a, 0x17, 0xc3, 0x09]);
const SIZES: [usize; 5] = [0, 20, 1024, 64 * 1024, 1024 * 1024];

/// The server under test, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether-uring-echo"))
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start tether-uring-echo");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the address");
        let addr = line
            .trim()
            .strip_prefix("listening on ws://")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Self { child, addr }
    }

    /// How many file descriptors the server has open.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .expect("/proc/PID/fd")
            .count()
    }

    /// Waits (5 s at most) for the server's descriptors to come back to `count`.
    fn assert_fds_return_to(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open_fds() != count {
            assert!(
                Instant::now() < deadline,
                "the server still has {} descriptors open, expected {count}",
                self.open_fds()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("status").is_none(),
            "the server exited"
        );
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A blocking WebSocket client on tether-proto.
struct Client {
    stream: TcpStream,
    connection: Connection,
    input: BytesMut,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let request = ClientRequest::builder(addr.to_string(), "/", [9; 16])
            .build()
            .expect("request");
        stream
            .write_all(&request.encode())
            .expect("send the request");
        let mut input = BytesMut::new();
        let used = loop {
            if let Some((head, used)) =
                parse_response(&input, &HandshakeConfig::default()).expect("a response")
            {
                validate_response(&head, &request).expect("the upgrade accepted");
                break used;
            }
            read_more(&mut stream, &mut input);
        };
        let _ = input.split_to(used);
        Self {
            stream,
            connection: Connection::new(Role::Client, Limits::new(64 << 20)),
            input,
        }
    }

    fn write(&mut self, wire: &[u8]) {
        self.stream.write_all(wire).expect("write");
    }

    fn send(&mut self, message: &Message) {
        let mut wire = BytesMut::new();
        self.connection
            .encode_message(message, MASK, &mut wire)
            .expect("encode");
        self.write(&wire);
    }

    fn event(&mut self) -> Event {
        loop {
            if let Some(event) = self.connection.read(&mut self.input).expect("valid frames") {
                return event;
            }
            read_more(&mut self.stream, &mut self.input);
        }
    }

    fn expect_echo(&mut self, sent: &Message) {
        match self.event() {
            Event::Message(echoed) => {
                assert_eq!(echoed.is_text(), sent.is_text());
                assert_eq!(echoed.payload().len(), sent.payload().len());
                assert!(echoed.payload() == sent.payload(), "the echo differs");
            }
            other => panic!("expected the echo, got {other:?}"),
        }
    }

    /// The close handshake, then the server's end of the TCP connection.
    fn close(mut self) {
        let mut wire = BytesMut::new();
        let frame = CloseFrame::new(CloseCode::NORMAL, Reason::empty());
        self.connection
            .encode_close(Some(&frame), MASK, &mut wire)
            .expect("close");
        self.write(&wire);
        match self.event() {
            Event::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::NORMAL),
            other => panic!("expected the close reply, got {other:?}"),
        }
        let mut rest = [0u8; 16];
        assert_eq!(
            self.stream.read(&mut rest).expect("EOF"),
            0,
            "EOF after the close"
        );
    }
}

fn read_more(stream: &mut TcpStream, input: &mut BytesMut) {
    let mut chunk = [0u8; 64 * 1024];
    let read = stream.read(&mut chunk).expect("read");
    assert!(read > 0, "the server closed the connection");
    input.extend_from_slice(&chunk[..read]);
}

fn message(size: usize, binary: bool, seed: usize) -> Message {
    if binary {
        Message::binary((0..size).map(|i| (i * 31 + seed) as u8).collect::<Vec<_>>())
    } else {
        let text: String = (0..size)
            .map(|i| char::from(b'a' + ((i + seed) % 26) as u8))
            .collect();
        Message::text(text)
    }
}

#[test]
fn echoes_every_size_answers_pings_and_closes() {
    let mut server = Server::start();
    let baseline = server.open_fds();
    let mut client = Client::connect(server.addr);
    for size in SIZES {
        for binary in [false, true] {
            let sent = message(size, binary, size);
            client.send(&sent);
            client.expect_echo(&sent);
        }
    }
    // A ping, with a payload, answered by a pong with the same payload.
    let mut wire = BytesMut::new();
    client
        .connection
        .encode_ping(b"are you there", MASK, &mut wire)
        .expect("ping");
    client.write(&wire);
    match client.event() {
        Event::Pong(payload) => assert_eq!(&payload[..], b"are you there"),
        other => panic!("expected a pong, got {other:?}"),
    }
    // Several messages in one write, and one frame dribbled a few bytes at a time.
    let batch: Vec<Message> = (0..10).map(|i| message(20 + i, i % 2 == 0, i)).collect();
    let mut wire = BytesMut::new();
    for sent in &batch {
        client
            .connection
            .encode_message(sent, MASK, &mut wire)
            .expect("encode");
    }
    client.write(&wire);
    for sent in &batch {
        client.expect_echo(sent);
    }
    let sent = message(300, false, 1);
    let mut wire = BytesMut::new();
    client
        .connection
        .encode_message(&sent, MASK, &mut wire)
        .expect("encode");
    for piece in wire.chunks(7) {
        client.write(piece);
        std::thread::sleep(Duration::from_millis(1));
    }
    client.expect_echo(&sent);
    client.close();
    server.assert_alive();
    server.assert_fds_return_to(baseline);
}

#[test]
fn many_connections_at_once_next_to_bad_ones() {
    let mut server = Server::start();
    let baseline = server.open_fds();
    let mut clients: Vec<Client> = (0..200).map(|_| Client::connect(server.addr)).collect();

    // A refused handshake, a protocol error, a reset and a hang-up mid-frame.
    let mut refused = TcpStream::connect(server.addr).expect("connect");
    refused
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut unmasked = Client::connect(server.addr);
    unmasked.write(b"\x81\x02hi");
    reset(Client::connect(server.addr));
    let mut cut = Client::connect(server.addr);
    cut.write(b"\x82\xfe\x10\x00\x01\x02\x03\x04partial");
    cut.stream.shutdown(Shutdown::Write).expect("half close");

    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            client.send(&message(20 + round * 100, i % 2 == 1, i));
        }
        for (i, client) in clients.iter_mut().enumerate() {
            client.expect_echo(&message(20 + round * 100, i % 2 == 1, i));
        }
    }
    let mut answer = Vec::new();
    refused.read_to_end(&mut answer).expect("the refusal");
    // No Upgrade header: 426 Upgrade Required, then the server closes.
    assert!(
        answer.starts_with(b"HTTP/1.1 426"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    match unmasked.event() {
        Event::Close(Some(frame)) => assert_eq!(frame.code, CloseCode::PROTOCOL_ERROR),
        other => panic!("expected a 1002 close, got {other:?}"),
    }
    drop((unmasked, cut, refused));
    for client in clients {
        client.close();
    }
    server.assert_alive();
    server.assert_fds_return_to(baseline);
}

/// Makes the server see a reset: the client closes while the server's echo sits unread in
/// its receive buffer, which makes its kernel answer with RST instead of FIN.
fn reset(mut client: Client) {
    client.send(&message(1000, true, 3));
    std::thread::sleep(Duration::from_millis(50));
    drop(client);
}
