//! Structured error messages: the JSON an application sends when a request fails but the
//! connection may live on.
//!
//! The format is exactly
//! `{"type":"error","data":{"code":4001,"message":"Room not found"},"meta":{"request_id":"abc-123","timestamp":"2025-08-04T12:00:00Z"}}`,
//! with `"retry_after_ms"` added to `data` when a client should wait before retrying. Keys come
//! out in that order. Messages are for people and never carry internals (no stack traces).

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tether_proto::Message;

use crate::mask_keys::handshake_key;

/// A structured error message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorMessage {
    /// The error code (4000-4999, or 5000 for internal errors).
    pub code: u16,
    /// A human-readable message.
    pub message: String,
    /// How long a client should wait before retrying, when it should.
    pub retry_after: Option<Duration>,
    /// The `id` of the client message that caused the error, or a generated id.
    pub request_id: String,
    /// When the error happened.
    pub timestamp: SystemTime,
}

impl ErrorMessage {
    /// An error message with `code` and `message`, stamped now, with a generated request id.
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            request_id: generated_request_id(),
            timestamp: SystemTime::now(),
        }
    }

    /// An error message answering the client message `request_id`, or with a generated id
    /// when there is none (without generating one that would be replaced).
    pub(crate) fn answering(
        code: u16,
        message: impl Into<String>,
        request_id: Option<&str>,
    ) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
            request_id: request_id.map_or_else(generated_request_id, str::to_owned),
            timestamp: SystemTime::now(),
        }
    }

    /// This message with the request id of the client message that caused it.
    pub fn with_request_id(mut self, request_id: impl Into<String>) -> Self {
        self.request_id = request_id.into();
        self
    }

    /// This message with a retry hint (`retry_after_ms`).
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// This message with a fixed timestamp.
    pub fn with_timestamp(mut self, timestamp: SystemTime) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The JSON text, in the reference key order.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(128 + self.message.len());
        out.push_str(r#"{"type":"error","data":{"code":"#);
        let _ = write!(out, "{}", self.code);
        out.push_str(r#","message":"#);
        push_json_string(&mut out, &self.message);
        if let Some(delay) = self.retry_after {
            let _ = write!(out, r#","retry_after_ms":{}"#, delay.as_millis());
        }
        out.push_str(r#"},"meta":{"request_id":"#);
        push_json_string(&mut out, &self.request_id);
        out.push_str(r#","timestamp":""#);
        out.push_str(&rfc3339(self.timestamp));
        out.push_str(r#""}}"#);
        out
    }
}

/// A fresh request id: 16 hexadecimal digits from the OS random generator.
fn generated_request_id() -> String {
    let bytes = handshake_key();
    bytes
        .iter()
        .take(8)
        .fold(String::with_capacity(16), |mut id, byte| {
            let _ = write!(id, "{byte:02x}");
            id
        })
}

/// Appends `text` as a JSON string literal, for the fixed key order of the reference format.
/// U+2028 and U+2029 are escaped too: valid JSON, but older JavaScript parsers reject them
/// raw.
fn push_json_string(out: &mut String, text: &str) {
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            control
                if u32::from(control) < 0x20 || control == '\u{2028}' || control == '\u{2029}' =>
            {
                let _ = write!(out, "\\u{:04x}", u32::from(control));
            }
            other => out.push(other),
        }
    }
    out.push('"');
}

/// Formats a time as RFC 3339 in UTC with second precision, e.g. `2025-08-04T12:00:00Z`
/// (the `meta.timestamp` of error messages). Times before 1970 are shown as the epoch.
fn rfc3339(time: SystemTime) -> String {
    let seconds = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = seconds / 86_400;
    let of_day = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the civil-from-days
/// algorithm: eras of 400 years, years starting in March).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// The largest text message inspected for a retry hint.
#[cfg(feature = "json")]
const MAX_HINT_MESSAGE: usize = 64 * 1024;

/// For a structured error message (`{"type":"error","data":{...}}`), its `retry_after_ms`
/// (`Some(None)` when it has none); `None` for any other message.
#[cfg(feature = "json")]
pub(crate) fn retry_hint(message: &Message) -> Option<Option<Duration>> {
    let text = message.as_text()?;
    if text.len() > MAX_HINT_MESSAGE
        || !text.trim_start().starts_with('{')
        || !text.contains("\"error\"")
    {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "error" {
        return None;
    }
    let data = value.get("data")?;
    Some(
        data.get("retry_after_ms")
            .and_then(serde_json::Value::as_u64)
            .map(Duration::from_millis),
    )
}

/// Without the `json` feature, error messages are not inspected.
#[cfg(not(feature = "json"))]
pub(crate) fn retry_hint(_message: &Message) -> Option<Option<Duration>> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn matches_the_reference_format_exactly() {
        let message = ErrorMessage::new(4001, "Room not found")
            .with_request_id("abc-123")
            .with_timestamp(at(1_754_308_800)); // 2025-08-04T12:00:00Z
        assert_eq!(
            message.to_json(),
            r#"{"type":"error","data":{"code":4001,"message":"Room not found"},"meta":{"request_id":"abc-123","timestamp":"2025-08-04T12:00:00Z"}}"#
        );
    }

    #[test]
    fn carries_the_retry_hint_in_data() {
        let json = ErrorMessage::new(4005, "Too many requests")
            .with_request_id("r1")
            .with_retry_after(Duration::from_millis(1500))
            .with_timestamp(at(0))
            .to_json();
        assert_eq!(
            json,
            r#"{"type":"error","data":{"code":4005,"message":"Too many requests","retry_after_ms":1500},"meta":{"request_id":"r1","timestamp":"1970-01-01T00:00:00Z"}}"#
        );
    }

    #[test]
    fn escapes_strings_into_valid_json() {
        let tricky = "quote \" backslash \\ newline \n tab \t bell \u{7} é 𝄞";
        let json = ErrorMessage::new(4000, tricky)
            .with_request_id("id \"x\"")
            .to_json();
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
        assert_eq!(parsed["data"]["message"], tricky);
        assert_eq!(parsed["meta"]["request_id"], "id \"x\"");
        assert_eq!(parsed["type"], "error");
    }

    #[test]
    fn generated_request_ids_are_distinct_hex() {
        let first = ErrorMessage::new(5000, "Internal server error").request_id;
        let second = ErrorMessage::new(5000, "Internal server error").request_id;
        assert_eq!(first.len(), 16);
        assert!(first.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(first, second);
    }

    #[test]
    fn rfc3339_dates_across_leap_years_and_centuries() {
        for (seconds, expected) in [
            (0, "1970-01-01T00:00:00Z"),
            (951_782_400, "2000-02-29T00:00:00Z"),
            (1_709_210_096, "2024-02-29T12:34:56Z"),
            (4_107_542_399, "2100-02-28T23:59:59Z"),
            (4_107_542_400, "2100-03-01T00:00:00Z"),
        ] {
            assert_eq!(rfc3339(at(seconds)), expected, "{seconds}");
        }
    }

    #[cfg(feature = "json")]
    #[test]
    fn error_messages_give_their_hint() {
        let hint = |text: &str| retry_hint(&Message::text(text.to_owned()));
        assert_eq!(
            hint(
                r#"{"type":"error","data":{"code":4005,"message":"slow","retry_after_ms":1500},"meta":{}}"#
            ),
            Some(Some(Duration::from_millis(1500)))
        );
        assert_eq!(
            hint(r#"{"type":"error","data":{"code":4001,"message":"gone"}}"#),
            Some(None)
        );
        assert_eq!(hint(r#"{"type":"chat","data":{"text":"error"}}"#), None);
        assert_eq!(hint(r#"{"type":"error""#), None);
        assert_eq!(hint("plain error text"), None);
        assert_eq!(
            retry_hint(&Message::binary(b"{\"type\":\"error\"}".to_vec())),
            None
        );
    }
}
