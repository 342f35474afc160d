//! The reconnecting runner, Tether's `WebSocketApp.run_forever`: [`Runner`] keeps a client
//! connection alive across failures with exponential backoff and full jitter ([`Reconnect`],
//! [`Backoff`]), decides after each disconnect whether to try again ([`Disconnect`], the
//! retry advice of [`codes`](crate::codes)), and reports what happens as a stream of
//! [`Event`]s or to an [`EventHandler`]. A [`StopHandle`] ends it from another task.

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tether_proto::{CloseCode, Message, Side};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff::{Backoff, Reconnect};
use super::builder::ClientBuilder;
use super::connect::{ClientConfig, Response, connect_with};
use crate::codes::{Advice, Ending, Registry, retry_advice};
use crate::error::{Error, ErrorKind, TimeoutPhase};
use crate::transport::{CloseInfo, CloseReason, Sender, WebSocket};

/// Why the runner lost its connection, or could not get one: what a classifier looks at to
/// decide whether to reconnect.
#[derive(Debug, Clone, Copy)]
pub struct Disconnect<'a> {
    error: Option<&'a Error>,
    close: Option<&'a CloseInfo>,
    hint: Option<Duration>,
    was_open: bool,
}

impl<'a> Disconnect<'a> {
    /// The error, unless the connection ended with a close handshake (a close is not an
    /// error). For a failed connection attempt, the connect error.
    pub fn error(&self) -> Option<&'a Error> {
        self.error
    }

    /// How an open connection ended: who closed first, the code and reason, or the abnormal
    /// state. `None` when connecting failed.
    pub fn close_info(&self) -> Option<&'a CloseInfo> {
        self.close
    }

    /// The close code of an open connection's end, if its close frame had one.
    pub fn close_code(&self) -> Option<u16> {
        self.close
            .and_then(|info| info.reason.code())
            .map(CloseCode::as_u16)
    }

    /// The server's hint: the `Retry-After` of a refused handshake, or the `retry_after_ms`
    /// of the last structured error message received on the connection.
    pub fn hint(&self) -> Option<Duration> {
        self.hint
    }

    /// Whether a connection had been open (`false`: the connection attempt failed).
    pub fn was_open(&self) -> bool {
        self.was_open
    }

    /// Whether the application closed the connection itself (through a [`Sender`]):
    /// this endpoint started the close and nothing failed but, at most, the wait for the
    /// server's answer. Closes the client makes on its own (a missing pong, a protocol
    /// error) come with their error and are not counted.
    pub fn is_local_close(&self) -> bool {
        let started_here = self.close.is_some_and(|info| {
            info.initiated_by == Side::Local && info.reason != CloseReason::Abnormal
        });
        started_here
            && self
                .error
                .is_none_or(|error| error.timeout_phase() == Some(TimeoutPhase::Close))
    }

    /// The end in the vocabulary of [`retry_advice`], when it has one: the close of an open
    /// connection, a refused handshake, or an abnormal end (reset, timeout, I/O failure).
    /// `None` for failures the advice does not cover (TLS, a malformed URL, a proxy, an
    /// invalid handshake answer): decide on [`Error::is_retryable`] there.
    pub fn ending(&self) -> Option<Ending> {
        if let Some(info) = self.close {
            return Some(Ending::of(&info.reason));
        }
        let error = self.error?;
        if let Some(status) = error.bad_status() {
            return Some(Ending::Refused {
                status: status.status,
                retry_after: error.retry_after(),
            });
        }
        if let Some(info) = error.close_info() {
            return Some(Ending::of(&info.reason));
        }
        match error.kind() {
            ErrorKind::ConnectionClosed | ErrorKind::Timeout | ErrorKind::Io => {
                Some(Ending::Abnormal)
            }
            _ => None,
        }
    }

    /// The default classifier: stop after the application's own close
    /// ([`is_local_close`](Self::is_local_close)); otherwise [`retry_advice`] with the default
    /// [`Registry`] and the server's hint, or [`Error::is_retryable`] when the end has no
    /// [`Ending`].
    ///
    /// So a refused handshake with 401, 403, 404 (any 4xx but 408 and 429), a normal close
    /// (1000) and the terminal close codes (1002, 1003, 1007-1010, 4003, 4004, unregistered
    /// application codes) stop; 5xx, 408, 429, timeouts, resets, abnormal closures and 1001,
    /// 1011-1014 reconnect.
    pub fn default_advice(&self) -> Advice {
        static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::default);
        self.advice_with(&REGISTRY)
    }

    /// The default classifier with the application codes of `registry`.
    pub fn advice_with(&self, registry: &Registry) -> Advice {
        if self.is_local_close() {
            return Advice::Stop;
        }
        match self.ending() {
            Some(ending) => retry_advice(ending, registry, self.hint),
            None if self.error.is_some_and(Error::is_retryable) => {
                Advice::Reconnect { after: self.hint }
            }
            None => Advice::Stop,
        }
    }
}

/// What happened to a [`Runner`]'s connection.
///
/// A run reads: `Open`, then `Message`s (and `Error`s for read timeouts, after which the
/// connection stays open), then `Close` when the connection ends; then either `Error` (when
/// it ended with one) and `Reconnecting` before the next attempt, or `Stopped`. A failed
/// connection attempt gives `Error` and `Reconnecting`, or `Stopped`. `Stopped` is always
/// last; after it [`Runner::next`] returns `None`. (One `Error` may also come just before a
/// quiet `Stopped(None)`: the server did not answer the application's own close in time.)
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A connection is open. `sender` sends on it (from any task) until it ends.
    Open {
        /// Sends on this connection.
        sender: Sender,
        /// The server's handshake answer.
        response: Response,
    },
    /// A message from the server.
    Message(Message),
    /// An error the runner recovers from: a failed connection attempt or a connection that
    /// failed (a `Reconnecting` follows), or a read timeout (the connection stays open).
    Error(Error),
    /// The open connection ended: who closed first, and the close frame or the state
    /// (no status, 1005; abnormal, 1006).
    Close(CloseInfo),
    /// The runner waits `delay`, then makes reconnect attempt `attempt` (from 1; it counts
    /// attempts since the last stable connection).
    Reconnecting {
        /// The attempt number, from 1.
        attempt: u32,
        /// How long the runner waits before it.
        delay: Duration,
    },
    /// The runner is done: `None` after a normal close (1000), a close the application made
    /// itself, or a [`StopHandle::stop`]; otherwise the error that ended it (a terminal close as a
    /// [`ConnectionClosed`](ErrorKind::ConnectionClosed) error with its
    /// [`close_info`](Error::close_info), a refused handshake, or the last error once the
    /// maximum number of attempts was reached).
    Stopped(Option<Error>),
}

/// Stops a [`Runner`] from anywhere: cloneable, `Send` and `Sync`.
#[derive(Debug, Clone)]
pub struct StopHandle {
    stop: Arc<watch::Sender<bool>>,
}

impl StopHandle {
    /// Stops the runner: an open connection is closed with 1000 (the runner then reports
    /// `Close` and `Stopped(None)`), a connection attempt or a backoff wait is abandoned at
    /// once (`Stopped(None)`). Idempotent.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Whether [`stop`](Self::stop) has been called.
    pub fn is_stopped(&self) -> bool {
        *self.stop.borrow()
    }
}

type Classifier = Arc<dyn Fn(&Disconnect<'_>) -> Advice + Send + Sync>;

/// The reconnecting client: connects, reports messages, and after a disconnect reconnects
/// with backoff when the classifier advises it (by default, [`Disconnect::default_advice`]).
///
/// Read it as a stream with [`Runner::next`], or drive an [`EventHandler`] with
/// [`Runner::run`]. Stop it with a [`StopHandle`], or by closing the connection yourself
/// with the `sender` of [`Event::Open`].
///
/// ```no_run
/// use tether::Message;
/// use tether::client::{ClientBuilder, Event, Reconnect, Runner};
///
/// # async fn demo() {
/// let mut runner = Runner::new("ws://127.0.0.1:9000/feed", ClientBuilder::new(), Reconnect::new());
/// while let Some(event) = runner.next().await {
///     match event {
///         Event::Open { sender, .. } => {
///             let _ = sender.send(Message::text("subscribe")).await;
///         }
///         Event::Message(message) => println!("{message:?}"),
///         Event::Stopped(error) => println!("done: {error:?}"),
///         _ => {}
///     }
/// }
/// # }
/// ```
pub struct Runner {
    url: String,
    config: ClientConfig,
    classify: Classifier,
    backoff: Backoff,
    state: State,
    queue: VecDeque<Event>,
    stop: watch::Receiver<bool>,
    stop_handle: StopHandle,
}

enum State {
    /// Connect on the next call.
    Connect,
    /// A connection is open.
    Open(Box<Open>),
    /// Waiting until this instant before connecting again.
    Wait(Instant),
    /// `Stopped` has been queued.
    Done,
}

struct Open {
    client: WebSocket,
    since: Instant,
    /// The `retry_after_ms` of the last structured error message.
    hint: Option<Duration>,
}

impl fmt::Debug for Runner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Connect => "connect",
            State::Open(_) => "open",
            State::Wait(_) => "waiting",
            State::Done => "done",
        };
        f.debug_struct("Runner")
            .field("url", &self.url)
            .field("state", &state)
            .field("backoff", &self.backoff)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Runner {
    /// A runner for `url` with the settings of `client` and the backoff of `reconnect`. It
    /// connects on the first [`next`](Self::next).
    pub fn new(url: impl Into<String>, client: ClientBuilder, reconnect: Reconnect) -> Self {
        Self::with_config(url, client.config().clone(), reconnect)
    }

    /// A runner with a [`ClientConfig`].
    pub fn with_config(url: impl Into<String>, config: ClientConfig, reconnect: Reconnect) -> Self {
        let (stop, stopped) = watch::channel(false);
        Self {
            url: url.into(),
            config,
            classify: Arc::new(|end: &Disconnect<'_>| end.default_advice()),
            backoff: Backoff::new(reconnect),
            state: State::Connect,
            queue: VecDeque::new(),
            stop: stopped,
            stop_handle: StopHandle {
                stop: Arc::new(stop),
            },
        }
    }

    /// Replaces the classifier that decides, after each disconnect or failed attempt,
    /// whether to reconnect. Delegate to [`Disconnect::default_advice`] for the cases you do
    /// not handle. The delay is at least the server's hint whatever the classifier says, and
    /// at least the `after` of its [`Advice::Reconnect`].
    ///
    /// ```
    /// use tether::client::{ClientBuilder, Reconnect, Runner};
    /// use tether::codes::Advice;
    ///
    /// // Also reconnect after 4003 (say the token is refreshed elsewhere).
    /// let runner = Runner::new("ws://127.0.0.1:9000", ClientBuilder::new(), Reconnect::new())
    ///     .classify(|end| match end.close_code() {
    ///         Some(4003) => Advice::Reconnect { after: None },
    ///         _ => end.default_advice(),
    ///     });
    /// # drop(runner);
    /// ```
    pub fn classify<F>(mut self, classify: F) -> Self
    where
        F: Fn(&Disconnect<'_>) -> Advice + Send + Sync + 'static,
    {
        self.classify = Arc::new(classify);
        self
    }

    /// A handle that stops this runner from another task.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop_handle.clone()
    }

    /// The URL this runner connects to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The next event; `None` after [`Event::Stopped`].
    ///
    /// Cancel-safe: dropping the future loses no message (an abandoned connection attempt
    /// starts over on the next call). The connection is only read, and the heartbeat only
    /// runs, while a call is waiting.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.queue.pop_front() {
                return Some(event);
            }
            match &mut self.state {
                State::Done => return None,
                State::Wait(until) => {
                    let until = *until;
                    tokio::select! {
                        biased;
                        () = stopped(&mut self.stop) => self.finish(None),
                        () = tokio::time::sleep_until(until) => self.state = State::Connect,
                    }
                }
                State::Connect => {
                    let attempt = tokio::select! {
                        biased;
                        () = stopped(&mut self.stop) => None,
                        result = connect_with(&self.url, &self.config) => Some(result),
                    };
                    match attempt {
                        None => self.finish(None),
                        Some(Ok((client, response))) => {
                            tracing::debug!(url = %self.url, "runner connected");
                            let sender = client.sender();
                            self.state = State::Open(Box::new(Open {
                                client,
                                since: Instant::now(),
                                hint: None,
                            }));
                            return Some(Event::Open { sender, response });
                        }
                        Some(Err(error)) => {
                            let hint = error.retry_after();
                            self.conclude(Some(error), false, hint);
                        }
                    }
                }
                State::Open(open) => {
                    let next = tokio::select! {
                        biased;
                        () = stopped(&mut self.stop) => None,
                        next = open.client.recv() => Some(next),
                    };
                    match next {
                        Some(Ok(Some(message))) => {
                            if let Some(hint) = error_message_hint(&message) {
                                open.hint = hint;
                            }
                            return Some(Event::Message(message));
                        }
                        Some(Err(error)) if error.timeout_phase() == Some(TimeoutPhase::Read) => {
                            return Some(Event::Error(error));
                        }
                        Some(end) => {
                            // A close handshake is an end, not an error, whatever its code:
                            // the classifier reads the code from the close.
                            let error = end.err().filter(|error| {
                                error.close_info().is_none() || error.is_abnormal_closure()
                            });
                            let hint = open.hint;
                            self.conclude(error, true, hint);
                        }
                        None => {
                            // Bounded by the close timeout; a failure still ends the connection.
                            let _ = open.client.close(CloseCode::NORMAL, "").await;
                            let info = open.client.close_info().unwrap_or_else(|| {
                                CloseInfo::new(Side::Local, CloseReason::NoStatus)
                            });
                            self.queue.push_back(Event::Close(info));
                            self.finish(None);
                        }
                    }
                }
            }
        }
    }

    /// Drives `handler` with this runner's events until it stops: `Ok(())` after a normal
    /// close, the application's own close or a [`StopHandle::stop`], the final error
    /// otherwise (which [`EventHandler::on_error`] also sees).
    ///
    /// # Errors
    /// The error that stopped the runner; see [`Event::Stopped`].
    pub async fn run<H: EventHandler>(mut self, mut handler: H) -> Result<(), Error> {
        let mut sender: Option<Sender> = None;
        while let Some(event) = self.next().await {
            match event {
                Event::Open {
                    sender: opened,
                    response,
                } => {
                    handler.on_open(&opened, &response).await;
                    sender = Some(opened);
                }
                Event::Message(message) => {
                    if let Some(sender) = &sender {
                        handler.on_message(sender, message).await;
                    }
                }
                Event::Error(error) => handler.on_error(&error).await,
                Event::Close(info) => {
                    sender = None;
                    handler.on_close(&info).await;
                }
                Event::Reconnecting { attempt, delay } => {
                    handler.on_reconnect(attempt, delay).await;
                }
                Event::Stopped(None) => return Ok(()),
                Event::Stopped(Some(error)) => {
                    handler.on_error(&error).await;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Decides what follows the end of the open connection (`was_open`) or a failed
    /// attempt, and queues the events that say so.
    fn conclude(&mut self, error: Option<Error>, was_open: bool, hint: Option<Duration>) {
        let mut close = None;
        if was_open {
            let State::Open(open) = std::mem::replace(&mut self.state, State::Connect) else {
                return;
            };
            // A connection that ended without any record of how, ended abnormally.
            let info = open
                .client
                .close_info()
                .unwrap_or_else(|| CloseInfo::new(Side::Remote, CloseReason::Abnormal));
            self.queue.push_back(Event::Close(info.clone()));
            self.backoff.record_uptime(open.since.elapsed());
            close = Some(info);
        }
        let disconnect = Disconnect {
            error: error.as_ref(),
            close: close.as_ref(),
            hint,
            was_open,
        };
        let advice = (self.classify)(&disconnect);
        // Ends that stop without an error: a normal close, and the application's own close.
        let quiet = disconnect.is_local_close()
            || (error.is_none() && disconnect.close_code() == Some(1000));
        let failure = |error: Option<Error>| {
            error
                .or_else(|| close.clone().map(Error::disconnected))
                .unwrap_or_else(Error::abnormal_closure)
        };
        match advice {
            Advice::Stop if quiet => {
                // At most the wait for the server's answer to our close timed out: say so.
                if let Some(error) = error {
                    self.queue.push_back(Event::Error(error));
                }
                self.finish(None);
            }
            Advice::Stop => {
                let error = failure(error);
                tracing::warn!(url = %self.url, error = %format_args!("{error:#}"), "runner stopped");
                self.finish(Some(error));
            }
            Advice::Reconnect { after } => {
                let floor = after.max(hint);
                match self.backoff.next_delay(floor) {
                    None => {
                        let error = failure(error);
                        tracing::warn!(
                            url = %self.url,
                            attempts = self.backoff.attempts(),
                            error = %format_args!("{error:#}"),
                            "runner gave up"
                        );
                        self.finish(Some(error));
                    }
                    Some(delay) => {
                        let attempt = self.backoff.attempts();
                        tracing::debug!(
                            url = %self.url,
                            attempt,
                            delay_ms = delay.as_millis(),
                            "runner reconnecting"
                        );
                        if let Some(error) = error {
                            self.queue.push_back(Event::Error(error));
                        }
                        self.queue.push_back(Event::Reconnecting { attempt, delay });
                        self.state = State::Wait(Instant::now() + delay);
                    }
                }
            }
        }
    }

    fn finish(&mut self, error: Option<Error>) {
        self.queue.push_back(Event::Stopped(error));
        self.state = State::Done;
    }
}

/// Resolves once the stop flag is set (never, if every handle is gone: cannot happen while
/// the runner keeps its own).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The largest text message inspected for a retry hint.
#[cfg(feature = "json")]
const MAX_HINT_MESSAGE: usize = 64 * 1024;

/// For a structured error message (`{"type":"error","data":{...}}`), its `retry_after_ms`
/// (`Some(None)` when it has none); `None` for any other message.
#[cfg(feature = "json")]
fn error_message_hint(message: &Message) -> Option<Option<Duration>> {
    let text = message.as_text()?;
    if text.len() > MAX_HINT_MESSAGE
        || !text.trim_start().starts_with('{')
        || !text.contains("\"error\"")
    {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "error" {
        return None;
    }
    let data = value.get("data")?;
    Some(
        data.get("retry_after_ms")
            .and_then(serde_json::Value::as_u64)
            .map(Duration::from_millis),
    )
}

/// Without the `json` feature, error messages are not inspected.
#[cfg(not(feature = "json"))]
fn error_message_hint(_message: &Message) -> Option<Option<Duration>> {
    None
}

/// Callbacks for [`Runner::run`], like the `on_*` functions of Python's `WebSocketApp`.
/// Every method has a default that does nothing.
///
/// Callbacks are awaited one at a time, and the connection is not read meanwhile: keep them
/// short, or hand long work to a task. `&mut H` is a handler too, so the caller can inspect
/// its handler after the run.
///
/// ```no_run
/// use tether::Message;
/// use tether::Sender;
/// use tether::client::{ClientBuilder, EventHandler, Reconnect, Runner};
///
/// struct Echo;
///
/// impl EventHandler for Echo {
///     async fn on_message(&mut self, sender: &Sender, message: Message) {
///         let _ = sender.send(message).await;
///     }
/// }
///
/// # async fn demo() -> Result<(), tether::Error> {
/// Runner::new("ws://127.0.0.1:9000", ClientBuilder::new(), Reconnect::new())
///     .run(Echo)
///     .await
/// # }
/// ```
pub trait EventHandler: Send {
    /// A connection opened; `sender` sends on it.
    fn on_open(&mut self, sender: &Sender, response: &Response) -> impl Future<Output = ()> + Send {
        let _ = (sender, response);
        async {}
    }

    /// A message arrived; `sender` sends on the same connection.
    fn on_message(&mut self, sender: &Sender, message: Message) -> impl Future<Output = ()> + Send {
        let _ = (sender, message);
        async {}
    }

    /// An error: one the runner recovers from, or (last) the one that stops it.
    fn on_error(&mut self, error: &Error) -> impl Future<Output = ()> + Send {
        let _ = error;
        async {}
    }

    /// The connection ended as `info` says (its code and reason, or no status, or
    /// abnormal).
    fn on_close(&mut self, info: &CloseInfo) -> impl Future<Output = ()> + Send {
        let _ = info;
        async {}
    }

    /// The runner waits `delay`, then makes reconnect attempt `attempt` (from 1).
    fn on_reconnect(&mut self, attempt: u32, delay: Duration) -> impl Future<Output = ()> + Send {
        let _ = (attempt, delay);
        async {}
    }
}

impl<H: EventHandler> EventHandler for &mut H {
    fn on_open(&mut self, sender: &Sender, response: &Response) -> impl Future<Output = ()> + Send {
        (**self).on_open(sender, response)
    }

    fn on_message(&mut self, sender: &Sender, message: Message) -> impl Future<Output = ()> + Send {
        (**self).on_message(sender, message)
    }

    fn on_error(&mut self, error: &Error) -> impl Future<Output = ()> + Send {
        (**self).on_error(error)
    }

    fn on_close(&mut self, info: &CloseInfo) -> impl Future<Output = ()> + Send {
        (**self).on_close(info)
    }

    fn on_reconnect(&mut self, attempt: u32, delay: Duration) -> impl Future<Output = ()> + Send {
        (**self).on_reconnect(attempt, delay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "json")]
    #[test]
    fn error_messages_give_their_hint() {
        let hint = |text: &str| error_message_hint(&Message::text(text.to_owned()));
        assert_eq!(
            hint(
                r#"{"type":"error","data":{"code":4005,"message":"slow","retry_after_ms":1500},"meta":{}}"#
            ),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            hint(r#"{"type":"error","data":{"code":4001,"message":"gone"}}"#),
            Some(None)
        );
        assert_eq!(hint(r#"{"type":"chat","data":{"text":"error"}}"#), None);
        assert_eq!(hint(r#"{"type":"error""#), None);
        assert_eq!(hint("plain error text"), None);
        assert_eq!(
            error_message_hint(&Message::binary(b"{\"type\":\"error\"}".to_vec())),
            None
        );
    }

    #[test]
    fn the_default_classifier_follows_the_contract() {
        let frame = |code: u16| {
            CloseReason::Frame(tether_proto::CloseFrame::new(
                CloseCode::new(code).expect("sendable"),
                "",
            ))
        };
        let closed = |code: u16| CloseInfo::new(Side::Remote, frame(code));
        let advice = |info: &CloseInfo, hint| {
            Disconnect {
                error: None,
                close: Some(info),
                hint,
                was_open: true,
            }
            .default_advice()
        };
        for code in [1000, 1002, 1003, 1007, 1008, 1009, 1010, 4003, 4004, 4100] {
            assert_eq!(advice(&closed(code), None), Advice::Stop, "{code}");
        }
        for code in [1001, 1011, 1012, 1013, 1014] {
            assert_eq!(
                advice(&closed(code), None),
                Advice::Reconnect { after: None },
                "{code}"
            );
        }
        let hint = Some(Duration::from_millis(700));
        assert_eq!(
            advice(&closed(1013), hint),
            Advice::Reconnect { after: hint }
        );
        // The application's own close stops, whatever its code.
        let ours = CloseInfo::new(Side::Local, frame(1001));
        assert_eq!(advice(&ours, None), Advice::Stop);
        let late = Error::timeout(TimeoutPhase::Close);
        let unanswered = Disconnect {
            error: Some(&late),
            close: Some(&ours),
            hint: None,
            was_open: true,
        };
        assert!(unanswered.is_local_close());
        assert_eq!(unanswered.default_advice(), Advice::Stop);
        // A close the client made on its own (a missing pong) reconnects.
        let pong = Error::timeout(TimeoutPhase::Pong);
        let heartbeat = CloseInfo::new(Side::Local, frame(1011));
        let missing_pong = Disconnect {
            error: Some(&pong),
            close: Some(&heartbeat),
            hint: None,
            was_open: true,
        };
        assert!(!missing_pong.is_local_close());
        assert_eq!(
            missing_pong.default_advice(),
            Advice::Reconnect { after: None }
        );
        let abnormal = CloseInfo::new(Side::Remote, CloseReason::Abnormal);
        assert_eq!(advice(&abnormal, None), Advice::Reconnect { after: None });
        for (error, expected) in [
            (Error::timeout(TimeoutPhase::Connect), true),
            (
                Error::io(std::io::ErrorKind::ConnectionRefused.into()),
                true,
            ),
            (Error::abnormal_closure(), true),
            (Error::tls("bad certificate", None), false),
            (Error::address("malformed", None), false),
        ] {
            let advice = Disconnect {
                error: Some(&error),
                close: None,
                hint: None,
                was_open: false,
            }
            .default_advice();
            assert_eq!(advice != Advice::Stop, expected, "{error}");
        }
    }
}
