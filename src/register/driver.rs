//! The register's driver: owns the listener and the sockets and pumps bytes between them
//! and the [`RegisterCore`], in the shape of the gateway's driver.
//!
//! Everything runs on one single-threaded `LocalSet`, like the original's one process:
//! the core sits in an `Rc<RefCell<..>>`; every connection is a small local task that
//! waits for readiness, reads into the one scratch buffer, feeds the core and writes what
//! the core queued for it; a timer task sleeps until the core's next deadline (the 10 s
//! first-line timeouts). The driver is generic over [`Net`], so the same code runs on
//! tokio sockets and on turmoil's simulated network. It decides nothing the core could.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{Action, ConnId, RegisterConfig, RegisterCore};
use crate::net::{bind_std, Net, NetListener, NetStream, TokioListener, TokioNet};

/// Size of the shared read buffer: one read takes at most this much from a socket.
const SCRATCH_SIZE: usize = 16 * 1024;
/// Reads served for one connection before yielding to the others (fairness bound).
const READS_PER_TURN_MAX: usize = 4;
/// Buffers handed to one vectored write.
const WRITE_SLICES_MAX: usize = 64;

/// How the core asked a connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    AfterFlush,
    Now,
}

/// What the core queued for one connection, shared between the register and its task.
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    closing: Option<Closing>,
}

/// The output side of one connection.
#[derive(Default)]
struct ConnIo {
    outbox: RefCell<Outbox>,
    wake: Notify,
}

impl ConnIo {
    fn push(&self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        self.outbox.borrow_mut().chunks.push_back(bytes);
        self.wake.notify_one();
    }

    fn close(&self, closing: Closing) {
        let mut outbox = self.outbox.borrow_mut();
        // A later immediate close wins over a graceful one, never the reverse.
        if outbox.closing != Some(Closing::Now) {
            outbox.closing = Some(closing);
        }
        drop(outbox);
        self.wake.notify_one();
    }
}

/// The register process: its core and the output side of its connections.
struct Register {
    core: RegisterCore,
    origin: Instant,
    conns: BTreeMap<ConnId, Rc<ConnIo>>,
    timer_armed: Option<Duration>,
    timer_wake: Rc<Notify>,
    scratch: Rc<RefCell<Vec<u8>>>,
}

type Shared = Rc<RefCell<Register>>;

impl Register {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// Carries out everything the core asked for. Called after every input.
    fn dispatch(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Transmit { to, bytes } => {
                    if let Some(io) = self.conns.get(&to) {
                        io.push(bytes);
                    }
                }
                Action::Close {
                    id,
                    after_flush,
                    reason,
                } => {
                    tracing::debug!(conn = id.0, ?reason, "register closes a connection");
                    if let Some(io) = self.conns.get(&id) {
                        io.close(if after_flush {
                            Closing::AfterFlush
                        } else {
                            Closing::Now
                        });
                    }
                }
            }
        }
        if self.core.poll_timeout() != self.timer_armed {
            self.timer_wake.notify_one();
        }
    }

    fn closed(&mut self, id: ConnId) {
        self.conns.remove(&id);
        let now = self.now();
        self.core.handle_closed(now, id);
    }
}

/// Serves the register on `listener` until `shutdown` completes.
///
/// Runs its tasks on a `LocalSet` of its own, so it can be awaited from any
/// single-threaded runtime (a current-thread tokio runtime or a turmoil host). `net` is
/// taken for symmetry with the other drivers: the register opens no connection.
pub async fn serve<N: Net>(
    net: N,
    config: RegisterConfig,
    listener: N::Listener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let _ = net;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(serve_local::<N>(config, listener, shutdown))
        .await
}

async fn serve_local<N: Net>(
    config: RegisterConfig,
    mut listener: N::Listener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let timer_wake = Rc::new(Notify::new());
    let register = Rc::new(RefCell::new(Register {
        core: RegisterCore::new(config),
        origin: Instant::now(),
        conns: BTreeMap::new(),
        timer_armed: None,
        timer_wake: timer_wake.clone(),
        scratch: Rc::new(RefCell::new(vec![0; SCRATCH_SIZE])),
    }));
    let timer = tokio::task::spawn_local(run_timer(register.clone(), timer_wake));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => accept::<N>(&register, stream, peer),
                Err(e) => tracing::warn!(error = %e, "accept on the register port failed"),
            },
        }
    }
    timer.abort();
    // Ask every connection to finish what it has queued, then give the tasks a moment.
    let conns: Vec<Rc<ConnIo>> = register.borrow().conns.values().cloned().collect();
    for io in conns {
        io.close(Closing::AfterFlush);
    }
    tokio::task::yield_now().await;
    Ok(())
}

fn accept<N: Net>(register: &Shared, stream: N::Stream, peer: SocketAddr) {
    let mut r = register.borrow_mut();
    let now = r.now();
    let id = match r.core.handle_connected(now, peer) {
        Ok(id) => id,
        Err(refused) => {
            tracing::warn!(%peer, %refused, "register connection refused");
            return;
        }
    };
    let io = Rc::new(ConnIo::default());
    r.conns.insert(id, io.clone());
    r.dispatch();
    tokio::task::spawn_local(run_conn::<N>(register.clone(), id, stream, io));
}

/// The timer task: sleeps until the core's next deadline, or until an input moved it.
async fn run_timer(register: Shared, wake: Rc<Notify>) {
    loop {
        let (deadline, origin) = {
            let mut r = register.borrow_mut();
            let deadline = r.core.poll_timeout();
            r.timer_armed = deadline;
            (deadline, r.origin)
        };
        match deadline {
            Some(at) => {
                tokio::select! {
                    biased;
                    () = wake.notified() => continue,
                    () = tokio::time::sleep_until(origin + at) => {}
                }
            }
            None => {
                wake.notified().await;
                continue;
            }
        }
        let mut r = register.borrow_mut();
        let now = r.now();
        r.core.handle_timeout(now);
        r.dispatch();
    }
}

/// Why a connection task ended.
#[derive(Debug)]
enum ConnEnd {
    PeerClosed,
    Closed,
    Error(io::Error),
}

/// One connection's I/O: reads into the shared scratch buffer and feeds the core; writes
/// what the core queued; ends when the peer goes or the core closes it.
async fn run_conn<N: Net>(register: Shared, id: ConnId, mut stream: N::Stream, io: Rc<ConnIo>) {
    let end = conn_loop::<N>(&register, id, &mut stream, &io).await;
    match &end {
        ConnEnd::Error(e) => tracing::debug!(conn = id.0, error = %e, "connection error"),
        other => tracing::trace!(conn = id.0, ?other, "connection ended"),
    }
    drop(stream);
    let mut r = register.borrow_mut();
    r.closed(id);
    r.dispatch();
}

async fn conn_loop<N: Net>(
    register: &Shared,
    id: ConnId,
    stream: &mut N::Stream,
    io: &ConnIo,
) -> ConnEnd {
    loop {
        let closing = io.outbox.borrow().closing;
        if closing == Some(Closing::Now) {
            return ConnEnd::Closed;
        }
        if let Err(e) = write_some::<N>(register, id, stream, io) {
            return ConnEnd::Error(e);
        }
        let has_output = !io.outbox.borrow().chunks.is_empty();
        if closing == Some(Closing::AfterFlush) && !has_output {
            return ConnEnd::Closed;
        }
        tokio::select! {
            biased;
            () = io.wake.notified() => {}
            ready = stream.write_ready(), if has_output => {
                if let Err(e) = ready {
                    return ConnEnd::Error(e);
                }
            }
            ready = stream.read_ready(), if closing.is_none() => {
                if let Err(e) = ready {
                    return ConnEnd::Error(e);
                }
                match read_some::<N>(register, id, stream) {
                    Ok(true) => {}
                    Ok(false) => return ConnEnd::PeerClosed,
                    Err(e) => return ConnEnd::Error(e),
                }
            }
        }
    }
}

/// Reads what the socket has (bounded per turn) and feeds it to the core. `Ok(false)` at
/// the end of the stream.
fn read_some<N: Net>(register: &Shared, id: ConnId, stream: &mut N::Stream) -> io::Result<bool> {
    let scratch = register.borrow().scratch.clone();
    let mut buf = scratch.borrow_mut();
    for _ in 0..READS_PER_TURN_MAX {
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let mut r = register.borrow_mut();
                let now = r.now();
                r.core.handle_bytes(now, id, &buf[..n]);
                r.dispatch();
                if n < buf.len() {
                    return Ok(true);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// Writes as much queued output as the socket takes now and reports it to the core.
fn write_some<N: Net>(
    register: &Shared,
    id: ConnId,
    stream: &mut N::Stream,
    io: &ConnIo,
) -> io::Result<()> {
    loop {
        let written = {
            let outbox = io.outbox.borrow();
            if outbox.chunks.is_empty() {
                return Ok(());
            }
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(outbox.chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        consume(&mut io.outbox.borrow_mut().chunks, written);
        let mut r = register.borrow_mut();
        let now = r.now();
        r.core.handle_flushed(now, id, written);
        r.dispatch();
    }
}

/// Drops `n` written bytes from the front of the queue.
fn consume(chunks: &mut VecDeque<Bytes>, mut n: usize) {
    while n > 0 {
        let Some(front) = chunks.front_mut() else {
            return;
        };
        if front.len() <= n {
            n -= front.len();
            chunks.pop_front();
        } else {
            front.advance(n);
            n = 0;
        }
    }
}

/// Where to run a register on real sockets.
#[derive(Debug, Clone)]
pub struct RegisterSettings {
    /// The address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The core's settings.
    pub core: RegisterConfig,
}

impl RegisterSettings {
    /// Settings for a register on `listen` with the original's defaults and `secret_key`.
    pub fn new(listen: SocketAddr, secret_key: impl Into<String>) -> RegisterSettings {
        RegisterSettings {
            listen,
            core: RegisterConfig::new(secret_key),
        }
    }
}

/// A running register; dropping it does not stop it, call [`RunningRegister::shutdown`].
#[derive(Debug)]
pub struct RunningRegister {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: JoinHandle<io::Result<()>>,
}

impl RunningRegister {
    /// Stops accepting, lets every connection flush, and waits for the thread.
    pub fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(true);
        self.join()
    }

    /// Waits for the register to end (on shutdown or on a fatal error).
    pub fn join(self) -> io::Result<()> {
        match self.thread.join() {
            Ok(result) => result,
            Err(_) => Err(io::Error::other("the register thread panicked")),
        }
    }
}

/// Binds the listener (so that "address in use" comes back here, before anything runs)
/// and starts the register on a thread with a current-thread runtime.
pub fn start(settings: RegisterSettings) -> io::Result<RunningRegister> {
    let listener = bind_std(settings.listen, false)?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let config = settings.core;
    let thread = std::thread::Builder::new()
        .name("register".to_owned())
        .spawn(move || -> io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = TokioListener::from_std(listener)?;
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                serve(TokioNet, config, listener, shutdown).await
            })
        })?;
    Ok(RunningRegister { addr, stop, thread })
}
