//! Application errors and how handler errors map to what the client sees.
//!
//! A handler returns `Result<(), E>`. The error becomes one [`Outcome`]:
//! - a [`CloseError`] closes with exactly its code and reason;
//! - an [`AppError`] becomes a structured error message (and, for a fatal code, a close);
//! - a type with a handler registered on the server ([`ErrorHandlers`]) becomes whatever
//!   that handler decides ([`ErrorAction`]);
//! - anything else is internal: 1011 with a generic reason, details to the log only.
//!
//! The error's `source()` chain is searched too, so an application error wrapped in a context
//! type is still found.

use std::any::TypeId;
use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use crate::codes::ErrorCode;
use crate::server::CloseError;

/// The boxed error a handler's error is turned into.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// An application-level error: sent to the client as a structured error message
/// (`{"type":"error","data":{"code":..,"message":..},"meta":{..}}`).
///
/// Whether the connection survives depends on the code's [`Severity`](crate::codes::Severity)
/// in the server's registry: recoverable codes keep it open, fatal codes close it with the
/// same code (1011 for 5000). The message is shown to people: never put internals in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppError {
    code: u16,
    message: String,
    request_id: Option<String>,
    retry_after: Option<Duration>,
}

impl AppError {
    /// An error with `code` (4000-4999, or 5000) and a human-readable `message`.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            request_id: None,
            retry_after: None,
        }
    }

    /// 4000 bad request: malformed JSON or a missing field.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::BAD_REQUEST, message)
    }

    /// 4001 not found: a room, user or resource that does not exist.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NOT_FOUND, message)
    }

    /// 4002 invalid action: e.g. speaking in a closed room.
    pub fn invalid_action(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::INVALID_ACTION, message)
    }

    /// 4003 unauthorized: a missing or expired token (fatal by default).
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UNAUTHORIZED, message)
    }

    /// 4004 forbidden: the user lacks permission.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::FORBIDDEN, message)
    }

    /// 4005 rate limited, with the delay after which a retry may succeed.
    pub fn rate_limited(message: impl Into<String>, retry_after: Duration) -> Self {
        Self::new(ErrorCode::RATE_LIMITED, message).with_retry_after(retry_after)
    }

    /// This error answering the client message whose `id` was `request_id`.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = Some(request_id.into());
        self
    }

    /// This error with a retry hint (`retry_after_ms` in the message).
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The error code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The id of the client message that caused the error, when known.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The retry hint.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

impl fmt::Display for AppError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "application error {}: {}", self.code, self.message)
    }
}

impl StdError for AppError {}

/// So a handler whose error type is `tether::Error` can return an `AppError` with `?`.
impl From<AppError> for crate::Error {
    fn from(error: AppError) -> Self {
        Self::application(Box::new(error))
    }
}

/// What a registered error handler decides for an error of its type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorAction {
    /// Close the connection with this code and reason.
    Close(CloseError),
    /// Send this structured error message (closing after it when its code is fatal).
    Message(AppError),
    /// Treat the error as internal: 1011 with a generic reason, details logged.
    Internal,
}

impl From<CloseError> for ErrorAction {
    fn from(error: CloseError) -> Self {
        Self::Close(error)
    }
}

impl From<AppError> for ErrorAction {
    fn from(error: AppError) -> Self {
        Self::Message(error)
    }
}

/// How an error maps to what the client sees; see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Close(CloseError),
    Message(AppError),
    Internal,
}

type Mapper = Box<dyn Fn(&(dyn StdError + 'static)) -> Option<ErrorAction> + Send + Sync>;

/// Error handlers registered by type, like `app.exception_handler(CustomException)`.
#[derive(Default)]
pub(crate) struct ErrorHandlers {
    handlers: Vec<(TypeId, Mapper)>,
}

impl fmt::Debug for ErrorHandlers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorHandlers")
            .field("count", &self.handlers.len())
            .finish()
    }
}

impl ErrorHandlers {
    /// Registers `map` for errors of type `E`; a later registration for the same type wins.
    pub(crate) fn register<E, F>(&mut self, map: F)
    where
        E: StdError + 'static,
        F: Fn(&E) -> ErrorAction + Send + Sync + 'static,
    {
        let id = TypeId::of::<E>();
        self.handlers.retain(|(existing, _)| *existing != id);
        self.handlers.push((
            id,
            Box::new(move |error| error.downcast_ref::<E>().map(&map)),
        ));
    }

    /// The outcome for `error`: the first error in its chain that has a registered handler or
    /// is a [`CloseError`] or an [`AppError`] decides; otherwise it is internal.
    pub(crate) fn outcome(&self, error: &(dyn StdError + 'static)) -> Outcome {
        let mut next = Some(error);
        while let Some(mut current) = next {
            // An application error carried through `tether::Error` decides as itself.
            if let Some(inner) = current
                .downcast_ref::<crate::Error>()
                .and_then(crate::Error::as_application)
            {
                current = inner;
            }
            for (_, map) in &self.handlers {
                if let Some(action) = map(current) {
                    return match action {
                        ErrorAction::Close(close) => Outcome::Close(close),
                        ErrorAction::Message(message) => Outcome::Message(message),
                        ErrorAction::Internal => Outcome::Internal,
                    };
                }
            }
            if let Some(close) = current.downcast_ref::<CloseError>() {
                return Outcome::Close(close.clone());
            }
            if let Some(app) = current.downcast_ref::<AppError>() {
                return Outcome::Message(app.clone());
            }
            next = current.source();
        }
        Outcome::Internal
    }
}

/// The error and its chain on one line, for the log: `outer: cause: root cause`.
pub(crate) fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_proto::CloseCode;

    #[derive(Debug)]
    struct Custom;
    impl fmt::Display for Custom {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("custom")
        }
    }
    impl StdError for Custom {}

    #[derive(Debug)]
    struct Wrapper(Custom);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("while handling")
        }
    }
    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn registered_types_close_or_message_and_the_rest_is_internal() {
        let mut handlers = ErrorHandlers::default();
        let io = std::io::Error::other("disk on fire");
        assert_eq!(handlers.outcome(&io), Outcome::Internal);

        handlers.register::<Custom, _>(|_| {
            CloseError::new(CloseCode::POLICY_VIOLATION, "Custom exception").into()
        });
        let expected = Outcome::Close(CloseError::new(
            CloseCode::POLICY_VIOLATION,
            "Custom exception",
        ));
        assert_eq!(handlers.outcome(&Custom), expected);
        assert_eq!(handlers.outcome(&Wrapper(Custom)), expected);
        assert_eq!(error_chain(&Wrapper(Custom)), "while handling: custom");

        handlers.register::<Custom, _>(|_| AppError::not_found("gone").into());
        assert_eq!(
            handlers.outcome(&Custom),
            Outcome::Message(AppError::not_found("gone"))
        );
        assert_eq!(
            handlers.outcome(&AppError::bad_request("no type")),
            Outcome::Message(AppError::bad_request("no type"))
        );
        let close = CloseError::from_code(4001, "closing with 4001");
        assert_eq!(handlers.outcome(&close), Outcome::Close(close.clone()));
    }
}
