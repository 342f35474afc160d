//! The client against servers written with other WebSocket libraries: Python's `websockets`
//! (17.x, asyncio) and Node's `ws` (8.x), each a script in `tests/interop/` run as a child
//! process on 127.0.0.1. Echo of text and binary, subprotocol selection, pings answered,
//! close codes and reasons, the peer's message size limit (1009), and refused handshakes
//! (status, headers and JSON body). The client offers permessage-deflate by default: the
//! Python peer accepts it, the Node peer (without `--deflate`) declines it;
//! `deflate_interop.rs` tests deflate itself, with the same peers (`support/interop_peers.rs`).
//!
//! The peers come from the environment, with fallbacks under
//! `${TETHER_CACHE_DIR:-$HOME/.cache/tether}`:
//! - `TETHER_PYTHON`: a Python with `websockets` 17 (fallback: `py-venv/bin/python`);
//! - `TETHER_NODE`: the `node` binary (fallback: `node` on the `PATH`);
//! - `TETHER_NODE_PATH`: the `node_modules` holding `ws` (fallback: `node/node_modules`).
//!
//! A peer that cannot start fails its tests with the commands that install it: these tests
//! never skip silently. See `tests/interop/README.md`.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "support/interop_peers.rs"]
mod peers;

use std::time::Duration;

use peers::{Peer, PeerKind, builder, next, within};
use tether::{CloseCode, CloseReason, ErrorKind, Message, Side};

async fn echoes_text_and_binary(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let (mut client, response) = builder()
            .protocol("chat.v1")
            .connect(&peer.url("/echo"))
            .await
            .unwrap();
        assert_eq!(response.protocol.as_deref(), Some("chat.v1"));
        assert_eq!(client.protocol(), Some("chat.v1"));
        let big_text = "tether ✓ ".repeat(8_000);
        let big_binary: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let messages = [
            Message::text("hello"),
            Message::text(""),
            Message::text("héllo ✓ 🚀"),
            Message::text(big_text),
            Message::binary(vec![0u8, 1, 2, 0xfe, 0xff]),
            Message::binary(Vec::new()),
            Message::binary(big_binary),
        ];
        for message in messages {
            client.send(message.clone()).await.unwrap();
            let echoed = next(&mut client).await;
            assert_eq!(echoed.is_text(), message.is_text(), "{kind:?}");
            assert_eq!(echoed.payload(), message.payload(), "{kind:?}");
        }
        client.close(CloseCode::NORMAL, "").await.unwrap();
        let info = client.close_info().unwrap();
        assert_eq!(info.initiated_by, Side::Local);
        assert_eq!(info.reason.display_code(), 1000);

        // Without an offer, no subprotocol.
        let (mut client, response) = builder().connect(&peer.url("/echo")).await.unwrap();
        assert_eq!(response.protocol, None);
        client.send(Message::text("again")).await.unwrap();
        assert_eq!(next(&mut client).await.as_text(), Some("again"));
        client.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

async fn answers_heartbeat_pings(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let (mut client, _) = builder()
            .ping_interval(Duration::from_millis(100))
            .ping_timeout(Duration::from_millis(1_000))
            .connect(&peer.url("/echo"))
            .await
            .unwrap();
        // About 15 pings go out; a missing pong would end `recv` with a pong timeout.
        let quiet = tokio::time::timeout(Duration::from_millis(1_500), client.recv()).await;
        assert!(quiet.is_err(), "{kind:?}: recv ended: {quiet:?}");
        client.send(Message::text("still here")).await.unwrap();
        assert_eq!(next(&mut client).await.as_text(), Some("still here"));
        client.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

async fn sees_close_codes_and_reasons(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        for code in [1000u16, 1001, 4001] {
            let (mut client, _) = builder()
                .connect(&peer.url(&format!("/close/{code}")))
                .await
                .unwrap();
            // 1000 and 1001 end `recv` quietly; 4001 is not caught: an error carrying it.
            match client.recv().await {
                Ok(None) => assert_ne!(code, 4001, "{kind:?}"),
                Err(error) => {
                    assert_eq!(code, 4001, "{kind:?}: {error}");
                    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
                }
                Ok(Some(message)) => panic!("{kind:?} /close/{code}: {message:?}"),
            }
            let info = client.close_info().unwrap();
            assert_eq!(info.initiated_by, Side::Remote, "{kind:?} {code}");
            match &info.reason {
                CloseReason::Frame(frame) => {
                    assert_eq!(frame.code.as_u16(), code, "{kind:?}");
                    assert_eq!(frame.reason.as_str(), format!("closing with {code}"));
                }
                other => panic!("{kind:?} /close/{code}: {other:?}"),
            }
        }
    })
    .await;
}

async fn a_message_over_the_peers_limit_is_closed_with_1009(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let (mut client, _) = builder().connect(&peer.url("/big")).await.unwrap();
        client.send(Message::text("x".repeat(100))).await.unwrap();
        assert_eq!(next(&mut client).await.len(), 100);
        client.send(Message::text("y".repeat(2_000))).await.unwrap();
        let error = client.recv().await.unwrap_err();
        assert_eq!(
            error.kind(),
            ErrorKind::ConnectionClosed,
            "{kind:?}: {error}"
        );
        let info = client.close_info().unwrap();
        assert_eq!(error.close_info(), Some(&info));
        assert_eq!(info.initiated_by, Side::Remote, "{kind:?}");
        assert_eq!(info.reason.display_code(), 1009, "{kind:?}: {info:?}");
    })
    .await;
}

async fn refused_handshakes_keep_status_headers_and_body(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        for (path, status) in [
            ("/reject/401", 401u16),
            ("/reject/404", 404),
            ("/reject/500", 500),
            ("/no/such/route", 404),
        ] {
            let error = builder().connect(&peer.url(path)).await.unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::BadStatus,
                "{kind:?} {path}: {error}"
            );
            assert_eq!(error.is_retryable(), status >= 500, "{kind:?} {path}");
            let refused = error.bad_status().unwrap();
            assert_eq!(refused.status, status, "{kind:?} {path}");
            let reason = refused
                .headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("x-reason"))
                .map(|(_, value)| value.as_str());
            assert_eq!(
                reason,
                Some(format!("interop rejection {status}").as_str()),
                "{kind:?} {path}: {:?}",
                refused.headers
            );
            let body: serde_json::Value = serde_json::from_slice(&refused.body)
                .unwrap_or_else(|e| panic!("{kind:?} {path}: {e}: {:?}", refused.body));
            assert_eq!(
                body,
                serde_json::json!({ "error": format!("rejected with {status}") }),
                "{kind:?} {path}"
            );
        }
    })
    .await;
}

async fn reassembles_fragmented_messages(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let (mut client, _) = builder().connect(&peer.url("/fragments")).await.unwrap();
        assert_eq!(next(&mut client).await.as_text(), Some("fragmented text"));
        let binary = next(&mut client).await;
        assert!(!binary.is_text(), "{kind:?}");
        assert_eq!(&binary.payload()[..], [0, 1, 2, 3, 4], "{kind:?}");
        client.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

async fn answers_the_peers_ping(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let (mut client, _) = builder().connect(&peer.url("/ping")).await.unwrap();
        assert_eq!(next(&mut client).await.as_text(), Some("pong: tether?"));
        client.close(CloseCode::NORMAL, "").await.unwrap();
    })
    .await;
}

async fn a_message_over_the_clients_limit_is_closed_with_1009(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let (mut client, _) = builder()
            .max_message_size(1024)
            .connect(&peer.url("/echo"))
            .await
            .unwrap();
        client.send(Message::text("z".repeat(2_000))).await.unwrap();
        let error = client.recv().await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::Payload, "{kind:?}: {error}");
        assert!(client.recv().await.unwrap().is_none(), "{kind:?}");
        let info = client.close_info().unwrap();
        assert_eq!(info.initiated_by, Side::Local, "{kind:?}");
        assert_eq!(info.reason.display_code(), 1009, "{kind:?}: {info:?}");
    })
    .await;
}

/// A refusal in the chunked transfer coding, on a connection the server keeps alive: what
/// Node's http module (and Express, Fastify... on it) sends for `res.end(json)`.
async fn a_chunked_refusal_keeps_its_decoded_body(kind: PeerKind) {
    let peer = Peer::start(kind);
    within(async {
        let started = std::time::Instant::now();
        let error = builder()
            .handshake_timeout(Duration::from_secs(5))
            .connect(&peer.url("/reject-chunked/401"))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadStatus, "{kind:?}: {error}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{kind:?}: the refusal took {:?}",
            started.elapsed()
        );
        let refused = error.bad_status().unwrap();
        assert_eq!(refused.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&refused.body).unwrap_or_else(|e| {
            panic!(
                "{kind:?}: {e}: {:?}",
                String::from_utf8_lossy(&refused.body)
            )
        });
        assert_eq!(body, serde_json::json!({ "error": "rejected with 401" }));
    })
    .await;
}

/// The same tests against each peer.
macro_rules! against {
    ($module:ident, $kind:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn echoes_text_and_binary() {
                super::echoes_text_and_binary($kind).await;
            }

            #[tokio::test]
            async fn answers_heartbeat_pings() {
                super::answers_heartbeat_pings($kind).await;
            }

            #[tokio::test]
            async fn sees_close_codes_and_reasons() {
                super::sees_close_codes_and_reasons($kind).await;
            }

            #[tokio::test]
            async fn a_message_over_the_peers_limit_is_closed_with_1009() {
                super::a_message_over_the_peers_limit_is_closed_with_1009($kind).await;
            }

            #[tokio::test]
            async fn reassembles_fragmented_messages() {
                super::reassembles_fragmented_messages($kind).await;
            }

            #[tokio::test]
            async fn answers_the_peers_ping() {
                super::answers_the_peers_ping($kind).await;
            }

            #[tokio::test]
            async fn a_message_over_the_clients_limit_is_closed_with_1009() {
                super::a_message_over_the_clients_limit_is_closed_with_1009($kind).await;
            }

            #[tokio::test]
            async fn a_chunked_refusal_keeps_its_decoded_body() {
                super::a_chunked_refusal_keeps_its_decoded_body($kind).await;
            }

            #[tokio::test]
            async fn refused_handshakes_keep_status_headers_and_body() {
                super::refused_handshakes_keep_status_headers_and_body($kind).await;
            }
        }
    };
}

against!(python, PeerKind::Python);
against!(node, PeerKind::Node);
