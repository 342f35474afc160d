//! [`BackplaneError`]: why a Redis backplane could not be set up.

use std::error::Error as StdError;
use std::fmt;

/// What kind of failure a [`BackplaneError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BackplaneErrorKind {
    /// Redis did not answer: refused, timed out, or the connection dropped.
    Unreachable,
    /// The URL is malformed or names something this build cannot use.
    InvalidUrl,
    /// Redis answered, but not as the backplane needs (an error reply, a server without RESP3
    /// or without sharded pub/sub, a node that is not in cluster mode).
    Protocol,
    /// Called outside a tokio runtime: the backplane runs a task on the caller's runtime.
    NoRuntime,
}

/// Why a Redis backplane could not be set up. `Display` is one line; the underlying Redis
/// error, if any, is the [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct BackplaneError {
    kind: BackplaneErrorKind,
    context: String,
    source: Option<::redis::RedisError>,
}

impl BackplaneError {
    /// The kind of failure.
    pub fn kind(&self) -> BackplaneErrorKind {
        self.kind
    }

    pub(super) fn invalid_url(reason: impl fmt::Display) -> Self {
        Self {
            kind: BackplaneErrorKind::InvalidUrl,
            context: format!("invalid redis url: {reason}"),
            source: None,
        }
    }

    pub(super) fn invalid_url_from(error: ::redis::RedisError) -> Self {
        Self {
            kind: BackplaneErrorKind::InvalidUrl,
            context: "invalid redis url".to_owned(),
            source: Some(error),
        }
    }

    pub(super) fn no_runtime() -> Self {
        Self {
            kind: BackplaneErrorKind::NoRuntime,
            context: "the redis backplane must be started within a tokio runtime".to_owned(),
            source: None,
        }
    }

    /// A failed connection to `target` (addresses, no credentials), by what Redis said.
    pub(super) fn from_redis(target: &str, error: ::redis::RedisError) -> Self {
        let kind = if is_unreachable(&error) {
            BackplaneErrorKind::Unreachable
        } else {
            BackplaneErrorKind::Protocol
        };
        let context = match kind {
            BackplaneErrorKind::Unreachable => format!("redis at {target} is unreachable"),
            _ => format!("redis at {target} answered with an error"),
        };
        Self {
            kind,
            context,
            source: Some(error),
        }
    }
}

/// Whether `error` means that Redis could not be reached (rather than that it refused).
pub(super) fn is_unreachable(error: &::redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_refusal()
        || error.is_connection_dropped()
        || error.is_timeout()
        || error.is_unrecoverable_error()
        || error.kind() == ::redis::ErrorKind::ClusterConnectionNotFound
}

impl fmt::Display for BackplaneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.context)?;
        if let Some(source) = &self.source {
            // Redis errors may span lines; this one stays on one.
            let detail = source.to_string();
            let detail: Vec<&str> = detail.split_whitespace().collect();
            write!(f, ": {}", detail.join(" "))?;
        }
        Ok(())
    }
}

impl StdError for BackplaneError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_ref()
            .map(|error| error as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn messages_are_one_lowercase_line() {
        let errors = [
            BackplaneError::invalid_url("no host"),
            BackplaneError::no_runtime(),
            BackplaneError::from_redis(
                "127.0.0.1:1",
                ::redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "refused\nreally",
                )),
            ),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
        }
    }

    #[test]
    fn kinds_follow_the_redis_error() {
        let refused =
            ::redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        let error = BackplaneError::from_redis("h:1", refused);
        assert_eq!(error.kind(), BackplaneErrorKind::Unreachable);
        assert!(error.source().is_some());
        let reply = ::redis::RedisError::from((::redis::ErrorKind::Client, "no sharded pub/sub"));
        assert_eq!(
            BackplaneError::from_redis("h:1", reply).kind(),
            BackplaneErrorKind::Protocol
        );
    }
}
