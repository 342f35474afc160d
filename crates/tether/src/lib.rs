//! # tether
//!
//! The async WebSocket library of Tether on tokio: a thin transport loop over the sans-IO
//! `tether-proto` core, a server accept path and a client connect path.
