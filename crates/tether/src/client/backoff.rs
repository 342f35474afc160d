//! Reconnection delays: [`Reconnect`] (the settings) and [`Backoff`] (exponential backoff
//! with full jitter, a random source that tests can replace, and the reset after a stable
//! connection).

use std::fmt;
use std::time::Duration;

use crate::mask_keys::mask_key;

/// Reconnection settings: exponential backoff with full jitter.
///
/// Before reconnect attempt `n` (counting from 0 since the last reset) the runner waits a
/// uniformly random delay in `[0, min(max_delay, initial_delay * multiplier^n)]` ("full
/// jitter"), raised to at least the server's hint when it gave one. The attempt count goes
/// back to 0 once a connection has stayed open for [`reset_after`](Reconnect::reset_after).
///
/// ```
/// use std::time::Duration;
/// use tether::client::Reconnect;
///
/// let reconnect = Reconnect::new()
///     .initial_delay(Duration::from_millis(250))
///     .max_delay(Duration::from_secs(10))
///     .max_attempts(5);
/// assert_eq!(reconnect.ceiling(2), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reconnect {
    initial_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    max_attempts: Option<u32>,
    reset_after: Duration,
}

impl Reconnect {
    /// The default delay ceiling of the first reconnect: 500 ms.
    pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_millis(500);
    /// The default cap on any computed delay: 30 s.
    pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
    /// The default growth factor per attempt: 2.
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
    /// The default uptime after which the attempt count resets: 10 s.
    pub const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(10);

    /// The defaults: 500 ms initial delay, 30 s maximum, multiplier 2, unlimited attempts,
    /// reset after 10 s of stable connection.
    pub const fn new() -> Self {
        Self {
            initial_delay: Self::DEFAULT_INITIAL_DELAY,
            max_delay: Self::DEFAULT_MAX_DELAY,
            multiplier: Self::DEFAULT_MULTIPLIER,
            max_attempts: None,
            reset_after: Self::DEFAULT_RESET_AFTER,
        }
    }

    /// The delay ceiling of the first reconnect attempt. Default: 500 ms.
    pub const fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// The cap on the computed delay (a server's hint may exceed it). Default: 30 s.
    pub const fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How much the ceiling grows per attempt. Values below 1 (or NaN) count as 1.
    /// Default: 2.
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        self
    }

    /// How many reconnect attempts in a row are allowed before the runner gives up with the
    /// last error (`None`: unlimited; `0`: never reconnect). Default: unlimited.
    pub fn max_attempts(mut self, max: impl Into<Option<u32>>) -> Self {
        self.max_attempts = max.into();
        self
    }

    /// How long a connection must stay open for the attempt count to start again from 0.
    /// Default: 10 s.
    pub const fn reset_after(mut self, uptime: Duration) -> Self {
        self.reset_after = uptime;
        self
    }

    /// The delay ceiling of reconnect attempt `attempt` (counting from 0):
    /// `min(max_delay, initial_delay * multiplier^attempt)`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let seconds = self.initial_delay.as_secs_f64() * self.multiplier.powi(exponent);
        // Overflow (infinity) is over any cap.
        Duration::try_from_secs_f64(seconds)
            .map_or(self.max_delay, |delay| delay.min(self.max_delay))
    }
}

impl Default for Reconnect {
    fn default() -> Self {
        Self::new()
    }
}

/// The backoff state of a run of reconnect attempts: which attempt comes next, and the delay
/// before it. [`Runner`](super::Runner) uses one; it is public for custom loops and for testing the delays
/// with a chosen random source.
///
/// ```
/// use std::time::Duration;
/// use tether::client::{Backoff, Reconnect};
///
/// // A random source that always draws the top of the range: the delays are the ceilings.
/// let mut backoff = Backoff::with_random(Reconnect::new().max_attempts(3), || 1.0);
/// assert_eq!(backoff.next_delay(None), Some(Duration::from_millis(500)));
/// assert_eq!(backoff.next_delay(None), Some(Duration::from_secs(1)));
/// assert_eq!(backoff.next_delay(Some(Duration::from_secs(5))), Some(Duration::from_secs(5)));
/// assert_eq!(backoff.next_delay(None), None); // three attempts allowed
/// ```
pub struct Backoff<R = fn() -> f64> {
    settings: Reconnect,
    attempts: u32,
    random: R,
}

impl<R> fmt::Debug for Backoff<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Backoff")
            .field("settings", &self.settings)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

impl Backoff {
    /// A backoff drawing its jitter from the operating system's random generator.
    pub fn new(settings: Reconnect) -> Self {
        Self::with_random(settings, os_random)
    }
}

impl<R: FnMut() -> f64> Backoff<R> {
    /// A backoff drawing its jitter from `random`, which should return values in `[0, 1)`
    /// (values outside are clamped, NaN counts as 1).
    pub fn with_random(settings: Reconnect, random: R) -> Self {
        Self {
            settings,
            attempts: 0,
            random,
        }
    }

    /// The delay before the next attempt, counting it; `None` once the maximum number of
    /// attempts has been made. The delay is a random fraction of the attempt's
    /// [`ceiling`](Reconnect::ceiling), raised to at least `floor` (the server's hint) when
    /// given; the hint is honoured even above the maximum delay.
    pub fn next_delay(&mut self, floor: Option<Duration>) -> Option<Duration> {
        if self
            .settings
            .max_attempts
            .is_some_and(|max| self.attempts >= max)
        {
            return None;
        }
        let ceiling = self.settings.ceiling(self.attempts);
        self.attempts = self.attempts.saturating_add(1);
        let fraction = (self.random)();
        let fraction = if fraction.is_nan() {
            1.0
        } else {
            fraction.clamp(0.0, 1.0)
        };
        let jittered = Duration::try_from_secs_f64(ceiling.as_secs_f64() * fraction)
            .map_or(ceiling, |delay| delay.min(ceiling));
        Some(floor.map_or(jittered, |floor| jittered.max(floor)))
    }

    /// How many attempts have been counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Starts counting attempts from 0 again.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    /// Notes that a connection stayed open for `uptime`: resets the count when that is at
    /// least [`reset_after`](Reconnect::reset_after), and returns whether it did.
    pub fn record_uptime(&mut self, uptime: Duration) -> bool {
        let stable = uptime >= self.settings.reset_after;
        if stable {
            self.reset();
        }
        stable
    }

    /// The settings.
    pub fn settings(&self) -> &Reconnect {
        &self.settings
    }
}

/// A uniform random number in `[0, 1)` from the OS generator (through the masking-key pool).
fn os_random() -> f64 {
    let [a, b, c, d] = mask_key();
    let [e, f, g, h] = mask_key();
    let bits = u64::from_le_bytes([a, b, c, d, e, f, g, h]) >> 11;
    bits as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_random_stays_in_the_unit_interval() {
        for _ in 0..10_000 {
            let value = os_random();
            assert!((0.0..1.0).contains(&value), "{value}");
        }
    }
}
