//! `tether connect URL`: a command-line WebSocket client in the manner of wscat, which says
//! what went wrong and what to try next.
//!
//! Interactive on a terminal (each line typed is a text message), piped otherwise (each line
//! of standard input is sent, then it waits for `-w` or for the server to close), or scripted
//! with `-x` (send these messages, wait `-w` for replies, close with 1000). Received messages
//! are printed as `< text` or `< [binary N bytes] hex`; the end as `closed: CODE NAME: reason`;
//! a failure as `error (KIND): detail` on standard error, followed by a `hint:` line (and the
//! body of a refused handshake). The exit status tells a script whether retrying may help
//! (see [`EXIT_CODES`]).
//!
//! The connection is driven by [`tether::client::Runner`]: without `--reconnect` it makes
//! no reconnect attempt; with it, retryable endings reconnect with its backoff and jitter,
//! honouring the server's hints.

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use tether::client::{ClientBuilder, Event, Proxy, Reconnect, Runner, TlsConfig};
use tether::codes::{Advice, Ending, Registry, retry_advice};
use tether::{CloseInfo, CloseReason, Error, ErrorKind, Message, Sender, Side, TimeoutPhase};
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
    /// Connects through this proxy: `http://[user:pass@]host:port` or `socks5://...` (default:
    /// HTTPS_PROXY / HTTP_PROXY / ALL_PROXY unless NO_PROXY matches).
    #[arg(long, value_name = "URL")]
    proxy: Option<String>,
    /// Never uses a proxy, whatever the environment says.
    #[arg(long, conflicts_with = "proxy")]
    no_proxy: bool,
    /// Offers no permessage-deflate (by default it is offered, and used if the server
    /// accepts: the connected line says so).
    #[arg(long)]
    no_deflate: bool,
    /// DANGEROUS: accepts any certificate for any name on wss://, so anyone on the path can
    /// read and change the traffic. For testing against self-signed servers only.
    #[arg(long)]
    insecure: bool,
    /// Seconds for the whole connect: resolving, dialing (through the proxy), TLS and the
    /// opening handshake; past it the run fails with a timeout naming the phase it was in
    /// (exit status 3) [default: 10].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    connect_timeout: Option<Duration>,
    /// Seconds between pings that check the server is alive (0: no pings) [default: 20].
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    ping_interval: Option<Duration>,
    /// Reconnects after a retryable failure (exit status 3), with exponential backoff and
    /// jitter, honouring the server's Retry-After and retry_after_ms.
    #[arg(long)]
    reconnect: bool,
    /// With --reconnect: gives up after this many reconnect attempts in a row.
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

pub(crate) fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("expected 'Name: value', found {text:?}"))?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("invalid header name in {text:?}"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

pub(crate) fn parse_secs(text: &str) -> Result<Duration, String> {
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

    /// The status of a connection that ended with `reason`: 1000 and 1001 are normal ends;
    /// otherwise the retry advice decides.
    fn of_close(reason: &CloseReason) -> Self {
        let ending = match reason {
            CloseReason::Frame(frame) => Ending::Closed(frame.code),
            CloseReason::NoStatus => Ending::NoStatus,
            _ => Ending::Abnormal,
        };
        match reason.display_code() {
            1000 | 1001 => Self::Ok,
            _ => match retry_advice(ending, &Registry::default(), None) {
                Advice::Stop => Self::Terminal,
                _ => Self::Retryable,
            },
        }
    }

    /// The status of the error a run ended with.
    fn of_error(error: &Error) -> Self {
        if let Some(info) = error.close_info() {
            return Self::of_close(&info.reason);
        }
        if error.is_abnormal_closure() || error.is_retryable() {
            Self::Retryable
        } else {
            Self::Terminal
        }
    }
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

fn builder(args: &ConnectArgs) -> Result<ClientBuilder, Error> {
    let mut builder = ClientBuilder::new();
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
    if args.no_deflate {
        builder = builder.deflate(None);
    }
    if args.insecure {
        builder = builder.tls(TlsConfig::DangerousAcceptAnyCertificate);
    }
    if let Some(timeout) = args.connect_timeout {
        builder = builder.connect_timeout(timeout);
    }
    if let Some(interval) = args.ping_interval {
        builder = builder.ping_interval((!interval.is_zero()).then_some(interval));
    }
    Ok(builder)
}

/// The state of one `tether connect` run.
struct Session<'a> {
    args: &'a ConnectArgs,
    /// The sender of the open connection.
    sender: Option<Sender>,
    /// Counts connections, so that a script finishing on an old one is ignored.
    generation: u64,
    /// Hands the open connection's sender to the standard input writer.
    writer_slot: watch::Sender<Option<Sender>>,
    /// Whether every line of standard input has been sent.
    input_done: bool,
    interactive: bool,
    /// When to close with 1000 (the wait after the last message).
    deadline: Option<Instant>,
    /// Whether we asked the runner to stop, and whether a connection was open then.
    stopping: Option<bool>,
    /// The status of the last failure, for a stop while reconnecting.
    last: Option<Status>,
    reconnects: u32,
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
            // Only --proxy can be wrong before connecting.
            eprintln!("error ({:?}): {error:#}", error.kind());
            eprintln!(
                "hint: check --proxy: http://[user:password@]host:port or socks5://host:port"
            );
            return Status::Terminal;
        }
    };
    if args.insecure && url.starts_with("wss:") {
        eprintln!("warning: --insecure: the server's certificate is not checked");
    }
    let reconnect = Reconnect::new().max_attempts(if args.reconnect {
        args.max_retries
    } else {
        Some(0)
    });
    let mut runner = Runner::new(url.clone(), builder, reconnect);
    let stop = runner.stop_handle();

    let (interrupt, mut interrupted) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = interrupt.send(true);
        }
    });
    // Script runs tell the main loop when a connection's messages are all sent.
    let (script_sent, mut scripts) = mpsc::unbounded_channel::<u64>();
    let (writer_slot, slot) = watch::channel(None);
    let (input_done_tx, mut input_done_rx) = mpsc::unbounded_channel::<()>();
    let interactive = args.execute.is_empty() && std::io::stdin().is_terminal();
    if args.execute.is_empty() {
        tokio::spawn(write_stdin(read_stdin(), slot, input_done_tx));
    }
    let mut session = Session {
        args,
        sender: None,
        generation: 0,
        writer_slot,
        input_done: false,
        interactive,
        deadline: None,
        stopping: None,
        last: None,
        reconnects: 0,
    };
    loop {
        let deadline = session.deadline;
        tokio::select! {
            event = runner.next() => {
                let Some(event) = event else {
                    return session.last.unwrap_or(Status::Ok);
                };
                if let Some(status) = session.on_event(event, &url, &script_sent) {
                    return status;
                }
            }
            Some(generation) = scripts.recv() => {
                if generation == session.generation && session.sender.is_some() {
                    session.input_finished();
                }
            }
            Some(()) = input_done_rx.recv(), if !session.input_done => {
                session.input_done = true;
                if session.sender.is_some() {
                    session.input_finished();
                }
            }
            () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                session.deadline = None;
                session.stop(&stop);
            }
            _ = interrupted.wait_for(|&stop| stop), if session.stopping.is_none() => {
                session.stop(&stop);
            }
        }
    }
}

impl Session<'_> {
    /// Handles one runner event; `Some` once the run is over, with its exit status.
    fn on_event(
        &mut self,
        event: Event,
        url: &str,
        script_sent: &mpsc::UnboundedSender<u64>,
    ) -> Option<Status> {
        // An abnormal closure was already told by its close line.
        let abnormal = match &event {
            Event::Error(error) | Event::Stopped(Some(error)) => error.is_abnormal_closure(),
            _ => false,
        };
        match event {
            Event::Open { sender, response } => {
                let protocol = response
                    .protocol
                    .as_ref()
                    .map(|protocol| format!(" (subprotocol {protocol})"))
                    .unwrap_or_default();
                let extensions = response
                    .headers
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-extensions"))
                    .map(|(_, value)| format!(" ({value})"))
                    .unwrap_or_default();
                let keys = if self.interactive {
                    ": type a line to send it; Ctrl-D or Ctrl-C closes"
                } else {
                    ""
                };
                eprintln!("connected to {url}{protocol}{extensions}{keys}");
                self.generation = self.generation.wrapping_add(1);
                self.sender = Some(sender.clone());
                if !self.args.execute.is_empty() {
                    tokio::spawn(send_script(
                        sender.clone(),
                        self.args.execute.clone(),
                        self.generation,
                        script_sent.clone(),
                    ));
                } else if self.input_done {
                    // Standard input ended on an earlier connection.
                    self.input_finished();
                }
                self.writer_slot.send_replace(Some(sender));
            }
            Event::Message(message) => print_message(&message),
            Event::Close(info) => {
                self.sender = None;
                self.deadline = None;
                self.writer_slot.send_replace(None);
                print_close(&info);
            }
            Event::Error(error) => {
                self.last = Some(Status::of_error(&error));
                if !abnormal && error.close_info().is_none() {
                    report_error(&error);
                }
            }
            Event::Reconnecting { attempt, delay } => {
                self.reconnects = attempt;
                eprintln!(
                    "reconnecting in {:.1} s (attempt {attempt})",
                    delay.as_secs_f64()
                );
            }
            Event::Stopped(None) => {
                return Some(match self.stopping {
                    // We closed an open connection: the script or the input is done.
                    Some(true) | None => Status::Ok,
                    // Stopped while connecting or waiting to reconnect.
                    Some(false) => self.last.unwrap_or(Status::Interrupted),
                });
            }
            Event::Stopped(Some(error)) => {
                let status = Status::of_error(&error);
                if !abnormal && error.close_info().is_none() {
                    report_error(&error);
                }
                if self.args.reconnect && status == Status::Retryable && self.reconnects > 0 {
                    eprintln!("giving up after {} reconnect attempts", self.reconnects);
                }
                return Some(status);
            }
            _ => {}
        }
        None
    }

    /// The script was sent or standard input ended: wait for replies, or close at once.
    fn input_finished(&mut self) {
        let wait = match (self.args.wait, self.args.execute.is_empty()) {
            (Some(wait), _) => Some(wait),
            (None, false) => Some(DEFAULT_SCRIPT_WAIT),
            (None, true) if self.interactive => Some(Duration::ZERO),
            // Piped input without -w: until the server closes.
            (None, true) => None,
        };
        if let Some(wait) = wait {
            self.deadline = Some(Instant::now() + wait);
        }
    }

    fn stop(&mut self, stop: &tether::client::StopHandle) {
        self.stopping = Some(self.sender.is_some());
        stop.stop();
    }
}

/// Sends the `-x` messages on one connection, then says so.
async fn send_script(
    sender: Sender,
    script: Vec<String>,
    generation: u64,
    sent: mpsc::UnboundedSender<u64>,
) {
    for text in script {
        if sender.send(Message::text(text)).await.is_err() {
            return; // The connection is ending; the runner reports how.
        }
    }
    let _ = sent.send(generation);
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

/// Sends each line of standard input on the open connection (waiting for one while
/// reconnecting), apart from the main loop so that receiving goes on while a send waits;
/// says when every line has been sent.
async fn write_stdin(
    mut lines: mpsc::UnboundedReceiver<String>,
    mut slot: watch::Receiver<Option<Sender>>,
    done: mpsc::UnboundedSender<()>,
) {
    while let Some(line) = lines.recv().await {
        let Ok(sender) = slot
            .wait_for(Option::is_some)
            .await
            .map(|open| open.clone())
        else {
            return;
        };
        let Some(sender) = sender else { return };
        if let Err(error) = sender.send(Message::text(line)).await {
            if let Some(text) = error.into_message().as_ref().and_then(Message::as_text) {
                eprintln!("not sent (the connection is closing): {text}");
            }
        }
    }
    let _ = done.send(());
}

fn print_close(info: &CloseInfo) {
    let code = info.reason.display_code();
    match info.reason.reason() {
        "" => println!("closed: {code} {}", close_name(code)),
        text => println!("closed: {code} {}: {text}", close_name(code)),
    }
    if info.initiated_by == Side::Remote || info.is_abnormal() {
        if let Some(hint) = close_hint(code) {
            eprintln!("hint: {hint}");
        }
    }
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

/// Prints a failure on standard error: the error, a hint, and a refused handshake's body.
fn report_error(error: &Error) {
    eprintln!("error ({:?}): {error:#}", error.kind());
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

/// The name of a close code: the standard names, the registry's for application codes.
fn close_name(code: u16) -> &'static str {
    match code {
        1005 => "no status",
        1006 => "abnormal closure",
        4000..=4999 => Registry::default()
            .get(code)
            .map_or("application code", |registered| registered.name),
        3000..=3999 => "application code",
        _ => tether::CloseCode::new(code)
            .ok()
            .and_then(tether::CloseCode::name)
            .unwrap_or("reserved code"),
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
        ErrorKind::Tls => "the TLS handshake failed: an untrusted or mismatched certificate, or a \
             port that does not speak TLS (ws:// instead?); --insecure skips the certificate \
             check, for testing only"
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
        ErrorKind::Io => match io_error_kind(error) {
            Some(std::io::ErrorKind::ConnectionRefused) => {
                "nothing accepted the connection: check the host and port, and that the server \
                 is running"
            }
            Some(std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe) => {
                "the connection was reset: the server or something on the way dropped it; \
                 retry later (--reconnect does)"
            }
            _ => "the connection failed: check the host and port, and the network",
        }
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

/// The kind of the I/O error under `error`, if any.
fn io_error_kind(error: &Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = cause.source();
    }
    None
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
            Status::of_close(&CloseReason::Frame(tether::CloseFrame::new(
                tether::CloseCode::new(code).unwrap_or(tether::CloseCode::NORMAL),
                "",
            )))
        };
        assert_eq!(closed(1000), Status::Ok);
        assert_eq!(closed(1001), Status::Ok);
        assert_eq!(closed(4001), Status::Terminal);
        assert_eq!(closed(1008), Status::Terminal);
        assert_eq!(closed(1011), Status::Retryable);
        assert_eq!(closed(4005), Status::Retryable);
        assert_eq!(Status::of_close(&CloseReason::Abnormal), Status::Retryable);
        assert_eq!(Status::of_close(&CloseReason::NoStatus), Status::Retryable);
    }
}
