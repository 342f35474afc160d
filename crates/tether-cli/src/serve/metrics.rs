//! The chat's counters and `/metrics` in the Prometheus text format (0.0.4).
//!
//! The app counts what its handlers see (messages and bytes each way, error messages by
//! code, closes by code and side); the hub's stats add the slow-consumer counters, the
//! broadcast fan-out histogram and the recoveries (joins with `since`); the server gives the
//! number of open connections; with `--backplane`, the backplane adds its health and
//! counters.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use tether::codes::ErrorCode;
use tether::hub::{FANOUT_BUCKETS, HubStats, RecoveryFailure};
use tether::server::ServerStats;

/// The `Content-Type` of `/metrics`.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Which side started a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Side {
    Client,
    Server,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Self::Client => "client",
            Self::Server => "server",
        }
    }
}

/// The backplane's health and counters (with `--backplane`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BackplaneFigures {
    /// Whether broadcasts reach the other nodes now.
    pub(crate) healthy: bool,
    /// Errors talking to the broker (failed connections, publishes, lost subscriptions).
    pub(crate) errors: u64,
    /// Connections re-established after a loss.
    pub(crate) reconnects: u64,
    /// Broadcasts published to the other nodes.
    pub(crate) published: u64,
    /// Broadcasts received from the other nodes.
    pub(crate) received: u64,
    /// Broadcasts waiting in the outage buffer now.
    pub(crate) buffered: u64,
    /// Broadcasts the full outage buffer could not keep.
    pub(crate) buffer_dropped: u64,
    /// Each shard's address and whether it answered the last check (one for a single
    /// server).
    pub(crate) shards: Vec<(String, bool)>,
}

/// The app's counters, shared by every connection.
#[derive(Debug)]
pub(crate) struct Metrics {
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
    error_messages: Mutex<BTreeMap<u16, u64>>,
    closes: Mutex<BTreeMap<(u16, Side), u64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        // The codes the chat sends are listed from the start, at zero, so dashboards and
        // alerts see the series before the first error.
        let error_messages = (4000..=4005).map(|code| (code, 0)).collect();
        Self {
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            error_messages: Mutex::new(error_messages),
            closes: Mutex::default(),
        }
    }
}

impl Metrics {
    /// A client message of `bytes` bytes reached the app.
    pub(crate) fn received(&self, bytes: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// A message of `bytes` bytes was sent to a client.
    pub(crate) fn sent(&self, bytes: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// An error message with `code` was sent (its bytes are not counted: the library
    /// formats it).
    pub(crate) fn error_message(&self, code: u16) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        *self
            .error_messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code)
            .or_insert(0) += 1;
    }

    /// A connection ended with `code`, started by `side`.
    pub(crate) fn closed(&self, code: u16, side: Side) {
        *self
            .closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((code, side))
            .or_insert(0) += 1;
    }

    /// The whole exposition.
    /// The Prometheus text: the app's counters, plus what the server's rate limiter answered
    /// on its own (refused messages count as received, and their 4005 as sent).
    pub(crate) fn render(
        &self,
        server: &ServerStats,
        hub: &HubStats,
        backplane: Option<&BackplaneFigures>,
    ) -> String {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let open_connections = server.open_connections;
        let limited = server.rate_limited_messages;
        let mut out = String::with_capacity(4096);
        family(
            &mut out,
            "tether_connections_open",
            "gauge",
            "Connections open: WebSocket sessions, handshakes and plain HTTP requests being \
             answered (this scrape excluded).",
        );
        let _ = writeln!(out, "tether_connections_open {open_connections}");
        for (name, help, value) in [
            (
                "tether_messages_received_total",
                "Messages received from clients (rate-limited ones included).",
                load(&self.messages_received) + limited,
            ),
            (
                "tether_messages_sent_total",
                "Messages sent to clients (replies, broadcasts and error messages).",
                load(&self.messages_sent) + limited,
            ),
            (
                "tether_bytes_received_total",
                "Payload bytes of the messages received from clients.",
                load(&self.bytes_received) + server.rate_limited_bytes,
            ),
            (
                "tether_bytes_sent_total",
                "Payload bytes of the replies and broadcasts sent to clients (error messages excluded).",
                load(&self.bytes_sent),
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        family(
            &mut out,
            "tether_error_messages_total",
            "counter",
            "Structured error messages sent, by error code.",
        );
        for (code, count) in self
            .error_messages
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let count = count
                + if *code == ErrorCode::RATE_LIMITED {
                    limited
                } else {
                    0
                };
            let _ = writeln!(
                out,
                "tether_error_messages_total{{code=\"{code}\"}} {count}"
            );
        }
        family(
            &mut out,
            "tether_closes_total",
            "counter",
            "Connections ended, by close code (1005: no code, 1006: no close frame) and by \
             the side that started the close.",
        );
        for ((code, side), count) in self
            .closes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "tether_closes_total{{code=\"{code}\",side=\"{}\"}} {count}",
                side.label()
            );
        }
        for (name, help, value) in [
            (
                "tether_slow_consumer_drops_total",
                "Broadcast messages dropped for members whose queue was full.",
                hub.dropped,
            ),
            (
                "tether_slow_consumer_disconnects_total",
                "Members disconnected (1013) because their queue was full.",
                hub.disconnected,
            ),
            (
                "tether_tls_handshake_failures_total",
                "TLS handshakes that failed or did not finish within the handshake timeout \
                 (with --tls-cert).",
                server.tls_handshake_failures,
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {value}");
        }
        render_recovery(&mut out, hub);
        let name = "tether_broadcast_fanout_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Time to queue one broadcast to every local member of its room.",
        );
        for (bound, count) in FANOUT_BUCKETS.iter().zip(hub.fanout.buckets) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", hub.fanout.count);
        let _ = writeln!(out, "{name}_sum {}", hub.fanout.sum_seconds);
        let _ = writeln!(out, "{name}_count {}", hub.fanout.count);
        if let Some(backplane) = backplane {
            render_backplane(&mut out, backplane);
        }
        out
    }
}

/// The recovery families: joins with `since`, how they went, messages replayed.
fn render_recovery(out: &mut String, hub: &HubStats) {
    let recovery = &hub.recovery;
    for (name, help, value) in [
        (
            "tether_recoveries_attempted_total",
            "Joins with `since` that asked to recover the messages missed.",
            recovery.attempted,
        ),
        (
            "tether_recoveries_succeeded_total",
            "Recoveries that replayed every missed message (`recovered: true`).",
            recovery.succeeded,
        ),
        (
            "tether_recovered_messages_total",
            "Messages replayed by successful recoveries.",
            recovery.replayed,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = "tether_recoveries_failed_total";
    family(
        out,
        name,
        "counter",
        "Recoveries refused (`recovered: false`), by reason: epoch_changed (another epoch of \
         the room, or an offset ahead of it), too_old (past --history-ttl), too_many (more \
         than --history-size), disabled (--history-size 0), unavailable (the backplane's \
         Redis unreachable).",
    );
    for (reason, value) in [
        (RecoveryFailure::EpochChanged, recovery.epoch_changed),
        (RecoveryFailure::TooOld, recovery.too_old),
        (RecoveryFailure::TooMany, recovery.too_many),
        (RecoveryFailure::Disabled, recovery.disabled),
        (RecoveryFailure::Unavailable, recovery.unavailable),
    ] {
        let _ = writeln!(out, "{name}{{reason=\"{}\"}} {value}", reason.as_str());
    }
}

/// The `tether_backplane_*` families.
fn render_backplane(out: &mut String, figures: &BackplaneFigures) {
    for (name, kind, help, value) in [
        (
            "tether_backplane_healthy",
            "gauge",
            "1 while broadcasts reach the other nodes through the backplane, 0 while it is \
             unreachable (rooms then work on this node only).",
            u64::from(figures.healthy),
        ),
        (
            "tether_backplane_errors_total",
            "counter",
            "Errors talking to the backplane (connections refused or lost, failed publishes).",
            figures.errors,
        ),
        (
            "tether_backplane_reconnects_total",
            "counter",
            "Connections to the backplane re-established after a loss.",
            figures.reconnects,
        ),
        (
            "tether_backplane_published_total",
            "counter",
            "Broadcasts published to the other nodes.",
            figures.published,
        ),
        (
            "tether_backplane_received_total",
            "counter",
            "Broadcasts received from the other nodes.",
            figures.received,
        ),
        (
            "tether_backplane_buffered",
            "gauge",
            "Broadcasts made while the backplane was unreachable, waiting to be published.",
            figures.buffered,
        ),
        (
            "tether_backplane_buffer_dropped_total",
            "counter",
            "Broadcasts dropped because the outage buffer was full.",
            figures.buffer_dropped,
        ),
    ] {
        family(out, name, kind, help);
        let _ = writeln!(out, "{name} {value}");
    }
    let name = "tether_backplane_shard_up";
    family(
        out,
        name,
        "gauge",
        "Whether each Redis shard (each primary of a cluster, or the one server) answered the \
         last health check.",
    );
    for (shard, up) in &figures.shards {
        let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", u8::from(*up));
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn renders_every_family_with_help_type_and_labels() {
        let metrics = Metrics::default();
        metrics.received(10);
        metrics.sent(20);
        metrics.sent(5);
        metrics.error_message(4001);
        metrics.closed(1000, Side::Client);
        metrics.closed(1001, Side::Server);
        let mut server = ServerStats::default();
        server.open_connections = 3;
        let text = metrics.render(&server, &HubStats::default(), None);
        assert!(!text.contains("tether_backplane"), "{text}");
        for line in [
            "# TYPE tether_connections_open gauge",
            "tether_connections_open 3",
            "tether_messages_received_total 1",
            "tether_messages_sent_total 3",
            "tether_bytes_received_total 10",
            "tether_bytes_sent_total 25",
            "tether_error_messages_total{code=\"4000\"} 0",
            "tether_error_messages_total{code=\"4001\"} 1",
            "tether_closes_total{code=\"1000\",side=\"client\"} 1",
            "tether_closes_total{code=\"1001\",side=\"server\"} 1",
            "# TYPE tether_broadcast_fanout_seconds histogram",
            "tether_broadcast_fanout_seconds_bucket{le=\"0.00001\"} 0",
            "tether_broadcast_fanout_seconds_bucket{le=\"+Inf\"} 0",
            "tether_broadcast_fanout_seconds_count 0",
            "tether_slow_consumer_drops_total 0",
            "tether_tls_handshake_failures_total 0",
            "# TYPE tether_recoveries_attempted_total counter",
            "tether_recoveries_attempted_total 0",
            "tether_recoveries_succeeded_total 0",
            "tether_recovered_messages_total 0",
            "# TYPE tether_recoveries_failed_total counter",
            "tether_recoveries_failed_total{reason=\"epoch_changed\"} 0",
            "tether_recoveries_failed_total{reason=\"too_old\"} 0",
            "tether_recoveries_failed_total{reason=\"too_many\"} 0",
            "tether_recoveries_failed_total{reason=\"disabled\"} 0",
            "tether_recoveries_failed_total{reason=\"unavailable\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_families_declared(&text);
    }

    #[test]
    fn renders_the_backplane_families_with_a_backplane() {
        let figures = BackplaneFigures {
            healthy: false,
            errors: 3,
            reconnects: 1,
            published: 10,
            received: 20,
            buffered: 4,
            buffer_dropped: 2,
            shards: vec![
                ("127.0.0.1:7000".to_owned(), true),
                ("127.0.0.1:7001".to_owned(), false),
            ],
        };
        let text = Metrics::default().render(
            &ServerStats::default(),
            &HubStats::default(),
            Some(&figures),
        );
        for line in [
            "# TYPE tether_backplane_healthy gauge",
            "tether_backplane_healthy 0",
            "# TYPE tether_backplane_errors_total counter",
            "tether_backplane_errors_total 3",
            "tether_backplane_reconnects_total 1",
            "tether_backplane_published_total 10",
            "tether_backplane_received_total 20",
            "# TYPE tether_backplane_buffered gauge",
            "tether_backplane_buffered 4",
            "tether_backplane_buffer_dropped_total 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_families_declared(&text);
        for line in [
            "tether_backplane_shard_up{shard=\"127.0.0.1:7000\"} 1",
            "tether_backplane_shard_up{shard=\"127.0.0.1:7001\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let healthy = BackplaneFigures {
            healthy: true,
            ..figures
        };
        let text = Metrics::default().render(
            &ServerStats::default(),
            &HubStats::default(),
            Some(&healthy),
        );
        assert!(text.lines().any(|l| l == "tether_backplane_healthy 1"));
    }

    /// Every sample belongs to a family declared before it.
    fn assert_families_declared(text: &str) {
        let mut declared = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.push(rest.split(' ').next().unwrap().to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                assert!(
                    declared
                        .iter()
                        .any(|family| name.starts_with(family.as_str())),
                    "{line}"
                );
            }
        }
    }
}
