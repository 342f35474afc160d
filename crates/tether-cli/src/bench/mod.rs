//! `tether bench`: the load generator. Load mode drives closed-loop echo traffic and reports
//! throughput, latency percentiles and CPU per message on both sides; idle mode holds many
//! connections open and reports the server's memory per connection. Every echo is checked
//! and every error is counted by kind, never dropped.

#![allow(clippy::indexing_slicing)] // Indexes JSON values this module built itself, never peer input.

mod idle;
mod load;
mod procfs;
mod report;

use std::net::IpAddr;
use std::path::PathBuf;

use clap::Args;

/// Options of `tether bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// The echo server to load, e.g. ws://127.0.0.1:9001/.
    url: String,
    /// Concurrent connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Message size in bytes.
    #[arg(long, default_value_t = 20)]
    size: usize,
    /// Seconds to measure, after the warm-up.
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Send binary messages (text by default).
    #[arg(long)]
    binary: bool,
    /// Offer permessage-deflate (the server decides; without it nothing is offered), and
    /// send text as JSON-like chat lines, which compress as real traffic does.
    #[arg(long)]
    deflate: bool,
    /// Total messages per second across all connections; closed loop when absent.
    #[arg(long)]
    rate: Option<f64>,
    /// The server's process id: report its CPU per message and peak memory.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Idle mode: open the connections, measure the server's memory, hold, close.
    #[arg(long)]
    idle: bool,
    /// In idle mode, send one echo on every connection and measure again.
    #[arg(long)]
    echo_once: bool,
    /// In idle mode, seconds to hold the connections after measuring.
    #[arg(long, default_value_t = 1.0)]
    hold: f64,
    /// In idle mode, local addresses to connect from in turn (for more than ~28,000
    /// connections from one address), comma-separated.
    #[arg(long, value_delimiter = ',')]
    source_addrs: Option<Vec<IpAddr>>,
}

/// A short, stable name for an error's kind, used to count errors.
pub(crate) fn error_kind_name(error: &tether::Error) -> String {
    format!("{:?}", error.kind())
}

pub(crate) fn run(args: &BenchArgs) -> Result<(), String> {
    if args.connections == 0 {
        return Err("expected at least 1 connection, found 0".to_owned());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    let report = runtime.block_on(async {
        if args.idle {
            idle::run(args).await
        } else {
            load::run(args).await
        }
    })?;
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).map_err(|error| error.to_string())?;
        std::fs::write(path, text + "\n")
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    }
    let failures: u64 = report["errors"]
        .as_object()
        .map(|map| map.values().filter_map(serde_json::Value::as_u64).sum())
        .unwrap_or(0);
    if failures > 0 {
        return Err(format!("{failures} error(s) during the run"));
    }
    Ok(())
}
