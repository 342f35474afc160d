//! The reconnecting runner, Tether's `WebSocketApp.run_forever`: [`Runner`] keeps a client
//! connection alive across failures with exponential backoff and full jitter ([`Reconnect`],
//! [`Backoff`]), decides after each disconnect whether to try again ([`Disconnect`], the
//! retry advice of [`codes`](crate::codes)), and reports what happens as a stream of
//! [`Event`]s or to an [`EventHandler`]. A [`StopHandle`] ends it from another task.
//!
//! - `mod.rs`: the [`Runner`] state machine and [`StopHandle`];
//! - `disconnect`: [`Disconnect`] and the default classifier;
//! - `event`: [`Event`] and [`EventHandler`].

mod disconnect;
mod event;

pub use disconnect::Disconnect;
pub use event::{Event, EventHandler};

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tether_proto::{CloseCode, Side};
use tokio::sync::watch;
use tokio::time::Instant;

use super::backoff::{Backoff, Reconnect};
use super::builder::ClientBuilder;
use super::config::ClientConfig;
use super::connect::connect_with;
use crate::codes::Advice;
use crate::error::{Error, TimeoutPhase};
use crate::transport::{CloseInfo, CloseReason, Sender, WebSocket};

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
        let (stop, stopped) = watch::channel(false);
        Self {
            url: url.into(),
            config: client.config().clone(),
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
                            if let Some(hint) = crate::error_message::retry_hint(&message) {
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
        let disconnect = Disconnect::new(error.as_ref(), close.as_ref(), hint, was_open);
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
