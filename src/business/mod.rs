//! The BusinessWorker process: what makes a `.wasm` file a running worker.
//!
//! Modelled on the original's process model: `count` instances, instance `i` registering as
//! worker key `name:i`. Each instance is a thread with a current-thread tokio runtime running
//! one task: its wasm instance (isolated linear memory) whose store holds the instance's
//! [`WorkerDriver`](crate::worker::WorkerDriver) (its [`WorkerCore`](crate::worker::WorkerCore) and links). A guest
//! event therefore blocks only its instance: the others keep serving their clients.
//!
//! Per instance, the task takes the events the driver has ready, runs each in the guest
//! and ends it ([`WorkerDriver::end_event`](crate::worker::WorkerDriver::end_event) writes a changed `$_SESSION` back, spec 7.2)
//! before the next one; then it waits on the links again. A guest's API call goes
//! straight into the driver through the store ([`BusinessApi`], the [`ApiHandler`](crate::wasm::ApiHandler) of the
//! instance): a send is queued in the core and returns; a query waits for its replies
//! while the driver keeps doing the links' I/O. No channel, no task hand-off: the replies
//! of every event of one read leave in one vectored write per gateway. A long event
//! (more than one epoch tick of guest time) pushes the replies of the events before it
//! out from the host's epoch callback ([`ApiHandler::flush`](crate::wasm::ApiHandler::flush)).
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

pub mod metrics;

mod instance;

use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;

use self::instance::Instance;
pub use self::instance::{run_instance, BusinessApi};
use self::metrics::{EventMetrics, InstanceCounters, WorkerObserver};
use crate::net::TokioNet;
use crate::wasm::{
    FileWatcher, HostConfig, HostError, InstanceStats, LoadError, PluginSlot, ReloadHandle,
    WasmHost,
};
use crate::worker::core::WorkerConfig;
use crate::worker::driver::DriverConfig;

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

impl BusinessSettings {
    /// `count` instances of worker `name` running `wasm_path`, registering with
    /// `register_addresses`, with the original's defaults otherwise (no secret), and the
    /// host's defaults.
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
            core: WorkerConfig {
                // Reconnect jitter: a random seed per process (drawn here, driver side).
                seed: {
                    use std::hash::{BuildHasher, Hasher};
                    std::hash::RandomState::new().build_hasher().finish()
                },
                // Fail fast on an unresponsive gateway (issue 18).
                suspect_after: Some(crate::worker::core::SUSPECT_AFTER_DEFAULT),
                ..WorkerConfig::new(name, 0, register_addresses)
            },
            driver: DriverConfig::default(),
            host: HostConfig::default(),
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

/// A running BusinessWorker; dropping it does not stop it, call [`RunningWorker::shutdown`].
pub struct RunningWorker {
    slot: PluginSlot<BusinessApi<TokioNet>>,
    stats: Arc<Mutex<Vec<InstanceCounters>>>,
    stop: watch::Sender<bool>,
    threads: Vec<JoinHandle<()>>,
    watcher: Option<FileWatcher>,
    connected: Vec<watch::Receiver<usize>>,
    events: Arc<EventMetrics>,
}

impl RunningWorker {
    /// A view for observers (the metrics endpoint) that stays valid while the worker runs.
    pub fn observer(&self) -> WorkerObserver {
        WorkerObserver {
            stats: self.stats.clone(),
            connected: self.connected.clone(),
            events: self.events.clone(),
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
    pub fn stats(&self) -> Vec<InstanceStats> {
        let all = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        all.iter().map(|c| c.wasm).collect()
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
    let host: WasmHost<BusinessApi<TokioNet>> = WasmHost::new(settings.host.clone())?;
    let compile_start = Instant::now();
    let slot = PluginSlot::from_file(&host, &settings.wasm_path)?;
    tracing::info!(
        path = %settings.wasm_path.display(),
        compile_ms = compile_start.elapsed().as_secs_f64() * 1e3,
        "worker module compiled"
    );
    let count = settings.count as usize;
    let stats = Arc::new(Mutex::new(vec![InstanceCounters::default(); count]));
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
    })
}

/// Wall time in Unix milliseconds.
fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
