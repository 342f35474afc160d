//! [`FaultProxy`]: the listener, the state every connection shares (the current faults, the
//! counters), and the accept loop that takes the proxy down and brings it back up.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::faults::{DirectionStats, Faults, Stats};
use super::{connection, control};

/// How long the accept loop waits before it tries again to listen after a failure.
const REBIND_RETRY: Duration = Duration::from_millis(50);

/// A TCP proxy that injects network faults between clients and one upstream server, like
/// Toxiproxy's toxics: latency and jitter, bandwidth limits, slicing into small segments,
/// resets, black holes, slow closes and refused connections (see [`Faults`]).
///
/// Every client connection accepted on [`local_addr`](Self::local_addr) gets its own
/// connection to the upstream address, and the bytes are pumped both ways through the
/// current faults; [`set_faults`](Self::set_faults) changes them for the open connections
/// too. [`serve_control`](Self::serve_control) adds the HTTP/JSON control API (see the
/// [module documentation](super)). Dropping the proxy, or [`shutdown`](Self::shutdown),
/// stops it and closes every socket it opened.
///
/// Meant for tests: it trusts its upstream, logs each connection at info level and holds up
/// to 1 MiB per direction of a connection while it delays or throttles it.
pub struct FaultProxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    stop: CancellationToken,
    /// The accept loop and the control servers; each closes what it opened when stopped.
    tasks: Mutex<JoinSet<()>>,
}

impl FaultProxy {
    /// Listens on `listen` (port 0 picks a free one) and forwards every connection to
    /// `upstream`, with no fault until [`set_faults`](Self::set_faults).
    ///
    /// The listener is bound with `SO_REUSEADDR` (except on Windows), so that the proxy can
    /// listen on the same address again after being [down](Faults::down). Must be called
    /// within a tokio runtime with the time and I/O drivers.
    ///
    /// # Errors
    /// The address cannot be listened on (in use, not local, no permission), or `upstream`
    /// is the proxy's own address.
    pub async fn bind(listen: SocketAddr, upstream: SocketAddr) -> io::Result<Self> {
        let listener = listen_on(listen)?;
        let local_addr = listener.local_addr()?;
        if upstream == local_addr {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("expected an upstream other than the proxy itself, found {upstream}"),
            ));
        }
        let (faults, _) = watch::channel(Setting::default());
        let (applied, applied_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            faults,
            applied: applied_rx,
            counters: Counters::default(),
            upstream,
        });
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        tasks.spawn(accept_loop(
            listener,
            local_addr,
            Arc::clone(&shared),
            applied,
            stop.clone(),
        ));
        tracing::info!(%local_addr, %upstream, "fault proxy listening");
        Ok(Self {
            shared,
            local_addr,
            stop,
            tasks: Mutex::new(tasks),
        })
    }

    /// The address clients connect to (with the port chosen when `listen` had port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The server every connection is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Replaces the faults, for the open connections and the next ones. Returns once the
    /// listener follows them: after `down`, a new connection is refused; after coming back
    /// up, one is accepted. (The open connections are closed on `down` a moment later.)
    pub async fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults).await;
    }

    /// The faults in force.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// What the proxy counted since it started.
    pub fn stats(&self) -> Stats {
        self.shared.stats()
    }

    /// Serves the control API (see the [module documentation](super)) on `addr` until the
    /// proxy stops; returns the address it listens on (with the port chosen when `addr` had
    /// port 0). May be called more than once.
    ///
    /// # Errors
    /// The address cannot be listened on.
    pub async fn serve_control(&self, addr: SocketAddr) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let task = control::serve(listener, Arc::clone(&self.shared), self.stop.clone());
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .spawn(task);
        tracing::info!(%local, "fault proxy control API listening");
        Ok(local)
    }

    /// Stops the proxy: stops listening, closes every connection it proxied (both sockets)
    /// and the control API, and returns when all of them are closed.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let mut tasks =
            std::mem::take(&mut *self.tasks.lock().unwrap_or_else(PoisonError::into_inner));
        while tasks.join_next().await.is_some() {}
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The tasks close their sockets when they see this; the `JoinSet` dropped next aborts
        // any task that does not get the chance.
        self.stop.cancel();
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.shared.upstream)
            .field("faults", &self.faults())
            .finish_non_exhaustive()
    }
}

/// The faults with a version number, so that a change can be waited for.
#[derive(Debug, Clone, Default)]
pub(super) struct Setting {
    pub(super) version: u64,
    pub(super) faults: Faults,
}

/// What the proxy's tasks share.
#[derive(Debug)]
pub(super) struct Shared {
    /// The faults in force; each connection watches them.
    pub(super) faults: watch::Sender<Setting>,
    /// The last version the accept loop applied (the sender is the loop's: once it has
    /// ended, nothing waits for it).
    applied: watch::Receiver<u64>,
    pub(super) counters: Counters,
    pub(super) upstream: SocketAddr,
}

impl Shared {
    pub(super) fn faults(&self) -> Faults {
        self.faults.borrow().faults.clone()
    }

    pub(super) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    pub(super) async fn set_faults(&self, faults: Faults) {
        let mut version = 0;
        self.faults.send_modify(|setting| {
            setting.version += 1;
            setting.faults = faults;
            version = setting.version;
        });
        let mut applied = self.applied.clone();
        // An error means the accept loop has stopped: there is nothing left to wait for.
        let _ = applied.wait_for(|&applied| applied >= version).await;
    }
}

/// The counters behind [`Stats`].
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) accepted: AtomicU64,
    pub(super) active: AtomicU64,
    pub(super) resets: AtomicU64,
    pub(super) upstream: DirectionCounters,
    pub(super) downstream: DirectionCounters,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        Stats {
            connections_accepted: self.accepted.load(Ordering::Relaxed),
            connections_active: self.active.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            upstream: self.upstream.snapshot(),
            downstream: self.downstream.snapshot(),
        }
    }
}

/// The counters behind [`DirectionStats`].
#[derive(Debug, Default)]
pub(super) struct DirectionCounters {
    pub(super) bytes: AtomicU64,
    pub(super) segments: AtomicU64,
    pub(super) discarded_bytes: AtomicU64,
}

impl DirectionCounters {
    fn snapshot(&self) -> DirectionStats {
        DirectionStats {
            bytes: self.bytes.load(Ordering::Relaxed),
            segments: self.segments.load(Ordering::Relaxed),
            discarded_bytes: self.discarded_bytes.load(Ordering::Relaxed),
        }
    }
}

/// A listener on `addr` that can be bound again as soon as it is closed.
fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // On Windows the option lets another socket take the port: leave it off there.
    #[cfg(not(windows))]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections and runs each in its own task, drops the listener while the proxy
/// is down and listens again when it comes back up; on `stop`, closes every connection.
async fn accept_loop(
    listener: TcpListener,
    local: SocketAddr,
    shared: Arc<Shared>,
    applied: watch::Sender<u64>,
    stop: CancellationToken,
) {
    let mut faults = shared.faults.subscribe();
    let mut listener = Some(listener);
    let mut connections = JoinSet::new();
    let mut retry: Option<Instant> = None;
    loop {
        let (version, down) = {
            let setting = faults.borrow_and_update();
            (setting.version, setting.faults.down)
        };
        if down {
            retry = None;
            if listener.take().is_some() {
                tracing::info!(%local, "fault proxy down: refusing connections");
            }
        } else if listener.is_none() && retry.is_none_or(|at| at <= Instant::now()) {
            match listen_on(local) {
                Ok(bound) => {
                    tracing::info!(%local, "fault proxy up: accepting connections");
                    listener = Some(bound);
                    retry = None;
                }
                Err(error) => {
                    tracing::warn!(%local, %error, "fault proxy cannot listen again; retrying");
                    retry = Some(Instant::now() + REBIND_RETRY);
                }
            }
        }
        applied.send_replace(version);
        tokio::select! {
            () = stop.cancelled() => break,
            changed = faults.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            accepted = accept(listener.as_ref()) => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection::run(stream, peer, Arc::clone(&shared)));
                }
                Err(error) => {
                    // Out of file descriptors and the like: keep the open connections going.
                    tracing::warn!(%error, "fault proxy accept failed");
                    tokio::time::sleep(REBIND_RETRY).await;
                }
            },
            () = sleep_until(retry) => {}
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    connections.shutdown().await;
}

/// The next connection, or never while there is no listener.
async fn accept(listener: Option<&TcpListener>) -> io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Sleeps until `deadline`, or forever without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
