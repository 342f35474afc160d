//! `tether serve --backplane URL`: several nodes sharing their rooms through Redis.
//!
//! The hub publishes every broadcast to the backplane and subscribes to a room while it has
//! local members, so a `say` reaches that room's members on every node. `lobby` and `random`
//! exist on every node; a room created with `create` exists on the node where it was
//! created (its channel is its name, so nodes that each have a room of that name share its
//! messages, but `rooms`, `welcome`, `joined`'s member count and `close` are per node).
//!
//! At startup an unreachable Redis is an error (the command exits with it), unless
//! `--backplane-optional` is given: then the node logs it, serves locally (degraded, `/healthz`
//! 503) and connects in the background. Once running, a lost Redis never stops the node: the
//! backplane reconnects by itself and `/healthz` and `/metrics` say how it is going.

use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

use clap::Args;

use super::metrics::BackplaneFigures;

/// How long the first connection to Redis may take before it counts as unreachable.
#[cfg(feature = "redis")]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Options of `tether serve` for running several nodes.
#[derive(Debug, Clone, Args)]
pub(crate) struct BackplaneArgs {
    /// Carry room broadcasts between nodes through Redis: `redis://HOST:PORT`, or
    /// `redis+cluster://HOST:PORT,HOST:PORT,...` for a Redis Cluster (sharded pub/sub).
    #[arg(long, value_name = "URL")]
    backplane: Option<String>,
    /// This node's id on the backplane (it tags what the node publishes) [default: random].
    #[arg(long, value_name = "ID", requires = "backplane")]
    node_id: Option<String>,
    /// Start even when the backplane is unreachable: serve locally (health degraded) and
    /// connect in the background. Without it, an unreachable backplane is an error.
    #[arg(long, requires = "backplane")]
    backplane_optional: bool,
}

/// The node's backplane, once set up.
#[derive(Clone)]
pub(crate) struct Backplane {
    #[cfg(feature = "redis")]
    redis: Arc<tether::hub::RedisBackplane>,
    #[cfg(not(feature = "redis"))]
    never: std::convert::Infallible,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane").finish_non_exhaustive()
    }
}

impl Backplane {
    /// The backplane as the hub takes it.
    pub(crate) fn for_hub(&self) -> Arc<dyn tether::hub::Backplane> {
        #[cfg(feature = "redis")]
        {
            Arc::clone(&self.redis) as Arc<dyn tether::hub::Backplane>
        }
        #[cfg(not(feature = "redis"))]
        match self.never {}
    }

    /// Its counters, for `/metrics`.
    pub(crate) fn figures(&self) -> BackplaneFigures {
        #[cfg(feature = "redis")]
        {
            let stats = self.redis.stats();
            BackplaneFigures {
                healthy: stats.healthy,
                errors: stats.errors,
                reconnects: stats.reconnects,
                published: stats.published,
                received: stats.received,
                buffered: stats.buffered as u64,
                buffer_dropped: stats.buffer_dropped,
                shards: self
                    .redis
                    .shards()
                    .into_iter()
                    .map(|shard| (shard.address, shard.healthy))
                    .collect(),
            }
        }
        #[cfg(not(feature = "redis"))]
        match self.never {}
    }
}

/// Connects the backplane the options ask for, if any.
///
/// # Errors
/// A one-line message: an unreachable backplane without `--backplane-optional`, a bad URL,
/// or `--backplane` in a build without the `redis` feature.
pub(crate) async fn connect(args: &BackplaneArgs) -> Result<Option<Backplane>, String> {
    let Some(url) = args.backplane.as_deref() else {
        return Ok(None);
    };
    connect_redis(args, url).await.map(Some)
}

#[cfg(not(feature = "redis"))]
async fn connect_redis(_: &BackplaneArgs, _: &str) -> Result<Backplane, String> {
    Err("--backplane needs a tether built with the `redis` feature".to_owned())
}

#[cfg(feature = "redis")]
async fn connect_redis(args: &BackplaneArgs, url: &str) -> Result<Backplane, String> {
    use tether::hub::{BackplaneErrorKind, RedisBackplane, RedisOptions};

    let shown = redacted(url);
    let options = || {
        let options = RedisOptions::default();
        match &args.node_id {
            Some(id) => options.node_id(id.clone()),
            None => options,
        }
    };
    let connected = match tokio::time::timeout(
        CONNECT_TIMEOUT,
        RedisBackplane::connect(url, options()),
    )
    .await
    {
        Ok(Ok(redis)) => Ok(redis),
        // Only an outage may be waited out; a wrong URL or a Redis that cannot serve as a
        // backplane (no cluster mode, no sharded pub/sub) is an error with or without the flag.
        Ok(Err(error)) if error.kind() == BackplaneErrorKind::Unreachable => {
            Err(one_line(&error.to_string()))
        }
        Ok(Err(error)) => {
            return Err(format!(
                "backplane {shown}: {}",
                one_line(&error.to_string())
            ));
        }
        Err(_) => Err(format!(
            "redis at {shown} did not answer within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    };
    let redis = match connected {
        Ok(redis) => {
            tracing::info!(backplane = %shown, node = redis.node_id(), "backplane connected");
            redis
        }
        Err(error) if args.backplane_optional => {
            let redis = RedisBackplane::connect_degraded(url, options())
                .map_err(|error| format!("backplane {shown}: {}", one_line(&error.to_string())))?;
            tracing::warn!(
                backplane = %shown,
                node = redis.node_id(),
                %error,
                "backplane unreachable: serving this node's rooms only (degraded) and \
                 connecting in the background"
            );
            redis
        }
        Err(error) => {
            return Err(format!(
                "backplane: {error}; --backplane-optional starts the node without it"
            ));
        }
    };
    Ok(Backplane { redis })
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
/// The URL with any password replaced by `***`, for logs and errors.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, hosts)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let hidden = if user_info.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_owned()
            };
            format!("{scheme}://{hidden}@{hosts}{path}")
        }
        None => url.to_owned(),
    }
}

#[cfg_attr(not(feature = "redis"), allow(dead_code))]
/// `text` on one line: the command's errors are one line each.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redacted("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            redacted("redis://:secret@127.0.0.1:6379/0"),
            "redis://:***@127.0.0.1:6379/0"
        );
        assert_eq!(redacted("redis://ann:secret@h:1"), "redis://ann:***@h:1");
        assert_eq!(redacted("redis://token@h:1"), "redis://***@h:1");
        assert_eq!(
            redacted("redis+cluster://a:1,b:2"),
            "redis+cluster://a:1,b:2"
        );
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn errors_are_one_line() {
        assert_eq!(one_line("a\n  b\tc "), "a b c");
    }
}
