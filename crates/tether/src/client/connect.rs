//! Connecting: resolve, dial (directly or through a proxy), TLS for `wss://`, send the
//! upgrade request, check the answer.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tether_proto::Role;
use tether_proto::handshake::{
    ClientRequest, HandshakeConfig, HandshakeError, ResponseHead, parse_response, validate_response,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::proxy::ProxyConfig;
use super::stream::MaybeTlsStream;
#[cfg(feature = "tls")]
use super::tls::TlsConfig;
use super::tunnel;
use super::url::WsUrl;
use crate::error::{BadStatus, Error, TimeoutPhase};
use crate::mask_keys::handshake_key;
use crate::transport::{Config, WebSocket};

/// Client settings, each with a documented default. [`ClientBuilder`](super::ClientBuilder) sets them fluently.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientConfig {
    /// Settings of the connection once open: limits, heartbeat (default: a ping every 20 s,
    /// 20 s for its pong), read timeout (default: none), write timeout (default: 30 s), the
    /// close timeout and the caught close codes.
    pub transport: Config,
    /// Limits on the response head. Default: 8 KiB, 64 headers.
    pub handshake: HandshakeConfig,
    /// One deadline over the whole connect: resolving, dialing (through the proxy, if any),
    /// TLS and the opening handshake. A server that accepts TCP and never answers fails at
    /// it with a [`Timeout`](crate::ErrorKind::Timeout) naming the phase it was in.
    /// Default: 10 s.
    pub connect_timeout: Duration,
    /// How long the TLS handshake and the opening handshake may each take, within the
    /// connect deadline. Default: 10 s.
    pub handshake_timeout: Duration,
    /// The largest response body kept from a rejected handshake. Default: 64 KiB.
    pub max_error_body: usize,
    /// Subprotocols to offer, in preference order.
    pub protocols: Vec<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// Which certificates `wss://` trusts. Default: the web PKI roots.
    #[cfg(feature = "tls")]
    pub tls: TlsConfig,
    /// The proxy. Default: from the environment (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    /// `NO_PROXY`).
    pub proxy: ProxyConfig,
}

impl ClientConfig {
    /// The default connect timeout: 10 s.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default handshake timeout: 10 s.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    /// The default cap on a rejected handshake's body: 64 KiB.
    pub const DEFAULT_MAX_ERROR_BODY: usize = 64 * 1024;
    /// The default write timeout of a client connection: 30 s.
    pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(30);

    /// This config with `transport` settings.
    pub fn with_transport(mut self, transport: Config) -> Self {
        self.transport = transport;
        self
    }

    /// This config with a subprotocol offered.
    pub fn with_protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocols.push(protocol.into());
        self
    }

    /// This config with an extra request header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// This config sending `Origin: origin` (as a browser would).
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// This config with the connect timeout set to `timeout`.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// This config with the handshake timeout set to `timeout`.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            transport: Config::default().with_write_timeout(Self::DEFAULT_WRITE_TIMEOUT),
            handshake: HandshakeConfig::default(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
            max_error_body: Self::DEFAULT_MAX_ERROR_BODY,
            protocols: Vec::new(),
            headers: Vec::new(),
            origin: None,
            #[cfg(feature = "tls")]
            tls: TlsConfig::default(),
            proxy: ProxyConfig::default(),
        }
    }
}

/// What the server answered to a successful handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// The subprotocol the server selected.
    pub protocol: Option<String>,
    /// The response headers.
    pub headers: Vec<(String, String)>,
}

/// Connects to `url` with the default settings.
///
/// # Errors
/// As [`connect_with`].
pub async fn connect(url: &str) -> Result<(WebSocket, Response), Error> {
    connect_with(url, &ClientConfig::default()).await
}

/// Connects to `url` with `config`.
///
/// # Errors
/// - [`ErrorKind::Address`](crate::ErrorKind::Address): a malformed URL, or a name that did
///   not resolve.
/// - [`ErrorKind::Proxy`](crate::ErrorKind::Proxy): the proxy could not be reached or refused
///   the tunnel.
/// - [`ErrorKind::Tls`](crate::ErrorKind::Tls): the TLS handshake failed (an untrusted
///   certificate, a name mismatch, an alert).
/// - [`ErrorKind::Timeout`](crate::ErrorKind::Timeout): the connect, TLS or handshake phase
///   ran out of time.
/// - [`ErrorKind::BadStatus`](crate::ErrorKind::BadStatus): the server answered with a status
///   other than 101; its headers and (capped) body are in [`Error::bad_status`].
/// - [`ErrorKind::Protocol`](crate::ErrorKind::Protocol): the 101 response was invalid (wrong
///   `Sec-WebSocket-Accept`, a subprotocol that was not offered, ...).
/// - [`ErrorKind::Io`](crate::ErrorKind::Io): every address refused or the connection failed.
pub async fn connect_with(
    url: &str,
    config: &ClientConfig,
) -> Result<(WebSocket, Response), Error> {
    let url = WsUrl::parse(url)?;
    let proxy = config.proxy.for_url(&url)?;
    let deadline = Instant::now() + config.connect_timeout;
    let dial = async {
        match &proxy {
            Some(proxy) => tunnel::dial_via(proxy, &url.host, url.port).await,
            None => dial(&url).await,
        }
    };
    let tcp = tokio::time::timeout_at(deadline, dial)
        .await
        .map_err(|_| Error::timeout(TimeoutPhase::Connect))??;
    let stream = secure(tcp, &url, config, deadline).await?;
    upgrade(stream, &url, config, deadline).await
}

/// TLS for `wss://`, within the handshake timeout.
async fn secure(
    tcp: TcpStream,
    url: &WsUrl,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<MaybeTlsStream, Error> {
    if !url.secure {
        return Ok(MaybeTlsStream::Plain(tcp));
    }
    #[cfg(feature = "tls")]
    {
        let handshake = super::tls::handshake(tcp, &url.host, &config.tls);
        let phase_deadline = deadline.min(Instant::now() + config.handshake_timeout);
        let tls = tokio::time::timeout_at(phase_deadline, handshake)
            .await
            .map_err(|_| Error::timeout(TimeoutPhase::Tls))??;
        Ok(MaybeTlsStream::Tls(Box::new(tls)))
    }
    #[cfg(not(feature = "tls"))]
    {
        let _ = (config, deadline);
        Err(Error::address(
            "wss:// needs the `tls` feature of tether",
            None,
        ))
    }
}

/// Runs the opening handshake for `url` on a stream the caller has already connected (a
/// socket bound to a chosen source address, a tunnel through a proxy, a TLS stream), within
/// the handshake timeout.
///
/// # Errors
/// As [`connect_with`], without the resolve and dial phases.
pub async fn connect_on<S>(
    stream: S,
    url: &WsUrl,
    config: &ClientConfig,
) -> Result<(WebSocket, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    upgrade(
        stream,
        url,
        config,
        Instant::now() + config.handshake_timeout,
    )
    .await
}

/// The opening handshake, within the handshake timeout and `deadline`.
async fn upgrade<S>(
    mut stream: S,
    url: &WsUrl,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<(WebSocket, Response), Error>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = ClientRequest::builder(url.host_header(), url.path.clone(), handshake_key());
    for protocol in &config.protocols {
        builder = builder.protocol(protocol.clone());
    }
    for (name, value) in &config.headers {
        builder = builder.header(name.clone(), value.clone());
    }
    if let Some(origin) = &config.origin {
        builder = builder.origin(origin.clone());
    }
    let request = builder.build().map_err(Error::handshake)?;

    let deadline = deadline.min(Instant::now() + config.handshake_timeout);
    // Boxed: the handshake's state lives only as long as the handshake (see the server side).
    let handshake = Box::pin(handshake(&mut stream, &request, config, deadline));
    let (response, leftover) = tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| Error::timeout(TimeoutPhase::Handshake))??;
    let socket = WebSocket::from_upgraded(stream, Role::Client, config.transport.clone(), leftover)
        .with_protocol(response.protocol.clone());
    Ok((socket, response))
}

/// Resolves the host and tries each address in turn.
async fn dial(url: &WsUrl) -> Result<TcpStream, Error> {
    let addresses = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .map_err(|error| Error::address(format!("cannot resolve {:?}", url.host), Some(error)))?;
    let mut last_error = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last_error = Some(error),
        }
    }
    Err(match last_error {
        Some(error) => Error::io(error),
        None => Error::address(format!("{:?} resolved to no address", url.host), None),
    })
}

async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &ClientRequest,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<(Response, BytesMut), Error> {
    stream.write_all(&request.encode()).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let (head, used) = loop {
        if buf.capacity() == buf.len() {
            buf.reserve(1024);
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(Error::abnormal_closure());
        }
        if let Some(parsed) = parse_response(&buf, &config.handshake).map_err(Error::handshake)? {
            break parsed;
        }
    };
    buf.advance(used);
    match validate_response(&head, request) {
        Ok(accepted) => Ok((
            Response {
                protocol: accepted.protocol,
                headers: text_headers(&head),
            },
            buf,
        )),
        Err(HandshakeError::UnexpectedStatus { .. }) => {
            // The refusal is what matters: the body is read within the handshake deadline
            // (with a little margin, so a slow body never turns a refusal into a timeout).
            let body_deadline = deadline.checked_sub(BODY_MARGIN).unwrap_or(deadline);
            let body = read_body(stream, &head, buf, config.max_error_body, body_deadline).await;
            Err(Error::from_bad_status(BadStatus {
                status: head.status,
                reason: head.reason.clone(),
                headers: text_headers(&head),
                body,
            }))
        }
        Err(error) => Err(Error::handshake(error)),
    }
}

/// How long a refused handshake's body may pause before what arrived is kept as the body.
const BODY_IDLE: Duration = Duration::from_secs(1);

/// The part of the handshake deadline kept for returning the refusal itself.
const BODY_MARGIN: Duration = Duration::from_millis(50);

/// Reads a rejected handshake's body, at most `cap` bytes: `Content-Length` bytes, a chunked
/// body decoded up to its last chunk, or else what arrives until the server closes or pauses
/// for a second. Every read ends by `deadline`. A body cut short is kept as far as it arrived.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    head: &ResponseHead,
    mut buf: BytesMut,
    cap: usize,
    deadline: Instant,
) -> Bytes {
    if head.is_chunked() {
        return read_chunked(stream, buf, cap, deadline).await;
    }
    let wanted = match head.content_length() {
        Some(len) => usize::try_from(len).unwrap_or(usize::MAX).min(cap),
        None => cap,
    };
    while buf.len() < wanted {
        buf.reserve((wanted - buf.len()).min(16 * 1024));
        if !read_more(stream, &mut buf, deadline).await {
            break;
        }
    }
    buf.truncate(wanted);
    buf.freeze()
}

/// Reads into `buf`; false at the end of the stream, an error, a pause or the deadline.
async fn read_more<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
    deadline: Instant,
) -> bool {
    if buf.capacity() == buf.len() {
        buf.reserve(1024);
    }
    let until = deadline.min(Instant::now() + BODY_IDLE);
    matches!(
        tokio::time::timeout_at(until, stream.read_buf(buf)).await,
        Ok(Ok(1..))
    )
}

/// Decodes a `Transfer-Encoding: chunked` body (RFC 9112 section 7.1), ignoring chunk
/// extensions and trailers.
async fn read_chunked<S: AsyncRead + Unpin>(
    stream: &mut S,
    mut buf: BytesMut,
    cap: usize,
    deadline: Instant,
) -> Bytes {
    let mut body = BytesMut::new();
    loop {
        // The size line.
        let line_end = loop {
            if let Some(end) = buf.windows(2).position(|pair| pair == b"\r\n") {
                break end;
            }
            if buf.len() > 1024 || !read_more(stream, &mut buf, deadline).await {
                return body.freeze();
            }
        };
        let line = String::from_utf8_lossy(buf.get(..line_end).unwrap_or_default()).into_owned();
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return body.freeze();
        };
        buf.advance(line_end + 2);
        if size == 0 {
            return body.freeze();
        }
        // The chunk and its CRLF.
        while buf.len() < size.saturating_add(2) {
            if body.len() + buf.len() >= cap || !read_more(stream, &mut buf, deadline).await {
                let take = buf.len().min(size).min(cap - body.len());
                body.extend_from_slice(buf.get(..take).unwrap_or_default());
                return body.freeze();
            }
        }
        let take = size.min(cap - body.len());
        body.extend_from_slice(buf.get(..take).unwrap_or_default());
        buf.advance(size + 2);
        if body.len() >= cap {
            return body.freeze();
        }
    }
}

fn text_headers(head: &ResponseHead) -> Vec<(String, String)> {
    head.headers
        .iter()
        .map(|(name, value)| (name.clone(), String::from_utf8_lossy(value).into_owned()))
        .collect()
}
