//! The control API of a [`FaultProxy`](super::FaultProxy): a tiny HTTP/1.1 server with JSON
//! bodies, one request per connection. The routes are documented in the
//! [module documentation](super). Requests are bounded (head, body, time); anything
//! malformed gets a 4xx with a JSON error body.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::faults::Faults;
use super::proxy::Shared;

/// The largest request head accepted (request line and headers).
const MAX_HEAD: usize = 8 * 1024;
/// The most headers accepted.
const MAX_HEADERS: usize = 32;
/// The largest request body accepted.
const MAX_BODY: usize = 64 * 1024;
/// How long a client may take to send its request, and to read the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, and how much, unread input is drained after the response, so that closing the
/// socket does not reset it before the client read the response.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);
const DRAIN_MAX: usize = 1 << 20;

/// Serves the control API on `listener` until `stop`, then closes its connections.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(handle(stream, Arc::clone(&shared)));
                }
                Err(error) => {
                    tracing::warn!(%error, "fault proxy control API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}

/// Answers one request, then closes the connection.
async fn handle(mut stream: TcpStream, shared: Arc<Shared>) {
    let response = match tokio::time::timeout(IO_TIMEOUT, read_request(&mut stream)).await {
        Ok(Ok(request)) => {
            let response = route(&request, &shared).await;
            tracing::debug!(
                method = %request.method,
                path = %request.path,
                status = response.status,
                "fault proxy control request"
            );
            response
        }
        Ok(Err(refusal)) => refusal,
        Err(_) => Response::error(408, "the request took too long"),
    };
    let written = tokio::time::timeout(IO_TIMEOUT, async {
        stream.write_all(&response.to_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if matches!(written, Ok(Ok(()))) {
        drain(&mut stream).await;
    }
}

/// Reads what the client still sends (a body too large to read, say) until it closes, for
/// a bounded time and size.
async fn drain(stream: &mut TcpStream) {
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while drained < DRAIN_MAX {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(read) => drained += read,
            }
        }
    })
    .await;
}

/// A request as the routes see it.
#[derive(Debug)]
struct Request {
    method: String,
    /// Without the query.
    path: String,
    body: Vec<u8>,
}

/// The parts of a complete request head that outlive the parse.
struct Head {
    method: String,
    path: String,
    length: usize,
    head_len: usize,
}

/// Reads one request: a head of at most [`MAX_HEAD`] bytes, then a `Content-Length` body of
/// at most [`MAX_BODY`] bytes.
async fn read_request(stream: &mut TcpStream) -> Result<Request, Response> {
    let mut buf = Vec::with_capacity(1024);
    let mut scratch = [0u8; 4096];
    let head = loop {
        if let Some(head) = parse_head(&buf)? {
            break head;
        }
        if buf.len() >= MAX_HEAD {
            return Err(Response::error(
                431,
                format!("the request head is over {MAX_HEAD} bytes"),
            ));
        }
        let read = stream
            .read(&mut scratch)
            .await
            .map_err(|error| Response::error(400, format!("cannot read the request: {error}")))?;
        if read == 0 {
            return Err(Response::error(
                400,
                "the request ended before its head did",
            ));
        }
        buf.extend_from_slice(scratch.get(..read).unwrap_or_default());
    };
    if head.length > MAX_BODY {
        return Err(Response::error(
            413,
            format!(
                "expected a body of at most {MAX_BODY} bytes, found {}",
                head.length
            ),
        ));
    }
    let mut body = buf.split_off(head.head_len.min(buf.len()));
    while body.len() < head.length {
        let read = stream
            .read(&mut scratch)
            .await
            .map_err(|error| Response::error(400, format!("cannot read the body: {error}")))?;
        if read == 0 {
            return Err(Response::error(
                400,
                format!(
                    "expected a body of {} bytes, found {}",
                    head.length,
                    body.len()
                ),
            ));
        }
        body.extend_from_slice(scratch.get(..read).unwrap_or_default());
    }
    body.truncate(head.length);
    Ok(Request {
        method: head.method,
        path: head.path,
        body,
    })
}

/// The head in `buf`, once complete (`None` until then).
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Response> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let window = buf.get(..buf.len().min(MAX_HEAD)).unwrap_or(buf);
    let head_len = match request.parse(window) {
        Ok(httparse::Status::Complete(head_len)) => head_len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Response::error(
                431,
                format!("expected at most {MAX_HEADERS} headers"),
            ));
        }
        Err(error) => {
            return Err(Response::error(400, format!("malformed request: {error}")));
        }
    };
    let mut length = 0;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(
                411,
                "expected a body with a Content-Length, found Transfer-Encoding",
            ));
        }
        if header.name.eq_ignore_ascii_case("content-length") {
            let text = String::from_utf8_lossy(header.value);
            length = text.trim().parse().map_err(|_| {
                Response::error(
                    400,
                    format!("expected a number in Content-Length, found {text:?}"),
                )
            })?;
        }
    }
    let target = request.path.unwrap_or_default();
    Ok(Some(Head {
        method: request.method.unwrap_or_default().to_owned(),
        path: target
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        length,
        head_len,
    }))
}

/// Runs the request against the proxy.
async fn route(request: &Request, shared: &Shared) -> Response {
    match (request.path.as_str(), request.method.as_str()) {
        ("/faults", "GET") => Response::json(200, &shared.faults()),
        ("/faults", "PUT") => match serde_json::from_slice::<Faults>(&request.body) {
            Ok(faults) => {
                shared.set_faults(faults).await;
                Response::json(200, &shared.faults())
            }
            Err(error) => Response::error(400, format!("invalid faults: {error}")),
        },
        ("/faults", _) => Response::method_not_allowed("GET, PUT"),
        ("/reset", "POST") => {
            shared.set_faults(Faults::none()).await;
            Response::json(200, &shared.faults())
        }
        ("/reset", _) => Response::method_not_allowed("POST"),
        ("/stats", "GET") => Response::json(200, &shared.stats()),
        ("/stats", _) => Response::method_not_allowed("GET"),
        (path, _) => Response::error(
            404,
            format!("no route {path:?}: expected /faults, /reset or /stats"),
        ),
    }
}

/// A response: a status and a JSON body.
#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
    /// For a 405: the methods the path takes.
    allow: Option<&'static str>,
}

impl Response {
    fn json(status: u16, value: &impl Serialize) -> Self {
        match serde_json::to_string(value) {
            Ok(body) => Self {
                status,
                body,
                allow: None,
            },
            Err(error) => Self::error(500, format!("cannot write the JSON: {error}")),
        }
    }

    /// A `{"error": "..."}` body.
    fn error(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            body: serde_json::json!({ "error": message.into() }).to_string(),
            allow: None,
        }
    }

    fn method_not_allowed(allow: &'static str) -> Self {
        Self {
            allow: Some(allow),
            ..Self::error(405, format!("method not allowed: expected {allow}"))
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            411 => "Length Required",
            413 => "Content Too Large",
            431 => "Request Header Fields Too Large",
            _ => "Internal Server Error",
        };
        let allow = self
            .allow
            .map(|allow| format!("Allow: {allow}\r\n"))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n{}\n",
            self.status,
            self.body.len() + 1,
            self.body
        )
        .into_bytes()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn heads_are_parsed_bounded_and_refused_with_a_status() {
        let head = parse_head(b"PUT /faults?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}")
            .unwrap()
            .unwrap();
        assert_eq!(
            (head.method.as_str(), head.path.as_str()),
            ("PUT", "/faults")
        );
        assert_eq!((head.length, head.head_len), (2, 47));
        assert!(parse_head(b"GET /faults HTTP/1.1\r\n").unwrap().is_none());
        let status = |bytes: &[u8]| parse_head(bytes).err().map(|response| response.status);
        assert_eq!(status(b"\x00\x01 nonsense\r\n\r\n"), Some(400));
        assert_eq!(
            status(b"PUT /faults HTTP/1.1\r\nContent-Length: lots\r\n\r\n"),
            Some(400)
        );
        assert_eq!(
            status(b"PUT /faults HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Some(411)
        );
        let many = format!("GET / HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(status(many.as_bytes()), Some(431));
    }

    #[test]
    fn responses_carry_their_length_and_allow_header() {
        let text = String::from_utf8(Response::method_not_allowed("GET, PUT").to_bytes()).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nAllow: GET, PUT\r\n"), "{text}");
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"], "method not allowed: expected GET, PUT");
    }
}
