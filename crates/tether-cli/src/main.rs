//! The `tether` command-line tool: `serve` (the demo chat), `connect` (a wscat-like client),
//! `codes` (the error-code registry), `probe` (checks any server's error handling), an echo
//! server for conformance and benchmarks, the Autobahn TestSuite client driver, the load
//! generator, and a proxy that injects network faults.

mod autobahn;
mod bench;
mod codes;
mod connect;
mod echo;
mod probe;
mod proxy;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc instead of glibc's malloc: every tokio task and every socket's readiness state is
/// a block aligned to 128 bytes, which glibc pads with fragments it rarely reuses (a third of
/// an idle connection's memory); jemalloc's size classes hold them exactly, and it is at least
/// as fast for the rest. `scripts/bench idle` measures both (`--no-default-features` builds
/// without it).
#[cfg(all(
    feature = "jemalloc",
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tether: WebSocket tools in which failure is a first-class citizen.
#[derive(Debug, Parser)]
#[command(name = "tether", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an echo server: every text and binary message is sent back as it came.
    Echo(echo::EchoArgs),
    /// Drive the Autobahn TestSuite's fuzzing server as a client (getCaseCount, runCase for
    /// every case, updateReports).
    AutobahnClient(autobahn::AutobahnArgs),
    /// Load an echo server and report throughput, latency and CPU per message (or, with
    /// --idle, the server's memory per idle connection).
    Bench(bench::BenchArgs),
    /// Connect to a WebSocket server, send lines or messages and print what comes back
    /// (like wscat); errors come with a hint and an exit status that says whether to retry.
    Connect(connect::ConnectArgs),
    /// Serve the demo chat: the page at /, the JSON chat protocol at /ws, /healthz and
    /// /metrics; Ctrl-C or SIGTERM closes every connection with 1001.
    Serve(serve::ServeArgs),
    /// Print the close codes and application error codes: what each means, whether the
    /// connection survives it and whether a client should retry.
    Codes(codes::CodesArgs),
    /// Proxy TCP to a server while injecting network faults, changed at runtime over HTTP.
    Proxy(proxy::ProxyArgs),
    /// Check how any WebSocket server handles bad handshakes, bad frames, limits and floods.
    Probe(probe::ProbeArgs),
}

/// Parses a listen address such as `127.0.0.1:9001`.
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("expected an address like 127.0.0.1:9001, found {text:?}"))
}

/// Logs to stderr, filtered by `TETHER_LOG`, else at `default` (e.g. `info`).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TETHER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `connect` says itself what happens; the library's own warnings would repeat it.
    init_logging(match cli.command {
        Command::Connect(_) | Command::Probe(_) => "error",
        _ => "info",
    });
    let result = match cli.command {
        Command::Echo(args) => echo::run(&args),
        Command::AutobahnClient(args) => autobahn::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Serve(args) => serve::run(&args),
        Command::Codes(args) => codes::run(&args),
        Command::Proxy(args) => proxy::run(&args),
        // Its own exit statuses: 0 normal, 1 terminal error, 3 retryable error.
        Command::Connect(args) => return connect::run(&args),
        // 0 nothing failed, 1 a check failed, 2 a usage error.
        Command::Probe(args) => return probe::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tether: {error}");
            ExitCode::FAILURE
        }
    }
}
