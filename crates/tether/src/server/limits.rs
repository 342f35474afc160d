//! Limits that keep connections honest: the per-connection message rate limit (a token bucket
//! with an abuse window) and the global and per-IP connection caps.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::Reject;

/// A per-connection message rate limit.
///
/// Each message takes a token from a bucket of `burst` tokens refilled at `per_second`. A
/// message that finds the bucket empty is not delivered to the handler: the client gets a
/// 4005 error message with `retry_after_ms`. After `abuse_limit` such rejections within
/// `abuse_window`, the connection is closed with 1008 (policy violation).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: f64,
    /// The bucket's size: how many messages may arrive at once.
    pub burst: u32,
    /// How many rejected messages within `abuse_window` close the connection.
    pub abuse_limit: u32,
    /// The window in which rejections are counted.
    pub abuse_window: Duration,
}

impl RateLimit {
    /// The default of every server route: 200 messages per second with bursts of 200, abuse
    /// at 100 rejections within 10 s. The burst stays below a hub member's queue (256
    /// messages by default), so one client's burst cannot by itself fill the queue of a
    /// healthy member and get it closed as a slow consumer.
    pub const DEFAULT: Self = Self {
        per_second: 200.0,
        burst: 200,
        abuse_limit: 100,
        abuse_window: Duration::from_secs(10),
    };

    /// `per_second` messages per second with bursts of `burst`; abuse is 100 rejections
    /// within 10 s.
    pub fn new(per_second: f64, burst: u32) -> Self {
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst: burst.max(1),
            abuse_limit: 100,
            abuse_window: Duration::from_secs(10),
        }
    }

    /// This limit closing the connection after `limit` rejections within `window`.
    pub fn with_abuse(mut self, limit: u32, window: Duration) -> Self {
        self.abuse_limit = limit.max(1);
        self.abuse_window = window;
        self
    }
}

/// What the rate limiter says about one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Verdict {
    Allow,
    /// Reject it; a token is available again after this long.
    Reject(Duration),
    /// Reject it and close: the client keeps going over the limit.
    Abuse,
}

/// The token bucket and the abuse window of one connection.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    tokens: f64,
    refilled_at: Instant,
    /// When recent rejections happened; allocated at the first rejection.
    rejections: VecDeque<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self {
            limit,
            tokens: f64::from(limit.burst),
            refilled_at: now,
            rejections: VecDeque::new(),
        }
    }

    /// Takes a token for a message arriving `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * self.limit.per_second).min(f64::from(self.limit.burst));
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Verdict::Allow;
        }
        while self
            .rejections
            .front()
            .is_some_and(|at| now.saturating_duration_since(*at) >= self.limit.abuse_window)
        {
            self.rejections.pop_front();
        }
        self.rejections.push_back(now);
        if self.rejections.len() >= self.limit.abuse_limit as usize {
            return Verdict::Abuse;
        }
        let wait = (1.0 - self.tokens) / self.limit.per_second;
        Verdict::Reject(Duration::from_secs_f64(wait.max(0.001)))
    }
}

/// The connection caps of a server: a global maximum and a per-IP maximum.
#[derive(Debug, Default)]
pub(crate) struct ConnectionCaps {
    max_total: Option<usize>,
    max_per_ip: Option<usize>,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// How long a client refused by a cap is told to wait (`Retry-After`, in seconds).
const CAP_RETRY_AFTER_SECS: u64 = 5;

impl ConnectionCaps {
    pub(crate) fn new(max_total: Option<usize>, max_per_ip: Option<usize>) -> Self {
        Self {
            max_total,
            max_per_ip,
            counts: Mutex::default(),
        }
    }

    /// Counts a new connection from `ip`, or refuses it: 503 when the server is full, 429
    /// when this address has too many, both with `Retry-After`. The slot is released when
    /// the returned permit drops.
    pub(crate) fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<CapPermit, Reject> {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if self.max_total.is_some_and(|max| counts.total >= max) {
            return Err(Reject::error(503, "Server is at its connection limit")
                .with_header("Retry-After", CAP_RETRY_AFTER_SECS.to_string()));
        }
        let per_ip = counts.per_ip.get(&ip).copied().unwrap_or(0);
        if self.max_per_ip.is_some_and(|max| per_ip >= max) {
            return Err(Reject::error(429, "Too many connections from this address")
                .with_header("Retry-After", CAP_RETRY_AFTER_SECS.to_string()));
        }
        counts.total += 1;
        if self.max_per_ip.is_some() {
            *counts.per_ip.entry(ip).or_insert(0) += 1;
        }
        Ok(CapPermit {
            caps: Arc::clone(self),
            ip,
        })
    }
}

/// A counted connection; releases its slot when dropped, whatever ended the connection.
#[derive(Debug)]
pub(crate) struct CapPermit {
    caps: Arc<ConnectionCaps>,
    ip: IpAddr,
}

impl Drop for CapPermit {
    fn drop(&mut self) {
        let mut counts = self
            .caps
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_the_burst_then_rejects_with_a_hint_then_calls_abuse() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(
            RateLimit::new(20.0, 40).with_abuse(5, Duration::from_secs(10)),
            start,
        );
        for _ in 0..40 {
            assert_eq!(limiter.check(start), Verdict::Allow);
        }
        let Verdict::Reject(wait) = limiter.check(start) else {
            panic!("expected a rejection");
        };
        assert_eq!(wait.as_millis(), 50);
        // 50 ms later one token is back.
        let later = start + Duration::from_millis(50);
        assert_eq!(limiter.check(later), Verdict::Allow);
        for _ in 0..3 {
            assert!(matches!(limiter.check(later), Verdict::Reject(_)));
        }
        assert_eq!(limiter.check(later), Verdict::Abuse);
        // Rejections older than the window are forgotten.
        let much_later = later + Duration::from_secs(11);
        let mut fresh = RateLimiter::new(
            RateLimit::new(1.0, 1).with_abuse(2, Duration::from_secs(10)),
            start,
        );
        assert_eq!(fresh.check(start), Verdict::Allow);
        assert!(matches!(fresh.check(start), Verdict::Reject(_)));
        assert_eq!(fresh.check(much_later), Verdict::Allow);
        assert!(matches!(fresh.check(much_later), Verdict::Reject(_)));
    }

    #[test]
    fn caps_refuse_with_503_or_429_and_release_on_drop() {
        let caps = Arc::new(ConnectionCaps::new(Some(3), Some(2)));
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = caps.acquire(a).unwrap();
        let _second = caps.acquire(a).unwrap();
        let refused = caps.acquire(a).unwrap_err();
        assert_eq!(refused.status, 429);
        assert!(
            refused
                .headers
                .iter()
                .any(|(name, value)| name == "Retry-After" && value == "5")
        );
        let _third = caps.acquire(b).unwrap();
        assert_eq!(caps.acquire(b).unwrap_err().status, 503);
        drop(first);
        assert!(caps.acquire(b).is_ok());
    }
}
