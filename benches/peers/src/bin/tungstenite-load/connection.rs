//! One connection of the closed loop: send a message, wait for its echo, check it, repeat,
//! recording the round trip while the measurement window is open.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::{Bytes, Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client connection.
pub(crate) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The longest wait for a connection, a send or an echo before the connection counts as
/// failed.
pub(crate) const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait for the closing handshake at the end.
pub(crate) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the run is; every connection reads it before and after each round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Phase {
    Warmup = 0,
    Measure = 1,
    Stop = 2,
}

/// What the connections share: the phase, and what they measured.
#[derive(Debug)]
pub(crate) struct Shared {
    phase: AtomicU8,
    /// Round trips completed inside the window.
    pub(crate) messages: AtomicU64,
    /// Round-trip times inside the window, in microseconds.
    pub(crate) latency_us: Mutex<Histogram<u64>>,
    /// Failures by kind.
    pub(crate) errors: Mutex<BTreeMap<&'static str, u64>>,
}

impl Shared {
    pub(crate) fn new() -> Result<Self, String> {
        // 1 µs to 1 min, 3 significant digits.
        let histogram = Histogram::new_with_bounds(1, 60_000_000, 3)
            .map_err(|error| format!("cannot create the histogram: {error}"))?;
        Ok(Shared {
            phase: AtomicU8::new(Phase::Warmup as u8),
            messages: AtomicU64::new(0),
            latency_us: Mutex::new(histogram),
            errors: Mutex::new(BTreeMap::new()),
        })
    }

    pub(crate) fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Relaxed) {
            0 => Phase::Warmup,
            1 => Phase::Measure,
            _ => Phase::Stop,
        }
    }

    pub(crate) fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, kind: &'static str) {
        if let Ok(mut errors) = self.errors.lock() {
            *errors.entry(kind).or_default() += 1;
        }
    }

    fn record(&self, round_trip: Duration) {
        self.messages.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(round_trip.as_micros()).unwrap_or(u64::MAX);
        if let Ok(mut histogram) = self.latency_us.lock() {
            histogram.saturating_record(micros.max(1));
        }
    }
}

/// Opens one connection with TCP_NODELAY, as `tether bench` does.
pub(crate) async fn connect(url: &str) -> Result<Socket, &'static str> {
    match timeout(
        IO_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url, None, true),
    )
    .await
    {
        Ok(Ok((socket, _response))) => Ok(socket),
        Ok(Err(_)) => Err("connect"),
        Err(_) => Err("connect_timeout"),
    }
}

/// The message every connection sends: printable ASCII for text, every byte value for binary.
pub(crate) fn payload(size: usize, binary: bool) -> Message {
    if binary {
        let bytes: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        Message::Binary(Bytes::from(bytes))
    } else {
        let text: String = (0..size)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        Message::text(text)
    }
}

/// Runs the closed loop until the phase is `Stop`, then closes the connection.
pub(crate) async fn run(mut socket: Socket, message: Message, shared: &Shared) {
    loop {
        let phase = shared.phase();
        if phase == Phase::Stop {
            break;
        }
        let started = Instant::now();
        if let Err(kind) = round_trip(&mut socket, &message).await {
            shared.error(kind);
            return;
        }
        // Only round trips that began and ended inside the window count.
        if phase == Phase::Measure && shared.phase() == Phase::Measure {
            shared.record(started.elapsed());
        }
    }
    if let Err(kind) = close(&mut socket).await {
        shared.error(kind);
    }
}

/// Sends `message` and waits for the same message to come back.
async fn round_trip(socket: &mut Socket, message: &Message) -> Result<(), &'static str> {
    match timeout(IO_TIMEOUT, socket.send(message.clone())).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err("send"),
        Err(_) => return Err("send_timeout"),
    }
    loop {
        let reply = match timeout(IO_TIMEOUT, socket.next()).await {
            Ok(Some(Ok(reply))) => reply,
            Ok(Some(Err(_))) => return Err("receive"),
            Ok(None) => return Err("closed"),
            Err(_) => return Err("receive_timeout"),
        };
        match reply {
            Message::Text(_) | Message::Binary(_) if reply == *message => return Ok(()),
            Message::Text(_) | Message::Binary(_) => return Err("mismatch"),
            Message::Close(_) => return Err("closed"),
            // A ping is answered by tungstenite; neither it nor a pong is the echo.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

/// Sends a close frame and reads until the server's close frame ends the stream.
async fn close(socket: &mut Socket) -> Result<(), &'static str> {
    let closing = async {
        match socket.close(None).await {
            Ok(()) | Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => {}
            Err(_) => return Err("close"),
        }
        while let Some(next) = socket.next().await {
            match next {
                Ok(_) => {}
                Err(WsError::ConnectionClosed | WsError::AlreadyClosed) => break,
                Err(_) => return Err("close"),
            }
        }
        Ok(())
    };
    timeout(CLOSE_TIMEOUT, closing)
        .await
        .unwrap_or(Err("close_timeout"))
}
