//! `tether connect URL`: a command-line WebSocket client in the manner of wscat, which says
//! what went wrong and what to try next.
//!
//! Interactive on a terminal (each line typed is a text message), piped otherwise (each line
//! of standard input is sent, then it waits for `-w` or for the server to close), or scripted
//! with `-x` (send these messages, wait `-w` for replies, close with 1000). Received messages
//! are printed as `< text` or `< [binary N bytes] hex`; the end as `closed: CODE NAME: reason`;
//! a failure as `error (KIND): detail` on standard error, followed by a `hint:` line (and the
//! body of a refused handshake). The exit status tells a script whether retrying may help
//! (see [`EXIT_CODES`]). With `--reconnect`, retryable endings reconnect with exponential
//! backoff and jitter.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tether::client::{Client, ClientBuilder, Proxy, TlsConfig};
use tether::codes::{Advice, Ending, Registry, retry_advice};
use tether::{CloseFrame, CloseReason, Error, ErrorKind, Message, Side, TimeoutPhase};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// The exit statuses, as `--help` shows them.
const EXIT_CODES: &str = "\
Exit status:
  0    the server closed normally (1000 or 1001), or the script (-x) or the input ended
       and the connection was closed with 1000
  1    a terminal failure, retrying will not help: a refused handshake with a 4xx status,
       a close with 1002, 1003, 1007-1010 or a non-retryable application code, a TLS
       failure, a bad URL
  2    a usage error
  3    a retryable failure, try again later: a 5xx, 408 or 429 refusal, a timeout, a refused
       or dropped connection (1006), a close with 1005, 1011-1014 or a retryable
       application code
  130  interrupted (Ctrl-C) before any connection was made";

/// How long `-x` waits for replies when `-w` is not given.
const DEFAULT_SCRIPT_WAIT: Duration = Duration::from_secs(2);
/// The first reconnect delay; it doubles on each consecutive failure, up to the maximum.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The longest reconnect delay (before the server's `Retry-After`, which may be longer).
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A connection that stayed open this long resets the backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);
/// How many bytes of a binary message are shown in hex.
const HEX_SHOWN: usize = 32;
/// How many bytes of a refused handshake's body are shown.
const BODY_SHOWN: usize = 2048;

/// Options of `tether connect`.
#[derive(Debug, Args)]
#[command(after_help = EXIT_CODES)]
pub(crate) struct ConnectArgs {
    /// The server's URL: ws://host:port/path or wss://... (ws:// when no scheme is given).
    url: String,
    /// Adds a request header, e.g. -H 'Authorization: Bearer TOKEN' (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Offers a subprotocol, in preference order (repeatable).
    #[arg(short = 's', long = "subprotocol", value_name = "PROTOCOL")]
    subprotocols: Vec<String>,
    /// Sends this Origin header.
    #[arg(short = 'o', long)]
    origin: Option<String>,
    /// Connects through this proxy: http://[user:pass@]host:port or socks5://... (default:
    /// HTTPS_PROXY / HTTP_PROXY / ALL_PROXY unless NO_PROXY matches).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Never uses a proxy, whatever the environment says.
    #[arg(long, conflicts_with = "proxy")]
    no_proxy: bool,
    /// DANGEROUS: accepts any certificate for any name on wss://, so anyone on the path can
    /// read and change the traffic. For testing against self-signed servers only.
    #[arg(long)]
    insecure: bool,
    /// Seconds between pings that check the server is alive (0: no pings) [default: 20].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    ping_interval: Option<Duration>,
    /// Reconnects after a retryable failure (exit status 3), with exponential backoff and
    /// jitter, honouring the server's Retry-After.
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: gives up after this many consecutive retries.
    #[arg(long, value_name = "N", requires = "reconnect")]
    max_retries: Option<u32>,
    /// Sends this text message once connected (repeatable), waits -w for replies, then closes
    /// with 1000 and exits. Standard input is not read.
    #[arg(short = 'x', long = "execute", value_name = "MSG")]
    execute: Vec<String>,
    /// Seconds to wait for replies after the last message (-x, or the end of standard input)
    /// before closing with 1000 [default with -x: 2; piped input: until the server closes].
    #[arg(short = 'w', long = "wait", value_name = "SECS", value_parser = parse_secs)]
    wait: Option<Duration>,
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', found {text:?}"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("invalid header name in {text:?}"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

fn parse_secs(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("expected a number of seconds, found {text:?}"))
}

/// What the process exits with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Terminal,
    Retryable,
    Interrupted,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Terminal => 1,
            Self::Retryable => 3,
            Self::Interrupted => 130,
        }
    }
}

/// How one connection (or attempt) ended.
#[derive(Debug)]
enum End {
    /// We closed with 1000 (the script or the input ended, or Ctrl-C) and the server answered.
    Done,
    /// The server closed, or the connection dropped (1006).
    Closed(CloseReason),
    /// Connecting failed, or the connection failed.
    Failed(Error),
}

impl End {
    /// The exit status, and whether to reconnect (with the server's hint, if any).
    fn judge(&self) -> (Status, Option<Option<Duration>>) {
        match self {
            Self::Done => (Status::Ok, None),
            Self::Closed(reason) => {
                let ending = match reason {
                    CloseReason::Frame(frame) => Ending::Closed(frame.code),
                    CloseReason::NoStatus => Ending::NoStatus,
                    _ => Ending::Abnormal,
                };
                let advice = retry_advice(ending, &Registry::default(), None);
                let retry = match advice {
                    Advice::Reconnect { after } => Some(after),
                    _ => None,
                };
                let status = match reason.display_code() {
                    1000 | 1001 => Status::Ok,
                    _ if retry.is_some() => Status::Retryable,
                    _ => Status::Terminal,
                };
                (status, retry)
            }
            Self::Failed(error) if error.is_retryable() => {
                (Status::Retryable, Some(error.retry_after()))
            }
            Self::Failed(_) => (Status::Terminal, None),
        }
    }
}

/// Where messages to send come from.
struct Input {
    /// The `-x` messages, sent on each connection.
    script: Vec<String>,
    /// Lines of standard input; `None` with `-x` and once standard input has ended.
    lines: Option<mpsc::UnboundedReceiver<String>>,
    /// Whether standard input is a terminal: its end closes the connection at once.
    interactive: bool,
}

impl Input {
    fn new(args: &ConnectArgs) -> Self {
        if !args.execute.is_empty() {
            return Self {
                script: args.execute.clone(),
                lines: None,
                interactive: false,
            };
        }
        Self {
            script: Vec::new(),
            lines: Some(read_stdin()),
            interactive: std::io::stdin().is_terminal(),
        }
    }

    fn is_script(&self) -> bool {
        !self.script.is_empty()
    }
}

/// Reads standard input on a thread of its own (a blocking read would otherwise hold the
/// runtime open at exit), one message per line.
fn read_stdin() -> mpsc::UnboundedReceiver<String> {
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(mut line) = line else { break };
            if line.ends_with('\r') {
                line.pop();
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Runs `tether connect`.
pub(crate) fn run(args: &ConnectArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tether: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    ExitCode::from(runtime.block_on(session(args)).code())
}

async fn session(args: &ConnectArgs) -> Status {
    let url = if args.url.contains("://") {
        args.url.clone()
    } else {
        format!("ws://{}", args.url)
    };
    let builder = match builder(args) {
        Ok(builder) => builder,
        Err(error) => {
            let end = End::Failed(error);
            report(&end);
            return end.judge().0;
        }
    };
    if args.insecure && url.starts_with("wss:") {
        eprintln!("warning: --insecure: the server's certificate is not checked");
    }
    let (interrupt, mut interrupted) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt.send(true);
        }
    });
    let mut input = Input::new(args);
    let mut status = Status::Interrupted;
    let mut retries = 0u32;
    loop {
        let connecting = tokio::select! {
            result = builder.connect(&url) => result,
            _ = interrupted.wait_for(|&stop| stop) => return status,
        };
        let end = match connecting {
            Ok((mut client, response)) => {
                match &response.protocol {
                    Some(protocol) => eprintln!("connected to {url} (subprotocol {protocol})"),
                    None => eprintln!("connected to {url}"),
                }
                let opened = Instant::now();
                let end = converse(&mut client, &mut input, args.wait, &mut interrupted).await;
                if opened.elapsed() >= STABLE_CONNECTION {
                    retries = 0;
                }
                end
            }
            Err(error) => End::Failed(error),
        };
        report(&end);
        let (judged, retry) = end.judge();
        status = judged;
        let Some(hint) = retry.filter(|_| args.reconnect && !*interrupted.borrow()) else {
            return status;
        };
        if args.max_retries.is_some_and(|max| retries >= max) {
            eprintln!("giving up after {retries} retries");
            return status;
        }
        retries = retries.saturating_add(1);
        let delay = backoff(retries, hint);
        eprintln!(
            "reconnecting in {:.1} s (retry {retries})",
            delay.as_secs_f64()
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = interrupted.wait_for(|&stop| stop) => return status,
        }
    }
}

fn builder(args: &ConnectArgs) -> Result<ClientBuilder, Error> {
    let mut builder = Client::builder();
    for (name, value) in &args.headers {
        builder = builder.header(name.clone(), value.clone());
    }
    for protocol in &args.subprotocols {
        builder = builder.protocol(protocol.clone());
    }
    if let Some(origin) = &args.origin {
        builder = builder.origin(origin.clone());
    }
    if let Some(proxy) = &args.proxy {
        builder = builder.proxy(Proxy::parse(proxy)?);
    }
    if args.no_proxy {
        builder = builder.no_proxy();
    }
    if args.insecure {
        builder = builder.tls(TlsConfig::DangerousAcceptAnyCertificate);
    }
    if let Some(interval) = args.ping_interval {
        builder = builder.ping_interval((!interval.is_zero()).then_some(interval));
    }
    Ok(builder)
}

/// One open connection: sends the script or the input lines, prints what arrives, and closes
/// with 1000 when the script's wait is over, the input ended, or Ctrl-C was pressed.
async fn converse(
    client: &mut Client,
    input: &mut Input,
    wait: Option<Duration>,
    interrupted: &mut watch::Receiver<bool>,
) -> End {
    let mut deadline = None;
    let mut close_now = false;
    if input.is_script() {
        for text in &input.script {
            if let Err(error) = client.send(Message::text(text.as_str())).await {
                if error.kind() == ErrorKind::ConnectionClosed {
                    break; // The next recv says how it ended.
                }
                return End::Failed(error);
            }
        }
        deadline = Some(Instant::now() + wait.unwrap_or(DEFAULT_SCRIPT_WAIT));
    } else if input.lines.is_none() {
        // Standard input ended on an earlier connection.
        match wait {
            Some(wait) => deadline = Some(Instant::now() + wait),
            None => close_now = input.interactive,
        }
    }
    while !close_now {
        tokio::select! {
            next = client.recv() => match next {
                Some(Ok(message)) => print_message(&message),
                Some(Err(error)) => return ended_by(error),
                None => {
                    let reason = client.close_info().map_or(CloseReason::Abnormal, |info| info.reason);
                    return End::Closed(reason);
                }
            },
            line = next_line(&mut input.lines), if input.lines.is_some() => match line {
                Some(line) => {
                    if let Err(error) = client.send(Message::text(line)).await {
                        if error.kind() != ErrorKind::ConnectionClosed {
                            return End::Failed(error);
                        }
                        // Closing or closed: the next recv says how it ended.
                    }
                }
                None => {
                    input.lines = None;
                    match wait {
                        Some(wait) => deadline = Some(Instant::now() + wait),
                        None => close_now = input.interactive,
                    }
                }
            },
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                close_now = true;
            }
            _ = interrupted.wait_for(|&stop| stop) => close_now = true,
        }
    }
    match client.close(Some(CloseFrame::normal())).await {
        Ok(()) => match client.close_info() {
            Some(info) if info.initiated_by == Side::Remote => End::Closed(info.reason),
            _ => End::Done,
        },
        Err(error) => ended_by(error),
    }
}

async fn next_line(lines: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match lines {
        Some(lines) => lines.recv().await,
        None => std::future::pending().await,
    }
}

/// A receive error: a dropped connection is a close (1006); anything else is a failure.
fn ended_by(error: Error) -> End {
    if let Some(info) = error.close_info() {
        return End::Closed(info.reason.clone());
    }
    if error.is_abnormal_closure() {
        return End::Closed(CloseReason::Abnormal);
    }
    End::Failed(error)
}

fn print_message(message: &Message) {
    match message.as_text() {
        Some(text) => println!("< {text}"),
        None => {
            let payload = message.payload();
            let shown: String = payload
                .iter()
                .take(HEX_SHOWN)
                .map(|byte| format!("{byte:02x}"))
                .collect();
            let more = if payload.len() > HEX_SHOWN { "…" } else { "" };
            println!("< [binary {} bytes] {shown}{more}", payload.len());
        }
    }
}

/// Prints how a connection ended: the close line on standard output, a failure and its hint
/// on standard error.
fn report(end: &End) {
    match end {
        End::Done => println!("closed: 1000 {}", close_name(1000)),
        End::Closed(reason) => {
            let code = reason.display_code();
            match reason.reason() {
                "" => println!("closed: {code} {}", close_name(code)),
                text => println!("closed: {code} {}: {text}", close_name(code)),
            }
            if let Some(hint) = close_hint(code) {
                eprintln!("hint: {hint}");
            }
        }
        End::Failed(error) => {
            eprintln!("error ({:?}): {error}", error.kind());
            eprintln!("hint: {}", error_hint(error));
            if let Some(refused) = error.bad_status() {
                if !refused.body.is_empty() {
                    let body = refused.body.get(..BODY_SHOWN).unwrap_or(&refused.body);
                    let more = if refused.body.len() > BODY_SHOWN {
                        "…"
                    } else {
                        ""
                    };
                    eprintln!("body: {}{more}", String::from_utf8_lossy(body).trim_end());
                }
            }
        }
    }
}

/// The name of a close code: the standard names, the registry's for application codes.
fn close_name(code: u16) -> &'static str {
    match code {
        1000 => "normal closure",
        1001 => "going away",
        1002 => "protocol error",
        1003 => "unsupported data",
        1005 => "no status",
        1006 => "abnormal closure",
        1007 => "invalid payload",
        1008 => "policy violation",
        1009 => "message too big",
        1010 => "mandatory extension",
        1011 => "internal error",
        1012 => "service restart",
        1013 => "try again later",
        1014 => "bad gateway",
        4000..=4999 => Registry::default()
            .get(code)
            .map_or("application code", |registered| registered.name),
        3000..=3999 => "application code",
        _ => "reserved code",
    }
}

fn close_hint(code: u16) -> Option<&'static str> {
    Some(match code {
        1002 => "the server saw a protocol violation on this side",
        1003 => "the server does not accept this kind of message (text or binary)",
        1007 => "the server rejected a message's content (invalid UTF-8 or format)",
        1008 => "the server refused what was sent (policy violation): check the messages",
        1009 => "a message was over the server's size limit",
        1010 => "the server expected an extension this client did not offer",
        1005 | 1006 | 1011..=1014 => {
            "the connection ended on the server's side: retry later (--reconnect does)"
        }
        4003 => "the server requires (new) credentials: try -H 'Authorization: Bearer ...'",
        _ => return None,
    })
}

/// A short hint for a failure: what to check or try next.
fn error_hint(error: &Error) -> String {
    match error.kind() {
        ErrorKind::BadStatus => match error.bad_status() {
            Some(refused) => status_hint(refused.status, error.retry_after(), &refused.headers),
            None => "the server refused the upgrade".to_owned(),
        },
        ErrorKind::Tls => "the TLS handshake failed (untrusted or mismatched certificate?); \
             --insecure skips the check, for testing only"
            .to_owned(),
        ErrorKind::Proxy => match error.proxy_code() {
            Some(407) => "the proxy requires credentials: put them in the proxy URL, \
                 --proxy http://user:password@host:port"
                .to_owned(),
            Some(403) => "the proxy refused to connect to this destination".to_owned(),
            _ if error.is_retryable() => {
                "the proxy could not be reached or could not reach the server: \
                 check --proxy (or HTTPS_PROXY / HTTP_PROXY), or retry later"
                    .to_owned()
            }
            _ => "the proxy refused the tunnel: check --proxy (or HTTPS_PROXY / HTTP_PROXY)"
                .to_owned(),
        },
        ErrorKind::Address if error.is_retryable() => {
            "the host name did not resolve: check the host in the URL".to_owned()
        }
        ErrorKind::Address => "check the URL: ws://host:port/path or wss://host/path".to_owned(),
        ErrorKind::Io => "the connection could not be made or broke: check the host and port, \
             and that the server is running"
            .to_owned(),
        ErrorKind::Timeout => timeout_hint(error.timeout_phase()).to_owned(),
        ErrorKind::Protocol => {
            "the server broke the WebSocket protocol (or is not a WebSocket server)".to_owned()
        }
        ErrorKind::Payload => {
            "the server sent invalid UTF-8 or a message over the size limit".to_owned()
        }
        ErrorKind::ConnectionClosed => {
            "the connection ended: retry later (--reconnect does)".to_owned()
        }
        _ => "see the error above".to_owned(),
    }
}

fn status_hint(status: u16, retry_after: Option<Duration>, headers: &[(String, String)]) -> String {
    match status {
        401 => "the server requires credentials: try -H 'Authorization: Bearer ...'".to_owned(),
        403 => "forbidden: the server refused these credentials (or this Origin)".to_owned(),
        404 => "no WebSocket endpoint at this path: check the URL's path".to_owned(),
        400 | 426 => {
            "not a WebSocket endpoint (the server did not accept the upgrade): check the URL"
                .to_owned()
        }
        408 | 429 | 500..=599 => {
            let raw = headers
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case("retry-after"))
                .map(|(_, value)| value.trim());
            let when = match (retry_after, raw) {
                (Some(after), _) => format!(" (Retry-After: {} s)", after.as_secs()),
                (None, Some(raw)) => format!(" (Retry-After: {raw})"),
                (None, None) => String::new(),
            };
            let what = match status {
                429 => "too many requests",
                408 => "the server timed out waiting for the request",
                _ => "the server is failing or overloaded",
            };
            format!("{what}: retry later{when}")
        }
        _ => format!("the server refused the upgrade with {status}"),
    }
}

fn timeout_hint(phase: Option<TimeoutPhase>) -> &'static str {
    match phase {
        Some(TimeoutPhase::Connect) => {
            "the TCP connection was not established in time (connect phase): check the host, \
             the port and any firewall"
        }
        Some(TimeoutPhase::Tls) => {
            "the TLS handshake did not finish in time: is this port serving TLS (wss://)?"
        }
        Some(TimeoutPhase::Handshake) => {
            "the server accepted the connection but did not answer the upgrade in time \
             (handshake phase): is this a WebSocket endpoint, and ws:// versus wss:// right?"
        }
        Some(TimeoutPhase::Pong) => {
            "the server did not answer a ping in time (pong phase): the connection or the \
             server is stuck (see --ping-interval)"
        }
        Some(TimeoutPhase::Write) => {
            "the server did not take our data in time (write phase): it is overloaded or stuck"
        }
        Some(TimeoutPhase::Close) => "the server did not answer our close in time (close phase)",
        Some(_) => "the server sent nothing in time (read phase)",
        None => "an operation timed out",
    }
}

/// The delay before retry number `retry` (1, 2, ...): exponential with "equal jitter" (half
/// fixed, half random), capped, and never shorter than the server's hint.
fn backoff(retry: u32, hint: Option<Duration>) -> Duration {
    let exponent = retry.saturating_sub(1).min(16);
    let full = BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX);
    let jittered = full.mul_f64(0.5 + 0.5 * random_fraction());
    hint.map_or(jittered, |hint| jittered.max(hint))
}

/// A random number in [0, 1): std's randomly keyed hasher is enough for jitter.
fn random_fraction() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_follow_the_table_and_the_registry() {
        assert_eq!(close_name(1000), "normal closure");
        assert_eq!(close_name(1006), "abnormal closure");
        assert_eq!(close_name(1014), "bad gateway");
        assert_eq!(close_name(4001), "not found");
        assert_eq!(close_name(4100), "application code");
        assert_eq!(close_name(3000), "application code");
    }

    #[test]
    fn backoff_grows_caps_and_honours_the_hint() {
        for _ in 0..100 {
            let first = backoff(1, None);
            assert!(first >= BACKOFF_BASE / 2 && first <= BACKOFF_BASE, "{first:?}");
            let late = backoff(40, None);
            assert!(late >= BACKOFF_MAX / 2 && late <= BACKOFF_MAX, "{late:?}");
        }
        let hinted = backoff(1, Some(Duration::from_secs(7)));
        assert_eq!(hinted, Duration::from_secs(7));
    }

    #[test]
    fn headers_and_seconds_parse() {
        assert_eq!(
            parse_header("Authorization: Bearer x").ok(),
            Some(("Authorization".to_owned(), "Bearer x".to_owned()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": empty name").is_err());
        assert_eq!(parse_secs("1.5").ok(), Some(Duration::from_millis(1500)));
        assert!(parse_secs("-1").is_err());
        assert!(parse_secs("soon").is_err());
    }

    #[test]
    fn endings_map_to_exit_statuses() {
        let closed = |code| {
            End::Closed(CloseReason::Frame(CloseFrame::new(
                tether::CloseCode::new(code).unwrap_or(tether::CloseCode::NORMAL),
                "",
            )))
            .judge()
            .0
        };
        assert_eq!(closed(1000), Status::Ok);
        assert_eq!(closed(1001), Status::Ok);
        assert_eq!(closed(4001), Status::Terminal);
        assert_eq!(closed(1008), Status::Terminal);
        assert_eq!(closed(1011), Status::Retryable);
        assert_eq!(closed(4005), Status::Retryable);
        assert_eq!(
            End::Closed(CloseReason::Abnormal).judge().0,
            Status::Retryable
        );
        assert_eq!(End::Done.judge(), (Status::Ok, None));
    }
}
