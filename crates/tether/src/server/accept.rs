//! Reading an upgrade request and answering it.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tether_proto::Role;
use tether_proto::deflate::{DeflateParams, NegotiatedResponse, server_answer};
use tether_proto::handshake::{
    HandshakeConfig, HandshakeError, Request, accept_response, parse_request, reject_response,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::http::{HttpRequest, HttpResponse};
use crate::codes::ErrorCode;
use crate::error::{Error, TimeoutPhase};
use crate::error_message::ErrorMessage;
use crate::transport::{Config, WebSocket, next_connection_id};

/// Server-side settings for the opening handshake and the connections it opens.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Settings of the accepted connections.
    pub transport: Config,
    /// Limits on the request head. Default: 8 KiB, 64 headers (over them: 431).
    pub handshake: HandshakeConfig,
    /// How long a client may take to send its whole upgrade request. Default: 10 s; after it
    /// the connection is dropped.
    pub handshake_timeout: Duration,
    /// `transport` shared by the connections [`accept`] opens with this config, so each one
    /// holds a pointer instead of a copy.
    shared: OnceLock<Arc<Config>>,
}

impl PartialEq for ServerConfig {
    fn eq(&self, other: &Self) -> bool {
        self.transport == other.transport
            && self.handshake == other.handshake
            && self.handshake_timeout == other.handshake_timeout
    }
}

impl Eq for ServerConfig {}

impl ServerConfig {
    /// The connection settings as one shared value: the cached one while `transport` has
    /// not changed since it was made, a new one otherwise.
    pub(crate) fn shared_transport(&self) -> Arc<Config> {
        let cached = self.shared.get_or_init(|| Arc::new(self.transport.clone()));
        if **cached == self.transport {
            Arc::clone(cached)
        } else {
            Arc::new(self.transport.clone())
        }
    }

    /// The default handshake timeout: 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// This config with `transport` settings.
    pub fn with_transport(mut self, transport: Config) -> Self {
        self.transport = transport;
        self
    }

    /// This config with the handshake timeout set to `timeout`.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            transport: Config::default(),
            handshake: HandshakeConfig::default(),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            shared: OnceLock::new(),
        }
    }
}

/// A decision to accept an upgrade request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Accept {
    /// The selected subprotocol; it must be one the client offered.
    pub protocol: Option<String>,
    /// Extra response headers.
    pub headers: Vec<(String, String)>,
}

impl Accept {
    /// Accepts with the subprotocol `protocol`.
    pub fn with_protocol(protocol: impl Into<String>) -> Self {
        Self {
            protocol: Some(protocol.into()),
            headers: Vec::new(),
        }
    }
}

/// A decision to refuse an upgrade request with an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Reject {
    /// The HTTP status.
    pub status: u16,
    /// Extra response headers (e.g. `WWW-Authenticate`, `Retry-After`).
    pub headers: Vec<(String, String)>,
    /// The body's content type.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reject {
    /// A rejection with `status` and a body in the structured error format
    /// (`{"type":"error","data":{"code":..,"message":..},"meta":{..}}`), whose code follows
    /// the status: 401 -> 4003, 403 -> 4004, 404 -> 4001, 429 -> 4005, 5xx -> 5000, any
    /// other -> 4000.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        let code = match status {
            401 => ErrorCode::UNAUTHORIZED,
            403 => ErrorCode::FORBIDDEN,
            404 => ErrorCode::NOT_FOUND,
            429 => ErrorCode::RATE_LIMITED,
            500..=599 => ErrorCode::INTERNAL,
            _ => ErrorCode::BAD_REQUEST,
        };
        Self {
            status,
            headers: Vec::new(),
            content_type: Some("application/json".to_owned()),
            body: ErrorMessage::new(code, message).to_json().into_bytes(),
        }
    }

    /// This rejection with an extra response header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// A rejection with `status` and a plain-text body.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: Some("text/plain; charset=utf-8".to_owned()),
            body: body.into().into_bytes(),
        }
    }
}

impl Reject {
    /// The answer to a request that is not an acceptable upgrade: the error's status and
    /// headers (`Sec-WebSocket-Version: 13` on 426, `Allow` on 405) with a JSON error body.
    pub(crate) fn from_handshake(error: &HandshakeError) -> Self {
        let mut reject = Reject::error(error.http_status(), error.to_string());
        for (name, value) in error.response_headers() {
            reject = reject.with_header(*name, *value);
        }
        reject
    }

    /// The HTTP response: status, headers, `Content-Length`, `Connection: close`, body.
    fn to_response(&self) -> Vec<u8> {
        reject_response(
            self.status,
            &header_refs(&self.headers),
            self.content_type.as_deref(),
            &self.body,
        )
    }
}

/// Accepts a WebSocket on any stream the caller accepted (TCP, TLS, a Unix socket, an
/// in-memory duplex): reads the upgrade request (bounded in size and time), asks `decide`,
/// and answers 101 or an HTTP rejection. This is the bare handshake under
/// [`Server`](super::Server), for programs that want no routes or policies (an echo server,
/// a proxy); set `TCP_NODELAY` on a TCP stream first.
///
/// # Errors
/// - [`ErrorKind::Protocol`](crate::ErrorKind::Protocol): the request was malformed or not
///   an acceptable upgrade; the matching HTTP error response was sent
///   ([`Error::rejected_status`] tells which).
/// - [`ErrorKind::Rejected`](crate::ErrorKind::Rejected): `decide` refused; its response
///   was sent.
/// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout) (handshake phase): the request did
///   not arrive in time.
/// - [`ErrorKind::ConnectionClosed`](crate::ErrorKind::ConnectionClosed) or
///   [`ErrorKind::Io`](crate::ErrorKind::Io): the client went away.
pub async fn accept<S, F>(
    stream: S,
    config: &ServerConfig,
    decide: F,
) -> Result<(WebSocket, Request), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
{
    // The handshake's state (buffers, timer, parsed request) lives in its own allocation for
    // the handshake only, so a connection's task does not carry its size for its whole life.
    let upgraded = Box::pin(handshake(stream, config, decide, |_| None)).await?;
    let socket = WebSocket::new(
        Box::new(upgraded.stream),
        Role::Server,
        config.shared_transport(),
        upgraded.leftover,
        next_connection_id(),
    )
    .with_protocol(upgraded.protocol)
    .with_deflate(upgraded.deflate);
    Ok((socket, upgraded.request))
}

/// A stream on which the server answered 101.
pub(crate) struct Upgraded<S> {
    pub(crate) stream: S,
    pub(crate) request: Request,
    /// Bytes that followed the request: the start of the WebSocket stream.
    pub(crate) leftover: BytesMut,
    /// The subprotocol the decision selected.
    pub(crate) protocol: Option<String>,
    /// The permessage-deflate parameters answered, when the client offered it and the
    /// config accepts it.
    pub(crate) deflate: Option<DeflateParams>,
}

/// As [`accept`] without making the connection, and a request that is not a WebSocket
/// upgrade is offered to `http` first: its response is sent (and the result is a
/// [`Rejected`](crate::ErrorKind::Rejected) error with that status); `None` falls back to the
/// upgrade error's own response.
pub(crate) async fn upgrade_or_http<S, F, H>(
    stream: S,
    config: &ServerConfig,
    decide: F,
    http: H,
) -> Result<Upgraded<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
    H: FnOnce(&HttpRequest) -> Option<HttpResponse>,
{
    Box::pin(handshake(stream, config, decide, http)).await
}

async fn handshake<S, F, H>(
    mut stream: S,
    config: &ServerConfig,
    decide: F,
    http: H,
) -> Result<Upgraded<S>, Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: FnOnce(&Request) -> Result<Accept, Reject>,
    H: FnOnce(&HttpRequest) -> Option<HttpResponse>,
{
    let read = read_request(&mut stream, &config.handshake);
    let (request, leftover) = match tokio::time::timeout(config.handshake_timeout, read).await {
        Err(_) => return Err(Error::timeout(TimeoutPhase::Handshake)),
        Ok(Err(ReadError::Io(error))) => return Err(error),
        Ok(Err(ReadError::Invalid(error, head))) => {
            let plain = HttpRequest::parse(&head, &config.handshake);
            if let Some(response) = plain.as_ref().and_then(http) {
                let bytes = reject_response(
                    response.status,
                    &header_refs(&response.headers),
                    response.content_type.as_deref(),
                    &response.body,
                );
                respond_and_close(&mut stream, &bytes).await;
                return Err(Error::rejected(response.status));
            }
            let reject = Reject::from_handshake(&error);
            respond_and_close(&mut stream, &reject.to_response()).await;
            return Err(Error::handshake(error));
        }
        Ok(Ok(parsed)) => parsed,
    };
    match decide(&request) {
        Ok(accept) => {
            let headers = header_refs(&accept.headers);
            let deflate = negotiate_deflate(&request, &config.transport);
            let extensions = deflate.as_ref().map(|answer| answer.header.as_str());
            let response =
                accept_response(&request, accept.protocol.as_deref(), extensions, &headers);
            stream.write_all(&response).await?;
            stream.flush().await?;
            Ok(Upgraded {
                stream,
                request,
                leftover,
                protocol: accept.protocol,
                deflate: deflate.map(|answer| answer.params),
            })
        }
        Err(reject) => {
            respond_and_close(&mut stream, &reject.to_response()).await;
            Err(Error::rejected(reject.status))
        }
    }
}

/// The permessage-deflate answer to `request`'s offers, when `config` accepts one.
pub(crate) fn negotiate_deflate(request: &Request, config: &Config) -> Option<NegotiatedResponse> {
    let accepted = config.deflate.as_ref()?;
    server_answer(request.extensions(), accepted)
}

/// Borrows owned header pairs as the `(&str, &str)` pairs the response builders take.
fn header_refs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

enum ReadError {
    Io(Error),
    /// Not an acceptable upgrade; with the bytes read, for a plain HTTP answer.
    Invalid(HandshakeError, BytesMut),
}

/// Reads until a complete request head; returns it and the bytes that followed it.
async fn read_request<S: AsyncRead + Unpin>(
    stream: &mut S,
    config: &HandshakeConfig,
) -> Result<(Request, BytesMut), ReadError> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        let read = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| ReadError::Io(e.into()))?;
        if read == 0 {
            return Err(ReadError::Io(Error::abnormal_closure()));
        }
        match parse_request(&buf, config) {
            Ok(Some((request, used))) => {
                buf.advance(used);
                return Ok((request, buf));
            }
            Ok(None) => {}
            Err(error) => return Err(ReadError::Invalid(error, buf)),
        }
    }
}

/// Writes an HTTP error response and ends the connection, bounded in time: a client that
/// does not read its rejection does not hold the task.
async fn respond_and_close<S: AsyncWrite + Unpin>(stream: &mut S, response: &[u8]) {
    let write = async {
        stream.write_all(response).await?;
        stream.shutdown().await
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), write).await;
}
