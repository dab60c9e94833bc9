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
#![allow(
    clippy::disallowed_methods,
    reason = "the driver reads the clock and hands `now` to the core"
)]

use std::cell::RefCell;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use hashbrown::HashMap;

/// A fixed (not randomly seeded) hasher: the connection maps are iterated at shutdown, and
/// nothing observable may depend on a per-process random seed (simulation determinism).
/// Keys are ids the core allocates, so the cheap id hasher fits.
type FixedState = super::clients::IdState;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{Action, ConnectionId, GatewayConfig, GatewayCore, LinkId, Target};
pub use crate::net::conn::SHUTDOWN_TIME_MAX;
use crate::net::conn::{self, Closing, ConnEnd, ConnIo, ConnOwner};
use crate::net::{AcceptBackoff, Net, NetListener, NetStream};

/// Size of the per-shard read buffer: one read takes at most this much from a socket.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Pause of the timer task after its core call panicked (caught), so that a deadline
/// whose handling panics every time costs one log line per pause, not a busy loop.
const TIMER_PANIC_PAUSE: Duration = Duration::from_secs(1);

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

/// One shard: its core and the output side of its connections.
struct Shard<N: Net> {
    net: N,
    core: GatewayCore,
    origin: Instant,
    conns: HashMap<Endpoint, Rc<ConnIo>, FixedState>,
    /// The read gate of every link (pacing: `PauseLink` / `ResumeLink`).
    gates: HashMap<LinkId, Arc<ReadGate>, FixedState>,
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
                Action::CloseRegister { index, reason } => {
                    tracing::debug!(register = index, ?reason, "closing register connection");
                    self.close(Endpoint::Register(index), false);
                }
                Action::PauseLink { id } => {
                    tracing::trace!(link = id.0, "pausing link reads");
                    if let Some(gate) = self.gates.get(&id) {
                        gate.set_paused(true);
                    }
                }
                Action::ResumeLink { id } => {
                    tracing::trace!(link = id.0, "resuming link reads");
                    if let Some(gate) = self.gates.get(&id) {
                        gate.set_paused(false);
                    }
                }
            }
        }
        if self.core.poll_timeout() != self.timer_armed {
            self.timer_wake.notify_one();
        }
        // Tests and simulation only (`None` by default): invariants, observation.
        if let Some(after_input) = self.core.config().after_input {
            after_input(&self.core);
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
            Endpoint::Client(id) => {
                self.core.handle_client_bytes(now, id, bytes);
                self.test_panic_hook(bytes);
            }
            Endpoint::Link(id) => {
                self.core.handle_link_bytes(now, id, bytes);
                self.test_panic_hook(bytes);
            }
            Endpoint::Register(index) => self.core.handle_register_bytes(now, index, bytes),
        }
    }

    /// Tests only: panics, after the core has taken the input (its actions are queued,
    /// not yet carried out), when the bytes contain the configured trigger. The trigger is
    /// a hidden config field that nothing but tests sets (`None` by default, not reachable
    /// from the command line).
    fn test_panic_hook(&self, bytes: &[u8]) {
        if let Some(trigger) = &self.core.config().test_panic_trigger {
            if !trigger.is_empty() && bytes.windows(trigger.len()).any(|w| w == &trigger[..]) {
                panic!("test panic trigger");
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
        if let Endpoint::Link(id) = endpoint {
            self.gates.remove(&id);
        }
        let now = self.now();
        let core = &mut self.core;
        let result = conn::catch_panic(|| match endpoint {
            Endpoint::Client(id) => core.handle_client_closed(now, id),
            Endpoint::Link(id) => core.handle_link_closed(now, id),
            Endpoint::Register(index) => core.handle_register_closed(now, index),
        });
        if let Err(panic) = result {
            tracing::error!(?endpoint, %panic, "panic in the core's close handler (caught)");
        }
    }
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
    serve_observed(net, config, public, lan, shutdown, None).await
}

/// Lets something outside the shard (a metrics endpoint) see the core's counters: the
/// driver calls `publish` with its core every `period`, and once more when it stops.
///
/// The callback runs on the shard's thread between inputs, so it must be cheap (copy a
/// few numbers into atomics); it never sees the core mid-input.
pub struct Observer {
    /// How often to publish.
    pub period: Duration,
    /// Called with the shard's core.
    pub publish: Box<dyn FnMut(&GatewayCore) + Send>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// [`serve`] with an optional [`Observer`].
pub async fn serve_observed<N: Net, P: NetListener>(
    net: N,
    config: GatewayConfig,
    public: P,
    lan: N::Listener,
    shutdown: impl Future<Output = ()>,
    observer: Option<Observer>,
) -> io::Result<()> {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(serve_local(net, config, public, lan, shutdown, observer))
        .await
}

async fn serve_local<N: Net, P: NetListener>(
    net: N,
    config: GatewayConfig,
    mut public: P,
    mut lan: N::Listener,
    shutdown: impl Future<Output = ()>,
    mut observer: Option<Observer>,
) -> io::Result<()> {
    let origin = Instant::now();
    let timer_wake = Rc::new(Notify::new());
    let shard = Rc::new(RefCell::new(Shard {
        net,
        core: GatewayCore::new(config, Duration::ZERO),
        origin,
        conns: HashMap::default(),
        gates: HashMap::default(),
        timer_armed: None,
        timer_wake: timer_wake.clone(),
        scratch: Rc::new(RefCell::new(vec![0; SCRATCH_SIZE])),
    }));
    {
        let mut s = shard.borrow_mut();
        s.dispatch(&shard);
    }
    let timer = tokio::task::spawn_local(run_timer(shard.clone(), timer_wake));
    let mut publish_tick = observer
        .as_ref()
        .map(|o| tokio::time::interval(o.period.max(Duration::from_millis(1))));
    // Accept errors pause the loop (EMFILE and the like), see `AcceptBackoff`.
    let mut public_backoff = AcceptBackoff::new("public");
    let mut lan_backoff = AcceptBackoff::new("lan");
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break Ok(()),
            (stream, peer) = public_backoff.accept(async || public.accept().await) => {
                contained("accepting a client", || accept_client(&shard, stream, peer));
            }
            (stream, peer) = lan_backoff.accept(async || lan.accept().await) => {
                contained("accepting a link", || accept_link(&shard, stream, peer));
            }
            () = next_tick(&mut publish_tick), if publish_tick.is_some() => {
                if let Some(o) = observer.as_mut() {
                    (o.publish)(&shard.borrow().core);
                }
            }
        }
    };
    timer.abort();
    // The core closes everyone (websocket clients with 1001 going away, ON_CLOSE to the
    // workers, links after flushing); the connection tasks then end one by one.
    {
        let mut s = shard.borrow_mut();
        let now = s.now();
        s.core.handle_shutdown(now);
        s.dispatch(&shard);
        // The register learns of our departure by the connection's end.
        for (endpoint, io) in s.conns.iter() {
            if matches!(endpoint, Endpoint::Register(_)) {
                io.close(Closing::Now);
            }
        }
    }
    wait_for_closes(&shard).await;
    if let Some(o) = observer.as_mut() {
        (o.publish)(&shard.borrow().core);
    }
    result
}

/// Waits until every connection task has ended, at most [`conn::SHUTDOWN_TIME_MAX`] and a
/// second (each task bounds its own flush by the same time); then whatever is left is
/// dropped with the shard.
async fn wait_for_closes<N: Net>(shard: &Rc<RefCell<Shard<N>>>) {
    let deadline = Instant::now() + conn::SHUTDOWN_TIME_MAX + Duration::from_secs(1);
    while !shard.borrow().conns.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Connections the core never asked to close (none expected) are told to go now.
    let left: Vec<Rc<ConnIo>> = shard.borrow().conns.values().cloned().collect();
    for io in left {
        io.close(Closing::Now);
    }
    tokio::task::yield_now().await;
}

/// Runs a driver step that is not one connection's I/O (an accept, a timer tick) and
/// contains a panic in it: logged and counted, and the driver goes on. A socket being
/// accepted is dropped with the unwinding.
fn contained(what: &str, f: impl FnOnce()) {
    if let Err(panic) = conn::catch_panic(f) {
        tracing::error!(%panic, "panic while {what} (caught)");
    }
}

/// Waits for the next tick of an optional interval (forever when there is none).
async fn next_tick(interval: &mut Option<tokio::time::Interval>) {
    match interval {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
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
    let gate = Arc::new(ReadGate::default());
    s.gates.insert(id, gate.clone());
    let stream = Gated {
        inner: stream,
        gate,
    };
    start_conn(&mut s, shard, Endpoint::Link(id), stream);
}

/// Whether a link's socket may be read, set by the core's `PauseLink` / `ResumeLink`,
/// and the waker of the connection task waiting to read it.
///
/// Atomics and a mutex only because streams must be `Send`: a shard touches its gates
/// from its one thread, so the lock is never contended.
#[derive(Debug, Default)]
struct ReadGate {
    paused: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl ReadGate {
    fn set_paused(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
        if !paused {
            let waker = self.waker.lock().map(|mut w| w.take()).unwrap_or_default();
            if let Some(waker) = waker {
                waker.wake();
            }
        }
    }

    fn is_paused(&self) -> bool {
        self.paused.load(Ordering::Relaxed)
    }
}

/// A link's stream behind its [`ReadGate`]: while paused it is never ready to read and
/// reads nothing, so the peer's bytes stay in the kernel (TCP backpressure). Writes are
/// not gated.
struct Gated<S> {
    inner: S,
    gate: Arc<ReadGate>,
}

impl<S: NetStream> NetStream for Gated<S> {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.gate.is_paused() {
            if let Ok(mut waker) = self.gate.waker.lock() {
                if !waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    *waker = Some(cx.waker().clone());
                }
            }
            return Poll::Pending;
        }
        self.inner.poll_read_ready(cx)
    }

    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.gate.is_paused() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.inner.try_read(buf)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.inner.poll_write_ready(cx)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.inner.try_write_vectored(bufs)
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.inner.shutdown().await
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.peer_addr()
    }
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
            // The core warns about an unreachable register, at a bounded rate.
            tracing::debug!(register = %address, error = %e, "cannot connect to the register");
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
        let caught = conn::catch_panic(|| {
            let mut s = shard.borrow_mut();
            let now = s.now();
            s.core.handle_timeout(now);
            s.dispatch(&shard);
        });
        if let Err(panic) = caught {
            tracing::error!(%panic, "panic in the core's timer handler (caught)");
            // A deadline that panics every time must not spin the shard.
            tokio::time::sleep(TIMER_PANIC_PAUSE).await;
        }
    }
}

/// One connection's I/O task: the shared connection loop, then the core hears it ended.
async fn run_conn<N: Net, S: NetStream>(
    shard: SharedShard<N>,
    endpoint: Endpoint,
    mut stream: S,
    io: Rc<ConnIo>,
) {
    let end = conn::drive(
        &ShardConn {
            shard: &shard,
            endpoint,
        },
        &mut stream,
        &io,
    )
    .await;
    match &end {
        ConnEnd::Error(e) => tracing::debug!(?endpoint, error = %e, "connection error"),
        ConnEnd::Panicked(panic) => log_panic(endpoint, panic),
        other => tracing::trace!(?endpoint, ?other, "connection ended"),
    }
    drop(stream);
    // The normal close path, also after a caught panic: the core forgets the connection
    // (ON_CLOSE to the worker, indexes, id released).
    let mut s = shard.borrow_mut();
    s.closed(endpoint);
    s.dispatch(&shard);
}

/// Logs a contained panic at error with the connection's id.
fn log_panic(endpoint: Endpoint, panic: &conn::Panicked) {
    match endpoint {
        Endpoint::Client(id) => tracing::error!(
            connection_id = id.0,
            %panic,
            "panic while handling a client (caught); closing that client"
        ),
        Endpoint::Link(id) => tracing::error!(
            link = id.0,
            %panic,
            "panic while handling a link (caught); closing that link"
        ),
        Endpoint::Register(index) => tracing::error!(
            register = index,
            %panic,
            "panic while handling the register connection (caught); closing it"
        ),
    }
}

/// One connection of a shard, as the shared connection loop sees it.
struct ShardConn<'a, N: Net> {
    shard: &'a SharedShard<N>,
    endpoint: Endpoint,
}

impl<N: Net> ConnOwner for ShardConn<'_, N> {
    fn scratch(&self) -> Rc<RefCell<Vec<u8>>> {
        self.shard.borrow().scratch.clone()
    }

    fn input(&self, bytes: &[u8]) {
        let mut s = self.shard.borrow_mut();
        s.input(self.endpoint, bytes);
        s.dispatch(self.shard);
    }

    fn flushed(&self, bytes: usize) {
        let mut s = self.shard.borrow_mut();
        s.flushed(self.endpoint, bytes);
        s.dispatch(self.shard);
    }
}
