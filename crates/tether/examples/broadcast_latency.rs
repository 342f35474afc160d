//! Broadcast latency through a [`Hub`]: from the moment a broadcaster calls
//! [`Hub::broadcast`] to the moment each member's task takes the message from its queue, with
//! percentiles (which criterion cannot give; `benches/broadcast.rs` times the fan-out call).
//!
//! ```text
//! cargo run --release -p tether --example broadcast_latency -- --members 1000 --messages 2000 --rate 500
//! ```
//!
//! `--members` tasks on a multi-thread tokio runtime each wait on their member's queue and
//! record `now - sent_at` for every message; the send time travels in the payload, as
//! nanoseconds since an `Instant` all tasks share. A broadcaster task (on the same runtime, as
//! a connection handler would be) sends `--messages` text messages of `--payload` bytes, one
//! every `1 / --rate` seconds, then stops; the members are dropped, their queues close and
//! their tasks end. One line of JSON is printed:
//!
//! - `members`, `messages`, `rate` (asked), `threads`;
//! - `messages_per_sec`: broadcasts per second achieved;
//! - `deliveries_per_sec`: messages taken by members per second, from the first broadcast to
//!   the last message taken;
//! - `p50_us`, `p99_us`, `p999_us`, `max_us`: delivery latency percentiles, in microseconds;
//! - `fanout_p50_us`, `fanout_p99_us`, `fanout_max_us`: how long the `broadcast` call itself
//!   took (the broadcaster is blocked for that long);
//! - `delivered`, `received`, `dropped`, `disconnected`: from the broadcast reports, and what
//!   the member tasks took (a disconnected member gets nothing after its disconnection).
//!
//! The latency includes the member's place in the fan-out: the last of 10,000 members is
//! handed the message only once the 9,999 before it have been.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use tether::Message;
use tether::hub::{Hub, HubConfig, Outbound, SlowConsumer};
use tokio::time::MissedTickBehavior;

/// The room everybody is in.
const ROOM: &str = "room";
/// Digits of the send time at the start of the payload.
const STAMP: usize = 20;

/// Measures how long a hub broadcast takes to reach every member.
#[derive(Debug, Parser)]
#[command(name = "broadcast_latency")]
struct Args {
    /// Members in the room, one task each.
    #[arg(long, default_value_t = 1000)]
    members: usize,
    /// Broadcasts to send, then stop.
    #[arg(long, default_value_t = 2000)]
    messages: u64,
    /// Broadcasts per second.
    #[arg(long, default_value_t = 500.0)]
    rate: f64,
    /// Payload size in bytes (at least 20: the send time).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Member queue capacity.
    #[arg(long, default_value_t = 256)]
    queue: usize,
    /// What a full queue means.
    #[arg(long, value_enum, default_value_t = Policy::Disconnect)]
    policy: Policy,
    /// Runtime worker threads [default: the number of CPUs].
    #[arg(long)]
    threads: Option<usize>,
}

/// The slow-consumer policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Disconnect the member (the hub's default).
    Disconnect,
    /// Drop the message for that member.
    Drop,
}

/// What one member task saw.
struct Taken {
    /// Latencies in nanoseconds (saturated at `u32::MAX`, 4.3 s).
    latencies: Vec<u32>,
    /// When it took its last message, since the origin.
    last: Option<Duration>,
}

/// What the broadcaster did.
#[derive(Default)]
struct Sent {
    /// Fan-out times of the `broadcast` calls, in nanoseconds.
    fanouts: Vec<u64>,
    first: Duration,
    last: Duration,
    delivered: u64,
    dropped: u64,
    disconnected: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.payload < STAMP || args.members == 0 || args.messages == 0 || args.rate <= 0.0 {
        eprintln!("expected --payload >= {STAMP} and --members, --messages, --rate > 0");
        return ExitCode::from(2);
    }
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(measure(&args, threads)) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("broadcast_latency: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn measure(args: &Args, threads: usize) -> Result<String, String> {
    let policy = match args.policy {
        Policy::Disconnect => SlowConsumer::Disconnect,
        Policy::Drop => SlowConsumer::DropMessage,
    };
    let hub = Hub::new(
        HubConfig::default()
            .with_queue_capacity(args.queue)
            .with_slow_consumer(policy),
    );
    hub.create_room(ROOM, None)
        .map_err(|error| error.to_string())?;
    let origin = Instant::now();
    let capacity = usize::try_from(args.messages).unwrap_or(usize::MAX);
    let mut members = Vec::with_capacity(args.members);
    let mut tasks = Vec::with_capacity(args.members);
    for _ in 0..args.members {
        let (member, outbound) = hub.member(|| {});
        let membership = hub.join(&member, ROOM).map_err(|error| error.to_string())?;
        members.push((member, membership));
        tasks.push(tokio::spawn(take(outbound, origin, capacity)));
    }
    // Let every member task reach its first `recv` before the clock starts.
    tokio::time::sleep(Duration::from_millis(100)).await;

    let sent = tokio::spawn(send(
        hub.clone(),
        args.messages,
        args.rate,
        args.payload,
        origin,
    ))
    .await
    .map_err(|error| format!("the broadcaster failed: {error}"))?;
    // The queues close once the hub and the members let go of them; the tasks take what is
    // left, then end.
    drop(members);
    let mut latencies = Vec::with_capacity(args.members.saturating_mul(capacity));
    let mut last = Duration::ZERO;
    for task in tasks {
        let taken = task
            .await
            .map_err(|error| format!("a member task failed: {error}"))?;
        latencies.extend_from_slice(&taken.latencies);
        last = last.max(taken.last.unwrap_or_default());
    }
    latencies.sort_unstable();
    let mut fanouts = sent.fanouts.clone();
    fanouts.sort_unstable();

    let received = latencies.len() as u64;
    let sending = sent.last.saturating_sub(sent.first).as_secs_f64();
    // Broadcasts per second: `messages - 1` intervals between the first and the last.
    let messages_per_sec = if sending > 0.0 {
        (args.messages.saturating_sub(1)) as f64 / sending
    } else {
        0.0
    };
    let delivering = last.saturating_sub(sent.first).as_secs_f64();
    let deliveries_per_sec = if delivering > 0.0 {
        received as f64 / delivering
    } else {
        0.0
    };
    let us = |nanos: u64| nanos as f64 / 1e3;
    let latency = |q: f64| us(percentile(&latencies, q).map_or(0, u64::from));
    let fanout = |q: f64| us(percentile(&fanouts, q).unwrap_or(0));
    Ok(format!(
        concat!(
            "{{\"members\":{},\"messages\":{},\"rate\":{},\"threads\":{},",
            "\"messages_per_sec\":{:.1},\"deliveries_per_sec\":{:.0},",
            "\"p50_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1},\"max_us\":{:.1},",
            "\"fanout_p50_us\":{:.1},\"fanout_p99_us\":{:.1},\"fanout_max_us\":{:.1},",
            "\"delivered\":{},\"received\":{},\"dropped\":{},\"disconnected\":{}}}"
        ),
        args.members,
        args.messages,
        args.rate,
        threads,
        messages_per_sec,
        deliveries_per_sec,
        latency(0.5),
        latency(0.99),
        latency(0.999),
        latency(1.0),
        fanout(0.5),
        fanout(0.99),
        fanout(1.0),
        sent.delivered,
        received,
        sent.dropped,
        sent.disconnected,
    ))
}

/// A member's task: takes every message and records its latency.
async fn take(mut outbound: Outbound, origin: Instant, capacity: usize) -> Taken {
    let mut taken = Taken {
        latencies: Vec::with_capacity(capacity),
        last: None,
    };
    while let Some(message) = outbound.recv().await {
        let now = origin.elapsed();
        if let Some(sent) = sent_at(&message) {
            let nanos = now.saturating_sub(sent).as_nanos();
            taken
                .latencies
                .push(u32::try_from(nanos).unwrap_or(u32::MAX));
        }
        taken.last = Some(now);
    }
    taken
}

/// The broadcaster: `messages` broadcasts at `rate` per second, each stamped with its send
/// time.
async fn send(hub: Hub, messages: u64, rate: f64, payload: usize, origin: Instant) -> Sent {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    // Behind schedule (a fan-out longer than the period), send as soon as possible and keep
    // the period from there: the achieved rate shows it.
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let filler = ".".repeat(payload - STAMP);
    let mut sent = Sent {
        fanouts: Vec::with_capacity(usize::try_from(messages).unwrap_or(0)),
        ..Sent::default()
    };
    for index in 0..messages {
        ticks.tick().await;
        let stamp = origin.elapsed();
        let message = Message::text(format!("{:020}{filler}", stamp.as_nanos()));
        let started = Instant::now();
        let report = hub.broadcast(ROOM, &message);
        let took = started.elapsed();
        if index == 0 {
            sent.first = stamp;
        }
        sent.last = stamp;
        sent.fanouts
            .push(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX));
        if let Ok(report) = report {
            sent.delivered += report.delivered as u64;
            sent.dropped += report.dropped as u64;
            sent.disconnected += report.disconnected as u64;
        }
    }
    sent
}

/// The send time at the start of a payload.
fn sent_at(message: &Message) -> Option<Duration> {
    let stamp = message.as_text()?.get(..STAMP)?;
    stamp.parse::<u64>().ok().map(Duration::from_nanos)
}

/// The `q` quantile (0 to 1) of sorted values: the smallest value with at least that share
/// of the values at or below it.
fn percentile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted
        .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
        .copied()
}
