//! One proxied connection: the two directions, each pumped through its faults (a reader that
//! stamps chunks with their latency, a writer that slices, throttles and counts them), and
//! the watch that ends the connection (a reset timer, the proxy going down).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::faults::{Direction, DirectionFaults, delay};
use super::proxy::{DirectionCounters, Setting, Shared, sleep_until};

/// How long the proxy waits for the upstream server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes read at once.
const READ_SIZE: usize = 16 * 1024;
/// Chunks read but not yet written, per direction: with [`READ_SIZE`], at most 1 MiB held
/// while a direction is delayed or throttled; beyond it the reader waits (TCP backpressure).
const QUEUE_CHUNKS: usize = 64;

/// How a connection ended.
#[derive(Debug)]
enum Ending {
    /// Both sides closed their halves.
    Closed,
    /// A fault reset it; says which.
    Reset(&'static str),
    /// A read or write failed (a side reset or vanished).
    Failed(Direction, io::Error),
    /// The proxy went down.
    Down,
}

/// Proxies `client` to the upstream server until the connection ends.
pub(super) async fn run(client: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let counters = &shared.counters;
    counters.accepted.fetch_add(1, Ordering::Relaxed);
    counters.active.fetch_add(1, Ordering::Relaxed);
    let _active = Active(&counters.active);
    let opened = Instant::now();
    let upstream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(shared.upstream))
        .await
    {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            tracing::warn!(%peer, upstream = %shared.upstream, %error, "fault proxy cannot reach the upstream server; closing");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, upstream = %shared.upstream, "fault proxy timed out connecting upstream; closing");
            return;
        }
    };
    tracing::info!(%peer, upstream = %shared.upstream, "fault proxy connection open");
    // Each write is its own segment: slicing must reach the peer as slices.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (mut client, mut upstream) = (client, upstream);
    let ending = {
        let (client_read, client_write) = client.split();
        let (upstream_read, upstream_write) = upstream.split();
        let up = pump(
            client_read,
            upstream_write,
            Direction::Upstream,
            shared.faults.subscribe(),
            &counters.upstream,
        );
        let down = pump(
            upstream_read,
            client_write,
            Direction::Downstream,
            shared.faults.subscribe(),
            &counters.downstream,
        );
        settle(up, down, watchdog(shared.faults.subscribe(), opened)).await
    };
    let lasted = opened.elapsed();
    match ending {
        Ending::Reset(why) => {
            counters.resets.fetch_add(1, Ordering::Relaxed);
            abort(&client);
            abort(&upstream);
            tracing::info!(%peer, ?lasted, "fault proxy reset the connection ({why})");
        }
        Ending::Closed => tracing::info!(%peer, ?lasted, "fault proxy connection closed"),
        Ending::Failed(direction, error) => tracing::info!(
            %peer, ?lasted, %error, "fault proxy connection failed {}", direction.name()
        ),
        Ending::Down => tracing::info!(%peer, ?lasted, "fault proxy down: connection closed"),
    }
    // Dropping the streams closes them: with a zero linger, by a reset.
}

/// Decrements the active connection count when the connection's task ends, however it ends.
struct Active<'a>(&'a AtomicU64);

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Makes closing `stream` an abortive close: a RST instead of a FIN, unsent data discarded.
fn abort(stream: &TcpStream) {
    if let Err(error) = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO)) {
        tracing::debug!(%error, "cannot set SO_LINGER; the close will be orderly");
    }
}

/// Runs both directions and the watchdog until the connection ends: both directions done,
/// or one of them failed or was reset, or the watchdog said so.
async fn settle(
    up: impl Future<Output = Result<(), Ending>>,
    down: impl Future<Output = Result<(), Ending>>,
    watchdog: impl Future<Output = Ending>,
) -> Ending {
    tokio::pin!(up, down, watchdog);
    let (mut up_done, mut down_done) = (false, false);
    loop {
        tokio::select! {
            result = &mut up, if !up_done => match result {
                Ok(()) => up_done = true,
                Err(ending) => return ending,
            },
            result = &mut down, if !down_done => match result {
                Ok(()) => down_done = true,
                Err(ending) => return ending,
            },
            ending = &mut watchdog => return ending,
        }
        if up_done && down_done {
            return Ending::Closed;
        }
    }
}

/// Ends the connection when the proxy goes down or the reset timer fires; the timer runs
/// from `opened`, or from the last change of `reset_after_ms`.
async fn watchdog(mut faults: watch::Receiver<Setting>, opened: Instant) -> Ending {
    let (mut reset_after, down) = {
        let setting = faults.borrow_and_update();
        (setting.faults.reset_after_ms, setting.faults.down)
    };
    if down {
        return Ending::Down;
    }
    let mut deadline = reset_after.map(|ms| opened + delay(ms));
    loop {
        tokio::select! {
            () = sleep_until(deadline) => return Ending::Reset("time limit"),
            changed = faults.changed() => {
                if changed.is_err() {
                    // The proxy is stopping: its accept loop closes this connection.
                    return std::future::pending().await;
                }
                let (now_reset_after, down) = {
                    let setting = faults.borrow_and_update();
                    (setting.faults.reset_after_ms, setting.faults.down)
                };
                if down {
                    return Ending::Down;
                }
                if now_reset_after != reset_after {
                    reset_after = now_reset_after;
                    deadline = reset_after.map(|ms| Instant::now() + delay(ms));
                }
            }
        }
    }
}

/// Bytes read from one side, to be written to the other once `due`.
struct Chunk {
    data: Bytes,
    due: Instant,
}

/// One direction: reads from `from` and writes to `to` through the faults of `direction`,
/// until `from` ends and its close has been passed on (`Ok`), or a failure or a reset.
async fn pump(
    from: ReadHalf<'_>,
    to: WriteHalf<'_>,
    direction: Direction,
    faults: watch::Receiver<Setting>,
    counters: &DirectionCounters,
) -> Result<(), Ending> {
    let (queue, queued) = mpsc::channel(QUEUE_CHUNKS);
    let reading = read_side(from, queue, direction, faults.clone(), counters);
    let writing = write_side(to, queued, direction, faults, counters);
    tokio::pin!(reading, writing);
    let mut reading_done = false;
    loop {
        tokio::select! {
            read = &mut reading, if !reading_done => match read {
                // The writer finishes what is queued, then passes the close on.
                Ok(()) => reading_done = true,
                Err(error) => return Err(Ending::Failed(direction, error)),
            },
            written = &mut writing => return written,
        }
    }
}

/// Reads chunks, discards them in a black hole, else stamps each with the time it is due
/// (now plus the latency and jitter in force) and queues it. Ends at the end of the stream.
async fn read_side(
    mut from: ReadHalf<'_>,
    queue: mpsc::Sender<Chunk>,
    direction: Direction,
    faults: watch::Receiver<Setting>,
    counters: &DirectionCounters,
) -> io::Result<()> {
    let mut buf = BytesMut::new();
    loop {
        buf.reserve(READ_SIZE);
        let read = from.read_buf(&mut buf).await?;
        if read == 0 {
            return Ok(());
        }
        let data = buf.split().freeze();
        let (blackhole, latency) = {
            let setting = faults.borrow();
            let faults = setting.faults.direction(direction);
            (faults.blackhole, latency(faults))
        };
        if blackhole {
            counters
                .discarded_bytes
                .fetch_add(data.len() as u64, Ordering::Relaxed);
            continue;
        }
        let chunk = Chunk {
            data,
            due: Instant::now() + latency,
        };
        if queue.send(chunk).await.is_err() {
            // The writer has ended, and with it this direction.
            return Ok(());
        }
    }
}

/// Writes the queued chunks in order, each no earlier than it is due, sliced, throttled and
/// counted, up to the reset limit; then, once the reader has ended, passes the close on (after
/// any black hole ends, and after the slow close delay).
async fn write_side(
    mut to: WriteHalf<'_>,
    mut queued: mpsc::Receiver<Chunk>,
    direction: Direction,
    mut faults: watch::Receiver<Setting>,
    counters: &DirectionCounters,
) -> Result<(), Ending> {
    let fail = |error| Ending::Failed(direction, error);
    // A chunk never leaves before the one read before it, whatever their jitter.
    let mut last_due = Instant::now();
    // With a bandwidth limit: when the next write may start.
    let mut next_slot: Option<Instant> = None;
    // Bytes of this connection written this way, for the reset limit.
    let mut forwarded: u64 = 0;
    while let Some(chunk) = queued.recv().await {
        last_due = last_due.max(chunk.due);
        if last_due > Instant::now() {
            tokio::time::sleep_until(last_due).await;
        }
        let mut data = chunk.data;
        while !data.is_empty() {
            let settings = faults.borrow().faults.direction(direction).clone();
            if settings.blackhole {
                counters
                    .discarded_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
                break;
            }
            let mut size = data.len();
            if let Some(slice) = settings.slice_bytes {
                size = size.min(slice.get());
            }
            if let Some(limit) = settings.reset_after_bytes {
                match limit.checked_sub(forwarded) {
                    Some(left) if left > 0 => {
                        size = size.min(usize::try_from(left).unwrap_or(usize::MAX));
                    }
                    _ => return Err(Ending::Reset("byte limit")),
                }
            }
            match settings.bandwidth {
                Some(rate) => {
                    size = size.min(pace_size(rate.get()));
                    if let Some(slot) = next_slot.filter(|&slot| slot > Instant::now()) {
                        tokio::time::sleep_until(slot).await;
                    }
                }
                None => next_slot = None,
            }
            let segment = data.split_to(size);
            let started = Instant::now();
            to.write_all(&segment).await.map_err(fail)?;
            forwarded += segment.len() as u64;
            counters
                .bytes
                .fetch_add(segment.len() as u64, Ordering::Relaxed);
            counters.segments.fetch_add(1, Ordering::Relaxed);
            if let Some(rate) = settings.bandwidth {
                let from = next_slot.map_or(started, |slot| slot.max(started));
                next_slot = Some(from + transfer_time(segment.len(), rate.get()));
            }
            if settings
                .reset_after_bytes
                .is_some_and(|limit| forwarded >= limit)
            {
                return Err(Ending::Reset("byte limit"));
            }
            if settings.slice_bytes.is_some() && settings.slice_delay_ms > 0 && !data.is_empty() {
                tokio::time::sleep(delay(settings.slice_delay_ms)).await;
            }
        }
    }
    // The reader has ended: the sending side closed its half. A black hole swallows that too.
    while faults
        .borrow_and_update()
        .faults
        .direction(direction)
        .blackhole
    {
        if faults.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
    let slow_close = faults.borrow().faults.slow_close_ms;
    if slow_close > 0 {
        tokio::time::sleep(delay(slow_close)).await;
    }
    to.shutdown().await.map_err(fail)
}

/// This chunk's delay: the latency, varied by the jitter.
fn latency(faults: &DirectionFaults) -> Duration {
    let latency = delay(faults.latency_ms);
    if faults.jitter_ms == 0 {
        return latency;
    }
    let jitter = delay(faults.jitter_ms);
    // Uniform in [0, 2 * jitter], in microseconds; then shifted by -jitter.
    let span = u64::try_from(jitter.as_micros() * 2).unwrap_or(u64::MAX);
    let offset = Duration::from_micros(random_u64() % span.saturating_add(1));
    (latency + offset).saturating_sub(jitter)
}

/// A random number for the jitter (from the masking key pool, which is seeded by the OS).
fn random_u64() -> u64 {
    let [a, b, c, d] = crate::mask_keys::mask_key();
    let [e, f, g, h] = crate::mask_keys::mask_key();
    u64::from_ne_bytes([a, b, c, d, e, f, g, h])
}

/// How many bytes a throttled direction writes at once: 20 ms worth, so the rate is smooth.
fn pace_size(bytes_per_second: u64) -> usize {
    usize::try_from(bytes_per_second / 50)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// How long `bytes` take at `bytes_per_second`.
fn transfer_time(bytes: usize, bytes_per_second: u64) -> Duration {
    Duration::try_from_secs_f64(bytes as f64 / bytes_per_second as f64)
        .map_or(delay(u64::MAX), |time| time.min(delay(u64::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_range_and_never_below_zero() {
        let faults = DirectionFaults::none()
            .with_latency(Duration::from_millis(50))
            .with_jitter(Duration::from_millis(20));
        for _ in 0..1000 {
            let drawn = latency(&faults);
            assert!(drawn >= Duration::from_millis(30), "{drawn:?}");
            assert!(drawn <= Duration::from_millis(70), "{drawn:?}");
        }
        let wide = DirectionFaults::none()
            .with_latency(Duration::from_millis(5))
            .with_jitter(Duration::from_millis(50));
        for _ in 0..1000 {
            assert!(latency(&wide) <= Duration::from_millis(55));
        }
        let huge = DirectionFaults::none()
            .with_latency(Duration::MAX)
            .with_jitter(Duration::MAX);
        let _ = latency(&huge);
    }

    #[test]
    fn pacing_writes_twenty_milliseconds_at_a_time() {
        assert_eq!(pace_size(40_960), 819);
        assert_eq!(pace_size(1), 1);
        assert_eq!(
            transfer_time(819, 40_960),
            Duration::from_secs_f64(819.0 / 40_960.0)
        );
        assert_eq!(transfer_time(usize::MAX, 1), delay(u64::MAX));
    }
}
