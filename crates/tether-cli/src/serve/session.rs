//! One chat connection: its identity, its rooms, and the loop that serves it.
//!
//! The loop waits on three things at once: the client's next message (answered directly, or
//! with an error message that leaves the connection open), the member's outbound queue
//! (broadcasts from the hub), and the token's expiry (a 4003 error message, then close 4003).
//! Memberships are guards kept by room name: leaving drops one, and whatever ends the
//! connection drops them all with the member, so nobody stays in a room after they left.
//! A `join` with `since` sends its reply and then the messages it recovered before the loop
//! reads the queue again, so no live message overtakes them.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::time::{Duration, SystemTime};

use tether::hub::{Hub, HubError, Member, Membership, Position};
use tether::server::{AppError, FromRequest, Reject, RequestContext, Socket, State};
use tether::{Error, Message, Side as WsSide};
use tokio::time::Instant;

use super::App;
use super::metrics::Side;
use super::protocol::{self, Parsed, Request, RequestId};

/// Who is connecting, decided before the upgrade: from the token (with `--tokens`) or from
/// `?name=`.
#[derive(Debug)]
pub(crate) struct Identity {
    name: String,
    ttl: Option<Duration>,
}

impl FromRequest<App> for Identity {
    fn from_request(cx: &RequestContext<'_, App>) -> Result<Self, Reject> {
        if let Some(tokens) = &cx.state.tokens {
            return match cx.bearer_token() {
                None => {
                    Err(Reject::error(401, "Missing token")
                        .with_header("WWW-Authenticate", "Bearer"))
                }
                Some(token) => match tokens.find(&token) {
                    Some(grant) => Ok(Self {
                        name: grant.name.clone(),
                        ttl: grant.ttl,
                    }),
                    None => Err(Reject::error(403, "Invalid token")),
                },
            };
        }
        match cx.query("name").filter(|name| !name.is_empty()) {
            None => Ok(Self {
                name: anonymous_name(cx.connection_id),
                ttl: None,
            }),
            Some(name) if protocol::valid_name(&name) => Ok(Self { name, ttl: None }),
            Some(_) => Err(Reject::error(
                400,
                "Names are 1-32 characters, without control characters",
            )),
        }
    }
}

/// `anon-XXXX`, four hex digits that differ from connection to connection.
fn anonymous_name(connection_id: u64) -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    connection_id.hash(&mut hasher);
    SystemTime::now().hash(&mut hasher);
    format!("anon-{:04x}", hasher.finish() & 0xffff)
}

/// The room names a welcome lists: `lobby` and `random` first, then the others by name.
fn room_names(hub: &Hub) -> Vec<String> {
    sorted_rooms(hub)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// Every room with its member count, `lobby` and `random` first.
fn sorted_rooms(hub: &Hub) -> Vec<(String, usize)> {
    let mut rooms: Vec<(String, usize)> = hub
        .rooms()
        .into_iter()
        .map(|room| (room.name, room.members))
        .collect();
    rooms.sort_by_key(|(name, _)| {
        let rank = super::FIXED_ROOMS
            .iter()
            .position(|fixed| fixed == name)
            .unwrap_or(super::FIXED_ROOMS.len());
        (rank, name.clone())
    });
    rooms
}

/// The `/ws` handler.
pub(crate) async fn chat(
    mut socket: Socket,
    State(app): State<App>,
    identity: Identity,
) -> Result<(), Error> {
    let opened = Instant::now();
    let (member, mut outbound) = app.hub.member_for(&socket.sender());
    let mut session = Session {
        app,
        name: identity.name,
        member,
        memberships: HashMap::new(),
        expired: false,
    };
    tracing::debug!(name = %session.name, "joined the chat");
    let welcome = protocol::welcome(&session.name, &room_names(&session.app.hub));
    session.send(&socket, welcome).await;
    let mut expiry = identity.ttl.map(|ttl| opened + ttl);
    let result = loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Ok(Some(message)) => {
                    session.app.metrics.received(message.payload().len());
                    // After the 4003, messages still in flight are not answered.
                    if !session.expired {
                        session.handle(&socket, &message).await;
                    }
                }
                Ok(None) => break Ok(()),
                Err(error) => break Err(error),
            },
            Some(message) = outbound.recv() => session.forward(&socket, message).await,
            () = until(expiry) => {
                expiry = None;
                session.expired = true;
                tracing::debug!(name = %session.name, "token expired");
                // A fatal code: the error message, then close 4003. The loop goes on
                // receiving until the client answers the close.
                session.fail(&socket, None, AppError::unauthorized("Token expired")).await;
            }
        }
    };
    let (code, side) = ending(&socket, &result);
    session.app.metrics.closed(code, side);
    tracing::debug!(name = %session.name, code, ?side, "left the chat");
    result
}

/// Completes at `deadline`; never without one.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// How the connection ended: the close code and who started the close.
fn ending(socket: &Socket, result: &Result<(), Error>) -> (u16, Side) {
    let info = result
        .as_ref()
        .err()
        .and_then(|error| error.close_info().cloned())
        .or_else(|| socket.close_info());
    match info {
        Some(info) => {
            let side = match info.initiated_by {
                WsSide::Local => Side::Server,
                _ => Side::Client,
            };
            (info.reason.display_code(), side)
        }
        // The stream ended without a close handshake the socket could record.
        None => (1006, Side::Client),
    }
}

/// One connection's state.
struct Session {
    app: App,
    name: String,
    member: Member,
    /// Membership guards by room. An entry can be stale after its room was closed (the hub
    /// forgot the member then); [`Session::in_room`] tells.
    memberships: HashMap<String, Membership>,
    /// The token expired: the 4003 went out and the close is under way.
    expired: bool,
}

impl Session {
    /// Sends a text message, counting it. A failed send means the connection is ending; the
    /// next `recv` says how.
    async fn send(&self, socket: &Socket, text: String) {
        self.send_message(socket, Message::text(text)).await;
    }

    async fn send_message(&self, socket: &Socket, message: Message) {
        let bytes = message.payload().len();
        if socket.send(message).await.is_ok() {
            self.app.metrics.sent(bytes);
        }
    }

    /// Sends `error` as an error message answering the request `id`.
    async fn fail(&self, socket: &Socket, id: Option<&RequestId>, error: AppError) {
        let error = match id {
            Some(id) => error.with_request_id(id.text()),
            None => error,
        };
        let code = error.code();
        if socket.send_error(error).await.is_ok() {
            self.app.metrics.error_message(code);
        }
    }

    /// Passes a broadcast on to the client; a `room_closed` also forgets that membership.
    async fn forward(&mut self, socket: &Socket, message: Message) {
        if let Some(room) = protocol::room_closed_room(&message) {
            if !self.in_room(&room) {
                self.memberships.remove(&room);
            }
        }
        self.send_message(socket, message).await;
    }

    /// Whether the member is in `room` now (its guard exists and the room was not closed).
    fn in_room(&self, room: &str) -> bool {
        self.memberships.contains_key(room) && self.member.rooms().iter().any(|name| name == room)
    }

    /// Answers one client message. The reply, then the messages a `join` recovered, go out
    /// before the loop reads the member's queue again: no live message overtakes them.
    async fn handle(&mut self, socket: &Socket, message: &Message) {
        let Parsed { id, request } = protocol::parse(message);
        let answer = match request {
            Ok(request) => self.answer(request, id.as_ref()).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok((reply, missed)) => {
                self.send(socket, reply).await;
                for message in missed {
                    self.send_message(socket, message).await;
                }
            }
            Err(error) => self.fail(socket, id.as_ref(), error).await,
        }
    }

    /// `join`: the room's position in the reply and, with `since`, whether what was missed
    /// since then could be recovered (the messages follow the reply).
    async fn join(
        &mut self,
        id: Option<&RequestId>,
        room: &str,
        since: Option<&Position>,
    ) -> Result<(String, Vec<Message>), AppError> {
        let hub = self.app.hub.clone();
        let (position, recovered, missed) = if self.in_room(room) {
            // Already in: the member gets the room's messages now; nothing is replayed (some
            // may still be on their way), so a recovery asked for is not given.
            let position = hub
                .position(room)
                .ok_or_else(|| hub_error(HubError::NoSuchRoom(room.to_owned())))?;
            (position, since.map(|_| false), Vec::new())
        } else {
            // A stale guard goes first: dropped after the new join, it would leave.
            self.memberships.remove(room);
            let (membership, recovery) = hub
                .join_since(&self.member, room, since)
                .await
                .map_err(hub_error)?;
            self.memberships.insert(room.to_owned(), membership);
            let recovered = since.map(|_| recovery.recovered());
            let position = recovery.position.clone();
            (position, recovered, recovery.into_missed())
        };
        let members = hub.member_count(room).unwrap_or(0);
        let reply = protocol::joined(id, room, members, &position, recovered);
        Ok((reply, missed))
    }

    /// The direct reply to `request` and the messages to send right after it (those a `join`
    /// recovered), or the error to send instead.
    async fn answer(
        &mut self,
        request: Request,
        id: Option<&RequestId>,
    ) -> Result<(String, Vec<Message>), AppError> {
        let hub = self.app.hub.clone();
        let reply = match request {
            Request::Join { room, since } => return self.join(id, &room, since.as_ref()).await,
            Request::Ping => protocol::pong(id),
            Request::Rooms => protocol::rooms(id, &sorted_rooms(&hub)),
            Request::Leave { room } => {
                self.require_member(&room)?;
                self.memberships.remove(&room);
                protocol::room_reply("left", id, &room)
            }
            Request::Say { room, text } => {
                self.require_member(&room)?;
                let now = SystemTime::now();
                let message = Message::text(protocol::chat_message(&room, &self.name, &text, now));
                hub.publish(&room, &message).map_err(hub_error)?;
                protocol::room_reply("said", id, &room)
            }
            Request::Create { room } => {
                if !protocol::valid_name(&room) {
                    return Err(AppError::bad_request(
                        "Room names are 1-32 characters, without control characters",
                    ));
                }
                hub.create_room(&room, Some(&self.name))
                    .map_err(hub_error)?;
                tracing::info!(room, owner = %self.name, "room created");
                protocol::room_reply("created", id, &room)
            }
            Request::Close { room } => {
                // Only the creator may close a room (lobby and random have none). The members
                // are told under the room's lock, so nobody joins in between and misses it.
                let notice = Message::text(protocol::room_closed(&room, &self.name));
                hub.close_room_with(&room, Some(&self.name), &notice)
                    .map_err(hub_error)?;
                self.memberships.remove(&room);
                tracing::info!(room, by = %self.name, "room closed");
                protocol::room_reply("closed", id, &room)
            }
        };
        Ok((reply, Vec::new()))
    }

    /// 4001 for a room that does not exist, 4002 for one the member is not in.
    fn require_member(&self, room: &str) -> Result<(), AppError> {
        if !self.app.hub.has_room(room) {
            return Err(hub_error(HubError::NoSuchRoom(room.to_owned())));
        }
        if !self.in_room(room) {
            return Err(AppError::invalid_action(format!(
                "Not in room {room:?}: join it first"
            )));
        }
        Ok(())
    }
}

/// The error message for a hub refusal.
fn hub_error(error: HubError) -> AppError {
    match error {
        HubError::NoSuchRoom(room) => AppError::not_found(format!("Room not found: {room:?}")),
        HubError::RoomExists(room) => {
            AppError::invalid_action(format!("Room {room:?} exists already"))
        }
        HubError::NotOwner(room) if super::FIXED_ROOMS.contains(&room.as_str()) => {
            AppError::forbidden(format!("Room {room:?} cannot be closed"))
        }
        HubError::NotOwner(room) => {
            AppError::forbidden(format!("Only the creator of {room:?} may close it"))
        }
        other => AppError::invalid_action(other.to_string()),
    }
}
