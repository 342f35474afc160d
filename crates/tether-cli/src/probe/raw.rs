//! Raw connections: TCP (and TLS for `wss://`) straight to the target, request heads written
//! by hand, the normal upgrade, and whether an honest client is still served. The frames that
//! travel on them are in [`super::frames`].
//!
//! Everything here takes a deadline and returns by it: a server that stops answering ends a
//! wait with a timeout, never a hang.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tether_proto::frame::Opcode;
use tether_proto::handshake::{ClientRequest, ResponseHead};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::frames::{Answer, End, Expect, FrameReader, RawConn, ReadError, put_frame};
use super::tls;

/// The RFC 6455 sample nonce, for the requests that are meant to be refused.
pub(super) const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// A byte stream to the target: TCP, or TLS over TCP.
pub(super) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Where every raw connection goes and what its upgrade request carries.
#[derive(Debug)]
pub(super) struct Target {
    /// The address every connection dials (resolved once, so all checks hit one server).
    pub(super) addr: SocketAddr,
    /// The host name, for TLS.
    pub(super) host: String,
    /// The `Host` header.
    pub(super) host_header: String,
    /// The request target: `--path-prefix` and the URL's path and query.
    pub(super) path: String,
    /// `-H` headers.
    pub(super) headers: Vec<(String, String)>,
    /// `--subprotocol` offers.
    pub(super) protocols: Vec<String>,
    /// `--origin`.
    pub(super) origin: Option<String>,
    /// TLS for `wss://`.
    pub(super) tls: Option<Arc<rustls::ClientConfig>>,
}

thread_local! {
    /// The state of the generator of mask keys and probe payloads.
    static STATE: Cell<u64> = Cell::new(seed());
}

/// A seed from the standard library's per-process random hash keys.
fn seed() -> u64 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    // Xorshift never leaves zero.
    hasher.finish() | 1
}

/// A pseudo-random number (xorshift64*). Mask keys need to be unpredictable to
/// intermediaries, not secret; the probe talks to a server it was pointed at.
pub(super) fn random_u64() -> u64 {
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    })
}

/// A payload that identifies one probe step, e.g. `tether-probe ping 3f2a9c01d4e5b6a7`.
pub(super) fn token(what: &str) -> Vec<u8> {
    format!("tether-probe {what} {:016x}", random_u64()).into_bytes()
}

/// `5s`, `2.5s`.
pub(super) fn secs(duration: Duration) -> String {
    format!("{}s", (duration.as_secs_f64() * 10.0).round() / 10.0)
}

/// `12 ms`.
pub(super) fn millis(duration: Duration) -> String {
    format!("{} ms", duration.as_millis())
}

/// Dials the target's TCP port by `deadline`.
pub(super) async fn dial_tcp(target: &Target, deadline: Instant) -> Result<TcpStream, String> {
    match timeout_at(deadline, TcpStream::connect(target.addr)).await {
        Ok(Ok(tcp)) => {
            // Small frames go out at once; a failure only costs latency.
            let _ = tcp.set_nodelay(true);
            Ok(tcp)
        }
        Ok(Err(error)) => Err(format!("cannot connect to {}: {error}", target.addr)),
        Err(_) => Err(format!("connecting to {} timed out", target.addr)),
    }
}

/// Adds TLS to `tcp` for a `wss://` target.
pub(super) async fn secure(
    target: &Target,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<Box<dyn Io>, String> {
    match &target.tls {
        Some(config) => Ok(Box::new(
            tls::handshake(config, &target.host, tcp, deadline).await?,
        )),
        None => Ok(Box::new(tcp)),
    }
}

/// Dials the target (TCP, then TLS for `wss://`).
pub(super) async fn dial(target: &Target, deadline: Instant) -> Result<Box<dyn Io>, String> {
    let tcp = dial_tcp(target, deadline).await?;
    secure(target, tcp, deadline).await
}

/// An upgrade request head written by hand: `key` (none: no `Sec-WebSocket-Key`),
/// `version`, then the user's headers and `extra`.
pub(super) fn request_head(
    target: &Target,
    key: Option<&str>,
    version: &str,
    extra: &[(String, String)],
) -> Vec<u8> {
    let mut head = format!("GET {} HTTP/1.1\r\n", target.path);
    let mut add = |name: &str, value: &str| {
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    };
    add("Host", &target.host_header);
    add("Upgrade", "websocket");
    add("Connection", "Upgrade");
    if let Some(key) = key {
        add("Sec-WebSocket-Key", key);
    }
    add("Sec-WebSocket-Version", version);
    if let Some(origin) = &target.origin {
        add("Origin", origin);
    }
    if !target.protocols.is_empty() {
        add("Sec-WebSocket-Protocol", &target.protocols.join(", "));
    }
    for (name, value) in target.headers.iter().chain(extra) {
        add(name, value);
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Dials, writes the head of a normal upgrade and checks the server's 101.
pub(super) async fn upgrade(target: &Target, deadline: Instant) -> Result<RawConn, String> {
    let tcp = dial_tcp(target, deadline).await?;
    upgrade_on(target, tcp, deadline).await
}

/// As [`upgrade`], on a TCP connection the caller dialed (and set options on).
pub(super) async fn upgrade_on(
    target: &Target,
    tcp: TcpStream,
    deadline: Instant,
) -> Result<RawConn, String> {
    let mut key = [0u8; 16];
    let (high, low) = (random_u64().to_be_bytes(), random_u64().to_be_bytes());
    for (slot, byte) in key.iter_mut().zip(high.iter().chain(&low)) {
        *slot = *byte;
    }
    let mut builder = ClientRequest::builder(&target.host_header, &target.path, key);
    for protocol in &target.protocols {
        builder = builder.protocol(protocol.clone());
    }
    if let Some(origin) = &target.origin {
        builder = builder.origin(origin.clone());
    }
    for (name, value) in &target.headers {
        builder = builder.header(name.clone(), value.clone());
    }
    let request = builder
        .build()
        .map_err(|error| format!("cannot build the upgrade request: {error}"))?;
    let io = secure(target, tcp, deadline).await?;
    let (read, write) = tokio::io::split(io);
    let mut conn = RawConn {
        reader: FrameReader::new(read),
        writer: write,
        protocol: None,
    };
    conn.send(&request.encode(), deadline).await?;
    let head = match conn.reader.read_head(deadline).await {
        Ok(head) => head,
        Err(ReadError::TimedOut) => return Err("no answer to the upgrade in time".to_owned()),
        Err(error) => return Err(format!("no answer to the upgrade: {error}")),
    };
    if head.status != 101 {
        return Err(format!(
            "the upgrade was refused with {} {}",
            head.status, head.reason
        ));
    }
    let accepted = tether_proto::handshake::validate_response(&head, &request)
        .map_err(|error| format!("the 101 response is not a valid upgrade: {error}"))?;
    conn.protocol = accepted.protocol;
    Ok(conn)
}

/// What came back to a request head.
#[derive(Debug)]
pub(super) enum HttpReply {
    /// An HTTP response.
    Response(ResponseHead),
    /// The connection ended (or broke) without a response.
    Closed(String),
    /// Nothing by the deadline; whether the whole request was written.
    TimedOut { sent_all: bool },
}

/// Dials, writes `head` while reading the response, and returns what came back by `deadline`.
pub(super) async fn http_exchange(
    target: &Target,
    head: &[u8],
    deadline: Instant,
) -> Result<HttpReply, String> {
    let io = dial(target, deadline).await?;
    let (read, mut writer) = tokio::io::split(io);
    let mut reader = FrameReader::new(read);
    let write = async {
        writer.write_all(head).await?;
        writer.flush().await
    };
    let read = reader.read_head(deadline);
    tokio::pin!(write, read);
    let mut sent_all = false;
    let mut written = false;
    let result = loop {
        tokio::select! {
            result = &mut write, if !written => {
                written = true;
                sent_all = result.is_ok();
            }
            result = &mut read => break result,
        }
    };
    Ok(match result {
        Ok(head) => HttpReply::Response(head),
        Err(ReadError::TimedOut) => HttpReply::TimedOut { sent_all },
        Err(error) => HttpReply::Closed(error.to_string()),
    })
}

/// Whether an honest client is served: a normal upgrade, then a ping and a short text
/// message, answered (a pong, or any data message) by the deadline. Returns how long it took.
pub(super) async fn served(target: &Target, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    let deadline = start + timeout;
    let mut conn = upgrade(target, deadline).await?;
    let expect = Expect {
        ping: token("served"),
        data: Answer::Any,
    };
    let mut out = BytesMut::new();
    put_frame(&mut out, true, Opcode::Ping, &expect.ping);
    put_frame(&mut out, true, Opcode::Text, b"tether-probe");
    let (settled, _) = conn.exchange(&out, &expect, deadline).await;
    match settled.end {
        End::Answered(_) => Ok(start.elapsed()),
        End::Closed { code, reason } => Err(format!(
            "a new connection got {} instead of an answer",
            End::describe_close(code, &reason)
        )),
        End::Dropped(why) => Err(format!("a new connection was dropped: {why}")),
        End::TimedOut => Err(format!(
            "a new connection got no answer within {}",
            secs(timeout)
        )),
    }
}
