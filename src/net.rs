//! The network as drivers see it: a tiny trait over listeners and streams, implemented
//! for real tokio sockets here and for turmoil's simulated ones in `sim/`.
//!
//! Drivers are generic over [`Net`] so that the very same driver code runs in
//! production and in the deterministic simulation. The stream trait is readiness-based
//! (`read_ready` then `try_read`) rather than `AsyncRead`-based, because that lets a
//! tokio driver read every socket into one per-shard scratch buffer: an idle connection
//! then owns no read buffer at all.
#![allow(
    clippy::disallowed_methods,
    reason = "socket plumbing: readiness and accept backoff deadlines use the clock"
)]

use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::task::{Context, Poll};
use std::time::Duration;

mod async_stream;
pub(crate) mod conn;
pub mod memory;
pub mod tls;
mod write_queue;

pub use async_stream::{AsyncStream, AsyncStreamLimits, READ_BUFFER_CEILING};
pub use conn::{catch_panic, connection_panics_total, Panicked};
pub use write_queue::{WriteQueue, CHUNK_SLOTS_KEPT, WRITE_SLICES_MAX};

/// Stack size, in bytes, of every thread that runs a role's driver (gateway shards,
/// business worker instances, the register, the http servers): 8 MiB, the usual
/// main-thread size on Linux, instead of the 2 MiB std gives spawned threads by default
/// (or whatever `RUST_MIN_STACK` says).
/// Set explicitly so that the depth the decoders allow (they bound their recursion, e.g.
/// PHP values and JSON nesting) always fits whatever the environment. It is address
/// space: only the pages a thread touches become memory.
pub const ROLE_THREAD_STACK_BYTES: usize = 8 * 1024 * 1024;

/// A way to listen and connect: tokio in production, turmoil in the simulation.
pub trait Net: Clone + Send + 'static {
    /// A connected stream.
    type Stream: NetStream;
    /// A bound listener.
    type Listener: NetListener<Stream = Self::Stream>;

    /// Binds a listener. `reuse_port` asks for `SO_REUSEPORT` so that several shards can
    /// share one public port (ignored where the network has no such thing).
    fn bind(
        &self,
        addr: SocketAddr,
        reuse_port: bool,
    ) -> impl Future<Output = io::Result<Self::Listener>>;

    /// Connects to `addr` (`host:port`).
    fn connect(&self, addr: &str) -> impl Future<Output = io::Result<Self::Stream>>;
}

/// A bound listener.
pub trait NetListener: 'static {
    /// The streams it accepts.
    type Stream: NetStream;

    /// Waits for the next connection.
    fn accept(&mut self) -> impl Future<Output = io::Result<(Self::Stream, SocketAddr)>>;

    /// The address it is bound to.
    fn local_addr(&self) -> io::Result<SocketAddr>;
}

/// A connected byte stream with readiness-based reads and writes.
///
/// Readiness is polled (`poll_read_ready`, `poll_write_ready`) rather than awaited
/// through futures, so a connection task waiting for its socket stores no readiness
/// future in its state: with 10k idle connections, those bytes are most of a task.
/// Only one task may wait on each direction of a stream (the last waker registered is
/// the one woken), which is how every driver uses them.
/// Streams are `Send` (a worker's wasm store, which must be, holds its driver's links),
/// though every driver uses each stream from one thread.
pub trait NetStream: Send + 'static {
    /// Ready when a `try_read` may make progress (data, end of stream or an error);
    /// otherwise registers `cx`'s waker.
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Waits until a `try_read` may make progress. Cancel-safe.
    fn read_ready(&self) -> impl Future<Output = io::Result<()>> {
        std::future::poll_fn(move |cx| self.poll_read_ready(cx))
    }

    /// Reads what is available; `Ok(0)` is the end of the stream, `WouldBlock` means
    /// wait for `read_ready` again.
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Ready when a `try_write_vectored` may make progress; otherwise registers `cx`'s
    /// waker.
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;

    /// Waits until a `try_write_vectored` may make progress. Cancel-safe.
    fn write_ready(&self) -> impl Future<Output = io::Result<()>> {
        std::future::poll_fn(move |cx| self.poll_write_ready(cx))
    }

    /// Writes as much of `bufs` as the socket takes now (`WouldBlock` when none).
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;

    /// Finishes a graceful close: pushes out whatever the stream still buffers itself
    /// and signals the end of the stream where the transport needs a message for it (a
    /// TLS `close_notify`). The driver awaits it, bounded by a timeout, before dropping a
    /// stream it closes after flushing. A no-op for a kernel socket, which sends its
    /// queued bytes and the FIN on its own after the drop.
    fn shutdown(&mut self) -> impl Future<Output = io::Result<()>>;

    /// The local address of the stream.
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// The remote address of the stream.
    fn peer_addr(&self) -> io::Result<SocketAddr>;
}

/// Real sockets through tokio.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioNet;

/// A tokio listener.
#[derive(Debug)]
pub struct TokioListener(tokio::net::TcpListener);

/// A tokio stream.
#[derive(Debug)]
pub struct TokioStream(tokio::net::TcpStream);

impl TokioStream {
    /// Wraps a connected tokio stream (with `TCP_NODELAY` set: every frame we write is a
    /// complete message, and Nagle would add latency to each).
    pub fn new(stream: tokio::net::TcpStream) -> TokioStream {
        let _ = stream.set_nodelay(true);
        TokioStream(stream)
    }
}

impl Net for TokioNet {
    type Stream = TokioStream;
    type Listener = TokioListener;

    async fn bind(&self, addr: SocketAddr, reuse_port: bool) -> io::Result<TokioListener> {
        TokioListener::from_std(bind_std(addr, reuse_port)?)
    }

    async fn connect(&self, addr: &str) -> io::Result<TokioStream> {
        Ok(TokioStream::new(
            tokio::net::TcpStream::connect(addr).await?,
        ))
    }
}

impl NetListener for TokioListener {
    type Stream = TokioStream;

    async fn accept(&mut self) -> io::Result<(TokioStream, SocketAddr)> {
        let (stream, peer) = self.0.accept().await?;
        Ok((TokioStream::new(stream), peer))
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }
}

impl NetStream for TokioStream {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        try_read_drained(&self.0, buf)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_write_ready(cx)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.peer_addr()
    }
}

/// `TcpStream::try_read`, telling tokio when a read drained the socket.
///
/// A read that returns less than asked for drained the socket: it says so (a
/// `WouldBlock` from inside `try_io` clears the readiness), so the next wait sleeps at
/// once instead of costing one more `recv` that fails with EAGAIN — one syscall less per
/// message. Tokio's own `poll_read` does the same. Safe with edge-triggered epoll: bytes
/// arriving after the read raise a new event, and a clear only drops the readiness the
/// read itself observed. (Public for the benchmarks' reference servers, which read the
/// same way.)
pub fn try_read_drained(stream: &tokio::net::TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut drained = 0;
    let read = stream.try_io(tokio::io::Interest::READABLE, || {
        let n = std::io::Read::read(&mut &*socket2::SockRef::from(stream), buf)?;
        if n > 0 && n < buf.len() {
            drained = n;
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match read {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock && drained > 0 => Ok(drained),
        other => other,
    }
}

/// Binds a listening socket synchronously (so that "address in use" is reported before
/// any runtime starts), optionally with `SO_REUSEPORT` so that shards share a port.
pub fn bind_std(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

impl TokioListener {
    /// Adopts a listener bound with [`bind_std`]; must be called inside a runtime.
    pub fn from_std(listener: std::net::TcpListener) -> io::Result<TokioListener> {
        Ok(TokioListener(tokio::net::TcpListener::from_std(listener)?))
    }
}

/// First pause of an accept loop after an error that is not one connection's own (the
/// process or the kernel is out of something: EMFILE, ENFILE, ENOBUFS, ENOMEM); each
/// further error in a row doubles it up to [`ACCEPT_PAUSE_MAX`].
pub const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
/// Longest pause of an accept loop between two failing accepts. Connections arriving
/// meanwhile wait in the kernel's listen backlog (1024, see [`bind_std`]).
pub const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// An accept loop that keeps failing logs one warning per interval, with the number of
/// errors since the last line.
pub const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(5);

/// The error policy of one accept loop: errors that concern only the connection being
/// accepted (aborted or reset before accept, interrupted) are retried at once; any other
/// error (typically EMFILE, ENFILE, ENOBUFS, ENOMEM, which persist until something is
/// freed) pauses the loop, from [`ACCEPT_PAUSE_MIN`] doubling to [`ACCEPT_PAUSE_MAX`], so
/// it does not spin on a listener that stays readable; warnings are rate-limited to one
/// per [`ACCEPT_LOG_INTERVAL`], each with the number of errors since the previous one.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    pause: Duration,
    paused_until: Option<tokio::time::Instant>,
    /// Errors not yet reported in a log line.
    unlogged: u64,
    last_log: Option<tokio::time::Instant>,
}

impl AcceptBackoff {
    /// The policy for the accept loop named `what` (used in its log lines).
    pub fn new(what: &'static str) -> AcceptBackoff {
        AcceptBackoff {
            what,
            pause: ACCEPT_PAUSE_MIN,
            paused_until: None,
            unlogged: 0,
            last_log: None,
        }
    }

    /// Accepts with `attempt` (one accept call), retrying through errors under this
    /// policy until one succeeds. Cancel-safe when `attempt` is: a pause interrupted by
    /// cancellation resumes where it was on the next call.
    pub async fn accept<T>(&mut self, mut attempt: impl AsyncFnMut() -> io::Result<T>) -> T {
        loop {
            if let Some(until) = self.paused_until {
                tokio::time::sleep_until(until).await;
                self.paused_until = None;
            }
            match attempt().await {
                Ok(accepted) => {
                    self.succeeded();
                    return accepted;
                }
                Err(e) => self.failed(&e),
            }
        }
    }

    /// A success ends the pause, not the log rate limit: a loop that succeeds and fails
    /// in turn (fds freed one at a time) still logs one line per interval.
    fn succeeded(&mut self) {
        self.pause = ACCEPT_PAUSE_MIN;
    }

    fn failed(&mut self, e: &io::Error) {
        if is_connection_error(e) {
            tracing::debug!(listener = self.what, error = %e, "accept failed for one connection");
            return;
        }
        self.unlogged += 1;
        let now = tokio::time::Instant::now();
        let due = self
            .last_log
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_LOG_INTERVAL);
        if due {
            tracing::warn!(
                listener = self.what,
                error = %e,
                errors = self.unlogged,
                pause_ms = u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX),
                "accept failing; pausing the accept loop ({} errors since the last report)",
                self.unlogged
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        self.paused_until = Some(now + self.pause);
        self.pause = (self.pause * 2).min(ACCEPT_PAUSE_MAX);
    }
}

/// Errors `accept` returns for the one connection it was taking (the next accept may
/// well succeed): retried at once.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
