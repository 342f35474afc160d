//! The error-code registry and the retry advice: one vocabulary for server, client, CLI and
//! docs.
//!
//! Application error codes (4000-4999, plus 5000 for internal errors) travel in structured
//! error messages ([`crate::error_message::ErrorMessage`]) and, for fatal ones, as the close
//! code. Each registered code says whether the connection survives it ([`Severity`]) and
//! whether a client should retry ([`Retry`]). [`retry_advice`] turns how a connection ended
//! into what a client should do next, following the standard codes, the registry, and the
//! HTTP status of a refused handshake.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use tether_proto::{CloseCode, CloseReason};

/// What an error does to the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Send the error message and keep the connection open.
    Recoverable,
    /// Send the error message, then close: with the same code for 4000-4999, with 1011 for
    /// 5000 (which is a message code only, never a close code).
    Fatal,
}

/// Whether a client should try again after this error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Retry {
    /// Retrying cannot help until something changes (credentials, the request itself).
    Never,
    /// Retry, after at least this long when a duration is given.
    After(Option<Duration>),
}

/// A registered application error code.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorCode {
    /// The numeric code: 4000-4999, or 5000 for internal errors.
    pub code: u16,
    /// A short name, e.g. `"not found"`.
    pub name: &'static str,
    /// The default message sent when the application gives none, e.g. `"Room not found"`.
    pub default_message: &'static str,
    /// What the error does to the connection.
    pub severity: Severity,
    /// Whether a client should retry.
    pub retry: Retry,
}

impl ErrorCode {
    /// 4000: bad request (malformed JSON, missing fields). Recoverable, no retry.
    pub const BAD_REQUEST: u16 = 4000;
    /// 4001: not found (room, user or resource). Recoverable, no retry.
    pub const NOT_FOUND: u16 = 4001;
    /// 4002: invalid action (e.g. speaking in a closed room). Recoverable, no retry.
    pub const INVALID_ACTION: u16 = 4002;
    /// 4003: unauthorized (token missing or expired). Fatal, no retry without new credentials.
    pub const UNAUTHORIZED: u16 = 4003;
    /// 4004: forbidden (the user lacks permission). Recoverable, no retry.
    pub const FORBIDDEN: u16 = 4004;
    /// 4005: rate limited. Recoverable, retry after the hint.
    pub const RATE_LIMITED: u16 = 4005;
    /// 5000: internal server error. A message code only: as a close it is 1011.
    pub const INTERNAL: u16 = 5000;

    /// A new code description.
    pub const fn new(
        code: u16,
        name: &'static str,
        default_message: &'static str,
        severity: Severity,
        retry: Retry,
    ) -> Self {
        Self {
            code,
            name,
            default_message,
            severity,
            retry,
        }
    }

    /// The close code a fatal error of this code closes with: the code itself for
    /// 4000-4999, 1011 for 5000.
    pub fn close_code(&self) -> CloseCode {
        CloseCode::new(self.code).unwrap_or(CloseCode::INTERNAL_ERROR)
    }
}

/// Why a code could not be registered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistryError {
    /// Application codes are 4000-4999 (5000 is reserved for internal errors).
    OutOfRange(u16),
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange(code) => {
                write!(f, "application error codes are 4000-4999: found {code}")
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// The error codes a server uses and its clients are told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    codes: BTreeMap<u16, ErrorCode>,
}

impl Default for Registry {
    /// The default codes: 4000 bad request, 4001 not found, 4002 invalid action, 4003
    /// unauthorized (fatal), 4004 forbidden, 4005 rate limited, 5000 internal error.
    fn default() -> Self {
        use Retry::{After, Never};
        use Severity::{Fatal, Recoverable};
        let defaults = [
            ErrorCode::new(
                ErrorCode::BAD_REQUEST,
                "bad request",
                "Bad request",
                Recoverable,
                Never,
            ),
            ErrorCode::new(
                ErrorCode::NOT_FOUND,
                "not found",
                "Not found",
                Recoverable,
                Never,
            ),
            ErrorCode::new(
                ErrorCode::INVALID_ACTION,
                "invalid action",
                "Invalid action",
                Recoverable,
                Never,
            ),
            ErrorCode::new(
                ErrorCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                Fatal,
                Never,
            ),
            ErrorCode::new(
                ErrorCode::FORBIDDEN,
                "forbidden",
                "Forbidden",
                Recoverable,
                Never,
            ),
            ErrorCode::new(
                ErrorCode::RATE_LIMITED,
                "rate limited",
                "Too many requests",
                Recoverable,
                After(None),
            ),
            ErrorCode::new(
                ErrorCode::INTERNAL,
                "internal error",
                "Internal server error",
                Fatal,
                After(None),
            ),
        ];
        Self {
            codes: defaults.into_iter().map(|code| (code.code, code)).collect(),
        }
    }
}

impl Registry {
    /// Registers (or replaces) an application code.
    ///
    /// # Errors
    /// [`RegistryError::OutOfRange`] for a code outside 4000-4999.
    pub fn register(&mut self, code: ErrorCode) -> Result<&mut Self, RegistryError> {
        if !(4000..=4999).contains(&code.code) {
            return Err(RegistryError::OutOfRange(code.code));
        }
        self.codes.insert(code.code, code);
        Ok(self)
    }

    /// The description of `code`, if registered.
    pub fn get(&self, code: u16) -> Option<&ErrorCode> {
        self.codes.get(&code)
    }

    /// Every registered code, in numeric order.
    pub fn iter(&self) -> impl Iterator<Item = &ErrorCode> {
        self.codes.values()
    }
}

/// What a client should do after a connection ended or a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// Do not reconnect: the end was normal, or trying again cannot succeed as things are.
    Stop,
    /// Reconnect with backoff; wait at least `after` when the peer gave a hint.
    Reconnect {
        /// The peer's hint (`Retry-After`, `retry_after_ms`), if any.
        after: Option<Duration>,
    },
}

/// How a connection ended, as far as the retry advice is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ending {
    /// A close frame with this code.
    Closed(CloseCode),
    /// A close frame without a code (1005 as a state).
    NoStatus,
    /// The transport ended without a close frame (1006 as a state), or could not be
    /// established (refused, reset, timed out).
    Abnormal,
    /// The opening handshake was answered with this HTTP status, and this `Retry-After`.
    Refused {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` hint, if the server sent one.
        retry_after: Option<Duration>,
    },
}

impl Ending {
    /// The ending of a connection that closed as `reason` says.
    pub fn of(reason: &CloseReason) -> Self {
        match reason {
            CloseReason::Frame(frame) => Self::Closed(frame.code),
            CloseReason::NoStatus => Self::NoStatus,
            _ => Self::Abnormal,
        }
    }
}

/// The retry advice shared by the client runner and documented for other clients.
///
/// - A normal close (1000) and the terminal codes 1002, 1003, 1007, 1008, 1009 and 1010 stop:
///   the peer will refuse the same thing again.
/// - 1001, 1011, 1012, 1013, 1014, a close without status and an abnormal end reconnect.
/// - Application codes follow the registry (4003 and 4004 stop, 4005 waits for its hint);
///   an unregistered application code stops, and other 3000-4999 codes reconnect only if
///   registered so.
/// - A refused handshake reconnects on 5xx, 408 and 429 (honouring `Retry-After`) and stops on
///   every other status.
///
/// `hint` is a retry delay the server gave in an error message (`retry_after_ms`), if any.
pub fn retry_advice(ending: Ending, registry: &Registry, hint: Option<Duration>) -> Advice {
    let reconnect = |after: Option<Duration>| Advice::Reconnect {
        after: after.or(hint),
    };
    match ending {
        Ending::NoStatus | Ending::Abnormal => reconnect(None),
        Ending::Closed(code) => match code.as_u16() {
            1001 | 1011..=1014 => reconnect(None),
            1000 | 1002..=1010 => Advice::Stop,
            other => match registry.get(other).map(|code| code.retry) {
                Some(Retry::After(after)) => reconnect(after),
                Some(Retry::Never) | None => Advice::Stop,
            },
        },
        Ending::Refused {
            status,
            retry_after,
        } => match status {
            408 | 429 | 500..=599 => reconnect(retry_after),
            _ => Advice::Stop,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn closed(code: u16) -> Ending {
        Ending::Closed(CloseCode::new(code).expect("sendable"))
    }

    #[test]
    fn standard_close_codes_follow_the_contract() {
        let registry = Registry::default();
        for code in [1000, 1002, 1003, 1007, 1008, 1009, 1010] {
            assert_eq!(
                retry_advice(closed(code), &registry, None),
                Advice::Stop,
                "{code}"
            );
        }
        for code in [1001, 1011, 1012, 1013, 1014] {
            assert_eq!(
                retry_advice(closed(code), &registry, None),
                Advice::Reconnect { after: None },
                "{code}"
            );
        }
        assert!(matches!(
            retry_advice(Ending::Abnormal, &registry, None),
            Advice::Reconnect { .. }
        ));
        assert!(matches!(
            retry_advice(Ending::NoStatus, &registry, None),
            Advice::Reconnect { .. }
        ));
    }

    #[test]
    fn application_codes_follow_the_registry() {
        let mut registry = Registry::default();
        assert_eq!(retry_advice(closed(4003), &registry, None), Advice::Stop);
        assert_eq!(retry_advice(closed(4004), &registry, None), Advice::Stop);
        let hint = Some(Duration::from_millis(1500));
        assert_eq!(
            retry_advice(closed(4005), &registry, hint),
            Advice::Reconnect { after: hint }
        );
        // Unregistered: stop. Registered as retryable: reconnect after its delay.
        assert_eq!(retry_advice(closed(4100), &registry, None), Advice::Stop);
        let delay = Some(Duration::from_secs(3));
        registry
            .register(ErrorCode::new(
                4100,
                "maintenance",
                "Back soon",
                Severity::Fatal,
                Retry::After(delay),
            ))
            .expect("in range");
        assert_eq!(
            retry_advice(closed(4100), &registry, None),
            Advice::Reconnect { after: delay }
        );
    }

    #[test]
    fn refused_handshakes_retry_only_on_transient_statuses() {
        let registry = Registry::default();
        let wait = Some(Duration::from_secs(1));
        for status in [408, 429, 500, 502, 503, 599] {
            assert_eq!(
                retry_advice(
                    Ending::Refused {
                        status,
                        retry_after: wait
                    },
                    &registry,
                    None
                ),
                Advice::Reconnect { after: wait },
                "{status}"
            );
        }
        for status in [400, 401, 403, 404, 405, 426, 431] {
            let ending = Ending::Refused {
                status,
                retry_after: None,
            };
            assert_eq!(
                retry_advice(ending, &registry, None),
                Advice::Stop,
                "{status}"
            );
        }
    }

    #[test]
    fn the_default_registry_matches_the_reference_table() {
        let registry = Registry::default();
        let codes: Vec<u16> = registry.iter().map(|code| code.code).collect();
        assert_eq!(codes, [4000, 4001, 4002, 4003, 4004, 4005, 5000]);
        let unauthorized = registry.get(4003).expect("default");
        assert_eq!(unauthorized.severity, Severity::Fatal);
        assert_eq!(unauthorized.close_code().as_u16(), 4003);
        let internal = registry.get(5000).expect("default");
        assert_eq!(internal.close_code(), CloseCode::INTERNAL_ERROR);
        assert_eq!(
            registry.get(4001).map(|code| code.severity),
            Some(Severity::Recoverable)
        );
    }

    #[test]
    fn only_application_codes_can_be_registered() {
        let mut registry = Registry::default();
        for code in [999, 1000, 3999, 5000, 5001] {
            let error = registry
                .register(ErrorCode::new(
                    code,
                    "x",
                    "x",
                    Severity::Recoverable,
                    Retry::Never,
                ))
                .expect_err("out of range");
            assert_eq!(error, RegistryError::OutOfRange(code));
        }
    }
}
