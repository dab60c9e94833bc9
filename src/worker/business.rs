//! The BusinessWorker process: what makes a `.wasm` file a running worker.
//!
//! Modelled on the original's process model: `count` instances, instance `i` registering as
//! worker key `name:i`. Each instance is a thread with a current-thread tokio runtime that
//! runs its own [`WorkerCore`](super::core::WorkerCore) and links (the [`driver`]) next to
//! its own wasm instance (isolated linear memory). A guest event therefore blocks only its
//! instance: the others keep serving their clients.
//!
//! Per instance, events are fed to the guest one at a time, in the order the driver hands
//! them out; after each event an [`ToWorker::EndEvent`] writes a changed `$_SESSION` back
//! (spec 7.2) before the next event's calls go out on the same links. Guest API calls leave
//! through [`DriverApi`], an [`ApiHandler`] over the driver's command channel.
//!
//! A trap (panic, fuel exhausted, memory limit...) costs only the event that caused it: the
//! host discards the instance and makes a fresh one for the next event; we count the
//! failures ([`RunningWorker::stats`]) and log them with the client id. Its session changes
//! are not written back (the original's process would have died with the exception).
//!
//! Hot reload: one [`PluginSlot`] is shared by every instance; [`RunningWorker::reload`]
//! (or the file watcher of [`BusinessSettings::reload_poll`]) compiles the new module off the
//! event path and each instance swaps it in between two events. The links stay up, so no
//! client notices (the original reloads by restarting its processes).
//!
//! Ordering to know about, as in the original: the write-back of an event's `$_SESSION`
//! travels the worker's link after the event, while a client that has seen the event's
//! reply may already send its next message on its own connection; that message can reach
//! the gateway first and arrive with the previous session.
#![allow(
    clippy::disallowed_methods,
    reason = "the process side: compile/reload timings and the wall-clock stamp use the clock"
)]

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, watch};

use super::api::{ApiError, ApiResult};
use super::core::{ClientEvent, EventKind, WorkerConfig};
use super::defer::{DeferSelfWakes, SelfWakes};
use super::driver::{self, DriverConfig, ToWorker};
use super::metrics::{EventMetrics, WorkerObserver};
use super::sender::CurrentClient;
use crate::net::{Net, TokioNet};
use crate::protocol::php::PhpValue;
use crate::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind as WasmEventKind, FileWatcher, HostConfig,
    HostError, LoadError, PluginSlot, ReloadHandle, WasmHost, WasmWorker, WorkerEvent, WorkerStats,
};

/// Everything a BusinessWorker process needs.
#[derive(Debug, Clone)]
pub struct BusinessSettings {
    /// Number of instances (the original's `count`), at least 1.
    pub count: u32,
    /// The module every instance runs.
    pub wasm_path: PathBuf,
    /// Poll the module file this often and reload it on change (`None`: reload only on
    /// [`RunningWorker::reload`]).
    pub reload_poll: Option<Duration>,
    /// The worker core's settings: `name`, `register_addresses`, `secret_key` and the
    /// bounds; `index` is set per instance.
    pub core: WorkerConfig,
    /// The driver's bounds.
    pub driver: DriverConfig,
    /// The wasm host's limits (fuel, deadline, memory) per instance.
    pub host: HostConfig,
}

/// Commands queued from an instance's business side to its driver at most. The guest
/// awaits every call, so one call and one write-back are the most ever in flight.
const COMMANDS_MAX: usize = 4;

/// Fuel between two yields of a long event: the instance's links keep being read and
/// written (by the driver on the same thread) while its guest computes.
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;

impl BusinessSettings {
    /// `count` instances of worker `name` running `wasm_path`, registering with
    /// `register_addresses`, with the original's defaults otherwise (no secret), and the
    /// host's defaults except that long events yield to the links every
    /// `FUEL_YIELD_INTERVAL` fuel.
    pub fn new(
        name: &str,
        count: u32,
        register_addresses: Vec<String>,
        wasm_path: impl Into<PathBuf>,
    ) -> BusinessSettings {
        BusinessSettings {
            count,
            wasm_path: wasm_path.into(),
            reload_poll: None,
            core: WorkerConfig::new(name, 0, register_addresses),
            driver: DriverConfig::default(),
            host: HostConfig {
                fuel_yield_interval: Some(FUEL_YIELD_INTERVAL),
                ..HostConfig::default()
            },
        }
    }
}

/// Why a BusinessWorker could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The wasm engine could not be built.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The module could not be loaded (missing file, invalid wasm, not the gw ABI).
    #[error("loading the worker module: {0}")]
    Load(#[from] LoadError),
    /// An instance thread could not be spawned.
    #[error("spawning a worker thread: {0}")]
    Spawn(#[from] io::Error),
}

/// The Gateway API of one instance: guest calls go to its driver as [`ToWorker`] commands
/// and their results come back as PHP values or [`ApiError`]s.
pub struct DriverApi {
    commands: mpsc::Sender<ToWorker>,
    /// The client of the event being handled (with its gateway and connection id).
    current: Option<CurrentClient>,
}

impl DriverApi {
    /// A handler sending on `commands`.
    pub fn new(commands: mpsc::Sender<ToWorker>) -> DriverApi {
        DriverApi {
            commands,
            current: None,
        }
    }

    async fn run(&mut self, request: ApiRequest) -> ApiResult {
        // The host names the current client by id; the driver needs its gateway and
        // connection id, which the event brought.
        // `getAllClientSessions` reports the guest's `$_SESSION` as it is now.
        let current = match (&request.current_client, &self.current) {
            (Some(id), Some(c)) if *id == c.client_id => Some(CurrentClient {
                session: request.current_session,
                ..c.clone()
            }),
            _ => None,
        };
        let (reply, done) = oneshot::channel();
        let (call, binary) = (request.call, request.binary);
        let command = if binary {
            ToWorker::CallBinary {
                call,
                current,
                reply,
            }
        } else {
            ToWorker::Call {
                call,
                current,
                reply,
            }
        };
        // The driver only goes away when the instance shuts down; the guest sees a failed
        // call then.
        if self.commands.send(command).await.is_err() {
            return Err(ApiError::NotAvailable);
        }
        match done.await {
            Ok(done) => done.result,
            Err(_) => Err(ApiError::NotAvailable),
        }
    }
}

impl ApiHandler for DriverApi {
    fn call(
        &mut self,
        request: ApiRequest,
    ) -> impl std::future::Future<Output = ApiResult> + Send + '_ {
        self.run(request)
    }

    async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::time::sleep(duration).await;
        true
    }
}

/// A running BusinessWorker; dropping it does not stop it, call [`RunningWorker::shutdown`].
pub struct RunningWorker {
    slot: PluginSlot<DriverApi>,
    stats: Arc<Mutex<Vec<WorkerStats>>>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    watcher: Option<FileWatcher>,
    connected: Vec<watch::Receiver<usize>>,
    events: Arc<EventMetrics>,
    /// Shared by every instance's driver ([`DriverConfig::connection_panics`]).
    connection_panics: Arc<std::sync::atomic::AtomicU64>,
}

impl RunningWorker {
    /// A view for observers (the metrics endpoint) that stays valid while the worker runs.
    pub fn observer(&self) -> WorkerObserver {
        WorkerObserver {
            stats: self.stats.clone(),
            connected: self.connected.clone(),
            events: self.events.clone(),
            connection_panics: self.connection_panics.clone(),
        }
    }

    /// Recompiles the module file off the event path and swaps it in; every instance picks
    /// it up before its next event. On error the running module stays.
    pub fn reload(&self) -> ReloadHandle {
        self.slot.reload()
    }

    /// The generation of the module in the slot (1 at start, +1 per reload).
    pub fn generation(&self) -> u64 {
        self.slot.generation()
    }

    /// Life counters of each instance, by index (updated after every event).
    pub fn stats(&self) -> Vec<WorkerStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Established gateway links of each instance, by index.
    pub fn connected_gateways(&self) -> Vec<usize> {
        self.connected.iter().map(|c| *c.borrow()).collect()
    }

    /// Lets each instance finish its event, run `on_worker_stop`, close its links, and
    /// waits for the threads.
    pub fn shutdown(mut self) -> io::Result<()> {
        let _ = self.stop.send(true);
        self.watcher = None;
        self.join()
    }

    /// Waits for the instances to end.
    pub fn join(self) -> io::Result<()> {
        let mut result = Ok(());
        for thread in self.threads {
            if thread.join().is_err() {
                result = Err(io::Error::other("a business worker thread panicked"));
            }
        }
        result
    }
}

/// Loads the module (errors come back here, before anything runs) and starts the instances.
pub fn start(settings: BusinessSettings) -> Result<RunningWorker, StartError> {
    assert!(
        settings.count >= 1,
        "a business worker needs at least one instance"
    );
    let host: WasmHost<DriverApi> = WasmHost::new(settings.host.clone())?;
    let compile_start = Instant::now();
    let slot = PluginSlot::from_file(&host, &settings.wasm_path)?;
    tracing::info!(
        path = %settings.wasm_path.display(),
        compile_ms = compile_start.elapsed().as_secs_f64() * 1e3,
        "worker module compiled"
    );
    let count = settings.count as usize;
    let stats = Arc::new(Mutex::new(vec![WorkerStats::default(); count]));
    let events = Arc::new(EventMetrics::default());
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::with_capacity(count);
    let mut connected = Vec::with_capacity(count);
    for index in 0..settings.count {
        let (connected_tx, connected_rx) = watch::channel(0);
        connected.push(connected_rx);
        let instance = Instance {
            connected: connected_tx,
            index,
            host: host.clone(),
            slot: slot.clone(),
            settings: settings.clone(),
            stats: stats.clone(),
            events: events.clone(),
            stopped: stopped.clone(),
            clock: unix_ms,
        };
        let name = format!("worker-{}-{index}", settings.core.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .stack_size(crate::net::ROLE_THREAD_STACK_BYTES)
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(index, error = %e, "worker runtime failed to start");
                        return;
                    }
                };
                runtime.block_on(instance.run(TokioNet));
            });
        match thread {
            Ok(t) => threads.push(t),
            Err(e) => {
                let _ = stop.send(true);
                for t in threads {
                    let _ = t.join();
                }
                return Err(StartError::Spawn(e));
            }
        }
    }
    let watcher = settings.reload_poll.map(|every| slot.watch(every));
    Ok(RunningWorker {
        slot,
        stats,
        stop,
        threads,
        watcher,
        connected,
        events,
        connection_panics: settings.driver.connection_panics.clone(),
    })
}

/// One instance: its driver and its wasm instance on one thread.
struct Instance {
    index: u32,
    host: WasmHost<DriverApi>,
    slot: PluginSlot<DriverApi>,
    settings: BusinessSettings,
    stats: Arc<Mutex<Vec<WorkerStats>>>,
    events: Arc<EventMetrics>,
    stopped: watch::Receiver<bool>,
    connected: watch::Sender<usize>,
    /// The guests' wall clock, Unix ms.
    clock: fn() -> i64,
}

/// Runs instance `index` of a BusinessWorker on the current task: its driver over `net`
/// and its wasm instance, with `clock` (Unix milliseconds) as the guests' time. This is
/// what [`start`] runs on each of its threads (over [`TokioNet`], with the system clock);
/// a simulation runs it inside a simulated host instead (its network, its clock, a host
/// built with [`HostConfig::deterministic`]). Returns once `stopped` turns true and the
/// instance has stopped, or when the driver ends; the instance's counters come back.
pub async fn run_instance<N: Net>(
    net: N,
    host: WasmHost<DriverApi>,
    slot: PluginSlot<DriverApi>,
    settings: BusinessSettings,
    index: u32,
    stopped: watch::Receiver<bool>,
    clock: fn() -> i64,
) -> WorkerStats {
    let stats = Arc::new(Mutex::new(vec![WorkerStats::default(); index as usize + 1]));
    let (connected, _) = watch::channel(0);
    let instance = Instance {
        index,
        host,
        slot,
        settings,
        stats: stats.clone(),
        events: Arc::new(EventMetrics::default()),
        stopped,
        connected,
        clock,
    };
    instance.run(net).await;
    let all = stats.lock().unwrap_or_else(|e| e.into_inner());
    all[index as usize]
}

impl Instance {
    async fn run<N: Net>(self, net: N) {
        let mut config = self.settings.core.clone();
        config.index = self.index;
        // The driver hands events out one by one; it holds the rest (bounded by
        // `events_pending_max`), so a channel of one keeps them in its queue.
        let (events_tx, events) = mpsc::channel(1);
        let (commands, commands_rx) = mpsc::channel(COMMANDS_MAX);
        let links = driver::run_local(
            net,
            config,
            self.settings.driver.clone(),
            events_tx,
            commands_rx,
            self.connected,
        );
        let worker = WasmWorker::new(&self.host, &self.slot, DriverApi::new(commands.clone()));
        let business = Business {
            index: self.index,
            self_wakes: Arc::new(SelfWakes::default()),
            worker,
            commands,
            stats: self.stats,
            events: self.events,
            clock: self.clock,
        };
        // The driver's loop, its link tasks and the business code are tasks of one
        // `LocalSet`: an event's hops between them (event out, API call in, reply and
        // write-back) are local wake-ups handled in one pass of the set, not one trip
        // through the runtime (and an `epoll_wait`) each.
        let local = tokio::task::LocalSet::new();
        let (stopped, index) = (self.stopped, self.index);
        local
            .run_until(async move {
                let links = tokio::task::spawn_local(links);
                let business = tokio::task::spawn_local(business.run(events, stopped));
                let (links, business) = tokio::join!(links, business);
                for (task, ended) in [("driver", links), ("business", business)] {
                    if let Err(e) = ended {
                        tracing::error!(index, task, error = %e, "worker instance task failed");
                    }
                }
            })
            .await;
    }
}

/// The business side of one instance: events in, one at a time.
struct Business {
    index: u32,
    self_wakes: Arc<SelfWakes>,
    worker: WasmWorker<DriverApi>,
    commands: mpsc::Sender<ToWorker>,
    stats: Arc<Mutex<Vec<WorkerStats>>>,
    events: Arc<EventMetrics>,
    clock: fn() -> i64,
}

impl Business {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<ClientEvent>,
        mut stopped: watch::Receiver<bool>,
    ) {
        let started = Instant::now();
        match self.worker.start((self.clock)()).await {
            Ok(()) => tracing::debug!(
                index = self.index,
                instantiate_ms = started.elapsed().as_secs_f64() * 1e3,
                "wasm instance started"
            ),
            // The next event retries; the failure was logged by the host.
            Err(e) => tracing::warn!(index = self.index, error = %e, "wasm instance start failed"),
        }
        self.publish_stats();
        loop {
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => break,
                event = events.recv() => match event {
                    Some(event) => self.handle(event).await,
                    None => break,
                },
            }
        }
        self.worker.stop((self.clock)()).await;
        self.publish_stats();
        // Dropping the worker (its handler holds a command sender) and `self.commands`
        // ends the driver, which closes the links.
    }

    async fn handle(&mut self, event: ClientEvent) {
        let wasm_event = to_wasm_event(&event, (self.clock)());
        self.worker.handler_mut().current = Some(event.client.clone());
        let started = Instant::now();
        // A long event's fuel yields let the link tasks write the replies to the events
        // before it (see `defer`).
        let outcome = {
            let handled = self.worker.handle(&wasm_event);
            tokio::pin!(handled);
            DeferSelfWakes::new(handled.as_mut(), &self.self_wakes).await
        };
        let failure = outcome.as_ref().err().map(|f| f.kind);
        self.events.record(started.elapsed(), failure);
        self.worker.handler_mut().current = None;
        match outcome {
            Ok(outcome) => {
                // The host tracks the original's `Context::$old_session` (the event's
                // session, updated by the guest's own session calls on its client).
                let (old, new) = (outcome.known_session, outcome.session);
                let end = ToWorker::EndEvent {
                    client: event.client.clone(),
                    kind: event.kind,
                    old,
                    new,
                    reply: None,
                };
                let _ = self.commands.send(end).await;
            }
            Err(failure) => {
                tracing::warn!(
                    index = self.index,
                    client_id = %String::from_utf8_lossy(&event.client.client_id),
                    kind = ?failure.kind,
                    "client event lost: {}",
                    failure.message
                );
                // Still end the event (nothing to write back): the client's next events
                // wait for it.
                let end = ToWorker::EndEvent {
                    client: event.client.clone(),
                    kind: event.kind,
                    old: PhpValue::Null,
                    new: PhpValue::Null,
                    reply: None,
                };
                let _ = self.commands.send(end).await;
            }
        }
        self.publish_stats();
    }

    fn publish_stats(&self) {
        let mut all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        all[self.index as usize] = self.worker.stats();
    }
}

/// The wasm host's view of a driver event.
fn to_wasm_event(event: &ClientEvent, now_ms: i64) -> WorkerEvent {
    let h = &event.header;
    let kind = match event.kind {
        EventKind::Connect => WasmEventKind::Connect,
        EventKind::Close => WasmEventKind::Close,
        EventKind::Message => WasmEventKind::Message {
            body: match &event.body {
                PhpValue::Str(bytes) => bytes.clone(),
                // A gateway sends message bodies as raw bytes; anything else is not a
                // message a client could have sent.
                _ => Bytes::new(),
            },
            binary: event.binary,
        },
        EventKind::WebSocketConnect => WasmEventKind::WebSocketConnect {
            data: event.body.clone(),
        },
    };
    WorkerEvent {
        kind,
        client: ClientInfo {
            client_id: event.client.client_id.clone(),
            remote_addr: h.client_ip.to_string(),
            remote_port: h.client_port,
            gateway_addr: h.local_ip.to_string(),
            gateway_port: h.gateway_port,
        },
        session: event.client.session.clone(),
        now_ms,
    }
}

/// Wall time in Unix milliseconds.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::protocol::frame::{Command, Header};
    use crate::protocol::php::{PhpArray, PhpKey};

    fn event(kind: EventKind, body: PhpValue, binary: bool) -> ClientEvent {
        let mut header = Header::new(Command::OnMessage);
        header.local_ip = Ipv4Addr::new(10, 0, 0, 7);
        header.local_port = 2900;
        header.client_ip = Ipv4Addr::new(192, 168, 1, 20);
        header.client_port = 53124;
        header.connection_id = 3;
        header.gateway_port = 8282;
        let mut session = PhpArray::new();
        session.insert(PhpKey::Str(Bytes::from_static(b"k")), PhpValue::Int(1));
        ClientEvent {
            kind,
            client: CurrentClient {
                client_id: Bytes::from_static(b"0a0000070b5400000003"),
                gateway: SocketAddrV4::new(header.local_ip, header.local_port),
                connection_id: 3,
                session: PhpValue::Array(session),
            },
            header,
            session_text: Bytes::from_static(b"a:1:{s:1:\"k\";i:1;}"),
            body,
            binary,
        }
    }

    #[test]
    fn a_message_event_carries_bytes_flag_addresses_and_session() {
        let e = event(EventKind::Message, PhpValue::str("hi"), true);
        let w = to_wasm_event(&e, unix_ms());
        assert_eq!(
            w.kind,
            WasmEventKind::Message {
                body: Bytes::from_static(b"hi"),
                binary: true
            }
        );
        assert_eq!(w.client.client_id, e.client.client_id);
        assert_eq!(w.client.remote_addr, "192.168.1.20");
        assert_eq!(w.client.remote_port, 53124);
        assert_eq!(w.client.gateway_addr, "10.0.0.7");
        assert_eq!(w.client.gateway_port, 8282);
        assert_eq!(w.session, e.client.session);
        assert!(w.now_ms > 1_600_000_000_000);
    }

    #[test]
    fn other_events_map_one_to_one() {
        let e = event(EventKind::Connect, PhpValue::str(""), false);
        assert_eq!(to_wasm_event(&e, 0).kind, WasmEventKind::Connect);
        let e = event(EventKind::Close, PhpValue::str(""), false);
        assert_eq!(to_wasm_event(&e, 0).kind, WasmEventKind::Close);
        let data = PhpValue::Array(PhpArray::new());
        let e = event(EventKind::WebSocketConnect, data.clone(), false);
        assert_eq!(
            to_wasm_event(&e, 0).kind,
            WasmEventKind::WebSocketConnect { data }
        );
        // A message body that is not a string cannot come from a client: empty bytes.
        let e = event(EventKind::Message, PhpValue::Int(5), false);
        assert_eq!(
            to_wasm_event(&e, 0).kind,
            WasmEventKind::Message {
                body: Bytes::new(),
                binary: false
            }
        );
    }
}
