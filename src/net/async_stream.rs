//! [`AsyncStream`]: gives any `AsyncRead + AsyncWrite` stream the readiness-based
//! [`NetStream`] shape the drivers want.
//!
//! Many streams have no readiness API: turmoil's simulated `TcpStream` has no
//! `readable`/`try_read`, and a TLS stream is poll-based by nature (one readable socket
//! may hold half a record, so "readable" says nothing about plaintext). The adapter
//! bridges the two shapes with two small buffers:
//!
//! * a read buffer, filled inside [`NetStream::read_ready`] (via `poll_read`) and drained
//!   by [`NetStream::try_read`]. End of stream and errors are remembered and reported by
//!   `try_read`, after the bytes that came before them.
//! * a bounded write stash: [`NetStream::try_write_vectored`] copies into it (and answers
//!   `WouldBlock` when it is full); it is pushed out with `poll_write`/`poll_flush` from
//!   [`NetStream::write_ready`], and also from `read_ready`'s poll. The driver waits on
//!   `read_ready` whenever a connection is open, so stashed bytes go out even when the
//!   driver itself has nothing more to write. [`NetStream::shutdown`] pushes out the
//!   rest before a graceful close.
//!
//! Both buffers are allocated only while they hold bytes: `poll_read` reads into a
//! buffer on the stack of the poll, and only what arrived is copied to the heap; the
//! stash grows on demand. Both are released when drained, so an idle adapter owns no
//! buffer (only whatever the inner stream keeps), as an idle tokio socket owns none.
//!
//! Single-threaded by design: the state sits in a `RefCell` because `read_ready` and
//! `write_ready` take `&self` and may both be pending in one `select!`; each poll borrows
//! it only for the duration of that poll.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::NetStream;

/// The bounds of an [`AsyncStream`]'s two buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncStreamLimits {
    /// Size of the read buffer: one `read_ready` reads at most this much from the inner
    /// stream. Default 16 KiB, the largest TLS record; at most [`READ_BUFFER_CEILING`].
    pub read_buffer_max: usize,
    /// Bytes accepted by `try_write_vectored` that the inner stream has not taken yet.
    /// Default 64 KiB (a socket send buffer's worth); at it, `try_write_vectored`
    /// answers `WouldBlock` until `write_ready`.
    pub write_stash_max: usize,
}

/// Largest allowed `read_buffer_max`: the size of the stack buffer `poll_read` fills.
pub const READ_BUFFER_CEILING: usize = 64 * 1024;

impl Default for AsyncStreamLimits {
    fn default() -> AsyncStreamLimits {
        AsyncStreamLimits {
            read_buffer_max: 16 * 1024,
            write_stash_max: 64 * 1024,
        }
    }
}

/// An `AsyncRead + AsyncWrite` stream seen as a [`NetStream`].
#[derive(Debug)]
pub struct AsyncStream<S> {
    state: RefCell<State<S>>,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
}

#[derive(Debug)]
struct State<S> {
    inner: S,
    write_stash_max: usize,
    read_buffer_max: usize,
    /// Read-ahead bytes; `read_buffer[read_start..]` is not yet taken. Empty (and
    /// unallocated) when drained.
    read_buffer: Vec<u8>,
    read_start: usize,
    /// The inner stream reported its end (after the buffered bytes).
    read_closed: bool,
    /// A read error, reported by `try_read` once the buffered bytes are taken.
    read_error: Option<io::Error>,
    /// Bytes accepted but not yet written; `stash[stash_start..]` is pending.
    stash: Vec<u8>,
    stash_start: usize,
    /// Bytes went to the inner stream since its last completed `poll_flush`.
    flush_needed: bool,
    /// A write error; every later write (and `try_read`) reports it.
    write_error: Option<io::Error>,
}

impl<S> AsyncStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + 'static,
{
    /// Wraps `inner`, whose addresses the caller knows (the adapter cannot ask a generic
    /// stream for them).
    pub fn new(
        inner: S,
        local_addr: SocketAddr,
        peer_addr: SocketAddr,
        limits: AsyncStreamLimits,
    ) -> AsyncStream<S> {
        assert!(
            (1..=READ_BUFFER_CEILING).contains(&limits.read_buffer_max),
            "read_buffer_max must be in 1..=READ_BUFFER_CEILING"
        );
        assert!(
            limits.write_stash_max > 0,
            "write_stash_max must be positive"
        );
        AsyncStream {
            state: RefCell::new(State {
                inner,
                write_stash_max: limits.write_stash_max,
                read_buffer_max: limits.read_buffer_max,
                read_buffer: Vec::new(),
                read_start: 0,
                read_closed: false,
                read_error: None,
                stash: Vec::new(),
                stash_start: 0,
                flush_needed: false,
                write_error: None,
            }),
            local_addr,
            peer_addr,
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> std::cell::Ref<'_, S> {
        std::cell::Ref::map(self.state.borrow(), |state| &state.inner)
    }

    /// Bytes accepted by `try_write_vectored` that the inner stream has not taken yet.
    pub fn stashed(&self) -> usize {
        self.state.borrow().stashed()
    }

    /// Heap bytes the adapter holds now (read buffer and stash capacity): zero when
    /// idle.
    pub fn buffered_capacity(&self) -> usize {
        let state = self.state.borrow();
        state.read_buffer.capacity() + state.stash.capacity()
    }
}

/// `io::Error` is not `Clone`; a remembered error is reported as a copy of kind and text.
fn copy_error(e: &io::Error) -> io::Error {
    io::Error::new(e.kind(), e.to_string())
}

impl<S: AsyncRead + AsyncWrite + Unpin> State<S> {
    fn stashed(&self) -> usize {
        self.stash.len() - self.stash_start
    }

    fn read_buffered(&self) -> usize {
        self.read_buffer.len() - self.read_start
    }

    /// Writes the stash to the inner stream and flushes it. `Ready(Ok)` once everything
    /// is written and flushed, `Pending` (with the waker registered) while the inner
    /// stream is busy, `Ready(Err)` on a write error (remembered).
    fn poll_push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = &self.write_error {
            return Poll::Ready(Err(copy_error(e)));
        }
        while self.stashed() > 0 {
            let pending = &self.stash[self.stash_start..];
            match Pin::new(&mut self.inner).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => return self.fail_write(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(n)) => {
                    self.stash_start += n;
                    self.flush_needed = true;
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => return self.fail_write(e),
                Poll::Pending => return Poll::Pending,
            }
        }
        // Drained: give the memory back, an idle connection keeps no stash.
        self.stash = Vec::new();
        self.stash_start = 0;
        if self.flush_needed {
            match Pin::new(&mut self.inner).poll_flush(cx) {
                Poll::Ready(Ok(())) => self.flush_needed = false,
                Poll::Ready(Err(e)) => return self.fail_write(e),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    fn fail_write(&mut self, e: io::Error) -> Poll<io::Result<()>> {
        let reported = copy_error(&e);
        self.write_error = Some(e);
        Poll::Ready(Err(reported))
    }

    /// Ready when `try_read` has something to report: bytes, the end, or an error.
    fn poll_read_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Opportunistic push: the driver may be waiting here only. A write error ends
        // the wait; `try_read` reports it.
        if self.write_error.is_none() && (self.stashed() > 0 || self.flush_needed) {
            let _ = self.poll_push(cx);
        }
        if self.read_buffered() > 0
            || self.read_closed
            || self.read_error.is_some()
            || self.write_error.is_some()
        {
            return Poll::Ready(Ok(()));
        }
        // Uninitialised stack space: nothing to zero, nothing to keep while idle.
        let mut space = [MaybeUninit::<u8>::uninit(); READ_BUFFER_CEILING];
        loop {
            let mut buf = ReadBuf::uninit(&mut space[..self.read_buffer_max]);
            match Pin::new(&mut self.inner).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) => {
                    let filled = buf.filled();
                    self.read_closed = filled.is_empty();
                    self.read_buffer = filled.to_vec();
                    self.read_start = 0;
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.read_error = Some(e);
                    return Poll::Ready(Ok(()));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read_buffered() > 0 {
            let n = buf.len().min(self.read_buffered());
            buf[..n].copy_from_slice(&self.read_buffer[self.read_start..self.read_start + n]);
            self.read_start += n;
            if self.read_buffered() == 0 {
                self.read_buffer = Vec::new();
                self.read_start = 0;
            }
            return Ok(n);
        }
        if let Some(e) = self.read_error.take() {
            // Reported once; the stream counts as ended afterwards.
            self.read_closed = true;
            return Err(e);
        }
        if let Some(e) = &self.write_error {
            return Err(copy_error(e));
        }
        if self.read_closed {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Ready when the stash has room (pushing it on the way), or on a write error.
    fn poll_write_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Poll::Ready(Err(e)) = self.poll_push(cx) {
            return Poll::Ready(Err(e));
        }
        if self.stashed() < self.write_stash_max {
            return Poll::Ready(Ok(()));
        }
        // The stash is full, so `poll_push` returned `Pending` with the waker registered.
        Poll::Pending
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        if let Some(e) = &self.write_error {
            return Err(copy_error(e));
        }
        let room = self.write_stash_max - self.stashed();
        let wanted: usize = bufs.iter().map(|b| b.len()).sum();
        if wanted == 0 {
            return Ok(0);
        }
        if room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        if self.stash_start > 0 {
            self.stash.drain(..self.stash_start);
            self.stash_start = 0;
        }
        let mut taken = 0;
        for buf in bufs {
            let n = buf.len().min(room - taken);
            self.stash.extend_from_slice(&buf[..n]);
            taken += n;
            if taken == room {
                break;
            }
        }
        debug_assert!(self.stashed() <= self.write_stash_max);
        Ok(taken)
    }

    fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        std::task::ready!(self.poll_push(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S> NetStream for AsyncStream<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.borrow_mut().poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.state.get_mut().try_read(buf)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.state.borrow_mut().poll_write_ready(cx)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.state.get_mut().try_write_vectored(bufs)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        let state = self.state.get_mut();
        poll_fn(|cx| state.poll_shutdown(cx)).await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local_addr)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.peer_addr)
    }
}

#[cfg(test)]
mod tests;
