//! The heartbeat of a live connection: a ping every interval, a deadline for its pong, and
//! an idle (or read) timeout, all on one timer that is polled only while `recv` waits.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// What the heartbeat timer found.
pub(crate) enum Check {
    Fine,
    Ping,
    PongMissing(Duration),
    Idle(Duration),
}

/// Ping and idle bookkeeping, on one timer.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    interval: Option<Duration>,
    timeout: Duration,
    idle: Option<Duration>,
    timer: Option<Pin<Box<Sleep>>>,
    next_ping: Option<Instant>,
    /// A ping is out: its pong is due by this instant, and had not come when the pong count
    /// was this.
    awaiting: Option<(Instant, u64)>,
    last_message: Instant,
}

impl Heartbeat {
    pub(crate) fn new(
        interval: Option<Duration>,
        timeout: Duration,
        idle: Option<Duration>,
        now: Instant,
    ) -> Self {
        let next_ping = interval.map(|interval| now + interval);
        let mut heartbeat = Self {
            interval,
            timeout,
            idle,
            timer: None,
            next_ping,
            awaiting: None,
            last_message: now,
        };
        if let Some(deadline) = heartbeat.next_deadline(now) {
            heartbeat.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        heartbeat
    }

    /// Notes a message that arrived at `now` (for the idle timeout).
    pub(crate) fn on_message(&mut self, now: Instant) {
        self.last_message = now;
    }

    /// Whether an idle (read) timeout is running, so message times matter.
    pub(crate) fn tracks_idle(&self) -> bool {
        self.idle.is_some()
    }

    /// Polls the timer; ready when a deadline (ping, pong, idle) has come.
    pub(crate) fn poll_tick(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.timer.as_mut() {
            Some(timer) => timer.as_mut().poll(cx),
            None => Poll::Pending,
        }
    }

    /// Starts the idle (read) timeout again from `now`, after it fired without closing.
    pub(crate) fn restart_idle(&mut self, now: Instant) {
        self.last_message = now;
        self.rearm(now);
    }

    fn rearm(&mut self, now: Instant) {
        let next = self.next_deadline(now);
        if let (Some(timer), Some(deadline)) = (self.timer.as_mut(), next) {
            timer
                .as_mut()
                .reset(deadline.max(now + Duration::from_millis(1)));
        }
    }

    /// The next instant something is due. While a ping is out, the next ping time still
    /// counts (a pong that came in time lets it go out on schedule), unless it has already
    /// passed without the pong: then only the pong deadline is left to wait for.
    fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let idle = self.idle.map(|idle| self.last_message + idle);
        let pong = self.awaiting.map(|(deadline, _)| deadline);
        let ping = self
            .next_ping
            .filter(|next| self.awaiting.is_none() || *next > now);
        [idle, pong, ping].into_iter().flatten().min()
    }

    pub(crate) fn check(&mut self, now: Instant, pongs: u64) -> Check {
        if let Some((deadline, before)) = self.awaiting {
            if pongs != before {
                self.awaiting = None;
            } else if now >= deadline {
                return Check::PongMissing(self.timeout);
            }
        }
        if let Some(idle) = self.idle {
            if now.saturating_duration_since(self.last_message) >= idle {
                return Check::Idle(idle);
            }
        }
        let mut outcome = Check::Fine;
        if let (Some(interval), Some(next)) = (self.interval, self.next_ping) {
            if self.awaiting.is_none() && now >= next {
                self.awaiting = Some((now + self.timeout, pongs));
                self.next_ping = Some(now + interval);
                outcome = Check::Ping;
            }
        }
        self.rearm(now);
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pings go out every interval when pongs come back, even if the pong timeout is longer.
    #[tokio::test(start_paused = true)]
    async fn pings_keep_their_interval_when_the_pong_timeout_is_longer() {
        let start = Instant::now();
        let interval = Duration::from_millis(300);
        let mut heartbeat = Heartbeat::new(Some(interval), Duration::from_secs(5), None, start);
        let mut pongs = 0;
        let mut pings = Vec::new();
        while pings.len() < 4 {
            std::future::poll_fn(|cx| heartbeat.poll_tick(cx)).await;
            let now = Instant::now();
            if let Check::Ping = heartbeat.check(now, pongs) {
                pings.push(now - start);
                pongs += 1; // the pong comes back at once
            }
            assert!(
                now - start < Duration::from_secs(3),
                "pings stopped: {pings:?}"
            );
        }
        assert_eq!(pings, [1, 2, 3, 4].map(|n| interval * n));
    }

    /// A missing pong is reported at its deadline, not before, and no second ping goes out
    /// meanwhile.
    #[tokio::test(start_paused = true)]
    async fn a_missing_pong_is_reported_at_its_deadline() {
        let start = Instant::now();
        let mut heartbeat = Heartbeat::new(
            Some(Duration::from_millis(100)),
            Duration::from_millis(500),
            None,
            start,
        );
        let mut ticks = 0;
        loop {
            std::future::poll_fn(|cx| heartbeat.poll_tick(cx)).await;
            ticks += 1;
            match heartbeat.check(Instant::now(), 0) {
                Check::PongMissing(_) => break,
                Check::Ping => assert_eq!(Instant::now() - start, Duration::from_millis(100)),
                Check::Fine | Check::Idle(_) => {}
            }
            assert!(ticks < 10, "the timer spins");
        }
        assert_eq!(Instant::now() - start, Duration::from_millis(600));
    }
}
