//! A decompression bomb against the real `tether echo`: 1 GiB of zeros deflated into about
//! 1 MiB, sent in four compressed frames after a handshake that negotiated
//! permessage-deflate. The server closes with 1009 after inflating at most a step past its
//! 1 MiB limit: its peak RSS grows by a few MiB (the figures, and its CPU time for the
//! bomb, are printed); an honest client is echoed afterwards.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)] // Tests may panic: that is how they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flate2::{Compress, Compression, FlushCompress};

const WAIT: Duration = Duration::from_secs(10);
const LIMIT: usize = 1 << 20;

/// `tether echo` with a 1 MiB message limit, killed when dropped.
struct Echo {
    child: Child,
    addr: SocketAddr,
}

impl Echo {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tether"))
            .args(["echo", "--listen", "127.0.0.1:0"])
            .args(["--max-message-size", &LIMIT.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ws://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .parse()
            .unwrap();
        Self { child, addr }
    }

    /// A figure of `/proc/PID/status` in KiB (`VmHWM`: peak RSS).
    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|line| line.starts_with(field)).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }

    /// User plus system CPU time so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// 1 GiB of zeros as a raw deflate stream ending in a sync flush, minus the `00 00 ff ff`
/// trailer: the payload of a permessage-deflate message.
fn bomb() -> Vec<u8> {
    let zeros = vec![0u8; 1 << 20];
    let mut stream = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(1_200_000);
    for chunk in 0..1024 {
        let last = chunk == 1023;
        let flush = if last {
            FlushCompress::Sync
        } else {
            FlushCompress::None
        };
        let mut input = &zeros[..];
        loop {
            // Room enough that the final flush completes in one call.
            if out.capacity() - out.len() < 64 * 1024 {
                out.reserve(256 * 1024);
            }
            let before = stream.total_in();
            stream.compress_vec(input, &mut out, flush).unwrap();
            input = &input[(stream.total_in() - before) as usize..];
            if input.is_empty() {
                break;
            }
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// Opens a WebSocket offering permessage-deflate; returns the stream and the extension the
/// server answered.
fn connect(addr: SocketAddr) -> (TcpStream, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let extension = head
        .lines()
        .find_map(|line| line.strip_prefix("Sec-WebSocket-Extensions: "))
        .unwrap_or_default()
        .to_owned();
    (stream, extension)
}

/// A masked frame (the mask is all zeros: legal, and it keeps the bytes as they are).
fn frame(first: bool, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![
        (u8::from(fin) << 7) | if first { 0x40 | 0x2 } else { 0x0 },
        0x80 | 127,
    ];
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// Reads frames until a close; returns its code.
fn close_code(stream: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 2];
        stream.read_exact(&mut head).unwrap();
        let len = match head[1] & 0x7f {
            126 => {
                let mut ext = [0u8; 2];
                stream.read_exact(&mut ext).unwrap();
                u64::from(u16::from_be_bytes(ext))
            }
            127 => {
                let mut ext = [0u8; 8];
                stream.read_exact(&mut ext).unwrap();
                u64::from_be_bytes(ext)
            }
            n => u64::from(n),
        };
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).unwrap();
        if head[0] & 0x0f == 0x8 {
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[test]
fn a_gigabyte_bomb_closes_1009_with_bounded_memory() {
    let bomb = bomb();
    eprintln!("bomb: 1 GiB of zeros in {} bytes", bomb.len());
    assert!(bomb.len() < LIMIT + LIMIT / 256, "{}", bomb.len());
    let echo = Echo::start();
    let (mut stream, extension) = connect(echo.addr);
    assert!(extension.starts_with("permessage-deflate"), "{extension}");
    let peak_before = echo.status_kib("VmHWM:");
    let cpu_before = echo.cpu_ticks();

    let pieces: Vec<&[u8]> = bomb.chunks(bomb.len().div_ceil(4)).collect();
    for (i, piece) in pieces.iter().enumerate() {
        // The server may close before the last piece arrives: a failed write is fine.
        if stream
            .write_all(&frame(i == 0, i + 1 == pieces.len(), piece))
            .is_err()
        {
            break;
        }
    }
    assert_eq!(close_code(&mut stream), 1009);

    let peak_after = echo.status_kib("VmHWM:");
    let cpu = echo.cpu_ticks() - cpu_before;
    eprintln!(
        "server peak RSS {peak_before} KiB before, {peak_after} KiB after the bomb; \
         CPU for it {cpu} clock ticks"
    );
    // The compressed message (about 1 MiB) and at most the limit plus a step inflated;
    // inflating the whole gigabyte would need a thousand times that.
    assert!(
        peak_after - peak_before < 8 * 1024,
        "{peak_before} -> {peak_after} KiB"
    );

    // Someone else is still served, compressed.
    let (mut honest, extension) = connect(echo.addr);
    assert!(extension.starts_with("permessage-deflate"), "{extension}");
    honest.write_all(&frame_text(b"still here")).unwrap();
    let mut head = [0u8; 2];
    honest.read_exact(&mut head).unwrap();
    let mut payload = vec![0u8; usize::from(head[1] & 0x7f)];
    honest.read_exact(&mut payload).unwrap();
    assert_eq!((head[0] & 0x40, &payload[..]), (0, &b"still here"[..]));
}

/// An uncompressed masked text frame.
fn frame_text(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}
