//! Parsing `ws://` and `wss://` URLs into the parts a connection needs.

use crate::error::Error;

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct WsUrl {
    /// Whether the scheme is `wss` (TLS).
    pub secure: bool,
    /// The host: a name, an IPv4 address, or an IPv6 address without brackets.
    pub host: String,
    /// The port, explicit or the scheme's default (80, 443).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl WsUrl {
    /// Parses `url`.
    ///
    /// # Errors
    /// [`ErrorKind::Address`](crate::ErrorKind::Address) for a malformed URL or a scheme other
    /// than `ws` and `wss`.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::address(format!("{why}: {url:?}"), None);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected ws:// or wss://"))?;
        let secure = match scheme.to_ascii_lowercase().as_str() {
            "ws" => false,
            "wss" => true,
            _ => return Err(bad("unsupported scheme, expected ws or wss")),
        };
        let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(split);
        let tail = tail.split('#').next().unwrap_or_default();
        let path = match tail.strip_prefix('?') {
            Some(query) => format!("/?{query}"),
            None if tail.is_empty() => "/".to_owned(),
            None => tail.to_owned(),
        };
        if authority.contains('@') {
            return Err(bad("credentials in the URL are not supported"));
        }
        let default_port = if secure { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| bad("unclosed '[' in host"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => parse_port(port).ok_or_else(|| bad("invalid port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("unexpected text after the IPv6 address")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, parse_port(port).ok_or_else(|| bad("invalid port"))?),
                None => (authority, default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("missing host"));
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:%".contains(&b))
        {
            return Err(bad("invalid character in host"));
        }
        if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
            return Err(bad("invalid character in path"));
        }
        Ok(Self {
            secure,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The value of the `Host` header: the host, and the port unless it is the default.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default_port = if self.secure { 443 } else { 80 };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_common_forms() {
        let url = WsUrl::parse("ws://127.0.0.1:9001/runCase?case=1&agent=tether").unwrap();
        assert_eq!((url.host.as_str(), url.port), ("127.0.0.1", 9001));
        assert_eq!(url.path, "/runCase?case=1&agent=tether");
        assert_eq!(url.host_header(), "127.0.0.1:9001");

        let url = WsUrl::parse("wss://example.com").unwrap();
        assert!(url.secure);
        assert_eq!((url.port, url.path.as_str()), (443, "/"));
        assert_eq!(url.host_header(), "example.com");

        let url = WsUrl::parse("ws://[::1]:8080?x=1#frag").unwrap();
        assert_eq!(
            (url.host.as_str(), url.port, url.path.as_str()),
            ("::1", 8080, "/?x=1")
        );
        assert_eq!(url.host_header(), "[::1]:8080");
    }

    #[test]
    fn refuses_malformed_urls_as_address_errors() {
        for bad in [
            "http://x",
            "x",
            "ws://",
            "ws://:80",
            "ws://host:99999",
            "ws://host:",
            "ws://[::1",
            "ws://user:pw@host",
            "ws://ho st/",
            "ws://host/a b",
        ] {
            let error = WsUrl::parse(bad).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Address, "{bad}");
        }
    }
}
