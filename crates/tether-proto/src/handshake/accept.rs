//! `Sec-WebSocket-Accept`: the server's proof that it read the client's key (RFC 6455 4.2.2).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The GUID appended to the key before hashing (RFC 6455 section 1.3).
const WEBSOCKET_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Computes `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` value: the base64 of the SHA-1 of
/// the key (as sent, without surrounding whitespace) followed by the RFC 6455 GUID.
///
/// ```
/// use tether_proto::handshake::accept_key;
///
/// assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
/// ```
pub fn accept_key(key: &str) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WEBSOCKET_GUID);
    STANDARD.encode(sha.digest().bytes())
}

/// Base64 of the 16 key bytes a client sends as `Sec-WebSocket-Key`.
pub(super) fn encode_key(key: &[u8; 16]) -> String {
    STANDARD.encode(key)
}

/// True when `key` is base64 (canonical, padded) of exactly 16 bytes, as RFC 6455 4.2.1 asks.
pub(super) fn is_valid_key(key: &[u8]) -> bool {
    // 16 bytes always encode to 24 characters; checking first bounds the decode work.
    key.len() == 24 && STANDARD.decode(key).is_ok_and(|raw| raw.len() == 16)
}
