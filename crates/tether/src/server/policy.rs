//! The one error policy: how an error outcome becomes what goes on the wire.
//!
//! [`deliver`] is the only place that turns an [`Outcome`] (a close, an application error,
//! an internal failure) into frames: an error message, a close frame, or both. Everything
//! that reports or closes on the server calls it: `Socket::send_error`, `Socket::report`,
//! the rate limiter, and the result of a handler. A fatal code closes exactly once, and a
//! code that may not be sent becomes 1011 here ([`close_frame`]) and nowhere else.

use tether_proto::{CloseCode, CloseFrame, Message, Reason};

use super::app_error::{AppError, Outcome};
use super::context::ConnContext;
use crate::codes::Severity;
use crate::error::Error;
use crate::error_message::ErrorMessage;
use crate::transport::Sender;

/// The generic reason sent with 1011 when a handler fails: nothing internal reaches clients.
pub(crate) const INTERNAL_REASON: &str = "internal error";

/// Whether the connection goes on after the outcome was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Then {
    /// Keep it open unless the outcome itself closes it (a close, a fatal code, an internal
    /// failure).
    KeepOpen,
    /// Close it in any case: the handler has returned.
    Close,
}

/// The close frame for `code` and `reason`. A code that may not be sent (1005, 1006, below
/// 1000, 5000, ...) becomes 1011 with the generic reason: the peer never sees it.
pub(crate) fn close_frame(code: u16, reason: impl Into<Reason>) -> CloseFrame {
    match CloseCode::new(code) {
        Ok(code) if code != CloseCode::INTERNAL_ERROR => CloseFrame::new(code, reason),
        _ => internal_close(),
    }
}

/// 1011 with the generic reason.
pub(crate) fn internal_close() -> CloseFrame {
    CloseFrame::new(
        CloseCode::INTERNAL_ERROR,
        Reason::from_static(INTERNAL_REASON),
    )
}

/// Puts `outcome` on the wire: see the module documentation. `detail` is logged (never sent)
/// for an internal failure. Returns the close frame sent, if the outcome closed.
///
/// # Errors
/// Sending the error message or the close failed (the connection is ending).
pub(crate) async fn deliver(
    sender: &Sender,
    ctx: &ConnContext,
    outcome: Outcome,
    then: Then,
    detail: impl FnOnce() -> String,
) -> Result<Option<CloseFrame>, Error> {
    let close = match outcome {
        Outcome::Close(close) => {
            tracing::debug!(code = close.code().as_u16(), "closing as the handler asked");
            Some(close.frame().clone())
        }
        Outcome::Internal => {
            log_internal(ctx, &detail());
            Some(internal_close())
        }
        Outcome::Message(error) if sender.is_closed() => {
            tracing::debug!(
                code = error.code(),
                "an application error after the close; not sent"
            );
            None
        }
        Outcome::Message(error) => {
            let registered = ctx.settings.codes.get(error.code());
            let fatal = registered.is_some_and(|code| code.severity == Severity::Fatal);
            sender.send(Message::text(error_json(&error))).await?;
            tracing::debug!(code = error.code(), fatal, "sent an error message");
            (fatal || then == Then::Close).then(|| close_frame(error.code(), error.message()))
        }
    };
    let close = match (close, then) {
        (Some(frame), _) => Some(frame),
        (None, Then::Close) => Some(CloseFrame::new(CloseCode::NORMAL, "")),
        (None, Then::KeepOpen) => None,
    };
    if let Some(frame) = &close {
        sender.close_frame(frame.clone()).await?;
    }
    Ok(close)
}

/// The structured error message for `error`, in the reference format.
fn error_json(error: &AppError) -> String {
    let mut message = ErrorMessage::answering(error.code(), error.message(), error.request_id());
    if let Some(delay) = error.retry_after() {
        message = message.with_retry_after(delay);
    }
    message.to_json()
}

/// Logs an internal failure with its context; the client only ever sees 1011.
pub(crate) fn log_internal(ctx: &ConnContext, detail: &str) {
    tracing::error!(
        connection = ctx.id,
        peer = %ctx.peer,
        route = %ctx.route,
        error = detail,
        "handler failed; closing with 1011"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsendable_codes_and_5000_close_with_1011_and_the_generic_reason() {
        for code in [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 1011] {
            let frame = close_frame(code, "secret detail");
            assert_eq!(frame.code, CloseCode::INTERNAL_ERROR, "{code}");
            assert_eq!(frame.reason.as_str(), INTERNAL_REASON, "{code}");
        }
        let frame = close_frame(4003, "Token expired");
        assert_eq!(frame.code.as_u16(), 4003);
        assert_eq!(frame.reason.as_str(), "Token expired");
    }
}
