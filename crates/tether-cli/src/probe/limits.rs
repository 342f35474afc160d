//! The limit checks: the message size limit (given or searched), and the load-shaped ones,
//! which end by checking that an honest client is still served ([`raw::served`]): a message
//! in 100,000 fragments, a flood of pings whose pongs are never read, a reset in the middle
//! of a frame, and 50 handshakes stalled half-way.

use std::time::Duration;

use bytes::BytesMut;
use tether_proto::frame::Opcode;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, timeout_at};

use super::Ctx;
use super::frames::{self, Answer, End, Expect, Via};
use super::raw;
use super::report::Outcome;

/// The most attempts `max-size` makes (each on its own connection).
pub(super) const MAX_STEPS: u32 = 40;
/// The first size the search tries, and the largest.
const SEARCH_FROM: u64 = 64 * 1024;
const SEARCH_TO: u64 = 64 * 1024 * 1024;
/// The fragments of `continuation-flood`, one byte each.
const FRAGMENTS: usize = 100_000;
/// The most pings `unread-pings` sends (in batches, for up to a second).
const UNREAD_PINGS: usize = 200_000;
const PING_BATCH: usize = 100;
/// The connections `stalled-handshakes` leaves half-way through their request.
const STALLED: usize = 50;

/// How long a pong is given to be followed by a close, for a server that answers pings
/// before it looks at the message sent before (see [`raw::RawConn::confirm`]).
const GRACE: Duration = Duration::from_millis(250);

fn grace(deadline: Instant) -> Instant {
    (Instant::now() + GRACE).min(deadline)
}

/// `65536 bytes` as `64 KiB`, `1048577 bytes` as is.
fn size(bytes: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    match bytes {
        0 => "0 bytes".to_owned(),
        n if n % MIB == 0 => format!("{} MiB", n / MIB),
        n if n % KIB == 0 => format!("{} KiB", n / KIB),
        n => format!("{n} bytes"),
    }
}

/// How the server took one message of a given size.
#[derive(Debug)]
enum Attempt {
    /// Echoed, or the ping after it was answered.
    Accepted,
    /// A close frame came.
    Refused { code: Option<u16>, reason: String },
}

/// Why an attempt told nothing about the limit.
#[derive(Debug)]
enum Trouble {
    /// The connection ended without a close frame.
    Dropped(String),
    /// Nothing by the deadline.
    Hung,
    /// No connection to try on.
    Failed(String),
}

/// Sends one text message of `len` bytes and a ping, on a new connection.
async fn attempt(ctx: &Ctx, len: u64) -> Result<Attempt, Trouble> {
    // The deadline leaves time to move the bytes both ways: 1 s per 16 MiB.
    let deadline = ctx.deadline() + Duration::from_millis(len / 16_384);
    let mut conn = match raw::upgrade(&ctx.target, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Err(Trouble::Failed(why)),
    };
    let Ok(count) = usize::try_from(len) else {
        return Err(Trouble::Failed(format!(
            "{len} bytes do not fit in memory here"
        )));
    };
    let expect = Expect {
        ping: raw::token("after-size"),
        data: Answer::echo(len, &[b'a'; 64]),
    };
    let mut out = BytesMut::with_capacity(count.saturating_add(64));
    frames::put_filled_frame(&mut out, Opcode::Text, count, b'a');
    frames::put_frame(&mut out, true, Opcode::Ping, &expect.ping);
    let (settled, _) = conn.exchange(&out, &expect, deadline).await;
    let settled = conn.confirm(settled, &expect, grace(deadline)).await;
    match settled.end {
        End::Answered(_) => Ok(Attempt::Accepted),
        End::Closed { code, reason } => Ok(Attempt::Refused { code, reason }),
        End::Dropped(why) => Err(Trouble::Dropped(why)),
        End::TimedOut => Err(Trouble::Hung),
    }
}

/// The outcome for an attempt that neither accepted nor refused `len` bytes properly.
fn broken(ctx: &Ctx, len: u64, trouble: Trouble) -> Outcome {
    match trouble {
        Trouble::Dropped(why) => Outcome::fail(format!(
            "a message of {}: dropped without a close frame: {why}",
            size(len)
        )),
        Trouble::Hung => Outcome::fail(format!(
            "a message of {}: no answer and no close within {}",
            size(len),
            raw::secs(ctx.timeout)
        )),
        Trouble::Failed(why) => Outcome::fail(why),
    }
}

/// `max-size`: a message over the limit is refused with close 1009. With `--max-size`, that
/// limit is checked; otherwise sizes double from 64 KiB until one is refused (or 64 MiB is
/// accepted: a warning), then the limit is found by bisection.
pub(super) async fn max_size(ctx: &Ctx) -> Outcome {
    match ctx.max_size {
        Some(limit) => told(ctx, limit).await,
        None => search(ctx).await,
    }
}

async fn told(ctx: &Ctx, limit: u64) -> Outcome {
    match attempt(ctx, limit).await {
        Ok(Attempt::Accepted) => {}
        Ok(Attempt::Refused { code, reason }) => {
            return Outcome::warn(format!(
                "a message of exactly {} got {}: the limit is lower than --max-size",
                size(limit),
                End::describe_close(code, &reason)
            ));
        }
        Err(trouble) => return broken(ctx, limit, trouble),
    }
    let over = limit.saturating_add(1);
    match attempt(ctx, over).await {
        Ok(Attempt::Refused {
            code: Some(1009),
            reason,
        }) => Outcome::pass(format!(
            "{} accepted, {} refused with {}",
            size(limit),
            size(over),
            End::describe_close(Some(1009), &reason)
        )),
        Ok(Attempt::Refused { code, reason }) => Outcome::warn(format!(
            "{} refused with {}, expected close 1009",
            size(over),
            End::describe_close(code, &reason)
        )),
        Ok(Attempt::Accepted) => Outcome::fail(format!(
            "{} accepted: over the limit --max-size gives",
            size(over)
        )),
        Err(trouble) => broken(ctx, over, trouble),
    }
}

async fn search(ctx: &Ctx) -> Outcome {
    let mut steps = 0;
    // The largest size accepted, and the smallest refused with its close.
    let mut accepted = 0;
    let mut len = SEARCH_FROM;
    let (mut refused, mut code, mut reason) = loop {
        steps += 1;
        match attempt(ctx, len).await {
            Ok(Attempt::Accepted) if len >= SEARCH_TO => {
                return Outcome::warn(format!(
                    "no limit found: a message of {} was accepted (the search stops there)",
                    size(len)
                ));
            }
            Ok(Attempt::Accepted) => {
                accepted = len;
                len *= 2;
            }
            Ok(Attempt::Refused { code, reason }) => break (len, code, reason),
            Err(trouble) => return broken(ctx, len, trouble),
        }
    };
    // Limits are often round: try one byte over the largest accepted size first.
    let mut next = (accepted > 0).then_some(accepted + 1);
    while refused - accepted > 1 && steps < MAX_STEPS {
        let len = next.take().unwrap_or(accepted + (refused - accepted) / 2);
        steps += 1;
        match attempt(ctx, len).await {
            Ok(Attempt::Accepted) => accepted = len,
            Ok(Attempt::Refused {
                code: refused_code,
                reason: refused_reason,
            }) => {
                (refused, code, reason) = (len, refused_code, refused_reason);
            }
            Err(trouble) => return broken(ctx, len, trouble),
        }
    }
    let close = End::describe_close(code, &reason);
    if accepted == 0 {
        return Outcome::warn(format!(
            "every text message got {close}, even {}: no limit to measure",
            size(refused)
        ));
    }
    let found = if refused - accepted == 1 {
        format!("limit {}: ", size(accepted))
    } else {
        format!("limit between {} and {}: ", size(accepted), size(refused))
    };
    let detail = format!(
        "{found}{} refused with {close} ({steps} attempts)",
        size(refused)
    );
    if code == Some(1009) {
        Outcome::pass(detail)
    } else {
        Outcome::warn(format!("{detail}, expected close 1009"))
    }
}

/// Adds whether an honest client is served after a load-shaped check to its `verdict`: not
/// served is a fail whatever the verdict was.
async fn then_served(ctx: &Ctx, verdict: Outcome) -> Outcome {
    match raw::served(&ctx.target, ctx.timeout).await {
        Ok(took) => Outcome {
            detail: format!(
                "{}; another connection served in {}",
                verdict.detail,
                raw::millis(took)
            ),
            ..verdict
        },
        Err(why) => Outcome::fail(format!("{}; then {why}", verdict.detail)),
    }
}

/// `continuation-flood`: a text message in 100,000 one-byte fragments is assembled (echoed,
/// or the ping after it answered) or refused with 1009 or 1008; then others are served.
pub(super) async fn continuation_flood(ctx: &Ctx) -> Outcome {
    let deadline = ctx.deadline();
    let mut conn = match raw::upgrade(&ctx.target, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let expect = Expect {
        ping: raw::token("after-flood"),
        data: Answer::echo(FRAGMENTS as u64, &[b'a'; 64]),
    };
    let mut out = BytesMut::with_capacity(FRAGMENTS * 7 + 64);
    for i in 0..FRAGMENTS {
        let opcode = if i == 0 {
            Opcode::Text
        } else {
            Opcode::Continuation
        };
        frames::put_frame(&mut out, i + 1 == FRAGMENTS, opcode, b"a");
    }
    frames::put_frame(&mut out, true, Opcode::Ping, &expect.ping);
    let start = Instant::now();
    let (settled, _) = conn.exchange(&out, &expect, deadline).await;
    let settled = conn.confirm(settled, &expect, grace(deadline)).await;
    drop(conn);
    let took = raw::millis(start.elapsed());
    let verdict = match settled.end {
        End::Answered(Via::Data) => Outcome::pass(format!(
            "{FRAGMENTS} fragments assembled and echoed in {took}"
        )),
        End::Answered(Via::Pong) => Outcome::pass(format!(
            "{FRAGMENTS} fragments assembled (the next ping answered) in {took}"
        )),
        End::Closed {
            code: code @ Some(1009 | 1008),
            reason,
        } => Outcome::pass(format!(
            "refused with {} after {took}",
            End::describe_close(code, &reason)
        )),
        End::Closed { code, reason } => Outcome::warn(format!(
            "expected the message or close 1009/1008, found {}",
            End::describe_close(code, &reason)
        )),
        End::Dropped(why) => Outcome::warn(format!("dropped without a close frame: {why}")),
        End::TimedOut => Outcome::fail(format!(
            "no answer and no close within {}",
            raw::secs(ctx.timeout)
        )),
    };
    then_served(ctx, verdict).await
}

/// `unread-pings`: one connection sends many pings and never reads the pongs; meanwhile
/// another connection must be served promptly. (What the flood costs the server in memory is
/// not the probe's business.)
pub(super) async fn unread_pings(ctx: &Ctx) -> Outcome {
    let mut conn = match raw::upgrade(&ctx.target, ctx.deadline()).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let payload = [b'p'; 125];
    let mut batch = BytesMut::new();
    for _ in 0..PING_BATCH {
        frames::put_frame(&mut batch, true, Opcode::Ping, &payload);
    }
    let window = (ctx.timeout / 2).min(Duration::from_secs(1));
    let flood_end = Instant::now() + window;
    let mut sent = 0;
    let flood = loop {
        if sent >= UNREAD_PINGS || Instant::now() >= flood_end {
            break format!("{sent} pings sent in {}, no pong read", raw::secs(window));
        }
        match timeout_at(flood_end, conn.writer.write_all(&batch)).await {
            Ok(Ok(())) => sent += PING_BATCH,
            Ok(Err(error)) => {
                break format!(
                    "the server ended the flooding connection after {sent} pings ({error})"
                );
            }
            Err(_) => {
                break format!(
                    "the server stopped reading after about {sent} unread pings (backpressure)"
                );
            }
        }
    };
    // The flooding connection stays open, unread, while another one is tried.
    let outcome = then_served(ctx, Outcome::pass(flood)).await;
    drop(conn);
    outcome
}

/// `rst-mid-frame`: a connection sends half a frame, then resets (SO_LINGER 0); another
/// connection must be served.
pub(super) async fn rst_mid_frame(ctx: &Ctx) -> Outcome {
    let deadline = ctx.deadline();
    let tcp = match raw::dial_tcp(&ctx.target, deadline).await {
        Ok(tcp) => tcp,
        Err(why) => return Outcome::fail(why),
    };
    // A zero linger makes the close a reset and never blocks (the deprecation is about
    // non-zero ones; `set_zero_linger` needs a newer tokio than the workspace asks for).
    #[allow(deprecated)]
    if let Err(error) = tcp.set_linger(Some(Duration::ZERO)) {
        return Outcome::skip(format!("cannot set SO_LINGER 0 here: {error}"));
    }
    let mut conn = match raw::upgrade_on(&ctx.target, tcp, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let mut out = BytesMut::new();
    frames::put_header(&mut out, true, Opcode::Binary, 1000);
    out.extend_from_slice(&[b'r'; 500]);
    if let Err(why) = conn.send(&out, deadline).await {
        return Outcome::fail(why);
    }
    drop(conn);
    // Give the server a moment to see the reset before the next connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    then_served(ctx, Outcome::pass("reset after 500 of 1000 payload bytes")).await
}

/// `stalled-handshakes`: 50 connections send half a request head and stall; another
/// connection must be served while they hang on.
pub(super) async fn stalled_handshakes(ctx: &Ctx) -> Outcome {
    let half = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upg",
        ctx.target.path, ctx.target.host_header
    );
    let mut stalled = Vec::with_capacity(STALLED);
    let mut refused = 0;
    let mut last_error = String::new();
    for _ in 0..STALLED {
        let deadline = ctx.deadline();
        let written = match raw::dial(&ctx.target, deadline).await {
            Ok(mut io) => match timeout_at(deadline, io.write_all(half.as_bytes())).await {
                Ok(Ok(())) => Ok(io),
                Ok(Err(error)) => Err(error.to_string()),
                Err(_) => Err("writing timed out".to_owned()),
            },
            Err(why) => Err(why),
        };
        match written {
            Ok(io) => stalled.push(io),
            Err(why) => {
                refused += 1;
                last_error = why;
            }
        }
    }
    let mut detail = format!("{} connections stalled mid-request", stalled.len());
    if refused > 0 {
        detail = format!("{detail} ({refused} refused: {last_error})");
    }
    let outcome = then_served(ctx, Outcome::pass(detail)).await;
    drop(stalled);
    outcome
}
