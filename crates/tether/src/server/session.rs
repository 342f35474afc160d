//! One upgraded connection's life on the server: the handler runs with panics caught, its
//! result becomes the close the client sees (the error contract), and the close handshake is
//! finished. Both ways in share it: Tether's own HTTP/1.1 handshake (`serve.rs`) and a
//! hyper or axum upgrade (`service.rs`, `crate::axum`).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context, Poll};

use tether_proto::{CloseCode, CloseFrame};

use super::app_error::{BoxError, error_chain};
use super::context::ConnContext;
use super::policy::{Then, deliver, internal_close, log_internal};
use crate::error::{Error, ErrorKind};
use crate::transport::Sender;

pub(super) type HandlerOutcome = Result<Result<(), BoxError>, Box<dyn Any + Send>>;

/// Turns the handler's result into the close the client sees, then finishes the close
/// handshake.
pub(super) async fn finish(ctx: &Arc<ConnContext>, sender: &Sender, outcome: HandlerOutcome) {
    let delivered = match outcome {
        // A handler that returned leaves with 1000, unless the connection is closing already.
        Ok(Ok(())) if sender.is_closed() => Ok(()),
        Ok(Ok(())) => {
            let normal = CloseFrame::new(CloseCode::NORMAL, "");
            sender.close_frame(normal).await
        }
        Ok(Err(error)) => match error.downcast_ref::<Error>() {
            // The handler passed on the end of the connection: nothing left to say.
            Some(transport) if sender.is_closed() && transport.kind() != ErrorKind::Application => {
                log_disconnect(transport);
                Ok(())
            }
            _ => {
                let outcome = ctx.settings.error_handlers.outcome(&*error);
                deliver(sender, ctx, outcome, Then::Close, || error_chain(&*error))
                    .await
                    .map(drop)
            }
        },
        Err(panic) => {
            log_internal(ctx, &format!("panic: {}", panic_message(&*panic)));
            sender.close_frame(internal_close()).await
        }
    };
    if let Err(error) = delivered {
        tracing::debug!(error = %format_args!("{error:#}"), "the close could not be sent");
    }
    let parked = ctx
        .parked
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take();
    if let Some(mut reader) = parked {
        while let Some(next) = reader.recv().await {
            if next.is_err() {
                break;
            }
        }
        if let Some(info) = reader.close_info() {
            tracing::debug!(
                code = info.reason.display_code(),
                reason = info.reason.reason(),
                initiated_by = ?info.initiated_by,
                "connection closed"
            );
        }
    }
}

/// Logs a disconnect the handler passed on: warn for the unusual ones.
fn log_disconnect(error: &Error) {
    match error.kind() {
        ErrorKind::ConnectionClosed => {
            let code = error
                .close_info()
                .map_or(1006, |info| info.reason.display_code());
            if code == 1000 || code == 1001 {
                tracing::debug!(code, "client disconnected");
            } else {
                tracing::warn!(code, error = %format_args!("{error:#}"), "client disconnected unusually");
            }
        }
        ErrorKind::Timeout => {
            tracing::debug!(error = %format_args!("{error:#}"), "connection timed out")
        }
        _ => tracing::warn!(error = %format_args!("{error:#}"), "connection failed"),
    }
}

pub(super) fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

/// Runs a handler future, turning a panic into a value.
pub(super) struct CatchUnwind<F>(pub(super) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *inner).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}
