//! The heartbeat shared by the server's `Socket` and the client: a ping every interval, a
//! deadline for its pong, and an idle (read) timeout, all on one timer that is polled only
//! while the connection waits for messages.

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
        if let Some(deadline) = heartbeat.next_deadline() {
            heartbeat.timer = Some(Box::pin(tokio::time::sleep_until(deadline)));
        }
        heartbeat
    }

    /// Notes a message; returns the time, for the rate limiter.
    pub(crate) fn on_message(&mut self) -> Instant {
        let now = Instant::now();
        self.last_message = now;
        now
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
        let next = self.next_deadline();
        if let (Some(timer), Some(deadline)) = (self.timer.as_mut(), next) {
            timer
                .as_mut()
                .reset(deadline.max(now + Duration::from_millis(1)));
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let idle = self.idle.map(|idle| self.last_message + idle);
        let pong = self.awaiting.map(|(deadline, _)| deadline);
        let ping = if self.awaiting.is_some() {
            None
        } else {
            self.next_ping
        };
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
