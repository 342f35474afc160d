//! The rooms' shared history in Redis: what [`RedisBackplane`](super::RedisBackplane) keeps
//! when the hub has history on, and how a recovery reads it back.
//!
//! Each room has two keys beside its channel `{PREFIX:room:NAME}` (the braces are a Redis
//! Cluster hash tag: the channel and both keys live in one slot, on one shard):
//!
//! - `{PREFIX:room:NAME}:history`, a stream: one entry per publication, with the id
//!   `0-OFFSET`, the fields `m` (the envelope, as on the channel) and `t` (Redis' clock, in
//!   ms). Capped at the history size (`MAXLEN`) and expiring after the history's ttl without
//!   a publication;
//! - `{PREFIX:room:NAME}:meta`, a hash: `epoch`, `offset` (the last publication's), and
//!   `seq:INSTANCE` (the last sequence number each publishing process wrote). Expires a day
//!   after the room's last publication or recovery, so an idle room keeps its epoch.
//!
//! One script ([`PUBLISH_SCRIPT`]) takes the next offset, appends to the stream and publishes
//! on the channel, atomically: every node sees a room's publications in offset order, and a
//! recovery sees each either in the stream or after its reply on the channel. When the meta
//! hash is gone (Redis restarted without persistence, or it expired) the script starts a new
//! epoch, given by the publisher. A publication sent again after a lost connection (same
//! instance and sequence number) is not appended twice.
//!
//! On the channel a positioned publication is `#OFFSET:EPOCH:` followed by the envelope.

use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, Value};
use bytes::Bytes;
use tether_proto::Message;

use super::wire::{self, Malformed};
use crate::hub::history::{HistoryConfig, Position, Recovery, RecoveryFailure, RecoveryOutcome};

/// How long a room's meta hash (its epoch and offset) outlives its last publication.
pub(super) const META_TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Takes the next offset, appends to the stream, publishes. KEYS: stream, meta. ARGV:
/// envelope, size, ttl (s), epoch for a new history, channel, `1` for `SPUBLISH`, instance,
/// sequence number, meta ttl (s). Returns the offset, or 0 for a publication seen already.
pub(super) const PUBLISH_SCRIPT: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[4]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
end
local seen = redis.call('HGET', KEYS[2], 'seq:' .. ARGV[7])
if seen and tonumber(ARGV[8]) <= tonumber(seen) then
  return 0
end
redis.call('HSET', KEYS[2], 'seq:' .. ARGV[7], ARGV[8])
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], '0-' .. offset, 'm', ARGV[1], 't', string.format('%d', ms))
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[9])
local framed = '#' .. offset .. ':' .. epoch .. ':' .. ARGV[1]
if ARGV[6] == '1' then
  redis.call('SPUBLISH', ARGV[5], framed)
else
  redis.call('PUBLISH', ARGV[5], framed)
end
return offset
";

/// Reads a room's position and the entries after an offset. KEYS: stream, meta. ARGV: the
/// offset (empty: none), the most entries to read, epoch for a new history, meta ttl (s).
/// Returns `{epoch, offset, now_ms, entries}`.
pub(super) const READ_SCRIPT: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[3]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'offset', 0)
end
redis.call('EXPIRE', KEYS[2], ARGV[4])
local top = tonumber(redis.call('HGET', KEYS[2], 'offset'))
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local entries = {}
if ARGV[1] ~= '' then
  local since = tonumber(ARGV[1])
  if since < top and top - since <= tonumber(ARGV[2]) then
    entries = redis.call('XRANGE', KEYS[1], '0-' .. (since + 1), '+', 'COUNT', top - since)
  end
end
return {epoch, top, ms, entries}
";

/// The two scripts, with their hashes.
pub(super) struct Scripts {
    pub(super) publish: Script,
    pub(super) read: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Self {
            publish: Script::new(PUBLISH_SCRIPT),
            read: Script::new(READ_SCRIPT),
        }
    }
}

/// The stream key of a room's channel.
pub(super) fn stream_key(channel: &str) -> String {
    format!("{channel}:history")
}

/// The meta key of a room's channel.
pub(super) fn meta_key(channel: &str) -> String {
    format!("{channel}:meta")
}

/// What the shared store adds to a publication: it goes through [`PUBLISH_SCRIPT`] with
/// these bounds.
#[derive(Debug, Clone)]
pub(super) struct Append {
    /// The most entries the stream keeps.
    pub(super) size: usize,
    /// How long the stream lives without a publication, in whole seconds (at least 1).
    pub(super) ttl_secs: u64,
    /// The epoch to start when the room has none in Redis.
    pub(super) new_epoch: Arc<str>,
    /// The publisher's instance (hex) and the publication's sequence number.
    pub(super) instance: Arc<str>,
    pub(super) seq: u64,
}

/// Adds the publish script's call for `payload` on `channel` to `pipe`, by hash or
/// (`by_text`) by its text.
pub(super) fn push_publish(
    pipe: &mut ::redis::Pipeline,
    scripts: &Scripts,
    channel: &str,
    payload: &Bytes,
    append: &Append,
    sharded: bool,
    by_text: bool,
) {
    if by_text {
        pipe.cmd("EVAL").arg(PUBLISH_SCRIPT);
    } else {
        pipe.cmd("EVALSHA").arg(scripts.publish.get_hash());
    }
    pipe.arg(2)
        .arg(stream_key(channel))
        .arg(meta_key(channel))
        .arg(&payload[..])
        .arg(append.size)
        .arg(append.ttl_secs)
        .arg(&*append.new_epoch)
        .arg(channel)
        .arg(if sharded { "1" } else { "0" })
        .arg(&*append.instance)
        .arg(append.seq)
        .arg(META_TTL.as_secs());
}

/// The read script's call for `channel`, from `since` (an offset), at most `size` entries,
/// by hash or (`by_text`) by its text.
pub(super) fn read_command(
    scripts: &Scripts,
    channel: &str,
    since: Option<u64>,
    size: usize,
    new_epoch: &str,
    by_text: bool,
) -> ::redis::Cmd {
    let mut cmd = if by_text {
        let mut cmd = ::redis::cmd("EVAL");
        cmd.arg(READ_SCRIPT);
        cmd
    } else {
        let mut cmd = ::redis::cmd("EVALSHA");
        cmd.arg(scripts.read.get_hash());
        cmd
    };
    cmd.arg(2)
        .arg(stream_key(channel))
        .arg(meta_key(channel))
        .arg(since.map(|offset| offset.to_string()).unwrap_or_default())
        .arg(size)
        .arg(new_epoch)
        .arg(META_TTL.as_secs());
    cmd
}

/// A channel message that carries its position: `#OFFSET:EPOCH:` and the envelope.
pub(super) fn split_positioned(bytes: &Bytes) -> Result<Option<(Position, Bytes)>, Malformed> {
    if bytes.first() != Some(&b'#') {
        return Ok(None);
    }
    let rest = bytes.get(1..).unwrap_or_default();
    let mut parts = rest.splitn(3, |&byte| byte == b':');
    let (Some(digits), Some(epoch), Some(_)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Malformed::Truncated);
    };
    // The envelope starts after `#`, the digits, `:`, the epoch and `:`.
    let at = 1 + digits.len() + 1 + epoch.len() + 1;
    let offset: u64 = std::str::from_utf8(digits)
        .ok()
        .and_then(|offset| offset.parse().ok())
        .ok_or(Malformed::Truncated)?;
    let epoch = std::str::from_utf8(epoch).map_err(|_| Malformed::NotUtf8)?;
    Ok(Some((
        Position::new(epoch, offset),
        bytes.slice(at.min(bytes.len())..),
    )))
}

/// Checks the read script's reply against `since` and `history`: the room's position and the
/// missed publications (as published: the hub stamps them), or why they cannot be given.
pub(super) fn recovery_from(
    reply: Value,
    since: Option<&Position>,
    history: &HistoryConfig,
) -> Result<Recovery, RecoveryFailure> {
    let unreadable = || RecoveryFailure::Unavailable;
    let Value::Array(mut parts) = reply else {
        return Err(unreadable());
    };
    if parts.len() != 4 {
        return Err(unreadable());
    }
    let entries = parts.pop().ok_or_else(unreadable)?;
    let now_ms = as_u64(&parts.pop().ok_or_else(unreadable)?).ok_or_else(unreadable)?;
    let top = as_u64(&parts.pop().ok_or_else(unreadable)?).ok_or_else(unreadable)?;
    let epoch = as_string(&parts.pop().ok_or_else(unreadable)?).ok_or_else(unreadable)?;
    let position = Position::new(epoch, top);
    let Some(since) = since else {
        return Ok(Recovery {
            position,
            outcome: RecoveryOutcome::NotAsked,
        });
    };
    let outcome = match missed(entries, since, &position, history, now_ms) {
        Ok(missed) => RecoveryOutcome::Recovered(missed),
        Err(failure) => RecoveryOutcome::Failed(failure),
    };
    Ok(Recovery { position, outcome })
}

/// The publications after `since` up to `position`, checked: contiguous, none older than the
/// ttl, at most `history.size`.
fn missed(
    entries: Value,
    since: &Position,
    position: &Position,
    history: &HistoryConfig,
    now_ms: u64,
) -> Result<Vec<Message>, RecoveryFailure> {
    if since.epoch != position.epoch || since.offset > position.offset {
        return Err(RecoveryFailure::EpochChanged);
    }
    let count = position.offset - since.offset;
    if count == 0 {
        return Ok(Vec::new());
    }
    if !usize::try_from(count).is_ok_and(|count| count <= history.size) {
        return Err(RecoveryFailure::TooMany);
    }
    let Value::Array(entries) = entries else {
        return Err(RecoveryFailure::Unavailable);
    };
    let ttl_ms = u64::try_from(history.ttl.as_millis()).unwrap_or(u64::MAX);
    let mut missed = Vec::with_capacity(entries.len());
    for (expected, entry) in (since.offset + 1..).zip(entries) {
        let (offset, at_ms, payload) = entry_parts(entry).ok_or(RecoveryFailure::Unavailable)?;
        if offset != expected || now_ms.saturating_sub(at_ms) > ttl_ms {
            // Trimmed by age or size, or expired: the gap cannot be covered.
            return Err(RecoveryFailure::TooOld);
        }
        let envelope = wire::decode(payload).map_err(|_| RecoveryFailure::Unavailable)?;
        missed.push(envelope.message);
    }
    if missed.len() as u64 != count {
        return Err(RecoveryFailure::TooOld);
    }
    Ok(missed)
}

/// A stream entry `[id, [field, value, ...]]`: its offset (`0-OFFSET`), time and envelope.
fn entry_parts(entry: Value) -> Option<(u64, u64, Bytes)> {
    let Value::Array(mut pair) = entry else {
        return None;
    };
    let fields = pair.pop()?;
    let id = as_string(&pair.pop()?)?;
    let offset = id.strip_prefix("0-")?.parse().ok()?;
    let fields = match fields {
        Value::Array(fields) => fields,
        Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => return None,
    };
    let mut at_ms = None;
    let mut payload = None;
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        match as_string(&name)?.as_str() {
            "t" => at_ms = as_u64(&value),
            "m" => {
                if let Value::BulkString(bytes) = value {
                    payload = Some(Bytes::from(bytes));
                }
            }
            _ => {}
        }
    }
    Some((offset, at_ms?, payload?))
}

fn as_string(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(text) => Some(text.clone()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(number) => u64::try_from(*number).ok(),
        _ => as_string(value)?.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

    use super::*;

    #[test]
    fn positioned_messages_split_into_position_and_envelope() {
        let framed = Bytes::from_static(b"#1234:00ff:\x01rest:with:colons");
        let (position, envelope) = split_positioned(&framed).unwrap().unwrap();
        assert_eq!(position, Position::new("00ff", 1234));
        assert_eq!(&envelope[..], b"\x01rest:with:colons");
        assert!(
            split_positioned(&Bytes::from_static(b"\x01plain"))
                .unwrap()
                .is_none()
        );
        for broken in [&b"#12"[..], b"#x:e:", b"#1:e"] {
            assert!(
                split_positioned(&Bytes::copy_from_slice(broken)).is_err(),
                "{broken:?}"
            );
        }
    }

    fn entry(offset: u64, at_ms: u64, text: &str) -> Value {
        let envelope = wire::draft("n", 1, &Message::text(text), false).finish(offset);
        Value::Array(vec![
            Value::BulkString(format!("0-{offset}").into_bytes()),
            Value::Array(vec![
                Value::BulkString(b"m".to_vec()),
                Value::BulkString(envelope.to_vec()),
                Value::BulkString(b"t".to_vec()),
                Value::BulkString(at_ms.to_string().into_bytes()),
            ]),
        ])
    }

    fn reply(top: u64, now_ms: u64, entries: Vec<Value>) -> Value {
        Value::Array(vec![
            Value::BulkString(b"e1".to_vec()),
            Value::Int(top as i64),
            Value::Int(now_ms as i64),
            Value::Array(entries),
        ])
    }

    #[test]
    fn a_reply_is_checked_for_epoch_count_gaps_and_age() {
        let history = HistoryConfig::new(3, Duration::from_secs(10));
        let since = Position::new("e1", 1);
        let fresh = || vec![entry(2, 95_000, "b"), entry(3, 96_000, "c")];
        let recovery = recovery_from(reply(3, 100_000, fresh()), Some(&since), &history).unwrap();
        assert_eq!(recovery.position, Position::new("e1", 3));
        assert_eq!(recovery.missed(), [Message::text("b"), Message::text("c")]);

        let other = Position::new("e0", 1);
        let failure = |value, since: &Position| {
            recovery_from(value, Some(since), &history)
                .unwrap()
                .failure()
        };
        assert_eq!(
            failure(reply(3, 100_000, fresh()), &other),
            Some(RecoveryFailure::EpochChanged)
        );
        assert_eq!(
            failure(reply(3, 100_000, fresh()), &Position::new("e1", 9)),
            Some(RecoveryFailure::EpochChanged)
        );
        assert_eq!(
            failure(reply(9, 100_000, vec![]), &since),
            Some(RecoveryFailure::TooMany)
        );
        // Offset 2 was trimmed away.
        assert_eq!(
            failure(reply(3, 100_000, vec![entry(3, 96_000, "c")]), &since),
            Some(RecoveryFailure::TooOld)
        );
        // Offset 2 is older than the ttl.
        let old = vec![entry(2, 80_000, "b"), entry(3, 96_000, "c")];
        assert_eq!(
            failure(reply(3, 100_000, old), &since),
            Some(RecoveryFailure::TooOld)
        );
        // Nothing missed.
        let caught_up = recovery_from(reply(1, 100_000, vec![]), Some(&since), &history).unwrap();
        assert!(caught_up.recovered() && caught_up.missed().is_empty());
        // A plain join only reports the position.
        let plain = recovery_from(reply(3, 100_000, vec![]), None, &history).unwrap();
        assert_eq!(plain.outcome, RecoveryOutcome::NotAsked);
    }
}
