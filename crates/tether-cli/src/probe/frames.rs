//! Frames on a raw connection: client frames built with `tether_proto`'s header encoder and
//! masking (complete, fragmented, or only a header announcing more), and the reading side:
//! the server's HTTP response head, then whatever frames it sends, with a deadline on every
//! read, until the answer a check expects ([`FrameReader::settle`]).
//!
//! Nothing a server sends can panic here: headers go through [`FrameHeader::decode`] and
//! payloads are kept only up to [`KEEP`] bytes (the rest is read and dropped).

use std::fmt;
use std::io;

use bytes::{Buf, BytesMut};
use tether_proto::frame::{FrameHeader, Opcode, apply_mask};
use tether_proto::handshake::{HandshakeConfig, ResponseHead, parse_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::time::{Instant, timeout_at};

use super::raw::{Io, random_u64};

/// The most payload bytes kept of one received frame.
const KEEP: usize = 64 * 1024;

/// Appends one masked client frame.
pub(super) fn put_frame(out: &mut BytesMut, fin: bool, opcode: Opcode, payload: &[u8]) {
    let start = put_header(out, fin, opcode, payload.len() as u64);
    out.extend_from_slice(payload);
    mask_from(out, start);
}

/// Appends one masked frame whose payload is `len` copies of `byte`.
pub(super) fn put_filled_frame(out: &mut BytesMut, opcode: Opcode, len: usize, byte: u8) {
    let start = put_header(out, true, opcode, len as u64);
    out.resize(start + len, byte);
    mask_from(out, start);
}

/// Appends a masked header announcing `len` bytes; returns where the payload starts. The
/// key is kept in the header's last four bytes, where [`mask_from`] finds it.
pub(super) fn put_header(out: &mut BytesMut, fin: bool, opcode: Opcode, len: u64) -> usize {
    let header = FrameHeader {
        fin,
        rsv: 0,
        opcode,
        mask: Some(mask_key()),
        payload_len: len,
    };
    header.encode(out);
    out.len()
}

/// A fresh masking key.
fn mask_key() -> [u8; 4] {
    let [a, b, c, d, ..] = random_u64().to_be_bytes();
    [a, b, c, d]
}

/// Masks `out[start..]` with the key the header just before `start` carries.
fn mask_from(out: &mut BytesMut, start: usize) {
    let key = start
        .checked_sub(4)
        .and_then(|at| out.get(at..start))
        .and_then(|key| <[u8; 4]>::try_from(key).ok())
        .unwrap_or_default();
    if let Some(payload) = out.get_mut(start..) {
        apply_mask(payload, key, 0);
    }
}

/// The payload of a close frame.
pub(super) fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// The code and reason of a close frame's payload.
fn close_fields(payload: &[u8]) -> (Option<u16>, String) {
    match payload {
        [high, low, reason @ ..] => (
            Some(u16::from_be_bytes([*high, *low])),
            String::from_utf8_lossy(reason).into_owned(),
        ),
        _ => (None, String::new()),
    }
}

/// Why a read ended without what it waited for.
#[derive(Debug)]
pub(super) enum ReadError {
    /// The server closed the stream.
    Eof,
    /// The stream failed (a reset, most often).
    Io(io::Error),
    /// The server sent something that does not parse.
    Invalid(String),
    /// The deadline passed.
    TimedOut,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Eof => f.write_str("the server closed the connection"),
            Self::Io(error) if error.kind() == io::ErrorKind::ConnectionReset => {
                f.write_str("the server reset the connection")
            }
            Self::Io(error) => write!(f, "the connection failed: {error}"),
            Self::Invalid(why) => f.write_str(why),
            Self::TimedOut => f.write_str("timed out"),
        }
    }
}

/// One frame from the server, its payload kept up to [`KEEP`] bytes.
#[derive(Debug)]
pub(super) struct Frame {
    pub(super) fin: bool,
    pub(super) opcode: Opcode,
    /// The announced payload length.
    pub(super) len: u64,
    /// The first bytes of the payload, unmasked.
    pub(super) payload: Vec<u8>,
}

/// The receiving half of a raw connection, with its buffer.
pub(super) struct FrameReader {
    io: ReadHalf<Box<dyn Io>>,
    buf: BytesMut,
}

impl FrameReader {
    pub(super) fn new(io: ReadHalf<Box<dyn Io>>) -> Self {
        Self {
            io,
            buf: BytesMut::with_capacity(KEEP),
        }
    }

    /// Reads more bytes into the buffer.
    async fn fill(&mut self, deadline: Instant) -> Result<(), ReadError> {
        self.buf.reserve(KEEP);
        match timeout_at(deadline, self.io.read_buf(&mut self.buf)).await {
            Err(_) => Err(ReadError::TimedOut),
            Ok(Ok(0)) => Err(ReadError::Eof),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(ReadError::Io(error)),
        }
    }

    /// Reads an HTTP response head, whatever its status; bytes after it stay buffered.
    pub(super) async fn read_head(&mut self, deadline: Instant) -> Result<ResponseHead, ReadError> {
        // Refusals may carry more headers than an upgrade; the limits only bound memory.
        let config = HandshakeConfig::default()
            .with_max_header_bytes(64 * 1024)
            .with_max_headers(256);
        loop {
            match parse_response(&self.buf, &config) {
                Ok(Some((head, used))) => {
                    self.buf.advance(used);
                    return Ok(head);
                }
                Ok(None) => self.fill(deadline).await?,
                Err(error) => {
                    return Err(ReadError::Invalid(format!(
                        "the server's HTTP response does not parse: {error}"
                    )));
                }
            }
        }
    }

    /// Reads one frame.
    pub(super) async fn next_frame(&mut self, deadline: Instant) -> Result<Frame, ReadError> {
        let (header, head_len) = loop {
            match FrameHeader::decode(&self.buf) {
                Ok(Some(decoded)) => break decoded,
                Ok(None) => self.fill(deadline).await?,
                Err(error) => {
                    return Err(ReadError::Invalid(format!(
                        "the server sent an invalid frame header: {error}"
                    )));
                }
            }
        };
        self.buf.advance(head_len);
        let mut remaining = header.payload_len;
        let mut payload = Vec::new();
        while remaining > 0 {
            if self.buf.is_empty() {
                self.fill(deadline).await?;
            }
            let take = usize::try_from(remaining).map_or(self.buf.len(), |r| r.min(self.buf.len()));
            let keep = take.min(KEEP.saturating_sub(payload.len()));
            payload.extend_from_slice(self.buf.get(..keep).unwrap_or_default());
            self.buf.advance(take);
            remaining = remaining.saturating_sub(take as u64);
        }
        if let Some(key) = header.mask {
            // A server must not mask; the payload is shown as sent anyway.
            apply_mask(&mut payload, key, 0);
        }
        Ok(Frame {
            fin: header.fin,
            opcode: header.opcode,
            len: header.payload_len,
            payload,
        })
    }

    /// Reads until the server answers (see [`Expect`]), closes, drops or `deadline` passes.
    pub(super) async fn settle(&mut self, expect: &Expect, deadline: Instant) -> Settled {
        let mut settled = Settled {
            end: End::TimedOut,
            echoed: 0,
            stray_pong: None,
        };
        // The data message being received: its length so far and its first bytes.
        let mut message_len = 0u64;
        let mut message_head: Vec<u8> = Vec::new();
        settled.end = loop {
            let frame = match self.next_frame(deadline).await {
                Ok(frame) => frame,
                Err(ReadError::TimedOut) => break End::TimedOut,
                Err(error) => break End::Dropped(error.to_string()),
            };
            match frame.opcode {
                Opcode::Pong if !expect.ping.is_empty() && frame.payload == expect.ping => {
                    break End::Answered(Via::Pong);
                }
                Opcode::Pong => {
                    settled.stray_pong.get_or_insert(frame.payload);
                }
                Opcode::Close => {
                    let (code, reason) = close_fields(&frame.payload);
                    break End::Closed { code, reason };
                }
                Opcode::Ping => {}
                Opcode::Text | Opcode::Binary | Opcode::Continuation => {
                    settled.echoed = settled.echoed.saturating_add(frame.len);
                    message_len = message_len.saturating_add(frame.len);
                    let room = ECHO_HEAD.saturating_sub(message_head.len());
                    message_head.extend(frame.payload.iter().take(room));
                    if !frame.fin {
                        continue;
                    }
                    let answered = match &expect.data {
                        Answer::Nothing => false,
                        Answer::Any => true,
                        Answer::Echo { len, head } => message_len == *len && message_head == *head,
                    };
                    if answered {
                        break End::Answered(Via::Data);
                    }
                    message_len = 0;
                    message_head.clear();
                }
            }
        };
        settled
    }
}

/// How many first bytes of a message are compared to recognise an echo.
const ECHO_HEAD: usize = 32;

/// What counts as the server's answer in [`FrameReader::settle`].
#[derive(Debug, Default)]
pub(super) struct Expect {
    /// A pong with this payload (empty: no ping was sent).
    pub(super) ping: Vec<u8>,
    /// A data message.
    pub(super) data: Answer,
}

/// The data message that counts as an answer.
#[derive(Debug, Clone, Default)]
pub(super) enum Answer {
    /// None: only the pong answers.
    #[default]
    Nothing,
    /// Any data message.
    Any,
    /// The echo of a message of `len` bytes that starts with `head`.
    Echo { len: u64, head: Vec<u8> },
}

impl Answer {
    /// The echo of `len` bytes starting with `payload`'s first bytes.
    pub(super) fn echo(len: u64, payload: &[u8]) -> Self {
        Self::Echo {
            len,
            head: payload.iter().take(ECHO_HEAD).copied().collect(),
        }
    }
}

/// How a wait for the server's answer ended.
#[derive(Debug)]
pub(super) struct Settled {
    pub(super) end: End,
    /// Bytes of data messages received meanwhile.
    pub(super) echoed: u64,
    /// The payload of the first pong that answered no ping of ours.
    pub(super) stray_pong: Option<Vec<u8>>,
}

/// What answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Via {
    /// The pong to our ping.
    Pong,
    /// The data message [`Expect`] described.
    Data,
}

/// The end of [`Settled`].
#[derive(Debug)]
pub(super) enum End {
    /// The expected pong or data came.
    Answered(Via),
    /// A close frame came.
    Closed { code: Option<u16>, reason: String },
    /// The connection ended (or broke) without a close frame.
    Dropped(String),
    /// Nothing conclusive came by the deadline.
    TimedOut,
}

impl End {
    /// A close frame, shown as `close 1009 "message too big"`.
    pub(super) fn describe_close(code: Option<u16>, reason: &str) -> String {
        match (code, reason) {
            (None, _) => "a close frame without a code".to_owned(),
            (Some(code), "") => format!("close {code}"),
            (Some(code), reason) => format!("close {code} {reason:?}"),
        }
    }
}

/// An upgraded raw connection.
pub(super) struct RawConn {
    pub(super) reader: FrameReader,
    pub(super) writer: WriteHalf<Box<dyn Io>>,
    /// The subprotocol the server chose.
    pub(super) protocol: Option<String>,
}

impl RawConn {
    /// Writes `bytes` by `deadline`.
    pub(super) async fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), String> {
        let write = async {
            self.writer.write_all(bytes).await?;
            self.writer.flush().await
        };
        match timeout_at(deadline, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(format!("sending failed: {error}")),
            Err(_) => Err("the server did not take the data in time".to_owned()),
        }
    }

    /// Writes `bytes` while reading the server's answer, so neither side can block the other;
    /// returns the answer and the write's error, if any (a server that closes on an early
    /// frame often resets the rest of the write).
    pub(super) async fn exchange(
        &mut self,
        bytes: &[u8],
        expect: &Expect,
        deadline: Instant,
    ) -> (Settled, Option<io::Error>) {
        let Self { reader, writer, .. } = self;
        let write = async {
            writer.write_all(bytes).await?;
            writer.flush().await
        };
        let read = reader.settle(expect, deadline);
        tokio::pin!(write, read);
        let mut written = false;
        let mut write_error = None;
        loop {
            tokio::select! {
                result = &mut write, if !written => {
                    written = true;
                    write_error = result.err();
                }
                settled = &mut read => return (settled, write_error),
            }
        }
    }
}

impl RawConn {
    /// After an answer by pong, reads on until `until` in case a close (or the echo) still
    /// comes: a server may answer a ping before it looks at the message sent before it (a
    /// UTF-8 check or a limit applied when the application reads the message).
    pub(super) async fn confirm(
        &mut self,
        settled: Settled,
        expect: &Expect,
        until: Instant,
    ) -> Settled {
        if !matches!(settled.end, End::Answered(Via::Pong)) {
            return settled;
        }
        let rest = Expect {
            ping: Vec::new(),
            data: expect.data.clone(),
        };
        let later = self.reader.settle(&rest, until).await;
        match later.end {
            End::TimedOut => settled,
            end => Settled {
                end,
                echoed: settled.echoed.saturating_add(later.echoed),
                stray_pong: settled.stray_pong,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_masked_and_decode_back() {
        let mut out = BytesMut::new();
        put_frame(&mut out, false, Opcode::Text, b"hello");
        let (header, len) = FrameHeader::decode(&out).ok().flatten().unwrap_or_else(|| {
            panic!("no header");
        });
        assert!(!header.fin);
        assert_eq!(header.opcode, Opcode::Text);
        let mut payload = out.get(len..).unwrap_or_default().to_vec();
        apply_mask(&mut payload, header.mask.unwrap_or_default(), 0);
        assert_eq!(payload, b"hello");

        let mut out = BytesMut::new();
        put_filled_frame(&mut out, Opcode::Binary, 70_000, b'a');
        let (header, len) = FrameHeader::decode(&out).ok().flatten().unwrap_or_else(|| {
            panic!("no header");
        });
        assert_eq!(header.payload_len, 70_000);
        let mut payload = out.get(len..).unwrap_or_default().to_vec();
        apply_mask(&mut payload, header.mask.unwrap_or_default(), 0);
        assert!(payload.iter().all(|&b| b == b'a'));
    }

    #[test]
    fn close_payloads_parse_whatever_their_length() {
        assert_eq!(
            close_fields(&close_payload(1000, "bye")),
            (Some(1000), "bye".to_owned())
        );
        assert_eq!(close_fields(&[3]), (None, String::new()));
        assert_eq!(close_fields(&[]), (None, String::new()));
    }

    /// Feeds `bytes` as a server's whole output and reads it as a response head, then frames.
    async fn read_all(bytes: Vec<u8>) -> Settled {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let io: Box<dyn Io> = Box::new(client);
        let (read, _write) = tokio::io::split(io);
        let mut reader = FrameReader::new(read);
        tokio::spawn(async move {
            let _ = server.write_all(&bytes).await;
            // Held open a little, so that some inputs end by the deadline, not the stream.
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        });
        let deadline = Instant::now() + std::time::Duration::from_millis(20);
        let _ = reader.read_head(deadline).await;
        let expect = Expect {
            ping: b"x".to_vec(),
            data: Answer::echo(3, b"abc"),
        };
        reader.settle(&expect, deadline).await
    }

    #[test]
    fn nothing_a_server_sends_panics_the_reader() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|error| panic!("{error}"));
        let head = b"HTTP/1.1 101 Switching Protocols\r\n\r\n".to_vec();
        let mut inputs: Vec<Vec<u8>> = vec![
            Vec::new(),
            b"garbage\r\n\r\n".to_vec(),
            b"HTTP/1.1 101".to_vec(),
            [head.clone(), vec![0x88]].concat(),
            [head.clone(), vec![0x88, 0x01, 0x03]].concat(),
            [head.clone(), vec![0x8F, 0x00]].concat(),
            [
                head.clone(),
                vec![0x82, 0x7F, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ]
            .concat(),
            [head.clone(), vec![0x82, 0x7F, 0xFF, 0, 0, 0, 0, 0, 0, 1]].concat(),
            [head.clone(), vec![0x81, 0x83, 1, 2, 3, 4, 0x60, 0x60, 0x60]].concat(),
            [head.clone(), vec![0x01, 0x01, b'a', 0x80, 0x02, b'b', b'c']].concat(),
        ];
        for _ in 0..200 {
            let len = usize::try_from(random_u64() % 64).unwrap_or(0);
            let noise: Vec<u8> = (0..len).map(|_| random_u64().to_be_bytes()[0]).collect();
            inputs.push([head.clone(), noise].concat());
        }
        for input in inputs {
            let settled = runtime.block_on(read_all(input.clone()));
            if let End::Answered(Via::Data) = settled.end {
                // Only the two "abc" messages (masked, and in two fragments) are its echo.
                let masked = input.ends_with(&[0x60, 0x60, 0x60]);
                let fragmented = input.ends_with(&[0x80, 0x02, b'b', b'c']);
                assert!(masked || fragmented, "{input:?}");
            }
        }
    }
}
