//! permessage-deflate (RFC 7692) between the client and servers written with other WebSocket
//! libraries: Python's `websockets` (17.x, compression on by default) and Node's `ws` (8.x,
//! started with `--deflate`: `perMessageDeflate: true`), the peers of `client_interop.rs`
//! (`tests/interop/`, found the same way; a peer that cannot start fails its tests).
//!
//! For each peer, exactly: its answer to the client's default offer, to an offer that allows
//! context takeover in the client's direction too and to one that asks for none either way
//! (the `Sec-WebSocket-Extensions` the client received, the one the peer reports it sent, from
//! its `/deflate-info` route, and [`tether::WebSocket::deflate`]); echoes of 100 different
//! 1 KiB text messages, 200 KiB binary messages and a 900 KiB text message; no deflate when
//! the client offers none. Through a byte-counting TCP relay on 127.0.0.1: that the bytes on
//! the wire were compressed both ways, and that each direction's messages shrink when its
//! compressor keeps its context.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "support/interop_peers.rs"]
mod peers;

use peers::{Peer, PeerKind, builder, next, within};
use tether::client::{ClientBuilder, Response};
use tether::{CloseCode, DeflateConfig, DeflateParams, Message, Side, WebSocket};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The peer, negotiating permessage-deflate: websockets does by default, `ws` with `--deflate`.
fn deflating_peer(kind: PeerKind) -> Peer {
    match kind {
        PeerKind::Python => Peer::start(kind),
        PeerKind::Node => Peer::start_with(kind, &["--deflate"]),
    }
}

/// The client's offers: the default one (`permessage-deflate; client_no_context_takeover;
/// client_max_window_bits`), one that allows context takeover in the client's direction too
/// (`permessage-deflate; client_max_window_bits`), and one that asks for none either way
/// (`permessage-deflate; server_no_context_takeover; client_no_context_takeover;
/// client_max_window_bits`).
fn offer(server_takeover: bool, client_takeover: bool) -> DeflateConfig {
    let mut config = DeflateConfig::client();
    config.server_no_context_takeover = !server_takeover;
    config.client_no_context_takeover = !client_takeover;
    config
}

/// What `kind` answers to `offer` (one of [`offer`]'s): the `Sec-WebSocket-Extensions`
/// value and the parameters it means. Both grant the `*_no_context_takeover` asked for and no
/// more; websockets also names its 12-bit windows (its server's defaults, which RFC 7692 lets
/// it name unasked), `ws` names no window, so 15 bits.
fn expected_answer(kind: PeerKind, offer: &DeflateConfig) -> (&'static str, DeflateParams) {
    let no_takeover = (
        offer.server_no_context_takeover,
        offer.client_no_context_takeover,
    );
    let header = match (kind, no_takeover) {
        (PeerKind::Python, (false, true)) => {
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=12; \
             client_max_window_bits=12"
        }
        (PeerKind::Python, (false, false)) => {
            "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
        }
        (PeerKind::Python, (true, true)) => {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12; client_max_window_bits=12"
        }
        (PeerKind::Node, (false, true)) => "permessage-deflate; client_no_context_takeover",
        (PeerKind::Node, (false, false)) => "permessage-deflate",
        (PeerKind::Node, (true, true)) => {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
        other => panic!("no expected answer for {other:?}"),
    };
    let mut params = DeflateParams::new();
    (
        params.server_no_context_takeover,
        params.client_no_context_takeover,
    ) = no_takeover;
    if kind == PeerKind::Python {
        params.server_max_window_bits = 12;
        params.client_max_window_bits = 12;
    }
    (header, params)
}

/// The `Sec-WebSocket-Extensions` value of a handshake response, if it has one.
fn extensions_answered(response: &Response) -> Option<&str> {
    response
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, value)| value.as_str())
}

/// Connects with `client` to `url` (a peer's `/deflate-info`) and checks the deflate the
/// handshake agreed on: `expected`, with `None` meaning no extension at all. The peer's own
/// report, its first message, must be the header the client received.
async fn connect_expecting(
    client: ClientBuilder,
    url: &str,
    expected: Option<(&str, DeflateParams)>,
    kind: PeerKind,
) -> WebSocket {
    let (mut client, response) = client.connect(url).await.unwrap();
    let received = extensions_answered(&response);
    assert_eq!(
        received,
        expected.map(|(header, _)| header),
        "{kind:?}: {:?}",
        response.headers
    );
    assert_eq!(
        client.deflate(),
        expected.map(|(_, params)| params),
        "{kind:?}"
    );
    let reported = next(&mut client).await;
    assert_eq!(
        reported.as_text(),
        Some(received.unwrap_or("")),
        "{kind:?}: the header the peer reports sending"
    );
    client
}

/// The `i`-th word of a fixed pseudo-random sequence over a small vocabulary.
fn word(i: u64) -> &'static str {
    const WORDS: [&str; 16] = [
        "tether", "socket", "deflate", "frame", "window", "context", "message", "binary", "text",
        "ping", "pong", "close", "hub", "room", "client", "server",
    ];
    let hash = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 60;
    WORDS[usize::try_from(hash).unwrap()]
}

/// A JSON-like line of a little over 1 KiB (over `ws`'s 1024-byte threshold, so the Node peer
/// compresses its echo), different for each `i`: consecutive lines share most of their words,
/// shifted, which only a compressor that keeps its context between messages can use.
fn json_line(i: u64) -> String {
    let mut line = format!(
        r#"{{"id":{i},"user":"user-{}","room":"room-{}","text":""#,
        i % 13,
        i % 5
    );
    let mut n = i * 3;
    while line.len() < 1_100 {
        line.push_str(word(n));
        line.push(' ');
        n += 1;
    }
    line.push_str("\"}");
    line
}

/// About 900 KiB of JSON-like lines: under the 1 MiB default message limit of the client and
/// of websockets (which applies it to the inflated size), and compressible.
fn big_text() -> String {
    let mut text = String::new();
    let mut i = 0;
    while text.len() < 900 * 1024 {
        text.push_str(&json_line(i));
        text.push('\n');
        i += 1;
    }
    assert!(text.len() < 1 << 20);
    text
}

/// `len` bytes that deflate cannot shrink (xorshift).
fn noise(len: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state.to_le_bytes()[0]
        })
        .collect()
}

/// Sends each message and checks that it comes back exactly, in order.
async fn echoes_exactly(client: &mut WebSocket, messages: Vec<Message>, kind: PeerKind) {
    for (i, message) in messages.into_iter().enumerate() {
        client.send(message.clone()).await.unwrap();
        let echoed = next(client).await;
        assert_eq!(echoed.is_text(), message.is_text(), "{kind:?} #{i}");
        assert!(
            echoed.payload() == message.payload(),
            "{kind:?} #{i}: {} bytes came back for {}",
            echoed.len(),
            message.len()
        );
    }
}

/// A TCP relay on 127.0.0.1 in front of a peer, for one connection: it counts the bytes that
/// cross each way, handshake and frame headers included.
struct Relay {
    port: u16,
    counts: JoinHandle<(u64, u64)>,
}

impl Relay {
    async fn start(peer: &Peer) -> Self {
        let target = peer.port;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = tokio::spawn(async move {
            let (mut client, _) = listener.accept().await.unwrap();
            let mut peer = TcpStream::connect(("127.0.0.1", target)).await.unwrap();
            tokio::io::copy_bidirectional(&mut client, &mut peer)
                .await
                .unwrap()
        });
        Self { port, counts }
    }

    fn url(&self, path: &str) -> String {
        format!("ws://127.0.0.1:{}{path}", self.port)
    }

    /// Closes `client` and, once both ends have closed, the bytes that went from the client
    /// to the peer and from the peer to the client.
    async fn finish(self, mut client: WebSocket) -> (u64, u64) {
        client.close(CloseCode::NORMAL, "").await.unwrap();
        drop(client);
        self.counts.await.unwrap()
    }
}

async fn negotiates_and_echoes_exactly(kind: PeerKind) {
    let peer = deflating_peer(kind);
    within(async {
        // The default builder offers deflate.
        let mut client = connect_expecting(
            builder(),
            &peer.url("/deflate-info"),
            Some(expected_answer(kind, &DeflateConfig::client())),
            kind,
        )
        .await;
        let patterned: Vec<u8> = (0..200 * 1024u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut messages: Vec<Message> = (0..100).map(|i| Message::text(json_line(i))).collect();
        messages.push(Message::binary(noise(200 * 1024)));
        messages.push(Message::binary(patterned));
        messages.push(Message::text(big_text()));
        messages.push(Message::text("short, sent as it is"));
        echoes_exactly(&mut client, messages, kind).await;
        client.close(CloseCode::NORMAL, "").await.unwrap();
        let info = client.close_info().unwrap();
        assert_eq!(info.initiated_by, Side::Local);
        assert_eq!(info.reason.display_code(), 1000, "{kind:?}");
    })
    .await;
}

async fn offers_nothing_when_told_to(kind: PeerKind) {
    let peer = deflating_peer(kind);
    within(async {
        let mut client = connect_expecting(
            builder().deflate(None),
            &peer.url("/deflate-info"),
            None,
            kind,
        )
        .await;
        let messages = vec![
            Message::text(json_line(0)),
            Message::text(json_line(1)),
            Message::binary(noise(200 * 1024)),
            Message::text(big_text()),
        ];
        echoes_exactly(&mut client, messages, kind).await;
        client.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

/// The same 900 KiB text each way, counted on the wire: compressed with deflate, at full size
/// without (which shows the relay counts what it should).
async fn the_wire_carries_compressed_bytes(kind: PeerKind) {
    let peer = deflating_peer(kind);
    within(async {
        let text = big_text();
        let size = u64::try_from(text.len()).unwrap();
        for config in [Some(DeflateConfig::client()), None] {
            let relay = Relay::start(&peer).await;
            let expected = config.map(|config| expected_answer(kind, &config));
            let mut client = connect_expecting(
                builder().deflate(config),
                &relay.url("/deflate-info"),
                expected,
                kind,
            )
            .await;
            echoes_exactly(&mut client, vec![Message::text(text.clone())], kind).await;
            let (up, down) = relay.finish(client).await;
            if config.is_some() {
                assert!(
                    up < size / 8 && down < size / 8,
                    "{kind:?}: {size} bytes of text crossed as {up} bytes up, {down} down"
                );
            } else {
                assert!(
                    up > size && down > size,
                    "{kind:?} without deflate: {size} bytes crossed as {up} up, {down} down"
                );
            }
        }
    })
    .await;
}

/// 100 messages that share most of their words with the previous one, echoed with context
/// takeover allowed in both directions, then with the client resetting its context after each
/// message, then with both ends resetting theirs: every echo exact, and each direction
/// markedly smaller on the wire when its compressor keeps its context.
async fn context_takeover_both_ways(kind: PeerKind) {
    let peer = deflating_peer(kind);
    within(async {
        let runs = [offer(true, true), offer(true, false), offer(false, false)];
        let mut up = [0u64; 3];
        let mut down = [0u64; 3];
        for (run, config) in runs.into_iter().enumerate() {
            let relay = Relay::start(&peer).await;
            let url = relay.url("/deflate-info");
            let expected = Some(expected_answer(kind, &config));
            let mut client =
                connect_expecting(builder().deflate(config), &url, expected, kind).await;
            let messages = (0..100).map(|i| Message::text(json_line(i))).collect();
            echoes_exactly(&mut client, messages, kind).await;
            (up[run], down[run]) = relay.finish(client).await;
        }
        let shown = format!("{kind:?}: bytes up {up:?}, down {down:?}");
        // The client's direction: takeover in the first run only.
        assert!(up[0] < up[1] / 2 && up[0] < up[2] / 2, "{shown}");
        // The peer's: takeover in the first two runs.
        assert!(down[0] < down[2] / 2 && down[1] < down[2] / 2, "{shown}");
    })
    .await;
}

/// The same tests against each peer.
macro_rules! against {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn negotiates_and_echoes_exactly() {
                super::negotiates_and_echoes_exactly($kind).await;
            }

            #[tokio::test]
            async fn offers_nothing_when_told_to() {
                super::offers_nothing_when_told_to($kind).await;
            }

            #[tokio::test]
            async fn the_wire_carries_compressed_bytes() {
                super::the_wire_carries_compressed_bytes($kind).await;
            }

            #[tokio::test]
            async fn context_takeover_both_ways() {
                super::context_takeover_both_ways($kind).await;
            }
        }
    };
}

against!(python, PeerKind::Python);
against!(node, PeerKind::Node);
