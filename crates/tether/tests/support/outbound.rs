//! Waiting in hub tests: a member's outbound queue read up to a deadline, a check that
//! nothing more arrives, and polling until a condition holds.

use std::time::Duration;

use tether::Message;
use tether::hub::Outbound;
use tokio::time::Instant;

/// Up to `count` messages, within `within`.
pub(crate) async fn receive(
    outbound: &mut Outbound,
    count: usize,
    within: Duration,
) -> Vec<Message> {
    let deadline = Instant::now() + within;
    let mut messages = Vec::new();
    while messages.len() < count {
        match tokio::time::timeout_at(deadline, outbound.recv()).await {
            Ok(Some(message)) => messages.push(message),
            _ => break,
        }
    }
    messages
}

/// Asserts that nothing more arrives within `quiet`.
pub(crate) async fn assert_quiet(outbound: &mut Outbound, quiet: Duration) {
    if let Ok(Some(message)) = tokio::time::timeout(quiet, outbound.recv()).await {
        panic!(
            "unexpected extra message {:?}",
            String::from_utf8_lossy(message.payload())
        );
    }
}

/// Waits until `done` holds, polling; panics with `what` after `within`.
pub(crate) async fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
