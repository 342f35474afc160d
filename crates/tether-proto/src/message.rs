//! Data messages: text (guaranteed UTF-8) and binary, on shared `Bytes` buffers.

use std::fmt;

use bytes::Bytes;

/// UTF-8 text on a shared, cheaply cloneable buffer.
///
/// `Debug` prints the length, not the content, so payloads do not end up in logs.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Utf8Bytes(Bytes);

impl Utf8Bytes {
    /// Wraps bytes that have been checked to be UTF-8.
    ///
    /// # Errors
    /// Returns the bytes back when they are not valid UTF-8.
    pub fn try_from_bytes(bytes: Bytes) -> Result<Self, Bytes> {
        if simdutf8::basic::from_utf8(&bytes).is_ok() {
            Ok(Self(bytes))
        } else {
            Err(bytes)
        }
    }

    /// Wraps bytes the caller has already validated (the message assembler does this).
    pub(crate) const fn from_validated(bytes: Bytes) -> Self {
        Self(bytes)
    }

    /// Text from a static string, without copying.
    pub const fn from_static(text: &'static str) -> Self {
        Self(Bytes::from_static(text.as_bytes()))
    }

    /// The text, without checking it again.
    #[allow(unsafe_code)] // One of the crate's two audited `unsafe` places: see the SAFETY note.
    pub fn as_str(&self) -> &str {
        // SAFETY: every constructor of `Utf8Bytes` establishes that the bytes are UTF-8
        // (`try_from_bytes` and the message assembler check them, `from_static`, `From<&str>`
        // and `From<String>` start from a `str`), and `Bytes` is immutable, so the invariant
        // holds for the value's whole life.
        unsafe { std::str::from_utf8_unchecked(&self.0) }
    }

    /// A copy of the text in a buffer of its own (not shared with the buffer it was read
    /// from), without checking it again.
    pub fn to_detached(&self) -> Self {
        Self(Bytes::copy_from_slice(&self.0))
    }

    /// The underlying bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Unwraps the underlying bytes.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for Utf8Bytes {
    fn from(text: String) -> Self {
        Self(Bytes::from(text))
    }
}

impl From<&str> for Utf8Bytes {
    fn from(text: &str) -> Self {
        Self(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl std::ops::Deref for Utf8Bytes {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for Utf8Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Utf8Bytes({} bytes)", self.0.len())
    }
}

/// A complete data message.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl From<&str> for Message {
    /// A text message.
    fn from(text: &str) -> Self {
        Self::text(text.to_owned())
    }
}

impl From<String> for Message {
    /// A text message.
    fn from(text: String) -> Self {
        Self::text(text)
    }
}

impl From<Vec<u8>> for Message {
    /// A binary message.
    fn from(bytes: Vec<u8>) -> Self {
        Self::binary(bytes)
    }
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::Binary(bytes.into())
    }

    /// The payload bytes.
    pub fn payload(&self) -> &Bytes {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.payload().is_empty()
    }

    /// The text, when this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text.as_str()),
            Self::Binary(_) => None,
        }
    }

    /// Whether this is a text message.
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }
}

/// The most characters of a text message `Debug` shows.
const DEBUG_PREVIEW_CHARS: usize = 32;

/// A text message shows its length and a short preview (`Text(11 bytes, "hello world")`,
/// cut with `…` past 32 characters); a binary message only its length. The library never
/// logs payloads; this is for the application's own debugging.
impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => {
                let text = text.as_str();
                let cut = text
                    .char_indices()
                    .nth(DEBUG_PREVIEW_CHARS)
                    .map_or(text.len(), |(at, _)| at);
                let preview = text.get(..cut).unwrap_or_default();
                let more = if cut < text.len() { "…" } else { "" };
                write!(f, "Text({} bytes, {preview:?}{more})", text.len())
            }
            Self::Binary(bytes) => write!(f, "Binary({} bytes)", bytes.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_a_short_text_preview_and_only_the_length_of_binary() {
        assert_eq!(
            format!("{:?}", Message::text("hello world")),
            r#"Text(11 bytes, "hello world")"#
        );
        let long = format!("{:?}", Message::text("é".repeat(40)));
        assert_eq!(long, format!("Text(80 bytes, {:?}…)", "é".repeat(32)));
        assert_eq!(
            format!("{:?}", Message::binary(vec![1u8, 2, 3])),
            "Binary(3 bytes)"
        );
    }
}
