//! The register's driver: owns the listener and the sockets and pumps bytes between them
//! and the [`RegisterCore`], in the shape of the gateway's driver.
//!
//! Everything runs on one single-threaded `LocalSet`, like the original's one process:
//! the core sits in an `Rc<RefCell<..>>`; every connection is a small local task that
//! waits for readiness, reads into the one scratch buffer, feeds the core and writes what
//! the core queued for it; a timer task sleeps until the core's next deadline (the 10 s
//! first-line timeouts). The driver is generic over [`Net`], so the same code runs on
//! tokio sockets and on turmoil's simulated network. It decides nothing the core could.
#![allow(
    clippy::disallowed_methods,
    reason = "the driver reads the clock and hands `now` to the core"
)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::{Action, PeerId, RegisterConfig, RegisterCore};
use crate::net::conn::{self, Closing, ConnEnd, ConnIo, ConnOwner};
use crate::net::{bind_std, AcceptBackoff, Net, NetListener, TokioListener, TokioNet};

/// Size of the shared read buffer: one read takes at most this much from a socket.
const SCRATCH_SIZE: usize = 16 * 1024;
/// Pause of the timer task after its core call panicked (caught): one log line per
/// pause, not a busy loop, if the same deadline panics every time.
const TIMER_PANIC_PAUSE: Duration = Duration::from_secs(1);
/// The register process: its core and the output side of its connections.
struct Register {
    core: RegisterCore,
    origin: Instant,
    conns: BTreeMap<PeerId, Rc<ConnIo>>,
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
        // Tests and simulation only (`None` by default): invariants, observation.
        if let Some(after_input) = self.core.config().after_input {
            after_input(&self.core);
        }
    }

    fn closed(&mut self, id: PeerId) {
        self.conns.remove(&id);
        let now = self.now();
        let core = &mut self.core;
        if let Err(panic) = conn::catch_panic(|| core.handle_closed(now, id)) {
            tracing::error!(conn = id.0, %panic, "panic in the register's close handler (caught)");
        }
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
    serve_observed(net, config, listener, shutdown, None).await
}

/// Lets something outside the register (a metrics endpoint) see the core's counters: the
/// driver calls `publish` with its core every `period`, and once more when it stops.
pub struct Observer {
    /// How often to publish.
    pub period: Duration,
    /// Called with the register's core, between inputs; keep it cheap.
    pub publish: Box<dyn FnMut(&RegisterCore) + Send>,
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observer")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

/// [`serve`] with an optional [`Observer`].
pub async fn serve_observed<N: Net>(
    net: N,
    config: RegisterConfig,
    listener: N::Listener,
    shutdown: impl Future<Output = ()>,
    observer: Option<Observer>,
) -> io::Result<()> {
    let _ = net;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(serve_local::<N>(config, listener, shutdown, observer))
        .await
}

async fn serve_local<N: Net>(
    config: RegisterConfig,
    mut listener: N::Listener,
    shutdown: impl Future<Output = ()>,
    mut observer: Option<Observer>,
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
    let mut publish_tick = observer
        .as_ref()
        .map(|o| tokio::time::interval(o.period.max(Duration::from_millis(1))));
    // Accept errors pause the loop (EMFILE and the like), see `AcceptBackoff`.
    let mut backoff = AcceptBackoff::new("register");
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            (stream, peer) = backoff.accept(async || listener.accept().await) => {
                // A socket being accepted is dropped with the unwinding.
                if let Err(panic) = conn::catch_panic(|| accept::<N>(&register, stream, peer)) {
                    tracing::error!(%panic, "panic while accepting a register connection (caught)");
                }
            }
            () = next_tick(&mut publish_tick), if publish_tick.is_some() => {
                if let Some(o) = observer.as_mut() {
                    (o.publish)(&register.borrow().core);
                }
            }
        }
    }
    timer.abort();
    // Ask every connection to finish what it has queued, then give the tasks a moment.
    let conns: Vec<Rc<ConnIo>> = register.borrow().conns.values().cloned().collect();
    for io in conns {
        io.close(Closing::AfterFlush);
    }
    tokio::task::yield_now().await;
    if let Some(o) = observer.as_mut() {
        (o.publish)(&register.borrow().core);
    }
    Ok(())
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
        let caught = conn::catch_panic(|| {
            let mut r = register.borrow_mut();
            let now = r.now();
            r.core.handle_timeout(now);
            r.dispatch();
        });
        if let Err(panic) = caught {
            tracing::error!(%panic, "panic in the register's timer handler (caught)");
            // A deadline that panics every time must not spin the register.
            tokio::time::sleep(TIMER_PANIC_PAUSE).await;
        }
    }
}

/// One connection's I/O task: the shared connection loop, then the core hears it ended.
async fn run_conn<N: Net>(register: Shared, id: PeerId, mut stream: N::Stream, io: Rc<ConnIo>) {
    let end = conn::drive(
        &RegisterConn {
            register: &register,
            id,
        },
        &mut stream,
        &io,
    )
    .await;
    match &end {
        ConnEnd::Error(e) => tracing::debug!(conn = id.0, error = %e, "connection error"),
        ConnEnd::Panicked(panic) => tracing::error!(
            conn = id.0,
            %panic,
            "panic while handling a register connection (caught); closing it"
        ),
        other => tracing::trace!(conn = id.0, ?other, "connection ended"),
    }
    drop(stream);
    // The normal close path, also after a caught panic (see `conn::catch_panic`).
    let mut r = register.borrow_mut();
    r.closed(id);
    r.dispatch();
}

/// One connection of the register, as the shared connection loop sees it.
struct RegisterConn<'a> {
    register: &'a Shared,
    id: PeerId,
}

impl ConnOwner for RegisterConn<'_> {
    fn scratch(&self) -> Rc<RefCell<Vec<u8>>> {
        self.register.borrow().scratch.clone()
    }

    fn input(&self, bytes: &[u8]) {
        let mut r = self.register.borrow_mut();
        let now = r.now();
        r.core.handle_bytes(now, self.id, bytes);
        // Tests only (a hidden config field, `None` by default): panic after the core
        // took the bytes, to prove the containment in `conn::drive`.
        if let Some(trigger) = &r.core.config().test_panic_trigger {
            if !trigger.is_empty() && bytes.windows(trigger.len()).any(|w| w == &trigger[..]) {
                panic!("test panic trigger");
            }
        }
        r.dispatch();
    }

    fn flushed(&self, bytes: usize) {
        let mut r = self.register.borrow_mut();
        let now = r.now();
        r.core.handle_written(now, self.id, bytes);
        r.dispatch();
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

    /// Whether the register has ended (before shutdown: on a fatal error); `join` says why.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
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
    start_observed(settings, None)
}

/// [`start`] with an optional [`Observer`] (e.g. one feeding a metrics endpoint).
pub fn start_observed(
    settings: RegisterSettings,
    observer: Option<Observer>,
) -> io::Result<RunningRegister> {
    let listener = bind_std(settings.listen, false)?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let config = settings.core;
    let thread = std::thread::Builder::new()
        .name("register".to_owned())
        .stack_size(crate::net::ROLE_THREAD_STACK_BYTES)
        .spawn(move || -> io::Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listener = TokioListener::from_std(listener)?;
                let shutdown = async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                };
                serve_observed(TokioNet, config, listener, shutdown, observer).await
            })
        })?;
    Ok(RunningRegister { addr, stop, thread })
}
