//! Proxies: HTTP `CONNECT` (with Basic auth) and SOCKS5 (with or without username and
//! password), configured explicitly or from the usual environment variables.
//!
//! This file holds the configuration (parsing proxy URLs, reading `HTTPS_PROXY`,
//! `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY`); the tunnel protocols live in `tunnel`.

use std::fmt;

use super::url::WsUrl;
use crate::error::Error;

/// Which proxy protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProxyKind {
    /// An HTTP proxy, asked for a tunnel with `CONNECT host:port`.
    Http,
    /// A SOCKS5 proxy (RFC 1928), given the host name to resolve (`socks5h` semantics).
    Socks5,
}

/// A proxy to dial through.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    kind: ProxyKind,
    host: String,
    port: u16,
    credentials: Option<(String, String)>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the password.
        f.debug_struct("Proxy")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish()
    }
}

impl Proxy {
    /// Parses `http://[user:pass@]host[:port]` (default port 80; `https://` is accepted as
    /// a plain HTTP proxy address, default port 443) or `socks5://[user:pass@]host[:port]`
    /// (also `socks5h://`, default port 1080). User and password may be percent-encoded.
    ///
    /// # Errors
    /// [`ErrorKind::Proxy`](crate::ErrorKind::Proxy) for a malformed URL or another scheme.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::proxy(format!("{why}: {:?}", redact(url)), None, false, None);
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http:// or socks5://"))?;
        let (kind, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" => (ProxyKind::Http, 80),
            "https" => (ProxyKind::Http, 443),
            "socks5" | "socks5h" => (ProxyKind::Socks5, 1080),
            _ => return Err(bad("unsupported proxy scheme, expected http or socks5")),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (credentials, host_port) = match authority.rsplit_once('@') {
            Some((userinfo, host_port)) => {
                let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
                let decode = |text: &str| {
                    percent_decode(text).ok_or_else(|| bad("invalid percent-encoding"))
                };
                (Some((decode(user)?, decode(pass)?)), host_port)
            }
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = host_port.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
            let port = match after.strip_prefix(':') {
                Some(port) => port.parse().map_err(|_| bad("invalid port"))?,
                None => default_port,
            };
            (host.to_owned(), port)
        } else {
            match host_port.rsplit_once(':') {
                Some((host, port)) => (
                    host.to_owned(),
                    port.parse().map_err(|_| bad("invalid port"))?,
                ),
                None => (host_port.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            return Err(bad("missing proxy host"));
        }
        Ok(Self {
            kind,
            host,
            port,
            credentials,
        })
    }

    /// The protocol.
    pub fn kind(&self) -> ProxyKind {
        self.kind
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name and password, if any.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.credentials
            .as_ref()
            .map(|(user, pass)| (user.as_str(), pass.as_str()))
    }
}

/// Where a client's proxy comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyConfig {
    /// From the environment (the default): `HTTPS_PROXY` for `wss://`, `HTTP_PROXY` for
    /// `ws://`, else `ALL_PROXY` (each also in lower case), unless `NO_PROXY` lists the host.
    /// Loopback destinations (`localhost`, `127.0.0.0/8`, `::1`) never go through a proxy
    /// from the environment, as in Go's `net/http`.
    #[default]
    FromEnvironment,
    /// Always this proxy.
    Use(Proxy),
    /// Never a proxy.
    Direct,
}

impl ProxyConfig {
    /// The proxy to use for `url`, if any.
    ///
    /// # Errors
    /// [`ErrorKind::Proxy`](crate::ErrorKind::Proxy) if the environment names a malformed
    /// proxy.
    pub(crate) fn for_url(&self, url: &WsUrl) -> Result<Option<Proxy>, Error> {
        match self {
            Self::Direct => Ok(None),
            Self::Use(proxy) => Ok(Some(proxy.clone())),
            Self::FromEnvironment => proxy_from(url, |name| std::env::var(name).ok()),
        }
    }
}

/// The proxy for `url` according to the variables `lookup` finds.
pub(crate) fn proxy_from(
    url: &WsUrl,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Proxy>, Error> {
    let var = |name: &str| {
        lookup(name)
            .or_else(|| lookup(&name.to_ascii_lowercase()))
            .filter(|value| !value.trim().is_empty())
    };
    if is_loopback(&url.host) {
        return Ok(None);
    }
    if let Some(no_proxy) = var("NO_PROXY") {
        if bypasses(&no_proxy, &url.host, url.port) {
            return Ok(None);
        }
    }
    let scheme_var = if url.secure {
        "HTTPS_PROXY"
    } else {
        "HTTP_PROXY"
    };
    match var(scheme_var).or_else(|| var("ALL_PROXY")) {
        Some(value) => {
            let value = value.trim();
            // A bare `host:port` is an HTTP proxy, as curl reads it.
            let with_scheme = if value.contains("://") {
                value.to_owned()
            } else {
                format!("http://{value}")
            };
            Proxy::parse(&with_scheme).map(Some)
        }
        None => Ok(None),
    }
}

/// Whether `NO_PROXY` (comma-separated: `*`, host names matching themselves and their
/// subdomains, `.suffix`, IP addresses, optional `:port`) excludes `host:port`.
fn bypasses(no_proxy: &str, host: &str, port: u16) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.to_ascii_lowercase();
            let (pattern, entry_port) = match entry.rsplit_once(':') {
                Some((name, port)) if !name.contains(':') || name.ends_with(']') => {
                    (name.to_owned(), port.parse::<u16>().ok())
                }
                _ => (entry.clone(), None),
            };
            if entry_port.is_some_and(|wanted| wanted != port) {
                return false;
            }
            let pattern = pattern.trim_start_matches('[').trim_end_matches(']');
            let pattern = pattern.strip_prefix("*.").map_or(pattern, |rest| rest);
            let pattern = pattern.strip_prefix('.').unwrap_or(pattern);
            host == pattern || host.ends_with(&format!(".{pattern}"))
        })
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn redact(url: &str) -> String {
    match (url.split_once("://"), url.rfind('@')) {
        (Some((scheme, _)), Some(at)) => {
            format!("{scheme}://***{}", url.get(at..).unwrap_or_default())
        }
        _ => url.to_owned(),
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> WsUrl {
        WsUrl::parse(text).unwrap()
    }

    #[test]
    fn parses_proxy_urls_with_credentials_and_default_ports() {
        let proxy = Proxy::parse("http://us%40er:p%3Ass@proxy.local:3128").unwrap();
        assert_eq!(proxy.kind(), ProxyKind::Http);
        assert_eq!((proxy.host(), proxy.port()), ("proxy.local", 3128));
        assert_eq!(proxy.credentials(), Some(("us@er", "p:ss")));
        assert!(!format!("{proxy:?}").contains("p:ss"));
        let socks = Proxy::parse("socks5h://127.0.0.1").unwrap();
        assert_eq!(
            (socks.kind(), socks.port(), socks.credentials()),
            (ProxyKind::Socks5, 1080, None)
        );
        assert_eq!(Proxy::parse("http://[::1]:8080").unwrap().host(), "::1");
        for bad in ["ftp://x", "proxy:80", "http://:80", "http://x:port"] {
            let error = Proxy::parse(bad).unwrap_err();
            assert_eq!(error.kind(), crate::ErrorKind::Proxy, "{bad}");
        }
        let error = Proxy::parse("ftp://user:secret@x").unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }

    #[test]
    fn environment_follows_scheme_all_proxy_and_no_proxy() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let vars: &[(&str, &str)] = &[
            ("HTTP_PROXY", "http://plain:3128"),
            ("https_proxy", "secure:3129"),
            ("ALL_PROXY", "socks5://all:1080"),
            (
                "NO_PROXY",
                "localhost, .internal.example, 10.0.0.1, skip.example:8443",
            ),
        ];
        let pick = |target: &str| {
            proxy_from(&url(target), env(vars))
                .unwrap()
                .map(|p| p.host().to_owned())
        };
        assert_eq!(pick("ws://example.com/").as_deref(), Some("plain"));
        assert_eq!(pick("wss://example.com/").as_deref(), Some("secure"));
        assert_eq!(pick("ws://localhost:9000/"), None);
        assert_eq!(pick("ws://api.internal.example/"), None);
        assert_eq!(pick("ws://internal.example/"), None);
        assert_eq!(pick("ws://10.0.0.1/"), None);
        assert_eq!(pick("wss://skip.example:8443/"), None);
        assert_eq!(pick("wss://skip.example/").as_deref(), Some("secure"));
        let only_all: &[(&str, &str)] = &[("ALL_PROXY", "socks5://all:1080")];
        let proxy = proxy_from(&url("ws://example.com/"), env(only_all))
            .unwrap()
            .unwrap();
        assert_eq!(proxy.kind(), ProxyKind::Socks5);
        let star: &[(&str, &str)] = &[("ALL_PROXY", "socks5://all:1080"), ("no_proxy", "*")];
        assert_eq!(
            proxy_from(&url("ws://example.com/"), env(star)).unwrap(),
            None
        );
        assert_eq!(
            proxy_from(&url("ws://example.com/"), env(&[])).unwrap(),
            None
        );
    }
}
