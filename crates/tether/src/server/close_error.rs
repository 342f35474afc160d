//! `CloseError`: the error a handler returns to close the connection with a chosen code and
//! reason, like Starlette's `WebSocketException(code, reason)`.

use std::fmt;

use tether_proto::{CloseCode, CloseFrame, Reason};

/// Closes the connection with exactly this code and reason when a handler returns it.
///
/// Use an application code (4000-4999) documented for your clients, or a standard code that
/// fits (1008 policy violation, 1013 try again later, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseError {
    frame: CloseFrame,
}

impl CloseError {
    /// A close with `code` and `reason` (truncated to 123 bytes on a character boundary).
    pub fn new(code: CloseCode, reason: impl Into<Reason>) -> Self {
        Self {
            frame: CloseFrame::new(code, reason),
        }
    }

    /// A close with a numeric code. A code that may not be sent (1005, 1006, below 1000,
    /// ...) becomes 1011 with the reason `"internal error"`: the peer must never see it, and
    /// the mistake is the server's.
    pub fn from_code(code: u16, reason: impl Into<Reason>) -> Self {
        match CloseCode::new(code) {
            Ok(code) => Self::new(code, reason),
            Err(_) => Self {
                frame: super::policy::internal_close(),
            },
        }
    }

    /// The close frame this error sends.
    pub fn frame(&self) -> &CloseFrame {
        &self.frame
    }

    /// The close code.
    pub fn code(&self) -> CloseCode {
        self.frame.code
    }
}

impl fmt::Display for CloseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "closing with {}", self.frame.code.as_u16())?;
        if !self.frame.reason.is_empty() {
            write!(f, ": {}", self.frame.reason)?;
        }
        Ok(())
    }
}

impl std::error::Error for CloseError {}

/// So a handler whose error type is `tether::Error` can return a `CloseError` with `?`.
impl From<CloseError> for crate::Error {
    fn from(error: CloseError) -> Self {
        Self::application(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sendable_codes_and_replaces_the_others_with_1011() {
        let error = CloseError::from_code(4001, "closing with 4001");
        assert_eq!(error.code().as_u16(), 4001);
        assert_eq!(error.frame().reason.as_str(), "closing with 4001");
        assert_eq!(error.to_string(), "closing with 4001: closing with 4001");
        for unsendable in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            let error = CloseError::from_code(unsendable, "secret detail");
            assert_eq!(error.code(), CloseCode::INTERNAL_ERROR, "{unsendable}");
            assert_eq!(error.frame().reason.as_str(), "internal error");
        }
        let policy = CloseError::new(CloseCode::POLICY_VIOLATION, "Custom exception");
        assert_eq!(policy.to_string(), "closing with 1008: Custom exception");
    }
}
