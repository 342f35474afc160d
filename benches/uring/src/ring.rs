//! The io_uring plumbing, and the only `unsafe` code of this crate: the ring itself, the
//! provided buffer ring that multishot receives fill, and the send buffers held while the
//! kernel reads them.
//!
//! Everything this module hands out is safe to use: a receive buffer can be read only
//! between the completion that handed it over and [`Ring::recycle`], a send buffer comes back
//! only with the completion of its send, and an accepted socket comes back as an owned
//! [`TcpStream`].

use std::alloc::{self, Layout};
use std::io;
use std::net::TcpStream;
use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};

use bytes::BytesMut;
use io_uring::{IoUring, cqueue, opcode, squeue, types};

/// The id of the one buffer group, the provided buffer ring.
const BUFFER_GROUP: u16 = 0;

/// What an operation was, in the top byte of its `user_data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The listener's multishot accept.
    Accept,
    /// A connection's multishot receive.
    Recv,
    /// A connection's send.
    Send,
}

/// Who a completion is for: the kind of operation and the connection's slot and generation
/// (a slot is reused; the generation tells a stale completion from a live one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    /// The operation.
    pub kind: Kind,
    /// The connection's slot in the server's table.
    pub slot: u32,
    /// The slot's generation, 24 bits.
    pub generation: u32,
}

impl Token {
    fn encode(self) -> u64 {
        let kind: u64 = match self.kind {
            Kind::Accept => 1,
            Kind::Recv => 2,
            Kind::Send => 3,
        };
        (kind << 56) | (u64::from(self.generation & 0xff_ffff) << 32) | u64::from(self.slot)
    }

    fn decode(user_data: u64) -> Option<Self> {
        let kind = match user_data >> 56 {
            1 => Kind::Accept,
            2 => Kind::Recv,
            3 => Kind::Send,
            _ => return None,
        };
        Some(Self {
            kind,
            slot: (user_data & 0xffff_ffff) as u32,
            generation: ((user_data >> 32) & 0xff_ffff) as u32,
        })
    }
}

/// What came back with a completion.
#[derive(Debug)]
pub enum Payload {
    /// Nothing (or, for a receive, see [`Completion::buffer`]).
    None,
    /// An accepted connection.
    Accepted(TcpStream),
    /// A send's buffer, returned once the kernel is done with it, and where the send began.
    Sent { buf: BytesMut, offset: usize },
}

/// One completion, taken off the completion queue.
#[derive(Debug)]
pub struct Completion {
    /// Whom it is for.
    pub token: Token,
    /// The operation's result: a count, a file descriptor, or minus an errno.
    pub result: i32,
    /// Whether a multishot operation is still armed (`IORING_CQE_F_MORE`).
    pub more: bool,
    /// The provided buffer a receive filled, now the caller's until [`Ring::recycle`].
    pub buffer: Option<u16>,
    /// What the operation hands back.
    pub payload: Payload,
}

/// One entry of the provided buffer ring, as the kernel lays out `struct io_uring_buf`. The
/// ring's tail lives in the `resv` field of entry 0.
#[repr(C)]
struct RingEntry {
    addr: u64,
    len: u32,
    bid: u16,
    resv: u16,
}

const _: () = assert!(size_of::<RingEntry>() == 16);

/// The provided buffer ring: `count` buffers of `size` bytes in one allocation, and the ring
/// of entries through which they are lent to the kernel.
struct BufRing {
    entries: *mut RingEntry,
    memory: *mut u8,
    count: u16,
    size: usize,
    /// The tail as this side has written it; published to the kernel by [`Self::publish`].
    tail: u16,
    /// Which buffers the application holds (handed over by a completion, not yet recycled).
    held: Vec<bool>,
}

impl BufRing {
    /// Allocates the ring and the buffers. `count` must be a power of two, at most 32768.
    fn new(count: u16, size: usize) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 || size == 0 || size > u32::MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad buffer ring size",
            ));
        }
        let ring_layout = ring_layout(count)?;
        let memory_layout = memory_layout(count, size)?;
        // SAFETY: both layouts have a non-zero size (count >= 1, size >= 1).
        let (entries, memory) = unsafe {
            (
                alloc::alloc_zeroed(ring_layout),
                alloc::alloc_zeroed(memory_layout),
            )
        };
        if entries.is_null() || memory.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::OutOfMemory,
                "buffer ring allocation",
            ));
        }
        Ok(Self {
            entries: entries.cast(),
            memory,
            count,
            size,
            tail: 0,
            held: vec![true; usize::from(count)],
        })
    }

    /// Lends buffer `bid` to the kernel (visible once published).
    fn give(&mut self, bid: u16) {
        let Some(held) = self.held.get_mut(usize::from(bid)) else {
            return;
        };
        if !*held {
            return; // Already lent: lending it twice would let two receives share it.
        }
        *held = false;
        let index = usize::from(self.tail & (self.count - 1));
        // SAFETY: index < count, so the entry lies inside the ring's allocation, and bid <
        // count, so the buffer lies inside the buffer allocation. The entry is past the tail
        // the kernel has seen, so the kernel does not read it now. Fields are written through
        // raw pointers, leaving `resv` (entry 0 holds the tail there) alone.
        unsafe {
            let entry = self.entries.add(index);
            (&raw mut (*entry).addr).write(self.memory.add(usize::from(bid) * self.size) as u64);
            (&raw mut (*entry).len).write(self.size as u32);
            (&raw mut (*entry).bid).write(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes the entries given since the last call visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail is the u16 at `resv` of entry 0, inside the ring's allocation and
        // 2-aligned; the kernel only reads it, and reads it atomically, so an atomic store
        // with release ordering (the entries written before it become visible first) is the
        // protocol io_uring defines for it.
        let tail = unsafe { AtomicU16::from_ptr(&raw mut (*self.entries).resv) };
        tail.store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes of buffer `bid`, if the application holds it.
    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        if self.held.get(usize::from(bid)) != Some(&true) {
            return &[];
        }
        let len = len.min(self.size);
        // SAFETY: bid < count and len <= size keep the slice inside the buffer allocation.
        // The application holds the buffer: the kernel handed it over with a completion and
        // writes to it again only after `give` lends it back, which takes `&mut self` and so
        // cannot happen while this slice (borrowing `self`) lives. The kernel wrote these
        // bytes, and the allocation was zeroed before that, so they are initialised.
        unsafe { std::slice::from_raw_parts(self.memory.add(usize::from(bid) * self.size), len) }
    }
}

fn ring_layout(count: u16) -> io::Result<Layout> {
    // The kernel wants the ring page-aligned.
    Layout::from_size_align(usize::from(count) * size_of::<RingEntry>(), 4096)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer ring layout"))
}

fn memory_layout(count: u16, size: usize) -> io::Result<Layout> {
    let bytes = usize::from(count)
        .checked_mul(size)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "buffer memory size"))?;
    // The allocator's own alignment, no more: a large zeroed allocation then comes straight
    // from fresh (already zero) pages (calloc), never written at start-up.
    Layout::from_size_align(bytes, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "buffer memory layout"))
}

/// The ring, its provided buffers and the buffers of the sends in flight.
pub struct Ring {
    uring: IoUring,
    buffers: BufRing,
    /// The buffer (and the offset the send began at) of each slot's send in flight: at most
    /// one per slot, kept here until the send's completion gives it back.
    sends: Vec<Option<(BytesMut, usize)>>,
}

impl Ring {
    /// A ring with `sq_entries` submission entries (and eight times as many completion
    /// entries), and `buffers` provided buffers of `buffer_size` bytes.
    pub fn new(sq_entries: u32, buffers: u16, buffer_size: usize) -> io::Result<Self> {
        let cq_entries = sq_entries.saturating_mul(8);
        // Single issuer and deferred task running: completions are processed only when this
        // thread enters the kernel to wait, in one batch. Older kernels lack them.
        let uring = IoUring::builder()
            .setup_cqsize(cq_entries)
            .setup_submit_all()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(sq_entries)
            .or_else(|_| {
                IoUring::builder()
                    .setup_cqsize(cq_entries)
                    .build(sq_entries)
            })?;
        let mut buffers = BufRing::new(buffers, buffer_size)?;
        // SAFETY: the ring's memory holds `count` entries, is page-aligned and is never freed
        // while the io_uring instance exists (it is leaked when the Ring is dropped).
        unsafe {
            uring.submitter().register_buf_ring_with_flags(
                buffers.entries as u64,
                buffers.count,
                BUFFER_GROUP,
                0,
            )?;
        }
        for bid in 0..buffers.count {
            buffers.give(bid);
        }
        buffers.publish();
        Ok(Self {
            uring,
            buffers,
            sends: Vec::new(),
        })
    }

    /// Queues `entry`, submitting what is queued first when the submission queue is full.
    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry built by this module refers only to memory the Ring owns
            // until the entry's completion (a send buffer in `sends`), to the provided buffer
            // ring (registered for the Ring's whole life), or to no memory at all.
            if unsafe { self.uring.submission().push(entry) }.is_ok() {
                return Ok(());
            }
            self.uring.submit()?;
        }
    }

    /// Arms a multishot accept on `listener`.
    pub fn accept_multi(&mut self, listener: RawFd) -> io::Result<()> {
        let token = Token {
            kind: Kind::Accept,
            slot: 0,
            generation: 0,
        };
        let entry = opcode::AcceptMulti::new(types::Fd(listener))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(token.encode());
        self.push(&entry)
    }

    /// Arms a multishot receive on `fd` into the provided buffers.
    pub fn recv_multi(&mut self, fd: RawFd, slot: u32, generation: u32) -> io::Result<()> {
        let token = Token {
            kind: Kind::Recv,
            slot,
            generation,
        };
        let entry = opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
            .build()
            .user_data(token.encode());
        self.push(&entry)
    }

    /// Queues a send of `buf[offset..]` on `fd`; the Ring keeps `buf` until the send's
    /// completion returns it. Refused (the buffer handed back) while the slot has a send in
    /// flight, or when there is nothing to send.
    pub fn send(
        &mut self,
        fd: RawFd,
        slot: u32,
        generation: u32,
        buf: BytesMut,
        offset: usize,
    ) -> Result<(), BytesMut> {
        let index = slot as usize;
        if offset >= buf.len() {
            return Err(buf);
        }
        if self.sends.len() <= index {
            self.sends.resize_with(index + 1, || None);
        }
        let Some(place) = self.sends.get_mut(index) else {
            return Err(buf);
        };
        if place.is_some() {
            return Err(buf);
        }
        let (ptr, len) = {
            let (held, _) = place.insert((buf, offset));
            let rest = held.get(offset..).unwrap_or_default();
            (rest.as_ptr(), rest.len().min(u32::MAX as usize) as u32)
        };
        let token = Token {
            kind: Kind::Send,
            slot,
            generation,
        };
        // The heap memory of the BytesMut stays put while it sits in `sends`, untouched,
        // until the completion takes it out.
        let entry = opcode::Send::new(types::Fd(fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(token.encode());
        if let Err(error) = self.push(&entry) {
            // Not queued: the kernel never saw it, so the buffer can go back.
            let (buf, _) = self
                .sends
                .get_mut(index)
                .and_then(Option::take)
                .unwrap_or_default();
            eprintln!("tether-uring-echo: cannot queue a send: {error}");
            return Err(buf);
        }
        Ok(())
    }

    /// Publishes recycled buffers, submits what is queued and waits for one completion.
    pub fn submit_and_wait(&mut self) -> io::Result<()> {
        self.buffers.publish();
        match self.uring.submit_and_wait(1) {
            Ok(_) => Ok(()),
            // Interrupted, or the completion queue is over full: reap, then come back.
            Err(error)
                if matches!(
                    error.raw_os_error(),
                    Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                ) =>
            {
                Ok(())
            }
            Err(error) => Err(error),
        }
    }

    /// Moves every completion on the queue into `out`.
    pub fn completions(&mut self, out: &mut Vec<Completion>) {
        // Disjoint fields: the queue borrows the io_uring, the loop updates the buffers.
        let Self {
            uring,
            buffers,
            sends,
        } = self;
        for cqe in uring.completion() {
            let (user_data, result, flags) = (cqe.user_data(), cqe.result(), cqe.flags());
            let Some(token) = Token::decode(user_data) else {
                continue;
            };
            let buffer = cqueue::buffer_select(flags);
            if let Some(bid) = buffer
                && let Some(held) = buffers.held.get_mut(usize::from(bid))
            {
                *held = true;
            }
            let payload = match token.kind {
                Kind::Accept if result >= 0 => {
                    // SAFETY: the kernel just created this descriptor for this accept and
                    // nothing else refers to it: the TcpStream becomes its only owner.
                    Payload::Accepted(unsafe { TcpStream::from_raw_fd(result) })
                }
                Kind::Send => match sends.get_mut(token.slot as usize).and_then(Option::take) {
                    Some((buf, offset)) => Payload::Sent { buf, offset },
                    None => Payload::None,
                },
                _ => Payload::None,
            };
            out.push(Completion {
                token,
                result,
                more: cqueue::more(flags),
                buffer,
                payload,
            });
        }
    }

    /// The first `len` bytes of provided buffer `bid`, which a receive completion handed
    /// over (empty if it did not, or was recycled since).
    pub fn received(&self, bid: u16, len: usize) -> &[u8] {
        self.buffers.bytes(bid, len)
    }

    /// Lends provided buffer `bid` back to the kernel (published at the next submit).
    pub fn recycle(&mut self, bid: u16) {
        self.buffers.give(bid);
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // The io_uring instance is torn down after its file is closed, asynchronously: the
        // kernel may still touch the send buffers and the provided buffers for a while. They
        // are leaked rather than freed (this happens once, at exit).
        std::mem::forget(std::mem::take(&mut self.sends));
        // The BufRing has no Drop: its two allocations are leaked with it.
    }
}
