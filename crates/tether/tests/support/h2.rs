//! An HTTP/2 WebSocket client for tests (RFC 8441): prior-knowledge h2 over TCP, an extended
//! CONNECT with `:protocol = websocket`, and a Tether client `WebSocket` on the stream; and
//! `echoes`, the round trip the tests check connections with.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tether::{Config, Message, Role, WebSocket};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// What the server answered an extended CONNECT with.
pub(crate) enum H2Answer {
    /// 200: the WebSocket, and the subprotocol the server chose.
    Open(WebSocket, Option<String>),
    /// Another status, with the body.
    Refused(u16, Bytes),
}

/// Opens an h2 connection to `addr` and sends an extended CONNECT for `path` with `headers`
/// (add `sec-websocket-version: 13` for a valid request).
pub(crate) async fn connect_h2(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> H2Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    connect_h2_on(stream, &format!("http://{addr}"), path, headers).await
}

/// As [`connect_h2`], over a stream already open (a TLS stream that negotiated `h2`);
/// `origin` is the scheme and authority of the request URI.
pub(crate) async fn connect_h2_on<S>(
    stream: S,
    origin: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> H2Answer
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(stream);
    let (mut send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = http::Request::builder()
        .method(http::Method::CONNECT)
        .uri(format!("{origin}{path}"))
        .extension(hyper::ext::Protocol::from_static("websocket"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).unwrap();
    let mut response = send.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    if status != 200 {
        let body = response.into_body().collect().await.unwrap().to_bytes();
        return H2Answer::Refused(status, body);
    }
    let protocol = response
        .headers()
        .get("sec-websocket-protocol")
        .map(|value| value.to_str().unwrap().to_owned());
    let upgraded = hyper::upgrade::on(&mut response).await.unwrap();
    let ws = WebSocket::from_upgraded(
        TokioIo::new(upgraded),
        Role::Client,
        Config::default(),
        BytesMut::new(),
    );
    H2Answer::Open(ws, protocol)
}

/// Sends `text` and expects it back within 10 s.
pub(crate) async fn echoes(ws: &mut WebSocket, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(10), ws.recv()).await;
    assert_eq!(answer.unwrap().unwrap(), Some(Message::text(text)));
}

/// The WebSocket of an answer that must be 200.
pub(crate) fn opened(answer: H2Answer) -> WebSocket {
    match answer {
        H2Answer::Open(ws, _) => ws,
        H2Answer::Refused(status, body) => {
            panic!("refused with {status}: {}", String::from_utf8_lossy(&body))
        }
    }
}
