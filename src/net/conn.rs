//! The I/O of one connection inside a single-threaded driver, shared by every role's
//! driver (gateway, register): the output queue a core fills, and the task loop that reads
//! into the driver's scratch buffer, feeds the core, writes what was queued with vectored
//! writes, and ends when the peer goes or the core closes the connection.
#![allow(
    clippy::disallowed_methods,
    reason = "socket plumbing: the shutdown flush deadline uses the clock"
)]

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, Sleep};

use super::{NetStream, WriteQueue};

/// Reads served for one connection before yielding to the others (fairness bound).
const READS_PER_TURN_MAX: usize = 4;

/// Longest wait without progress, after a graceful close (KICK, websocket close), first
/// for the driver's queued output to be written and then for the stream's own
/// [`NetStream::shutdown`] (a TLS stream pushing its last records): a peer that stopped
/// reading is dropped then.
pub const SHUTDOWN_TIME_MAX: Duration = Duration::from_secs(5);

/// Panics caught around a core call for one connection, since the process started, all
/// roles together (`gatewayworker_connection_panics_total`).
static CONNECTION_PANICS: AtomicU64 = AtomicU64::new(0);

/// How many panics [`catch_panic`] has caught in this process (every role's drivers).
pub fn connection_panics_total() -> u64 {
    CONNECTION_PANICS.load(Ordering::Relaxed)
}

/// A panic caught by [`catch_panic`]; its message, when the payload was a string.
#[derive(Debug)]
pub struct Panicked(pub String);

impl std::fmt::Display for Panicked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Runs `f`, a driver's call into its core on behalf of one connection (or one timer
/// tick), and contains a panic in it: the panic is counted (see
/// [`connection_panics_total`]) and handed back, and the caller closes that one
/// connection through its normal close path instead of letting the panic end the task
/// (which the `LocalSet` would swallow, leaving the connection in the core forever).
///
/// `AssertUnwindSafe` is sound here in Rust's sense (no undefined behaviour can follow); what
/// it asserts is that the state `f` touches stays usable. The cores are plain data with
/// no invariants spanning an `await`: a panic can at worst leave the one connection that
/// was being served half-updated (a message half-routed, an input buffer dropped), and
/// the caller then removes that connection through the core's own close handler, which
/// removes it from every index it is in by what the connection records. A `RefCell`
/// borrow held by `f` is released by the unwinding. The alternative, stopping the whole
/// driver (every client of a shard) on one connection's bad input, is the worse failure.
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Panicked> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        CONNECTION_PANICS.fetch_add(1, Ordering::Relaxed);
        let message = if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "non-string panic payload".to_owned()
        };
        Panicked(message)
    })
}

/// How the core asked a connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    AfterFlush,
    Now,
}

/// What the core queued for one connection, shared between the driver and its task.
#[derive(Default)]
struct Outbox {
    chunks: WriteQueue,
    closing: Option<Closing>,
}

/// The output side of one connection.
#[derive(Default)]
pub(crate) struct ConnIo {
    outbox: RefCell<Outbox>,
    wake: Wake,
}

/// A wake-up for the one task that serves a connection: a flag that stays set until the
/// task sees it, and the task's waker. (A `tokio::sync::Notify` would do the same, but
/// waiting on it keeps a 64-byte future in every idle connection's task.)
#[derive(Default)]
struct Wake {
    pending: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Wake {
    fn notify(&self) {
        self.pending.set(true);
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// Ready (and cleared) when notified since the last time; otherwise keeps `cx`'s
    /// waker for the next notification.
    fn poll(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.pending.replace(false) {
            return Poll::Ready(());
        }
        let waker = match self.waker.take() {
            Some(waker) if waker.will_wake(cx.waker()) => waker,
            _ => cx.waker().clone(),
        };
        self.waker.set(Some(waker));
        Poll::Pending
    }
}

impl ConnIo {
    /// Queues bytes for the connection and wakes its task.
    pub(crate) fn push(&self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.outbox.borrow_mut().chunks.push(bytes);
        self.wake.notify();
    }

    /// Asks the connection to end.
    pub(crate) fn close(&self, closing: Closing) {
        let mut outbox = self.outbox.borrow_mut();
        // A later immediate close wins over a graceful one, never the reverse.
        if outbox.closing != Some(Closing::Now) {
            outbox.closing = Some(closing);
        }
        drop(outbox);
        self.wake.notify();
    }
}

/// What the connection task needs from its driver.
pub(crate) trait ConnOwner {
    /// The driver's read buffer, shared by all its connections.
    fn scratch(&self) -> Rc<RefCell<Vec<u8>>>;
    /// Bytes read from the connection: feed the core and carry out what it asks.
    fn input(&self, bytes: &[u8]);
    /// Bytes written to the connection: tell the core and carry out what it asks.
    fn flushed(&self, bytes: usize);
}

/// Why a connection task ended.
#[derive(Debug)]
pub(crate) enum ConnEnd {
    PeerClosed,
    Closed(Closing),
    Error(io::Error),
    /// The core (or the driver's code around it) panicked while handling this
    /// connection's input or flush; caught, counted, and the connection is dropped at once.
    Panicked(Panicked),
}

/// Runs one connection until it ends; after a graceful close it also shuts the stream
/// down (bounded by [`SHUTDOWN_TIME_MAX`]). The caller then drops the stream and tells
/// its core the connection is gone.
pub(crate) async fn drive<S: NetStream>(
    owner: &impl ConnOwner,
    stream: &mut S,
    io: &ConnIo,
) -> ConnEnd {
    let end = conn_loop(owner, stream, io).await;
    // The shutdown futures (each with a timer) are boxed: inline, their size would be
    // part of every connection's task for its whole life, though only a closing
    // connection ever runs them.
    if let ConnEnd::Closed(Closing::AfterFlush) = end {
        // The driver's queue is written; a stream with buffers of its own (TLS, the
        // async adapter) still has to push them out and say goodbye.
        match Box::pin(tokio::time::timeout(SHUTDOWN_TIME_MAX, stream.shutdown())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "shutdown failed"),
            Err(_) => tracing::debug!("shutdown timed out"),
        }
    }
    if let ConnEnd::Closed(Closing::Now) = end {
        // The immediate close's one write may have gone into the stream's own buffers
        // (TLS, the async adapter under simulation), which the drop would lose where a
        // kernel socket still sends what it took. One poll, no wait: what the socket
        // takes now goes out (a reply just before destroyCurrentClient, sim seed 5).
        let _ = Box::pin(tokio::time::timeout(Duration::ZERO, stream.shutdown())).await;
    }
    end
}

/// What woke a connection task, in the order they are checked.
enum Wakeup {
    /// The core queued output or asked to close.
    Notified,
    /// The socket takes writes again.
    Writable(io::Result<()>),
    /// A graceful close made no progress for [`SHUTDOWN_TIME_MAX`].
    FlushTimedOut,
    /// The socket has something to read.
    Readable(io::Result<()>),
}

async fn conn_loop<S: NetStream>(owner: &impl ConnOwner, stream: &mut S, io: &ConnIo) -> ConnEnd {
    // A graceful close waits at most SHUTDOWN_TIME_MAX without progress for the queued
    // output: a peer that stops reading after a KICK must not hold its connection forever.
    // Boxed and made only once a graceful close starts: an inline `Sleep` would add its
    // size to every connection's task, idle or not.
    let mut flush_deadline: Option<Pin<Box<Sleep>>> = None;
    loop {
        let closing = io.outbox.borrow().closing;
        if closing == Some(Closing::Now) {
            // As the original's `send` then `destroy`: what was queued before the close
            // gets one non-blocking write (a reply sent just before destroyCurrentClient
            // reaches the client); what the socket does not take now is dropped.
            if let Err(Stop::Panicked(p)) = write_some(owner, stream, io) {
                return ConnEnd::Panicked(p);
            }
            return ConnEnd::Closed(Closing::Now);
        }
        let written = match write_some(owner, stream, io) {
            Ok(written) => written,
            Err(stop) => return stop.into(),
        };
        // The deadline counts from the last progress: a slow reader still gets everything.
        if closing == Some(Closing::AfterFlush) && (flush_deadline.is_none() || written > 0) {
            let at = Instant::now() + SHUTDOWN_TIME_MAX;
            match flush_deadline.as_mut() {
                Some(sleep) => sleep.as_mut().reset(at),
                None => flush_deadline = Some(Box::pin(tokio::time::sleep_until(at))),
            }
        }
        let has_output = !io.outbox.borrow().chunks.is_empty();
        if closing == Some(Closing::AfterFlush) && !has_output {
            return ConnEnd::Closed(Closing::AfterFlush);
        }
        // One hand-written poll instead of `select!` over futures: an idle connection's
        // task then holds no readiness or notification future at all. Checked in a
        // fixed order (as a biased select): the core's wake-up, writability, the flush
        // deadline, readability.
        let wakeup = std::future::poll_fn(|cx| {
            if io.wake.poll(cx).is_ready() {
                return Poll::Ready(Wakeup::Notified);
            }
            if has_output {
                if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                    return Poll::Ready(Wakeup::Writable(ready));
                }
            }
            if let Some(deadline) = flush_deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Wakeup::FlushTimedOut);
                }
            }
            if closing.is_none() {
                if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                    return Poll::Ready(Wakeup::Readable(ready));
                }
            }
            Poll::Pending
        })
        .await;
        match wakeup {
            Wakeup::Notified => {}
            Wakeup::Writable(ready) => {
                if let Err(e) = ready {
                    return ConnEnd::Error(e);
                }
            }
            Wakeup::FlushTimedOut => {
                tracing::debug!("graceful close timed out; dropping queued output");
                return ConnEnd::Closed(Closing::Now);
            }
            Wakeup::Readable(ready) => {
                if let Err(e) = ready {
                    return ConnEnd::Error(e);
                }
                match read_some(owner, stream) {
                    Ok(true) => {}
                    Ok(false) => return ConnEnd::PeerClosed,
                    Err(stop) => return stop.into(),
                }
            }
        }
    }
}

/// Reads what the socket has (bounded per turn) and feeds it to the core. `Ok(false)` at
/// the end of the stream.
fn read_some<S: NetStream>(owner: &impl ConnOwner, stream: &mut S) -> Result<bool, Stop> {
    let scratch = owner.scratch();
    let mut buf = scratch.borrow_mut();
    for _ in 0..READS_PER_TURN_MAX {
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                catch_panic(|| owner.input(&buf[..n])).map_err(Stop::Panicked)?;
                if n < buf.len() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Stop::Io(e)),
        }
    }
    Ok(true)
}

/// Why reading or writing stopped the connection.
enum Stop {
    Io(io::Error),
    Panicked(Panicked),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

impl From<Stop> for ConnEnd {
    fn from(stop: Stop) -> ConnEnd {
        match stop {
            Stop::Io(e) => ConnEnd::Error(e),
            Stop::Panicked(p) => ConnEnd::Panicked(p),
        }
    }
}

/// Writes as much queued output as the socket takes now, in one vectored call per round,
/// and reports the written bytes; returns how many were written.
fn write_some<S: NetStream>(
    owner: &impl ConnOwner,
    stream: &mut S,
    io: &ConnIo,
) -> Result<usize, Stop> {
    let mut total = 0;
    loop {
        let written = {
            let mut outbox = io.outbox.borrow_mut();
            if outbox.chunks.is_empty() {
                return Ok(total);
            }
            match outbox.chunks.write_to(stream) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) => return Err(e.into()),
            }
        };
        total += written;
        catch_panic(|| owner.flushed(written)).map_err(Stop::Panicked)?;
    }
}
