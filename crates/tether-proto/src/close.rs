//! Close codes, close reasons and close frames (RFC 6455 sections 5.5.1 and 7.4).
//!
//! [`CloseCode`] can only hold codes that may appear on the wire, and [`Reason`] can only hold
//! UTF-8 text that fits a control frame, so a [`CloseFrame`] is always sendable. The states
//! "no status received" (1005) and "abnormal closure" (1006) are not codes here: the transport
//! reports them as states of its disconnect value.

use std::fmt;

use bytes::{BufMut, Bytes};

use crate::error::ProtocolError;

/// A close code that may be sent in a close frame.
///
/// Valid codes are 1000-1003, 1007-1014 (the codes registered with IANA that an endpoint may
/// send), 3000-3999 (registered libraries and frameworks) and 4000-4999 (private use, for
/// applications). Codes that must never appear on the wire (below 1000, 1004, 1005, 1006, 1015,
/// 1016-2999, 5000 and above) are rejected by [`CloseCode::new`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

/// The error returned by [`CloseCode::new`] for a code that may not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCloseCode(pub u16);

impl fmt::Display for InvalidCloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "close code {} may not be sent: expected 1000-1003, 1007-1014 or 3000-4999",
            self.0
        )
    }
}

impl std::error::Error for InvalidCloseCode {}

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: Self = Self(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: Self = Self(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// 1003: the endpoint received a type of data it cannot accept.
    pub const UNSUPPORTED_DATA: Self = Self(1003);
    /// 1007: a message's data was not consistent with its type (invalid UTF-8 in text).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// 1008: a message violated the endpoint's policy.
    pub const POLICY_VIOLATION: Self = Self(1008);
    /// 1009: a message was too big to process.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// 1010: the client expected the server to negotiate an extension it did not.
    pub const MANDATORY_EXTENSION: Self = Self(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: Self = Self(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: Self = Self(1012);
    /// 1013: try again later (temporary overload).
    pub const TRY_AGAIN_LATER: Self = Self(1013);
    /// 1014: a gateway or proxy received an invalid response from the upstream server.
    pub const BAD_GATEWAY: Self = Self(1014);

    /// Validates a code for sending.
    ///
    /// # Errors
    /// [`InvalidCloseCode`] for a code that may never appear on the wire.
    pub const fn new(code: u16) -> Result<Self, InvalidCloseCode> {
        if Self::is_sendable(code) {
            Ok(Self(code))
        } else {
            Err(InvalidCloseCode(code))
        }
    }

    /// Whether `code` may appear in a close frame.
    pub const fn is_sendable(code: u16) -> bool {
        matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }

    /// The numeric value.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this is an application code (4000-4999).
    pub const fn is_application(self) -> bool {
        matches!(self.0, 4000..=4999)
    }

    /// The registered name of a standard code, e.g. `"normal closure"` for 1000; `None` for
    /// codes in 3000-4999, whose meaning the application defines.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1000 => "normal closure",
            1001 => "going away",
            1002 => "protocol error",
            1003 => "unsupported data",
            1007 => "invalid payload data",
            1008 => "policy violation",
            1009 => "message too big",
            1010 => "mandatory extension",
            1011 => "internal error",
            1012 => "service restart",
            1013 => "try again later",
            1014 => "bad gateway",
            _ => return None,
        })
    }
}

impl TryFrom<u16> for CloseCode {
    type Error = InvalidCloseCode;

    fn try_from(code: u16) -> Result<Self, Self::Error> {
        Self::new(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> u16 {
        code.0
    }
}

impl fmt::Debug for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "CloseCode({} {name})", self.0),
            None => write!(f, "CloseCode({})", self.0),
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{} ({name})", self.0),
            None => write!(f, "{}", self.0),
        }
    }
}

/// A close reason: UTF-8 text of at most [`Reason::MAX_LEN`] bytes.
///
/// [`Reason::new`] truncates longer text on a character boundary, so any string can be turned
/// into a reason without failing.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Reason(Bytes);

impl Reason {
    /// The largest reason that fits a control frame: 125 bytes minus the 2-byte code.
    pub const MAX_LEN: usize = 123;

    /// The empty reason.
    pub const fn empty() -> Self {
        Self(Bytes::new())
    }

    /// Makes a reason from text, truncating it on a character boundary to at most 123 bytes.
    pub fn new(text: &str) -> Self {
        let mut end = text.len().min(Self::MAX_LEN);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        match text.get(..end) {
            Some(head) => Self(Bytes::copy_from_slice(head.as_bytes())),
            None => Self::empty(),
        }
    }

    /// Makes a reason from a static string without copying it (truncated like [`Reason::new`]).
    pub fn from_static(text: &'static str) -> Self {
        if text.len() <= Self::MAX_LEN {
            Self(Bytes::from_static(text.as_bytes()))
        } else {
            Self::new(text)
        }
    }

    /// Validates received reason bytes: UTF-8, at most 123 bytes.
    pub(crate) fn from_wire(bytes: Bytes) -> Result<Self, ProtocolError> {
        if simdutf8::basic::from_utf8(&bytes).is_err() {
            return Err(ProtocolError::InvalidCloseReason);
        }
        // The caller only passes the payload of a control frame (at most 125 bytes) minus the
        // 2-byte code, so the length bound holds.
        debug_assert!(bytes.len() <= Self::MAX_LEN);
        Ok(Self(bytes))
    }

    /// The reason text.
    pub fn as_str(&self) -> &str {
        // Every constructor checks or guarantees UTF-8.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The reason bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether the reason is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Reason {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl From<String> for Reason {
    fn from(text: String) -> Self {
        Self::new(&text)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A close frame's content: a sendable code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The close code.
    pub code: CloseCode,
    /// The reason, possibly empty.
    pub reason: Reason,
}

impl CloseFrame {
    /// A close frame with `code` and `reason` (truncated to 123 bytes on a character boundary).
    pub fn new(code: CloseCode, reason: impl Into<Reason>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }

    /// A normal closure (1000) with an empty reason.
    pub fn normal() -> Self {
        Self::new(CloseCode::NORMAL, Reason::empty())
    }

    /// Parses a received close payload.
    ///
    /// An empty payload is `Ok(None)` (the peer sent no status). A 1-byte payload or a code
    /// that may not be sent is a protocol error (1002); a reason that is not UTF-8 is 1007.
    pub fn parse(payload: Bytes) -> Result<Option<Self>, ProtocolError> {
        match payload.len() {
            0 => Ok(None),
            1 => Err(ProtocolError::InvalidClosePayloadLength),
            _ => {
                let mut payload = payload;
                let reason = payload.split_off(2);
                let raw = match *payload {
                    [hi, lo] => u16::from_be_bytes([hi, lo]),
                    _ => return Err(ProtocolError::InvalidClosePayloadLength),
                };
                let code = CloseCode::new(raw).map_err(|_| ProtocolError::InvalidCloseCode(raw))?;
                Ok(Some(Self {
                    code,
                    reason: Reason::from_wire(reason)?,
                }))
            }
        }
    }

    /// The payload length on the wire: 2 bytes of code plus the reason.
    pub fn encoded_len(&self) -> usize {
        2 + self.reason.as_bytes().len()
    }

    /// Writes the close payload (code, then reason) into `out`.
    pub fn encode_payload(&self, out: &mut impl BufMut) {
        out.put_u16(self.code.as_u16());
        out.put_slice(self.reason.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sendable_codes_are_accepted() {
        for code in 0..=u16::MAX {
            let expected = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            assert_eq!(CloseCode::new(code).is_ok(), expected, "code {code}");
        }
    }

    #[test]
    fn reason_truncates_on_a_char_boundary() {
        let text = "é".repeat(100); // 200 bytes, 2 bytes a character
        let reason = Reason::new(&text);
        assert_eq!(reason.as_bytes().len(), 122);
        assert_eq!(reason.as_str(), "é".repeat(61));
        assert_eq!(Reason::new("bye").as_str(), "bye");
        let long = "x".repeat(200);
        assert_eq!(
            Reason::from_static(Box::leak(long.into_boxed_str()))
                .as_bytes()
                .len(),
            123
        );
    }

    #[test]
    fn parse_close_payloads() {
        assert_eq!(CloseFrame::parse(Bytes::new()), Ok(None));
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(&[0x03])),
            Err(ProtocolError::InvalidClosePayloadLength)
        );
        let frame = CloseFrame::parse(Bytes::from_static(b"\x03\xe8bye"))
            .expect("valid")
            .expect("has a code");
        assert_eq!(frame.code, CloseCode::NORMAL);
        assert_eq!(frame.reason.as_str(), "bye");
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
            let payload = Bytes::copy_from_slice(&bad.to_be_bytes());
            assert_eq!(
                CloseFrame::parse(payload),
                Err(ProtocolError::InvalidCloseCode(bad)),
                "code {bad}"
            );
        }
        assert_eq!(
            CloseFrame::parse(Bytes::from_static(b"\x03\xe8\xff")),
            Err(ProtocolError::InvalidCloseReason)
        );
    }

    #[test]
    fn encode_round_trips() {
        let frame = CloseFrame::new(CloseCode::new(4001).expect("app code"), "room not found");
        let mut out = Vec::new();
        frame.encode_payload(&mut out);
        assert_eq!(out.len(), frame.encoded_len());
        assert_eq!(CloseFrame::parse(Bytes::from(out)), Ok(Some(frame)));
    }
}
