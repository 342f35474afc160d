//! The command line of `tungstenite-load`: the `load` mode options of `tether bench`.

use std::path::PathBuf;
use std::time::Duration;

/// What one run does.
#[derive(Debug)]
pub(crate) struct Args {
    /// The server, e.g. `ws://127.0.0.1:9001/`.
    pub(crate) url: String,
    /// Connections, each with one message in flight.
    pub(crate) connections: usize,
    /// Payload bytes per message.
    pub(crate) size: usize,
    /// Binary messages instead of text.
    pub(crate) binary: bool,
    /// The measurement window.
    pub(crate) duration: Duration,
    /// Load before the window, not measured.
    pub(crate) warmup: Duration,
    /// The server's process, for its CPU time and peak RSS.
    pub(crate) server_pid: Option<u32>,
    /// Where to write the JSON report.
    pub(crate) json: Option<PathBuf>,
    /// No human-readable summary on stdout.
    pub(crate) quiet: bool,
}

pub(crate) const USAGE: &str = "\
usage: tungstenite-load URL --connections N --size BYTES --duration SECS --warmup SECS
                        [--binary] [--server-pid PID] [--json PATH] [--quiet]

Closed loop on tokio-tungstenite: each connection sends a message of BYTES bytes (text unless
--binary), waits for its echo, checks it and repeats. Writes the same JSON as `tether bench`.";

/// The longest run accepted, so that a typo cannot start an endless load.
const MAX_SECONDS: f64 = 3600.0;

impl Args {
    /// Parses `std::env::args()`.
    pub(crate) fn parse() -> Result<Self, String> {
        let mut url = None;
        let mut args = Args {
            url: String::new(),
            connections: 1,
            size: 20,
            binary: false,
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            server_pid: None,
            json: None,
            quiet: false,
        };
        let mut given = std::env::args().skip(1);
        while let Some(arg) = given.next() {
            let mut value = || given.next().ok_or_else(|| format!("{arg} expects a value"));
            match arg.as_str() {
                "--connections" => args.connections = number(&arg, &value()?)?,
                "--size" => args.size = number(&arg, &value()?)?,
                "--duration" => args.duration = seconds(&arg, &value()?)?,
                "--warmup" => args.warmup = seconds(&arg, &value()?)?,
                "--server-pid" => args.server_pid = Some(number(&arg, &value()?)?),
                "--json" => args.json = Some(PathBuf::from(value()?)),
                "--binary" => args.binary = true,
                "--quiet" => args.quiet = true,
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other if other.starts_with("--") => {
                    return Err(format!("unknown option {other:?}"));
                }
                other if url.is_none() => url = Some(other.to_owned()),
                other => return Err(format!("unexpected argument {other:?}")),
            }
        }
        args.url = url.ok_or_else(|| "expected a URL such as ws://127.0.0.1:9001/".to_owned())?;
        if args.connections == 0 {
            return Err("--connections must be at least 1".to_owned());
        }
        if args.duration.is_zero() {
            return Err("--duration must be more than 0".to_owned());
        }
        Ok(args)
    }
}

fn number<T: std::str::FromStr>(option: &str, text: &str) -> Result<T, String> {
    text.parse()
        .map_err(|_| format!("{option} expects a whole number, found {text:?}"))
}

fn seconds(option: &str, text: &str) -> Result<Duration, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=MAX_SECONDS).contains(&value) => Ok(Duration::from_secs_f64(value)),
        _ => Err(format!(
            "{option} expects seconds between 0 and {MAX_SECONDS}, found {text:?}"
        )),
    }
}
