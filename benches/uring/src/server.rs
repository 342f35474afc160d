//! The event loop: one ring on one thread. Each turn submits everything queued since the
//! last one (the sends of every connection that has output, re-armed receives, the accept)
//! and waits, in one `io_uring_enter`; then it feeds every completion to its connection and
//! queues the sends the next turn submits.
//!
//! A connection ends by `shutdown(2)`, which completes its multishot receive; its slot is
//! freed (and its socket closed) once neither a receive nor a send is in flight, so no
//! completion can reach a slot that moved on to another connection unnoticed (the generation
//! in every token guards that as well).

use std::io;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use bytes::BytesMut;

use crate::ring::{Completion, Kind, Payload, Ring, Token};
use crate::session::Session;

/// Submission queue entries: room for a send and a receive for each of ~1000 busy
/// connections per turn (a full queue is submitted early, never dropped).
const SQ_ENTRIES: u32 = 4096;

/// Provided buffers: enough that 1000 connections with a message each never run dry.
const BUFFERS: u16 = 4096;

/// Bytes per provided buffer: one receive completion carries at most this much.
const BUFFER_SIZE: usize = 4096;

/// A send buffer kept between messages is dropped when it grew beyond this.
const KEEP_SEND_BUFFER: usize = 64 * 1024;

/// One open connection.
#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    session: Session,
    /// The output buffer not in use, kept for the next swap.
    spare: BytesMut,
    recv_armed: bool,
    sending: bool,
    /// The transport is gone or failed: stop everything, close once idle.
    dead: bool,
    shut_down: bool,
    /// Already listed in `Server::dirty` this turn.
    dirty: bool,
}

/// A slot of the connection table.
#[derive(Debug, Default)]
struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

/// The connection `token` was issued for, if it is still open (a slot reused since has a
/// newer generation).
fn live_conn(slots: &mut [Slot], token: Token) -> Option<&mut Conn> {
    slots
        .get_mut(token.slot as usize)
        .filter(|entry| entry.generation & 0xff_ffff == token.generation)
        .and_then(|entry| entry.conn.as_mut())
}

/// The server: the ring, the listener and the connection table.
pub struct Server {
    ring: Ring,
    listener: TcpListener,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Slots touched this turn, to flush at its end.
    dirty: Vec<u32>,
    completions: Vec<Completion>,
}

impl Server {
    /// A server on `listener` (already bound and listening).
    pub fn new(listener: TcpListener) -> io::Result<Self> {
        Ok(Self {
            ring: Ring::new(SQ_ENTRIES, BUFFERS, BUFFER_SIZE)?,
            listener,
            slots: Vec::new(),
            free: Vec::new(),
            dirty: Vec::new(),
            completions: Vec::new(),
        })
    }

    /// Runs until a ring error.
    pub fn run(&mut self) -> io::Result<()> {
        self.ring.accept_multi(self.listener.as_raw_fd())?;
        let mut batch = Vec::new();
        loop {
            self.ring.submit_and_wait()?;
            self.ring.completions(&mut self.completions);
            std::mem::swap(&mut batch, &mut self.completions);
            for completion in batch.drain(..) {
                self.complete(completion)?;
            }
            self.flush()?;
        }
    }

    fn complete(&mut self, completion: Completion) -> io::Result<()> {
        match completion.token.kind {
            Kind::Accept => self.accepted(completion),
            Kind::Recv => {
                self.received(&completion)?;
                Ok(())
            }
            Kind::Send => {
                self.sent(completion);
                Ok(())
            }
        }
    }

    fn accepted(&mut self, completion: Completion) -> io::Result<()> {
        if let Payload::Accepted(stream) = completion.payload {
            self.open(stream)?;
        } else if completion.result < 0 {
            let error = io::Error::from_raw_os_error(-completion.result);
            eprintln!("tether-uring-echo: accept: {error}");
        }
        if !completion.more {
            self.ring.accept_multi(self.listener.as_raw_fd())?;
        }
        Ok(())
    }

    fn open(&mut self, stream: TcpStream) -> io::Result<()> {
        // As every server compared does: small echoes go out at once.
        let _ = stream.set_nodelay(true);
        let fd = stream.as_raw_fd();
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(Slot::default());
                (self.slots.len() - 1) as u32
            }
        };
        let Some(entry) = self.slots.get_mut(slot as usize) else {
            return Ok(());
        };
        entry.conn = Some(Conn {
            stream,
            session: Session::new(),
            spare: BytesMut::new(),
            recv_armed: true,
            sending: false,
            dead: false,
            shut_down: false,
            dirty: false,
        });
        self.ring.recv_multi(fd, slot, entry.generation)
    }

    fn received(&mut self, completion: &Completion) -> io::Result<()> {
        let token = completion.token;
        let Self { ring, slots, .. } = self;
        let conn = live_conn(slots, token);
        let Some(conn) = conn else {
            if let Some(bid) = completion.buffer {
                ring.recycle(bid);
            }
            return Ok(());
        };
        let result = completion.result;
        if result > 0 {
            if let Some(bid) = completion.buffer {
                if !conn.dead {
                    conn.session.receive(ring.received(bid, result as usize));
                }
                ring.recycle(bid);
            }
        } else if result == 0 {
            conn.dead = true; // The peer hung up.
        } else if result != -libc::ENOBUFS {
            conn.dead = true; // A reset, or another failure.
        }
        if !completion.more {
            conn.recv_armed = false;
            // Ended early (out of provided buffers, or the kernel stopped it): arm again.
            if !conn.dead && !conn.shut_down && !conn.session.finished() {
                ring.recv_multi(conn.stream.as_raw_fd(), token.slot, token.generation)?;
                conn.recv_armed = true;
            }
        }
        self.mark(token.slot);
        Ok(())
    }

    fn sent(&mut self, completion: Completion) {
        let token = completion.token;
        let Payload::Sent { buf, offset } = completion.payload else {
            return;
        };
        let Self { ring, slots, .. } = self;
        let conn = live_conn(slots, token);
        let Some(conn) = conn else {
            return;
        };
        conn.sending = false;
        if completion.result <= 0 {
            conn.dead = true; // A reset, a broken pipe; zero bytes would loop for ever.
        } else if !conn.dead {
            let offset = offset + completion.result as usize;
            if offset < buf.len() {
                // A short send: the rest goes out before anything queued after it.
                let fd = conn.stream.as_raw_fd();
                match ring.send(fd, token.slot, token.generation, buf, offset) {
                    Ok(()) => conn.sending = true,
                    Err(_) => conn.dead = true,
                }
            } else if buf.capacity() <= KEEP_SEND_BUFFER {
                conn.spare = buf;
            }
        }
        self.mark(token.slot);
    }

    fn mark(&mut self, slot: u32) {
        if let Some(Slot {
            conn: Some(conn), ..
        }) = self.slots.get_mut(slot as usize)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(slot);
        }
    }

    /// End of a turn: queues the sends of every connection with output, shuts down the
    /// finished ones and frees those with nothing in flight any more.
    fn flush(&mut self) -> io::Result<()> {
        let mut dirty = std::mem::take(&mut self.dirty);
        for slot in dirty.drain(..) {
            let Self {
                ring, slots, free, ..
            } = self;
            let Some(entry) = slots.get_mut(slot as usize) else {
                continue;
            };
            let generation = entry.generation & 0xff_ffff;
            let Some(conn) = entry.conn.as_mut() else {
                continue;
            };
            conn.dirty = false;
            if !conn.dead && !conn.sending && conn.session.has_output() {
                let buf = conn.session.take_output(std::mem::take(&mut conn.spare));
                let fd = conn.stream.as_raw_fd();
                match ring.send(fd, slot, generation, buf, 0) {
                    Ok(()) => conn.sending = true,
                    Err(_) => conn.dead = true,
                }
            }
            let flushed = !conn.sending && !conn.session.has_output();
            if !conn.shut_down && (conn.dead || (conn.session.finished() && flushed)) {
                // Completes the receive in flight (and fails a send in flight), so the
                // connection soon has nothing left in the kernel.
                let _ = conn.stream.shutdown(Shutdown::Both);
                conn.shut_down = true;
            }
            if conn.shut_down && !conn.recv_armed && !conn.sending {
                // Dropping the stream closes the socket.
                entry.conn = None;
                entry.generation = entry.generation.wrapping_add(1);
                free.push(slot);
            }
        }
        self.dirty = dirty;
        Ok(())
    }
}
