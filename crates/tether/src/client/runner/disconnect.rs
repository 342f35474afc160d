//! [`Disconnect`]: why the runner lost its connection, and the default classifier that turns
//! it into retry advice.

use std::sync::LazyLock;
use std::time::Duration;

use tether_proto::{CloseCode, Side};

use crate::codes::{Advice, Ending, Registry, retry_advice};
use crate::error::{Error, ErrorKind, TimeoutPhase};
use crate::transport::{CloseInfo, CloseReason};

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

    /// Whether the application closed the connection itself (through a [`Sender`](crate::Sender)):
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

impl<'a> Disconnect<'a> {
    pub(super) fn new(
        error: Option<&'a Error>,
        close: Option<&'a CloseInfo>,
        hint: Option<Duration>,
        was_open: bool,
    ) -> Self {
        Self {
            error,
            close,
            hint,
            was_open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
