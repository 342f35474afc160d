//! Streaming UTF-8 validation for text messages that arrive in pieces.
//!
//! A text message may be split across frames, and a frame's payload across reads, at any byte,
//! even inside a multi-byte character. [`Utf8Validator`] carries the unfinished tail of a
//! character (at most 3 bytes) from one piece to the next and fails as soon as the input can no
//! longer be valid UTF-8, not at the end of the message. The bulk of each piece is checked with
//! `simdutf8`.

use simdutf8::{basic, compat};

/// Inputs up to this length try the scalar ASCII check before the SIMD validator.
const SHORT_INPUT: usize = 256;

/// The error of [`Utf8Validator`]: the input is not, and can no longer become, valid UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Error;

/// Validates a byte stream as UTF-8 one piece at a time.
#[derive(Debug, Clone, Default)]
pub struct Utf8Validator {
    /// The first bytes of a character whose remaining bytes have not arrived yet.
    pending: [u8; 4],
    /// How many bytes of `pending` are in use (0 to 3).
    pending_len: u8,
}

impl Utf8Validator {
    /// A validator at the start of a message.
    pub const fn new() -> Self {
        Self {
            pending: [0; 4],
            pending_len: 0,
        }
    }

    /// Whether the input so far ends inside a character.
    pub const fn is_mid_character(&self) -> bool {
        self.pending_len != 0
    }

    /// Checks the next piece of the stream.
    ///
    /// # Errors
    /// [`Utf8Error`] as soon as the bytes seen so far cannot be the start of valid UTF-8.
    pub fn feed(&mut self, mut input: &[u8]) -> Result<(), Utf8Error> {
        if self.pending_len != 0 {
            input = self.complete_pending(input)?;
            if self.pending_len != 0 {
                // The piece ended before the character did.
                return Ok(());
            }
        }
        // Short ASCII, the common case for small messages, is checked a word at a time by std
        // without the set-up cost of the SIMD validator, which is much faster on long input.
        let short_ascii = input.len() <= SHORT_INPUT && input.is_ascii();
        if short_ascii || basic::from_utf8(input).is_ok() {
            return Ok(());
        }
        match compat::from_utf8(input) {
            Ok(_) => Ok(()),
            // An invalid sequence: certain failure.
            Err(error) if error.error_len().is_some() => Err(Utf8Error),
            // The piece ends inside a character that may still complete.
            Err(error) => {
                let tail = input.get(error.valid_up_to()..).unwrap_or_default();
                self.store_pending(tail)
            }
        }
    }

    /// Ends the message.
    ///
    /// # Errors
    /// [`Utf8Error`] if the message ended inside a character.
    pub fn finish(&mut self) -> Result<(), Utf8Error> {
        let mid_character = self.is_mid_character();
        *self = Self::new();
        if mid_character {
            Err(Utf8Error)
        } else {
            Ok(())
        }
    }

    /// Resets the validator for a new message.
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    /// Adds bytes from `input` to the pending character until it completes, and returns the
    /// rest of `input`.
    fn complete_pending<'a>(&mut self, mut input: &'a [u8]) -> Result<&'a [u8], Utf8Error> {
        while let Some((&byte, rest)) = input.split_first() {
            let len = usize::from(self.pending_len);
            let Some(slot) = self.pending.get_mut(len) else {
                return Err(Utf8Error);
            };
            *slot = byte;
            self.pending_len += 1;
            input = rest;
            let sequence = self.pending.get(..=len).unwrap_or_default();
            match compat::from_utf8(sequence) {
                Ok(_) => {
                    self.pending_len = 0;
                    return Ok(input);
                }
                Err(error) if error.error_len().is_some() => return Err(Utf8Error),
                Err(_) => {}
            }
        }
        Ok(input)
    }

    fn store_pending(&mut self, tail: &[u8]) -> Result<(), Utf8Error> {
        // An incomplete character is at most 3 bytes; anything longer would have been reported
        // as invalid by the validator.
        let slot = self.pending.get_mut(..tail.len()).ok_or(Utf8Error)?;
        slot.copy_from_slice(tail);
        self.pending_len = u8::try_from(tail.len()).map_err(|_| Utf8Error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_in_pieces(bytes: &[u8], split: &[usize]) -> Result<(), Utf8Error> {
        let mut validator = Utf8Validator::new();
        let mut start = 0;
        for &end in split {
            validator.feed(&bytes[start..end])?;
            start = end;
        }
        validator.feed(&bytes[start..])?;
        validator.finish()
    }

    #[test]
    fn agrees_with_std_at_every_split_point() {
        let samples: &[&[u8]] = &[
            "κόσμε".as_bytes(),
            "a€b𝄞c".as_bytes(),
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xf4\x90\x80\x80",
            b"\xf0\x9f\x98",
            b"hello\xff",
            b"\xc0\xaf",
            b"\xe0\x80\xaf",
            b"",
        ];
        for sample in samples {
            let expected = std::str::from_utf8(sample).is_ok();
            for a in 0..=sample.len() {
                for b in a..=sample.len() {
                    let got = validate_in_pieces(sample, &[a, b]).is_ok();
                    assert_eq!(got, expected, "{sample:?} split at {a},{b}");
                }
            }
        }
    }

    #[test]
    fn fails_as_soon_as_failure_is_certain() {
        let mut validator = Utf8Validator::new();
        // U+10FFFF is the largest code point: F4 90 can never start a valid character.
        assert_eq!(validator.feed(b"ok\xf4"), Ok(()));
        assert_eq!(validator.feed(b"\x90"), Err(Utf8Error));

        let mut validator = Utf8Validator::new();
        // A surrogate (ED A0 ..) fails on its second byte, before the message ends.
        assert_eq!(validator.feed(b"\xed\xa0"), Err(Utf8Error));
    }

    #[test]
    fn a_message_ending_mid_character_fails_at_finish() {
        let mut validator = Utf8Validator::new();
        assert_eq!(
            validator.feed("€".as_bytes().get(..2).expect("2 bytes")),
            Ok(())
        );
        assert!(validator.is_mid_character());
        assert_eq!(validator.finish(), Err(Utf8Error));
        // finish() resets: the next message starts clean.
        assert_eq!(validator.feed(b"fine"), Ok(()));
        assert_eq!(validator.finish(), Ok(()));
    }

    #[test]
    fn one_byte_at_a_time() {
        let text = "żółć 𝄞 €".as_bytes();
        let mut validator = Utf8Validator::new();
        for byte in text {
            assert_eq!(validator.feed(std::slice::from_ref(byte)), Ok(()));
        }
        assert_eq!(validator.finish(), Ok(()));
    }
}
