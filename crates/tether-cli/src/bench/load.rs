//! Load mode: closed-loop echo traffic over many connections, with latency, throughput and
//! the CPU each side spent per message.

#![allow(clippy::indexing_slicing)] // Indexes JSON values this module built itself, never peer input.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use tether::client::{ClientBuilder, ClientConfig};
use tether::{CloseCode, Config, DeflateConfig, Message};
use tokio::time::Instant;

use super::procfs::{CpuTimes, cpu_times, status_kib};
use super::report::{ErrorTally, percentiles, thousands};
use super::{BenchArgs, error_kind_name};

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// How many connections are opened at once.
const CONNECT_CONCURRENCY: usize = 64;

/// What one connection measured.
#[derive(Debug, Default)]
struct ConnectionResult {
    latencies_ns: Vec<u32>,
}

/// The payload every connection sends: ASCII for text, a byte pattern for binary.
pub(super) fn payload(size: usize, binary: bool, json_like: bool) -> Message {
    if binary {
        Message::binary((0..size).map(|i| (i * 31 + 7) as u8).collect::<Vec<_>>())
    } else if json_like {
        // Chat lines as a JSON array, cut to `size` bytes: names, rooms and words repeat,
        // numbers do not, much as in real traffic.
        let mut text = String::from("[");
        let mut i = 0u64;
        while text.len() < size {
            let word = ["hello", "room", "again", "see", "you", "later"][(i % 6) as usize];
            text.push_str(&format!(
                "{{\"type\":\"message\",\"room\":\"lobby\",\"from\":\"user{}\",\"offset\":{},\"text\":\"{word} {}\"}},",
                i % 7,
                1_000_000 + i * 7919,
                i * 104_729 % 9973
            ));
            i += 1;
        }
        text.truncate(size);
        Message::text(text)
    } else {
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        Message::text(text)
    }
}

pub(crate) async fn run(args: &BenchArgs) -> Result<serde_json::Value, String> {
    let config = ClientConfig::default().with_transport(
        Config::default()
            .with_max_message_size(args.size.max(Config::default().limits.max_message_size))
            .with_deflate(args.deflate.then(DeflateConfig::client)),
    );
    let errors = Arc::new(ErrorTally::default());
    let phase = Arc::new(AtomicU8::new(WARMUP));
    let completed = Arc::new(AtomicU64::new(0));
    let message = payload(args.size, args.binary, args.deflate);
    let pacing = args
        .rate
        .filter(|rate| *rate > 0.0)
        .map(|rate| Duration::from_secs_f64(args.connections as f64 / rate));

    // Connect everything first, so the warm-up and the window see the full load.
    let mut sockets = Vec::with_capacity(args.connections);
    for chunk_start in (0..args.connections).step_by(CONNECT_CONCURRENCY) {
        let chunk = CONNECT_CONCURRENCY.min(args.connections - chunk_start);
        let mut pending = Vec::with_capacity(chunk);
        for _ in 0..chunk {
            let url = args.url.clone();
            let config = config.clone();
            pending.push(tokio::spawn(async move {
                ClientBuilder::from(config).connect(&url).await
            }));
        }
        for task in pending {
            match task.await {
                Ok(Ok((socket, _))) => sockets.push(socket),
                Ok(Err(error)) => errors.add(format!("connect: {}", error_kind_name(&error))),
                Err(_) => errors.add("connect: task failed"),
            }
        }
    }
    if sockets.is_empty() {
        return Err(format!(
            "no connection could be opened to {}: {:?}",
            args.url,
            errors.snapshot()
        ));
    }

    let mut tasks = Vec::with_capacity(sockets.len());
    for mut socket in sockets {
        let phase = Arc::clone(&phase);
        let errors = Arc::clone(&errors);
        let completed = Arc::clone(&completed);
        let message = message.clone();
        tasks.push(tokio::spawn(async move {
            let mut result = ConnectionResult::default();
            let mut ticker = pacing.map(tokio::time::interval);
            loop {
                let phase_at_start = phase.load(Ordering::Relaxed);
                if phase_at_start == STOP {
                    break;
                }
                if let Some(ticker) = &mut ticker {
                    ticker.tick().await;
                }
                let started = Instant::now();
                if let Err(error) = socket.send(message.clone()).await {
                    errors.add(format!("send: {}", error_kind_name(&error)));
                    return result;
                }
                match socket.recv().await {
                    Ok(Some(echo)) if echo == message => {}
                    Ok(Some(_)) => {
                        errors.add("mismatch: the echo differs from what was sent");
                        return result;
                    }
                    Err(error) => {
                        errors.add(format!("recv: {}", error_kind_name(&error)));
                        return result;
                    }
                    Ok(None) => {
                        errors.add("recv: closed by the server");
                        return result;
                    }
                }
                if phase_at_start == MEASURE && phase.load(Ordering::Relaxed) == MEASURE {
                    let elapsed = started.elapsed().as_nanos();
                    result
                        .latencies_ns
                        .push(u32::try_from(elapsed).unwrap_or(u32::MAX));
                }
                completed.fetch_add(1, Ordering::Relaxed);
            }
            let close = socket.close(CloseCode::NORMAL, "");
            match tokio::time::timeout(Duration::from_secs(5), close).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => errors.add(format!("close: {}", error_kind_name(&error))),
                Err(_) => errors.add("close: timed out"),
            }
            result
        }));
    }

    let progress = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
        let completed = Arc::clone(&completed);
        let errors = Arc::clone(&errors);
        let phase = Arc::clone(&phase);
        tokio::spawn(show_progress(completed, errors, phase))
    });

    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let server_before = args.server_pid.and_then(|pid| cpu_times(Some(pid)));
    let client_before = cpu_times(None);
    let window_start = Instant::now();
    phase.store(MEASURE, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    phase.store(STOP, Ordering::Relaxed);
    let window = window_start.elapsed().as_secs_f64();
    let server_after = args.server_pid.and_then(|pid| cpu_times(Some(pid)));
    let client_after = cpu_times(None);
    let peak_rss = args.server_pid.and_then(|pid| status_kib(pid, "VmHWM"));

    let mut latencies = Vec::new();
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(result)) => latencies.extend(result.latencies_ns),
            Ok(Err(_)) => errors.add("task failed"),
            Err(_) => errors.add("stop: a connection did not finish within 30 s"),
        }
    }
    if let Some(progress) = progress {
        progress.abort();
        eprint!("\r{:79}\r", "");
    }

    let messages = latencies.len() as u64;
    let per_message = |before: Option<CpuTimes>, after: Option<CpuTimes>| {
        let spent = after?.since(before?);
        let count = messages.max(1) as f64;
        Some(json!({
            "cpu_user_us_per_msg": spent.user_us / count,
            "cpu_system_us_per_msg": spent.system_us / count,
            "cpu_us_per_msg": (spent.user_us + spent.system_us) / count,
        }))
    };
    let latency = percentiles(&mut latencies);
    let mut report = json!({
        "mode": "load",
        "url": args.url,
        "connections": args.connections,
        "size": args.size,
        "binary": args.binary,
        "duration_s": window,
        "warmup_s": args.warmup,
        "messages": messages,
        "messages_per_sec": messages as f64 / window,
        "latency_us": {"p50": latency.p50, "p99": latency.p99, "p999": latency.p999, "max": latency.max},
        "errors": errors.snapshot(),
    });
    if let (Some(pid), Some(mut server)) =
        (args.server_pid, per_message(server_before, server_after))
    {
        server["pid"] = json!(pid);
        server["peak_rss_kib"] = json!(peak_rss);
        report["server"] = server;
    }
    if let Some(client) = per_message(client_before, client_after) {
        report["client"] = client;
    }
    print_table(&report);
    Ok(report)
}

async fn show_progress(completed: Arc<AtomicU64>, errors: Arc<ErrorTally>, phase: Arc<AtomicU8>) {
    let started = Instant::now();
    let mut last = 0;
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        ticker.tick().await;
        let now = completed.load(Ordering::Relaxed);
        let label = match phase.load(Ordering::Relaxed) {
            WARMUP => "warm-up",
            MEASURE => "measuring",
            _ => "stopping",
        };
        eprint!(
            "\r{label:>9} {:6.1}s  {:>12} msg/s  errors {:<6}",
            started.elapsed().as_secs_f64(),
            thousands((now - last) as f64 * 4.0),
            errors.total()
        );
        let _ = std::io::stderr().flush();
        last = now;
    }
}

fn print_table(report: &serde_json::Value) {
    let number = |path: &[&str]| -> f64 {
        path.iter()
            .try_fold(report, |value, key| value.get(key))
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(0.0)
    };
    println!(
        "tether bench {}  connections {}  size {} B {}  {:.1} s after {:.1} s warm-up",
        report["url"].as_str().unwrap_or_default(),
        report["connections"],
        report["size"],
        if report["binary"].as_bool().unwrap_or(false) {
            "binary"
        } else {
            "text"
        },
        number(&["duration_s"]),
        number(&["warmup_s"]),
    );
    println!(
        "  messages        {} ({}/s)",
        thousands(number(&["messages"])),
        thousands(number(&["messages_per_sec"]))
    );
    println!(
        "  latency         p50 {:.1} µs  p99 {:.1} µs  p99.9 {:.1} µs  max {:.1} µs",
        number(&["latency_us", "p50"]),
        number(&["latency_us", "p99"]),
        number(&["latency_us", "p999"]),
        number(&["latency_us", "max"]),
    );
    for side in ["server", "client"] {
        if report.get(side).is_some() {
            println!(
                "  {side} cpu/msg  {:.2} µs (user {:.2}, system {:.2})",
                number(&[side, "cpu_us_per_msg"]),
                number(&[side, "cpu_user_us_per_msg"]),
                number(&[side, "cpu_system_us_per_msg"]),
            );
        }
    }
    if let Some(rss) = report
        .get("server")
        .and_then(|s| s.get("peak_rss_kib"))
        .and_then(|v| v.as_u64())
    {
        println!("  server peak rss {} KiB", thousands(rss as f64));
    }
    print_errors(&report["errors"]);
}

pub(crate) fn print_errors(errors: &serde_json::Value) {
    match errors.as_object() {
        Some(map) if !map.is_empty() => {
            for (kind, count) in map {
                println!("  errors          {kind}: {count}");
            }
        }
        _ => println!("  errors          none"),
    }
}
