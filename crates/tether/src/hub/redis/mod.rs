//! [`RedisBackplane`]: rooms across server nodes through Redis (feature `redis`).
//!
//! The public face: options, statistics, and the [`Backplane`] implementation; the
//! connection, the task, the envelope and the errors live in the submodules.

mod conn;
mod driver;
mod error;
mod shards;
mod shared;
mod store;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::Message;

pub use error::{BackplaneError, BackplaneErrorKind};
pub use shards::ShardHealth;

use super::history::{HistoryConfig, Position};
use super::{Backplane, HistoryFuture, LocalDelivery, RemoteSink};
use conn::{Target, Timeouts};
use driver::{Driver, Settings};
use shared::Shared;

/// Settings of a [`RedisBackplane`], builder-style.
///
/// ```
/// use std::time::Duration;
/// use tether::hub::RedisOptions;
///
/// let options = RedisOptions::new()
///     .prefix("chat")
///     .node_id("eu-1")
///     .buffer_capacity(10_000)
///     .reconnect_backoff(Duration::from_millis(50), Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisOptions {
    prefix: String,
    node_id: Option<String>,
    buffer_capacity: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    connect_timeout: Duration,
    response_timeout: Duration,
    ping_interval: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl RedisOptions {
    /// The default channel prefix: `tether`.
    pub const DEFAULT_PREFIX: &'static str = "tether";
    /// The default outbox (outage buffer) capacity: 1024 broadcasts.
    pub const DEFAULT_BUFFER_CAPACITY: usize = 1024;
    /// The default delay ceiling of the first reconnection: 100 ms.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
    /// The default cap on reconnection delays: 5 s.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
    /// The default time a connection attempt may take: 2 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default time Redis may take to answer a command: 2 s.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
    /// The default time between health checks (`PING`): 1 s.
    pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(1);

    /// The defaults: prefix `tether`, a random node id, a buffer of 1024 broadcasts,
    /// reconnection backoff from 100 ms up to 5 s with full jitter, 2 s connect and response
    /// timeouts, a `PING` every second.
    pub fn new() -> Self {
        Self {
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            node_id: None,
            buffer_capacity: Self::DEFAULT_BUFFER_CAPACITY,
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
            ping_interval: Self::DEFAULT_PING_INTERVAL,
        }
    }

    /// The namespace of the channels: room `NAME` is channel `PREFIX:room:NAME`. Nodes share
    /// rooms only when they use the same prefix. Default: `tether`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// This node's id, carried by each broadcast it publishes (at most 255 bytes; longer ids
    /// are cut). Give each node its own. Default (or empty): 16 random hex digits.
    pub fn node_id(mut self, node_id: impl Into<String>) -> Self {
        let node_id = node_id.into();
        self.node_id = (!node_id.is_empty()).then(|| wire::cut_node_id(&node_id).to_owned());
        self
    }

    /// How many broadcasts wait to be published at most, which is how many an outage can
    /// keep; beyond it the oldest are dropped (counted, logged). At least 1. Default: 1024.
    pub fn buffer_capacity(mut self, capacity: usize) -> Self {
        self.buffer_capacity = capacity.max(1);
        self
    }

    /// Reconnection delays: before attempt `n` a random delay in
    /// `[0, min(max, initial * 2^n)]` (full jitter). Default: 100 ms and 5 s.
    pub fn reconnect_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.initial_backoff = initial;
        self.max_backoff = max.max(initial);
        self
    }

    /// How long one connection attempt may take. Default: 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long Redis may take to answer a command before the connection counts as lost.
    /// Default: 2 s.
    pub fn response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// How often the backplane checks the connection with a `PING` (a connection that only
    /// receives would not notice a silent network failure otherwise) and counts the nodes
    /// present (what a flush after an outage waits for). Default: 1 s.
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.ping_interval = interval.max(Duration::from_millis(10));
        self
    }

    fn settings(&self) -> Settings {
        Settings {
            timeouts: Timeouts {
                connect: self.connect_timeout,
                response: self.response_timeout,
            },
            initial_backoff: self.initial_backoff,
            max_backoff: self.max_backoff,
            ping_interval: self.ping_interval,
        }
    }
}

/// A backplane's counters since it started, and its health now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackplaneStats {
    /// Connected, and subscribed to every room with local members.
    pub healthy: bool,
    /// Failures: failed connection attempts, lost connections, unreadable messages.
    pub errors: u64,
    /// Connections made again after a failure (or after a degraded start).
    pub reconnects: u64,
    /// Broadcasts published to Redis.
    pub published: u64,
    /// Broadcasts from other nodes handed to the hub.
    pub received: u64,
    /// Broadcasts waiting to be published now (during an outage: the buffer).
    pub buffered: usize,
    /// Broadcasts dropped because the buffer was full, in total.
    pub buffer_dropped: u64,
}

/// A [`Backplane`] through Redis or a Redis Cluster (feature `redis`).
///
/// Each room is one Redis channel, `{PREFIX:room:NAME}` (prefix `tether` by default; the
/// braces make the name a Redis Cluster hash tag). The hub publishes every local broadcast
/// and subscribes to a room while it has local members; the backplane carries the
/// broadcasts to the hub's local delivery. With `redis+cluster://` it uses sharded pub/sub
/// (`SSUBSCRIBE`/`SPUBLISH`), so each room lives on the shard that owns its channel's slot
/// and rooms spread over the cluster (do not put braces in the prefix).
///
/// **Shared history.** When the hub has history on
/// ([`HubConfig::with_history`](crate::hub::HubConfig::with_history)), the backplane keeps it
/// in Redis for every node: a stream per room beside its channel (`{PREFIX:room:NAME}:history`,
/// capped at the history's size, expiring after its ttl without a publication) and a hash
/// with the room's epoch and last offset (`{PREFIX:room:NAME}:meta`, kept a day). One
/// script takes the next offset, appends and publishes, atomically, so every node sees a
/// room's publications in offset order with the same positions, and a member can recover on
/// any node ([`Hub::join_since`](crate::hub::Hub::join_since)): the backplane subscribes to
/// the room, then reads the stream after the member's offset, and the hub holds back the
/// live publications meanwhile so that none is lost or given twice. This node's own
/// publications reach its members through Redis too. Redis restarted without persistence (or
/// a room idle for a day) starts a new epoch. While Redis is unreachable, this node's
/// members get its publications at once, at positions in an epoch of the node's own (a
/// recovery from one of those fails, as it must: the other nodes never saw them there), and
/// recoveries fail with [`RecoveryFailure::Unavailable`](crate::hub::RecoveryFailure::Unavailable).
///
/// Guarantees and their limits:
///
/// - A node never delivers a broadcast twice: each message carries the node id, a
///   per-process instance and a sequence number; receivers and the history script skip what
///   they had already.
/// - One node's broadcasts to a room reach the other nodes in the order they were made: one
///   task publishes them, in order, on one connection; a batch interrupted by a failure is
///   sent again and receivers drop what they had already (sequence numbers).
/// - Text stays text and binary stays binary.
/// - [`publish`](Backplane::publish) never waits and never fails: it queues into the outbox.
///   While Redis is reachable the outbox is a publish queue that drops nothing short of 64 MiB
///   waiting (a flood waits for the task, it is not an outage). While Redis is unreachable it
///   is the outage buffer ([`RedisOptions::buffer_capacity`]): when that is full the oldest
///   broadcast is dropped, counted in [`BackplaneStats::buffer_dropped`] and logged at warn.
/// - When the connection fails, [`is_healthy`](Backplane::is_healthy) turns false, local
///   delivery goes on, and the backplane reconnects (exponential backoff with full jitter),
///   subscribes again to every room with local members, then flushes the buffer. Each node
///   also subscribes to the deployment's presence channel `PREFIX:nodes` (once its rooms are
///   subscribed); before flushing, the backplane waits, at most the longest backoff, until as
///   many nodes are present as before the outage (after a degraded start: its own next
///   backoff delay), so that nodes reconnecting a little later get the buffered broadcasts
///   too. On a cluster, every primary must answer for the backplane to be healthy.
/// - Pub/sub keeps nothing: a node that is disconnected misses what others publish
///   meanwhile. With history on, its members can recover it from the stream when they join
///   again.
///
/// ```no_run
/// # async fn run() -> Result<(), tether::hub::BackplaneError> {
/// use tether::hub::{Hub, HubConfig, RedisBackplane, RedisOptions};
///
/// let backplane =
///     RedisBackplane::connect("redis://127.0.0.1:6379", RedisOptions::new().node_id("a")).await?;
/// let hub = Hub::with_backplane(HubConfig::default(), backplane.clone());
/// assert!(hub.backplane_healthy());
/// # Ok(()) }
/// ```
///
/// Dropping the last handle (the hub holds one) stops its task and closes its connection.
pub struct RedisBackplane {
    shared: Arc<Shared>,
    /// The server's address, when it is a single server (not a cluster).
    single: Option<String>,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("node_id", &self.shared.node_id)
            .field("healthy", &self.shared.is_healthy())
            .finish_non_exhaustive()
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl RedisBackplane {
    /// Connects to `redis://host:port[/db]` (one server) or
    /// `redis+cluster://[user:password@]host:port[,host:port...]` (a Redis Cluster: sharded
    /// pub/sub, `SSUBSCRIBE`/`SPUBLISH`), and runs the backplane's task on the current tokio
    /// runtime. Needs Redis 7 or later for a cluster, 6 or later otherwise (RESP3).
    ///
    /// # Errors
    /// A malformed URL ([`BackplaneErrorKind::InvalidUrl`]); Redis unreachable now
    /// ([`Unreachable`](BackplaneErrorKind::Unreachable), after one attempt of at most the
    /// connect timeout); Redis answering with an error ([`Protocol`](BackplaneErrorKind::Protocol));
    /// no tokio runtime ([`NoRuntime`](BackplaneErrorKind::NoRuntime)).
    pub async fn connect(url: &str, options: RedisOptions) -> Result<Arc<Self>, BackplaneError> {
        let target = Target::parse(url)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BackplaneError::no_runtime())?;
        let (backplane, mut driver) = Self::build(target.clone(), &options);
        let shown = target.shown();
        let session = driver
            .open()
            .await
            .map_err(|error| BackplaneError::from_redis(&shown, error))?;
        backplane.shared.set_healthy(true);
        tracing::info!(node = %backplane.shared.node_id, redis = %shown, "backplane connected to redis");
        runtime.spawn(driver.run(Some(session)));
        Ok(backplane)
    }

    /// Starts without waiting for Redis: the backplane is unhealthy at first and connects in
    /// the background (with backoff), then behaves as one from
    /// [`connect`](RedisBackplane::connect). Broadcasts made before are buffered.
    ///
    /// # Errors
    /// Only a malformed URL ([`BackplaneErrorKind::InvalidUrl`]), or no tokio runtime
    /// ([`NoRuntime`](BackplaneErrorKind::NoRuntime)).
    pub fn connect_degraded(url: &str, options: RedisOptions) -> Result<Arc<Self>, BackplaneError> {
        let target = Target::parse(url)?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| BackplaneError::no_runtime())?;
        let (backplane, driver) = Self::build(target, &options);
        runtime.spawn(driver.run(None));
        Ok(backplane)
    }

    fn build(target: Target, options: &RedisOptions) -> (Arc<Self>, Driver) {
        let node_id = options.node_id.clone().unwrap_or_else(random_node_id);
        let (requests, pending) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(
            node_id,
            random_u64(),
            &options.prefix,
            options.buffer_capacity,
            requests,
            options.response_timeout * 2,
        ));
        let single = match &target {
            Target::Single(_) => Some(target.shown()),
            Target::Cluster(_) => None,
        };
        let driver = Driver::new(Arc::clone(&shared), target, options.settings(), pending);
        (Arc::new(Self { shared, single }), driver)
    }

    /// The counters and the health now.
    pub fn stats(&self) -> BackplaneStats {
        self.shared.stats()
    }

    /// The health of each shard: on a Redis Cluster, every primary that owns slots, as the
    /// last health check (every [`ping_interval`](RedisOptions::ping_interval), and at each
    /// connection attempt) saw it, by address; the backplane is healthy only when all of
    /// them answer, and this says which do not. A lost connection marks them all unchecked
    /// until the next check. On a single server: one entry, its address, healthy as the
    /// backplane is.
    pub fn shards(&self) -> Vec<ShardHealth> {
        match &self.single {
            Some(address) => {
                let healthy = self.shared.is_healthy();
                vec![ShardHealth {
                    address: address.clone(),
                    slots: 0,
                    healthy,
                    error: (!healthy).then(|| "unreachable".to_owned()),
                }]
            }
            None => self.shared.shards(),
        }
    }

    /// This node's id on the backplane.
    pub fn node_id(&self) -> &str {
        &self.shared.node_id
    }

    /// The rooms subscribed on Redis now (confirmed by Redis), sorted.
    pub fn subscriptions(&self) -> Vec<String> {
        self.shared.subscribed()
    }
}

impl Backplane for RedisBackplane {
    fn attach(&self, sink: RemoteSink, history: HistoryConfig) {
        self.shared.attach(sink, history);
    }

    fn publish(&self, room: &str, message: &Message) -> LocalDelivery {
        self.shared.publish(room, message)
    }

    fn keeps_history(&self) -> bool {
        self.shared.keeps_history()
    }

    fn recover(
        &self,
        room: &str,
        since: Option<Position>,
        history: HistoryConfig,
    ) -> HistoryFuture {
        self.shared.recover(room, since, history)
    }

    fn subscribe(&self, room: &str) {
        self.shared.want(room, true);
    }

    fn unsubscribe(&self, room: &str) {
        self.shared.want(room, false);
    }

    fn is_healthy(&self) -> bool {
        self.shared.is_healthy()
    }
}

fn random_u64() -> u64 {
    let [a, b, c, d] = crate::mask_keys::mask_key();
    let [e, f, g, h] = crate::mask_keys::mask_key();
    u64::from_be_bytes([a, b, c, d, e, f, g, h])
}

/// 16 random hex digits.
fn random_node_id() -> String {
    format!("{:016x}", random_u64())
}
