//! `tether serve`, the demo chat, as `docs/demo-chat.md` specifies it: the real binary on
//! 127.0.0.1 port 0 (its URL read from stdout), driven over loopback with `tether::client`
//! and plain HTTP. Every row of the protocol and error tables by exact code, message shape
//! and `request_id` (string and numeric ids), two clients chatting, rooms created and closed
//! by their owner and by others, the rate limit (4005, then 1008), 1009, `--tokens` (401,
//! 403, welcome, TTL -> 4003), `/healthz`, `/metrics`, the page, and SIGTERM (1001, exit 0).
//! Each test starts its own server, killed on drop; every wait is bounded. The process, HTTP
//! and client helpers live in `serve_chat/harness.rs`.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "serve_chat/harness.rs"]
mod harness;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether::client::ClientBuilder;
use tether::{CloseCode, Message};

use harness::{
    Chat, check_error, connect, expect_error, http, is_rfc3339, join_chat, of_type, ping, recv,
    recv_close, recv_n, recv_text, scrape, send, wait_for_metric,
};

/// The DOM ids of the page contract.
const DOM_IDS: [&str; 16] = [
    "status",
    "name",
    "room",
    "join",
    "rooms",
    "text",
    "send",
    "messages",
    "notices",
    "err-malformed",
    "err-unknown-type",
    "err-missing-room",
    "err-not-joined",
    "err-oversized",
    "err-flood",
    "reconnect",
];

#[tokio::test]
async fn welcome_then_every_protocol_row_echoes_its_id() {
    let chat = Chat::start(&[]);
    let mut ann = connect(&chat.url("?name=ann")).await;
    assert_eq!(
        recv_text(&mut ann).await,
        r#"{"type":"welcome","name":"ann","rooms":["lobby","random"]}"#
    );
    let (_anon, anon) = join_chat(&chat.url("")).await;
    assert!(
        anon.len() == 9
            && anon.starts_with("anon-")
            && anon[5..].bytes().all(|b| b.is_ascii_hexdigit()),
        "{anon}"
    );

    ping(&mut ann, json!("p-1")).await;
    ping(&mut ann, json!(42)).await;
    send(&ann, &json!({"type": "join", "room": "lobby", "id": "j1"})).await;
    let joined = recv(&mut ann).await;
    let epoch = joined["epoch"].as_str().unwrap().to_owned();
    assert!(
        epoch.len() == 16 && epoch.bytes().all(|b| b.is_ascii_hexdigit()),
        "{joined}"
    );
    assert_eq!(
        joined,
        json!({"type": "joined", "id": "j1", "room": "lobby", "members": 1, "offset": 0, "epoch": epoch})
    );
    send(
        &ann,
        &json!({"type": "say", "room": "lobby", "text": "hi", "id": 7}),
    )
    .await;
    let got = recv_n(&mut ann, 2).await;
    assert_eq!(
        of_type(&got, "said"),
        &json!({"type": "said", "id": 7, "room": "lobby"})
    );
    let message = of_type(&got, "message");
    assert_eq!(
        (&message["room"], &message["from"], &message["text"]),
        (&json!("lobby"), &json!("ann"), &json!("hi"))
    );
    assert!(is_rfc3339(message["ts"].as_str().unwrap()), "{message}");
    assert_eq!(
        (&message["offset"], &message["epoch"]),
        (&json!(1), &json!(epoch)),
        "{message}"
    );
    assert!(
        message.get("id").is_none(),
        "broadcasts carry no id: {message}"
    );

    send(&ann, &json!({"type": "create", "room": "den", "id": "c1"})).await;
    assert_eq!(
        recv(&mut ann).await,
        json!({"type": "created", "id": "c1", "room": "den"})
    );
    send(&ann, &json!({"type": "rooms", "id": 3})).await;
    assert_eq!(
        recv(&mut ann).await,
        json!({"type": "rooms", "id": 3, "rooms": [
            {"name": "lobby", "members": 1},
            {"name": "random", "members": 0},
            {"name": "den", "members": 0},
        ]})
    );
    send(&ann, &json!({"type": "leave", "room": "lobby", "id": "l1"})).await;
    assert_eq!(
        recv(&mut ann).await,
        json!({"type": "left", "id": "l1", "room": "lobby"})
    );
    send(&ann, &json!({"type": "close", "room": "den", "id": 9})).await;
    assert_eq!(
        recv(&mut ann).await,
        json!({"type": "closed", "id": 9, "room": "den"})
    );
    // Without an id, replies have none.
    send(&ann, &json!({"type": "ping"})).await;
    assert_eq!(recv_text(&mut ann).await, r#"{"type":"pong"}"#);
    // A new connection sees the rooms that exist now.
    let mut late = connect(&chat.url("?name=late")).await;
    assert_eq!(recv(&mut late).await["rooms"], json!(["lobby", "random"]));
    // Names are 1-32 characters: anything else is refused before the upgrade.
    let long = "x".repeat(33);
    let builder = ClientBuilder::new().no_proxy();
    let error = builder
        .connect(&chat.url(&format!("?name={long}")))
        .await
        .unwrap_err();
    assert_eq!(error.bad_status().unwrap().status, 400);
}

#[tokio::test]
async fn every_error_row_has_its_code_and_the_connection_stays_open() {
    // More requests than the default burst of 20: a rate limit out of the way.
    let chat = Chat::start(&["--rate", "1000", "--burst", "1000"]);
    let (mut c, _) = join_chat(&chat.url("?name=eve")).await;
    // 4000: malformed JSON, not an object, missing or wrong fields, unknown type.
    let text = expect_error(&mut c, "{not json", 4000, None).await;
    assert!(text.starts_with("Malformed JSON: "), "{text}");
    expect_error(&mut c, "[1,2,3]", 4000, None).await;
    let text = expect_error(&mut c, r#"{"id":"m1"}"#, 4000, Some("m1")).await;
    assert_eq!(text, "Missing field: type");
    let text = expect_error(&mut c, r#"{"type":"join","id":"m2"}"#, 4000, Some("m2")).await;
    assert_eq!(text, "Missing field: room");
    let text = expect_error(
        &mut c,
        r#"{"type":"say","room":5,"text":"x","id":3}"#,
        4000,
        Some("3"),
    )
    .await;
    assert_eq!(text, "Field room must be a string");
    let text = expect_error(
        &mut c,
        r#"{"type":"say","room":"lobby","text":[],"id":4}"#,
        4000,
        Some("4"),
    )
    .await;
    assert_eq!(text, "Field text must be a string");
    let text = expect_error(&mut c, r#"{"type":"dance","id":"u1"}"#, 4000, Some("u1")).await;
    assert_eq!(text, r#"Unknown type: "dance""#);
    expect_error(&mut c, r#"{"type":"dance","id":17}"#, 4000, Some("17")).await;
    let text = expect_error(&mut c, r#"{"type":"ping","id":{"a":1}}"#, 4000, None).await;
    assert_eq!(text, "Field id must be a string or a number");
    c.send(Message::binary(b"{\"type\":\"ping\"}".to_vec()))
        .await
        .unwrap();
    check_error(&recv_text(&mut c).await, 4000, None);
    // 4001: unknown room for join, say, close (and leave).
    for (kind, id) in [
        ("join", "n1"),
        ("say", "n2"),
        ("close", "n3"),
        ("leave", "n4"),
    ] {
        let request = json!({"type": kind, "room": "no-such-room", "text": "x", "id": id});
        let text = expect_error(&mut c, &request.to_string(), 4001, Some(id)).await;
        assert_eq!(text, r#"Room not found: "no-such-room""#);
    }
    expect_error(
        &mut c,
        r#"{"type":"join","room":"nope","id":55}"#,
        4001,
        Some("55"),
    )
    .await;
    // 4002: saying in (or leaving) a room not joined; creating a room that exists.
    let text = expect_error(
        &mut c,
        r#"{"type":"say","room":"random","text":"x","id":"i1"}"#,
        4002,
        Some("i1"),
    )
    .await;
    assert_eq!(text, r#"Not in room "random": join it first"#);
    expect_error(
        &mut c,
        r#"{"type":"leave","room":"random","id":"i2"}"#,
        4002,
        Some("i2"),
    )
    .await;
    expect_error(
        &mut c,
        r#"{"type":"create","room":"lobby","id":"i3"}"#,
        4002,
        Some("i3"),
    )
    .await;
    send(&c, &json!({"type": "create", "room": "mine", "id": 1})).await;
    assert_eq!(recv(&mut c).await["type"], "created");
    let text = expect_error(
        &mut c,
        r#"{"type":"create","room":"mine","id":2}"#,
        4002,
        Some("2"),
    )
    .await;
    assert_eq!(text, r#"Room "mine" exists already"#);
    // 4000 for a room name that is not 1-32 characters.
    let long = json!({"type": "create", "room": "r".repeat(33), "id": "x"});
    expect_error(&mut c, &long.to_string(), 4000, Some("x")).await;
    // 4004: closing lobby or random.
    for room in ["lobby", "random"] {
        let request = json!({"type": "close", "room": room, "id": room});
        let text = expect_error(&mut c, &request.to_string(), 4004, Some(room)).await;
        assert_eq!(text, format!("Room {room:?} cannot be closed"));
    }
    // Still open and answering.
    ping(&mut c, json!("still")).await;
}

#[tokio::test]
async fn two_clients_chat_in_a_room_and_only_its_members_hear() {
    let chat = Chat::start(&[]);
    let (mut ann, _) = join_chat(&chat.url("?name=ann")).await;
    let (mut bob, _) = join_chat(&chat.url("?name=bob")).await;
    send(&ann, &json!({"type": "join", "room": "lobby", "id": 1})).await;
    assert_eq!(recv(&mut ann).await["members"], 1);
    send(&bob, &json!({"type": "join", "room": "lobby", "id": 1})).await;
    assert_eq!(recv(&mut bob).await["members"], 2);
    send(&ann, &json!({"type": "join", "room": "random", "id": 2})).await;
    assert_eq!(recv(&mut ann).await["room"], "random");

    send(
        &ann,
        &json!({"type": "say", "room": "lobby", "text": "hello bob", "id": "s1"}),
    )
    .await;
    let to_ann = recv_n(&mut ann, 2).await;
    assert_eq!(of_type(&to_ann, "said")["id"], "s1");
    let at_bob = recv(&mut bob).await;
    assert_eq!(at_bob, *of_type(&to_ann, "message"));
    assert_eq!(
        (
            &at_bob["type"],
            &at_bob["room"],
            &at_bob["from"],
            &at_bob["text"]
        ),
        (
            &json!("message"),
            &json!("lobby"),
            &json!("ann"),
            &json!("hello bob")
        )
    );
    send(
        &bob,
        &json!({"type": "say", "room": "lobby", "text": "hi \"ann\" <3", "id": "s2"}),
    )
    .await;
    assert_eq!(recv(&mut ann).await["text"], "hi \"ann\" <3");
    assert_eq!(of_type(&recv_n(&mut bob, 2).await, "said")["id"], "s2");
    // A room bob is not in: ann hears herself, bob hears nothing.
    send(
        &ann,
        &json!({"type": "say", "room": "random", "text": "alone"}),
    )
    .await;
    assert_eq!(
        of_type(&recv_n(&mut ann, 2).await, "message")["text"],
        "alone"
    );
    // After leaving, bob hears nothing from lobby and may not say there.
    send(
        &bob,
        &json!({"type": "leave", "room": "lobby", "id": "bye"}),
    )
    .await;
    assert_eq!(recv(&mut bob).await["type"], "left");
    send(
        &ann,
        &json!({"type": "say", "room": "lobby", "text": "gone?"}),
    )
    .await;
    recv_n(&mut ann, 2).await;
    expect_error(
        &mut bob,
        r#"{"type":"say","room":"lobby","text":"x","id":"late"}"#,
        4002,
        Some("late"),
    )
    .await;
    // The first thing bob receives now is his own pong: nothing from lobby leaked through.
    ping(&mut bob, json!("quiet")).await;
}

#[tokio::test]
async fn only_the_creator_closes_a_room_and_its_members_are_told() {
    let chat = Chat::start(&[]);
    let (mut ann, _) = join_chat(&chat.url("?name=ann")).await;
    let (mut bob, _) = join_chat(&chat.url("?name=bob")).await;
    send(&ann, &json!({"type": "create", "room": "den", "id": "c"})).await;
    assert_eq!(recv(&mut ann).await["type"], "created");
    for client in [&mut ann, &mut bob] {
        send(client, &json!({"type": "join", "room": "den"})).await;
        assert_eq!(recv(client).await["type"], "joined");
    }
    let text = expect_error(
        &mut bob,
        r#"{"type":"close","room":"den","id":"b1"}"#,
        4004,
        Some("b1"),
    )
    .await;
    assert_eq!(text, r#"Only the creator of "den" may close it"#);

    send(&ann, &json!({"type": "close", "room": "den", "id": 5})).await;
    let notice = json!({"type": "room_closed", "room": "den", "by": "ann"});
    assert_eq!(recv(&mut bob).await, notice);
    let to_ann = recv_n(&mut ann, 2).await;
    assert_eq!(*of_type(&to_ann, "room_closed"), notice);
    assert_eq!(
        *of_type(&to_ann, "closed"),
        json!({"type": "closed", "id": 5, "room": "den"})
    );
    expect_error(
        &mut bob,
        r#"{"type":"say","room":"den","text":"x","id":"d"}"#,
        4001,
        Some("d"),
    )
    .await;
    send(&bob, &json!({"type": "rooms", "id": 1})).await;
    assert_eq!(recv(&mut bob).await["rooms"].as_array().unwrap().len(), 2);

    // The name is free again: bob creates it, both join, and they chat there.
    send(&bob, &json!({"type": "create", "room": "den", "id": 2})).await;
    assert_eq!(recv(&mut bob).await["type"], "created");
    for client in [&mut ann, &mut bob] {
        send(client, &json!({"type": "join", "room": "den"})).await;
        assert_eq!(recv(client).await["type"], "joined");
    }
    send(
        &ann,
        &json!({"type": "say", "room": "den", "text": "again"}),
    )
    .await;
    assert_eq!(recv(&mut bob).await["text"], "again");
    recv_n(&mut ann, 2).await;
    let text = expect_error(
        &mut ann,
        r#"{"type":"close","room":"den","id":"a"}"#,
        4004,
        Some("a"),
    )
    .await;
    assert_eq!(text, r#"Only the creator of "den" may close it"#);
}

#[tokio::test]
async fn the_rate_limit_answers_4005_with_a_retry_hint_then_closes_1008() {
    // A token every 200 ms: wide enough that a slow machine does not refill one between
    // two messages sent back to back.
    let chat = Chat::start(&["--rate", "5", "--burst", "2"]);
    let (mut c, _) = join_chat(&chat.url("?name=fast")).await;
    for id in [1, 2] {
        send(&c, &json!({"type": "ping", "id": id})).await;
    }
    send(&c, &json!({"type": "ping", "id": "over"})).await;
    send(&c, &json!({"type": "ping", "id": 77})).await;
    let got: Vec<String> = vec![
        recv_text(&mut c).await,
        recv_text(&mut c).await,
        recv_text(&mut c).await,
        recv_text(&mut c).await,
    ];
    assert_eq!(got[0], r#"{"type":"pong","id":1}"#);
    assert_eq!(got[1], r#"{"type":"pong","id":2}"#);
    let mut rejected = 0;
    for (raw, id) in [(&got[2], "over"), (&got[3], "77")] {
        assert_eq!(check_error(raw, 4005, Some(id)), "Rate limit exceeded");
        let value: Value = serde_json::from_str(raw).unwrap();
        let wait = value["data"]["retry_after_ms"].as_u64().unwrap();
        assert!((1..=200).contains(&wait), "{raw}");
        rejected += 1;
    }
    // After the hint, a message goes through again.
    tokio::time::sleep(Duration::from_millis(250)).await;
    ping(&mut c, json!("later")).await;

    // A flood: every rejection is answered until the 50th within 10 s, which closes 1008.
    for id in 0..100 {
        if c.send(Message::text(json!({"type": "ping", "id": id}).to_string()))
            .await
            .is_err()
        {
            break;
        }
    }
    let (code, reason, before) = recv_close(&mut c).await;
    assert_eq!((code, reason.as_str()), (1008, "rate limit exceeded"));
    for raw in &before {
        if raw.contains(r#""code":4005"#) {
            rejected += 1;
        } else {
            assert!(raw.starts_with(r#"{"type":"pong""#), "{raw}");
        }
    }
    assert_eq!(rejected, 49, "{before:?}");
    let metrics = scrape(&chat);
    assert_eq!(metrics["tether_error_messages_total{code=\"4005\"}"], 49.0);
    wait_for_metric(
        &chat,
        "tether_closes_total{code=\"1008\",side=\"server\"}",
        1.0,
    );
}

#[tokio::test]
async fn messages_over_64_kib_close_1009() {
    let chat = Chat::start(&[]);
    let (mut c, _) = join_chat(&chat.url("?name=big")).await;
    send(&c, &json!({"type": "join", "room": "lobby"})).await;
    recv(&mut c).await;
    // Exactly 64 KiB is allowed.
    let envelope = json!({"type": "say", "room": "lobby", "text": "", "id": 1}).to_string();
    let text = "x".repeat(64 * 1024 - envelope.len());
    let exact = json!({"type": "say", "room": "lobby", "text": text, "id": 1}).to_string();
    assert_eq!(exact.len(), 64 * 1024);
    c.send(Message::text(exact)).await.unwrap();
    let got = recv_n(&mut c, 2).await;
    assert_eq!(of_type(&got, "said")["id"], 1);
    // One byte more closes the connection.
    let over = "y".repeat(64 * 1024 + 1);
    c.send(Message::text(over)).await.unwrap();
    let (code, _, before) = recv_close(&mut c).await;
    assert_eq!(code, 1009, "{before:?}");
    assert!(before.is_empty(), "{before:?}");
    wait_for_metric(
        &chat,
        "tether_closes_total{code=\"1009\",side=\"server\"}",
        1.0,
    );
}

#[tokio::test]
async fn tokens_decide_who_connects_under_which_name_and_for_how_long() {
    let dir = std::env::temp_dir().join(format!("tether-serve-tokens-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("tokens.txt");
    std::fs::write(&file, "# test tokens\nann:tok-ann\n\nbob:tok-bob:1\n").unwrap();
    let chat = Chat::start(&["--tokens", file.to_str().unwrap()]);
    let builder = ClientBuilder::new().no_proxy();

    let error = builder.connect(&chat.url("?name=ann")).await.unwrap_err();
    let status = error.bad_status().unwrap();
    assert_eq!(status.status, 401);
    assert!(
        status.headers.iter().any(
            |(name, value)| name.eq_ignore_ascii_case("www-authenticate") && value == "Bearer"
        ),
        "{:?}",
        status.headers
    );
    check_error(std::str::from_utf8(&status.body).unwrap(), 4003, None);
    let error = builder.connect(&chat.url("?token=nope")).await.unwrap_err();
    let status = error.bad_status().unwrap();
    assert_eq!(status.status, 403);
    check_error(std::str::from_utf8(&status.body).unwrap(), 4004, None);

    // The token decides the name, whatever ?name= says; the header works as well.
    let (_ann, name) = join_chat(&chat.url("?token=tok-ann&name=mallory")).await;
    assert_eq!(name, "ann");
    let (with_header, _) = ClientBuilder::new()
        .no_proxy()
        .header("Authorization", "Bearer tok-ann")
        .connect(&chat.url(""))
        .await
        .unwrap();
    let mut with_header = with_header;
    assert_eq!(recv(&mut with_header).await["name"], "ann");

    // bob's token lives 1 s: a 4003 error message, then close 4003.
    let opened = Instant::now();
    let (mut bob, name) = join_chat(&chat.url("?token=tok-bob")).await;
    assert_eq!(name, "bob");
    ping(&mut bob, json!(1)).await;
    let raw = tokio::time::timeout(Duration::from_secs(3), recv_text(&mut bob))
        .await
        .unwrap();
    assert_eq!(check_error(&raw, 4003, None), "Token expired");
    let elapsed = opened.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    let (code, reason, before) = recv_close(&mut bob).await;
    assert_eq!(
        (code, reason.as_str()),
        (4003, "Token expired"),
        "{before:?}"
    );
    wait_for_metric(
        &chat,
        "tether_closes_total{code=\"4003\",side=\"server\"}",
        1.0,
    );
    assert_eq!(
        scrape(&chat)["tether_error_messages_total{code=\"4003\"}"],
        1.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn metrics_move_with_traffic_and_health_and_page_are_served() {
    let chat = Chat::start(&[]);
    let health = chat.get("/healthz");
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status":"ok"}"#)
    );
    assert_eq!(health.header("content-type"), Some("application/json"));

    // The gauge counts every connection, plain HTTP ones included, until its task ends: the
    // health check's may still be finishing.
    wait_for_metric(&chat, "tether_connections_open", 0.0);
    let before = scrape(&chat);
    assert_eq!(before["tether_messages_received_total"], 0.0);
    assert_eq!(before["tether_broadcast_fanout_seconds_count"], 0.0);

    let (mut c, _) = join_chat(&chat.url("?name=m")).await;
    send(&c, &json!({"type": "join", "room": "lobby"})).await;
    recv(&mut c).await;
    send(
        &c,
        &json!({"type": "say", "room": "lobby", "text": "count me"}),
    )
    .await;
    recv_n(&mut c, 2).await;
    expect_error(&mut c, "oops", 4000, None).await;
    wait_for_metric(&chat, "tether_connections_open", 1.0);
    let after = scrape(&chat);
    assert_eq!(after["tether_messages_received_total"], 3.0);
    // welcome, joined, said, message, error
    assert_eq!(after["tether_messages_sent_total"], 5.0);
    assert!(after["tether_bytes_received_total"] > 40.0);
    assert!(after["tether_bytes_sent_total"] > 200.0);
    assert_eq!(after["tether_error_messages_total{code=\"4000\"}"], 1.0);
    assert_eq!(after["tether_error_messages_total{code=\"4001\"}"], 0.0);
    assert_eq!(after["tether_broadcast_fanout_seconds_count"], 1.0);
    assert_eq!(
        after["tether_broadcast_fanout_seconds_bucket{le=\"+Inf\"}"],
        1.0
    );
    assert_eq!(
        after["tether_broadcast_fanout_seconds_bucket{le=\"0.5\"}"],
        1.0
    );
    assert!(after.contains_key("tether_broadcast_fanout_seconds_sum"));
    assert_eq!(after["tether_slow_consumer_drops_total"], 0.0);
    assert_eq!(after["tether_slow_consumer_disconnects_total"], 0.0);

    c.close(CloseCode::NORMAL, "bye").await.unwrap();
    wait_for_metric(
        &chat,
        "tether_closes_total{code=\"1000\",side=\"client\"}",
        1.0,
    );
    wait_for_metric(&chat, "tether_connections_open", 0.0);

    let page = chat.get("/");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for id in DOM_IDS {
        assert!(page.body.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    assert!(page.body.contains("data-state=\"connecting\""));
    for asset in ["src=\"/chat.js\"", "href=\"/chat.css\""] {
        assert!(page.body.contains(asset), "{asset}");
    }
    assert!(!page.body.contains("http://") && !page.body.contains("https://"));
    let js = chat.get("/chat.js");
    assert_eq!(
        js.header("content-type"),
        Some("text/javascript; charset=utf-8")
    );
    assert!(js.body.contains("location.host + \"/ws\""));
    assert!(!js.body.contains("http://") && !js.body.contains("https://"));
    let css = chat.get("/chat.css");
    assert_eq!(css.header("content-type"), Some("text/css; charset=utf-8"));
    assert_eq!(chat.get("/nothing-here").status, 404);
    let post = http(
        chat.addr,
        "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(post.status, 405);
}

#[tokio::test]
async fn sigterm_closes_every_client_with_1001_and_exits_0() {
    let mut chat = Chat::start(&[]);
    let (mut ann, _) = join_chat(&chat.url("?name=ann")).await;
    let (mut bob, _) = join_chat(&chat.url("?name=bob")).await;
    send(&bob, &json!({"type": "join", "room": "lobby"})).await;
    recv(&mut bob).await;
    chat.terminate();
    for client in [&mut ann, &mut bob] {
        let (code, reason, _) = recv_close(client).await;
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    }
    let status = chat.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", chat.log());
}
