//! The tunnel protocols: HTTP `CONNECT` (RFC 9110 section 9.3.6) with Basic auth, and SOCKS5
//! (RFC 1928) with username/password auth (RFC 1929). Each refusal becomes a
//! [`ErrorKind::Proxy`](crate::ErrorKind::Proxy) error that says what the proxy answered.

use std::net::IpAddr;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::proxy::{Proxy, ProxyKind};
use crate::error::Error;

/// The largest proxy response head read.
const MAX_HEAD: usize = 8 * 1024;

/// Connects to `proxy` and opens a tunnel to `host:port` through it.
pub(crate) async fn dial_via(proxy: &Proxy, host: &str, port: u16) -> Result<TcpStream, Error> {
    let mut stream = dial_proxy(proxy).await?;
    let talk = match proxy.kind() {
        ProxyKind::Http => http_connect(&mut stream, proxy, host, port).await,
        ProxyKind::Socks5 => socks5_connect(&mut stream, proxy, host, port).await,
    };
    talk?;
    Ok(stream)
}

async fn dial_proxy(proxy: &Proxy) -> Result<TcpStream, Error> {
    let unreachable = |error: std::io::Error| {
        Error::proxy(
            format!(
                "cannot reach the proxy {}:{}: {error}",
                proxy.host(),
                proxy.port()
            ),
            None,
            true,
            Some(error),
        )
    };
    let addresses = tokio::net::lookup_host((proxy.host(), proxy.port()))
        .await
        .map_err(unreachable)?;
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(error) => last = Some(error),
        }
    }
    Err(unreachable(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the name resolved to no address",
        )
    })))
}

/// A transport failure while talking to the proxy.
fn broken(error: std::io::Error) -> Error {
    Error::proxy(
        format!("the proxy connection failed: {error}"),
        None,
        true,
        Some(error),
    )
}

async fn http_connect(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Error> {
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, pass)) = proxy.credentials() {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.map_err(broken)?;

    // Read byte by byte up to the blank line: nothing after the head may be consumed, it
    // belongs to the tunnel.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(Error::proxy(
                "the proxy's response head is too large",
                None,
                false,
                None,
            ));
        }
        let byte = stream.read_u8().await.map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::proxy(
                    "the proxy closed the connection without answering CONNECT",
                    None,
                    true,
                    Some(error),
                )
            } else {
                broken(error)
            }
        })?;
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|code| code.parse::<u16>().ok());
    let reason = parts.next().unwrap_or_default().trim();
    let Some(status) = status.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(Error::proxy(
            format!("the proxy answered CONNECT with a malformed status line: {status_line:?}"),
            None,
            false,
            None,
        ));
    };
    if (200..300).contains(&status) {
        return Ok(());
    }
    let what = match status {
        // A 401 to CONNECT can only come from the proxy (there is no tunnel yet): some
        // proxies (tinyproxy before the fix for its issue #532) answer wrong credentials
        // with it instead of 407.
        401 | 407 if proxy.credentials().is_some() => "the proxy refused the credentials",
        407 => "the proxy requires credentials (use http://user:pass@host:port)",
        403 => "the proxy forbids tunnels to this destination",
        502 => "the proxy could not reach the destination",
        503 | 504 => "the proxy is unavailable or timed out reaching the destination",
        _ => "the proxy refused the tunnel",
    };
    Err(Error::proxy(
        format!("{what}: {status} {reason}"),
        Some(status),
        matches!(status, 502..=504),
        None,
    ))
}

async fn socks5_connect(
    stream: &mut TcpStream,
    proxy: &Proxy,
    host: &str,
    port: u16,
) -> Result<(), Error> {
    let method = if proxy.credentials().is_some() {
        0x02
    } else {
        0x00
    };
    stream
        .write_all(&[0x05, 0x01, method])
        .await
        .map_err(broken)?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await.map_err(broken)?;
    match choice {
        [0x05, 0x00] => {}
        [0x05, 0x02] => socks5_login(stream, proxy).await?,
        [0x05, 0xff] => {
            let hint = if proxy.credentials().is_some() {
                "the SOCKS5 proxy accepts none of the offered methods (username/password)"
            } else {
                "the SOCKS5 proxy requires authentication (use socks5://user:pass@host:port)"
            };
            return Err(Error::proxy(hint, Some(0xff), false, None));
        }
        other => {
            return Err(Error::proxy(
                format!("not a SOCKS5 proxy: it answered {other:02x?}"),
                None,
                false,
                None,
            ));
        }
    }

    let mut request = vec![0x05, 0x01, 0x00];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            request.push(0x01);
            request.extend_from_slice(&ip.octets());
        }
        Ok(IpAddr::V6(ip)) => {
            request.push(0x04);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = u8::try_from(host.len()).map_err(|_| {
                Error::address(format!("host name too long for SOCKS5: {host:?}"), None)
            })?;
            request.push(0x03);
            request.push(name);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(broken)?;

    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.map_err(broken)?;
    let [version, code, _, address_type] = reply;
    if version != 0x05 {
        return Err(Error::proxy(
            format!("not a SOCKS5 reply: version {version}"),
            None,
            false,
            None,
        ));
    }
    if code != 0x00 {
        let (what, retryable) = match code {
            0x01 => ("general SOCKS server failure", true),
            0x02 => ("connection not allowed by the proxy's rules", false),
            0x03 => ("network unreachable", true),
            0x04 => ("host unreachable", true),
            0x05 => ("connection refused by the destination", true),
            0x06 => ("TTL expired", true),
            0x07 => ("command not supported", false),
            0x08 => ("address type not supported", false),
            _ => ("unknown SOCKS5 reply", false),
        };
        return Err(Error::proxy(
            format!("the SOCKS5 proxy could not connect to {host}:{port}: {what} (reply {code})"),
            Some(u16::from(code)),
            retryable,
            None,
        ));
    }
    // The bound address, which we do not need, then the port.
    let skip = match address_type {
        0x01 => 4,
        0x04 => 16,
        0x03 => usize::from(stream.read_u8().await.map_err(broken)?),
        other => {
            return Err(Error::proxy(
                format!("SOCKS5 reply with address type {other}"),
                None,
                false,
                None,
            ));
        }
    };
    let mut rest = vec![0u8; skip + 2];
    stream.read_exact(&mut rest).await.map_err(broken)?;
    Ok(())
}

async fn socks5_login(stream: &mut TcpStream, proxy: &Proxy) -> Result<(), Error> {
    let (user, pass) = proxy.credentials().unwrap_or_default();
    let too_long = || {
        Error::proxy(
            "SOCKS5 user names and passwords are at most 255 bytes",
            None,
            false,
            None,
        )
    };
    let user_len = u8::try_from(user.len()).map_err(|_| too_long())?;
    let pass_len = u8::try_from(pass.len()).map_err(|_| too_long())?;
    let mut login = vec![0x01, user_len];
    login.extend_from_slice(user.as_bytes());
    login.push(pass_len);
    login.extend_from_slice(pass.as_bytes());
    stream.write_all(&login).await.map_err(broken)?;
    let mut status = [0u8; 2];
    stream.read_exact(&mut status).await.map_err(broken)?;
    if status[1] != 0x00 {
        return Err(Error::proxy(
            format!(
                "the SOCKS5 proxy refused the credentials (status {})",
                status[1]
            ),
            Some(u16::from(status[1])),
            false,
            None,
        ));
    }
    Ok(())
}
