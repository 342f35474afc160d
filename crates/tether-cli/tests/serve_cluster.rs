//! Several `tether serve` nodes sharing their rooms through a real Redis: the real binary
//! (`--listen 127.0.0.1:0`, `--backplane URL`, `--node-id ID`) against a `redis-server` each
//! test starts on a free loopback port, or against a real 3-node Redis Cluster, driven with
//! `tether::client` and plain HTTP.
//!
//! - Two nodes, one Redis: clients on every node see every message exactly once, in each
//!   sender's order.
//! - Three nodes, a Redis Cluster: rooms whose channels live on different shards all work.
//! - Redis killed mid-run: local rooms keep working, `/healthz` says degraded, `/metrics`
//!   counts errors; Redis back on the same port: cross-node delivery resumes by itself and
//!   the broadcasts said during the outage arrive.
//! - `--backplane-optional` with Redis down: the node starts degraded and recovers when Redis
//!   starts; without the flag the command exits non-zero with a one-line error.
//!
//! The Redis servers come from `crates/tether/tests/support/redis.rs`, shared with the
//! backplane's own tests. Redis pub/sub delivers only to the subscribers of the moment, so
//! before counting, each test waits until every client has seen a round of `sync-` messages
//! from every other (a node subscribes in the background once its first member joins). Processes
//! are killed on drop; every wait is bounded.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

#[path = "serve_chat/harness.rs"]
#[allow(dead_code)]
mod harness;
#[path = "../../tether/tests/support/redis.rs"]
mod redis_support;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether::WebSocket;

use harness::{Chat, WAIT, join_chat, recv_close, scrape, send};
use redis_support::{RedisCluster, RedisServer, free_port};

/// How long a node may take to notice that Redis is gone, or back.
const RECOVERY: Duration = Duration::from_secs(15);

/// How long a node may take to count the other nodes (the backplane does it with each health
/// check: one a second by default).
const NODES_COUNTED: Duration = Duration::from_millis(1500);

/// A node of the chat on `backplane`, rate limit out of the way.
fn node(backplane: &str, id: &str, extra: &[&str]) -> Chat {
    let mut args = vec![
        "--backplane",
        backplane,
        "--node-id",
        id,
        "--rate",
        "10000",
        "--burst",
        "10000",
    ];
    args.extend_from_slice(extra);
    Chat::start(&args)
}

/// A chat client and everything it received that was not a direct reply it waited for.
struct User {
    name: String,
    client: WebSocket,
    inbox: Vec<Value>,
}

impl User {
    async fn open(chat: &Chat, name: &str) -> Self {
        let (client, given) = join_chat(&chat.url(&format!("?name={name}"))).await;
        assert_eq!(given, name);
        Self {
            name: name.to_owned(),
            client,
            inbox: Vec::new(),
        }
    }

    /// Joins `room` and waits for the reply.
    async fn join(&mut self, room: &str) {
        self.request(json!({"type": "join", "room": room, "id": room}), "joined")
            .await;
    }

    /// Creates `room` on this user's node and waits for the reply.
    async fn create(&mut self, room: &str) {
        self.request(
            json!({"type": "create", "room": room, "id": room}),
            "created",
        )
        .await;
    }

    async fn request(&mut self, request: Value, reply: &str) {
        send(&self.client, &request).await;
        let id = &request["id"];
        self.wait_for(
            |inbox| {
                inbox
                    .iter()
                    .any(|message| message["type"] == reply && &message["id"] == id)
            },
            WAIT,
            &format!("{reply} {id}"),
        )
        .await;
    }

    /// Says `text` in `room` (the `said` reply goes to the inbox like the rest).
    async fn say(&self, room: &str, text: &str) {
        send(
            &self.client,
            &json!({"type": "say", "room": room, "text": text}),
        )
        .await;
    }

    /// Reads into the inbox until `done` holds; panics after `within`.
    async fn wait_for(&mut self, done: impl Fn(&[Value]) -> bool, within: Duration, what: &str) {
        if !self.seen_within(done, within).await {
            panic!(
                "{}: no {what} within {within:?}; inbox:\n{:#?}",
                self.name, self.inbox
            );
        }
    }

    /// Whether `done` holds once what arrives within `within` is read.
    async fn seen_within(&mut self, done: impl Fn(&[Value]) -> bool, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while !done(&self.inbox) {
            if !self.read_until(deadline).await {
                return false;
            }
        }
        true
    }

    /// Reads whatever arrives until `quiet` passes without a message.
    async fn drain(&mut self, quiet: Duration) {
        while self.read_until(tokio::time::Instant::now() + quiet).await {}
    }

    /// Reads one message into the inbox; false if none came by `deadline`.
    async fn read_until(&mut self, deadline: tokio::time::Instant) -> bool {
        match tokio::time::timeout_at(deadline, self.client.recv()).await {
            Ok(Ok(Some(message))) => {
                let text = message.as_text().expect("a text message");
                self.inbox.push(serde_json::from_str(text).unwrap());
                true
            }
            Ok(other) => panic!("{}: the connection ended: {other:?}", self.name),
            Err(_) => false,
        }
    }
}

/// The numbers of `sender`'s messages in `room` whose text is `PREFIX-SENDER-N`, in the order
/// they arrived.
fn numbers(inbox: &[Value], room: &str, sender: &str, prefix: &str) -> Vec<usize> {
    let start = format!("{prefix}-{sender}-");
    inbox
        .iter()
        .filter(|message| {
            message["type"] == "message" && message["room"] == room && message["from"] == sender
        })
        .filter_map(|message| message["text"].as_str()?.strip_prefix(&start)?.parse().ok())
        .collect()
}

/// Waits until every user has seen a `sync-` message from every user in each room: the
/// subscriptions of every node are live. Retries with a new round while they are not.
async fn sync(users: &mut [User], rooms: &[&str]) {
    let names: Vec<String> = users.iter().map(|user| user.name.clone()).collect();
    for round in 0..20 {
        let prefix = format!("sync{round}");
        for user in users.iter() {
            for room in rooms {
                user.say(room, &format!("{prefix}-{}-0", user.name)).await;
            }
        }
        let mut everyone = true;
        for user in users.iter_mut() {
            let complete = |inbox: &[Value]| {
                rooms.iter().all(|room| {
                    names
                        .iter()
                        .all(|sender| !numbers(inbox, room, sender, &prefix).is_empty())
                })
            };
            everyone &= user.seen_within(complete, Duration::from_millis(500)).await;
        }
        if everyone {
            return;
        }
    }
    panic!("the nodes never saw each other's messages");
}

/// Every user got `count` messages `PREFIX-SENDER-0..count` from each sender in each room:
/// each exactly once, in the order said (checked after a quiet moment, so a late duplicate
/// would be seen).
async fn assert_delivered(
    users: &mut [User],
    rooms: &[&str],
    senders: &[&str],
    prefix: &str,
    count: usize,
    within: Duration,
) {
    let expected: Vec<usize> = (0..count).collect();
    for user in users.iter_mut() {
        let complete = |inbox: &[Value]| {
            rooms.iter().all(|room| {
                senders
                    .iter()
                    .all(|sender| numbers(inbox, room, sender, prefix).len() >= count)
            })
        };
        user.wait_for(complete, within, &format!("{prefix} messages"))
            .await;
    }
    for user in users.iter_mut() {
        user.drain(Duration::from_millis(300)).await;
        for room in rooms {
            for sender in senders {
                assert_eq!(
                    numbers(&user.inbox, room, sender, prefix),
                    expected,
                    "{} got these of {sender}'s {prefix} messages in {room}",
                    user.name
                );
            }
        }
    }
}

/// Says `PREFIX-NAME-0..count` from every user in every room, interleaved.
async fn say_all(users: &[User], rooms: &[&str], prefix: &str, count: usize) {
    for n in 0..count {
        for user in users {
            for room in rooms {
                user.say(room, &format!("{prefix}-{}-{n}", user.name)).await;
            }
        }
    }
}

/// Waits until `/healthz` answers `status` with `body`.
fn wait_health(chat: &Chat, status: u16, body: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let reply = chat.get("/healthz");
        if reply.status == status {
            assert_eq!(reply.body, body);
            assert_eq!(reply.header("content-type"), Some("application/json"));
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still {} {} after {within:?}; log:\n{}",
            reply.status,
            reply.body,
            chat.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const OK: &str = r#"{"status":"ok"}"#;
const DEGRADED: &str = r#"{"status":"degraded","backplane":"unreachable"}"#;

/// The `tether_backplane_*` series of a node (all seven must be there).
fn backplane_metrics(chat: &Chat) -> std::collections::HashMap<String, f64> {
    let all = scrape(chat);
    let series: std::collections::HashMap<String, f64> = all
        .into_iter()
        .filter(|(name, _)| name.starts_with("tether_backplane_"))
        .collect();
    for name in [
        "healthy",
        "errors_total",
        "reconnects_total",
        "published_total",
        "received_total",
        "buffered",
        "buffer_dropped_total",
    ] {
        assert!(
            series.contains_key(&format!("tether_backplane_{name}")),
            "tether_backplane_{name} missing: {series:?}"
        );
    }
    series
}

/// The sharded channels each node of the cluster serves subscribers of.
fn shard_channels(cluster: &RedisCluster) -> Vec<Vec<String>> {
    cluster
        .nodes()
        .iter()
        .map(|node| {
            node.cli(&["PUBSUB", "SHARDCHANNELS"])
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .collect()
}

/// Waits until a line of the node's log (read from its stderr as it comes) has every `part`.
fn wait_log(chat: &Chat, parts: &[&str]) {
    let deadline = Instant::now() + WAIT;
    while !chat
        .log()
        .lines()
        .any(|line| parts.iter().all(|part| line.contains(part)))
    {
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?}:\n{}",
            chat.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn assert_no_panic(chats: &[&Chat]) {
    for chat in chats {
        let log = chat.log();
        assert!(!log.contains("panicked"), "a panic:\n{log}");
    }
}

#[tokio::test]
async fn two_nodes_deliver_every_message_once_in_each_senders_order() {
    let redis = RedisServer::start();
    let mut a = node(&redis.url(), "node-a", &[]);
    let b = node(&redis.url(), "node-b", &[]);
    for chat in [&a, &b] {
        wait_health(chat, 200, OK, WAIT);
    }
    let mut users = vec![
        User::open(&a, "ann").await,
        User::open(&a, "amy").await,
        User::open(&b, "bob").await,
        User::open(&b, "bea").await,
    ];
    for user in &mut users {
        user.join("lobby").await;
    }
    sync(&mut users, &["lobby"]).await;

    say_all(&users, &["lobby"], "m", 25).await;
    assert_delivered(
        &mut users,
        &["lobby"],
        &["ann", "amy", "bob", "bea"],
        "m",
        25,
        WAIT,
    )
    .await;
    // Nobody in `random` on either node: nothing of it travels.
    for chat in [&a, &b] {
        let metrics = backplane_metrics(chat);
        assert_eq!(metrics["tether_backplane_healthy"], 1.0);
        assert_eq!(metrics["tether_backplane_errors_total"], 0.0);
        assert!(
            metrics["tether_backplane_published_total"] >= 50.0,
            "{metrics:?}"
        );
        assert!(
            metrics["tether_backplane_received_total"] >= 50.0,
            "{metrics:?}"
        );
        assert_eq!(metrics["tether_backplane_buffered"], 0.0);
    }
    wait_log(&a, &["INFO", "backplane connected", "node-a"]);
    assert_no_panic(&[&a, &b]);
    // A node with a backplane stops as one without: SIGTERM, 1001 to its clients, status 0.
    a.terminate();
    for user in &mut users[..2] {
        let (code, _, _) = recv_close(&mut user.client).await;
        assert_eq!(code, 1001);
    }
    let status = a.wait_exit();
    assert_eq!(status.code(), Some(0), "log:\n{}", a.log());
}

#[tokio::test]
async fn three_nodes_on_a_redis_cluster_share_rooms_on_every_shard() {
    let cluster = RedisCluster::start(3);
    let url = cluster.url();
    let chats: Vec<Chat> = (0..3)
        .map(|i| node(&url, &format!("node-{i}"), &[]))
        .collect();
    let mut users = Vec::new();
    for (i, chat) in chats.iter().enumerate() {
        users.push(User::open(chat, &format!("u{i}")).await);
    }
    // `lobby` and `random` exist on every node; a created room exists on its node, so each
    // node creates the same ones (their channel is their name: they are one room).
    let created: Vec<String> = (0..6).map(|i| format!("room-{i}")).collect();
    let mut rooms = vec!["lobby", "random"];
    rooms.extend(created.iter().map(String::as_str));
    for user in &mut users {
        for room in &created {
            user.create(room).await;
        }
        for room in &rooms {
            user.join(room).await;
        }
    }
    // The rooms' channels are spread over the three shards.
    let deadline = Instant::now() + WAIT;
    loop {
        let shards = shard_channels(&cluster);
        let all: BTreeSet<&String> = shards.iter().flatten().collect();
        if all.len() >= rooms.len() && shards.iter().all(|shard| !shard.is_empty()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the rooms' sharded channels: {shards:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sync(&mut users, &rooms).await;

    say_all(&users, &rooms, "m", 5).await;
    assert_delivered(&mut users, &rooms, &["u0", "u1", "u2"], "m", 5, WAIT).await;
    let primaries: BTreeSet<String> = cluster
        .nodes()
        .iter()
        .map(|node| {
            format!(
                "tether_backplane_shard_up{{shard=\"127.0.0.1:{}\"}}",
                node.port()
            )
        })
        .collect();
    for chat in &chats {
        let metrics = backplane_metrics(chat);
        assert_eq!(metrics["tether_backplane_healthy"], 1.0);
        assert_eq!(metrics["tether_backplane_errors_total"], 0.0);
        // Each primary is reported, and up.
        let shards: BTreeSet<String> = metrics
            .iter()
            .filter(|(name, _)| name.starts_with("tether_backplane_shard_up"))
            .map(|(name, up)| {
                assert_eq!(*up, 1.0, "{name}");
                name.clone()
            })
            .collect();
        assert_eq!(shards, primaries);
    }
    assert_no_panic(&chats.iter().collect::<Vec<_>>());
}

#[tokio::test]
async fn redis_lost_then_back_local_rooms_go_on_and_the_outage_broadcasts_arrive() {
    let mut redis = RedisServer::start();
    let a = node(&redis.url(), "node-a", &[]);
    let b = node(&redis.url(), "node-b", &[]);
    let mut users = vec![
        User::open(&a, "ann").await,
        User::open(&a, "amy").await,
        User::open(&b, "bob").await,
    ];
    for user in &mut users {
        user.join("lobby").await;
    }
    sync(&mut users, &["lobby"]).await;
    // Mid-run: each node has counted the nodes present (it does with every health check, each
    // second), which is how many it waits for before flushing what it buffered in the outage.
    tokio::time::sleep(NODES_COUNTED).await;

    redis.stop();
    for chat in [&a, &b] {
        wait_health(chat, 503, DEGRADED, RECOVERY);
    }
    // Each node's own rooms work as before.
    for n in 0..5 {
        users[0].say("lobby", &format!("out-ann-{n}")).await;
        users[2].say("lobby", &format!("out-bob-{n}")).await;
    }
    assert_delivered(&mut users[..2], &["lobby"], &["ann"], "out", 5, WAIT).await;
    assert_delivered(&mut users[2..], &["lobby"], &["bob"], "out", 5, WAIT).await;
    let metrics = backplane_metrics(&a);
    assert_eq!(metrics["tether_backplane_healthy"], 0.0);
    assert!(
        metrics["tether_backplane_errors_total"] >= 1.0,
        "{metrics:?}"
    );
    assert_eq!(metrics["tether_backplane_buffered"], 5.0, "{metrics:?}");
    assert_eq!(metrics["tether_backplane_buffer_dropped_total"], 0.0);

    redis.restart();
    for chat in [&a, &b] {
        wait_health(chat, 200, OK, RECOVERY);
    }
    // What was said during the outage reaches the other node, once and in order.
    assert_delivered(&mut users, &["lobby"], &["ann", "bob"], "out", 5, RECOVERY).await;
    // And new broadcasts cross as before.
    say_all(&users, &["lobby"], "after", 5).await;
    assert_delivered(
        &mut users,
        &["lobby"],
        &["ann", "amy", "bob"],
        "after",
        5,
        WAIT,
    )
    .await;
    for chat in [&a, &b] {
        let metrics = backplane_metrics(chat);
        assert_eq!(metrics["tether_backplane_healthy"], 1.0);
        assert!(
            metrics["tether_backplane_reconnects_total"] >= 1.0,
            "{metrics:?}"
        );
        assert_eq!(metrics["tether_backplane_buffered"], 0.0);
    }
    assert_no_panic(&[&a, &b]);
}

#[tokio::test]
async fn backplane_optional_starts_degraded_and_recovers_when_redis_starts() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let a = node(&url, "node-a", &["--backplane-optional"]);
    wait_health(&a, 503, DEGRADED, WAIT);
    wait_log(&a, &["WARN", "backplane unreachable", "node-a"]);
    let mut ann = User::open(&a, "ann").await;
    let mut amy = User::open(&a, "amy").await;
    ann.join("lobby").await;
    amy.join("lobby").await;
    ann.say("lobby", "local-ann-0").await;
    for user in [&mut ann, &mut amy] {
        user.wait_for(
            |inbox| numbers(inbox, "lobby", "ann", "local") == [0],
            WAIT,
            "the local message",
        )
        .await;
    }
    assert_eq!(backplane_metrics(&a)["tether_backplane_healthy"], 0.0);

    let mut redis = RedisServer::stopped_on(port);
    redis.restart();
    wait_health(&a, 200, OK, RECOVERY);
    let b = node(&url, "node-b", &[]);
    let mut users = vec![ann, amy, User::open(&b, "bob").await];
    users[2].join("lobby").await;
    sync(&mut users, &["lobby"]).await;
    say_all(&users, &["lobby"], "m", 5).await;
    assert_delivered(&mut users, &["lobby"], &["ann", "amy", "bob"], "m", 5, WAIT).await;
    assert_eq!(backplane_metrics(&a)["tether_backplane_healthy"], 1.0);
    assert_no_panic(&[&a, &b]);
}

#[test]
fn unreachable_backplane_without_the_flag_is_a_one_line_error() {
    let port = free_port();
    let run = |args: &[&str]| {
        let started = Instant::now();
        let output = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(15));
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let url = format!("redis://127.0.0.1:{port}");
    let (status, stdout, stderr) = run(&["--backplane", &url]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "", "nothing is served");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with(&format!(
            "tether: backplane: redis at 127.0.0.1:{port} is unreachable: "
        )),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("; --backplane-optional starts the node without it\n"),
        "{stderr}"
    );
    // Not a URL Redis understands: an error too, even with the flag.
    let (status, stdout, stderr) =
        run(&["--backplane", "http://127.0.0.1:1", "--backplane-optional"]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(stdout, "");
    assert!(
        stderr.starts_with("tether: backplane http://127.0.0.1:1: invalid redis url"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    // The backplane's options need a backplane.
    let (status, _, stderr) = run(&["--node-id", "x"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--backplane"), "{stderr}");
}
