//! A `tether serve` chat client that never misses a message across reconnects: it joins
//! rooms, prints their messages, says what you type, and after every reconnect joins each
//! room again from the last position it saw there, so that the messages said meanwhile
//! arrive once each, in order (see `docs/demo-chat.md`, "Recovery").
//!
//! ```text
//! cargo run --release -p tether-cli -- serve --listen 127.0.0.1:8080
//! cargo run -p tether --example resume_chat -- --url ws://127.0.0.1:8080/ws --room lobby
//! ```
//!
//! To watch it recover, put a proxy that resets every connection after 5 s in between, and
//! say things from the page at `http://127.0.0.1:8080/` meanwhile:
//!
//! ```text
//! cargo run --release -p tether-cli -- proxy --listen 127.0.0.1:9002 --upstream 127.0.0.1:8080 --reset-after-ms 5000
//! cargo run -p tether --example resume_chat -- --url ws://127.0.0.1:9002/ws --room lobby --room random
//! ```
//!
//! Flags: `--url` (default `ws://127.0.0.1:8080/ws`), `--room NAME` (repeatable; default
//! `lobby`), `--name NAME`. A line on stdin is said in the first room. The JSON is this
//! example's: `tether::client::Positions` only keeps the positions.

use std::time::Duration;

use clap::Parser;
use serde_json::{Value, json};
use tether::client::{ClientBuilder, Event, Observed, Positions, Reconnect, Runner};
use tether::hub::Position;
use tether::{Message, Sender};
use tokio::sync::mpsc;

#[derive(Debug, Parser)]
struct Args {
    /// The chat's WebSocket URL.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    url: String,
    /// A room to follow (repeatable).
    #[arg(long = "room", default_value = "lobby")]
    rooms: Vec<String>,
    /// The name to chat under (default: the server's `anon-XXXX`).
    #[arg(long)]
    name: Option<String>,
}

/// The `epoch` and `offset` of a `message` or a `joined` reply.
fn position_of(value: &Value) -> Option<Position> {
    Some(Position::new(
        value["epoch"].as_str()?,
        value["offset"].as_u64()?,
    ))
}

/// `{"type":"join","room":R}`, with `"since"` once the room has a position.
fn join(room: &str, since: Option<&Position>) -> Message {
    let join = match since {
        None => json!({"type": "join", "room": room}),
        Some(since) => json!({
            "type": "join",
            "room": room,
            "since": {"epoch": &*since.epoch, "offset": since.offset},
        }),
    };
    Message::text(join.to_string())
}

/// Handles one message from the server.
fn on_message(positions: &mut Positions, value: &Value) {
    let room = value["room"].as_str().unwrap_or_default();
    match value["type"].as_str() {
        Some("welcome") => println!("* connected as {}", value["name"]),
        Some("joined") => {
            let Some(position) = position_of(value) else {
                return;
            };
            let since = positions.since(room).cloned();
            match (since, value["recovered"].as_bool()) {
                (Some(since), Some(true)) => {
                    let missed = position.offset.saturating_sub(since.offset);
                    println!("* [{room}] back: {missed} missed message(s) follow");
                }
                (since, _) => {
                    if since.is_some() {
                        println!("* [{room}] back, but the messages said meanwhile are lost");
                    } else {
                        println!("* [{room}] joined at offset {}", position.offset);
                    }
                    positions.reset(room, position);
                }
            }
        }
        Some("message") => {
            let Some(position) = position_of(value) else {
                return;
            };
            let observed = positions.observe(room, &position);
            match observed {
                Observed::Gap { missed } => println!("* [{room}] {missed} message(s) skipped"),
                Observed::NewEpoch => println!("* [{room}] the room was created again"),
                _ => {}
            }
            if observed.is_new() {
                let (from, text) = (&value["from"], &value["text"]);
                println!("[{room}] #{} {from}: {text}", position.offset);
            }
        }
        Some("room_closed") => {
            println!("* [{room}] closed by {}", value["by"]);
            positions.forget(room);
        }
        Some("error") => println!("* error {}", value["data"]),
        _ => {}
    }
}

/// Says `text` in `room` on the open connection, if any.
async fn say(sender: Option<&Sender>, room: &str, text: &str) {
    let Some(sender) = sender else {
        println!("* not connected: not sent");
        return;
    };
    let say = json!({"type": "say", "room": room, "text": text});
    if let Err(error) = sender.send(Message::text(say.to_string())).await {
        println!("* not sent: {error}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let url = match &args.name {
        Some(name) => format!("{}?name={name}", args.url),
        None => args.url.clone(),
    };
    let reconnect = Reconnect::new()
        .initial_delay(Duration::from_millis(500))
        .max_delay(Duration::from_secs(10));
    let mut runner = Runner::new(url, ClientBuilder::new(), reconnect);
    let mut positions = Positions::new();
    for room in &args.rooms {
        positions.track(room.as_str());
    }
    let first_room = args.rooms.first().cloned().unwrap_or_default();
    // Lines typed, read on a thread of their own (`None`: stdin ended).
    let (typed, mut lines) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines().map_while(Result::ok) {
            if typed.send(line).is_err() {
                return;
            }
        }
    });
    let mut stdin_open = true;
    let mut sender: Option<Sender> = None;
    loop {
        // `Runner::next` is cancel-safe: a line typed meanwhile loses no message.
        let event = tokio::select! {
            event = runner.next() => match event {
                Some(event) => event,
                None => break,
            },
            line = lines.recv(), if stdin_open => {
                match line {
                    Some(line) if !line.trim().is_empty() => {
                        say(sender.as_ref(), &first_room, line.trim()).await;
                    }
                    Some(_) => {}
                    None => stdin_open = false,
                }
                continue;
            }
        };
        match event {
            Event::Open { sender: opened, .. } => {
                // Every room again, from where this client was in it.
                if let Err(error) = positions.resume(&opened, join).await {
                    println!("* could not resume: {error}");
                }
                sender = Some(opened);
            }
            Event::Message(message) => {
                if let Some(value) = message
                    .as_text()
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                {
                    on_message(&mut positions, &value);
                }
            }
            Event::Close(info) => {
                sender = None;
                println!("* disconnected: {}", info.reason.display_code());
            }
            Event::Reconnecting { attempt, delay } => {
                println!("* reconnecting in {delay:.1?} (attempt {attempt})");
            }
            Event::Error(error) => println!("* {error}"),
            Event::Stopped(Some(error)) => println!("* stopped: {error:#}"),
            _ => {}
        }
    }
    Ok(())
}
