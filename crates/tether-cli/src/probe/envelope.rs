//! The envelope checks (`--envelope`): error messages in the reference envelope
//! `{"type":"error","data":{"code":C,"message":M[,"retry_after_ms":N]},"meta":{"request_id":ID,"timestamp":T}}`
//! for malformed JSON and an unknown `type` (4000, the connection stays open), the request's
//! `id` echoed as `meta.request_id`, and a burst answered by 4005 with `data.retry_after_ms`,
//! then close 1008. These speak JSON through the library's client, like any application.

use serde_json::{Value, json};
use tether::{CloseInfo, Message, WebSocket};
use tokio::time::{Instant, timeout_at};

use super::Ctx;
use super::frames;
use super::raw;
use super::report::Outcome;

/// Not JSON: an object cut short.
const MALFORMED: &str = r#"{"type": "tether-probe", "id": "#;
/// The messages `envelope-rate-limit` sends at once.
const BURST: usize = 1000;
/// The most characters of a server's message shown in a detail.
const SHOWN: usize = 80;

/// An error message in the reference envelope.
#[derive(Debug)]
struct Envelope {
    code: u64,
    message: String,
    request_id: String,
    retry_after_ms: Option<u64>,
}

/// Reads `text` as an error message: `None` when it is not one (not JSON, or its `type` is
/// not `"error"`), an error when its envelope is not the reference one.
fn envelope(text: &str) -> Option<Result<Envelope, String>> {
    let value: Value = serde_json::from_str(text).ok()?;
    if value.get("type")?.as_str()? != "error" {
        return None;
    }
    Some(shape(&value))
}

fn shown(value: Option<&Value>) -> String {
    value.map_or_else(|| "none".to_owned(), Value::to_string)
}

/// Checks every field of the reference envelope.
fn shape(value: &Value) -> Result<Envelope, String> {
    let field = |path: &str| value.pointer(path);
    let code = field("/data/code").and_then(Value::as_u64).ok_or_else(|| {
        format!(
            "expected a numeric data.code, found {}",
            shown(field("/data/code"))
        )
    })?;
    let message = field("/data/message")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            format!(
                "expected a string data.message, found {}",
                shown(field("/data/message"))
            )
        })?;
    let request_id = match field("/meta/request_id") {
        Some(Value::String(id)) => id.clone(),
        Some(Value::Number(id)) => id.to_string(),
        other => {
            return Err(format!(
                "expected meta.request_id (string or number), found {}",
                shown(other)
            ));
        }
    };
    let timestamp = field("/meta/timestamp").and_then(Value::as_str);
    if !timestamp.is_some_and(looks_rfc3339) {
        return Err(format!(
            "expected an RFC 3339 meta.timestamp, found {}",
            shown(field("/meta/timestamp"))
        ));
    }
    let retry_after_ms = match field("/data/retry_after_ms") {
        None => None,
        Some(ms) => Some(ms.as_u64().ok_or_else(|| {
            format!("expected data.retry_after_ms in whole milliseconds, found {ms}")
        })?),
    };
    Ok(Envelope {
        code,
        message: message.to_owned(),
        request_id,
        retry_after_ms,
    })
}

/// `2025-08-04T12:00:00Z` and the like: the date and time separators in their places.
fn looks_rfc3339(text: &str) -> bool {
    let bytes = text.as_bytes();
    let at = |i: usize, expected: &[u8]| bytes.get(i).is_some_and(|b| expected.contains(b));
    bytes.len() >= 20
        && at(4, b"-")
        && at(7, b"-")
        && at(10, b"Tt ")
        && at(13, b":")
        && at(16, b":")
}

/// The first characters of a server's message.
fn cut(text: &str) -> String {
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}...", text.get(..end).unwrap_or_default()),
        None => text.to_owned(),
    }
}

/// What came next on the connection.
#[derive(Debug)]
enum Reply {
    /// An error message (its envelope, or what is wrong with it).
    Error(Result<Envelope, String>),
    /// Any other message, shown.
    Other(String),
    /// The connection closed: the code (1005, 1006 for none) and a description.
    Closed(u16, String),
    /// The connection failed otherwise.
    Failed(String),
    TimedOut,
}

fn describe(info: Option<CloseInfo>) -> (u16, String) {
    match info {
        Some(info) => {
            let code = info.reason.display_code();
            (
                code,
                frames::End::describe_close(Some(code), info.reason.reason()),
            )
        }
        None => (1006, "the connection ended".to_owned()),
    }
}

async fn next(ws: &mut WebSocket, deadline: Instant) -> Reply {
    match timeout_at(deadline, ws.recv()).await {
        Err(_) => Reply::TimedOut,
        Ok(Ok(Some(message))) => match message.as_text() {
            Some(text) => envelope(text).map_or_else(|| Reply::Other(cut(text)), Reply::Error),
            None => Reply::Other(format!("[binary {} bytes]", message.payload().len())),
        },
        Ok(Ok(None)) => {
            let (code, text) = describe(ws.close_info());
            Reply::Closed(code, text)
        }
        Ok(Err(error)) => match error.close_info() {
            Some(info) => {
                let (code, text) = describe(Some(info.clone()));
                Reply::Closed(code, text)
            }
            None => Reply::Failed(format!("{error:#}")),
        },
    }
}

/// Waits for the next error message, passing over other messages.
async fn next_error(ws: &mut WebSocket, ctx: &Ctx) -> Result<Envelope, String> {
    let deadline = ctx.deadline();
    let mut others = 0;
    loop {
        match next(ws, deadline).await {
            Reply::Error(envelope) => {
                return envelope.map_err(|why| {
                    format!("an error message not in the reference envelope: {why}")
                });
            }
            Reply::Other(_) => others += 1,
            Reply::Closed(_, close) => return Err(format!("{close} instead of an error message")),
            Reply::Failed(why) => return Err(why),
            Reply::TimedOut => {
                return Err(format!(
                    "no error message within {} ({others} other messages)",
                    raw::secs(ctx.timeout)
                ));
            }
        }
    }
}

async fn open(ctx: &Ctx) -> Result<WebSocket, String> {
    match timeout_at(ctx.deadline(), ctx.client().connect(&ctx.url)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(error)) => Err(format!("cannot connect: {error:#}")),
        Err(_) => Err("connecting timed out".to_owned()),
    }
}

async fn send(ws: &WebSocket, text: &str, ctx: &Ctx) -> Result<(), String> {
    match timeout_at(ctx.deadline(), ws.send(Message::text(text.to_owned()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(format!("sending failed: {error:#}")),
        Err(_) => Err("the server did not take the message in time".to_owned()),
    }
}

/// Opens a connection and sends `text`.
async fn open_and_send(ctx: &Ctx, text: &str) -> Result<WebSocket, String> {
    let ws = open(ctx).await?;
    send(&ws, text, ctx).await?;
    Ok(ws)
}

/// `envelope-malformed`: malformed JSON gets error 4000 in the reference envelope, and the
/// connection stays open.
pub(super) async fn malformed(ctx: &Ctx) -> Outcome {
    let mut ws = match open_and_send(ctx, MALFORMED).await {
        Ok(ws) => ws,
        Err(why) => return Outcome::fail(why),
    };
    let error = match next_error(&mut ws, ctx).await {
        Ok(error) if error.code == 4000 => error,
        Ok(error) => {
            return Outcome::fail(format!(
                "expected data.code 4000, found {} {:?}",
                error.code, error.message
            ));
        }
        Err(why) => return Outcome::fail(why),
    };
    // Open means: no close follows soon after the error.
    let grace = Instant::now() + (ctx.timeout / 5).min(std::time::Duration::from_millis(500));
    loop {
        match next(&mut ws, grace).await {
            Reply::TimedOut => break,
            Reply::Closed(_, close) => {
                return Outcome::fail(format!("error 4000, then {close}: expected to stay open"));
            }
            Reply::Failed(why) => return Outcome::fail(format!("error 4000, then {why}")),
            Reply::Error(_) | Reply::Other(_) => {}
        }
    }
    Outcome::pass(format!(
        "error 4000 {:?} in the reference envelope; the connection stays open",
        error.message
    ))
}

/// `envelope-recovers`: after the error for malformed JSON, the `--send` message is still
/// answered on the same connection.
pub(super) async fn recovers(ctx: &Ctx) -> Outcome {
    let Some(valid) = &ctx.send else {
        return Outcome::skip("no --send message to check the connection still answers");
    };
    let mut ws = match open_and_send(ctx, MALFORMED).await {
        Ok(ws) => ws,
        Err(why) => return Outcome::fail(why),
    };
    if let Err(why) = next_error(&mut ws, ctx).await {
        return Outcome::fail(format!("malformed JSON: {why}"));
    }
    if let Err(why) = send(&ws, valid, ctx).await {
        return Outcome::fail(format!("after the error, {why}"));
    }
    match next(&mut ws, ctx.deadline()).await {
        Reply::Other(text) => {
            Outcome::pass(format!("after the error, --send was answered: {text}"))
        }
        Reply::Error(Ok(error)) => Outcome::warn(format!(
            "after the error, --send got error {} {:?}: is it a valid message for this server?",
            error.code, error.message
        )),
        Reply::Error(Err(why)) => Outcome::fail(format!(
            "after the error, --send got an error message not in the reference envelope: {why}"
        )),
        Reply::Closed(_, close) => Outcome::fail(format!("after the error, {close}")),
        Reply::Failed(why) => Outcome::fail(format!("after the error, {why}")),
        Reply::TimedOut => Outcome::fail(format!(
            "after the error, no answer to --send within {}",
            raw::secs(ctx.timeout)
        )),
    }
}

/// A message of a type no server knows, with an `id`.
fn unknown(id: &str) -> String {
    json!({"type": "tether-probe-unknown", "id": id}).to_string()
}

fn fresh_id() -> String {
    format!("probe-{:08x}", raw::random_u64() >> 32)
}

/// `envelope-unknown-type`: a message of an unknown `type` gets error 4000.
pub(super) async fn unknown_type(ctx: &Ctx) -> Outcome {
    let mut ws = match open_and_send(ctx, &unknown(&fresh_id())).await {
        Ok(ws) => ws,
        Err(why) => return Outcome::fail(why),
    };
    match next_error(&mut ws, ctx).await {
        Ok(error) if error.code == 4000 => Outcome::pass(format!("error 4000 {:?}", error.message)),
        Ok(error) => Outcome::fail(format!(
            "expected data.code 4000, found {} {:?}",
            error.code, error.message
        )),
        Err(why) => Outcome::fail(why),
    }
}

/// `envelope-request-id`: the error for a message with an `id` carries it as
/// `meta.request_id`.
pub(super) async fn request_id(ctx: &Ctx) -> Outcome {
    let id = fresh_id();
    let mut ws = match open_and_send(ctx, &unknown(&id)).await {
        Ok(ws) => ws,
        Err(why) => return Outcome::fail(why),
    };
    match next_error(&mut ws, ctx).await {
        Ok(error) if error.request_id == id => {
            Outcome::pass(format!("meta.request_id echoes the message's id {id:?}"))
        }
        Ok(error) => Outcome::fail(format!(
            "expected meta.request_id {id:?}, found {:?}",
            error.request_id
        )),
        Err(why) => Outcome::fail(why),
    }
}

/// `envelope-rate-limit`: a burst of messages gets error 4005 with `data.retry_after_ms`,
/// then close 1008. No rate limit at all is a warning.
pub(super) async fn rate_limit(ctx: &Ctx) -> Outcome {
    let mut ws = match open(ctx).await {
        Ok(ws) => ws,
        Err(why) => return Outcome::fail(why),
    };
    let text = ctx.send.clone().unwrap_or_else(|| unknown(&fresh_id()));
    let sender = ws.sender();
    let burst = tokio::spawn(async move {
        for _ in 0..BURST {
            if sender.send(Message::text(text.clone())).await.is_err() {
                break;
            }
        }
    });
    let deadline = ctx.deadline();
    let mut limited = 0u32;
    let mut retry_after = None;
    let mut without_retry = 0;
    let end = loop {
        match next(&mut ws, deadline).await {
            Reply::Error(Ok(error)) if error.code == 4005 => {
                limited += 1;
                match error.retry_after_ms {
                    Some(ms) => {
                        retry_after.get_or_insert(ms);
                    }
                    None => without_retry += 1,
                }
            }
            Reply::Error(Ok(_)) | Reply::Other(_) => {}
            Reply::Error(Err(why)) => {
                burst.abort();
                return Outcome::fail(format!(
                    "an error message not in the reference envelope: {why}"
                ));
            }
            Reply::Closed(code, close) => break Some((code, close)),
            Reply::Failed(why) => {
                burst.abort();
                return Outcome::fail(why);
            }
            Reply::TimedOut => break None,
        }
    };
    burst.abort();
    if without_retry > 0 {
        return Outcome::fail(format!(
            "{without_retry} of {limited} errors 4005 without data.retry_after_ms"
        ));
    }
    let errors = match retry_after {
        Some(ms) => format!("{limited} errors 4005 (retry_after_ms {ms})"),
        None => "no error 4005".to_owned(),
    };
    match (limited, end) {
        (1.., Some((1008, close))) => Outcome::pass(format!("{errors}, then {close}")),
        (1.., Some((_, close))) => {
            Outcome::warn(format!("{errors}, then {close}: expected close 1008"))
        }
        (1.., None) => Outcome::warn(format!(
            "{errors}, but no close 1008 within {} of a {BURST}-message burst",
            raw::secs(ctx.timeout)
        )),
        (0, Some((_, close))) => Outcome::warn(format!(
            "{close} after a burst of {BURST} messages, with no error 4005 first"
        )),
        (0, None) => Outcome::warn(format!(
            "no rate limit seen: {BURST} messages at once, no error 4005 and no close"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_envelope_is_read_and_checked() {
        let good = r#"{"type":"error","data":{"code":4005,"message":"Too many requests","retry_after_ms":120},"meta":{"request_id":"abc-123","timestamp":"2025-08-04T12:00:00Z"}}"#;
        let read = envelope(good).and_then(Result::ok);
        assert!(read.as_ref().is_some_and(|e| e.code == 4005
            && e.request_id == "abc-123"
            && e.retry_after_ms == Some(120)));
        assert!(envelope(r#"{"type":"echo"}"#).is_none());
        assert!(envelope("not json").is_none());
        let no_meta = r#"{"type":"error","data":{"code":4000,"message":"Bad request"}}"#;
        assert!(envelope(no_meta).is_some_and(|e| e.is_err()));
        let bad_time = r#"{"type":"error","data":{"code":4000,"message":"m"},"meta":{"request_id":1,"timestamp":"yesterday"}}"#;
        assert!(envelope(bad_time).is_some_and(|e| e.is_err()));
    }

    #[test]
    fn long_messages_are_cut_on_a_char_boundary() {
        let long = "é".repeat(200);
        assert_eq!(cut(&long).chars().count(), SHOWN + 3);
        assert_eq!(cut("short"), "short");
    }
}
