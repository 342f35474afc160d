//! `tungstenite-load`: a closed-loop WebSocket load generator on tokio-tungstenite, with the
//! command line and JSON report of `tether bench` (load mode), so that `scripts/bench client`
//! can compare the CPU each client spends per message against the same server.
//!
//! Timeline: open every connection, run the loop for `--warmup`, then sample this process's
//! and the server's CPU times, open the window for `--duration`, sample again, stop, close.

mod args;
mod connection;
mod procfs;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::args::Args;
use crate::connection::{CLOSE_TIMEOUT, IO_TIMEOUT, Phase, Shared};
use crate::procfs::CpuTimes;

fn main() -> ExitCode {
    let args = match Args::parse() {
        Ok(args) => args,
        Err(error) => {
            eprintln!("tungstenite-load: {error}\n\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tungstenite-load: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(load(&args)) {
        Ok(report) => finish(&args, &report),
        Err(error) => {
            eprintln!("tungstenite-load: {error}");
            ExitCode::FAILURE
        }
    }
}

/// CPU times at both edges of the window.
struct Edges {
    client: (CpuTimes, CpuTimes),
    server: Option<(CpuTimes, CpuTimes)>,
}

async fn load(args: &Args) -> Result<Value, String> {
    let shared = Arc::new(Shared::new()?);
    let message = connection::payload(args.size, args.binary);

    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        match connection::connect(&args.url).await {
            Ok(socket) => sockets.push(socket),
            Err(kind) => shared.error(kind),
        }
    }
    if sockets.is_empty() {
        return Err(format!("could not connect to {}", args.url));
    }
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|socket| {
            let (shared, message) = (Arc::clone(&shared), message.clone());
            tokio::spawn(async move { connection::run(socket, message, &shared).await })
        })
        .collect();

    tokio::time::sleep(args.warmup).await;
    let server_before = server_cpu(args.server_pid)?;
    let client_before = CpuTimes::of(None)?;
    let opened = Instant::now();
    shared.set_phase(Phase::Measure);
    tokio::time::sleep(args.duration).await;
    shared.set_phase(Phase::Stop);
    let window = opened.elapsed();
    let client_after = CpuTimes::of(None)?;
    let server_after = server_cpu(args.server_pid)?;
    let peak_rss_kib = args.server_pid.map(procfs::peak_rss_kib).transpose()?;

    // Every connection finishes its round trip and closes; none may take longer than this.
    let deadline =
        tokio::time::Instant::now() + IO_TIMEOUT * 2 + CLOSE_TIMEOUT + Duration::from_secs(1);
    for task in tasks {
        let abort = task.abort_handle();
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => shared.error("task_failed"),
            Err(_) => {
                abort.abort();
                shared.error("stop_timeout");
            }
        }
    }

    let edges = Edges {
        client: (client_before, client_after),
        server: server_before.zip(server_after),
    };
    Ok(report(args, &shared, window, &edges, peak_rss_kib))
}

fn server_cpu(pid: Option<u32>) -> Result<Option<CpuTimes>, String> {
    pid.map(|pid| CpuTimes::of(Some(pid))).transpose()
}

/// The JSON report, in the layout of `tether bench`.
fn report(
    args: &Args,
    shared: &Shared,
    window: Duration,
    edges: &Edges,
    peak_rss_kib: Option<u64>,
) -> Value {
    let messages = shared.messages.load(Ordering::Relaxed);
    let per_message = |(before, after): (CpuTimes, CpuTimes)| {
        let used = after.since(before);
        let micros =
            |time: Duration| (messages > 0).then(|| time.as_secs_f64() * 1e6 / messages as f64);
        json!({
            "cpu_user_us_per_msg": micros(used.user),
            "cpu_system_us_per_msg": micros(used.system),
            "cpu_us_per_msg": micros(used.user + used.system),
        })
    };
    let latency = match shared.latency_us.lock() {
        Ok(histogram) if messages > 0 => json!({
            "p50": histogram.value_at_quantile(0.50),
            "p99": histogram.value_at_quantile(0.99),
            "p999": histogram.value_at_quantile(0.999),
            "max": histogram.max(),
        }),
        _ => json!({"p50": null, "p99": null, "p999": null, "max": null}),
    };
    let mut errors = shared
        .errors
        .lock()
        .map(|errors| errors.clone())
        .unwrap_or_default();
    if messages == 0 {
        errors.insert("no_messages", 1);
    }
    let mut report = json!({
        "mode": "load",
        "generator": "tungstenite-load",
        "url": args.url,
        "connections": args.connections,
        "size": args.size,
        "binary": args.binary,
        "duration_s": window.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "messages": messages,
        "messages_per_sec": messages as f64 / window.as_secs_f64(),
        "latency_us": latency,
        "errors": errors,
        "client": per_message(edges.client),
    });
    if let (Some(pid), Some(server)) = (args.server_pid, edges.server) {
        let mut server = per_message(server);
        server["pid"] = json!(pid);
        server["peak_rss_kib"] = json!(peak_rss_kib);
        report["server"] = server;
    }
    report
}

/// Writes the report, prints the summary line, and exits 0 only for a run without errors.
fn finish(args: &Args, report: &Value) -> ExitCode {
    let text = match serde_json::to_string_pretty(report) {
        Ok(text) => text,
        Err(error) => {
            eprintln!("tungstenite-load: cannot encode the report: {error}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.json
        && let Err(error) = std::fs::write(path, format!("{text}\n"))
    {
        eprintln!("tungstenite-load: cannot write {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    let errors = report["errors"]
        .as_object()
        .map_or(0, |errors| errors.len());
    if !args.quiet {
        println!(
            "{} connections x {} B {}: {:.0} msg/s, p50 {} us, p99 {} us, client {:.2} us/msg, errors {}",
            args.connections,
            args.size,
            if args.binary { "binary" } else { "text" },
            report["messages_per_sec"].as_f64().unwrap_or(0.0),
            report["latency_us"]["p50"],
            report["latency_us"]["p99"],
            report["client"]["cpu_us_per_msg"]
                .as_f64()
                .unwrap_or(f64::NAN),
            report["errors"],
        );
    }
    if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
