//! Handlers and extractors.
//!
//! A handler is an `async fn(Socket, A, B, ...) -> Result<(), E>` where each argument after
//! the socket is an extractor ([`FromRequest`]): path parameters, the query, the headers, the
//! peer address, the app state. Extractors run *before* the upgrade, on the request, so an
//! extractor that fails rejects the handshake with a real HTTP status ([`Reject`]).

use std::future::Future;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::pin::Pin;

use tether_proto::handshake::Request;

use super::app_error::BoxError;
use super::router::{PathParams, parse_query};
use super::{Reject, Socket};

/// What extractors and guards see of an upgrade request.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestContext<'a, S> {
    /// The parsed upgrade request.
    pub request: &'a Request,
    /// The route's path parameters.
    pub params: &'a PathParams,
    /// The matched route pattern, e.g. `/ws/rooms/{room}`.
    pub route: &'a str,
    /// The client's address.
    pub peer: SocketAddr,
    /// The server's connection id for this connection (also in its log lines).
    pub connection_id: u64,
    /// The app state.
    pub state: &'a S,
}

impl<S> RequestContext<'_, S> {
    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        parse_query(self.request.path())
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The first value of header `name` (case-insensitive) as text, when it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request
            .header(name)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    /// The bearer token from `Authorization: Bearer ...`, or else from the `token` query
    /// parameter (browsers cannot set headers on a WebSocket). An empty token is no token.
    pub fn bearer_token(&self) -> Option<String> {
        let header = self.header("authorization").and_then(|value| {
            let (scheme, token) = value.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
        header
            .or_else(|| self.query("token"))
            .filter(|token| !token.is_empty())
    }
}

/// A value taken from the upgrade request for a handler argument.
pub trait FromRequest<S>: Sized + Send + 'static {
    /// Extracts the value, or rejects the handshake.
    ///
    /// # Errors
    /// The rejection to answer the upgrade request with.
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject>;
}

/// The route's path parameters (`/ws/rooms/{room}` -> `room`).
#[derive(Debug, Clone)]
pub struct Path(pub PathParams);

impl<S> FromRequest<S> for Path {
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject> {
        Ok(Self(cx.params.clone()))
    }
}

/// The query parameters, percent-decoded, in order.
#[derive(Debug, Clone, Default)]
pub struct Query(pub Vec<(String, String)>);

impl Query {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

impl<S> FromRequest<S> for Query {
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject> {
        Ok(Self(parse_query(cx.request.path())))
    }
}

/// The request headers, in order (names as sent).
#[derive(Debug, Clone, Default)]
pub struct Headers(pub Vec<(String, Vec<u8>)>);

impl Headers {
    /// The first value of `name` (case-insensitive) as text.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

impl<S> FromRequest<S> for Headers {
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject> {
        Ok(Self(cx.request.headers().to_vec()))
    }
}

/// The client's address.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

impl<S> FromRequest<S> for Peer {
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject> {
        Ok(Self(cx.peer))
    }
}

/// A clone of the app state (put an `Arc` in it for shared, mutable parts).
#[derive(Debug, Clone)]
pub struct State<S>(pub S);

impl<S: Clone + Send + Sync + 'static> FromRequest<S> for State<S> {
    fn from_request(cx: &RequestContext<'_, S>) -> Result<Self, Reject> {
        Ok(Self(cx.state.clone()))
    }
}

/// The future a prepared handler runs.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;

/// A handler's future, its error made a [`BoxError`]. Made from the future the handler
/// returned, boxed as it is: an `async` wrapper would hold that future twice (once captured,
/// once awaited), and it lives as long as the connection.
pub(crate) fn handler_future<F, E>(future: F) -> HandlerFuture
where
    F: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    Box::pin(IntoBoxError(Box::pin(future)))
}

/// See [`handler_future`].
struct IntoBoxError<F>(Pin<Box<F>>);

impl<F, E> Future for IntoBoxError<F>
where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxError>,
{
    type Output = Result<(), BoxError>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.0
            .as_mut()
            .poll(cx)
            .map(|result| result.map_err(Into::into))
    }
}

/// A handler with its arguments extracted, waiting for the upgraded socket.
pub(crate) type Prepared = Box<dyn FnOnce(Socket) -> HandlerFuture + Send>;

/// An async function usable as a route handler: `Fn(Socket, extractors...) -> Future`
/// returning `Result<(), E>` with `E` convertible to a boxed error.
///
/// Implemented for functions and closures taking the socket and up to six extractors.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a Tether route handler",
    label = "expected an `async fn(Socket, extractors...) -> Result<(), E>`",
    note = "a handler takes `tether::server::Socket` first, then up to six extractors \
            (`Path`, `Query`, `Headers`, `Peer`, `State<S>` or your own `FromRequest`), returns \
            `Result<(), E>` where `E` converts into `Box<dyn Error + Send + Sync>` (such as \
            `tether::Error`, `AppError` or `CloseError`), and its future is `Send + 'static`"
)]
pub trait Handler<S, Args>: Clone + Send + Sync + 'static {
    /// Runs the extractors on the request, before the upgrade.
    #[doc(hidden)]
    fn prepare(&self, cx: &RequestContext<'_, S>) -> Result<PreparedHandler, Reject>;
}

/// A handler with its arguments extracted (opaque).
#[doc(hidden)]
pub struct PreparedHandler(pub(crate) Prepared);

impl std::fmt::Debug for PreparedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedHandler")
    }
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        impl<S, F, Fut, E, $($arg,)*> Handler<S, ($($arg,)*)> for F
        where
            F: Fn(Socket, $($arg,)*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = Result<(), E>> + Send + 'static,
            E: Into<BoxError>,
            $($arg: FromRequest<S>,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn prepare(&self, cx: &RequestContext<'_, S>) -> Result<PreparedHandler, Reject> {
                $(let $arg = $arg::from_request(cx)?;)*
                let handler = self.clone();
                Ok(PreparedHandler(Box::new(move |socket| {
                    handler_future(handler(socket, $($arg,)*))
                })))
            }
        }
    };
}

impl_handler!();
impl_handler!(A);
impl_handler!(A, B);
impl_handler!(A, B, C);
impl_handler!(A, B, C, D);
impl_handler!(A, B, C, D, E1);
impl_handler!(A, B, C, D, E1, F1);

/// A handler with its argument types erased, stored in the route table.
pub(crate) trait ErasedHandler<S>: Send + Sync {
    fn prepare(&self, cx: &RequestContext<'_, S>) -> Result<PreparedHandler, Reject>;
}

pub(crate) struct HandlerBox<H, Args> {
    handler: H,
    _args: PhantomData<fn() -> Args>,
}

impl<H, Args> HandlerBox<H, Args> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            _args: PhantomData,
        }
    }
}

impl<S, H, Args> ErasedHandler<S> for HandlerBox<H, Args>
where
    H: Handler<S, Args>,
    Args: 'static,
{
    fn prepare(&self, cx: &RequestContext<'_, S>) -> Result<PreparedHandler, Reject> {
        self.handler.prepare(cx)
    }
}
