//! The chat's JSON protocol (`docs/demo-chat.md`): parsing client messages into [`Request`]s
//! (every way a message can be wrong is a 4000 [`AppError`] with a precise message) and
//! writing the server's messages, keys in the order the spec shows them.

use std::fmt::Write as _;
use std::time::SystemTime;

use serde_json::{Map, Value};
use tether::Message;
use tether::hub::Position;
use tether::server::AppError;

/// The longest room name (and user name), in characters.
pub(crate) const MAX_NAME_CHARS: usize = 32;

/// What a client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// `since`: the last position the client saw in the room, to recover what it missed.
    Join {
        room: String,
        since: Option<Position>,
    },
    Leave {
        room: String,
    },
    Say {
        room: String,
        text: String,
    },
    Ping,
    Create {
        room: String,
    },
    Close {
        room: String,
    },
    Rooms,
}

/// The `id` of a client message: its JSON text (echoed as is in replies, so a number stays a
/// number) and its text form (`meta.request_id` of error messages, which is a string).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestId {
    json: String,
    text: String,
}

impl RequestId {
    /// The id as `meta.request_id` shows it.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// A parsed client message: its id (when it had a usable one) and the request or the 4000
/// error that says what is wrong with it.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub(crate) id: Option<RequestId>,
    pub(crate) request: Result<Request, AppError>,
}

/// The text form of a message's `id` (string or number), for the server's request-id
/// function: the rate limiter's 4005 messages then echo the same id the handler would.
pub(crate) fn request_id_text(message: &Message) -> Option<String> {
    let value: Value = serde_json::from_slice(message.payload()).ok()?;
    id_of(value.get("id")?).map(|id| id.text)
}

fn id_of(value: &Value) -> Option<RequestId> {
    match value {
        Value::String(text) => Some(RequestId {
            json: json_string(text),
            text: text.clone(),
        }),
        Value::Number(number) => Some(RequestId {
            json: number.to_string(),
            text: number.to_string(),
        }),
        _ => None,
    }
}

/// Parses one client message.
pub(crate) fn parse(message: &Message) -> Parsed {
    let Some(text) = message.as_text() else {
        return Parsed {
            id: None,
            request: Err(AppError::bad_request(
                "Binary messages are not supported: send JSON text",
            )),
        };
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => {
            return Parsed {
                id: None,
                request: Err(AppError::bad_request(format!("Malformed JSON: {error}"))),
            };
        }
    };
    let Value::Object(object) = value else {
        return Parsed {
            id: None,
            request: Err(AppError::bad_request("Expected a JSON object")),
        };
    };
    let id = match object.get("id") {
        None => None,
        Some(value) => match id_of(value) {
            Some(id) => Some(id),
            None => {
                return Parsed {
                    id: None,
                    request: Err(AppError::bad_request(
                        "Field id must be a string or a number",
                    )),
                };
            }
        },
    };
    Parsed {
        id,
        request: request_of(&object),
    }
}

fn request_of(object: &Map<String, Value>) -> Result<Request, AppError> {
    let kind = string_field(object, "type")?;
    let room = || string_field(object, "room");
    Ok(match kind.as_str() {
        "join" => Request::Join {
            room: room()?,
            since: since_field(object)?,
        },
        "leave" => Request::Leave { room: room()? },
        "say" => Request::Say {
            room: room()?,
            text: string_field(object, "text")?,
        },
        "ping" => Request::Ping,
        "create" => Request::Create { room: room()? },
        "close" => Request::Close { room: room()? },
        "rooms" => Request::Rooms,
        other => {
            return Err(AppError::bad_request(format!(
                "Unknown type: {}",
                json_string(other)
            )));
        }
    })
}

fn string_field(object: &Map<String, Value>, name: &str) -> Result<String, AppError> {
    match object.get(name) {
        None => Err(AppError::bad_request(format!("Missing field: {name}"))),
        Some(Value::String(value)) => Ok(value.clone()),
        Some(_) => Err(AppError::bad_request(format!(
            "Field {name} must be a string"
        ))),
    }
}

/// The optional `since` of a `join`: `{"epoch": E, "offset": N}`, E a string and N an
/// integer from 0.
fn since_field(object: &Map<String, Value>) -> Result<Option<Position>, AppError> {
    let Some(since) = object.get("since") else {
        return Ok(None);
    };
    let malformed = || {
        AppError::bad_request(
            "Field since must be an object {\"epoch\": string, \"offset\": integer >= 0}",
        )
    };
    let Value::Object(since) = since else {
        return Err(malformed());
    };
    let epoch = since
        .get("epoch")
        .and_then(Value::as_str)
        .ok_or_else(malformed)?;
    let offset = since
        .get("offset")
        .and_then(Value::as_u64)
        .ok_or_else(malformed)?;
    Ok(Some(Position::new(epoch, offset)))
}

/// Whether `name` is a valid user or room name: 1-32 characters, no control characters.
pub(crate) fn valid_name(name: &str) -> bool {
    let count = name.chars().count();
    (1..=MAX_NAME_CHARS).contains(&count) && !name.chars().any(char::is_control)
}

/// A server message under construction: `{"type":..` then the fields in order.
struct Out(String);

impl Out {
    fn new(kind: &str) -> Self {
        let mut out = String::with_capacity(64);
        out.push_str("{\"type\":");
        push_json_string(&mut out, kind);
        Self(out)
    }

    fn id(mut self, id: Option<&RequestId>) -> Self {
        if let Some(id) = id {
            self.0.push_str(",\"id\":");
            self.0.push_str(&id.json);
        }
        self
    }

    fn text(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        push_json_string(&mut self.0, value);
        self
    }

    fn number(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        self.key(key);
        let _ = write!(self.0, "{value}");
        self
    }

    fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.0.push_str(json);
        self
    }

    /// `"offset":N,"epoch":E`.
    fn position(self, position: &Position) -> Self {
        self.number("offset", position.offset)
            .text("epoch", &position.epoch)
    }

    fn key(&mut self, key: &str) {
        self.0.push(',');
        push_json_string(&mut self.0, key);
        self.0.push(':');
    }

    fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

/// `{"type":"welcome","name":NAME,"rooms":[...]}`.
pub(crate) fn welcome(name: &str, rooms: &[String]) -> String {
    let mut list = String::from("[");
    for (index, room) in rooms.iter().enumerate() {
        if index > 0 {
            list.push(',');
        }
        push_json_string(&mut list, room);
    }
    list.push(']');
    Out::new("welcome")
        .text("name", name)
        .raw("rooms", &list)
        .done()
}

/// `{"type":"joined","id":..,"room":R,"members":N,"offset":O,"epoch":E[,"recovered":B]}`:
/// `recovered` only when the join asked for it (with `since`).
pub(crate) fn joined(
    id: Option<&RequestId>,
    room: &str,
    members: usize,
    position: &Position,
    recovered: Option<bool>,
) -> String {
    let out = Out::new("joined")
        .id(id)
        .text("room", room)
        .number("members", members)
        .position(position);
    match recovered {
        Some(recovered) => out.raw("recovered", if recovered { "true" } else { "false" }),
        None => out,
    }
    .done()
}

/// A reply that only names its room: `left`, `said`, `created`, `closed`.
pub(crate) fn room_reply(kind: &str, id: Option<&RequestId>, room: &str) -> String {
    Out::new(kind).id(id).text("room", room).done()
}

/// `{"type":"pong","id":..}`.
pub(crate) fn pong(id: Option<&RequestId>) -> String {
    Out::new("pong").id(id).done()
}

/// `{"type":"rooms","id":..,"rooms":[{"name":..,"members":..}]}`.
pub(crate) fn rooms(id: Option<&RequestId>, rooms: &[(String, usize)]) -> String {
    let mut list = String::from("[");
    for (index, (name, members)) in rooms.iter().enumerate() {
        if index > 0 {
            list.push(',');
        }
        list.push_str("{\"name\":");
        push_json_string(&mut list, name);
        let _ = write!(list, ",\"members\":{members}}}");
    }
    list.push(']');
    Out::new("rooms").id(id).raw("rooms", &list).done()
}

/// `{"type":"message","room":R,"from":NAME,"text":T,"ts":RFC3339}`, as published: the hub
/// [stamps](stamp) it with its position.
pub(crate) fn chat_message(room: &str, from: &str, text: &str, at: SystemTime) -> String {
    Out::new("message")
        .text("room", room)
        .text("from", from)
        .text("text", text)
        .text("ts", &humantime::format_rfc3339_millis(at).to_string())
        .done()
}

/// The hub's stamp: a published JSON object gets `"offset":O,"epoch":E` as its last fields
/// (each node writes them once per publication, with the position the room gave it).
/// Anything else goes out as it is.
pub(crate) fn stamp(message: &Message, position: &Position) -> Message {
    let Some(object) = message
        .as_text()
        .and_then(|text| text.strip_suffix('}'))
        .filter(|object| object.starts_with('{'))
    else {
        return message.clone();
    };
    let mut out = Out(String::with_capacity(object.len() + 48));
    out.0.push_str(object);
    Message::text(out.position(position).done())
}

/// How every `room_closed` broadcast starts, so a connection can spot one cheaply.
const ROOM_CLOSED_PREFIX: &str = "{\"type\":\"room_closed\",";

/// `{"type":"room_closed","room":R,"by":NAME}`.
pub(crate) fn room_closed(room: &str, by: &str) -> String {
    Out::new("room_closed")
        .text("room", room)
        .text("by", by)
        .done()
}

/// The room a `room_closed` broadcast is about; `None` for every other message.
pub(crate) fn room_closed_room(message: &Message) -> Option<String> {
    let text = message.as_text()?;
    if !text.starts_with(ROOM_CLOSED_PREFIX) {
        return None;
    }
    let value: Value = serde_json::from_str(text).ok()?;
    value.get("room")?.as_str().map(str::to_owned)
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    // Serializing a string cannot fail.
    serde_json::to_string(text).unwrap_or_default()
}

/// Appends `text` as a JSON string literal.
fn push_json_string(out: &mut String, text: &str) {
    out.push_str(&json_string(text));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    fn parse_text(text: &str) -> Parsed {
        parse(&Message::text(text.to_owned()))
    }

    fn error_of(text: &str) -> String {
        let parsed = parse_text(text);
        let error = parsed.request.unwrap_err();
        assert_eq!(error.code(), 4000, "{text}");
        error.message().to_owned()
    }

    #[test]
    fn parses_every_request_with_string_and_numeric_ids() {
        let parsed = parse_text(r#"{"type":"say","room":"lobby","text":"hi","id":"a1"}"#);
        assert_eq!(
            parsed.request.unwrap(),
            Request::Say {
                room: "lobby".into(),
                text: "hi".into()
            }
        );
        let id = parsed.id.unwrap();
        assert_eq!((id.json.as_str(), id.text()), ("\"a1\"", "a1"));
        let parsed = parse_text(r#"{"type":"ping","id":7}"#);
        assert_eq!(parsed.request.unwrap(), Request::Ping);
        let id = parsed.id.unwrap();
        assert_eq!((id.json.as_str(), id.text()), ("7", "7"));
        assert_eq!(pong(Some(&id)), r#"{"type":"pong","id":7}"#);
        assert_eq!(
            parse_text(r#"{"type":"rooms"}"#).request.unwrap(),
            Request::Rooms
        );
        assert!(parse_text(r#"{"type":"rooms"}"#).id.is_none());
        for (text, request) in [
            (
                r#"{"type":"join","room":"x"}"#,
                Request::Join {
                    room: "x".into(),
                    since: None,
                },
            ),
            (
                r#"{"type":"join","room":"x","since":{"epoch":"e1","offset":7}}"#,
                Request::Join {
                    room: "x".into(),
                    since: Some(Position::new("e1", 7)),
                },
            ),
            (
                r#"{"type":"leave","room":"x"}"#,
                Request::Leave { room: "x".into() },
            ),
            (
                r#"{"type":"create","room":"x"}"#,
                Request::Create { room: "x".into() },
            ),
            (
                r#"{"type":"close","room":"x"}"#,
                Request::Close { room: "x".into() },
            ),
        ] {
            assert_eq!(parse_text(text).request.unwrap(), request);
        }
        assert_eq!(
            request_id_text(&Message::text(r#"{"type":"x","id":12.5}"#)).as_deref(),
            Some("12.5")
        );
    }

    #[test]
    fn every_malformed_message_is_a_4000_that_says_why() {
        assert!(error_of("{not json").starts_with("Malformed JSON: "));
        assert_eq!(error_of("[1,2]"), "Expected a JSON object");
        assert_eq!(error_of(r#"{"id":"1"}"#), "Missing field: type");
        assert_eq!(error_of(r#"{"type":5}"#), "Field type must be a string");
        assert_eq!(error_of(r#"{"type":"dance"}"#), r#"Unknown type: "dance""#);
        assert_eq!(error_of(r#"{"type":"join"}"#), "Missing field: room");
        assert_eq!(
            error_of(r#"{"type":"join","room":1}"#),
            "Field room must be a string"
        );
        assert_eq!(
            error_of(r#"{"type":"say","room":"lobby"}"#),
            "Missing field: text"
        );
        assert_eq!(
            error_of(r#"{"type":"ping","id":true}"#),
            "Field id must be a string or a number"
        );
        for since in [
            r#"5"#,
            r#"null"#,
            r#"{}"#,
            r#"{"epoch":"e"}"#,
            r#"{"offset":1}"#,
            r#"{"epoch":1,"offset":1}"#,
            r#"{"epoch":"e","offset":-1}"#,
            r#"{"epoch":"e","offset":1.5}"#,
            r#"{"epoch":"e","offset":"1"}"#,
        ] {
            let text = format!(r#"{{"type":"join","room":"lobby","since":{since}}}"#);
            assert!(
                error_of(&text).starts_with("Field since must be"),
                "{since}"
            );
        }
        // The id of a message that is otherwise wrong is still known, for the echo.
        let parsed = parse_text(r#"{"type":"dance","id":"d1"}"#);
        assert_eq!(parsed.id.unwrap().text(), "d1");
        let binary = parse(&Message::binary(b"{}".to_vec()));
        assert_eq!(binary.request.unwrap_err().code(), 4000);
    }

    #[test]
    fn writes_messages_in_the_spec_key_order_and_escapes_text() {
        let id = parse_text(r#"{"type":"ping","id":"q\"1"}"#).id.unwrap();
        let at = Position::new("00ff", 12);
        assert_eq!(
            joined(Some(&id), "lobby", 2, &at, None),
            r#"{"type":"joined","id":"q\"1","room":"lobby","members":2,"offset":12,"epoch":"00ff"}"#
        );
        assert_eq!(
            joined(None, "lobby", 2, &at, Some(true)),
            r#"{"type":"joined","room":"lobby","members":2,"offset":12,"epoch":"00ff","recovered":true}"#
        );
        assert_eq!(
            joined(None, "lobby", 2, &at, Some(false)),
            r#"{"type":"joined","room":"lobby","members":2,"offset":12,"epoch":"00ff","recovered":false}"#
        );
        assert_eq!(
            room_reply("left", None, "a\nb"),
            r#"{"type":"left","room":"a\nb"}"#
        );
        assert_eq!(
            welcome("ann", &["lobby".into(), "random".into()]),
            r#"{"type":"welcome","name":"ann","rooms":["lobby","random"]}"#
        );
        assert_eq!(
            rooms(None, &[("lobby".into(), 1), ("random".into(), 0)]),
            r#"{"type":"rooms","rooms":[{"name":"lobby","members":1},{"name":"random","members":0}]}"#
        );
        let at = UNIX_EPOCH + Duration::from_millis(1_754_308_800_123);
        let published = Message::text(chat_message("lobby", "ann", "<b>\u{1}", at));
        let stamped = stamp(&published, &Position::new("ab", 3));
        let message = stamped.as_text().unwrap().to_owned();
        assert_eq!(
            message,
            r#"{"type":"message","room":"lobby","from":"ann","text":"<b>\u0001","ts":"2025-08-04T12:00:00.123Z","offset":3,"epoch":"ab"}"#
        );
        let value: Value = serde_json::from_str(&message).unwrap();
        assert_eq!(value["text"], "<b>\u{1}");
        let closed = Message::text(room_closed("den", "bob"));
        assert_eq!(room_closed_room(&closed).as_deref(), Some("den"));
        assert_eq!(room_closed_room(&Message::text(message)), None);
        // Only JSON objects are stamped.
        for other in [Message::text("hello"), Message::binary(vec![b'{', b'}'])] {
            assert_eq!(stamp(&other, &Position::new("ab", 3)), other);
        }
    }

    #[test]
    fn names_are_one_to_thirty_two_characters() {
        assert!(valid_name("a"));
        assert!(valid_name(&"é".repeat(32)));
        assert!(!valid_name(""));
        assert!(!valid_name(&"x".repeat(33)));
        assert!(!valid_name("tab\there"));
    }
}
