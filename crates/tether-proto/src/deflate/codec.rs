//! The permessage-deflate codec: [`Deflater`] compresses a whole message, [`Inflater`]
//! inflates one with its size checked while it grows, both on zlib-rs through flate2.
//!
//! Without context takeover a direction keeps no state between messages, so its zlib
//! stream comes from a small per-thread cache (one per window size and level), used for one
//! whole message at a time and reset after it: an idle connection holds no compression
//! memory at all. With context takeover the connection gets its own stream on its first
//! compressed message and keeps it.

use std::cell::RefCell;

use bytes::BytesMut;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::{MAX_WINDOW_BITS, MIN_WINDOW_BITS};

/// The four bytes a sync flush ends with; RFC 7692 7.2.1 removes them from the wire and
/// 7.2.2 appends them again before inflating.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output is produced in steps of at most this many bytes, so a message that inflates past
/// its limit costs at most one step more than the limit.
const STEP: usize = 16 * 1024;

/// Per-thread zlib streams for directions without context takeover, keyed by (window bits,
/// level); a handful at most.
struct Shared {
    compressors: Vec<((u8, u8), Compress)>,
    decompressors: Vec<(u8, Decompress)>,
}

thread_local! {
    static SHARED: RefCell<Shared> = const {
        RefCell::new(Shared { compressors: Vec::new(), decompressors: Vec::new() })
    };
}

fn window(bits: u8) -> u8 {
    bits.clamp(MIN_WINDOW_BITS, MAX_WINDOW_BITS)
}

fn new_compress(bits: u8, level: u8) -> Compress {
    Compress::new_with_window_bits(
        Compression::new(u32::from(level.min(9))),
        false,
        window(bits),
    )
}

fn new_decompress(bits: u8) -> Decompress {
    Decompress::new_with_window_bits(false, window(bits))
}

/// Compresses the messages of one direction of one connection.
#[derive(Debug)]
pub struct Deflater {
    window_bits: u8,
    level: u8,
    /// With context takeover: this connection's stream, made on its first message.
    own: Option<Box<Compress>>,
    no_context_takeover: bool,
}

impl Deflater {
    /// A compressor with an LZ77 window of `window_bits` (9..=15; other values are
    /// clamped), zlib level `level` (0..=9), resetting after each message when
    /// `no_context_takeover`. Allocates nothing until the first message.
    pub const fn new(window_bits: u8, level: u8, no_context_takeover: bool) -> Self {
        Self {
            window_bits,
            level,
            own: None,
            no_context_takeover,
        }
    }

    /// Whether this direction resets after every message (so the output for a given
    /// message depends on the message alone and can be shared between connections).
    pub const fn is_stateless(&self) -> bool {
        self.no_context_takeover
    }

    /// The window and level: the key under which a stateless compression can be shared.
    pub const fn key(&self) -> (u8, u8) {
        (self.window_bits, self.level)
    }

    /// Compresses `payload` as one message and appends the result to `out`, without the
    /// trailing `00 00 ff ff` (the payload of a frame with RSV1 set).
    pub fn compress(&mut self, payload: &[u8], out: &mut BytesMut) {
        if payload.is_empty() {
            // zlib may flush nothing for no input; RFC 7692 7.2.3.6 sends one 0x00 byte (an
            // empty stored block once the trailer is appended), which leaves the stream alone.
            out.extend_from_slice(&[0x00]);
            return;
        }
        if self.no_context_takeover {
            compress_stateless(self.window_bits, self.level, payload, out);
        } else {
            let (bits, level) = (self.window_bits, self.level);
            let stream = self
                .own
                .get_or_insert_with(|| Box::new(new_compress(bits, level)));
            compress_into(stream, payload, out);
        }
    }
}

/// Compresses one message with no context: the same output for the same `payload`, window
/// and level, whichever connection it is for. Used for a broadcast compressed once.
pub fn compress_stateless(window_bits: u8, level: u8, payload: &[u8], out: &mut BytesMut) {
    if payload.is_empty() {
        out.extend_from_slice(&[0x00]);
        return;
    }
    let key = (window(window_bits), level.min(9));
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        let index = match shared.compressors.iter().position(|(k, _)| *k == key) {
            Some(index) => index,
            None => {
                shared.compressors.push((key, new_compress(key.0, key.1)));
                shared.compressors.len() - 1
            }
        };
        if let Some((_, stream)) = shared.compressors.get_mut(index) {
            compress_into(stream, payload, out);
            stream.reset();
        }
    });
}

/// Runs one zlib `call` with `room` bytes of output space after what `out` holds, and keeps
/// what it wrote: `(its result, bytes produced)`.
fn write_step<S, R>(
    stream: &mut S,
    out: &mut BytesMut,
    room: usize,
    total_out: fn(&S) -> u64,
    call: impl FnOnce(&mut S, &mut [u8]) -> R,
) -> (R, usize) {
    let len = out.len();
    out.resize(len + room, 0);
    let before = total_out(stream);
    let result = call(stream, out.get_mut(len..).unwrap_or_default());
    let produced = usize::try_from(total_out(stream) - before).unwrap_or(0);
    out.truncate(len + produced);
    (result, produced)
}

/// Feeds all of `payload` with a sync flush and appends the output minus the trailer.
fn compress_into(stream: &mut Compress, payload: &[u8], out: &mut BytesMut) {
    let start = out.len();
    let first_in = stream.total_in();
    loop {
        let consumed = usize::try_from(stream.total_in() - first_in).unwrap_or(usize::MAX);
        let input = payload.get(consumed..).unwrap_or_default();
        let room = (input.len() / 2).clamp(64, STEP);
        let (result, produced) = write_step(stream, out, room, Compress::total_out, |s, buf| {
            s.compress(input, buf, FlushCompress::Sync)
        });
        // A sync flush is complete once all input is in and zlib left output room unused.
        let taken = usize::try_from(stream.total_in() - first_in).unwrap_or(usize::MAX);
        let all_in = taken >= payload.len();
        let stalled = produced == 0 && taken == consumed;
        if result.is_err() || (all_in && produced < room) || stalled {
            break;
        }
    }
    if out
        .get(start..)
        .is_some_and(|written| written.ends_with(&TRAILER))
    {
        out.truncate(out.len() - TRAILER.len());
    }
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InflateError {
    /// The bytes are not a valid deflate stream.
    Corrupt,
    /// The message inflated past the limit; `size` is how far it got (at least `max + 1`).
    TooBig {
        /// The inflated size reached.
        size: u64,
    },
}

/// Inflates the messages of one direction of one connection.
#[derive(Debug)]
pub struct Inflater {
    window_bits: u8,
    /// Whether the message in progress has fed any bytes to the stream yet.
    fed: bool,
    /// With context takeover: this connection's stream, made on its first message.
    own: Option<Box<Decompress>>,
    no_context_takeover: bool,
}

impl Inflater {
    /// An inflater for a peer compressing with a window of at most `window_bits` (8 reads
    /// as 9, which inflates an 8-bit stream exactly), resetting after each message when
    /// `no_context_takeover`. Allocates nothing until the first message.
    pub const fn new(window_bits: u8, no_context_takeover: bool) -> Self {
        Self {
            window_bits,
            fed: false,
            own: None,
            no_context_takeover,
        }
    }

    /// Whether a message's frames can be inflated one by one as they arrive: only with a
    /// stream of this connection's own. Without context takeover the stream is shared by
    /// the thread, so a fragmented message is inflated whole, at its last frame.
    pub const fn streams_frames(&self) -> bool {
        !self.no_context_takeover
    }

    /// Inflates `input`, the compressed payload of one frame (or, without context
    /// takeover, of a whole message), appending to `out`; `fin` marks the message's last
    /// part. Fails as soon as `out` would grow past `max` bytes, before buffering more.
    ///
    /// # Errors
    /// [`InflateError::Corrupt`] for bytes that are not deflate data;
    /// [`InflateError::TooBig`] when the message inflates past `max`. The stream is unusable
    /// after an error: fail the connection.
    pub fn inflate(
        &mut self,
        input: &[u8],
        fin: bool,
        out: &mut BytesMut,
        max: usize,
    ) -> Result<(), InflateError> {
        let first_bytes = !self.fed;
        self.fed = !fin && (self.fed || !input.is_empty());
        if first_bytes && fin && input.is_empty() {
            // A message compressed to nothing: nothing to inflate, and the trailer alone
            // would leave the stream mid-block.
            return Ok(());
        }
        if self.no_context_takeover {
            let bits = window(self.window_bits);
            return SHARED.with(|shared| {
                let mut shared = shared.borrow_mut();
                let index = match shared.decompressors.iter().position(|(k, _)| *k == bits) {
                    Some(index) => index,
                    None => {
                        shared.decompressors.push((bits, new_decompress(bits)));
                        shared.decompressors.len() - 1
                    }
                };
                let Some((_, stream)) = shared.decompressors.get_mut(index) else {
                    return Err(InflateError::Corrupt);
                };
                let result = inflate_into(stream, input, fin, out, max);
                // Reset whatever happened: the next message (of any connection) starts clean.
                stream.reset(false);
                result
            });
        }
        let bits = self.window_bits;
        let stream = self
            .own
            .get_or_insert_with(|| Box::new(new_decompress(bits)));
        inflate_into(stream, input, fin, out, max)
    }
}

/// Inflates `input` (and the trailer when `fin`) into `out`, at most `max` bytes in all.
fn inflate_into(
    stream: &mut Decompress,
    input: &[u8],
    fin: bool,
    out: &mut BytesMut,
    max: usize,
) -> Result<(), InflateError> {
    inflate_part(stream, input, out, max)?;
    if fin {
        inflate_part(stream, &TRAILER, out, max)?;
    }
    Ok(())
}

fn inflate_part(
    stream: &mut Decompress,
    input: &[u8],
    out: &mut BytesMut,
    max: usize,
) -> Result<(), InflateError> {
    let first_in = stream.total_in();
    loop {
        let consumed = usize::try_from(stream.total_in() - first_in).unwrap_or(usize::MAX);
        let rest = input.get(consumed..).unwrap_or_default();
        // One byte past the limit is enough to know the message is too big.
        let allowed = (max + 1).saturating_sub(out.len());
        let room = STEP.min(allowed).min(rest.len().saturating_mul(8).max(256));
        if room == 0 {
            return Err(InflateError::TooBig {
                size: out.len() as u64,
            });
        }
        let (status, produced) = write_step(stream, out, room, Decompress::total_out, |s, buf| {
            s.decompress(rest, buf, FlushDecompress::Sync)
        });
        if out.len() > max {
            return Err(InflateError::TooBig {
                size: out.len() as u64,
            });
        }
        let taken = usize::try_from(stream.total_in() - first_in).unwrap_or(usize::MAX);
        let all_in = taken >= input.len();
        if produced == 0 && taken == consumed && !all_in {
            // No progress with input left and room to write: not a deflate stream.
            return Err(InflateError::Corrupt);
        }
        match status {
            Err(_) => return Err(InflateError::Corrupt),
            // The peer ended the deflate stream (BFINAL): legal; what follows must be nothing.
            Ok(Status::StreamEnd) => {
                return if all_in || rest.is_empty() {
                    Ok(())
                } else {
                    Err(InflateError::Corrupt)
                };
            }
            Ok(Status::Ok | Status::BufError) => {
                if all_in && produced < room {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn json(n: usize) -> Vec<u8> {
        let mut text = String::new();
        for i in 0..n {
            text.push_str(&format!(
                "{{\"type\":\"message\",\"room\":\"lobby\",\"from\":\"ann\",\"text\":\"hello {i}\"}}"
            ));
        }
        text.into_bytes()
    }

    fn round_trip(deflater: &mut Deflater, inflater: &mut Inflater, payload: &[u8]) {
        let mut wire = BytesMut::new();
        deflater.compress(payload, &mut wire);
        assert!(!wire.ends_with(&TRAILER));
        let mut back = BytesMut::new();
        let inflated = inflater.inflate(&wire, true, &mut back, payload.len());
        assert_eq!(
            inflated,
            Ok(()),
            "{} bytes, wire {}",
            payload.len(),
            wire.len()
        );
        assert_eq!(&back[..], payload);
    }

    #[test]
    fn round_trips_with_and_without_context_takeover() {
        for (bits, stateless) in [(15, true), (15, false), (9, true), (9, false), (12, false)] {
            let mut deflater = Deflater::new(bits, 1, stateless);
            let mut inflater = Inflater::new(bits, stateless);
            for payload in [json(1), json(50), Vec::new(), vec![7u8; 100_000], json(3)] {
                round_trip(&mut deflater, &mut inflater, &payload);
            }
        }
    }

    #[test]
    fn context_takeover_shrinks_repeated_messages() {
        let payload = json(2);
        let mut with = Deflater::new(15, 1, false);
        let mut without = Deflater::new(15, 1, true);
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        with.compress(&payload, &mut a);
        a.clear();
        with.compress(&payload, &mut a);
        without.compress(&payload, &mut b);
        assert!(a.len() < b.len() / 2, "{} vs {}", a.len(), b.len());
    }

    #[test]
    fn stateless_output_depends_on_the_message_alone() {
        let (mut a, mut b) = (BytesMut::new(), BytesMut::new());
        compress_stateless(15, 1, &json(5), &mut a);
        compress_stateless(15, 1, &json(9), &mut b);
        b.clear();
        compress_stateless(15, 1, &json(5), &mut b);
        assert_eq!(a, b);
    }

    #[test]
    fn inflating_stops_one_step_past_the_limit() {
        // 16 MiB of zeros compresses to about 16 KiB at level 9.
        let zeros = vec![0u8; 16 << 20];
        let mut wire = BytesMut::new();
        Deflater::new(15, 9, true).compress(&zeros, &mut wire);
        assert!(wire.len() < 64 * 1024, "{}", wire.len());
        for stateless in [true, false] {
            let mut out = BytesMut::new();
            let error = Inflater::new(15, stateless)
                .inflate(&wire, true, &mut out, 1 << 20)
                .unwrap_err();
            assert!(matches!(error, InflateError::TooBig { size } if size > 1 << 20));
            assert!(out.len() <= (1 << 20) + STEP + 1, "{}", out.len());
        }
    }

    #[test]
    fn corrupt_input_is_an_error_not_a_panic() {
        let mut out = BytesMut::new();
        let result = Inflater::new(15, true).inflate(&[0xff; 64], true, &mut out, 1 << 20);
        assert_eq!(result, Err(InflateError::Corrupt));
        // The shared stream was reset: the next message inflates.
        let mut wire = BytesMut::new();
        Deflater::new(15, 1, true).compress(b"after a corrupt one", &mut wire);
        let mut out = BytesMut::new();
        Inflater::new(15, true)
            .inflate(&wire, true, &mut out, 100)
            .unwrap();
        assert_eq!(&out[..], b"after a corrupt one");
    }

    #[test]
    fn frames_inflate_one_by_one_with_context_takeover() {
        let payload = json(40);
        let mut wire = BytesMut::new();
        Deflater::new(15, 6, false).compress(&payload, &mut wire);
        let mut inflater = Inflater::new(15, false);
        let mut out = BytesMut::new();
        let mid = wire.len() / 3;
        inflater
            .inflate(&wire[..mid], false, &mut out, payload.len())
            .unwrap();
        inflater
            .inflate(&wire[mid..], true, &mut out, payload.len())
            .unwrap();
        assert_eq!(&out[..], &payload[..]);
    }
}
