//! `tether proxy`: a TCP proxy that injects network faults between WebSocket clients and their
//! server ([`tether::testing::FaultProxy`]), set from flags at start and changed while it runs
//! through the HTTP/JSON control API (`--control`).

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tether::testing::{DirectionFaults, FaultProxy, Faults};

/// Examples, as `--help` shows them.
const EXAMPLES: &str = "\
Examples:
  tether proxy --listen 127.0.0.1:9002 --upstream 127.0.0.1:9001 --latency-ms 100
  tether proxy --upstream 127.0.0.1:9001 --control 127.0.0.1:8475
  curl -X PUT -d '{\"downstream\":{\"blackhole\":true}}' http://127.0.0.1:8475/faults
  curl -X POST http://127.0.0.1:8475/reset
  curl http://127.0.0.1:8475/stats";

/// Options of `tether proxy`.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub(crate) struct ProxyArgs {
    /// The address clients connect to.
    #[arg(long, default_value = "127.0.0.1:9002", value_parser = crate::parse_listen)]
    listen: SocketAddr,
    /// The server every connection is forwarded to.
    #[arg(long, value_parser = crate::parse_listen)]
    upstream: SocketAddr,
    /// Serves the control API here: GET and PUT /faults (JSON), POST /reset, GET /stats.
    #[arg(long, value_parser = crate::parse_listen)]
    control: Option<SocketAddr>,
    /// The initial faults as JSON, the same as PUT /faults takes; the flags below change them.
    #[arg(long, value_name = "JSON", value_parser = parse_faults)]
    faults: Option<Faults>,
    /// Which way the per-direction flags below apply: upstream is client to server.
    #[arg(long, value_enum, default_value_t = Way::Both)]
    direction: Way,
    /// Adds this latency to every chunk, in milliseconds.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Varies the latency by up to this much either way, in milliseconds (order is kept).
    #[arg(long, value_name = "MS")]
    jitter_ms: Option<u64>,
    /// Passes on at most this many bytes per second.
    #[arg(long, value_name = "BYTES_PER_S")]
    bandwidth: Option<u64>,
    /// Writes in TCP segments of at most this many bytes.
    #[arg(long, value_name = "BYTES")]
    slice_bytes: Option<usize>,
    /// With --slice-bytes, waits this long between segments, in milliseconds.
    #[arg(long, value_name = "MS", requires = "slice_bytes")]
    slice_delay_ms: Option<u64>,
    /// Resets a connection (RST to both sides) once this many bytes went its way.
    #[arg(long, value_name = "BYTES")]
    reset_after_bytes: Option<u64>,
    /// A black hole: discards the data, keeps both sockets open (a half-open connection).
    #[arg(long)]
    blackhole: bool,
    /// Resets each connection (RST to both sides) this long after it opened, in milliseconds.
    #[arg(long, value_name = "MS")]
    reset_after_ms: Option<u64>,
    /// Passes a close (FIN) on this long after it came, in milliseconds.
    #[arg(long, value_name = "MS")]
    slow_close_ms: Option<u64>,
    /// Starts down: connections are refused until PUT /faults brings the proxy up.
    #[arg(long)]
    down: bool,
}

/// The directions the per-direction flags apply to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Way {
    /// Both directions.
    Both,
    /// Client to server.
    Upstream,
    /// Server to client.
    Downstream,
}

fn parse_faults(text: &str) -> Result<Faults, String> {
    serde_json::from_str(text).map_err(|error| format!("invalid faults: {error}"))
}

impl ProxyArgs {
    /// The faults to start with: `--faults`, changed by the other flags.
    fn faults(&self) -> Faults {
        let mut faults = self.faults.clone().unwrap_or_default();
        if matches!(self.direction, Way::Both | Way::Upstream) {
            faults.upstream = self.direction_faults(faults.upstream);
        }
        if matches!(self.direction, Way::Both | Way::Downstream) {
            faults.downstream = self.direction_faults(faults.downstream);
        }
        if let Some(ms) = self.reset_after_ms {
            faults = faults.with_reset_after(Duration::from_millis(ms));
        }
        if let Some(ms) = self.slow_close_ms {
            faults = faults.with_slow_close(Duration::from_millis(ms));
        }
        if self.down {
            faults = faults.with_down(true);
        }
        faults
    }

    fn direction_faults(&self, mut faults: DirectionFaults) -> DirectionFaults {
        if let Some(ms) = self.latency_ms {
            faults = faults.with_latency(Duration::from_millis(ms));
        }
        if let Some(ms) = self.jitter_ms {
            faults = faults.with_jitter(Duration::from_millis(ms));
        }
        if let Some(rate) = self.bandwidth {
            faults = faults.with_bandwidth(rate);
        }
        if let Some(bytes) = self.slice_bytes {
            let delay = Duration::from_millis(self.slice_delay_ms.unwrap_or(0));
            faults = faults.with_slices(bytes, delay);
        }
        if let Some(bytes) = self.reset_after_bytes {
            faults = faults.with_reset_after_bytes(bytes);
        }
        if self.blackhole {
            faults = faults.with_blackhole(true);
        }
        faults
    }
}

pub(crate) fn run(args: &ProxyArgs) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|error| format!("cannot start the runtime: {error}"))?;
    runtime.block_on(serve(args))
}

async fn serve(args: &ProxyArgs) -> Result<(), String> {
    let proxy = FaultProxy::bind(args.listen, args.upstream)
        .await
        .map_err(|error| format!("cannot listen on {}: {error}", args.listen))?;
    let faults = args.faults();
    if !faults.is_none() {
        let json = serde_json::to_string(&faults).unwrap_or_default();
        tracing::info!(faults = %json, "initial faults");
    }
    proxy.set_faults(faults).await;
    let control = match args.control {
        Some(addr) => Some(
            proxy
                .serve_control(addr)
                .await
                .map_err(|error| format!("cannot serve the control API on {addr}: {error}"))?,
        ),
        None => None,
    };
    let local = proxy.local_addr();
    match control {
        Some(control) => println!(
            "proxying {local} to {}, control API on http://{control}",
            args.upstream
        ),
        None => println!(
            "proxying {local} to {} (no control API: --control ADDR)",
            args.upstream
        ),
    }
    crate::serve::shutdown_signal().await;
    tracing::info!("stopping: closing every connection");
    proxy.shutdown().await;
    Ok(())
}
