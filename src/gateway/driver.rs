//! The gateway's driver: owns the sockets of one shard and pumps bytes between them and
//! its [`GatewayCore`].
//!
//! One shard = one core on one single-threaded runtime (a `LocalSet`), exactly the
//! original's one-process model: no locks and no shared maps. Every connection (client,
//! worker link, register link) is a small local task that waits for readiness, reads into
//! the shard's one scratch buffer, feeds the core and writes what the core queued for it.
//! A timer task sleeps until the core's next deadline.
//!
//! The driver is generic over [`Net`], so the same code runs on tokio sockets in
//! production and on turmoil's simulated network in `sim/`. It never decides anything
//! the core could decide: it only carries out [`Action`]s.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hashbrown::HashMap;

/// A fixed (not randomly seeded) hasher: the connection maps are iterated at shutdown, and
/// nothing observable may depend on a per-process random seed (simulation determinism).
type FixedState = std::hash::BuildHasherDefault<std::collections::hash_map::DefaultHasher>;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Action, ConnectionId, GatewayConfig, GatewayCore, LinkId, Target};
use crate::net::{Net, NetListener, NetStream};

/// Size of the per-shard read buffer: one read takes at most this much from a socket.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Reads served for one connection before yielding to the others (fairness bound).
const READS_PER_TURN_MAX: usize = 4;
/// Buffers handed to one vectored write.
const WRITE_SLICES_MAX: usize = 64;
/// Longest register line kept while waiting for its `\n` (the register sends short JSON).
const REGISTER_LINE_MAX: usize = 1024 * 1024;
/// Longest wait without progress, after a graceful close (KICK, websocket close), first
/// for the driver's queued output to be written and then for the stream's own
/// [`NetStream::shutdown`] (a TLS stream pushing its last records): a peer that stopped
/// reading is dropped then.
pub const SHUTDOWN_TIME_MAX: Duration = Duration::from_secs(5);

/// Which connection of the shard an I/O task serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Endpoint {
    Client(ConnectionId),
    Link(LinkId),
    Register(usize),
}

impl From<Target> for Endpoint {
    fn from(target: Target) -> Endpoint {
        match target {
            Target::Client(id) => Endpoint::Client(id),
            Target::Link(id) => Endpoint::Link(id),
            Target::Register(index) => Endpoint::Register(index),
        }
    }
}

/// How the core asked a connection to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    AfterFlush,
    Now,
}

/// What the core queued for one connection, shared between the shard and its task.
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

/// One shard: its core and the output side of its connections.
struct Shard<N: Net> {
    net: N,
    core: GatewayCore,
    origin: Instant,
    conns: HashMap<Endpoint, Rc<ConnIo>, FixedState>,
    register_input: HashMap<usize, BytesMut, FixedState>,
    timer_armed: Option<Duration>,
    timer_wake: Rc<Notify>,
    scratch: Rc<RefCell<Vec<u8>>>,
}

type SharedShard<N> = Rc<RefCell<Shard<N>>>;

impl<N: Net> Shard<N> {
    fn now(&self) -> Duration {
        Instant::now().saturating_duration_since(self.origin)
    }

    /// Carries out everything the core asked for. Called after every input.
    fn dispatch(&mut self, shard: &SharedShard<N>) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Transmit { to, bytes } => {
                    if let Some(io) = self.conns.get(&Endpoint::from(to)) {
                        io.push(bytes);
                    }
                }
                Action::CloseClient {
                    id,
                    after_flush,
                    reason,
                } => {
                    tracing::debug!(connection_id = id.0, ?reason, "closing client");
                    self.close(Endpoint::Client(id), after_flush);
                }
                Action::CloseLink {
                    id,
                    after_flush,
                    reason,
                } => {
                    tracing::debug!(link = id.0, ?reason, "closing link");
                    self.close(Endpoint::Link(id), after_flush);
                }
                Action::ConnectRegister { index } => {
                    tokio::task::spawn_local(run_register(shard.clone(), index));
                }
            }
        }
        if self.core.poll_timeout() != self.timer_armed {
            self.timer_wake.notify_one();
        }
    }

    fn close(&mut self, endpoint: Endpoint, after_flush: bool) {
        if let Some(io) = self.conns.get(&endpoint) {
            io.close(if after_flush {
                Closing::AfterFlush
            } else {
                Closing::Now
            });
        }
    }

    /// Feeds bytes read from `endpoint` to the core.
    fn input(&mut self, endpoint: Endpoint, bytes: &[u8]) {
        let now = self.now();
        match endpoint {
            Endpoint::Client(id) => self.core.handle_client_bytes(now, id, bytes),
            Endpoint::Link(id) => self.core.handle_link_bytes(now, id, bytes),
            Endpoint::Register(index) => {
                let pending = self.register_input.entry(index).or_default();
                pending.extend_from_slice(bytes);
                while let Some(end) = pending.iter().position(|b| *b == b'\n') {
                    let line = pending.split_to(end + 1);
                    self.core.handle_register_line(now, index, trim_line(&line));
                }
                if pending.len() > REGISTER_LINE_MAX {
                    tracing::warn!(
                        register = index,
                        "register line over {REGISTER_LINE_MAX} bytes; closing"
                    );
                    self.close(endpoint, false);
                }
            }
        }
    }

    fn flushed(&mut self, endpoint: Endpoint, bytes: usize) {
        let now = self.now();
        match endpoint {
            Endpoint::Client(id) => self.core.handle_client_flushed(now, id, bytes),
            Endpoint::Link(id) => self.core.handle_link_flushed(now, id, bytes),
            Endpoint::Register(_) => {}
        }
    }

    fn closed(&mut self, endpoint: Endpoint) {
        self.conns.remove(&endpoint);
        let now = self.now();
        match endpoint {
            Endpoint::Client(id) => self.core.handle_client_closed(now, id),
            Endpoint::Link(id) => self.core.handle_link_closed(now, id),
            Endpoint::Register(index) => {
                self.register_input.remove(&index);
                self.core.handle_register_closed(now, index);
            }
        }
    }
}

fn trim_line(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| *b != b'\n' && *b != b'\r')
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// Serves one gateway shard until `shutdown` completes: clients on `public`, worker and
/// API links on `lan`, the register connections the core asks for, and its timers.
///
/// The public listener is a type of its own so that clients may arrive through a
/// different stream type than links (TLS for `wss://`, see [`crate::net::tls`]); pass
/// `N::Listener` when they do not.
///
/// Runs its tasks on a `LocalSet` of its own, so it can be awaited from any
/// single-threaded runtime (a plain current-thread tokio runtime or a turmoil host).
pub async fn serve<N: Net, P: NetListener>(
    net: N,
    config: GatewayConfig,
    public: P,
    lan: N::Listener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(serve_local(net, config, public, lan, shutdown))
        .await
}

async fn serve_local<N: Net, P: NetListener>(
    net: N,
    config: GatewayConfig,
    mut public: P,
    mut lan: N::Listener,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let origin = Instant::now();
    let timer_wake = Rc::new(Notify::new());
    let shard = Rc::new(RefCell::new(Shard {
        net,
        core: GatewayCore::new(config, Duration::ZERO),
        origin,
        conns: HashMap::default(),
        register_input: HashMap::default(),
        timer_armed: None,
        timer_wake: timer_wake.clone(),
        scratch: Rc::new(RefCell::new(vec![0; SCRATCH_SIZE])),
    }));
    {
        let mut s = shard.borrow_mut();
        s.dispatch(&shard);
    }
    let timer = tokio::task::spawn_local(run_timer(shard.clone(), timer_wake));
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            accepted = public.accept() => match accepted {
                Ok((stream, peer)) => accept_client(&shard, stream, peer),
                Err(e) => tracing::warn!(error = %e, "accept on the public port failed"),
            },
            accepted = lan.accept() => match accepted {
                Ok((stream, peer)) => accept_link(&shard, stream, peer),
                Err(e) => tracing::warn!(error = %e, "accept on the lan port failed"),
            },
        }
    };
    timer.abort();
    // Ask every connection to finish what it has queued, then give the tasks a moment.
    let conns: Vec<Rc<ConnIo>> = shard.borrow().conns.values().cloned().collect();
    for io in conns {
        io.close(Closing::AfterFlush);
    }
    tokio::task::yield_now().await;
    result
}

fn accept_client<N: Net, S: NetStream>(shard: &SharedShard<N>, stream: S, peer: SocketAddr) {
    let mut s = shard.borrow_mut();
    let now = s.now();
    let id = match s.core.handle_client_connected(now, peer) {
        Ok(id) => id,
        Err(refused) => {
            tracing::warn!(%peer, %refused, "client refused");
            return;
        }
    };
    start_conn(&mut s, shard, Endpoint::Client(id), stream);
}

fn accept_link<N: Net>(shard: &SharedShard<N>, stream: N::Stream, peer: SocketAddr) {
    let mut s = shard.borrow_mut();
    let now = s.now();
    let id = match s.core.handle_link_connected(now, peer) {
        Ok(id) => id,
        Err(refused) => {
            tracing::warn!(%peer, %refused, "link refused");
            return;
        }
    };
    tracing::debug!(%peer, link = id.0, "link connected");
    start_conn(&mut s, shard, Endpoint::Link(id), stream);
}

/// Registers the connection's output side, runs the core's reaction to the connect, and
/// spawns the connection's I/O task.
fn start_conn<N: Net, S: NetStream>(
    s: &mut Shard<N>,
    shard: &SharedShard<N>,
    endpoint: Endpoint,
    stream: S,
) {
    let io = Rc::new(ConnIo::default());
    s.conns.insert(endpoint, io.clone());
    s.dispatch(shard);
    tokio::task::spawn_local(run_conn(shard.clone(), endpoint, stream, io));
}

async fn run_register<N: Net>(shard: SharedShard<N>, index: usize) {
    let (net, address) = {
        let s = shard.borrow();
        let address = s.core.config().register_addresses.get(index).cloned();
        (s.net.clone(), address)
    };
    let Some(address) = address else { return };
    match net.connect(&address).await {
        Ok(stream) => {
            let io = Rc::new(ConnIo::default());
            {
                let mut s = shard.borrow_mut();
                s.conns.insert(Endpoint::Register(index), io.clone());
                let now = s.now();
                s.core.handle_register_connected(now, index);
                s.dispatch(&shard);
            }
            run_conn(shard, Endpoint::Register(index), stream, io).await;
        }
        Err(e) => {
            tracing::warn!(register = %address, error = %e, "cannot connect to the register");
            let mut s = shard.borrow_mut();
            let now = s.now();
            s.core.handle_register_closed(now, index);
            s.dispatch(&shard);
        }
    }
}

/// The timer task: sleeps until the core's next deadline, or until an input moved it.
async fn run_timer<N: Net>(shard: SharedShard<N>, wake: Rc<Notify>) {
    loop {
        let (deadline, origin) = {
            let mut s = shard.borrow_mut();
            let deadline = s.core.poll_timeout();
            s.timer_armed = deadline;
            (deadline, s.origin)
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
        let mut s = shard.borrow_mut();
        let now = s.now();
        s.core.handle_timeout(now);
        s.dispatch(&shard);
    }
}

/// Why a connection task ended.
#[derive(Debug)]
enum ConnEnd {
    PeerClosed,
    Closed(Closing),
    Error(io::Error),
}

/// One connection's I/O: reads into the shard's scratch buffer and feeds the core;
/// writes what the core queued; ends when the peer goes or the core closes it.
async fn run_conn<N: Net, S: NetStream>(
    shard: SharedShard<N>,
    endpoint: Endpoint,
    mut stream: S,
    io: Rc<ConnIo>,
) {
    let end = conn_loop(&shard, endpoint, &mut stream, &io).await;
    match &end {
        ConnEnd::Error(e) => tracing::debug!(?endpoint, error = %e, "connection error"),
        other => tracing::trace!(?endpoint, ?other, "connection ended"),
    }
    if let ConnEnd::Closed(Closing::AfterFlush) = end {
        // The driver's queue is written; a stream with buffers of its own (TLS, the
        // async adapter) still has to push them out and say goodbye.
        match tokio::time::timeout(SHUTDOWN_TIME_MAX, stream.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(?endpoint, error = %e, "shutdown failed"),
            Err(_) => tracing::debug!(?endpoint, "shutdown timed out"),
        }
    }
    drop(stream);
    let mut s = shard.borrow_mut();
    s.closed(endpoint);
    s.dispatch(&shard);
}

async fn conn_loop<N: Net, S: NetStream>(
    shard: &SharedShard<N>,
    endpoint: Endpoint,
    stream: &mut S,
    io: &ConnIo,
) -> ConnEnd {
    // A graceful close waits at most SHUTDOWN_TIME_MAX without progress for the queued
    // output: a peer that stops reading after a KICK must not hold its connection forever.
    let mut flush_deadline: Option<Instant> = None;
    loop {
        let closing = io.outbox.borrow().closing;
        if closing == Some(Closing::Now) {
            return ConnEnd::Closed(Closing::Now);
        }
        let written = match write_some(shard, endpoint, stream, io) {
            Ok(written) => written,
            Err(e) => return ConnEnd::Error(e),
        };
        // The deadline counts from the last progress: a slow reader still gets everything.
        if closing == Some(Closing::AfterFlush) && (flush_deadline.is_none() || written > 0) {
            flush_deadline = Some(Instant::now() + SHUTDOWN_TIME_MAX);
        }
        let has_output = !io.outbox.borrow().chunks.is_empty();
        if closing == Some(Closing::AfterFlush) && !has_output {
            return ConnEnd::Closed(Closing::AfterFlush);
        }
        tokio::select! {
            biased;
            () = io.wake.notified() => {}
            ready = stream.write_ready(), if has_output => {
                if let Err(e) = ready {
                    return ConnEnd::Error(e);
                }
            }
            () = sleep_until_deadline(flush_deadline), if flush_deadline.is_some() => {
                tracing::debug!(?endpoint, "graceful close timed out; dropping queued output");
                return ConnEnd::Closed(Closing::Now);
            }
            ready = stream.read_ready(), if closing.is_none() => {
                if let Err(e) = ready {
                    return ConnEnd::Error(e);
                }
                match read_some(shard, endpoint, stream) {
                    Ok(true) => {}
                    Ok(false) => return ConnEnd::PeerClosed,
                    Err(e) => return ConnEnd::Error(e),
                }
            }
        }
    }
}

async fn sleep_until_deadline(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads what the socket has (bounded per turn) and feeds it to the core. `Ok(false)` at
/// the end of the stream.
fn read_some<N: Net, S: NetStream>(
    shard: &SharedShard<N>,
    endpoint: Endpoint,
    stream: &mut S,
) -> io::Result<bool> {
    let scratch = shard.borrow().scratch.clone();
    let mut buf = scratch.borrow_mut();
    for _ in 0..READS_PER_TURN_MAX {
        match stream.try_read(&mut buf) {
            Ok(0) => return Ok(false),
            Ok(n) => {
                let mut s = shard.borrow_mut();
                s.input(endpoint, &buf[..n]);
                s.dispatch(shard);
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

/// Writes as much queued output as the socket takes now, in one vectored call per
/// round, and reports the written bytes to the core.
fn write_some<N: Net, S: NetStream>(
    shard: &SharedShard<N>,
    endpoint: Endpoint,
    stream: &mut S,
    io: &ConnIo,
) -> io::Result<usize> {
    let mut total = 0;
    loop {
        let written = {
            let outbox = io.outbox.borrow();
            if outbox.chunks.is_empty() {
                return Ok(total);
            }
            // A fixed array, not a Vec: no allocation per write on the hot path.
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES_MAX];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(outbox.chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            match stream.try_write_vectored(&slices[..count]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        total += written;
        consume(&mut io.outbox.borrow_mut().chunks, written);
        let mut s = shard.borrow_mut();
        s.flushed(endpoint, written);
        s.dispatch(shard);
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
