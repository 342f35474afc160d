//! [`Stream`]: the byte stream under a connection, which its receiving loop reads and its
//! senders write at the same time.
//!
//! Plain TCP, the common case, is held as it is and used through `&TcpStream`: tokio tracks
//! read and write readiness apart, so the two sides need no lock and no split halves (no
//! extra allocation, no lock per read or write). Any other stream (TLS, hyper's upgraded
//! connection, an in-memory duplex) needs `&mut` for each call: it sits behind a mutex held
//! only while one read or write is polled, never across an await.

use std::any::Any;
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;

/// A byte stream a connection can run on.
pub(crate) trait Io: AsyncRead + AsyncWrite + Any + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Any stream, whatever its type.
pub(crate) type BoxIo = Box<dyn Io>;

/// `io` as the concrete stream type `T`, or `io` back when it is another type.
pub(crate) fn downcast<T: Io>(io: BoxIo) -> Result<T, BoxIo> {
    let any: &dyn Any = &*io;
    if !any.is::<T>() {
        return Err(io);
    }
    let any: Box<dyn Any> = io;
    // Cannot fail after the check above; a stream that could not be kept reads as ended.
    any.downcast::<T>()
        .map(|stream| *stream)
        .map_err(|_| Box::new(tokio::io::empty()) as BoxIo)
}

/// The stream of one connection, shared by its reader and its writers.
pub(crate) enum Stream {
    /// Plain TCP, read and written through shared references.
    Tcp(TcpStream),
    /// Any other stream, one call at a time.
    Other(Mutex<BoxIo>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Tcp(_) => "Stream::Tcp",
            Self::Other(_) => "Stream::Other",
        })
    }
}

impl Stream {
    /// Holds `io`, unboxing it when it is a plain `TcpStream`.
    pub(crate) fn new(io: BoxIo) -> Self {
        match downcast::<TcpStream>(io) {
            Ok(tcp) => Self::Tcp(tcp),
            Err(io) => Self::Other(Mutex::new(io)),
        }
    }

    /// The stream of an `Other` connection, locked for one call.
    fn lock(io: &Mutex<BoxIo>) -> MutexGuard<'_, BoxIo> {
        // A panic inside a poll leaves the stream as the inner type left it; go on with it.
        io.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads into the spare capacity of `buf` (which must have some), appending what arrived;
    /// `Ok(0)` at the end of the stream.
    pub(crate) fn poll_read_buf(
        &self,
        cx: &mut Context<'_>,
        buf: &mut BytesMut,
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_read_ready(cx))?;
                let offered = buf.capacity() - buf.len();
                let mut read = 0;
                // A read that fills less than it was offered has drained the socket (epoll is
                // edge-triggered): forget the readiness now, as tokio's own `poll_read` does,
                // rather than learn it from one more read that fails with `WouldBlock`.
                // `try_io` forgets it when its closure says `WouldBlock`; what was read is
                // kept in `read`.
                let result = tcp.try_io(Interest::READABLE, || {
                    read = tcp.try_read_buf(buf)?;
                    if 0 < read && read < offered && cfg!(target_os = "linux") {
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    Ok(read)
                });
                match result {
                    Ok(read) => return Poll::Ready(Ok(read)),
                    // Bytes arrived, so the error is our own signal above: no need to ask.
                    Err(_) if read > 0 => return Poll::Ready(Ok(read)),
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            },
            Self::Other(io) => {
                tokio_util::io::poll_read_buf(Pin::new(&mut **Self::lock(io)), cx, buf)
            }
        }
    }

    /// Writes from `data`, returning how much was taken.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        match self {
            // A short write (a full socket buffer, rare) leaves the readiness set: the next
            // write finds out with `WouldBlock`, one syscall more on a path that waits anyway.
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_write_ready(cx))?;
                match tcp.try_write(data) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    result => return Poll::Ready(result),
                }
            },
            Self::Other(io) => Pin::new(&mut **Self::lock(io)).poll_write(cx, data),
        }
    }

    /// Writes from `slices` in one call where the stream supports it.
    pub(crate) fn poll_write_vectored(
        &self,
        cx: &mut Context<'_>,
        slices: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self {
            Self::Tcp(tcp) => loop {
                ready!(tcp.poll_write_ready(cx))?;
                match tcp.try_write_vectored(slices) {
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    result => return Poll::Ready(result),
                }
            },
            Self::Other(io) => Pin::new(&mut **Self::lock(io)).poll_write_vectored(cx, slices),
        }
    }

    /// Flushes what the stream buffers itself (TLS); TCP buffers nothing.
    #[inline]
    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(_) => Poll::Ready(Ok(())),
            Self::Other(io) => Pin::new(&mut **Self::lock(io)).poll_flush(cx),
        }
    }

    /// Ends the write side (a TCP FIN; TLS sends its close_notify first).
    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self {
            Self::Tcp(tcp) => {
                Poll::Ready(socket2::SockRef::from(tcp).shutdown(std::net::Shutdown::Write))
            }
            Self::Other(io) => Pin::new(&mut **Self::lock(io)).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;

    use bytes::BytesMut;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{BoxIo, Stream};

    async fn tcp_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn a_boxed_tcp_stream_is_unboxed_and_other_streams_are_not() {
        let (tcp, _peer) = tcp_pair().await;
        assert!(matches!(Stream::new(Box::new(tcp)), Stream::Tcp(_)));
        let (duplex, _other) = tokio::io::duplex(16);
        assert!(matches!(Stream::new(Box::new(duplex)), Stream::Other(_)));
    }

    /// Both kinds carry bytes both ways, report the end of the stream and shut down.
    #[tokio::test]
    async fn both_kinds_read_write_and_shut_down() {
        let (tcp, tcp_peer) = tcp_pair().await;
        let (duplex, duplex_peer) = tokio::io::duplex(1 << 16);
        let peers: Vec<(BoxIo, BoxIo)> = vec![
            (Box::new(tcp), Box::new(tcp_peer)),
            (Box::new(duplex), Box::new(duplex_peer)),
        ];
        for (ours, mut peer) in peers {
            let stream = Stream::new(ours);
            let data = vec![7u8; 100_000];
            let mut sent = 0;
            let mut received = Vec::new();
            // Write everything while the peer reads, so a full socket buffer is exercised.
            let write = async {
                while sent < data.len() {
                    sent += poll_fn(|cx| stream.poll_write(cx, &data[sent..]))
                        .await
                        .unwrap();
                }
                poll_fn(|cx| stream.poll_flush(cx)).await.unwrap();
                poll_fn(|cx| stream.poll_shutdown(cx)).await.unwrap();
            };
            let read = async {
                let mut chunk = [0u8; 4096];
                loop {
                    let n = peer.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    received.extend_from_slice(&chunk[..n]);
                }
            };
            tokio::join!(write, read);
            assert_eq!(received, data);

            peer.write_all(b"hello").await.unwrap();
            peer.shutdown().await.unwrap();
            let mut buf = BytesMut::with_capacity(64);
            let mut got = Vec::new();
            loop {
                buf.reserve(64);
                let n = poll_fn(|cx| stream.poll_read_buf(cx, &mut buf))
                    .await
                    .unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf.split());
            }
            assert_eq!(got, b"hello");
        }
    }
}
