//! Connecting: resolve, dial (directly or through a proxy), TLS for `wss://`, then the
//! opening handshake (`handshake.rs`), all under one deadline.

use tether_proto::Role;
use tether_proto::deflate::client_offer;
use tether_proto::handshake::ClientRequest;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::config::{ClientConfig, Response};
use super::handshake::handshake;
use super::stream::MaybeTlsStream;
use super::tunnel;
use super::url::WsUrl;
use crate::error::{Error, TimeoutPhase};
use crate::mask_keys::handshake_key;
use crate::transport::WebSocket;

/// Connects to `url` with the default settings; [`ClientBuilder`](super::ClientBuilder)
/// sets any other.
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
pub async fn connect(url: &str) -> Result<(WebSocket, Response), Error> {
    connect_with(url, &ClientConfig::default()).await
}

/// Connects to `url` with `config`: resolve, dial, TLS, then the opening handshake.
pub(crate) async fn connect_with(
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

/// Runs the opening handshake for `url` on a stream the caller has already connected, within
/// the handshake timeout.
pub(crate) async fn connect_on<S>(
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
    if let Some(deflate) = &config.transport.deflate {
        builder = builder.extension(client_offer(deflate));
    }
    let request = builder.build().map_err(Error::handshake)?;

    let deadline = deadline.min(Instant::now() + config.handshake_timeout);
    // Boxed: the handshake's state lives only as long as the handshake (see the server side).
    let handshake = Box::pin(handshake(&mut stream, &request, config, deadline));
    let (response, leftover, deflate) = tokio::time::timeout_at(deadline, handshake)
        .await
        .map_err(|_| Error::timeout(TimeoutPhase::Handshake))??;
    let socket = WebSocket::new(
        super::stream::unwrap_plain(Box::new(stream)),
        Role::Client,
        std::sync::Arc::new(config.transport.clone()),
        leftover,
        crate::transport::next_connection_id(),
    )
    .with_protocol(response.protocol.clone())
    .with_deflate(deflate);
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
