//! The write half every driver shares: a queue of byte chunks written to a
//! [`NetStream`] with one vectored call per attempt (at most [`WRITE_SLICES_MAX`]
//! chunks), without allocating per write.
//!
//! The queue itself has no bound: each core bounds what it hands to its driver (the
//! gateway's `client_pending_max` / `link_pending_max`, the worker's `link_window_bytes_max`),
//! and the driver only queues what the core handed out.

use std::collections::VecDeque;
use std::io::{self, IoSlice};

use bytes::{Buf, Bytes};

use super::NetStream;

/// Chunks handed to one vectored write at most.
pub const WRITE_SLICES_MAX: usize = 64;

/// Bytes waiting to be written to one stream, oldest first.
#[derive(Debug, Default)]
pub struct WriteQueue {
    chunks: VecDeque<Bytes>,
    /// Sum of the chunks' lengths.
    queued_bytes: usize,
}

impl WriteQueue {
    /// Queues `bytes` behind what is already queued (empty chunks are skipped).
    pub fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.queued_bytes = self.queued_bytes.saturating_add(bytes.len());
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
    }
}
