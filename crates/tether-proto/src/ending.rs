//! How a connection ended: [`CloseInfo`] (which [`Side`] closed first) and [`CloseReason`]
//! (the close frame, or the state when there was none). The connection's close record,
//! [`WriteHalf::close_info`](crate::WriteHalf::close_info) (also reached as
//! [`Connection::close_info`](crate::Connection::close_info)), is the one place that decides
//! it; every layer above reads it.

use crate::close::{CloseCode, CloseFrame};

/// One side of the connection, as seen from this endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::exhaustive_enums)] // There are two sides.
pub enum Side {
    /// This endpoint.
    Local,
    /// The peer.
    Remote,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// A close frame with this code and reason.
    Frame(CloseFrame),
    /// A close frame without a status code (1005 "no status received", as a state).
    NoStatus,
    /// The transport ended without a close frame (1006 "abnormal closure", as a state).
    Abnormal,
}

impl CloseReason {
    /// The close code, when a close frame carried one.
    pub fn code(&self) -> Option<CloseCode> {
        match self {
            Self::Frame(frame) => Some(frame.code),
            Self::NoStatus | Self::Abnormal => None,
        }
    }

    /// The code as a number for logs and displays: the frame's code, or 1005 / 1006 for the
    /// states that have no code on the wire.
    pub fn display_code(&self) -> u16 {
        match self {
            Self::Frame(frame) => frame.code.as_u16(),
            Self::NoStatus => 1005,
            Self::Abnormal => 1006,
        }
    }

    /// The reason text (empty for the states without a frame).
    pub fn reason(&self) -> &str {
        match self {
            Self::Frame(frame) => frame.reason.as_str(),
            Self::NoStatus | Self::Abnormal => "",
        }
    }

    /// The reason a close frame gives: its code and reason, or no status for an empty one.
    pub fn from_frame(frame: Option<CloseFrame>) -> Self {
        frame.map_or(Self::NoStatus, Self::Frame)
    }
}

/// The end of a connection: who closed first and with what.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CloseInfo {
    /// Who started the close (or, for an abnormal closure, whose side saw the transport end).
    pub initiated_by: Side,
    /// The initiator's close frame, or the state when there was none.
    pub reason: CloseReason,
}

impl CloseInfo {
    /// An end started by `initiated_by` with `reason`.
    pub fn new(initiated_by: Side, reason: CloseReason) -> Self {
        Self {
            initiated_by,
            reason,
        }
    }

    /// Whether the connection ended without a close handshake (1006).
    pub fn is_abnormal(&self) -> bool {
        self.reason == CloseReason::Abnormal
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_without_a_frame_display_their_reserved_codes() {
        let abnormal = CloseInfo::new(Side::Remote, CloseReason::Abnormal);
        assert!(abnormal.is_abnormal());
        assert_eq!(abnormal.reason.display_code(), 1006);
        assert_eq!(CloseReason::from_frame(None).display_code(), 1005);
        let frame = CloseFrame::new(CloseCode::GOING_AWAY, "bye");
        let reason = CloseReason::from_frame(Some(frame));
        assert_eq!(reason.code(), Some(CloseCode::GOING_AWAY));
        assert_eq!(reason.reason(), "bye");
    }
}
