//! The protocol checks: a normal upgrade, refused handshakes (no key, version 8, 64 KiB of
//! headers), ping and pong, the close handshake, invalid UTF-8 and a frame announcing
//! 2^63-1 bytes. Each opens one raw connection.

use bytes::BytesMut;
use tether_proto::frame::Opcode;
use tether_proto::handshake::ResponseHead;
use tokio::time::Instant;

use super::Ctx;
use super::frames::{self, Answer, End, Expect, ReadError, Via};
use super::raw::{self, HttpReply};
use super::report::Outcome;

/// How many extra headers `handshake-huge-headers` sends, and the size of each value.
const HUGE_HEADERS: usize = 64;
const HUGE_HEADER_VALUE: usize = 1024;

/// `upgrade`: a normal upgrade with the run's headers gets a valid 101.
pub(super) async fn upgrade(ctx: &Ctx) -> Outcome {
    let start = Instant::now();
    match raw::upgrade(&ctx.target, ctx.deadline()).await {
        Ok(conn) => Outcome::pass(format!(
            "101 Switching Protocols in {}{}",
            raw::millis(start.elapsed()),
            conn.protocol
                .map(|p| format!(", subprotocol {p}"))
                .unwrap_or_default()
        )),
        Err(why) => Outcome::fail(why),
    }
}

/// `status reason`, e.g. `400 Bad Request`.
fn status_line(head: &ResponseHead) -> String {
    match head.reason.trim() {
        "" => head.status.to_string(),
        reason => format!("{} {reason}", head.status),
    }
}

/// What the server did with a request that was never answered, for a detail.
fn no_answer(ctx: &Ctx, sent_all: bool) -> String {
    let sent = if sent_all {
        ""
    } else {
        " (and stopped reading the request)"
    };
    format!("no answer within {}{sent}", raw::secs(ctx.timeout))
}

/// `handshake-no-key`: an upgrade without `Sec-WebSocket-Key` gets 400.
pub(super) async fn no_key(ctx: &Ctx) -> Outcome {
    let head = raw::request_head(&ctx.target, None, "13", &[]);
    match raw::http_exchange(&ctx.target, &head, ctx.deadline()).await {
        Err(why) => Outcome::fail(why),
        Ok(HttpReply::Response(head)) => match head.status {
            400 => Outcome::pass(status_line(&head)),
            101 => Outcome::fail("expected 400, found 101: the upgrade was accepted without a key"),
            _ => Outcome::warn(format!("expected 400, found {}", status_line(&head))),
        },
        Ok(HttpReply::Closed(why)) => {
            Outcome::warn(format!("expected 400, found no response: {why}"))
        }
        Ok(HttpReply::TimedOut { sent_all }) => {
            Outcome::fail(format!("expected 400, found {}", no_answer(ctx, sent_all)))
        }
    }
}

/// `handshake-version-8`: an upgrade for version 8 gets 426 with the versions the server
/// speaks in `Sec-WebSocket-Version` (RFC 6455 4.4).
pub(super) async fn version_8(ctx: &Ctx) -> Outcome {
    let head = raw::request_head(&ctx.target, Some(raw::SAMPLE_KEY), "8", &[]);
    let head = match raw::http_exchange(&ctx.target, &head, ctx.deadline()).await {
        Err(why) => return Outcome::fail(why),
        Ok(HttpReply::Response(head)) => head,
        Ok(HttpReply::Closed(why)) => {
            return Outcome::warn(format!("expected 426, found no response: {why}"));
        }
        Ok(HttpReply::TimedOut { sent_all }) => {
            return Outcome::fail(format!("expected 426, found {}", no_answer(ctx, sent_all)));
        }
    };
    let versions = head
        .header_str("sec-websocket-version")
        .map(|v| format!("Sec-WebSocket-Version: {v}"));
    match (head.status, versions) {
        (426, Some(versions)) => Outcome::pass(format!("{} with {versions}", status_line(&head))),
        (426, None) => Outcome::warn(format!(
            "{} without a Sec-WebSocket-Version header naming the versions it speaks",
            status_line(&head)
        )),
        (101, _) => Outcome::warn(
            "accepted version 8 (101): the server also speaks the hybi-08 draft, which RFC 6455 \
             does not require",
        ),
        (400, Some(versions)) => Outcome::warn(format!(
            "expected 426, found {} (with {versions})",
            status_line(&head)
        )),
        (_, versions) => Outcome::warn(format!(
            "expected 426 with Sec-WebSocket-Version, found {}{}",
            status_line(&head),
            versions.map_or(String::new(), |v| format!(" (with {v})"))
        )),
    }
}

/// `handshake-huge-headers`: 64 KiB of headers are refused (431 or 400) or the connection
/// is closed; a server that waits for more is a fail.
pub(super) async fn huge_headers(ctx: &Ctx) -> Outcome {
    let value = "a".repeat(HUGE_HEADER_VALUE);
    let extra: Vec<(String, String)> = (0..HUGE_HEADERS)
        .map(|i| (format!("X-Tether-Probe-{i:02}"), value.clone()))
        .collect();
    let head = raw::request_head(&ctx.target, Some(raw::SAMPLE_KEY), "13", &extra);
    let size = format!("{} KiB of headers", head.len() / 1024);
    match raw::http_exchange(&ctx.target, &head, ctx.deadline()).await {
        Err(why) => Outcome::fail(why),
        Ok(HttpReply::Response(response)) => match response.status {
            431 | 400 => Outcome::pass(format!("{size}: {}", status_line(&response))),
            101 => Outcome::warn(format!(
                "{size} accepted (101): the server's header limits, if any, are above that"
            )),
            _ => Outcome::warn(format!(
                "{size}: expected 431 or 400, found {}",
                status_line(&response)
            )),
        },
        Ok(HttpReply::Closed(why)) => Outcome::pass(format!("{size}: {why} without a response")),
        Ok(HttpReply::TimedOut { sent_all }) => {
            Outcome::fail(format!("{size}: {}", no_answer(ctx, sent_all)))
        }
    }
}

/// `ping-pong`: a ping is answered by a pong with the same payload.
pub(super) async fn ping_pong(ctx: &Ctx) -> Outcome {
    let deadline = ctx.deadline();
    let start = Instant::now();
    let mut conn = match raw::upgrade(&ctx.target, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let expect = Expect {
        ping: raw::token("ping"),
        data: Answer::Nothing,
    };
    let mut out = BytesMut::new();
    frames::put_frame(&mut out, true, Opcode::Ping, &expect.ping);
    let (settled, _) = conn.exchange(&out, &expect, deadline).await;
    let stray = settled.stray_pong.map(|payload| {
        format!(
            "; a pong with another payload came: {:?}",
            String::from_utf8_lossy(&payload)
        )
    });
    match settled.end {
        End::Answered(_) => Outcome::pass(format!(
            "pong with the same {}-byte payload in {}",
            expect.ping.len(),
            raw::millis(start.elapsed())
        )),
        End::Closed { code, reason } => Outcome::fail(format!(
            "expected a pong, found {}",
            End::describe_close(code, &reason)
        )),
        End::Dropped(why) => Outcome::fail(format!("expected a pong: {why}")),
        End::TimedOut => Outcome::fail(format!(
            "no pong within {}{}",
            raw::secs(ctx.timeout),
            stray.unwrap_or_default()
        )),
    }
}

/// `close-echo`: close 1000 "bye" is answered by a close frame with 1000, then the server
/// closes the TCP connection (RFC 6455 7.1.1: the server closes first).
pub(super) async fn close_echo(ctx: &Ctx) -> Outcome {
    let deadline = ctx.deadline();
    let mut conn = match raw::upgrade(&ctx.target, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let mut out = BytesMut::new();
    frames::put_frame(
        &mut out,
        true,
        Opcode::Close,
        &frames::close_payload(1000, "bye"),
    );
    if let Err(why) = conn.send(&out, deadline).await {
        return Outcome::fail(why);
    }
    let (settled, _) = conn.exchange(&[], &Expect::default(), deadline).await;
    let (code, reason) = match settled.end {
        End::Closed { code, reason } => (code, reason),
        End::Dropped(why) => return Outcome::fail(format!("expected a close frame: {why}")),
        End::TimedOut | End::Answered(_) => {
            return Outcome::fail(format!("no close frame within {}", raw::secs(ctx.timeout)));
        }
    };
    let echoed = End::describe_close(code, &reason);
    // After its close frame the server should end the TCP connection.
    let tcp = loop {
        match conn.reader.next_frame(deadline).await {
            Ok(_) => continue,
            Err(ReadError::Eof | ReadError::Io(_)) => break Ok(()),
            Err(ReadError::Invalid(why)) => break Err(why),
            Err(ReadError::TimedOut) => {
                break Err(format!(
                    "the TCP connection was still open {} later",
                    raw::secs(ctx.timeout)
                ));
            }
        }
    };
    match (code, tcp) {
        (Some(1000), Ok(())) => Outcome::pass(format!("{echoed} echoed, then TCP closed")),
        (_, Err(why)) => Outcome::fail(format!("{echoed} echoed, but {why}")),
        (_, Ok(())) => Outcome::warn(format!(
            "expected close 1000 echoed, found {echoed} (then TCP closed)"
        )),
    }
}

/// `invalid-utf8`: a text message with invalid UTF-8 is answered by close 1007.
pub(super) async fn invalid_utf8(ctx: &Ctx) -> Outcome {
    let deadline = ctx.deadline();
    let mut conn = match raw::upgrade(&ctx.target, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let text: &[u8] = b"tether-probe \xff\xfe not utf-8";
    let expect = Expect {
        ping: raw::token("after-utf8"),
        data: Answer::echo(text.len() as u64, text),
    };
    let mut out = BytesMut::new();
    frames::put_frame(&mut out, true, Opcode::Text, text);
    frames::put_frame(&mut out, true, Opcode::Ping, &expect.ping);
    let (settled, _) = conn.exchange(&out, &expect, deadline).await;
    // A pong alone is no proof: the server may check the text only when it reads it.
    let settled = conn.confirm(settled, &expect, deadline).await;
    match settled.end {
        End::Closed {
            code: Some(1007),
            reason,
        } => Outcome::pass(End::describe_close(Some(1007), &reason)),
        End::Closed { code, reason } => Outcome::warn(format!(
            "expected close 1007, found {}",
            End::describe_close(code, &reason)
        )),
        End::Answered(Via::Data) => {
            Outcome::fail("accepted invalid UTF-8: the message was echoed back")
        }
        End::Answered(Via::Pong) => Outcome::fail(format!(
            "accepted invalid UTF-8: the next ping was answered, and no close came within {}",
            raw::secs(ctx.timeout)
        )),
        End::Dropped(why) => Outcome::fail(format!("expected close 1007: {why}")),
        End::TimedOut => Outcome::fail(format!(
            "no close within {} (nor an answer)",
            raw::secs(ctx.timeout)
        )),
    }
}

/// `huge-length`: a frame header announcing 2^63-1 bytes is refused at once (close 1009 or
/// 1002), without waiting for the payload.
pub(super) async fn huge_length(ctx: &Ctx) -> Outcome {
    let deadline = ctx.deadline();
    let mut conn = match raw::upgrade(&ctx.target, deadline).await {
        Ok(conn) => conn,
        Err(why) => return Outcome::fail(why),
    };
    let mut out = BytesMut::new();
    frames::put_header(&mut out, true, Opcode::Binary, u64::MAX >> 1);
    out.extend_from_slice(b"tether-probe");
    let start = Instant::now();
    let (settled, _) = conn.exchange(&out, &Expect::default(), deadline).await;
    let after = raw::millis(start.elapsed());
    match settled.end {
        End::Closed {
            code: code @ Some(1009 | 1002),
            reason,
        } => Outcome::pass(format!("{} in {after}", End::describe_close(code, &reason))),
        End::Closed { code, reason } => Outcome::warn(format!(
            "expected close 1009 or 1002, found {}",
            End::describe_close(code, &reason)
        )),
        End::Dropped(why) => {
            Outcome::warn(format!("refused without a close frame in {after}: {why}"))
        }
        End::Answered(_) => Outcome::fail("the server answered as if nothing happened"),
        End::TimedOut => Outcome::fail(format!(
            "no reaction within {}: the server waits for the 2^63-1 bytes",
            raw::secs(ctx.timeout)
        )),
    }
}
