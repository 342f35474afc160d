//! `MaybeTlsStream`: the client's byte stream, plain TCP or TLS over TCP (both possibly
//! through a proxy tunnel).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection's stream: `ws://` is plain TCP, `wss://` TLS over TCP.
#[derive(Debug)]
#[non_exhaustive]
pub(crate) enum MaybeTlsStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The stream for a connection: a `MaybeTlsStream::Plain` becomes its `TcpStream`, so that
/// the connection reads and writes it without a lock (see `transport::Stream`); any other
/// stream is kept as it is.
pub(crate) fn unwrap_plain(io: crate::transport::BoxIo) -> crate::transport::BoxIo {
    match crate::transport::downcast::<MaybeTlsStream>(io) {
        Ok(MaybeTlsStream::Plain(tcp)) => Box::new(tcp),
        #[cfg(feature = "tls")]
        Ok(tls @ MaybeTlsStream::Tls(_)) => Box::new(tls),
        Err(io) => io,
    }
}

impl AsyncRead for MaybeTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => match Pin::new(stream.as_mut()).poll_read(cx, buf) {
                // A peer that drops TCP without TLS close_notify ends the stream like a plain
                // TCP peer would: the WebSocket layer tells a clean close (it saw the close
                // frame) from an abnormal one (it did not), the same for ws:// and wss://.
                Poll::Ready(Err(error)) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    Poll::Ready(Ok(()))
                }
                other => other,
            },
        }
    }
}

impl AsyncWrite for MaybeTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_write_vectored(cx, bufs),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(stream) => stream.is_write_vectored(),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_flush(cx),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(stream) => Pin::new(stream).poll_shutdown(cx),
            #[cfg(feature = "tls")]
            Self::Tls(stream) => Pin::new(stream.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::net::{TcpListener, TcpStream};

    use super::{MaybeTlsStream, unwrap_plain};
    use crate::transport::Stream;

    #[tokio::test]
    async fn a_plain_client_stream_runs_as_its_tcp_stream() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let io = unwrap_plain(Box::new(MaybeTlsStream::Plain(tcp)));
        assert!(matches!(Stream::new(io), Stream::Tcp(_)));
        let (duplex, _peer) = tokio::io::duplex(16);
        let io = unwrap_plain(Box::new(duplex));
        assert!(matches!(Stream::new(io), Stream::Other(_)));
    }
}
