//! The public API from a user's side: every type a public signature needs is reachable from
//! `tether` alone (no `tether_proto` import in this file), with one path each, and the
//! connection types are thread-safe and small where they are held by the thousand.

#![allow(clippy::unwrap_used)] // Tests may panic: that is how they fail.

use tether::{
    CaughtCloseCodes, CloseCode, CloseInfo, CloseReason, Config, Error, HandshakeError, Limits,
    Message, ProtocolError, Request, Role, Sender, Side, WebSocket,
};

#[test]
fn protocol_types_are_reexported_at_the_root() {
    let limits = Limits::new(1024).with_max_frame_size(512);
    assert_eq!(limits.max_message_size, 1024);
    let config = Config::default().with_max_message_size(2048);
    assert_eq!(config.limits, Limits::new(2048));
    assert_eq!(ProtocolError::InvalidUtf8.close_code().as_u16(), 1007);
    assert_eq!(Role::Client, Role::Client);
    let info = CloseInfo::new(Side::Remote, CloseReason::NoStatus);
    assert_eq!(info.reason.display_code(), 1005);
    assert!(CaughtCloseCodes::default().contains(1005));
    assert!(!CaughtCloseCodes::default().contains(1011));
    // The handshake types a decision function sees.
    let decide = |request: &Request| request.path().len();
    let _ = decide;
    let refused: Option<HandshakeError> = None;
    assert!(refused.is_none());
    assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
}

#[test]
fn connection_types_are_send_and_sync_and_errors_one_pointer_wide() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<WebSocket>();
    assert_send_sync::<Sender>();
    assert_send_sync::<tether::server::Socket>();
    assert_send_sync::<Error>();
    assert_eq!(std::mem::size_of::<Error>(), std::mem::size_of::<usize>());
}

#[tokio::test]
async fn a_text_message_debug_shows_a_preview() {
    assert_eq!(
        format!("{:?}", Message::text("hello")),
        r#"Text(5 bytes, "hello")"#
    );
}

#[test]
fn the_client_resumes_with_the_hubs_own_positions() {
    use tether::client::{Observed, Positions};
    use tether::hub::{HistoryConfig, Hub, HubConfig};

    // What the server's publish hands out is what the client tracks: one `Position` type.
    let hub = Hub::new(
        HubConfig::default()
            .with_history(HistoryConfig::new(10, std::time::Duration::from_secs(60))),
    );
    hub.create_room("lobby", None).unwrap();
    let joined = hub.position("lobby").unwrap();
    let published = hub.publish("lobby", &Message::text("hi")).unwrap();
    let mut positions = Positions::new();
    positions.track("lobby");
    positions.reset("lobby", joined);
    assert_eq!(
        positions.observe("lobby", published.position.as_ref().unwrap()),
        Observed::Next
    );
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Positions>();
}

/// Never called: checks that a resume can run in a spawned task.
#[allow(dead_code)]
fn resume_is_send(positions: &tether::client::Positions, sender: &Sender) {
    fn assert_send<T: Send>(_: &T) {}
    assert_send(&positions.resume(sender, |room, _| Message::text(room.to_owned())));
}
