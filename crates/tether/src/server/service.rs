//! `Server` behind another HTTP stack (feature `hyper`): a `tower::Service` and a hyper
//! `Service` that answer an upgrade request, an HTTP/1.1 `Upgrade` or an HTTP/2 extended
//! CONNECT (RFC 8441), with the server's routes, guards and extractors, then run the
//! connection on hyper's upgraded I/O with the same session as Tether's own listener.
//!
//! The pieces that turn an `http` request into Tether's upgrade [`Request`] and a decision
//! back into an `http` response are shared with the axum extractor (`crate::axum`).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Response, StatusCode, Version};
use http_body_util::Full;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tether_proto::Role;
use tether_proto::deflate::{DeflateParams, NegotiatedResponse};
use tether_proto::handshake::{
    HandshakeError, Request, validate_extended_connect, validate_request,
};

use super::accept::negotiate_deflate;
use super::http::{HttpRequest, HttpResponse};
use super::limits::CapPermit;
use super::serve::{Chosen, decide, plain_http, run_session};
use super::{Accept, Reject, Server};
use crate::transport::{WebSocket, next_connection_id};

/// The body of every response Tether gives to an HTTP stack: empty for an accepted
/// upgrade, the JSON error (or an HTTP route's answer) otherwise.
pub type ResponseBody = Full<Bytes>;

/// Headers an answer writes itself or that HTTP/2 forbids; extra headers with these names
/// are dropped.
const RESERVED: &[&str] = &[
    "connection",
    "content-length",
    "transfer-encoding",
    "keep-alive",
    "upgrade",
    "sec-websocket-accept",
    "sec-websocket-protocol",
];

/// The address handlers see when the HTTP stack put none in the request's extensions.
const UNKNOWN_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// The client's address: the `SocketAddr` the acceptor put in the request's extensions, or
/// `0.0.0.0:0` when there is none.
pub(crate) fn peer_of(parts: &http::request::Parts) -> SocketAddr {
    parts
        .extensions
        .get::<SocketAddr>()
        .copied()
        .unwrap_or(UNKNOWN_PEER)
}

/// The request as Tether's upgrade [`Request`], or why it is not an acceptable one.
pub(crate) fn upgrade_request(parts: &http::request::Parts) -> Result<Request, HandshakeError> {
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |target| target.as_str());
    let method = parts.method.as_str();
    match parts.version {
        Version::HTTP_2 => {
            let protocol = parts
                .extensions
                .get::<hyper::ext::Protocol>()
                .map(hyper::ext::Protocol::as_str);
            let authority = parts.uri.authority().map_or("", |a| a.as_str());
            validate_extended_connect(method, target, authority, protocol, headers)
        }
        Version::HTTP_11 => validate_request(method, target, 1, headers),
        Version::HTTP_10 => validate_request(method, target, 0, headers),
        other => Err(HandshakeError::UnsupportedHttpVersion {
            found: format!("{other:?}").into(),
        }),
    }
}

/// The request as a plain [`HttpRequest`], for the server's HTTP routes.
fn plain_request(parts: &http::request::Parts) -> HttpRequest {
    HttpRequest {
        method: parts.method.as_str().to_owned(),
        target: parts
            .uri
            .path_and_query()
            .map_or("/", |target| target.as_str())
            .to_owned(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
            .collect(),
    }
}

/// Adds `name: value` unless the name is reserved or either is not valid HTTP.
fn push_header(response: &mut Response<ResponseBody>, name: &str, value: &str) {
    if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name.trim())) {
        return;
    }
    if let (Ok(name), Ok(value)) = (
        HeaderName::from_bytes(name.trim().as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().append(name, value);
    }
}

/// A refusal or a plain HTTP answer as an `http` response. Over HTTP/1.1 it closes the
/// connection, as on Tether's own listener, and a 426 keeps its `Upgrade: websocket` (with
/// the `upgrade` connection option, RFC 9110 7.8); HTTP/2 has neither header.
pub(crate) fn http_response(answer: HttpResponse, version: Version) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() =
        StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if version <= Version::HTTP_11 {
        // As on Tether's own listener, an answer that is not an upgrade ends the connection.
        let close = HeaderValue::from_static("close");
        response
            .headers_mut()
            .insert(http::header::CONNECTION, close);
    }
    for (name, value) in &answer.headers {
        let upgrade = name.trim().eq_ignore_ascii_case("upgrade");
        if upgrade && version <= Version::HTTP_11 {
            let headers = response.headers_mut();
            headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
            let close = HeaderValue::from_static("upgrade, close");
            headers.insert(http::header::CONNECTION, close);
        }
        let content_type = name.trim().eq_ignore_ascii_case("content-type");
        if !(content_type && answer.content_type.is_some()) {
            push_header(&mut response, name, value);
        }
    }
    if let Some(content_type) = answer
        .content_type
        .and_then(|value| HeaderValue::from_str(&value).ok())
    {
        response
            .headers_mut()
            .insert(http::header::CONTENT_TYPE, content_type);
    }
    response
}

/// The answer accepting `request`: 101 with `Sec-WebSocket-Accept` over HTTP/1.1, 200 over
/// HTTP/2 (RFC 8441 section 5), with the chosen subprotocol and the decision's headers.
fn accept_response(
    request: &Request,
    accept: &Accept,
    deflate: Option<&NegotiatedResponse>,
) -> Response<ResponseBody> {
    let mut response = Response::new(Full::new(Bytes::new()));
    if !request.is_extended_connect() {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            http::header::CONNECTION,
            HeaderValue::from_static("upgrade"),
        );
        if let Ok(key) = HeaderValue::from_str(&request.accept_key()) {
            headers.insert(http::header::SEC_WEBSOCKET_ACCEPT, key);
        }
    }
    if let Some(protocol) = accept
        .protocol
        .as_deref()
        .and_then(|p| HeaderValue::from_str(p).ok())
    {
        response
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    if let Some(extensions) = deflate.and_then(|d| HeaderValue::from_str(&d.header).ok()) {
        response
            .headers_mut()
            .insert(http::header::SEC_WEBSOCKET_EXTENSIONS, extensions);
    }
    for (name, value) in &accept.headers {
        push_header(&mut response, name, value);
    }
    response
}

/// Why an accepted request could not be upgraded: the HTTP stack does not hand over its
/// connections (hyper without `with_upgrades`, or a test harness).
pub(crate) fn no_upgrade(version: Version) -> Response<ResponseBody> {
    tracing::error!(
        "the HTTP server gave no upgradable connection: serve hyper HTTP/1 connections \
         `with_upgrades()` and enable the extended CONNECT protocol for HTTP/2"
    );
    http_response(Reject::error(500, "Internal server error").into(), version)
}

/// What a connection needs to run once the HTTP stack hands over the upgraded I/O.
pub(crate) struct Pending {
    pub(crate) on_upgrade: OnUpgrade,
    pub(crate) chosen: Chosen,
    pub(crate) peer: SocketAddr,
    pub(crate) id: u64,
    pub(crate) permit: CapPermit,
}

impl<S: Clone + Send + Sync + 'static> Server<S> {
    /// Accepts `request` as `accept` says: negotiates permessage-deflate, spawns the
    /// connection (it waits, within the handshake timeout, for the HTTP stack to send the
    /// answer and hand over the I/O, then runs the session) and returns the answer.
    pub(crate) fn start_upgraded(
        &self,
        request: &Request,
        accept: Accept,
        pending: Pending,
    ) -> Response<ResponseBody> {
        let answer = negotiate_deflate(request, &self.parts().config.transport);
        let response = accept_response(request, &accept, answer.as_ref());
        let protocol = accept.protocol;
        let deflate: Option<DeflateParams> = answer.map(|answer| answer.params);
        let timeout = self.parts().config.handshake_timeout;
        let Pending {
            on_upgrade,
            chosen,
            peer,
            id,
            permit,
        } = pending;
        self.spawn_tracked(id, peer, move |inner, guard| async move {
            let _guard = guard;
            let io = match tokio::time::timeout(timeout, on_upgrade).await {
                Ok(Ok(io)) => io,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "the client left before the upgrade");
                    return;
                }
                Err(_) => {
                    tracing::debug!("the upgrade did not happen in time; dropped");
                    return;
                }
            };
            let ws = WebSocket::new(
                Box::new(TokioIo::new(io)),
                Role::Server,
                Arc::clone(&chosen.config),
                BytesMut::new(),
                id,
            )
            .with_protocol(protocol)
            .with_deflate(deflate);
            run_session(&inner, ws, chosen, peer).await;
            drop(permit);
        });
        response
    }

    /// Answers one request from an HTTP stack: an upgrade this server accepts (the
    /// connection then runs in its own task), a refusal, or a plain HTTP route's answer.
    fn respond<B>(&self, request: http::Request<B>) -> Response<ResponseBody> {
        let (mut parts, _body) = request.into_parts();
        let version = parts.version;
        let server = self.parts();
        let upgrade = match upgrade_request(&parts) {
            Ok(upgrade) => upgrade,
            Err(error) => {
                let answer = plain_http(server, &plain_request(&parts))
                    .unwrap_or_else(|| Reject::from_handshake(&error).into());
                return http_response(answer, version);
            }
        };
        if self.is_shutting_down() {
            return http_response(Reject::error(503, "Server shutting down").into(), version);
        }
        let peer = peer_of(&parts);
        let id = next_connection_id();
        let permit = match server.caps.acquire(peer.ip()) {
            Ok(permit) => permit,
            Err(reject) => return http_response(reject.into(), version),
        };
        let (accept, chosen) = match decide(server, &upgrade, peer, id) {
            Ok(decided) => decided,
            Err(reject) => {
                tracing::debug!(
                    status = reject.status,
                    path = upgrade.path(),
                    "handshake refused"
                );
                return http_response(reject.into(), version);
            }
        };
        let Some(on_upgrade) = parts.extensions.remove::<OnUpgrade>() else {
            return no_upgrade(version);
        };
        let pending = Pending {
            on_upgrade,
            chosen,
            peer,
            id,
            permit,
        };
        self.start_upgraded(&upgrade, accept, pending)
    }
}

/// `Server` as a `tower::Service`: mount it in axum with `Router::route_service` (or
/// `fallback_service`), or in any tower stack. Every request is answered at once: an
/// upgrade with 101 (HTTP/1.1) or 200 (HTTP/2 extended CONNECT), a refusal with its status
/// and JSON body, a plain request with the server's HTTP routes or a 404. Handlers see the
/// peer address when the acceptor put a `SocketAddr` in the request's extensions.
impl<S, B> tower_service::Service<http::Request<B>> for Server<S>
where
    S: Clone + Send + Sync + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(self.respond(request)))
    }
}

/// `Server` as a hyper `Service`, for `hyper::server::conn::http1::Builder::serve_connection`
/// (with `.with_upgrades()`) or an HTTP/2 builder with `enable_connect_protocol()`; the same
/// answers as the `tower::Service`.
impl<S, B> hyper::service::Service<http::Request<B>> for Server<S>
where
    S: Clone + Send + Sync + 'static,
{
    type Response = Response<ResponseBody>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn call(&self, request: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(self.respond(request)))
    }
}
