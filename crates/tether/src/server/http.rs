//! Plain HTTP on the WebSocket port: a request that is not an upgrade (a browser loading the
//! page, a Prometheus scrape, a health check) can be answered by an HTTP route instead of a
//! 426. Requests are bounded like upgrade requests; every response closes the connection.

use tether_proto::handshake::HandshakeConfig;

use super::router::parse_query;

/// A plain HTTP request (not a WebSocket upgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpRequest {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// The headers, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl HttpRequest {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split(['?', '#']).next().unwrap_or_default()
    }

    /// The first value of the query parameter `name`, percent-decoded.
    pub fn query(&self, name: &str) -> Option<String> {
        parse_query(&self.target)
            .into_iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value)
    }

    /// The first value of header `name` (case-insensitive) as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    /// Parses a complete request head from `buf`, if it holds one.
    pub(crate) fn parse(buf: &[u8], config: &HandshakeConfig) -> Option<Self> {
        let mut slots = vec![httparse::EMPTY_HEADER; config.max_headers];
        let mut parsed = httparse::Request::new(&mut slots);
        let window = buf
            .get(..buf.len().min(config.max_header_bytes))
            .unwrap_or(buf);
        match parsed.parse(window) {
            Ok(httparse::Status::Complete(_)) => Some(Self {
                method: parsed.method?.to_owned(),
                target: parsed.path?.to_owned(),
                headers: parsed
                    .headers
                    .iter()
                    .map(|header| (header.name.to_owned(), header.value.to_vec()))
                    .collect(),
            }),
            _ => None,
        }
    }
}

/// A response to a plain HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HttpResponse {
    /// The status.
    pub status: u16,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// The body's content type.
    pub content_type: Option<String>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// A response with `status`, `content_type` and `body`.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            content_type: Some(content_type.to_owned()),
            body: body.into(),
        }
    }

    /// 200 with `content_type` and `body`.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Self::new(200, content_type, body)
    }

    /// This response with an extra header.
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<super::Reject> for HttpResponse {
    fn from(reject: super::Reject) -> Self {
        Self {
            status: reject.status,
            headers: reject.headers,
            content_type: reject.content_type,
            body: reject.body,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_plain_get_with_its_query_and_headers() {
        let head = b"GET /metrics?format=text HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n";
        let request = HttpRequest::parse(head, &HandshakeConfig::default()).unwrap();
        assert_eq!(request.method, "GET");
        assert_eq!(request.path(), "/metrics");
        assert_eq!(request.query("format").as_deref(), Some("text"));
        assert_eq!(request.header("accept"), Some("text/plain"));
        assert!(
            HttpRequest::parse(b"GET / HTTP/1.1\r\nHost:", &HandshakeConfig::default()).is_none()
        );
    }
}
