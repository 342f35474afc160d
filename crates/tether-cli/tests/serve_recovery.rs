//! `tether serve` gives a client that comes back exactly the messages it missed, or says it
//! cannot (`docs/demo-chat.md`, "Recovery"): the real binary, driven over loopback.
//!
//! - A client whose TCP connection is reset while another says 500 messages joins again with
//!   `since`: `recovered: true`, those 500 in order with contiguous offsets, then live ones,
//!   none twice.
//! - A client resuming while another says 2,000 messages as fast as it can: its offsets after
//!   the resume run on with no gap and no duplicate.
//! - A restarted server has a new epoch; more missed than `--history-size`, or older than
//!   `--history-ttl`, or `--history-size 0`: `recovered: false` and nothing replayed.
//!
//! - Two nodes on a real Redis (`--backplane`): a client reset on one node while the other
//!   says 500 messages recovers them on the other node, with the same positions.
//!
//! The process and client helpers are `serve_chat/harness.rs`; Redis comes from
//! `crates/tether/tests/support/redis.rs`.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "serve_chat/harness.rs"]
#[allow(dead_code)] // Not every helper is used here.
mod harness;
#[path = "../../tether/tests/support/redis.rs"]
mod redis_support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tether::WebSocket;
use tether::client::ClientBuilder;

use harness::{Chat, check_error, join_chat, recv, recv_text, scrape, send, wait_for_metric};

/// No rate limit in the way of a fast sender.
const FAST: [&str; 4] = ["--rate", "1000000", "--burst", "1000000"];

/// A client that has read its welcome.
async fn client(chat: &Chat, name: &str) -> WebSocket {
    join_chat(&chat.url(&format!("?name={name}"))).await.0
}

/// A client on a socket with `SO_LINGER` 0: dropping it resets the connection (RST).
async fn resettable_client(chat: &Chat, name: &str) -> WebSocket {
    let addr: SocketAddr = chat.addr;
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.set_linger(Some(Duration::ZERO)).unwrap();
    socket.set_nonblocking(true).unwrap();
    let stream = tokio::net::TcpStream::from_std(socket.into()).unwrap();
    let builder = ClientBuilder::new().no_proxy().ping_interval(None);
    let (mut client, _) = builder
        .connect_on(stream, &chat.url(&format!("?name={name}")))
        .await
        .unwrap();
    assert_eq!(recv(&mut client).await["type"], "welcome");
    client
}

/// Joins `room` (with `since` when given); returns the `joined` reply.
async fn join(client: &mut WebSocket, room: &str, since: Option<&Value>) -> Value {
    let mut request = json!({"type": "join", "room": room, "id": "j"});
    if let Some(since) = since {
        request["since"] = since.clone();
    }
    send(client, &request).await;
    let joined = recv(client).await;
    assert_eq!(
        (&joined["type"], &joined["id"]),
        (&json!("joined"), &json!("j")),
        "{joined}"
    );
    joined
}

/// `{"epoch":..,"offset":..}` of a `joined` reply or a `message`.
fn position(value: &Value) -> Value {
    json!({"epoch": value["epoch"], "offset": value["offset"]})
}

/// The next message, which must be a chat `message` in `room`.
async fn next_message(client: &mut WebSocket, room: &str) -> Value {
    let message = recv(client).await;
    assert_eq!(
        (&message["type"], &message["room"]),
        (&json!("message"), &json!(room)),
        "{message}"
    );
    message
}

/// Says `texts` in `room`, each once the previous one's `said` and its own copy of the
/// message have come back.
async fn say_all(client: &mut WebSocket, room: &str, texts: impl IntoIterator<Item = String>) {
    for text in texts {
        send(client, &json!({"type": "say", "room": room, "text": text})).await;
        let (mut said, mut heard) = (false, false);
        while !(said && heard) {
            let reply = recv(client).await;
            said |= reply["type"] == "said";
            heard |= reply["type"] == "message" && reply["text"] == text;
        }
    }
}

/// `speaker` says five live messages in the lobby; `listener` gets them right after
/// `offset`, and nothing more.
async fn live_after(speaker: &mut WebSocket, listener: &mut WebSocket, offset: u64) {
    say_all(speaker, "lobby", (1..=5).map(|n| format!("live {n}"))).await;
    for n in 1..=5u64 {
        let message = next_message(listener, "lobby").await;
        assert_eq!(
            (&message["offset"], &message["text"]),
            (&json!(offset + n), &json!(format!("live {n}")))
        );
    }
    nothing_more(listener).await;
}

/// Checks that nothing else is queued for `client`: a ping is answered next.
async fn nothing_more(client: &mut WebSocket) {
    send(client, &json!({"type": "ping", "id": "last"})).await;
    assert_eq!(recv_text(client).await, r#"{"type":"pong","id":"last"}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_client_gets_exactly_what_it_missed_then_live_messages() {
    let chat = Chat::start(&FAST);
    let mut ann = resettable_client(&chat, "ann").await;
    let joined = join(&mut ann, "lobby", None).await;
    assert_eq!(joined["offset"], 0);
    assert!(joined.get("recovered").is_none(), "{joined}");
    let epoch = joined["epoch"].clone();
    let mut bob = client(&chat, "bob").await;
    join(&mut bob, "lobby", None).await;
    say_all(&mut bob, "lobby", (1..=3).map(|n| format!("before {n}"))).await;
    let mut last = Value::Null;
    for n in 1..=3 {
        let message = next_message(&mut ann, "lobby").await;
        assert_eq!((&message["offset"], &message["epoch"]), (&json!(n), &epoch));
        last = position(&message);
    }

    drop(ann); // SO_LINGER 0: the server sees a reset
    say_all(&mut bob, "lobby", (1..=500).map(|n| format!("missed {n}"))).await;
    wait_for_metric(
        &chat,
        r#"tether_closes_total{code="1006",side="client"}"#,
        1.0,
    );

    let mut ann = client(&chat, "ann").await;
    let joined = join(&mut ann, "lobby", Some(&last)).await;
    assert_eq!(
        joined,
        json!({"type": "joined", "id": "j", "room": "lobby", "members": 2,
               "offset": 503, "epoch": epoch, "recovered": true})
    );
    for n in 1..=500u64 {
        let message = next_message(&mut ann, "lobby").await;
        assert_eq!(
            (
                &message["offset"],
                &message["epoch"],
                &message["text"],
                &message["from"]
            ),
            (
                &json!(3 + n),
                &epoch,
                &json!(format!("missed {n}")),
                &json!("bob")
            ),
        );
    }
    live_after(&mut bob, &mut ann, 503).await;
    let metrics = scrape(&chat);
    assert_eq!(metrics["tether_recoveries_attempted_total"], 1.0);
    assert_eq!(metrics["tether_recoveries_succeeded_total"], 1.0);
    assert_eq!(metrics["tether_recovered_messages_total"], 500.0);
    assert_eq!(
        metrics[r#"tether_recoveries_failed_total{reason="too_many"}"#],
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_a_client_reset_on_one_recovers_on_the_other() {
    let redis = redis_support::RedisServer::start();
    let url = redis.url();
    let on = |id: &str| {
        let mut args = FAST.to_vec();
        args.extend(["--backplane", &url, "--node-id", id]);
        Chat::start(&args)
    };
    let (a, b) = (on("node-a"), on("node-b"));
    let mut ann = resettable_client(&b, "ann").await;
    let joined = join(&mut ann, "lobby", None).await;
    let epoch = joined["epoch"].clone();
    let mut bob = client(&a, "bob").await;
    let joined = join(&mut bob, "lobby", None).await;
    assert_eq!(joined["epoch"], epoch, "one history for both nodes");
    say_all(&mut bob, "lobby", (1..=3).map(|n| format!("before {n}"))).await;
    let mut last = Value::Null;
    for n in 1..=3 {
        let message = next_message(&mut ann, "lobby").await;
        assert_eq!((&message["offset"], &message["epoch"]), (&json!(n), &epoch));
        last = position(&message);
    }

    drop(ann); // SO_LINGER 0: node b sees a reset
    say_all(&mut bob, "lobby", (1..=500).map(|n| format!("missed {n}"))).await;
    wait_for_metric(&b, r#"tether_closes_total{code="1006",side="client"}"#, 1.0);

    // Back, on the other node.
    let mut ann = client(&a, "ann").await;
    let joined = join(&mut ann, "lobby", Some(&last)).await;
    assert_eq!(
        (&joined["recovered"], &joined["offset"], &joined["epoch"]),
        (&json!(true), &json!(503), &epoch),
        "{joined}"
    );
    for n in 1..=500u64 {
        let message = next_message(&mut ann, "lobby").await;
        assert_eq!(
            (&message["offset"], &message["epoch"], &message["text"]),
            (&json!(3 + n), &epoch, &json!(format!("missed {n}"))),
        );
    }
    live_after(&mut bob, &mut ann, 503).await;
    let metrics = scrape(&a);
    assert_eq!(metrics["tether_recoveries_succeeded_total"], 1.0);
    assert_eq!(metrics["tether_recovered_messages_total"], 500.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_during_a_stream_of_messages_leaves_no_gap_and_no_duplicate() {
    const MESSAGES: u64 = 2_000;
    let chat = Chat::start(&FAST);
    let mut ann = client(&chat, "ann").await;
    join(&mut ann, "lobby", None).await;
    let mut bob = client(&chat, "bob").await;
    join(&mut bob, "lobby", None).await;
    let talker = tokio::spawn(async move {
        say_all(&mut bob, "lobby", (1..=MESSAGES).map(|n| n.to_string())).await;
        bob
    });
    // Read a while, drop the connection mid-stream, and come back from the last one seen.
    let mut last = Value::Null;
    for _ in 0..200 {
        last = position(&next_message(&mut ann, "lobby").await);
    }
    drop(ann);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ann = client(&chat, "ann").await;
    let joined = join(&mut ann, "lobby", Some(&last)).await;
    assert_eq!(joined["recovered"], true, "{joined}");
    let resumed_at = joined["offset"].as_u64().unwrap();
    assert!(
        resumed_at < MESSAGES,
        "the stream ended before the resume: {resumed_at}"
    );
    let mut expected = last["offset"].as_u64().unwrap();
    while expected < MESSAGES {
        let message = next_message(&mut ann, "lobby").await;
        expected += 1;
        assert_eq!(message["offset"], expected, "{message}");
        assert_eq!(message["text"], expected.to_string(), "{message}");
    }
    talker.await.unwrap();
    nothing_more(&mut ann).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_has_a_new_epoch() {
    let first = Chat::start(&FAST);
    let mut ann = client(&first, "ann").await;
    join(&mut ann, "lobby", None).await;
    say_all(&mut ann, "lobby", ["hello".to_owned()]).await;
    let last = position(&join(&mut ann, "lobby", None).await);
    assert_eq!(last["offset"], 1);
    drop(ann);
    drop(first);

    let second = Chat::start(&FAST);
    let mut ann = client(&second, "ann").await;
    let joined = join(&mut ann, "lobby", Some(&last)).await;
    assert_eq!(joined["recovered"], false, "{joined}");
    assert_eq!(joined["offset"], 0);
    assert_ne!(joined["epoch"], last["epoch"]);
    nothing_more(&mut ann).await;
    wait_for_metric(
        &second,
        r#"tether_recoveries_failed_total{reason="epoch_changed"}"#,
        1.0,
    );
}

/// Ann leaves `lobby` at some position, bob says `missed` messages, then (after `pause`) ann
/// joins again from that position; returns the `joined` reply (the next message checked to
/// be no replay when it is not recovered).
async fn leave_miss_and_rejoin(chat: &Chat, missed: usize, pause: Duration) -> Value {
    let mut ann = client(chat, "ann").await;
    let mut bob = client(chat, "bob").await;
    join(&mut bob, "lobby", None).await;
    let last = position(&join(&mut ann, "lobby", None).await);
    send(&ann, &json!({"type": "leave", "room": "lobby"})).await;
    assert_eq!(recv(&mut ann).await["type"], "left");
    say_all(&mut bob, "lobby", (0..missed).map(|n| n.to_string())).await;
    tokio::time::sleep(pause).await;
    let joined = join(&mut ann, "lobby", Some(&last)).await;
    if joined["recovered"] == true {
        for n in 1..=missed as u64 {
            let message = next_message(&mut ann, "lobby").await;
            assert_eq!(message["offset"], last["offset"].as_u64().unwrap() + n);
        }
    }
    nothing_more(&mut ann).await;
    joined
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_the_history_size_or_older_than_its_ttl_is_not_recovered() {
    let chat = Chat::start(&[&FAST[..], &["--history-size", "50"]].concat());
    assert_eq!(
        leave_miss_and_rejoin(&chat, 50, Duration::ZERO).await["recovered"],
        true
    );
    assert_eq!(
        leave_miss_and_rejoin(&chat, 80, Duration::ZERO).await["recovered"],
        false
    );
    let metrics = scrape(&chat);
    assert_eq!(
        metrics[r#"tether_recoveries_failed_total{reason="too_many"}"#],
        1.0
    );
    assert_eq!(metrics["tether_recovered_messages_total"], 50.0);

    let chat = Chat::start(&[&FAST[..], &["--history-ttl", "1"]].concat());
    assert_eq!(
        leave_miss_and_rejoin(&chat, 3, Duration::ZERO).await["recovered"],
        true
    );
    let late = Duration::from_millis(1_500);
    assert_eq!(
        leave_miss_and_rejoin(&chat, 3, late).await["recovered"],
        false
    );
    let metrics = scrape(&chat);
    assert_eq!(
        metrics[r#"tether_recoveries_failed_total{reason="too_old"}"#],
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_size_zero_never_recovers_and_since_is_validated() {
    let chat = Chat::start(&[&FAST[..], &["--history-size", "0"]].concat());
    assert_eq!(
        leave_miss_and_rejoin(&chat, 0, Duration::ZERO).await["recovered"],
        false
    );
    assert_eq!(
        leave_miss_and_rejoin(&chat, 2, Duration::ZERO).await["recovered"],
        false
    );
    let metrics = scrape(&chat);
    assert_eq!(
        metrics[r#"tether_recoveries_failed_total{reason="disabled"}"#],
        2.0
    );
    assert_eq!(metrics["tether_recoveries_succeeded_total"], 0.0);

    let mut ann = client(&chat, "ann").await;
    for since in [
        json!(null),
        json!({"epoch": "e"}),
        json!({"epoch": "e", "offset": -1}),
    ] {
        let request = json!({"type": "join", "room": "lobby", "id": "s", "since": since});
        send(&ann, &request).await;
        let message = check_error(&recv_text(&mut ann).await, 4000, Some("s"));
        assert!(message.starts_with("Field since must be"), "{message}");
    }
    // Already in the room: the reply says where it is, and nothing is replayed.
    let joined = join(&mut ann, "lobby", None).await;
    let again = join(&mut ann, "lobby", Some(&position(&joined))).await;
    assert_eq!(again["recovered"], false, "{again}");
    nothing_more(&mut ann).await;
}
