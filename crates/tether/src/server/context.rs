//! `ConnContext`: what the server knows about one connection (id, peer, route, settings),
//! shared by its socket, the error policy and the driver that finishes the close.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use super::builder::Settings;
use crate::transport::Reader;

/// What the server knows about one connection; shared by its socket and its driver.
#[derive(Debug)]
pub(crate) struct ConnContext {
    pub(crate) id: u64,
    pub(crate) peer: SocketAddr,
    pub(crate) route: Arc<str>,
    pub(crate) settings: Arc<Settings>,
    /// Where the socket leaves its receive loop when it is dropped, so the server can
    /// finish the close handshake after the handler returns (boxed: it is there only at the
    /// end).
    pub(crate) parked: Mutex<Option<Box<Reader>>>,
}
