//! What a [`FaultProxy`](super::FaultProxy) does to the traffic: [`Faults`] for every
//! connection, with a [`DirectionFaults`] for each direction, and what it counted
//! ([`Stats`]). Both are plain data that travel as JSON through the control API.

use std::num::{NonZeroU64, NonZeroUsize};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The faults a [`FaultProxy`](super::FaultProxy) injects. The default injects none.
///
/// Changing them ([`FaultProxy::set_faults`](super::FaultProxy::set_faults)) affects the
/// open connections as well as the next ones. Every field may be left out of the JSON form:
/// a missing field is its default, an unknown field is an error.
///
/// ```
/// use std::time::Duration;
/// use tether::testing::{DirectionFaults, Faults};
///
/// // 100 ms (± 20 ms) from the server to the client, and 1-byte TCP segments both ways.
/// let faults = Faults::none()
///     .with_downstream(
///         DirectionFaults::none()
///             .with_latency(Duration::from_millis(100))
///             .with_jitter(Duration::from_millis(20)),
///     )
///     .with_both(DirectionFaults::none().with_slices(1, Duration::ZERO));
/// assert_eq!(faults.downstream.latency_ms, 0, "with_both replaced it");
/// assert_eq!(faults.upstream.slice_bytes.map(|n| n.get()), Some(1));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct Faults {
    /// Client to server (Toxiproxy's `upstream`).
    pub upstream: DirectionFaults,
    /// Server to client (Toxiproxy's `downstream`).
    pub downstream: DirectionFaults,
    /// Resets each connection (an abortive close: RST to both sides) this many milliseconds
    /// after it opened or after this value last changed, whichever is later. `None`: never.
    pub reset_after_ms: Option<u64>,
    /// When one side closes its half (FIN), the proxy waits this many milliseconds before
    /// closing that half towards the other side. 0: at once.
    pub slow_close_ms: u64,
    /// The proxy is down: nothing listens on its address, so a new connection is refused
    /// (`ECONNREFUSED`), and the open connections are closed. When it comes back up it
    /// listens on the same address again.
    pub down: bool,
}

impl Faults {
    /// No fault: the proxy forwards everything as it comes (the same as `default()`).
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether this injects no fault at all.
    pub fn is_none(&self) -> bool {
        *self == Self::default()
    }

    /// Sets the client-to-server faults.
    pub fn with_upstream(mut self, faults: DirectionFaults) -> Self {
        self.upstream = faults;
        self
    }

    /// Sets the server-to-client faults.
    pub fn with_downstream(mut self, faults: DirectionFaults) -> Self {
        self.downstream = faults;
        self
    }

    /// Sets the same faults in both directions.
    pub fn with_both(mut self, faults: DirectionFaults) -> Self {
        self.upstream = faults.clone();
        self.downstream = faults;
        self
    }

    /// Resets each connection `after` it opened (or after this setting changed); see
    /// [`reset_after_ms`](Self::reset_after_ms).
    pub fn with_reset_after(mut self, after: Duration) -> Self {
        self.reset_after_ms = Some(millis(after));
        self
    }

    /// Delays passing on a close by `delay`; see [`slow_close_ms`](Self::slow_close_ms).
    pub fn with_slow_close(mut self, delay: Duration) -> Self {
        self.slow_close_ms = millis(delay);
        self
    }

    /// Takes the proxy down (`true`) or brings it back up; see [`down`](Self::down).
    pub fn with_down(mut self, down: bool) -> Self {
        self.down = down;
        self
    }

    /// The faults of one direction.
    pub(crate) fn direction(&self, direction: Direction) -> &DirectionFaults {
        match direction {
            Direction::Upstream => &self.upstream,
            Direction::Downstream => &self.downstream,
        }
    }
}

/// The faults of one direction of a connection. The default injects none.
///
/// The stages run in this order: a black hole discards what arrives; latency delays each
/// chunk as it was read (in order: a chunk never overtakes an earlier one); then each chunk is
/// written in slices, no faster than the bandwidth allows, until the reset limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct DirectionFaults {
    /// Delay added to every chunk, in milliseconds.
    pub latency_ms: u64,
    /// Random variation of the latency, in milliseconds: each chunk's delay is drawn
    /// uniformly from `latency_ms ± jitter_ms` (never below zero). Chunks stay in order, so
    /// a chunk drawn shorter than the one before it waits for it.
    pub jitter_ms: u64,
    /// The most bytes per second passed on. `None`: no limit.
    pub bandwidth: Option<NonZeroU64>,
    /// Writes the data in TCP segments of at most this many bytes. `None`: as read.
    pub slice_bytes: Option<NonZeroUsize>,
    /// With `slice_bytes`, waits this many milliseconds between the slices of one chunk.
    pub slice_delay_ms: u64,
    /// Once this many bytes of a connection went this way (counted from its start), the
    /// connection is reset (an abortive close: RST to both sides); a limit set below what
    /// already went resets it at the next byte. `None`: never.
    pub reset_after_bytes: Option<u64>,
    /// A black hole: the data is read and discarded, nothing goes on, and both sockets stay
    /// open (a half-open connection, as behind a dead NAT entry). A close from the sending
    /// side is not passed on either until the black hole ends.
    pub blackhole: bool,
}

impl DirectionFaults {
    /// No fault (the same as `default()`).
    pub fn none() -> Self {
        Self::default()
    }

    /// Adds `latency` to every chunk; see [`latency_ms`](Self::latency_ms).
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency_ms = millis(latency);
        self
    }

    /// Varies the latency by up to `jitter` either way; see [`jitter_ms`](Self::jitter_ms).
    pub fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter_ms = millis(jitter);
        self
    }

    /// Passes on at most `bytes_per_second`; 0 removes the limit.
    pub fn with_bandwidth(mut self, bytes_per_second: u64) -> Self {
        self.bandwidth = NonZeroU64::new(bytes_per_second);
        self
    }

    /// Writes in segments of at most `bytes`, `delay` apart; 0 bytes stops slicing.
    pub fn with_slices(mut self, bytes: usize, delay: Duration) -> Self {
        self.slice_bytes = NonZeroUsize::new(bytes);
        self.slice_delay_ms = millis(delay);
        self
    }

    /// Resets the connection once `bytes` went this way; see
    /// [`reset_after_bytes`](Self::reset_after_bytes).
    pub fn with_reset_after_bytes(mut self, bytes: u64) -> Self {
        self.reset_after_bytes = Some(bytes);
        self
    }

    /// Starts (`true`) or ends a black hole; see [`blackhole`](Self::blackhole).
    pub fn with_blackhole(mut self, blackhole: bool) -> Self {
        self.blackhole = blackhole;
        self
    }
}

/// What a [`FaultProxy`](super::FaultProxy) counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Stats {
    /// Connections accepted from clients.
    pub connections_accepted: u64,
    /// Connections open now.
    pub connections_active: u64,
    /// Connections reset on purpose (after a byte limit or a time limit).
    pub resets: u64,
    /// Client to server.
    pub upstream: DirectionStats,
    /// Server to client.
    pub downstream: DirectionStats,
}

/// What went one way through a [`FaultProxy`](super::FaultProxy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct DirectionStats {
    /// Bytes passed on.
    pub bytes: u64,
    /// Writes that passed them on: with slicing, one per slice.
    pub segments: u64,
    /// Bytes read and discarded by a black hole.
    pub discarded_bytes: u64,
}

/// One direction of a proxied connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Client to server.
    Upstream,
    /// Server to client.
    Downstream,
}

impl Direction {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Upstream => "upstream",
            Self::Downstream => "downstream",
        }
    }
}

/// Whole milliseconds, saturating.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The longest delay the proxy waits for, whatever a setting says: a year keeps every
/// deadline far from `Instant`'s limits.
const MAX_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// A setting in milliseconds as a delay, capped at [`MAX_DELAY`].
pub(crate) fn delay(ms: u64) -> Duration {
    Duration::from_millis(ms).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn the_json_form_fills_in_defaults_and_refuses_unknown_fields() {
        let faults: Faults =
            serde_json::from_str(r#"{"downstream":{"latency_ms":100},"down":true}"#).unwrap();
        assert_eq!(
            faults,
            Faults::none()
                .with_downstream(DirectionFaults::none().with_latency(Duration::from_millis(100)))
                .with_down(true)
        );
        assert_eq!(
            serde_json::from_str::<Faults>("{}").unwrap(),
            Faults::none()
        );
        let error = serde_json::from_str::<Faults>(r#"{"latency_ms":1}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `latency_ms`"),
            "{error}"
        );
        let error = serde_json::from_str::<Faults>(r#"{"upstream":{"bandwidth":0}}"#).unwrap_err();
        assert!(error.to_string().contains("nonzero"), "{error}");
        let round = serde_json::to_string(&faults).unwrap();
        assert_eq!(serde_json::from_str::<Faults>(&round).unwrap(), faults);
    }

    #[test]
    fn builders_map_zero_to_no_limit_and_saturate() {
        let faults = DirectionFaults::none()
            .with_bandwidth(0)
            .with_slices(0, Duration::ZERO)
            .with_latency(Duration::MAX);
        assert_eq!(faults.bandwidth, None);
        assert_eq!(faults.slice_bytes, None);
        assert_eq!(faults.latency_ms, u64::MAX);
        assert_eq!(delay(u64::MAX), MAX_DELAY);
        assert!(Faults::none().is_none());
        assert!(!Faults::none().with_down(true).is_none());
    }
}
