//! The client's side of the opening handshake: send the upgrade request, read and check the
//! answer, and keep a refused answer's headers and (capped, de-chunked) body.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tether_proto::deflate::{DeflateParams, validate_answer};
use tether_proto::handshake::{
    ClientRequest, HandshakeError, ResponseHead, parse_response, validate_response,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::config::{ClientConfig, Response};
use crate::error::{BadStatus, Error};

/// Sends `request` and reads the answer, within `deadline` for a refused answer's body.
pub(super) async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &ClientRequest,
    config: &ClientConfig,
    deadline: Instant,
) -> Result<(Response, BytesMut, Option<DeflateParams>), Error> {
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
        Ok(accepted) => {
            let deflate = match &config.transport.deflate {
                Some(offered) => {
                    validate_answer(&accepted.extensions, offered).map_err(Error::handshake)?
                }
                None => None,
            };
            let response = Response {
                protocol: accepted.protocol,
                headers: text_headers(&head),
            };
            Ok((response, buf, deflate))
        }
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
