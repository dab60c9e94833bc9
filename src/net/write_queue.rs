//! The write half every driver shares: a queue of byte chunks written to a
//! [`NetStream`] with one vectored call per attempt (at most [`WRITE_SLICES_MAX`]
//! chunks), without allocating per write.
//!
//! The queue itself has no bound: each core bounds what it hands to its driver (the
//! gateway's `client_pending_max` / `link_pending_max`, the worker's `link_window_bytes_max`),
//! and the driver only queues what the core handed out.
//!
//! What a backlog leaves behind is given back when it drains: a queue that runs empty
//! keeps at most [`CHUNK_SLOTS_KEPT`] chunk slots, and one that held at least
//! [`memory::BACKLOG_BYTES`] since it was last empty asks for the freed frames to be
//! returned to the system ([`memory::backlog_drained`]), as does one dropped in such a
//! backlog. Neither happens on the way of a queue that keeps up: no allocation per write.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};

use super::{memory, NetStream};

/// Chunks handed to one vectored write at most.
pub const WRITE_SLICES_MAX: usize = 64;

/// Chunk slots (32 bytes each, one `Bytes`) a queue keeps when it runs empty: a
/// backlog of more chunks gives the rest back then. One vectored write's worth: a queue
/// that keeps up seldom holds more, so it does not reallocate on its way.
pub const CHUNK_SLOTS_KEPT: usize = WRITE_SLICES_MAX;

/// Bytes waiting to be written to one stream, oldest first.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Sum of the chunks' lengths.
    queued_bytes: usize,
    /// Bytes queued since the queue was last empty (saturating): the size of the backlog
    /// it is working through.
    run_bytes: usize,
}

impl WriteQueue {
    /// Queues `bytes` behind what is already queued (empty chunks are skipped).
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.queued_bytes = self.queued_bytes.saturating_add(bytes.len());
        self.run_bytes = self.run_bytes.saturating_add(bytes.len());
        self.chunks.push_back(bytes);
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes queued.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// One vectored write of the front of the queue; the bytes written (> 0), which
    /// leave the queue. `WouldBlock` when the stream takes nothing now; `WriteZero` when
    /// it wrote nothing although asked (a closed stream). Call only when not empty.
    pub fn write_to<S: NetStream>(&mut self, stream: &mut S) -> io::Result<usize> {
        debug_assert!(!self.is_empty(), "write_to on an empty queue");
        // A fixed array, not a Vec: no allocation per write.
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
        let mut count = 0;
        for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
            *slot = IoSlice::new(chunk);
            count += 1;
        }
        let written = loop {
            match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        self.consume(written);
        Ok(written)
    }

    /// Drops `n` written bytes from the front.
    fn consume(&mut self, mut n: usize) {
        self.queued_bytes = self.queued_bytes.saturating_sub(n);
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                return;
            };
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
        if self.chunks.is_empty() {
            self.ran_empty();
        }
    }

    /// The queue ran empty: what a backlog grew is given back.
    fn ran_empty(&mut self) {
        if self.chunks.capacity() > CHUNK_SLOTS_KEPT {
            self.chunks.shrink_to(CHUNK_SLOTS_KEPT);
        }
        if self.run_bytes >= memory::BACKLOG_BYTES {
            memory::backlog_drained();
        }
        self.run_bytes = 0;
    }
}

impl Drop for WriteQueue {
    /// A queue dropped in a backlog (its connection closed, a stalled peer given up on)
    /// frees its frames now: worth giving back too.
    fn drop(&mut self) {
        if !self.chunks.is_empty() && self.run_bytes >= memory::BACKLOG_BYTES {
            memory::backlog_drained();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(len: usize) -> Bytes {
        Bytes::from(vec![7u8; len])
    }

    /// A backlog of many chunks leaves no more than `CHUNK_SLOTS_KEPT` slots once written.
    #[test]
    fn a_drained_backlog_gives_its_chunk_slots_back() {
        let mut queue = WriteQueue::default();
        for _ in 0..4096 {
            queue.push(chunk(16));
        }
        assert!(queue.chunks.capacity() >= 4096);
        queue.consume(4096 * 16 - 1);
        assert!(!queue.is_empty());
        assert!(
            queue.chunks.capacity() >= 4096,
            "shrunk before it ran empty"
        );
        queue.consume(1);
        assert!(queue.is_empty());
        assert_eq!(queue.queued_bytes(), 0);
        assert!(
            queue.chunks.capacity() <= CHUNK_SLOTS_KEPT,
            "{} slots kept",
            queue.chunks.capacity()
        );
        assert_eq!(queue.run_bytes, 0);
    }

    /// A queue that keeps up keeps its slots (no reallocation per write) and never counts
    /// as a backlog, however many bytes pass through it.
    #[test]
    fn a_queue_that_keeps_up_keeps_its_slots() {
        let mut queue = WriteQueue::default();
        for _ in 0..8 {
            queue.push(chunk(100));
        }
        queue.consume(800);
        let capacity = queue.chunks.capacity();
        assert!(capacity >= 8);
        for _ in 0..10_000 {
            queue.push(chunk(1000));
            queue.push(chunk(1000));
            assert!(queue.run_bytes < memory::BACKLOG_BYTES);
            queue.consume(2000);
            assert_eq!(queue.chunks.capacity(), capacity);
        }
    }

    /// Running empty after a backlog of `BACKLOG_BYTES` asks for a trim, and the trimmer
    /// serves it (glibc only).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a wall-clock deadline for another thread"
    )]
    fn a_drained_backlog_asks_for_a_trim() {
        let before = memory::trims_total();
        let mut queue = WriteQueue::default();
        let block = chunk(64 * 1024);
        for _ in 0..memory::BACKLOG_BYTES / block.len() {
            queue.push(block.clone());
        }
        queue.consume(memory::BACKLOG_BYTES);
        assert!(queue.is_empty());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while memory::trims_total() == before {
            assert!(std::time::Instant::now() < deadline, "no trim within 10 s");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
