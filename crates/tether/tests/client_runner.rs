//! The reconnecting runner over loopback against the project's own server: the backoff
//! delays (caps, growth, reset, jitter bounds), the retry advice in action (503 with
//! `Retry-After`, 401, closes with 1000, 1011 and 4003, a 4005 hint before 1013), the
//! attempt limit, `StopHandle` during a backoff and an open connection, and the handler API.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tether::client::{
    Backoff, ClientBuilder, Event, EventHandler, Reconnect, Response, Runner, StopHandle,
};
use tether::codes::Advice;
use tether::server::{CloseError, Reject, RequestContext, Route, Server, Socket};
use tether::{CloseCode, CloseInfo, ErrorKind, Message, Sender, Side};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

/// Runs `server` on a free loopback port; dropping the returned sender shuts it down.
async fn start(server: Server<()>) -> (String, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve_on(listener, async move {
        let _ = stopped.await;
    }));
    (url, stop)
}

/// Fails the test instead of hanging it.
async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("the test took too long")
}

/// Fast backoff for tests: the jitter stays under 20 ms.
fn quick() -> Reconnect {
    Reconnect::new()
        .initial_delay(Duration::from_millis(10))
        .max_delay(Duration::from_millis(20))
}

/// The next event, which must exist.
async fn next(runner: &mut Runner) -> Event {
    bounded(runner.next()).await.expect("an event")
}

fn expect_open(event: Event) -> Sender {
    match event {
        Event::Open { sender, .. } => sender,
        other => panic!("expected Open, found {other:?}"),
    }
}

fn expect_close(event: Event) -> (Option<u16>, String, Side) {
    match event {
        Event::Close(info) => (
            info.reason.code().map(CloseCode::as_u16),
            info.reason.reason().to_owned(),
            info.initiated_by,
        ),
        other => panic!("expected Close, found {other:?}"),
    }
}

fn expect_reconnecting(event: Event) -> (u32, Duration) {
    match event {
        Event::Reconnecting { attempt, delay } => (attempt, delay),
        other => panic!("expected Reconnecting, found {other:?}"),
    }
}

fn expect_stopped(event: Event) -> Option<tether::Error> {
    match event {
        Event::Stopped(error) => error,
        other => panic!("expected Stopped, found {other:?}"),
    }
}

async fn echo(mut socket: Socket) -> Result<(), tether::Error> {
    while let Some(message) = socket.recv().await? {
        socket.send(message).await?;
    }
    Ok(())
}

#[test]
fn backoff_grows_caps_and_resets() {
    let settings = Reconnect::new();
    let ceilings: Vec<u64> = (0..9)
        .map(|n| settings.ceiling(n).as_millis() as u64)
        .collect();
    assert_eq!(
        ceilings,
        [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
    );
    assert_eq!(settings.ceiling(u32::MAX), Duration::from_secs(30));
    let tripling = Reconnect::new()
        .initial_delay(Duration::from_millis(100))
        .max_delay(Duration::from_secs(2))
        .multiplier(3.0);
    let ceilings: Vec<Duration> = (0..5).map(|n| tripling.ceiling(n)).collect();
    assert_eq!(
        ceilings,
        [100, 300, 900, 2000, 2000].map(Duration::from_millis)
    );
    // Below 1 counts as 1: a constant ceiling.
    let flat = Reconnect::new().multiplier(0.5);
    assert_eq!(flat.ceiling(7), Duration::from_millis(500));

    // The top of the jitter range gives the ceilings themselves.
    let mut backoff = Backoff::with_random(Reconnect::new(), || 1.0);
    let delays: Vec<u128> = (0..8)
        .map(|_| backoff.next_delay(None).unwrap().as_millis())
        .collect();
    assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    assert_eq!(backoff.attempts(), 8);

    // A short connection does not reset the count; a stable one does.
    assert!(!backoff.record_uptime(Duration::from_millis(9_999)));
    assert_eq!(
        backoff.next_delay(None),
        Some(Duration::from_secs(30)),
        "still capped"
    );
    assert!(backoff.record_uptime(Duration::from_secs(10)));
    assert_eq!(backoff.attempts(), 0);
    assert_eq!(backoff.next_delay(None), Some(Duration::from_millis(500)));

    // The bottom of the range is zero, the middle is half; a hint is a floor, even over the cap.
    let mut zero = Backoff::with_random(Reconnect::new(), || 0.0);
    assert_eq!(zero.next_delay(None), Some(Duration::ZERO));
    assert_eq!(
        zero.next_delay(Some(Duration::from_millis(1500))),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        zero.next_delay(Some(Duration::from_secs(60))),
        Some(Duration::from_secs(60))
    );
    let mut half = Backoff::with_random(Reconnect::new(), || 0.5);
    assert_eq!(half.next_delay(None), Some(Duration::from_millis(250)));
    assert_eq!(
        half.next_delay(Some(Duration::from_millis(100))),
        Some(Duration::from_millis(500))
    );
    // Out-of-range draws are clamped.
    let mut wild = Backoff::with_random(Reconnect::new(), || 7.0);
    assert_eq!(wild.next_delay(None), Some(Duration::from_millis(500)));
    let mut negative = Backoff::with_random(Reconnect::new(), || -1.0);
    assert_eq!(negative.next_delay(None), Some(Duration::ZERO));

    // The attempt limit.
    let mut limited = Backoff::with_random(Reconnect::new().max_attempts(2), || 1.0);
    assert!(limited.next_delay(None).is_some());
    assert!(limited.next_delay(None).is_some());
    assert_eq!(limited.next_delay(None), None);
    let mut never = Backoff::with_random(Reconnect::new().max_attempts(0), || 1.0);
    assert_eq!(never.next_delay(None), None);
}

#[test]
fn full_jitter_is_uniform_under_the_ceiling() {
    // The OS random source: every delay within [0, ceiling], spread over the whole range.
    const SAMPLES: u32 = 20_000;
    let settings = Reconnect::new().reset_after(Duration::ZERO);
    let mut backoff = Backoff::new(settings);
    for attempt in [0u32, 3] {
        let ceiling = settings.ceiling(attempt).as_secs_f64();
        let (mut sum, mut low, mut high) = (0.0, 0, 0);
        for _ in 0..SAMPLES {
            backoff.reset();
            for _ in 0..attempt {
                backoff.next_delay(None).unwrap();
            }
            let delay = backoff.next_delay(None).unwrap().as_secs_f64();
            assert!((0.0..=ceiling).contains(&delay), "{delay} over {ceiling}");
            sum += delay;
            low += u32::from(delay < ceiling / 4.0);
            high += u32::from(delay >= ceiling * 3.0 / 4.0);
        }
        let mean = sum / f64::from(SAMPLES) / ceiling;
        assert!((0.48..0.52).contains(&mean), "mean fraction {mean}");
        // Each quarter holds about 25 % of the draws.
        for quarter in [low, high] {
            let share = f64::from(quarter) / f64::from(SAMPLES);
            assert!((0.23..0.27).contains(&share), "quarter share {share}");
        }
    }
}

#[tokio::test]
async fn a_refusing_server_is_retried_after_its_retry_after() {
    let refusals = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let (counter, times) = (Arc::clone(&refusals), Arc::clone(&seen));
    let server = Server::builder()
        .route_with(
            "/busy",
            Route::new(echo).guard(move |_cx: &RequestContext<'_, ()>| {
                times.lock().unwrap().push(Instant::now());
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(Reject::error(503, "busy").with_header("Retry-After", "1"))
                } else {
                    Ok(())
                }
            }),
        )
        .build()
        .unwrap();
    let (url, _server) = start(server).await;
    let mut runner = Runner::new(format!("{url}/busy"), ClientBuilder::new(), quick());

    for attempt in 1..=2 {
        let Event::Error(error) = next(&mut runner).await else {
            panic!("expected the refusal");
        };
        assert_eq!(error.kind(), ErrorKind::BadStatus);
        assert_eq!(error.bad_status().unwrap().status, 503);
        assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));
        let (number, delay) = expect_reconnecting(next(&mut runner).await);
        assert_eq!(number, attempt);
        assert!(delay >= Duration::from_secs(1), "{delay:?}");
        assert!(delay < Duration::from_millis(1100), "{delay:?}");
    }
    let sender = expect_open(next(&mut runner).await);
    sender.send(Message::text("after the storm")).await.unwrap();
    let Event::Message(message) = next(&mut runner).await else {
        panic!("expected the echo");
    };
    assert_eq!(message.as_text(), Some("after the storm"));

    let times = seen.lock().unwrap().clone();
    assert_eq!(times.len(), 3);
    for pair in times.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= Duration::from_secs(1), "reconnected after {gap:?}");
    }
    runner.stop_handle().stop();
    expect_close(next(&mut runner).await);
    assert!(expect_stopped(next(&mut runner).await).is_none());
    assert!(runner.next().await.is_none());
}

#[tokio::test]
async fn unauthorized_stops_at_once_with_the_bad_status() {
    let server = Server::builder()
        .route_with(
            "/private",
            Route::new(echo).guard(|_cx: &RequestContext<'_, ()>| {
                Err(Reject::error(401, "Missing token").with_header("WWW-Authenticate", "Bearer"))
            }),
        )
        .build()
        .unwrap();
    let (url, _server) = start(server).await;
    let mut runner = Runner::new(format!("{url}/private"), ClientBuilder::new(), quick());
    let error = expect_stopped(next(&mut runner).await).expect("the refusal");
    assert_eq!(error.kind(), ErrorKind::BadStatus);
    let status = error.bad_status().unwrap();
    assert_eq!(status.status, 401);
    let body: serde_json::Value = serde_json::from_slice(&status.body).unwrap();
    assert_eq!(body["data"]["code"], 4003);
    assert!(runner.next().await.is_none());

    // 404 too (an unknown route).
    let mut runner = Runner::new(format!("{url}/nowhere"), ClientBuilder::new(), quick());
    let error = expect_stopped(next(&mut runner).await).expect("the refusal");
    assert_eq!(error.bad_status().unwrap().status, 404);
}

/// A server whose `/flaky` route closes the first connection with `first` (code and reason)
/// and echoes on the next ones.
fn closing_server(first: u16, reason: &'static str) -> Server<()> {
    let connections = Arc::new(AtomicUsize::new(0));
    Server::builder()
        .route("/flaky", move |socket: Socket| {
            let connections = Arc::clone(&connections);
            async move {
                if connections.fetch_add(1, Ordering::SeqCst) == 0 {
                    return Err(CloseError::from_code(first, reason).into());
                }
                echo(socket).await.map_err(tether::server::BoxError::from)
            }
        })
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_1011_close_reconnects() {
    let (url, _server) = start(closing_server(1011, "oops")).await;
    let mut runner = Runner::new(format!("{url}/flaky"), ClientBuilder::new(), quick());
    expect_open(next(&mut runner).await);
    assert_eq!(
        expect_close(next(&mut runner).await),
        (Some(1011), "oops".to_owned(), Side::Remote)
    );
    let (attempt, delay) = expect_reconnecting(next(&mut runner).await);
    assert_eq!(attempt, 1);
    assert!(delay <= Duration::from_millis(10), "{delay:?}");
    let sender = expect_open(next(&mut runner).await);
    sender.send(Message::text("again")).await.unwrap();
    let Event::Message(message) = next(&mut runner).await else {
        panic!("expected the echo");
    };
    assert_eq!(message.as_text(), Some("again"));
}

#[tokio::test]
async fn a_normal_close_by_the_server_stops_quietly() {
    let (url, _server) = start(closing_server(1000, "bye")).await;
    let mut runner = Runner::new(format!("{url}/flaky"), ClientBuilder::new(), quick());
    expect_open(next(&mut runner).await);
    assert_eq!(
        expect_close(next(&mut runner).await),
        (Some(1000), "bye".to_owned(), Side::Remote)
    );
    assert!(expect_stopped(next(&mut runner).await).is_none());
    assert!(runner.next().await.is_none());
}

#[tokio::test]
async fn a_terminal_application_close_stops_with_the_error() {
    let (url, _server) = start(closing_server(4003, "token expired")).await;
    let mut runner = Runner::new(format!("{url}/flaky"), ClientBuilder::new(), quick());
    expect_open(next(&mut runner).await);
    assert_eq!(
        expect_close(next(&mut runner).await),
        (Some(4003), "token expired".to_owned(), Side::Remote)
    );
    let error = expect_stopped(next(&mut runner).await).expect("the close as an error");
    assert_eq!(error.kind(), ErrorKind::ConnectionClosed);
    let info = error.close_info().unwrap();
    assert_eq!(info.reason.display_code(), 4003);
    assert_eq!(info.reason.reason(), "token expired");
    assert_eq!(info.initiated_by, Side::Remote);
    assert!(runner.next().await.is_none());

    // A classifier may decide otherwise (say the token was refreshed).
    let (url, _server) = start(closing_server(4003, "token expired")).await;
    let mut runner = Runner::new(format!("{url}/flaky"), ClientBuilder::new(), quick()).classify(
        |end| match end.close_code() {
            Some(4003) => Advice::Reconnect { after: None },
            _ => end.default_advice(),
        },
    );
    expect_open(next(&mut runner).await);
    expect_close(next(&mut runner).await);
    assert_eq!(expect_reconnecting(next(&mut runner).await).0, 1);
    expect_open(next(&mut runner).await);
}

#[cfg(feature = "json")] // The runner reads error messages with serde_json.
#[tokio::test]
async fn a_rate_limit_hint_delays_the_reconnect() {
    use tether::server::AppError;

    let connections = Arc::new(AtomicUsize::new(0));
    let server = Server::builder()
        .route("/limited", move |mut socket: Socket| {
            let connections = Arc::clone(&connections);
            async move {
                if connections.fetch_add(1, Ordering::SeqCst) == 0 {
                    let error =
                        AppError::rate_limited("Too many requests", Duration::from_millis(700));
                    socket.send_error(error).await?;
                    socket
                        .close(CloseCode::TRY_AGAIN_LATER, "overloaded")
                        .await?;
                    return Ok(());
                }
                echo(socket).await
            }
        })
        .build()
        .unwrap();
    let (url, _server) = start(server).await;
    let mut runner = Runner::new(format!("{url}/limited"), ClientBuilder::new(), quick());
    expect_open(next(&mut runner).await);
    let Event::Message(message) = next(&mut runner).await else {
        panic!("expected the error message");
    };
    let json: serde_json::Value = serde_json::from_str(message.as_text().unwrap()).unwrap();
    assert_eq!(json["data"]["code"], 4005);
    assert_eq!(json["data"]["retry_after_ms"], 700);
    assert_eq!(
        expect_close(next(&mut runner).await),
        (Some(1013), "overloaded".to_owned(), Side::Remote)
    );
    let (attempt, delay) = expect_reconnecting(next(&mut runner).await);
    assert_eq!(attempt, 1);
    assert!(delay >= Duration::from_millis(700), "{delay:?}");
    assert!(delay < Duration::from_millis(750), "{delay:?}");
    let waited = Instant::now();
    expect_open(next(&mut runner).await);
    assert!(waited.elapsed() >= Duration::from_millis(700));
}

#[tokio::test]
async fn the_attempt_limit_stops_with_the_last_error() {
    // A port nobody listens on: every attempt is refused.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("ws://{}", listener.local_addr().unwrap());
    drop(listener);
    let mut runner = Runner::new(url, ClientBuilder::new(), quick().max_attempts(2));
    for attempt in 1..=2 {
        let Event::Error(error) = next(&mut runner).await else {
            panic!("expected the refused connection");
        };
        assert_eq!(error.kind(), ErrorKind::Io, "{error}");
        assert_eq!(expect_reconnecting(next(&mut runner).await).0, attempt);
    }
    let error = expect_stopped(next(&mut runner).await).expect("the last error");
    assert_eq!(error.kind(), ErrorKind::Io, "{error}");
    assert!(error.is_retryable());
    assert!(runner.next().await.is_none());
}

#[tokio::test]
async fn stop_ends_a_backoff_at_once() {
    let server = Server::builder()
        .route_with(
            "/later",
            Route::new(echo).guard(|_cx: &RequestContext<'_, ()>| {
                Err(Reject::error(503, "maintenance").with_header("Retry-After", "30"))
            }),
        )
        .build()
        .unwrap();
    let (url, _server) = start(server).await;
    let mut runner = Runner::new(format!("{url}/later"), ClientBuilder::new(), quick());
    assert!(matches!(next(&mut runner).await, Event::Error(_)));
    let (_, delay) = expect_reconnecting(next(&mut runner).await);
    assert!(delay >= Duration::from_secs(30));
    let stop = runner.stop_handle();
    assert!(!stop.is_stopped());
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.stop();
    });
    let started = Instant::now();
    assert!(expect_stopped(next(&mut runner).await).is_none());
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(runner.stop_handle().is_stopped());
    assert!(runner.next().await.is_none());
}

#[tokio::test]
async fn stop_or_an_own_close_ends_an_open_connection() {
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel();
    let server = Server::builder()
        .route("/watch", move |mut socket: Socket| {
            let closed_tx = closed_tx.clone();
            async move {
                while socket.recv().await?.is_some() {}
                let info = socket.close_info().unwrap();
                closed_tx.send(info).unwrap();
                Ok::<_, tether::Error>(())
            }
        })
        .build()
        .unwrap();
    let (url, _server) = start(server).await;
    let mut runner = Runner::new(format!("{url}/watch"), ClientBuilder::new(), quick());
    let stop = runner.stop_handle();
    expect_open(next(&mut runner).await);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop.stop();
    });
    assert_eq!(
        expect_close(next(&mut runner).await),
        (Some(1000), String::new(), Side::Local)
    );
    assert!(expect_stopped(next(&mut runner).await).is_none());
    assert!(runner.next().await.is_none());
    let seen = bounded(closed_rx.recv()).await.unwrap();
    assert_eq!(seen.reason.display_code(), 1000);
    assert_eq!(seen.initiated_by, Side::Remote);

    // Closing it yourself ends the runner too, whatever the code.
    let mut runner = Runner::new(format!("{url}/watch"), ClientBuilder::new(), quick());
    let sender = expect_open(next(&mut runner).await);
    sender
        .close(CloseCode::GOING_AWAY, "leaving")
        .await
        .unwrap();
    assert_eq!(
        expect_close(next(&mut runner).await),
        (Some(1001), "leaving".to_owned(), Side::Local)
    );
    assert!(expect_stopped(next(&mut runner).await).is_none());
    let seen = bounded(closed_rx.recv()).await.unwrap();
    assert_eq!(seen.reason.display_code(), 1001);

    // Stopped before it started: no connection at all.
    let mut runner = Runner::new(format!("{url}/watch"), ClientBuilder::new(), quick());
    runner.stop_handle().stop();
    assert!(expect_stopped(next(&mut runner).await).is_none());
}

/// Records every callback as a line.
#[derive(Default)]
struct Recorder {
    log: Vec<String>,
}

impl EventHandler for Recorder {
    async fn on_open(&mut self, _sender: &Sender, response: &Response) {
        self.log.push(format!("open {:?}", response.protocol));
    }

    async fn on_message(&mut self, sender: &Sender, message: Message) {
        let text = message.as_text().unwrap_or_default().to_owned();
        self.log.push(format!("message {text}"));
        sender
            .send(Message::text(format!("ack {text}")))
            .await
            .unwrap();
    }

    async fn on_error(&mut self, error: &tether::Error) {
        self.log.push(format!("error {:?}", error.kind()));
    }

    async fn on_close(&mut self, info: &CloseInfo) {
        let code = info.reason.code().map(CloseCode::as_u16);
        self.log
            .push(format!("close {code:?} {}", info.reason.reason()));
    }

    async fn on_reconnect(&mut self, attempt: u32, _delay: Duration) {
        self.log.push(format!("reconnect {attempt}"));
    }
}

#[tokio::test]
async fn the_handler_sees_every_step_in_order() {
    let connections = Arc::new(AtomicUsize::new(0));
    let server = Server::builder()
        .route("/story", move |mut socket: Socket| {
            let connections = Arc::clone(&connections);
            async move {
                let n = connections.fetch_add(1, Ordering::SeqCst) + 1;
                socket.send(Message::text(format!("hello {n}"))).await?;
                let ack = socket.recv().await?.unwrap();
                assert_eq!(ack.as_text(), Some(format!("ack hello {n}").as_str()));
                let code = if n == 1 {
                    CloseCode::SERVICE_RESTART
                } else {
                    CloseCode::NORMAL
                };
                socket.close(code, format!("end {n}")).await?;
                Ok::<_, tether::Error>(())
            }
        })
        .build()
        .unwrap();
    let (url, _server) = start(server).await;
    let mut recorder = Recorder::default();
    let runner = Runner::new(format!("{url}/story"), ClientBuilder::new(), quick());
    bounded(runner.run(&mut recorder)).await.unwrap();
    assert_eq!(
        recorder.log,
        [
            "open None",
            "message hello 1",
            "close Some(1012) end 1",
            "reconnect 1",
            "open None",
            "message hello 2",
            "close Some(1000) end 2",
        ]
    );

    // A run that stops with an error returns it, and `on_error` sees it last.
    let (url, _server) = start(closing_server(4003, "no")).await;
    let mut recorder = Recorder::default();
    let runner = Runner::new(format!("{url}/flaky"), ClientBuilder::new(), quick());
    let error = bounded(runner.run(&mut recorder)).await.unwrap_err();
    assert_eq!(error.close_info().unwrap().reason.display_code(), 4003);
    assert_eq!(
        recorder.log,
        ["open None", "close Some(4003) no", "error ConnectionClosed"]
    );
}

#[tokio::test]
async fn runners_move_between_tasks() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<StopHandle>();
    assert_send_sync::<Reconnect>();
    let mut runner = Runner::new("ws://127.0.0.1:9", ClientBuilder::new(), quick());
    assert_send(&runner);
    assert_send(&runner.next());
    let runner = Runner::new(
        "ws://127.0.0.1:9",
        ClientBuilder::new(),
        quick().max_attempts(0),
    );
    let task = tokio::spawn(runner.run(Recorder::default()));
    let error = bounded(task).await.unwrap().unwrap_err();
    assert!(error.is_retryable(), "{error}");
}
