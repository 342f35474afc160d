//! `client::Positions` over the reconnecting `Runner`, against a real server: a hub with
//! history behind a `FaultProxy`, speaking a tiny positions protocol. The client's connection
//! is reset while the server publishes 500 messages, and after the resume it has acted on
//! each exactly once, in order, then on the live ones; a room closed and created again while
//! the client is away (a new epoch), and a gap larger than the history, are resumes the
//! server cannot recover: the client is told so, resets the room, and goes on from the
//! room's position.
//!
//! The protocol, one text message each, fields separated by spaces:
//! - client: `join ROOM`, or `join ROOM EPOCH OFFSET` to resume from a position;
//! - server: `joined ROOM EPOCH OFFSET fresh|recovered|lost` (the room's position; `fresh`
//!   for a join without a position), then, when recovered, the missed messages;
//! - server: `message ROOM EPOCH OFFSET BODY` for each publication.

#![cfg(feature = "testing")]
#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use tether::Message;
use tether::client::{ClientBuilder, Event, Observed, Positions, Reconnect, Runner};
use tether::hub::{HistoryConfig, Hub, HubConfig, Position};
use tether::server::{Server, Socket, State};
use tether::testing::{DirectionFaults, FaultProxy, Faults};
use tokio::net::TcpListener;

const ROOM: &str = "lobby";

/// Fails the test instead of hanging it.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), future)
        .await
        .expect("the test took too long")
}

/// The server side of the positions protocol, on the hub of the app.
async fn rooms(mut socket: Socket, State(hub): State<Hub>) -> Result<(), tether::Error> {
    let (member, mut outbound) = hub.member_for(&socket.sender());
    let mut memberships = HashMap::new();
    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let Some(message) = incoming? else { return Ok(()) };
                let text = message.as_text().unwrap_or_default().to_owned();
                let fields: Vec<&str> = text.split(' ').collect();
                let (room, since) = match fields[..] {
                    ["join", room] => (room, None),
                    ["join", room, epoch, offset] => {
                        (room, Some(Position::new(epoch, offset.parse().unwrap())))
                    }
                    _ => panic!("not the protocol: {text}"),
                };
                let (membership, recovery) = hub.join_since(&member, room, since.as_ref()).await.unwrap();
                memberships.insert(room.to_owned(), membership);
                let verdict = match (&since, recovery.recovered()) {
                    (None, _) => "fresh",
                    (Some(_), true) => "recovered",
                    (Some(_), false) => "lost",
                };
                let at = &recovery.position;
                let joined = format!("joined {room} {} {} {verdict}", at.epoch, at.offset);
                socket.send(Message::text(joined)).await?;
                // The missed messages, before anything from the queue.
                for missed in recovery.into_missed() {
                    socket.send(missed).await?;
                }
            }
            Some(message) = outbound.recv() => socket.send(message).await?,
        }
    }
}

/// A hub keeping `history` messages per room with `ROOM` in it, served on a free loopback
/// port behind a fault proxy.
async fn serve(history: usize) -> (Hub, FaultProxy) {
    let config = HubConfig::default()
        .with_queue_capacity(10_000)
        .with_history(HistoryConfig::new(history, Duration::from_secs(300)));
    let hub = Hub::new(config);
    hub.set_stamp(|_: &Message, at: &Position| {
        Message::text(format!(
            "message {ROOM} {} {} say-{}",
            at.epoch, at.offset, at.offset
        ))
    });
    hub.create_room(ROOM, None).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let server = Server::with_state(hub.clone())
        .route("/rooms", rooms)
        .rate_limit(None)
        .build()
        .unwrap();
    tokio::spawn(server.serve_on(listener, std::future::pending()));
    let proxy = FaultProxy::bind("127.0.0.1:0".parse().unwrap(), upstream)
        .await
        .unwrap();
    (hub, proxy)
}

/// Publishes `count` messages in `ROOM` at once; the hub's stamp makes each
/// `message ROOM EPOCH N say-N`, N its offset.
fn publish(hub: &Hub, count: usize) {
    for _ in 0..count {
        hub.publish(ROOM, &Message::text("say")).unwrap();
    }
}

/// A message the client acted on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivered {
    epoch: String,
    offset: u64,
    body: String,
}

/// The runner-driven client of the protocol, with its positions and what it did.
struct Client {
    runner: Runner,
    positions: Positions,
    delivered: Vec<Delivered>,
    /// What `observe` said of each message, but `Next`.
    unusual: Vec<(u64, Observed)>,
    /// The position each connection resumed `ROOM` from.
    resumed_from: Vec<Option<Position>>,
    /// The verdict of each `joined` reply.
    verdicts: Vec<String>,
    /// The room's position in each `joined` reply.
    joined_at: Vec<Position>,
    closes: usize,
}

impl Client {
    fn new(proxy: &FaultProxy) -> Self {
        let quick = Reconnect::new()
            .initial_delay(Duration::from_millis(10))
            .max_delay(Duration::from_millis(50));
        let url = format!("ws://{}/rooms", proxy.local_addr());
        let mut positions = Positions::new();
        positions.track(ROOM);
        Self {
            runner: Runner::new(url, ClientBuilder::new().no_proxy(), quick),
            positions,
            delivered: Vec::new(),
            unusual: Vec::new(),
            resumed_from: Vec::new(),
            verdicts: Vec::new(),
            joined_at: Vec::new(),
            closes: 0,
        }
    }

    /// Handles the runner's events until `done` holds; fails with what the client did
    /// after 20 s.
    async fn until(&mut self, done: impl Fn(&Self) -> bool) {
        let waited = tokio::time::timeout(Duration::from_secs(20), async {
            while !done(self) {
                let event = self.runner.next().await.expect("the runner goes on");
                self.handle(event).await;
            }
        })
        .await;
        if waited.is_err() {
            let last = self.delivered.last();
            panic!(
                "timed out: {} delivered (last {last:?}), verdicts {:?}, resumed from {:?}, \
                 unusual {:?}, {} closes",
                self.delivered.len(),
                self.verdicts,
                self.resumed_from,
                self.unusual,
                self.closes
            );
        }
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Open { sender, .. } => {
                self.resumed_from.push(self.positions.since(ROOM).cloned());
                let resumed = self
                    .positions
                    .resume(&sender, |room, since| match since {
                        None => Message::text(format!("join {room}")),
                        Some(at) => {
                            Message::text(format!("join {room} {} {}", at.epoch, at.offset))
                        }
                    })
                    .await;
                // A connection reset at once is the runner's to report.
                if let Err(error) = resumed {
                    eprintln!("resume failed: {error:#}");
                }
            }
            Event::Message(message) => self.on_message(message.as_text().unwrap()),
            Event::Close(_) => self.closes += 1,
            Event::Stopped(error) => panic!("the runner stopped: {error:?}"),
            _ => {}
        }
    }

    fn on_message(&mut self, text: &str) {
        let fields: Vec<&str> = text.split(' ').collect();
        let [kind, room, epoch, offset, last] = fields[..] else {
            panic!("not the protocol: {text}");
        };
        let position = Position::new(epoch, offset.parse().unwrap());
        match kind {
            "joined" => {
                self.verdicts.push(last.to_owned());
                self.joined_at.push(position.clone());
                if last != "recovered" {
                    assert!(self.positions.reset(room, position));
                }
            }
            "message" => {
                let observed = self.positions.observe(room, &position);
                if observed != Observed::Next {
                    self.unusual.push((position.offset, observed));
                }
                if observed.is_new() {
                    self.delivered.push(Delivered {
                        epoch: epoch.to_owned(),
                        offset: position.offset,
                        body: last.to_owned(),
                    });
                }
            }
            _ => panic!("not the protocol: {text}"),
        }
    }
}

fn expected(epoch: &str, offsets: impl IntoIterator<Item = u64>) -> Vec<Delivered> {
    offsets
        .into_iter()
        .map(|offset| Delivered {
            epoch: epoch.to_owned(),
            offset,
            body: format!("say-{offset}"),
        })
        .collect()
}

#[tokio::test]
async fn a_connection_reset_while_500_messages_are_published_loses_and_repeats_none() {
    let (hub, proxy) = serve(1000).await;
    let epoch = hub.position(ROOM).unwrap().epoch.to_string();
    let mut client = Client::new(&proxy);
    client.until(|client| !client.verdicts.is_empty()).await;
    publish(&hub, 10);
    client.until(|client| client.delivered.len() == 10).await;

    // The connection breaks after about 1.5 KB more from the server: a few dozen of the
    // first 250 messages get through. The other 250 are published, a few at a time, as soon
    // as the server has recovered for the client, so that they race with the replay: they
    // wait in the member's queue while the missed ones are sent.
    let sent = proxy.stats().downstream.bytes;
    let reset = DirectionFaults::none().with_reset_after_bytes(sent + 1500);
    proxy
        .set_faults(Faults::none().with_downstream(reset))
        .await;
    let publisher = tokio::spawn({
        let hub = hub.clone();
        async move {
            publish(&hub, 250);
            while hub.stats().recovery.attempted == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for _ in 0..10 {
                publish(&hub, 25);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    client.until(|client| client.closes == 1).await;
    let before = client.delivered.len();
    proxy.set_faults(Faults::none()).await;
    client.until(|client| client.delivered.len() >= 510).await;
    bounded(publisher).await.unwrap();
    publish(&hub, 5);
    client.until(|client| client.delivered.len() >= 515).await;

    eprintln!(
        "{before} delivered before the reset, then resumed from {:?}",
        client.resumed_from
    );
    assert!(before < 510, "the reset cut the stream: {before}");
    assert_eq!(client.delivered, expected(&epoch, 1..=515));
    assert!(
        client.unusual.is_empty(),
        "no duplicate, gap or epoch change: {:?}",
        client.unusual
    );
    assert_eq!(client.verdicts, ["fresh", "recovered"]);
    assert_eq!(
        client.resumed_from,
        [None, Some(Position::new(epoch.as_str(), before as u64))]
    );
    // Replayed: after `before` up to 260; live: the rest.
    assert_eq!(client.joined_at[1], Position::new(epoch.as_str(), 260));
    let recovery = hub.stats().recovery;
    assert_eq!(
        (recovery.attempted, recovery.succeeded, recovery.replayed),
        (1, 1, 260 - before as u64),
        "{recovery:?}"
    );
    assert_eq!(client.positions.since(ROOM), hub.position(ROOM).as_ref());
    let stats = proxy.stats();
    assert_eq!(
        (stats.resets, stats.connections_accepted),
        (1, 2),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_room_created_again_is_not_recovered_and_the_client_starts_from_its_position() {
    let (hub, proxy) = serve(1000).await;
    let old_epoch = hub.position(ROOM).unwrap().epoch.to_string();
    let mut client = Client::new(&proxy);
    client.until(|client| !client.verdicts.is_empty()).await;
    publish(&hub, 3);
    client.until(|client| client.delivered.len() == 3).await;

    // Away: the proxy refuses connections while the room is closed, created again (a new
    // epoch) and gets two messages the client will never see.
    proxy.set_faults(Faults::none().with_down(true)).await;
    client.until(|client| client.closes == 1).await;
    hub.close_room(ROOM, None).unwrap();
    hub.create_room(ROOM, None).unwrap();
    publish(&hub, 2);
    let new_epoch = hub.position(ROOM).unwrap().epoch.to_string();
    assert_ne!(new_epoch, old_epoch);

    proxy.set_faults(Faults::none()).await;
    client.until(|client| client.verdicts.len() == 2).await;
    assert_eq!(client.verdicts, ["fresh", "lost"]);
    assert_eq!(
        client.resumed_from,
        [None, Some(Position::new(old_epoch.as_str(), 3))]
    );
    // Reset to the room's position: the new epoch, after the two missed messages.
    assert_eq!(
        client.positions.since(ROOM),
        Some(&Position::new(new_epoch.as_str(), 2))
    );
    publish(&hub, 2);
    client.until(|client| client.delivered.len() == 5).await;
    let mut all = expected(&old_epoch, 1..=3);
    all.extend(expected(&new_epoch, 3..=4));
    assert_eq!(client.delivered, all);
    assert!(
        client.unusual.is_empty(),
        "the live messages follow the reset: {:?}",
        client.unusual
    );
}

#[tokio::test]
async fn a_gap_larger_than_the_history_is_not_recovered_and_the_client_jumps_ahead() {
    let (hub, proxy) = serve(5).await;
    let epoch = hub.position(ROOM).unwrap().epoch.to_string();
    let mut client = Client::new(&proxy);
    client.until(|client| !client.verdicts.is_empty()).await;
    publish(&hub, 2);
    client.until(|client| client.delivered.len() == 2).await;

    proxy.set_faults(Faults::none().with_down(true)).await;
    client.until(|client| client.closes == 1).await;
    publish(&hub, 20); // 3..=22: more than the 5 kept
    proxy.set_faults(Faults::none()).await;
    client.until(|client| client.verdicts.len() == 2).await;
    assert_eq!(client.verdicts, ["fresh", "lost"]);
    assert_eq!(
        client.positions.since(ROOM),
        Some(&Position::new(epoch.as_str(), 22))
    );
    publish(&hub, 1);
    client.until(|client| client.delivered.len() == 3).await;
    let mut all = expected(&epoch, 1..=2);
    all.extend(expected(&epoch, [23]));
    assert_eq!(client.delivered, all);
    assert!(client.unusual.is_empty(), "{:?}", client.unusual);
}
