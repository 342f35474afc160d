//! The two kinds of Redis the backplane talks to, behind one [`Session`]: one server (a
//! multiplexed RESP3 connection: `SUBSCRIBE`/`PUBLISH`) or a Redis Cluster (the crate's
//! cluster connection: sharded pub/sub, `SSUBSCRIBE`/`SPUBLISH`, routed by each channel's
//! slot and following `MOVED`).
//!
//! A session is one attempt at being connected: the driver drops it on the first failure and
//! opens a new one, so the crate's own reconnection matters little here.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::cluster::ClusterClientBuilder;
use ::redis::cluster_async::ClusterConnection;
use ::redis::{
    AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, ProtocolVersion, PushInfo,
    RedisError, RedisResult, Value,
};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::error::BackplaneError;
use super::shards::{self, ShardHealth};
use super::store::{self, Append, Scripts};

/// Where a cluster session reports the health of each shard after every check.
pub(super) type ShardReport = Arc<dyn Fn(Vec<ShardHealth>) + Send + Sync>;

/// Where the backplane connects, parsed from its URL.
#[derive(Clone)]
pub(super) enum Target {
    /// One server.
    Single(ConnectionInfo),
    /// The seed nodes of a cluster.
    Cluster(Vec<ConnectionInfo>),
}

/// The URL scheme of a Redis Cluster.
const CLUSTER_SCHEME: &str = "redis+cluster://";

impl Target {
    /// Parses `redis://host:port[/db]` (and the other single-server forms the `redis` crate
    /// reads) or `redis+cluster://[user:password@]host:port[,host:port...]`.
    pub(super) fn parse(url: &str) -> Result<Self, BackplaneError> {
        let url = url.trim();
        if let Some(rest) = strip_prefix_ignore_case(url, CLUSTER_SCHEME) {
            return Self::parse_cluster(rest);
        }
        if !url.contains("://") {
            return Err(BackplaneError::invalid_url(
                "expected redis://host:port or redis+cluster://host:port,...",
            ));
        }
        let info = url
            .into_connection_info()
            .map_err(BackplaneError::invalid_url_from)?;
        Ok(Self::Single(resp3(info)))
    }

    fn parse_cluster(rest: &str) -> Result<Self, BackplaneError> {
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(BackplaneError::invalid_url(
                "a cluster url is redis+cluster://host:port[,host:port...], without a path",
            ));
        }
        let (user_info, hosts) = match rest.rsplit_once('@') {
            Some((user_info, hosts)) => (Some(user_info), hosts),
            None => (None, rest),
        };
        let mut nodes = Vec::new();
        for host in hosts.split(',').map(str::trim) {
            if host.is_empty() {
                return Err(BackplaneError::invalid_url("empty host in the cluster url"));
            }
            let node = match user_info {
                Some(user_info) => format!("redis://{user_info}@{host}"),
                None => format!("redis://{host}"),
            };
            let info = node
                .as_str()
                .into_connection_info()
                .map_err(BackplaneError::invalid_url_from)?;
            nodes.push(resp3(info));
        }
        Ok(Self::Cluster(nodes))
    }

    /// The addresses, without credentials, for logs and errors.
    pub(super) fn shown(&self) -> String {
        match self {
            Self::Single(info) => info.addr().to_string(),
            Self::Cluster(nodes) => {
                let addresses: Vec<String> =
                    nodes.iter().map(|info| info.addr().to_string()).collect();
                format!("cluster {}", addresses.join(","))
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

fn resp3(info: ConnectionInfo) -> ConnectionInfo {
    let settings = info
        .redis_settings()
        .clone()
        .set_protocol(ProtocolVersion::RESP3);
    info.set_redis_settings(settings)
}

/// How long connecting and each command may take.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) connect: Duration,
    pub(super) response: Duration,
}

/// What receives the connection's push messages (channel messages, unsubscriptions, the
/// crate's disconnection notice).
pub(super) type PushHandler = Arc<dyn Fn(PushInfo) + Send + Sync>;

/// One connection to Redis (one server, or every node of a cluster).
pub(super) enum Session {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// One broadcast to send: its channel and envelope, and with a shared history what the
/// publish script needs.
#[derive(Clone)]
pub(super) struct Publication {
    pub(super) channel: Arc<str>,
    pub(super) payload: Bytes,
    pub(super) append: Option<Append>,
}

/// Adds `publication` to `pipe`: `PUBLISH`/`SPUBLISH`, or the publish script by its hash
/// (`EVALSHA`) or, when Redis does not know it yet, by its text (`EVAL`).
fn push_publication(
    pipe: &mut ::redis::Pipeline,
    scripts: &Scripts,
    publication: &Publication,
    sharded: bool,
    by_text: bool,
) {
    match &publication.append {
        Some(append) => store::push_publish(
            pipe,
            scripts,
            &publication.channel,
            &publication.payload,
            append,
            sharded,
            by_text,
        ),
        None => {
            pipe.cmd(if sharded { "SPUBLISH" } else { "PUBLISH" })
                .arg(&*publication.channel)
                .arg(&publication.payload[..]);
        }
    }
}

/// Whether Redis answered that it does not know a script (restarted, or `SCRIPT FLUSH`).
fn is_no_script(error: &RedisError) -> bool {
    error.code() == Some("NOSCRIPT")
}

/// What a batch of publications did: how many subscribers each published one reached
/// (`None`: not published), and the first error.
pub(super) struct Published {
    pub(super) receivers: Vec<Option<u64>>,
    pub(super) error: Option<RedisError>,
}

impl Session {
    /// Connects (one attempt) and checks that Redis answers.
    pub(super) async fn open(
        target: &Target,
        timeouts: Timeouts,
        push: PushHandler,
        report: &ShardReport,
        known: &[String],
    ) -> RedisResult<Self> {
        let push = move |info: PushInfo| -> Result<(), Infallible> {
            push(info);
            Ok(())
        };
        let mut session = match target {
            Target::Single(info) => {
                let client = ::redis::Client::open(info.clone())?;
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeouts.connect))
                    .set_response_timeout(Some(timeouts.response))
                    .set_push_sender(push);
                let connection = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?;
                Self::Single(connection)
            }
            Target::Cluster(nodes) => {
                let client = ClusterClientBuilder::new(nodes.clone())
                    .use_protocol(ProtocolVersion::RESP3)
                    .connection_timeout(timeouts.connect)
                    .response_timeout(timeouts.response)
                    .retries(3)
                    .push_sender(push)
                    .build()?;
                let connect = client.get_async_connection();
                match tokio::time::timeout(timeouts.connect * 2, connect).await {
                    Ok(connection) => Self::Cluster(connection?),
                    Err(_) => return Err(timeout_error("connecting to the cluster")),
                }
            }
        };
        session.ping(timeouts.response, report, known).await?;
        Ok(session)
    }

    /// `PING`, bounded by `timeout`. On a cluster every primary is pinged on its own (the list
    /// from any primary, or from one of the `known` addresses), and `report` gets each one's
    /// health; one that does not answer fails the check.
    pub(super) async fn ping(
        &mut self,
        timeout: Duration,
        report: &ShardReport,
        known: &[String],
    ) -> RedisResult<()> {
        match self {
            Self::Single(connection) => {
                let ping = ::redis::cmd("PING");
                match tokio::time::timeout(timeout, ping.query_async::<Value>(connection)).await {
                    Ok(result) => result.map(drop),
                    Err(_) => Err(timeout_error("PING")),
                }
            }
            Self::Cluster(connection) => {
                let checked = shards::check(connection, timeout, known).await?;
                let failed = checked.iter().find(|shard| !shard.healthy).map(|shard| {
                    let why = shard.error.as_deref().unwrap_or("no answer");
                    format!("shard {} is unhealthy: {why}", shard.address)
                });
                report(checked);
                match failed {
                    Some(failed) => Err(RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::ConnectionRefused,
                        failed,
                    ))),
                    None => Ok(()),
                }
            }
        }
    }

    /// Subscribes to `channels` (sharded on a cluster).
    pub(super) async fn subscribe(&mut self, channels: &[Arc<str>]) -> RedisResult<()> {
        match self {
            Self::Single(connection) => connection.subscribe(names(channels)).await,
            Self::Cluster(connection) => {
                for_each_channel(connection, channels, |mut connection, channel| async move {
                    connection.ssubscribe(&*channel).await
                })
                .await
            }
        }
    }

    /// Unsubscribes from `channels`.
    pub(super) async fn unsubscribe(&mut self, channels: &[Arc<str>]) -> RedisResult<()> {
        match self {
            Self::Single(connection) => connection.unsubscribe(names(channels)).await,
            Self::Cluster(connection) => {
                for_each_channel(connection, channels, |mut connection, channel| async move {
                    connection.sunsubscribe(&*channel).await
                })
                .await
            }
        }
    }

    /// Publishes `batch` in order: one pipeline on one server; on a cluster one pipeline per
    /// channel (a pipeline cannot span slots), the channels concurrently.
    pub(super) async fn publish(&mut self, scripts: &Scripts, batch: &[Publication]) -> Published {
        match self {
            Self::Single(connection) => {
                let mut result = Err(timeout_error("PUBLISH"));
                for by_text in [false, true] {
                    let mut pipe = ::redis::pipe();
                    for publication in batch {
                        push_publication(&mut pipe, scripts, publication, false, by_text);
                    }
                    result = pipe.query_async::<Vec<u64>>(connection).await;
                    // The script is idempotent: sending the batch again by text is safe.
                    if !matches!(&result, Err(error) if is_no_script(error)) {
                        break;
                    }
                }
                match result {
                    Ok(counts) => Published {
                        receivers: counts.into_iter().map(Some).collect(),
                        error: None,
                    },
                    Err(error) => Published {
                        receivers: vec![None; batch.len()],
                        error: Some(error),
                    },
                }
            }
            Self::Cluster(connection) => publish_sharded(connection, scripts, batch).await,
        }
    }

    /// Runs the history read script (by hash, then by text if Redis does not know it).
    pub(super) async fn read_history(
        &mut self,
        scripts: &Scripts,
        channel: &str,
        since: Option<u64>,
        size: usize,
        new_epoch: &str,
    ) -> RedisResult<Value> {
        let mut result = Err(timeout_error("EVALSHA"));
        for by_text in [false, true] {
            let command = store::read_command(scripts, channel, since, size, new_epoch, by_text);
            result = match self {
                Self::Single(connection) => command.query_async::<Value>(connection).await,
                Self::Cluster(connection) => command.query_async::<Value>(connection).await,
            };
            if !matches!(&result, Err(error) if is_no_script(error)) {
                break;
            }
        }
        result
    }

    /// How many connections subscribe to `channel` now (all nodes of a cluster); `None` when
    /// the answer was lost this time. The count is advisory: when the server pushes a
    /// `sunsubscribe` (a slot moved) while the command is in flight, the crate hands the push
    /// over as the command's reply (an unexpected return type). That is not a broken
    /// connection, so it must not count as an error or cause a reconnect.
    pub(super) async fn subscribers(&mut self, channel: &str) -> RedisResult<Option<u64>> {
        let reply = match self {
            Self::Single(connection) => {
                ::redis::cmd("PUBSUB")
                    .arg("NUMSUB")
                    .arg(channel)
                    .query_async::<Value>(connection)
                    .await
            }
            Self::Cluster(connection) => {
                ::redis::cmd("PUBSUB")
                    .arg("SHARDNUMSUB")
                    .arg(channel)
                    .query_async::<Value>(connection)
                    .await
            }
        };
        match reply {
            Ok(value) => Ok(Some(count_in(&value, channel.as_bytes()))),
            Err(error) if error.kind() == ::redis::ErrorKind::UnexpectedReturnType => {
                tracing::debug!(%error, "a push took the place of the subscriber count");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }
}

fn names(channels: &[Arc<str>]) -> Vec<&str> {
    channels.iter().map(|channel| &**channel).collect()
}

fn timeout_error(what: &'static str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to {what} in time"),
    ))
}

/// Runs `command` for each channel on a clone of the cluster connection, concurrently (each
/// channel may live on another node). The first error wins.
async fn for_each_channel<F, Fut>(
    connection: &ClusterConnection,
    channels: &[Arc<str>],
    command: F,
) -> RedisResult<()>
where
    F: Fn(ClusterConnection, Arc<str>) -> Fut,
    Fut: Future<Output = RedisResult<()>> + Send + 'static,
{
    let mut tasks = JoinSet::new();
    for channel in channels {
        tasks.spawn(command(connection.clone(), Arc::clone(channel)));
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = joined.unwrap_or_else(|_| Err(timeout_error("a cluster command")));
        if let (Err(error), None) = (result, &first_error) {
            first_error = Some(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn publish_sharded(
    connection: &ClusterConnection,
    scripts: &Scripts,
    batch: &[Publication],
) -> Published {
    // The batch's positions per channel, in order.
    let mut by_channel: HashMap<Arc<str>, Vec<usize>> = HashMap::new();
    for (index, publication) in batch.iter().enumerate() {
        by_channel
            .entry(Arc::clone(&publication.channel))
            .or_default()
            .push(index);
    }
    let mut tasks = JoinSet::new();
    for (_, indexes) in by_channel {
        let pipes = [false, true].map(|by_text| {
            let mut pipe = ::redis::pipe();
            for &index in &indexes {
                if let Some(publication) = batch.get(index) {
                    push_publication(&mut pipe, scripts, publication, true, by_text);
                }
            }
            pipe
        });
        let mut connection = connection.clone();
        tasks.spawn(async move {
            let [by_hash, by_text] = pipes;
            let mut result = by_hash.query_async::<Vec<u64>>(&mut connection).await;
            if matches!(&result, Err(error) if is_no_script(error)) {
                // The script is idempotent: sending the batch again by text is safe.
                result = by_text.query_async::<Vec<u64>>(&mut connection).await;
            }
            (indexes, result)
        });
    }
    let mut published = Published {
        receivers: vec![None; batch.len()],
        error: None,
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((indexes, Ok(counts))) => {
                for (index, count) in indexes.into_iter().zip(counts) {
                    if let Some(slot) = published.receivers.get_mut(index) {
                        *slot = Some(count);
                    }
                }
            }
            Ok((_, Err(error))) => {
                published.error.get_or_insert(error);
            }
            Err(_) => {
                published
                    .error
                    .get_or_insert_with(|| timeout_error("SPUBLISH"));
            }
        }
    }
    published
}

/// The count for `channel` in a `PUBSUB NUMSUB`/`SHARDNUMSUB` reply (a flat array of channel
/// and count, or a map).
fn count_in(value: &Value, channel: &[u8]) -> u64 {
    let as_count = |value: &Value| match value {
        Value::Int(count) => u64::try_from(*count).unwrap_or(0),
        _ => 0,
    };
    let is_channel = |value: &Value| match value {
        Value::BulkString(name) => name == channel,
        Value::SimpleString(name) => name.as_bytes() == channel,
        _ => false,
    };
    match value {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|pair| match pair {
                [name, count] if is_channel(name) => Some(as_count(count)),
                _ => None,
            })
            .max()
            .unwrap_or(0),
        Value::Map(pairs) => pairs
            .iter()
            .filter(|(name, _)| is_channel(name))
            .map(|(_, count)| as_count(count))
            .max()
            .unwrap_or(0),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn single_server_urls() {
        let target = Target::parse("redis://127.0.0.1:6390/2").unwrap();
        assert_eq!(target.shown(), "127.0.0.1:6390");
        let Target::Single(info) = target else {
            unreachable!()
        };
        assert_eq!(info.redis_settings().db(), 2);
        assert_eq!(info.redis_settings().protocol(), ProtocolVersion::RESP3);
    }

    #[test]
    fn cluster_urls() {
        let target = Target::parse("redis+cluster://a:1,b:2/").unwrap();
        assert_eq!(target.shown(), "cluster a:1,b:2");
        let target = Target::parse("REDIS+CLUSTER://u:secret@a:1,b:2").unwrap();
        assert!(!target.shown().contains("secret"));
        let Target::Cluster(nodes) = target else {
            unreachable!()
        };
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[1].redis_settings().password(), Some("secret"));
        assert_eq!(nodes[1].redis_settings().protocol(), ProtocolVersion::RESP3);
    }

    #[test]
    fn malformed_urls() {
        for url in [
            "",
            "127.0.0.1:6379",
            "http://127.0.0.1:6379",
            "redis://127.0.0.1:6379/notadb",
            "redis+cluster://",
            "redis+cluster://a:1,,b:2",
            "redis+cluster://a:1/3",
            "redis+cluster://a:notaport",
        ] {
            let error = Target::parse(url).err().unwrap();
            assert_eq!(
                error.kind(),
                super::super::BackplaneErrorKind::InvalidUrl,
                "{url}"
            );
        }
    }

    #[test]
    fn subscriber_counts() {
        let channel = b"t:room:a";
        let array = Value::Array(vec![Value::BulkString(channel.to_vec()), Value::Int(3)]);
        assert_eq!(count_in(&array, channel), 3);
        let map = Value::Map(vec![(Value::BulkString(channel.to_vec()), Value::Int(2))]);
        assert_eq!(count_in(&map, channel), 2);
        assert_eq!(count_in(&Value::Nil, channel), 0);
    }
}
