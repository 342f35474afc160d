//! `tether probe URL`: checks how any WebSocket server handles what goes wrong, from refused
//! handshakes to malformed frames, oversized messages, floods and, with `--envelope`, the
//! JSON error contract.
//!
//! Each check opens its own connection(s), has a deadline (`--timeout`) and ends in `pass`,
//! `fail`, `warn` or `skip` with a one-line detail. Checks that need malformed input write
//! bytes by hand ([`raw`], [`frames`]); the envelope checks speak JSON through the library's
//! client.
//!
//! - [`protocol`]: the opening handshake, ping, close, UTF-8 and the 63-bit length;
//! - [`limits`]: the message size limit, and the load-shaped checks (a continuation flood,
//!   unread pings, a reset mid-frame, stalled handshakes), which only run against a loopback
//!   host unless `--aggressive` is given;
//! - [`envelope`]: the error messages of the reference envelope (`--envelope`);
//! - [`raw`], [`frames`] and [`tls`]: the connections, the frames on them and TLS;
//!   [`report`]: the table and the JSON.

mod envelope;
mod frames;
mod limits;
mod protocol;
mod raw;
mod report;
mod tls;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tether::client::{ClientBuilder, TlsConfig, WsUrl};
use tokio::time::{Instant, timeout, timeout_at};

use self::raw::Target;
use self::report::{Outcome, Report};

/// The exit statuses and the checks, as `--help` shows them.
const AFTER_HELP: &str = "\
Checks (in order):
  upgrade                 a normal upgrade is accepted (every other check needs it)
  handshake-no-key        no Sec-WebSocket-Key: 400
  handshake-version-8     Sec-WebSocket-Version: 8: 426 with Sec-WebSocket-Version
  handshake-huge-headers  64 KiB of headers: 431, 400 or a closed connection, not a hang
  ping-pong               a ping is answered by a pong with the same payload
  close-echo              close 1000 is echoed, then the server closes TCP
  invalid-utf8            a text message with invalid UTF-8: close 1007
  huge-length             a frame announcing 2^63-1 bytes: close 1009 or 1002 at once
  max-size                a message over the limit: close 1009 (--max-size, or searched)
  continuation-flood *    100,000 one-byte fragments: assembled, or 1009/1008
  unread-pings *          pings whose pongs are never read: others still served
  rst-mid-frame *         a reset in the middle of a frame: others still served
  stalled-handshakes *    50 half-sent handshakes: others still served
  envelope-* (--envelope) malformed JSON and an unknown type: error 4000 in the
                          reference envelope, the connection lives on, the request id is
                          echoed; a burst: 4005 with retry_after_ms, then close 1008
  * load-shaped: only against a loopback host, unless --aggressive

Exit status:
  0    no check failed (warnings and skips allowed)
  1    a check failed
  2    a usage error (a bad URL or flag)";

/// The largest `--timeout`.
const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The largest `--max-size`: the probe builds the message in memory.
const MAX_MAX_SIZE: u64 = 1 << 30;

/// Options of `tether probe`.
#[derive(Debug, Args)]
#[command(after_help = AFTER_HELP)]
pub(crate) struct ProbeArgs {
    /// The server's URL: ws://host:port/path or wss://... (ws:// when no scheme is given).
    url: String,
    /// Adds a request header to every upgrade, e.g. -H 'Authorization: Bearer TOKEN'
    /// (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Offers a subprotocol in every upgrade, in preference order (repeatable).
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// Sends this Origin header.
    #[arg(short = 'o', long)]
    origin: Option<String>,
    /// Puts PREFIX in front of the URL's path in every request the probe makes (handshake,
    /// frame and envelope checks alike): for a server mounted under a sub-path, e.g. behind
    /// a proxy at /api, or to aim one base URL at a route: ws://HOST --path-prefix /ws/echo.
    #[arg(long, value_name = "PREFIX", value_parser = parse_prefix)]
    path_prefix: Option<String>,
    /// Seconds each check (and each step of max-size) may wait for the server [default: 5].
    #[arg(long, value_name = "SECS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// The server's message size limit in bytes: max-size then checks that a message of
    /// this size is accepted and one byte more is refused with 1009, instead of searching.
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..=MAX_MAX_SIZE))]
    max_size: Option<u64>,
    /// Runs the load-shaped checks against a host that is not loopback too. Only against a
    /// server you own: they open dozens of connections and flood one.
    #[arg(long)]
    aggressive: bool,
    /// Runs the envelope checks: malformed JSON, an unknown type, the request id and the rate
    /// limit, answered by error messages in the reference envelope.
    #[arg(long)]
    envelope: bool,
    /// With --envelope: a message the server accepts (JSON), to check that the connection
    /// still answers after an error, e.g. --send '{"type":"ping","id":"1"}'.
    #[arg(long, value_name = "JSON", requires = "envelope", value_parser = parse_json)]
    send: Option<String>,
    /// Prints one JSON document instead of the table.
    #[arg(long)]
    json: bool,
    /// DANGEROUS: accepts any certificate for any name on wss:// (testing only).
    #[arg(long)]
    insecure: bool,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = crate::connect::parse_header(text)?;
    if value.bytes().any(|b| b.is_ascii_control()) {
        return Err(format!("control character in the value of {name:?}"));
    }
    Ok((name, value))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match crate::connect::parse_secs(text)? {
        secs if secs.is_zero() || secs > MAX_TIMEOUT => Err(format!(
            "expected a number of seconds above 0 and at most {}, found {text}",
            MAX_TIMEOUT.as_secs()
        )),
        secs => Ok(secs),
    }
}

fn parse_prefix(text: &str) -> Result<String, String> {
    let valid = text.starts_with('/')
        && text
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"?#".contains(&b));
    if valid {
        Ok(text.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "expected a path starting with / (no query), found {text:?}"
        ))
    }
}

fn parse_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(|_| text.to_owned())
        .map_err(|error| format!("expected a JSON message, found {text:?}: {error}"))
}

/// `prefix` (without a trailing slash) in front of `path` (which starts with `/`).
fn join_path(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        return path.to_owned();
    }
    match path.strip_prefix('/') {
        Some("") => prefix.to_owned(),
        Some(rest) if rest.starts_with('?') => format!("{prefix}{rest}"),
        _ => format!("{prefix}{path}"),
    }
}

/// What the checks share.
struct Ctx {
    /// Where raw connections go.
    target: Target,
    /// The URL the library's client connects to (with the prefix).
    url: String,
    /// How long each check waits.
    timeout: Duration,
    /// `--max-size`.
    max_size: Option<u64>,
    /// `--send`.
    send: Option<String>,
    insecure: bool,
}

impl Ctx {
    /// The deadline of a wait that starts now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.timeout
    }

    /// A library client with the run's headers, subprotocols and TLS, no proxy, no
    /// compression and no heartbeat of its own.
    fn client(&self) -> ClientBuilder {
        let mut builder = ClientBuilder::new()
            .no_proxy()
            .deflate(None)
            .ping_interval(None)
            .connect_timeout(self.timeout)
            .close_timeout(self.timeout);
        for (name, value) in &self.target.headers {
            builder = builder.header(name.clone(), value.clone());
        }
        for protocol in &self.target.protocols {
            builder = builder.protocol(protocol.clone());
        }
        if let Some(origin) = &self.target.origin {
            builder = builder.origin(origin.clone());
        }
        if self.insecure {
            builder = builder.tls(TlsConfig::DangerousAcceptAnyCertificate);
        }
        builder
    }
}

/// The kind of a check, which decides when it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Protocol,
    /// Opens many connections or floods one: loopback only unless `--aggressive`.
    Load,
    /// Only with `--envelope`.
    Envelope,
}

/// Every check, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Upgrade,
    NoKey,
    Version8,
    HugeHeaders,
    PingPong,
    CloseEcho,
    InvalidUtf8,
    HugeLength,
    MaxSize,
    ContinuationFlood,
    UnreadPings,
    RstMidFrame,
    StalledHandshakes,
    EnvelopeMalformed,
    EnvelopeRecovers,
    EnvelopeUnknownType,
    EnvelopeRequestId,
    EnvelopeRateLimit,
}

const CHECKS: [Check; 18] = [
    Check::Upgrade,
    Check::NoKey,
    Check::Version8,
    Check::HugeHeaders,
    Check::PingPong,
    Check::CloseEcho,
    Check::InvalidUtf8,
    Check::HugeLength,
    Check::MaxSize,
    Check::ContinuationFlood,
    Check::UnreadPings,
    Check::RstMidFrame,
    Check::StalledHandshakes,
    Check::EnvelopeMalformed,
    Check::EnvelopeRecovers,
    Check::EnvelopeUnknownType,
    Check::EnvelopeRequestId,
    Check::EnvelopeRateLimit,
];

impl Check {
    /// The stable name, in the table and the JSON.
    fn name(self) -> &'static str {
        match self {
            Self::Upgrade => "upgrade",
            Self::NoKey => "handshake-no-key",
            Self::Version8 => "handshake-version-8",
            Self::HugeHeaders => "handshake-huge-headers",
            Self::PingPong => "ping-pong",
            Self::CloseEcho => "close-echo",
            Self::InvalidUtf8 => "invalid-utf8",
            Self::HugeLength => "huge-length",
            Self::MaxSize => "max-size",
            Self::ContinuationFlood => "continuation-flood",
            Self::UnreadPings => "unread-pings",
            Self::RstMidFrame => "rst-mid-frame",
            Self::StalledHandshakes => "stalled-handshakes",
            Self::EnvelopeMalformed => "envelope-malformed",
            Self::EnvelopeRecovers => "envelope-recovers",
            Self::EnvelopeUnknownType => "envelope-unknown-type",
            Self::EnvelopeRequestId => "envelope-request-id",
            Self::EnvelopeRateLimit => "envelope-rate-limit",
        }
    }

    fn kind(self) -> Kind {
        match self {
            Self::ContinuationFlood
            | Self::UnreadPings
            | Self::RstMidFrame
            | Self::StalledHandshakes => Kind::Load,
            Self::EnvelopeMalformed
            | Self::EnvelopeRecovers
            | Self::EnvelopeUnknownType
            | Self::EnvelopeRequestId
            | Self::EnvelopeRateLimit => Kind::Envelope,
            _ => Kind::Protocol,
        }
    }

    /// The longest the check may take, a guard over its own deadlines: max-size makes up to
    /// [`limits::MAX_STEPS`] attempts, each with its deadline and the time to move its bytes.
    fn budget(self, timeout: Duration) -> Duration {
        match self {
            Self::MaxSize => (timeout + Duration::from_secs(5)) * (limits::MAX_STEPS + 1),
            _ => timeout * 4 + Duration::from_secs(5),
        }
    }

    async fn run(self, ctx: &Ctx) -> Outcome {
        match self {
            Self::Upgrade => protocol::upgrade(ctx).await,
            Self::NoKey => protocol::no_key(ctx).await,
            Self::Version8 => protocol::version_8(ctx).await,
            Self::HugeHeaders => protocol::huge_headers(ctx).await,
            Self::PingPong => protocol::ping_pong(ctx).await,
            Self::CloseEcho => protocol::close_echo(ctx).await,
            Self::InvalidUtf8 => protocol::invalid_utf8(ctx).await,
            Self::HugeLength => protocol::huge_length(ctx).await,
            Self::MaxSize => limits::max_size(ctx).await,
            Self::ContinuationFlood => limits::continuation_flood(ctx).await,
            Self::UnreadPings => limits::unread_pings(ctx).await,
            Self::RstMidFrame => limits::rst_mid_frame(ctx).await,
            Self::StalledHandshakes => limits::stalled_handshakes(ctx).await,
            Self::EnvelopeMalformed => envelope::malformed(ctx).await,
            Self::EnvelopeRecovers => envelope::recovers(ctx).await,
            Self::EnvelopeUnknownType => envelope::unknown_type(ctx).await,
            Self::EnvelopeRequestId => envelope::request_id(ctx).await,
            Self::EnvelopeRateLimit => envelope::rate_limit(ctx).await,
        }
    }
}

/// Runs `tether probe`.
pub(crate) fn run(args: &ProbeArgs) -> ExitCode {
    let text = if args.url.contains("://") {
        args.url.clone()
    } else {
        format!("ws://{}", args.url)
    };
    let url = match WsUrl::parse(&text) {
        Ok(url) => url,
        Err(error) => {
            eprintln!("tether probe: {error}");
            eprintln!("hint: expected ws://host:port/path or wss://host/path");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tether probe: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let report = runtime.block_on(probe(args, &url));
    report.finish();
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Resolves the host and finds the address that accepts connections: every check then
/// dials that one. Returns it and whether every address of the host is loopback.
async fn locate(url: &WsUrl, deadline: Instant) -> Result<(SocketAddr, bool), String> {
    let found = timeout_at(
        deadline,
        tokio::net::lookup_host((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| format!("resolving {} timed out", url.host))?
    .map_err(|error| format!("cannot resolve {}: {error}", url.host))?;
    let addrs: Vec<SocketAddr> = found.collect();
    let loopback = !addrs.is_empty() && addrs.iter().all(|a| a.ip().to_canonical().is_loopback());
    let mut last = format!("{} resolved to no address", url.host);
    for addr in &addrs {
        match timeout_at(deadline, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => return Ok((*addr, loopback)),
            Ok(Err(error)) => last = format!("cannot connect to {addr}: {error}"),
            Err(_) => last = format!("connecting to {addr} timed out"),
        }
    }
    Err(last)
}

async fn probe(args: &ProbeArgs, url: &WsUrl) -> Report {
    let path = join_path(args.path_prefix.as_deref().unwrap_or_default(), &url.path);
    let scheme = if url.secure { "wss" } else { "ws" };
    let effective = format!("{scheme}://{}{path}", url.host_header());
    let name_width = CHECKS.iter().map(|c| c.name().len()).max().unwrap_or(0);
    let mut report = Report::new(effective.clone(), args.json, name_width);
    let timeout_each = args.timeout.unwrap_or(Duration::from_secs(5));

    let tls = if url.secure {
        tls::config(args.insecure).map(Some)
    } else {
        Ok(None)
    };
    let located = match tls {
        Ok(tls) => locate(url, Instant::now() + timeout_each)
            .await
            .map(|(addr, loopback)| (addr, loopback, tls)),
        Err(error) => Err(error),
    };
    let (addr, loopback, tls) = match located {
        Ok(found) => found,
        Err(error) => {
            report.add(Check::Upgrade.name(), Outcome::fail(error));
            for check in CHECKS.iter().skip(1) {
                report.add(check.name(), Outcome::skip("the server cannot be reached"));
            }
            return report;
        }
    };
    let ctx = Ctx {
        target: Target {
            addr,
            host: url.host.clone(),
            host_header: url.host_header(),
            path,
            headers: args.headers.clone(),
            protocols: args.subprotocols.clone(),
            origin: args.origin.clone(),
            tls,
        },
        url: effective,
        timeout: timeout_each,
        max_size: args.max_size,
        send: args.send.clone(),
        insecure: args.insecure,
    };

    let mut upgraded = true;
    for check in CHECKS {
        let outcome = if !upgraded {
            Outcome::skip("a normal upgrade failed (see upgrade)")
        } else if check.kind() == Kind::Load && !loopback && !args.aggressive {
            let host = if url.host == addr.ip().to_string() {
                url.host.clone()
            } else {
                format!("{} ({})", url.host, addr.ip())
            };
            Outcome::skip(format!(
                "load-shaped: runs only against a loopback host, not {host}, unless --aggressive"
            ))
        } else if check.kind() == Kind::Envelope && !args.envelope {
            Outcome::skip("--envelope not given")
        } else {
            let budget = check.budget(ctx.timeout);
            timeout(budget, check.run(&ctx)).await.unwrap_or_else(|_| {
                Outcome::fail(format!(
                    "the check did not finish within {}",
                    raw::secs(budget)
                ))
            })
        };
        if check == Check::Upgrade && outcome.status == report::Status::Fail {
            upgraded = false;
        }
        report.add(check.name(), outcome);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_join_the_url_path() {
        assert_eq!(join_path("", "/ws?x=1"), "/ws?x=1");
        assert_eq!(join_path("/api", "/"), "/api");
        assert_eq!(join_path("/api", "/ws"), "/api/ws");
        assert_eq!(join_path("/api", "/?name=a"), "/api?name=a");
        assert_eq!(parse_prefix("/ws/").as_deref(), Ok("/ws"));
        assert!(parse_prefix("ws").is_err());
        assert!(parse_prefix("/ws?x").is_err());
    }

    #[test]
    fn check_names_are_unique_and_kebab_case() {
        for (i, check) in CHECKS.iter().enumerate() {
            let name = check.name();
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'-' || b.is_ascii_digit())
            );
            assert!(CHECKS.iter().skip(i + 1).all(|other| other.name() != name));
        }
    }

    #[test]
    fn flags_are_checked() {
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("1e30").is_err());
        assert!(parse_timeout("1.5").is_ok());
        assert!(parse_json("{\"type\":").is_err());
        assert!(parse_header("X-A: b\u{7}").is_err());
    }
}
