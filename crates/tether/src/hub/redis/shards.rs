//! The health of each shard of a Redis Cluster: the primaries (from `CLUSTER NODES`), the
//! slots each owns, and whether each answered a `PING` of its own in time. The backplane is
//! healthy only when all of them answer; this says which one does not.

use std::time::Duration;

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use ::redis::{RedisError, RedisResult, Value};
use tokio::task::JoinSet;

/// One primary of a Redis Cluster (or the one server) and its last health check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardHealth {
    /// `host:port`, as the cluster announces it.
    pub address: String,
    /// How many of the 16,384 slots it owns (0 for a single server).
    pub slots: u32,
    /// Whether it answered the last check in time.
    pub healthy: bool,
    /// Why not, when it did not (one line).
    pub error: Option<String>,
}

/// A primary as `CLUSTER NODES` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Primary {
    host: String,
    port: u16,
    slots: u32,
    /// Flagged `fail` or `fail?` by the node that answered.
    failing: bool,
}

/// Every primary of the cluster, each pinged on its own (concurrently, each bounded by
/// `timeout`). The list comes from any primary, or, when that one does not answer, from the
/// `known` addresses (the last check's) in turn. `Err` when none could list the nodes.
pub(super) async fn check(
    connection: &ClusterConnection,
    timeout: Duration,
    known: &[String],
) -> RedisResult<Vec<ShardHealth>> {
    let mut routes = vec![SingleNodeRoutingInfo::RandomPrimary];
    routes.extend(known.iter().filter_map(|address| {
        let (host, port) = address.rsplit_once(':')?;
        Some(SingleNodeRoutingInfo::ByAddress {
            host: host.to_owned(),
            port: port.parse().ok()?,
        })
    }));
    let mut last_error = timed_out("CLUSTER NODES");
    let mut nodes = None;
    for route in routes {
        let mut lister = connection.clone();
        let listed = tokio::time::timeout(
            timeout,
            lister.route_command(
                ::redis::cmd("CLUSTER").arg("NODES").clone(),
                RoutingInfo::SingleNode(route),
            ),
        )
        .await;
        match listed {
            Ok(Ok(value)) => {
                nodes = Some(value);
                break;
            }
            Ok(Err(error)) => last_error = error,
            Err(_) => last_error = timed_out("CLUSTER NODES"),
        }
    }
    let nodes = nodes.ok_or(last_error)?;
    let text = match nodes {
        Value::BulkString(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => text,
        _ => return Err(timed_out("CLUSTER NODES (an unexpected answer)")),
    };
    let mut pings = JoinSet::new();
    for primary in primaries(&text) {
        let mut connection = connection.clone();
        pings.spawn(async move {
            let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                host: primary.host.clone(),
                port: primary.port,
            });
            let ping = connection.route_command(::redis::cmd("PING"), routing);
            let error = match tokio::time::timeout(timeout, ping).await {
                Ok(Ok(_)) if !primary.failing => None,
                Ok(Ok(_)) => Some("flagged as failing by the cluster".to_owned()),
                Ok(Err(error)) => Some(error.to_string()),
                Err(_) => Some(format!("no answer to PING within {timeout:?}")),
            };
            ShardHealth {
                address: format!("{}:{}", primary.host, primary.port),
                slots: primary.slots,
                healthy: error.is_none(),
                error,
            }
        });
    }
    let mut shards = Vec::new();
    while let Some(joined) = pings.join_next().await {
        if let Ok(shard) = joined {
            shards.push(shard);
        }
    }
    shards.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(shards)
}

fn timed_out(what: &str) -> RedisError {
    RedisError::from(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!("no answer to {what} in time"),
    ))
}

/// The primaries that own slots in a `CLUSTER NODES` answer: one line per node,
/// `ID HOST:PORT@BUS[,HOSTNAME] FLAGS PRIMARY PING PONG EPOCH LINK SLOT...`.
fn primaries(text: &str) -> Vec<Primary> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (address, flags) = (fields.get(1)?, fields.get(2)?);
            if !flags.split(',').any(|flag| flag == "master") {
                return None;
            }
            let address = address.split(['@', ',']).next()?;
            let (host, port) = address.rsplit_once(':')?;
            let port: u16 = port.parse().ok().filter(|&port| port != 0)?;
            let slots: u32 = fields.get(8..)?.iter().map(|range| slot_count(range)).sum();
            let failing = flags
                .split(',')
                .any(|flag| flag == "fail" || flag == "fail?");
            (slots > 0).then(|| Primary {
                host: host.to_owned(),
                port,
                slots,
                failing,
            })
        })
        .collect()
}

/// The slots of one `CLUSTER NODES` slot field: `N`, `A-B`, or a migration in brackets
/// (which counts for nothing here).
fn slot_count(range: &str) -> u32 {
    if range.starts_with('[') {
        return 0;
    }
    match range.split_once('-') {
        Some((first, last)) => match (first.parse::<u32>(), last.parse::<u32>()) {
            (Ok(first), Ok(last)) if last >= first => last - first + 1,
            _ => 0,
        },
        None => u32::from(range.parse::<u32>().is_ok()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn primaries_with_slots_are_read_from_cluster_nodes() {
        let text = "\
a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460
b2 127.0.0.1:7001@17001,node-b master - 0 1 2 connected 5461-10922 [10923->-c3]
c3 127.0.0.1:7002@17002 master,fail - 0 1 3 disconnected 10923-16383
d4 127.0.0.1:7003@17003 slave a1 0 1 1 connected
e5 :0@0 master,noaddr - 0 0 0 disconnected
f6 127.0.0.1:7005@17005 master - 0 1 4 connected
";
        let found = primaries(text);
        assert_eq!(
            found,
            [
                Primary {
                    host: "127.0.0.1".into(),
                    port: 7000,
                    slots: 5461,
                    failing: false
                },
                Primary {
                    host: "127.0.0.1".into(),
                    port: 7001,
                    slots: 5462,
                    failing: false
                },
                Primary {
                    host: "127.0.0.1".into(),
                    port: 7002,
                    slots: 5461,
                    failing: true
                },
            ]
        );
        assert_eq!(found.iter().map(|p| p.slots).sum::<u32>(), 16_384);
        assert_eq!(slot_count("7"), 1);
        assert_eq!(slot_count("9-3"), 0);
    }
}
