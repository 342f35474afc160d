//! A small WebSocket echo server on raw tokio TCP and `tether_proto`, correct by default, that
//! can break exactly one behaviour `tether probe` checks ([`Flaw`]). Each connection is its
//! own task; nothing is shared, so a stalled or flooding connection never blocks the others.
//!
//! Limits: 1 MiB per message (close 1009; the header alone decides for a frame over it), 64 KiB
//! of request head (431). With [`Flaw::NoSizeLimit`] the limit is 1 GiB, and messages over
//! 1 MiB are read and dropped, not echoed (the probe's ping after them still gets its pong).

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tether_proto::encode_frame;
use tether_proto::frame::{FrameHeader, Opcode, apply_mask};
use tether_proto::handshake::{
    HandshakeConfig, HandshakeError, accept_response, parse_request, reject_response,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The one behaviour a server gets wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flaw {
    /// Nothing: every check should pass.
    None,
    /// Never answers a ping.
    NoPong,
    /// Echoes text messages without checking their UTF-8.
    AcceptsInvalidUtf8,
    /// Ignores the client's close frame (neither echoes it nor closes).
    NoCloseEcho,
    /// Refuses version 8 with a plain 400, without `Sec-WebSocket-Version`.
    Version8Plain400,
    /// Has no message size limit the probe can find (1 GiB).
    NoSizeLimit,
}

const LIMIT: u64 = 1024 * 1024;
const NO_LIMIT: u64 = 1024 * 1024 * 1024;

/// Starts a server with `flaw` on `ip` (port 0) on its own runtime thread; returns its address.
pub(crate) fn start(flaw: Flaw, ip: &str) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    let bind = format!("{ip}:0");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = TcpListener::bind(&bind).await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let _ = serve(stream, flaw).await;
                });
            }
        });
    });
    rx.recv_timeout(Duration::from_secs(10)).unwrap()
}

/// Reads more bytes; `false` at the end of the stream.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<bool> {
    buf.reserve(64 * 1024);
    Ok(stream.read_buf(buf).await? > 0)
}

async fn close(stream: &mut TcpStream, code: u16, reason: &str) -> std::io::Result<()> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    let mut out = BytesMut::new();
    encode_frame(Opcode::Close, &payload, None, &mut out);
    stream.write_all(&out).await?;
    stream.shutdown().await
}

async fn serve(mut stream: TcpStream, flaw: Flaw) -> std::io::Result<()> {
    let mut buf = BytesMut::new();
    let config = HandshakeConfig::default().with_max_header_bytes(64 * 1024);
    loop {
        match parse_request(&buf, &config) {
            Ok(Some((request, used))) => {
                buf.advance(used);
                stream
                    .write_all(&accept_response(&request, None, None, &[]))
                    .await?;
                break;
            }
            Ok(None) => {
                if !fill(&mut stream, &mut buf).await? {
                    return Ok(());
                }
            }
            Err(HandshakeError::UnsupportedVersion { .. }) if flaw == Flaw::Version8Plain400 => {
                let response = reject_response(400, &[], Some("text/plain"), b"bad version\n");
                stream.write_all(&response).await?;
                return stream.shutdown().await;
            }
            Err(error) => {
                stream.write_all(&error.to_response()).await?;
                return stream.shutdown().await;
            }
        }
    }
    let limit = if flaw == Flaw::NoSizeLimit {
        NO_LIMIT
    } else {
        LIMIT
    };
    // The message being assembled: its opcode, its bytes (unless dropped) and its length.
    let mut message: Option<(Opcode, Vec<u8>)> = None;
    let mut message_len = 0u64;
    loop {
        let (header, head_len) = match FrameHeader::decode(&buf) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => {
                if !fill(&mut stream, &mut buf).await? {
                    return Ok(());
                }
                continue;
            }
            Err(_) => return close(&mut stream, 1002, "bad frame header").await,
        };
        let Some(key) = header.mask else {
            return close(&mut stream, 1002, "unmasked frame").await;
        };
        if header.rsv != 0 {
            return close(&mut stream, 1002, "reserved bits set").await;
        }
        let control = header.opcode.is_control();
        if control && (header.payload_len > 125 || !header.fin) {
            return close(&mut stream, 1002, "bad control frame").await;
        }
        if !control && message_len.saturating_add(header.payload_len) > limit {
            return close(&mut stream, 1009, "message too big").await;
        }
        let len = header.payload_len as usize;
        buf.advance(head_len);
        // Messages over 1 MiB (only with NoSizeLimit) are read and dropped as they come.
        let dropping = !control && message_len + header.payload_len > LIMIT;
        let mut payload = Vec::new();
        let mut remaining = len;
        while remaining > 0 {
            if buf.is_empty() && !fill(&mut stream, &mut buf).await? {
                return Ok(());
            }
            let take = remaining.min(buf.len());
            if !dropping {
                payload.extend_from_slice(&buf[..take]);
            }
            buf.advance(take);
            remaining -= take;
        }
        apply_mask(&mut payload, key, 0);
        match header.opcode {
            Opcode::Ping => {
                if flaw != Flaw::NoPong {
                    let mut out = BytesMut::new();
                    encode_frame(Opcode::Pong, &payload, None, &mut out);
                    stream.write_all(&out).await?;
                }
            }
            Opcode::Pong => {}
            Opcode::Close => {
                if flaw != Flaw::NoCloseEcho {
                    let mut out = BytesMut::new();
                    encode_frame(
                        Opcode::Close,
                        payload.get(..2).unwrap_or_default(),
                        None,
                        &mut out,
                    );
                    stream.write_all(&out).await?;
                    return stream.shutdown().await;
                }
            }
            Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                let part = match (header.opcode, message.as_mut()) {
                    (Opcode::Continuation, Some((_, bytes))) => bytes,
                    (Opcode::Continuation, None) => {
                        return close(&mut stream, 1002, "nothing to continue").await;
                    }
                    (_, Some(_)) => return close(&mut stream, 1002, "message interrupted").await,
                    (opcode, None) => &mut message.insert((opcode, Vec::new())).1,
                };
                part.extend_from_slice(&payload);
                message_len += header.payload_len;
                if header.fin {
                    let (opcode, bytes) = message.take().unwrap();
                    let dropped = message_len > LIMIT;
                    message_len = 0;
                    if opcode == Opcode::Text
                        && flaw != Flaw::AcceptsInvalidUtf8
                        && !dropped
                        && std::str::from_utf8(&bytes).is_err()
                    {
                        return close(&mut stream, 1007, "invalid utf-8").await;
                    }
                    if !dropped {
                        let mut out = BytesMut::new();
                        encode_frame(opcode, &bytes, None, &mut out);
                        stream.write_all(&out).await?;
                    }
                }
            }
        }
    }
}
