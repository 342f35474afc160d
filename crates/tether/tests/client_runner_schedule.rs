//! The reconnecting runner's schedule on a paused clock: each backoff lasts exactly the
//! delay it announced, every delay stays under its exponential ceiling (full jitter), and a
//! connection that stayed up for `reset_after` starts the schedule over.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::time::Duration;

use tether::client::{ClientBuilder, Event, Reconnect, Runner};
use tether::server::{CloseError, Server, Socket};
use tokio::net::TcpListener;
use tokio::time::Instant;

fn schedule() -> Reconnect {
    Reconnect::new()
        .initial_delay(Duration::from_secs(1))
        .multiplier(2.0)
        .max_delay(Duration::from_secs(8))
        .reset_after(Duration::from_secs(10))
}

fn client() -> tether::client::ClientBuilder {
    ClientBuilder::new()
        .no_proxy()
        .ping_interval(None)
        .connect_timeout(Duration::from_secs(600))
        .handshake_timeout(Duration::from_secs(600))
}

/// Waits for the next `Reconnecting` event and returns its attempt and delay, skipping the
/// events around it.
async fn next_backoff(runner: &mut Runner) -> (u32, Duration) {
    loop {
        match runner.next().await.expect("the runner goes on") {
            Event::Reconnecting { attempt, delay } => return (attempt, delay),
            Event::Stopped(error) => panic!("stopped: {error:?}"),
            _ => {}
        }
    }
}

#[tokio::test(start_paused = true)]
async fn each_backoff_lasts_its_announced_delay_under_the_growing_ceiling() {
    // Nobody listens: every attempt is refused at once, so only the backoff takes time.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut runner = Runner::new(url, client(), schedule().max_attempts(6));
    let ceilings = [1, 2, 4, 8, 8, 8].map(Duration::from_secs);
    let mut previous: Option<(Instant, Duration)> = None;
    for (index, ceiling) in ceilings.iter().enumerate() {
        let (attempt, delay) = next_backoff(&mut runner).await;
        let announced_at = Instant::now();
        if let Some((at, delay)) = previous {
            // The attempt after a backoff starts when its delay is over (the refused connect
            // takes no time on the paused clock; tokio's timers round up to the millisecond).
            assert_exact(announced_at - at, delay, index);
        }
        assert_eq!(attempt as usize, index + 1);
        assert!(
            delay <= *ceiling,
            "attempt {attempt}: {delay:?} over {ceiling:?}"
        );
        previous = Some((announced_at, delay));
    }
    let last = previous.unwrap();
    // The last attempt is refused too: the runner stops with that error.
    match runner.next().await.unwrap() {
        Event::Stopped(Some(error)) => assert!(error.is_retryable(), "{error}"),
        other => panic!("expected the runner to stop, found {other:?}"),
    }
    assert_exact(Instant::now() - last.0, last.1, ceilings.len());
    assert!(runner.next().await.is_none());
}

fn assert_exact(waited: Duration, delay: Duration, index: usize) {
    assert!(
        waited >= delay && waited - delay < Duration::from_millis(1),
        "backoff {index}: waited {waited:?} for a delay of {delay:?}"
    );
}

/// A server whose connections close with 1011 after `uptime`.
async fn flaky_server(uptime: Duration) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}/", listener.local_addr().unwrap());
    let server = Server::builder()
        .route("/", move |_socket: Socket| async move {
            tokio::time::sleep(uptime).await;
            Err::<(), _>(CloseError::from_code(1011, "restarting"))
        })
        .ping_interval(None)
        .build()
        .unwrap();
    tokio::spawn(server.serve_on(listener, std::future::pending()));
    url
}

#[tokio::test(start_paused = true)]
async fn short_lived_connections_grow_the_backoff_and_stable_ones_reset_it() {
    let url = flaky_server(Duration::from_secs(1)).await;
    let mut runner = Runner::new(url, client(), schedule());
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_backoff(&mut runner).await.0);
    }
    assert_eq!(
        seen,
        [1, 2, 3],
        "1 s connections are not stable: the count grows"
    );

    let url = flaky_server(Duration::from_secs(11)).await;
    let mut runner = Runner::new(url, client(), schedule());
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (attempt, delay) = next_backoff(&mut runner).await;
        assert!(
            delay <= Duration::from_secs(1),
            "a reset schedule starts at the first ceiling"
        );
        seen.push(attempt);
    }
    assert_eq!(
        seen,
        [1, 1, 1],
        "11 s connections are stable: each starts over"
    );
}
