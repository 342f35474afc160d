//! Cross-node fan-out through the Redis backplane, against the in-memory hub, in one run.
//!
//! ```text
//! cargo run --release -p tether --features redis --example cross_node_fanout -- --redis redis://127.0.0.1:6379
//! cargo run --release -p tether --features redis --example cross_node_fanout   # starts its own redis-server
//! ```
//!
//! Two setups carry the same load, one after the other:
//!
//! - **in-memory**: one [`Hub`] with `2 × --members` members in one room;
//! - **cross-node**: two hubs (nodes A and B), each with its own [`RedisBackplane`] to the same
//!   Redis and `--members` members in the room; the broadcaster is on node A, so A's members
//!   get each message locally and B's through Redis.
//!
//! Every member is a task draining its queue and recording `now - sent` for every message
//! (the send time travels in the payload, as nanoseconds since an `Instant` the whole process
//! shares). Each setup runs two phases:
//!
//! - **flood**: `--messages` broadcasts back to back (yielding between them): `msgs_per_sec`
//!   is broadcasts delivered to every member per second, from the first send to the last
//!   message taken, and the latencies show the queueing;
//! - **paced**: `--messages` broadcasts at `--rate` per second: the delivery latency
//!   percentiles at a load both setups sustain.
//!
//! It prints one line per setup and phase, then the ratios (cross-node / in-memory) and a
//! line of JSON with every figure. Without `--redis` it starts `redis-server` on a free
//! loopback port (`--save '' --appendonly no`) and stops it at the end. Every wait is bounded
//! (`--timeout`): messages still missing then are reported as lost.

#[cfg(feature = "redis")]
mod bench {
    use std::fmt::Write as _;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use clap::Parser;
    use tether::Message;
    use tether::hub::{Hub, HubConfig, Member, Membership, Outbound, RedisBackplane, RedisOptions};

    /// The room everybody is in.
    const ROOM: &str = "bench";
    /// Digits of the send time at the start of a payload.
    const STAMP: usize = 20;

    /// Measures cross-node fan-out through Redis against the in-memory hub.
    #[derive(Debug, Parser)]
    #[command(name = "cross_node_fanout")]
    pub(crate) struct Args {
        /// The Redis to use (`redis://HOST:PORT`); without it, a redis-server is started.
        #[arg(long)]
        redis: Option<String>,
        /// Members on each node (the in-memory hub has twice as many).
        #[arg(long, default_value_t = 1000)]
        members: usize,
        /// Broadcasts per phase.
        #[arg(long, default_value_t = 1000)]
        messages: usize,
        /// Broadcasts per second in the paced phase.
        #[arg(long, default_value_t = 200.0)]
        rate: f64,
        /// Payload size in bytes (at least 20: the send time).
        #[arg(long, default_value_t = 64)]
        payload: usize,
        /// The backplane's outbox (outage buffer) capacity: a flood of more broadcasts than
        /// this, faster than Redis takes them, drops the oldest (counted as lost).
        #[arg(long, default_value_t = RedisOptions::DEFAULT_BUFFER_CAPACITY)]
        buffer: usize,
        /// Seconds a phase may take before what is missing counts as lost.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
    }

    /// One node of a setup: its hub, and its backplane for the cross-node one.
    struct Node {
        hub: Hub,
        backplane: Option<Arc<RedisBackplane>>,
    }

    /// What one phase measured.
    #[derive(Debug, Default)]
    struct Phase {
        /// Delivery latencies in nanoseconds, by node, sorted.
        latencies: Vec<Vec<u32>>,
        /// From the first send to the last message taken.
        elapsed: Duration,
        /// Messages the members should have taken.
        expected: usize,
    }

    impl Phase {
        fn received(&self) -> usize {
            self.latencies.iter().map(Vec::len).sum()
        }

        fn all(&self) -> Vec<u32> {
            let mut all: Vec<u32> = self.latencies.concat();
            all.sort_unstable();
            all
        }

        /// Broadcasts delivered to every member per second.
        fn msgs_per_sec(&self, messages: usize) -> f64 {
            let seconds = self.elapsed.as_secs_f64();
            if seconds > 0.0 {
                messages as f64 * (self.received() as f64 / self.expected.max(1) as f64) / seconds
            } else {
                0.0
            }
        }
    }

    /// A redis-server this run started, stopped when dropped.
    struct OwnRedis(Child);

    impl Drop for OwnRedis {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn start_redis() -> Result<(OwnRedis, String), String> {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|listener| listener.local_addr())
            .map_err(|error| format!("no free port: {error}"))?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot run redis-server ({error}); or pass --redis URL"))?;
        let own = OwnRedis(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pong = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).and_then(|mut stream| {
                stream.set_read_timeout(Some(Duration::from_millis(500)))?;
                stream.write_all(b"PING\r\n")?;
                let mut reply = [0; 7];
                stream.read_exact(&mut reply)?;
                Ok(&reply == b"+PONG\r\n")
            });
            if matches!(pong, Ok(true)) {
                return Ok((own, format!("redis://127.0.0.1:{port}")));
            }
            if Instant::now() > deadline {
                return Err(format!("redis-server on port {port} does not answer"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn main(args: &Args) -> Result<(), String> {
        if args.payload < STAMP || args.members == 0 || args.messages == 0 || args.rate <= 0.0 {
            return Err(format!(
                "expected --payload >= {STAMP} and --members, --messages, --rate > 0"
            ));
        }
        let (own, url) = match &args.redis {
            Some(url) => (None, url.clone()),
            None => {
                let (own, url) = start_redis()?;
                (Some(own), url)
            }
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| format!("cannot start the runtime: {error}"))?;
        let result = runtime.block_on(run(args, &url));
        drop(runtime);
        drop(own);
        result
    }

    async fn run(args: &Args, url: &str) -> Result<(), String> {
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        println!(
            "cross-node fan-out: {} members per node, {} broadcasts per phase ({} B), paced at \
             {}/s, {threads} threads, Redis {url}",
            args.members, args.messages, args.payload, args.rate
        );
        let config = HubConfig::default().with_queue_capacity(args.messages + 16);
        let memory = vec![Node {
            hub: Hub::new(config),
            backplane: None,
        }];
        let mut cross = Vec::new();
        for name in ["bench-a", "bench-b"] {
            let options = RedisOptions::new()
                .node_id(name)
                .buffer_capacity(args.buffer);
            let backplane = RedisBackplane::connect(url, options)
                .await
                .map_err(|error| format!("cannot connect to {url}: {error}"))?;
            let hub = Hub::with_backplane(config, Arc::clone(&backplane) as _);
            cross.push(Node {
                hub,
                backplane: Some(backplane),
            });
        }
        for node in memory.iter().chain(&cross) {
            node.hub
                .create_room(ROOM, None)
                .map_err(|error| error.to_string())?;
        }

        let origin = Instant::now();
        let mut figures = Vec::new();
        for (setup, nodes, members) in [
            ("in-memory", &memory, args.members * 2),
            ("cross-node", &cross, args.members),
        ] {
            for (phase, rate) in [("flood", None), ("paced", Some(args.rate))] {
                let measured = measure(args, nodes, members, rate, origin).await?;
                report(setup, phase, args, &measured);
                figures.push((setup, phase, measured));
            }
        }
        for node in &cross {
            if let Some(backplane) = &node.backplane {
                let stats = backplane.stats();
                println!(
                    "  {}: published {}, received {}, errors {}, buffer dropped {}",
                    backplane.node_id(),
                    stats.published,
                    stats.received,
                    stats.errors,
                    stats.buffer_dropped
                );
            }
        }
        summary(args, &figures);
        Ok(())
    }

    /// One phase on one setup: fresh members on every node, the broadcaster on the first.
    async fn measure(
        args: &Args,
        nodes: &[Node],
        members: usize,
        rate: Option<f64>,
        origin: Instant,
    ) -> Result<Phase, String> {
        let first = nodes.first().ok_or("no node")?;
        // Remote nodes subscribe when their first member joins, in the background: a probe
        // member on each waits for a broadcast from the first node before the clock starts.
        let mut probes = Vec::new();
        for node in nodes.iter().skip(1) {
            let (member, outbound) = node.hub.member(|| {});
            let membership = node.hub.join(&member, ROOM).map_err(|e| e.to_string())?;
            probes.push((member, membership, outbound));
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for (_, _, outbound) in &mut probes {
            while outbound.try_recv().is_none() {
                if Instant::now() > deadline {
                    return Err("the other node never received a broadcast".to_owned());
                }
                first
                    .hub
                    .broadcast(ROOM, &Message::text("probe"))
                    .map_err(|e| e.to_string())?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        let give_up = tokio::time::Instant::now() + Duration::from_secs(args.timeout);
        let mut held: Vec<(Member, Membership)> = Vec::new();
        let mut tasks = Vec::new();
        for node in nodes {
            let mut node_tasks = Vec::with_capacity(members);
            for _ in 0..members {
                let (member, outbound) = node.hub.member(|| {});
                let membership = node.hub.join(&member, ROOM).map_err(|e| e.to_string())?;
                held.push((member, membership));
                node_tasks.push(tokio::spawn(take(outbound, origin, args.messages, give_up)));
            }
            tasks.push(node_tasks);
        }
        // Let every member task reach its first `recv`, and late probes go by.
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(probes);

        let started = origin.elapsed();
        let hub = first.hub.clone();
        let (messages, payload) = (args.messages, args.payload);
        tokio::spawn(broadcast(hub, messages, rate, payload, origin))
            .await
            .map_err(|error| format!("the broadcaster failed: {error}"))??;
        let mut phase = Phase {
            expected: messages * members * nodes.len(),
            ..Phase::default()
        };
        let mut last = started;
        for node_tasks in tasks {
            let mut latencies = Vec::with_capacity(members * messages);
            for task in node_tasks {
                let (taken, at) = task
                    .await
                    .map_err(|error| format!("a member task failed: {error}"))?;
                latencies.extend_from_slice(&taken);
                last = last.max(at);
            }
            latencies.sort_unstable();
            phase.latencies.push(latencies);
        }
        drop(held);
        phase.elapsed = last.saturating_sub(started);
        Ok(phase)
    }

    /// A member: takes `expected` stamped messages (or what came by `give_up`), recording
    /// their latencies; returns them and when it took the last.
    async fn take(
        mut outbound: Outbound,
        origin: Instant,
        expected: usize,
        give_up: tokio::time::Instant,
    ) -> (Vec<u32>, Duration) {
        let mut latencies = Vec::with_capacity(expected);
        let mut last = Duration::ZERO;
        while latencies.len() < expected {
            let Ok(Some(message)) = tokio::time::timeout_at(give_up, outbound.recv()).await else {
                break;
            };
            let now = origin.elapsed();
            if let Some(sent) = sent_at(&message) {
                let nanos = now.saturating_sub(sent).as_nanos();
                latencies.push(u32::try_from(nanos).unwrap_or(u32::MAX));
                last = now;
            }
        }
        (latencies, last)
    }

    /// `messages` stamped broadcasts, back to back (`rate` none) or at `rate` per second.
    async fn broadcast(
        hub: Hub,
        messages: usize,
        rate: Option<f64>,
        payload: usize,
        origin: Instant,
    ) -> Result<(), String> {
        let mut ticks = rate.map(|rate| {
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        let filler = ".".repeat(payload - STAMP);
        for _ in 0..messages {
            match &mut ticks {
                Some(ticks) => {
                    ticks.tick().await;
                }
                None => tokio::task::yield_now().await,
            }
            let stamp = origin.elapsed().as_nanos();
            let message = Message::text(format!("{stamp:020}{filler}"));
            hub.broadcast(ROOM, &message)
                .map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// The send time at the start of a payload.
    fn sent_at(message: &Message) -> Option<Duration> {
        let stamp = message.as_text()?.get(..STAMP)?;
        stamp.parse::<u64>().ok().map(Duration::from_nanos)
    }

    /// The `q` quantile (0 to 1) of sorted values, in microseconds.
    fn quantile_us(sorted: &[u32], q: f64) -> f64 {
        let rank = (q * sorted.len() as f64).ceil() as usize;
        sorted
            .get(rank.saturating_sub(1).min(sorted.len().saturating_sub(1)))
            .map_or(0.0, |nanos| f64::from(*nanos) / 1e3)
    }

    fn report(setup: &str, phase: &str, args: &Args, measured: &Phase) {
        let all = measured.all();
        let mut line = format!(
            "{setup:>10} {phase:>5}: {:>9.0} msgs/s, {:>11.0} deliveries/s, latency p50 {:>9.1} \
             us, p99 {:>9.1} us, max {:>9.1} us",
            measured.msgs_per_sec(args.messages),
            measured.received() as f64 / measured.elapsed.as_secs_f64().max(1e-9),
            quantile_us(&all, 0.5),
            quantile_us(&all, 0.99),
            quantile_us(&all, 1.0),
        );
        if measured.latencies.len() > 1 {
            for (index, node) in measured.latencies.iter().enumerate() {
                let _ = write!(
                    line,
                    "; node {} p99 {:.1} us",
                    if index == 0 {
                        "A (local)"
                    } else {
                        "B (remote)"
                    },
                    quantile_us(node, 0.99)
                );
            }
        }
        let lost = measured.expected.saturating_sub(measured.received());
        if lost > 0 {
            let _ = write!(line, "; LOST {lost} of {}", measured.expected);
        }
        println!("{line}");
    }

    fn summary(args: &Args, figures: &[(&str, &str, Phase)]) {
        let find = |setup: &str, phase: &str| {
            figures
                .iter()
                .find(|(s, p, _)| *s == setup && *p == phase)
                .map(|(_, _, measured)| measured)
        };
        let (Some(memory_flood), Some(cross_flood), Some(memory_paced), Some(cross_paced)) = (
            find("in-memory", "flood"),
            find("cross-node", "flood"),
            find("in-memory", "paced"),
            find("cross-node", "paced"),
        ) else {
            return;
        };
        let throughput =
            cross_flood.msgs_per_sec(args.messages) / memory_flood.msgs_per_sec(args.messages);
        let p99 = |phase: &Phase| quantile_us(&phase.all(), 0.99);
        let latency = p99(cross_paced) / p99(memory_paced).max(1e-3);
        println!(
            "ratio cross-node / in-memory: throughput {throughput:.3}x, paced p99 latency \
             {latency:.1}x"
        );
        let mut json = String::from("{");
        let _ = write!(
            json,
            "\"members_per_node\":{},\"messages\":{},\"rate\":{},\"payload\":{}",
            args.members, args.messages, args.rate, args.payload
        );
        for (setup, phase, measured) in figures {
            let key = format!("{}_{phase}", setup.replace('-', "_"));
            let all = measured.all();
            let _ = write!(
                json,
                ",\"{key}_msgs_per_sec\":{:.1},\"{key}_p50_us\":{:.1},\"{key}_p99_us\":{:.1},\
                 \"{key}_lost\":{}",
                measured.msgs_per_sec(args.messages),
                quantile_us(&all, 0.5),
                quantile_us(&all, 0.99),
                measured.expected.saturating_sub(measured.received())
            );
        }
        let _ = write!(
            json,
            ",\"throughput_ratio\":{throughput:.4},\"p99_latency_ratio\":{latency:.2}}}"
        );
        println!("{json}");
    }
}

#[cfg(feature = "redis")]
fn main() -> std::process::ExitCode {
    use clap::Parser as _;

    match bench::main(&bench::Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cross_node_fanout: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(feature = "redis"))]
fn main() -> std::process::ExitCode {
    eprintln!(
        "cross_node_fanout needs the redis feature: cargo run --release -p tether --features \
         redis --example cross_node_fanout"
    );
    std::process::ExitCode::from(2)
}
