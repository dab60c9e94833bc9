//! The world: one register, gateways with shards, worker hosts running the real `probe`
//! guest, and clients running seeded programs, all in one turmoil simulation; plus the run
//! loop that injects faults between steps and the phases that end in an audit.
//!
//! Hosts (turmoil names): `register` (port 1236); `gw0..` with shard `k` on lan port
//! `2300+k` and public port `7272+k` (turmoil has no `SO_REUSEPORT`), the last
//! `text_gateways` of them speaking the text protocol, the others WebSocket; `wk0..`, each
//! running `instances` BusinessWorker instances (worker name = host name) through
//! [`business::run_instance`] over [`TurmoilNet`] with the simulated clock; `c0..`, the
//! clients.
//!
//! Phases: *workload* (clients run their programs, faults are injected), *quiet* (every
//! fault healed, nothing happens for `quiet`), *audit* (every client proves it is alive
//! with an echo, then `c0` asks every query and compares each answer with the model).
#![allow(
    clippy::disallowed_methods,
    reason = "tokio's clock under turmoil is the simulated one: op deadlines in simulated time"
)]

use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::api::ApiCall;
use gatewayworker::business::{self, BusinessApi, BusinessSettings};
use gatewayworker::client::{
    ClientError, ClientSettings, GatewayClient, Gateways, LinkFailure, CONNECT_TIMEOUT_DEFAULT,
    REGISTER_CACHE_TTL_DEFAULT,
};
use gatewayworker::gateway::{driver as gateway_driver, GatewayConfig, HashKey, PublicProtocol};
use gatewayworker::net::Net;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::register::{driver as register_driver, RegisterConfig};
use gatewayworker::wasm::{HostConfig, Plugin, PluginSlot, WasmHost};
use serde_json::{json, Value};
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

use crate::conn::Conn;
use crate::faults::{Action, Faults, Schedule};
use crate::model::{expect_query, session_json, Change, ClientId, Model, Target};
use crate::observe;
use crate::trace::{Trace, TAIL_LEN};
use crate::workload::{
    audit_queries, message_text, Effect, Op, Program, Raw, WorkloadConfig, GC_ONLY,
};
use crate::TurmoilNet;

/// The Gateway API of a simulated worker instance.
type SimApi = BusinessApi<TurmoilNet>;

/// The register's port.
pub const REGISTER_PORT: u16 = 1236;
/// Lan port of shard 0; shard `k` uses `+k`.
pub const LAN_PORT: u16 = 2300;
/// Public port of shard 0; shard `k` uses `+k`.
pub const PUBLIC_PORT: u16 = 7272;
/// Shortest quiet time after the heal (see [`SimConfig::quiet`]).
const QUIET_MIN: Duration = Duration::from_secs(1);
/// When clients start: after the workers have had time to find the gateways.
const CLIENTS_START: Duration = Duration::from_secs(3);
/// Fuel between two yields of a long guest event (as production's default).
const FUEL_YIELD_INTERVAL: u64 = 10_000_000;
/// The reconnect bound: after a change of the cluster (a new or restarted worker host,
/// worker hosts gone) the control plane must show the live set within this long: a
/// worker's gateway link retry backs off to 4 s (`reconnect_delay_max`), a link to a
/// crashed host is noticed by the gateway's link ping, a connect attempt times out after
/// 5 s. (A register restart has its own, tighter bound: [`REJOIN_BOUND`].)
pub const RECONNECT_BOUND: Duration = Duration::from_secs(12);
/// The rejoin bound (issue 18): once a restarted register is reachable again, every
/// gateway shard is in its announced list and every worker instance registered with it
/// within this long. Gateways and workers retry the register every 250–500 ms (jittered,
/// no backoff): one retry, the connection and the registration fit, with room for a
/// retry that met the register still starting.
pub const REJOIN_BOUND: Duration = Duration::from_secs(1);
/// The worker instances' `suspect_after` in the simulation: shorter than the production
/// default (2 s) so that the faults' holds (0.2–3 s) outlast it, and well under the query
/// timeout (5 s).
pub const SUSPECT_AFTER: Duration = Duration::from_secs(1);
/// What a query may take beyond [`SUSPECT_AFTER`] while a gateway is stalled: the event's
/// and reply's ways through the healthy gateway, and one suspicion check.
pub const STALL_SLACK: Duration = Duration::from_millis(500);
/// A message lost within this long after its reply, while a fault began or ended, may
/// have been lost to that fault (frames still in a crashed worker, or on their way).
const LOSS_FAULT_TAIL: Duration = Duration::from_secs(1);

/// Everything that shapes one run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: every random choice of the run derives from it.
    pub seed: u64,
    /// Gateway hosts.
    pub gateways: usize,
    /// Shards (gateway cores) per gateway host.
    pub shards: usize,
    /// How many of the gateways (the last ones) speak the text protocol.
    pub text_gateways: usize,
    /// Worker hosts.
    pub workers: usize,
    /// BusinessWorker instances per worker host.
    pub instances: u32,
    /// The clients' programs.
    pub workload: WorkloadConfig,
    /// The faults injected.
    pub faults: Faults,
    /// A reply not seen after this long is given up (the client then disconnects).
    pub op_timeout: Duration,
    /// Longest quiet time after the faults heal, before the audit; it ends early (after
    /// 1 s at least) once the control plane shows every gateway and worker again.
    pub quiet: Duration,
    /// Simulated time after which the run is a failure.
    pub duration_max: Duration,
    /// turmoil's tick: simulated time per step (the cost of a seed is mostly per step).
    pub tick: Duration,
    /// The worker instances' `suspect_after` ([`SUSPECT_AFTER`]).
    pub suspect_after: Duration,
}

impl SimConfig {
    /// The default world: 2 gateways (one text) of 2 shards, 2 worker hosts of 2
    /// instances, 6 clients.
    pub fn new(seed: u64, faults: Faults) -> SimConfig {
        SimConfig {
            seed,
            gateways: 2,
            shards: 2,
            text_gateways: 1,
            workers: 2,
            instances: 2,
            workload: WorkloadConfig {
                // A few seeds carry messages near the limits (one in eight).
                large_payloads: seed % 8 == 3,
                ..WorkloadConfig::default()
            },
            faults,
            op_timeout: Duration::from_secs(15),
            quiet: Duration::from_secs(12),
            duration_max: Duration::from_secs(600),
            // 4 ms steps: a seed's cost is mostly per step (turmoil delivers, every host's
            // runtime turns); one seed in eight keeps 1 ms for finer interleavings.
            tick: Duration::from_millis(if seed.is_multiple_of(8) { 1 } else { 4 }),
            suspect_after: SUSPECT_AFTER,
        }
    }

    /// The one-line command that reruns this seed.
    pub fn repro(&self) -> String {
        format!(
            "cargo run -p sim --release -- --seed {} --faults {}",
            self.seed,
            self.faults.describe()
        )
    }
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The run's seed.
    pub seed: u64,
    /// Every observed event.
    pub trace: Trace,
    /// Oracle violations (empty: the run passed).
    pub violations: Vec<String>,
    /// Ops sent by clients.
    pub ops: u64,
    /// Messages received by clients from sends.
    pub pushes: u64,
    /// Model transitions (connections and changes).
    pub transitions: usize,
    /// Fault actions applied.
    pub faults: u64,
    /// Simulated time the run took.
    pub sim_time: Duration,
    /// Core invariant checks run (one per input of a register, gateway or worker core).
    pub invariant_checks: u64,
    /// Rejoin times measured after register restarts (see [`REJOIN_BOUND`]).
    pub rejoins: Vec<Duration>,
    /// Lost messages a counted drop or a fault explained.
    pub losses_explained: usize,
}

impl Outcome {
    /// The trace hash.
    pub fn hash(&self) -> u64 {
        self.trace.hash()
    }

    /// True when no violation was found.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// A failure report: the repro command, the violations, the last trace events.
    pub fn report(&self, config: &SimConfig) -> String {
        let mut out = format!(
            "seed {} failed with {} violation(s)\nrepro: {}\n",
            self.seed,
            self.violations.len(),
            config.repro()
        );
        for v in self.violations.iter().take(10) {
            out.push_str(&format!("  violation: {v}\n"));
        }
        out.push_str(&format!("last {TAIL_LEN} events:\n"));
        out.push_str(&self.trace.tail(TAIL_LEN));
        out
    }

    /// One summary line.
    pub fn summary(&self) -> String {
        format!(
            "seed {} {} hash {:016x}: {} ops, {} pushes ({} lost, explained), {} transitions, {} fault actions, {} invariant checks, rejoins {}, {:.1}s simulated",
            self.seed,
            if self.passed() { "ok" } else { "FAILED" },
            self.hash(),
            self.ops,
            self.pushes,
            self.losses_explained,
            self.transitions,
            self.faults,
            self.invariant_checks,
            self.rejoins
                .iter()
                .map(|d| format!("{}ms", d.as_millis()))
                .collect::<Vec<_>>()
                .join("/"),
            self.sim_time.as_secs_f64()
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Workload,
    Quiet,
    Audit,
}

/// State shared by the clients and the run loop (one thread: `Rc<RefCell>`).
struct Shared {
    model: Model,
    trace: Trace,
    op_number: u64,
    ops: u64,
    pushes: u64,
    phase: Phase,
    done: usize,
    pinged: usize,
    audited: bool,
    /// Actions the audit asks the run loop for (register restart, worker hosts).
    requests: Vec<Action>,
    /// The `api` host (GatewayClient) audited.
    api_audited: bool,
    /// Holds and crashes not yet repaired.
    open_faults: i64,
    /// When the last hold, release, crash or restart happened.
    last_fault_at: Option<Duration>,
    /// Every crash and restart of a gateway or worker host (the faults that may cut a
    /// message's way): when, and whether it opens (+1) or heals (-1) a fault. Holds only
    /// delay messages (a bound they make a queue meet is a counted drop); messages do not
    /// pass through the register.
    fault_log: Vec<(Duration, i64, String)>,
    /// Every hold and release (and the stall probe's): when, +1 or -1, the hosts (a
    /// stall: the gateway and `*`).
    hold_log: Vec<(Duration, i64, String, String)>,
    /// When the stall probe's gateway was stalled.
    stalled_at: Option<Duration>,
    /// A register restarted at this time, not yet seen rejoined: the time and the length
    /// of `fault_log` then.
    rejoin_pending: Option<(Duration, usize)>,
    /// Rejoin times measured after register restarts.
    rejoins: Vec<Duration>,
}

type World = Rc<RefCell<Shared>>;

/// The harness lock: ops that change the model (and queries) hold it from request to
/// reply, so the model's states form one sequence.
type Lock = Arc<Mutex<()>>;

thread_local! {
    /// The probe module, compiled once per thread (compiling takes a while; a run only
    /// instantiates).
    static PROBE: OnceCell<(WasmHost<SimApi>, Plugin<SimApi>)> = const { OnceCell::new() };
}

/// The path of the probe guest.
pub fn probe_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-workers/dist/probe.wasm")
}

fn probe() -> (
    WasmHost<BusinessApi<TurmoilNet>>,
    Plugin<BusinessApi<TurmoilNet>>,
) {
    PROBE.with(|cell| {
        cell.get_or_init(|| {
            // No epoch deadline (it ticks on a real thread); fuel bounds every event.
            let config = HostConfig {
                fuel_yield_interval: Some(FUEL_YIELD_INTERVAL),
                ..HostConfig::deterministic()
            };
            let host = WasmHost::new(config).expect("the wasm host builds");
            let plugin = host
                .load_file(&probe_path())
                .expect("probe.wasm compiles (wasm-workers/dist)");
            (host, plugin)
        })
        .clone()
    })
}

/// The simulated wall clock in Unix milliseconds: the guests' time.
fn sim_clock_ms() -> i64 {
    turmoil::since_epoch().map_or(0, |d| d.as_millis() as i64)
}

fn now() -> Duration {
    turmoil::elapsed()
}

fn host_ip(name: &str) -> Ipv4Addr {
    match turmoil::lookup(name) {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => panic!("the simulation runs on IPv4"),
    }
}

fn register_address() -> String {
    format!("register:{REGISTER_PORT}")
}

/// Runs one simulation.
pub fn run(config: &SimConfig) -> Outcome {
    let (wasm_host, plugin) = probe();
    observe::reset();
    let mut sim = crate::builder(config.seed)
        .simulation_duration(config.duration_max)
        .tick_duration(config.tick)
        .build();
    let world: World = Rc::new(RefCell::new(Shared {
        model: Model::new(),
        trace: Trace::default(),
        op_number: 0,
        ops: 0,
        pushes: 0,
        phase: Phase::Workload,
        done: 0,
        pinged: 0,
        audited: false,
        requests: Vec::new(),
        api_audited: false,
        open_faults: 0,
        last_fault_at: None,
        fault_log: Vec::new(),
        hold_log: Vec::new(),
        stalled_at: None,
        rejoin_pending: None,
        rejoins: Vec::new(),
    }));
    let lock: Lock = Arc::new(Mutex::new(()));

    sim.host("register", || async {
        let net = TurmoilNet::default();
        let any = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), REGISTER_PORT);
        let listener = net.bind(any, false).await?;
        let mut config = RegisterConfig::new("");
        config.after_input = Some(observe::register_after_input);
        register_driver::serve(net, config, listener, std::future::pending()).await?;
        Ok(())
    });

    for g in 0..config.gateways {
        let name = format!("gw{g}");
        let text = g >= config.gateways - config.text_gateways.min(config.gateways);
        let shards = config.shards;
        let hash_seed = config.seed ^ (g as u64 + 1).wrapping_mul(0x6a09_e667_f3bc_c909);
        let host_name = name.clone();
        sim.host(name.as_str(), move || {
            let name = host_name.clone();
            async move {
                let ip = host_ip(&name);
                let mut serving = Vec::new();
                for k in 0..shards as u16 {
                    serving.push(serve_shard(ip, k, text, hash_seed));
                }
                for result in futures_util::future::join_all(serving).await {
                    result?;
                }
                Ok(())
            }
        });
    }

    let mut slots = Vec::new();
    for w in 0..config.workers {
        slots.push(add_worker_host(&mut sim, w, &wasm_host, &plugin, config));
    }

    for c in 0..config.workload.clients {
        let actor = Actor::new(config, c, world.clone(), lock.clone());
        sim.client(format!("c{c}").as_str(), async move {
            actor.run().await;
            Ok(())
        });
    }

    let api = ApiHost::new(config, world.clone(), lock.clone());
    sim.client("api", async move {
        api.run().await;
        Ok(())
    });

    let mut schedule = Schedule::new(
        config.seed ^ 0xfa17_0000,
        config.faults,
        (config.gateways, config.workers, config.workload.clients),
        CLIENTS_START + Duration::from_secs(1),
    );
    let mut fault_actions = 0u64;
    let mut quiet_since = None;
    let finished = loop {
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e.to_string()),
        }
        let at = sim.elapsed();
        let phase = world.borrow().phase;
        let mut actions = match phase {
            Phase::Workload => {
                if world.borrow().done == config.workload.clients + 1 {
                    quiet_since = Some(at);
                    world.borrow_mut().phase = Phase::Quiet;
                    schedule.heal()
                } else {
                    schedule.due(at, true)
                }
            }
            Phase::Quiet => {
                // The quiet time ends early once the control plane shows the whole
                // cluster again (checked every 100 ms, after at least `QUIET_MIN`).
                let waited = quiet_since.map_or(Duration::ZERO, |t| at.saturating_sub(t));
                let settled = waited >= QUIET_MIN
                    && waited.as_millis() % 100 < config.tick.as_millis().max(1)
                    && control_plane_gaps(config, &(0..config.workers).collect::<Vec<_>>(), &|n| {
                        match sim.lookup(n) {
                            IpAddr::V4(ip) => ip,
                            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
                        }
                    })
                    .is_empty();
                if waited >= config.quiet || settled {
                    world.borrow_mut().phase = Phase::Audit;
                    world
                        .borrow_mut()
                        .trace
                        .record_at(at, "harness", "audit begins");
                }
                Vec::new()
            }
            Phase::Audit => Vec::new(),
        };
        actions.append(&mut world.borrow_mut().requests);
        check_rejoin(config, &world, at, &|n| match sim.lookup(n) {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        });
        for action in actions {
            fault_actions += 1;
            {
                let mut w = world.borrow_mut();
                w.trace.record_at(at, "fault", format!("{action:?}"));
                let delta = match &action {
                    Action::Hold(..) | Action::Crash(_) | Action::Stall(_) => 1,
                    Action::Release(..) | Action::Bounce(_) | Action::Unstall(_) => -1,
                    Action::Reload(_) | Action::AddWorker(_) => 0,
                };
                w.open_faults += delta;
                if delta != 0 {
                    w.last_fault_at = Some(at);
                }
                match &action {
                    Action::Crash(h) | Action::Bounce(h) if h != "register" => {
                        let ip = sim.lookup(h.as_str()).to_string();
                        w.fault_log.push((at, delta, ip));
                    }
                    Action::Hold(a, b) | Action::Release(a, b) => {
                        w.hold_log.push((at, delta, a.clone(), b.clone()));
                    }
                    Action::Stall(g) | Action::Unstall(g) => {
                        w.hold_log.push((at, delta, g.clone(), "*".into()));
                    }
                    _ => {}
                }
                if action == Action::Bounce("register".into()) {
                    w.rejoin_pending = Some((at, w.fault_log.len()));
                }
                if let Action::Stall(_) = action {
                    w.stalled_at = Some(at);
                }
            }
            match action {
                Action::Hold(a, b) => sim.hold(a.as_str(), b.as_str()),
                Action::Release(a, b) => sim.release(a.as_str(), b.as_str()),
                Action::Crash(h) => {
                    sim.crash(h.as_str());
                    observe::forget_host(&h, sim.lookup(h.as_str()));
                }
                Action::Bounce(h) => sim.bounce(h.as_str()),
                Action::Reload(w) => {
                    slots[w].replace(plugin.clone());
                }
                Action::AddWorker(w) => {
                    slots.push(add_worker_host(&mut sim, w, &wasm_host, &plugin, config));
                }
                Action::Stall(g) => {
                    for other in other_hosts(config, slots.len(), &g) {
                        sim.hold(g.as_str(), other.as_str());
                    }
                }
                Action::Unstall(g) => {
                    for other in other_hosts(config, slots.len(), &g) {
                        sim.release(g.as_str(), other.as_str());
                    }
                }
            }
        }
    };
    let sim_time = sim.elapsed();
    drop(sim);
    let mut shared = world.borrow_mut();
    if let Err(e) = finished {
        shared
            .model
            .violation(format!("the simulation did not finish: {e}"));
    }
    let (invariant_checks, broken, failures) = observe::take_failures();
    for failure in failures {
        shared.model.violation(failure);
    }
    if broken > 0 {
        shared
            .model
            .violation(format!("{broken} core invariant check(s) failed"));
    }
    Outcome {
        seed: config.seed,
        trace: std::mem::take(&mut shared.trace),
        violations: std::mem::take(&mut shared.model.violations),
        ops: shared.ops,
        pushes: shared.pushes,
        transitions: shared.model.transitions(),
        faults: fault_actions,
        sim_time,
        invariant_checks,
        rejoins: std::mem::take(&mut shared.rejoins),
        losses_explained: shared.model.losses_explained.len(),
    }
}

/// Every host but `host` (and `api`, done by then): the register, the gateways, `workers`
/// worker hosts, the clients.
fn other_hosts(config: &SimConfig, workers: usize, host: &str) -> Vec<String> {
    let mut hosts = vec!["register".to_string()];
    hosts.extend((0..config.gateways).map(|g| format!("gw{g}")));
    hosts.extend((0..workers).map(|w| format!("wk{w}")));
    hosts.extend((0..config.workload.clients).map(|c| format!("c{c}")));
    hosts.retain(|h| h != host);
    hosts
}

/// The rejoin property (issue 18): after a register restart, once no other fault
/// intervened, the register announces every gateway shard and has every worker instance
/// registered within [`REJOIN_BOUND`] of its restart. Checked after every step while a
/// restart is pending, so the time is exact to a step.
fn check_rejoin(
    config: &SimConfig,
    world: &World,
    at: Duration,
    host_ip: &dyn Fn(&str) -> Ipv4Addr,
) {
    let Some((since, faults_then)) = world.borrow().rejoin_pending else {
        return;
    };
    let waited = at.saturating_sub(since);
    let instances = config.workers * config.instances as usize;
    let (shards, registered) = observe::with(|o| match &o.register {
        Some((addresses, workers)) => (addresses.clone(), *workers),
        None => (Vec::new(), 0),
    });
    let mut expected = BTreeSet::new();
    for g in 0..config.gateways {
        let ip = host_ip(&format!("gw{g}"));
        for k in 0..config.shards as u16 {
            expected.insert(format!("{ip}:{}", LAN_PORT + k));
        }
    }
    let announced: BTreeSet<String> = shards.iter().cloned().collect();
    // API callers count as workers while connected: at least every instance.
    let whole = announced == expected && registered >= instances;
    let mut w = world.borrow_mut();
    // Another fault meanwhile (a hold, a crash, a restart): not judged.
    let intervened = w.fault_log.len() > faults_then
        || w.open_faults > 0
        || w.last_fault_at.is_some_and(|t| t > since);
    if whole {
        w.rejoin_pending = None;
        w.rejoins.push(waited);
        w.trace.record_at(
            at,
            "harness",
            format!("the cluster rejoined the register in {waited:?}"),
        );
        if waited > REJOIN_BOUND && !intervened {
            w.model.violation(format!(
                "rejoin at {at:?}: the cluster took {waited:?} to rejoin the register restarted at {since:?}, more than {REJOIN_BOUND:?}"
            ));
        }
    } else if waited > REJOIN_BOUND {
        w.rejoin_pending = None;
        if intervened {
            w.trace
                .record_at(at, "harness", "rejoin not judged: another fault intervened");
        } else {
            w.trace.record_at(at, "harness", "VIOLATION rejoin");
            w.model.violation(format!(
                "rejoin at {at:?}: {REJOIN_BOUND:?} after the register restarted at {since:?} it announces {shards:?} (the shards are {expected:?}) and has {registered} workers ({instances} instances run)"
            ));
        }
    }
}

/// Starts worker host `wk<w>` running `config.instances` BusinessWorker instances of the
/// probe; its module slot comes back (for hot reloads).
fn add_worker_host(
    sim: &mut turmoil::Sim<'_>,
    w: usize,
    wasm_host: &WasmHost<SimApi>,
    plugin: &Plugin<SimApi>,
    config: &SimConfig,
) -> PluginSlot<SimApi> {
    let instances = config.instances;
    let suspect_after = config.suspect_after;
    let name = format!("wk{w}");
    let slot = PluginSlot::new(wasm_host, plugin.clone());
    let host = wasm_host.clone();
    let host_slot = slot.clone();
    let host_name = name.clone();
    sim.host(name.as_str(), move || {
        let (name, host, slot) = (host_name.clone(), host.clone(), host_slot.clone());
        async move {
            let mut settings =
                BusinessSettings::new(&name, instances, vec![register_address()], probe_path());
            settings.host = host.config().clone();
            // Production draws the reconnect jitter's seed at random; here it is fixed per
            // host, so that a seed replays exactly.
            settings.core.seed = 0x5eed_0000 ^ w as u64;
            // Fail fast on a stalled gateway, well before the query timeout (issue 18).
            settings.core.suspect_after = Some(suspect_after);
            assert!(
                suspect_after < settings.core.query_timeout,
                "suspect_after must be shorter than the query timeout"
            );
            settings.driver.after_input = Some(observe::worker_after_input);
            let (_stop, stopped) = watch::channel(false);
            let running = (0..instances).map(|i| {
                business::run_instance(
                    TurmoilNet::default(),
                    host.clone(),
                    slot.clone(),
                    settings.clone(),
                    i,
                    stopped.clone(),
                    sim_clock_ms,
                )
            });
            futures_util::future::join_all(running).await;
            Ok(())
        }
    });
    slot
}

async fn serve_shard(ip: Ipv4Addr, k: u16, text: bool, hash_seed: u64) -> std::io::Result<()> {
    let net = TurmoilNet::default();
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let public = net
        .bind(SocketAddr::new(any, PUBLIC_PORT + k), false)
        .await?;
    let lan = net.bind(SocketAddr::new(any, LAN_PORT + k), false).await?;
    let mut config = GatewayConfig::new(ip, LAN_PORT + k, PUBLIC_PORT + k);
    // The uid/group hasher's key comes from the seed, as production draws a random one.
    config.hash_key = HashKey::from_seed(hash_seed ^ u64::from(k));
    config.register_addresses = vec![register_address()];
    config.after_input = Some(observe::gateway_after_input);
    if text {
        config.protocol = PublicProtocol::Text;
    }
    gateway_driver::serve(net, config, public, lan, std::future::pending()).await
}

/// What the control plane should show when exactly the worker hosts `hosts` run,
/// against what the cores showed after their last input: the register announces
/// every gateway shard and has every worker instance registered; every gateway
/// shard has authorised exactly the instances of `hosts`.
fn control_plane_gaps(
    config: &SimConfig,
    hosts: &[usize],
    host_ip: &dyn Fn(&str) -> Ipv4Addr,
) -> Vec<String> {
    observe::with(|observed| gaps_in(config, hosts, host_ip, observed))
}

fn gaps_in(
    config: &SimConfig,
    hosts: &[usize],
    host_ip: &dyn Fn(&str) -> Ipv4Addr,
    observed: &observe::Observed,
) -> Vec<String> {
    let mut gaps = Vec::new();
    let mut shards = BTreeSet::new();
    for g in 0..config.gateways {
        let ip = host_ip(&format!("gw{g}"));
        for k in 0..config.shards as u16 {
            shards.insert(format!("{ip}:{}", LAN_PORT + k));
        }
    }
    let mut routes = BTreeSet::new();
    for &w in hosts {
        let name = format!("wk{w}");
        let ip = host_ip(&name);
        for i in 0..config.instances {
            routes.insert(format!("{ip}:{name}:{i}"));
        }
    }
    match &observed.register {
        None => gaps.push("the register has seen no input since it started".into()),
        Some((addresses, workers)) => {
            let announced: BTreeSet<String> = addresses.iter().cloned().collect();
            if announced != shards || addresses.len() != shards.len() {
                gaps.push(format!(
                    "the register announces {addresses:?}, the live gateway shards are {shards:?}"
                ));
            }
            if *workers != routes.len() {
                gaps.push(format!(
                    "the register has {workers} workers, {} instances run",
                    routes.len()
                ));
            }
        }
    }
    for shard in &shards {
        match observed.gateways.get(shard) {
            None => gaps.push(format!(
                "gateway {shard} has seen no input since it started"
            )),
            Some(keys) => {
                let authorised: BTreeSet<String> = keys.iter().cloned().collect();
                if authorised != routes || keys.len() != routes.len() {
                    gaps.push(format!(
                        "gateway {shard} has authorised {keys:?}, the live instances are {routes:?}"
                    ));
                }
            }
        }
    }
    gaps
}

/// Every worker instance of every worker host linked to every gateway shard, and the
/// register announcing every shard (its worker count aside: API callers count there while
/// connected). A send made while this holds has a way to every client.
/// Longest way of a register's answer to the GatewayClient host: turmoil's largest
/// message latency (100 ms by default) and a few ticks.
const REGISTER_ANSWER_LATENCY_MAX: Duration = Duration::from_millis(200);

fn control_plane_whole(config: &SimConfig, host_ip: &dyn Fn(&str) -> Ipv4Addr) -> bool {
    let all: Vec<usize> = (0..config.workers).collect();
    control_plane_gaps(config, &all, host_ip)
        .iter()
        .all(|gap| gap.starts_with("the register has"))
}

/// Why a message the model expected never reached `loss.recipient`, if something explains
/// it (issue 18, "no silent loss"): the control plane was not whole around it (a link a
/// crash cut), a gateway or worker host was down when it was sent or crashed or restarted
/// while it was on its way, the recipient's gateway shard counted a dropped client message
/// after it was sent, or a worker counted a dropped (or refused) frame while the send ran.
/// A hold explains nothing: it delays, and a queue bound it makes a message meet counts.
fn explain_loss(
    loss: &crate::model::Loss,
    faults: &[(Duration, i64, String)],
    holds: &[(Duration, i64, String, String)],
    drops: &[observe::CountedDrop],
) -> Option<String> {
    // When it was due at the latest: 1 s after its reply, or after the release of a hold
    // on its way open meanwhile (what a hold delays arrives at its release): a hold of
    // the recipient's client host, its gateway host, or a worker host.
    let mut due = loss.replied + LOSS_FAULT_TAIL;
    let mut open_since: Option<Duration> = None;
    let on_way = |h: &str| {
        h == "*"
            || h.starts_with("wk")
            || loss.host.as_deref() == Some(h)
            || (h.starts_with("gw")
                && loss
                    .shard
                    .as_ref()
                    .is_some_and(|s| s.starts_with(&format!("{}:", turmoil::lookup(h)))))
    };
    for (t, delta, a, b) in holds {
        let (t, delta) = (*t, *delta);
        if !(on_way(a) || on_way(b)) {
            continue;
        }
        if delta > 0 {
            open_since.get_or_insert(t);
        } else if let Some(start) = open_since.take() {
            if start <= due && t >= loss.sent {
                due = due.max(t + LOSS_FAULT_TAIL);
            }
        }
    }
    if let Some(start) = open_since {
        if start <= due {
            due = Duration::MAX;
        }
    }
    if let Some(asked) = loss.close_asked.filter(|t| *t <= due) {
        return Some(format!("another client asked to close it at {asked:?}"));
    }
    if let Some(ended) = loss.ended {
        if ended <= due {
            return Some(format!(
                "its connection ended at {ended:?}, before the message was due ({due:?})"
            ));
        }
    }
    if !loss.linked {
        return Some("a gateway shard lacked a link when it was sent or answered".into());
    }
    // Its gateway crashed while it was connected: its connection was dead.
    let gateway_crash = faults.iter().find(|(t, delta, ip)| {
        *delta > 0
            && *t >= loss.connected
            && *t <= due
            && loss
                .shard
                .as_ref()
                .is_some_and(|s| s.starts_with(&format!("{ip}:")))
    });
    if let Some((t, _, ip)) = gateway_crash {
        return Some(format!("its gateway {ip} crashed at {t:?}"));
    }
    let open: i64 = faults
        .iter()
        .filter(|(t, _, _)| *t <= loss.sent)
        .map(|(_, d, _)| d)
        .sum();
    if open > 0 {
        return Some("a host was down when it was sent".into());
    }
    if let Some((t, _, _)) = faults.iter().find(|(t, _, _)| *t >= loss.sent && *t <= due) {
        return Some(format!(
            "a host crashed or restarted at {t:?}, while it was on its way"
        ));
    }
    let counted = drops.iter().find(|d| match d.kind {
        "client" | "unencodable" => Some(&d.core) == loss.shard.as_ref() && d.at >= loss.sent,
        "worker_link" | "too_large" => d.at >= loss.sent && d.at <= loss.replied,
        _ => false,
    });
    counted.map(|d| {
        format!(
            "{} {} drop(s) counted by {} at {:?}",
            d.count, d.kind, d.core, d.at
        )
    })
}

/// Calls of the `api` host in its program.
const API_CALLS: usize = 40;
/// Of the `api` host's calls, the share (percent) of queries, then of sends; the rest
/// change state ([`StateCall`]).
const API_QUERY_PERCENT: u64 = 35;
/// See [`API_QUERY_PERCENT`].
const API_SEND_PERCENT: u64 = 30;
/// A state call's frames, once written (the call returned without a part left in the
/// background), have reached their gateway and been applied within this long: turmoil's
/// largest message latency (100 ms by default; the `api` host's links are never held)
/// and a dozen 4 ms ticks.
const API_LAND_BOUND: Duration = Duration::from_millis(150);
/// A part the library left in the background (its gateway was suspect) may still be
/// written until its connect and its write timed out (each the connect timeout), then
/// land within [`API_LAND_BOUND`].
const API_BACKGROUND_BOUND: Duration = Duration::from_millis(
    2 * CONNECT_TIMEOUT_DEFAULT.as_millis() as u64 + API_LAND_BOUND.as_millis() as u64,
);
/// Wait between two attempts of a state call that failed.
const API_RETRY: Duration = Duration::from_millis(300);
/// A state call still failing this long after its first attempt, with no fault open, is
/// a violation (under an open fault it goes on).
const API_GIVE_UP: Duration = Duration::from_secs(30);

/// The GatewayClient library as an outside caller (a web backend): queries (the
/// GatewayClient-only ones too) checked by the model like a worker's, sends checked by
/// the message oracle, and every call that changes state (`bindUid`, `unbindUid`,
/// `joinGroup`, `leaveGroup`, `ungroup`, `setSession`, `updateSession` with nested PHP
/// arrays, `closeClient` with and without a message, `destroyClient`) on live clients
/// and on ids that are gone, over the same faults; after the heal, every audit query
/// again.
///
/// A state call is fire-and-forget in the library, as in the original: it returns once
/// its frames are written, with no reply from the gateway. So the harness, holding the
/// lock from before the first attempt, begins the model's transition, and closes it
/// [`API_LAND_BOUND`] after the call returned (the frames have landed by then), or
/// [`API_BACKGROUND_BOUND`] after an attempt the library left in the background (a
/// suspect gateway), whichever is later: no frame of it can land after the lock is let
/// go (no client connects meanwhile either, so no reused id can meet a late frame).
/// Without faults it must succeed at once, return what the original returns, and a query
/// of its effect right after must equal the model's. Under faults a failed attempt
/// (register or gateway unreachable, connect refused, a suspect gateway) is retried every
/// [`API_RETRY`] with the transition still open (its effect at an unknown moment): the
/// calls are idempotent (`updateSession`'s `array_replace_recursive` too), so a repeat
/// that lands twice changes nothing. It ends when an attempt succeeds, or when its target
/// left the model (its own connection ended, which settles it), and is a violation after
/// [`API_GIVE_UP`] with no fault open. An `ungroup` under a register list that may have
/// been partial (the library's 1 s cache) unsettles its members as a worker's does. A
/// close under faults keeps its target in the model until its own connection ends
/// (`Model::on_close_asked`), as a client's close of another does. Holding the lock that
/// long only delays other clients' changing ops and connects (they keep reading their
/// connections while they wait, and nothing the retries wait for needs the lock: faults
/// heal on the run loop's schedule, a lost client is noticed without it), and every
/// state call ends before the quiet phase, so the audit never waits for it.
struct ApiHost {
    config: SimConfig,
    program: Program,
    world: World,
    lock: Lock,
    exact: bool,
}

/// A state call of the `api` host, drawn under the harness lock.
struct StateCall {
    name: &'static str,
    call: ApiCall,
    /// The client it acts on (`None`: an `ungroup`), and whether the model has it.
    target: Option<(ClientId, bool)>,
    /// Its change of the model (`None`: a target that is gone, or a close under faults).
    change: Option<Change>,
    /// What the call returns (the original's return value).
    returns: PhpValue,
    /// The query that shows its effect, compared exactly without faults.
    confirm: (&'static str, Value),
}

impl ApiHost {
    fn new(config: &SimConfig, world: World, lock: Lock) -> ApiHost {
        let seed = config.seed ^ 0xa91_0000_0000;
        ApiHost {
            config: config.clone(),
            program: Program::new(seed, config.workload.clone()),
            world,
            lock,
            exact: config.faults.is_none(),
        }
    }

    fn record(&self, what: impl AsRef<str>) {
        self.world.borrow_mut().trace.record("api", what);
    }

    fn violation(&self, what: String) {
        self.record(format!("VIOLATION {what}"));
        let line = format!("api at {:?}: {what}", now());
        self.world.borrow_mut().model.violation(line);
    }

    fn client(&self) -> GatewayClient {
        let mut settings = ClientSettings::new(Gateways::Register(vec![register_address()]));
        settings.connector = Some(Arc::new(crate::api::TurmoilConnector));
        GatewayClient::new(settings)
    }

    async fn run(mut self) {
        tokio::time::sleep(CLIENTS_START + Duration::from_millis(self.program.below(500))).await;
        let client = self.client();
        for _ in 0..API_CALLS {
            tokio::time::sleep(Duration::from_millis(self.program.think_ms())).await;
            let (live, dead) = {
                let w = self.world.borrow();
                let live: Vec<ClientId> = w.model.current().clients.keys().cloned().collect();
                let dead: Vec<ClientId> = w
                    .model
                    .ever_clients
                    .iter()
                    .filter(|id| !w.model.current().clients.contains_key(*id))
                    .cloned()
                    .collect();
                (live, dead)
            };
            let roll = self.program.below(100);
            if roll < API_QUERY_PERCENT {
                let (name, args) = match self.program.below(4) {
                    0 => {
                        let uids = vec![self.program.uid(), self.program.uid()];
                        let name = ["batchGetClientIdByUid", "isUidsOnline"]
                            [self.program.below(2) as usize];
                        (name, json!({ "uids": uids }))
                    }
                    1 => {
                        let groups = vec![self.program.group(), self.program.group()];
                        ("batchGetClientIdCountByGroup", json!({ "groups": groups }))
                    }
                    _ => self.program.query("", &live, &dead),
                };
                let exact = self.exact;
                self.query(&client, name, &args, exact).await;
            } else if roll < API_QUERY_PERCENT + API_SEND_PERCENT {
                self.send(&client, &live, &dead).await;
            } else {
                self.state_call(&client).await;
            }
        }
        self.world.borrow_mut().done += 1;
        self.record("program done");
        while self.world.borrow().phase != Phase::Audit {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ids: Vec<ClientId> = {
            let w = self.world.borrow();
            let mut ids: Vec<ClientId> = w.model.current().clients.keys().cloned().collect();
            ids.extend(w.model.ever_clients.iter().take(3).cloned());
            ids
        };
        let mut queries = audit_queries(&self.config.workload, &ids);
        queries.push(("isUidsOnline".into(), json!({ "uids": ["u0", "u1", "u2"] })));
        self.record(format!("audit: {} queries", queries.len()));
        for (name, args) in queries {
            self.query(&client, &name, &args, true).await;
        }
        self.world.borrow_mut().api_audited = true;
        self.record("finished");
    }

    /// One query under the harness lock: exact, or (under faults) only ids that never
    /// were are flagged.
    async fn query(&mut self, client: &GatewayClient, name: &str, args: &Value, exact: bool) {
        let _guard = self.lock.clone().lock_owned().await;
        self.query_locked(client, name, args, exact).await;
    }

    /// [`ApiHost::query`] with the harness lock already held.
    async fn query_locked(
        &mut self,
        client: &GatewayClient,
        name: &str,
        args: &Value,
        exact: bool,
    ) {
        let Some(call) = crate::api::query_call(name, args) else {
            return;
        };
        self.world.borrow_mut().ops += 1;
        self.record(format!("calls {name} {args}"));
        let answer = match client.call(&call).await {
            Ok(v) => v,
            Err(e) => {
                self.record(format!("{name} failed: {e}"));
                if exact {
                    self.violation(format!("{name} {args} failed: {e}"));
                }
                return;
            }
        };
        let got = crate::api::normalise(name, &answer);
        self.record(format!("answer {got}"));
        if !exact {
            let unknown: Vec<String> = {
                let w = self.world.borrow();
                let mut found = Vec::new();
                collect_ids(&got, &mut found);
                found
                    .into_iter()
                    .filter(|id| id.len() == 20 && !w.model.ever_clients.contains(id))
                    .collect()
            };
            if !unknown.is_empty() {
                self.violation(format!("{name} lists unknown clients {unknown:?}"));
            }
            return;
        }
        let expected = expect_query(self.world.borrow().model.current(), name, args);
        if let Some(expected) = expected {
            // Sessions keep PHP's key order: compared as text; the rest as values.
            let ordered = matches!(
                name,
                "getSession" | "getAllClientSessions" | "getClientSessionsByGroup"
            );
            let text = |v: &Value| serde_json::to_string(v).unwrap_or_default();
            let differs = if ordered {
                text(&got) != text(&expected)
            } else {
                got != expected
            };
            if differs {
                self.violation(format!(
                    "GatewayClient {name} {args} answered {got}, the model says {expected}"
                ));
            }
        }
    }

    /// Draws a state call on a live client (one in seven on an id that is gone) or a
    /// group; `None` when no client is live.
    fn draw_state_call(&mut self, live: &[ClientId], dead: &[ClientId]) -> Option<StateCall> {
        const KINDS: &[(&str, u64)] = &[
            ("bindUid", 3),
            ("unbindUid", 1),
            ("joinGroup", 3),
            ("leaveGroup", 2),
            ("ungroup", 1),
            ("setSession", 2),
            ("updateSession", 3),
            ("closeClient", 2),
            ("destroyClient", 1),
        ];
        let total: u64 = KINDS.iter().map(|(_, w)| w).sum();
        let mut roll = self.program.below(total);
        let name = KINDS
            .iter()
            .find(|(_, w)| {
                let hit = roll < *w;
                roll = roll.saturating_sub(*w);
                hit
            })
            .map_or("bindUid", |(n, _)| *n);
        if name == "ungroup" {
            let group = self.program.group();
            return Some(StateCall {
                name,
                call: ApiCall::Ungroup {
                    group: Bytes::from(group.clone()),
                },
                target: None,
                change: Some(Change::Ungroup(group.clone())),
                returns: PhpValue::Null,
                confirm: ("getClientIdListByGroup", json!({ "group": group })),
            });
        }
        let (id, is_live) = if self.program.chance(15) && !dead.is_empty() {
            (self.program.pick(dead)?, false)
        } else {
            (self.program.pick(live)?, true)
        };
        let client_id = Bytes::from(id.clone());
        let by_id = json!({ "client_id": id });
        let (call, change, returns, confirm) = match name {
            "bindUid" | "unbindUid" => {
                let uid = self.program.uid();
                let (call, change) = if name == "bindUid" {
                    let call = ApiCall::BindUid {
                        client_id,
                        uid: Bytes::from(uid.clone()),
                    };
                    (call, Change::Bind(id.clone(), uid))
                } else {
                    let call = ApiCall::UnbindUid {
                        client_id,
                        uid: Bytes::from(uid),
                    };
                    (call, Change::Unbind(id.clone()))
                };
                (call, change, PhpValue::Null, ("getUidByClientId", by_id))
            }
            "joinGroup" | "leaveGroup" => {
                let group = self.program.group();
                let bytes = Bytes::from(group.clone());
                let (call, change) = if name == "joinGroup" {
                    let call = ApiCall::JoinGroup {
                        client_id,
                        group: bytes,
                    };
                    (call, Change::Join(id.clone(), group.clone()))
                } else {
                    let call = ApiCall::LeaveGroup {
                        client_id,
                        group: bytes,
                    };
                    (call, Change::Leave(id.clone(), group.clone()))
                };
                let confirm = ("getClientIdListByGroup", json!({ "group": group }));
                (call, change, PhpValue::Null, confirm)
            }
            "setSession" | "updateSession" => {
                let object = self.program.session_object(0);
                let session = crate::php::array_from_object(&object);
                let value = crate::api::library_array(&session);
                let (call, change) = if name == "setSession" {
                    let call = ApiCall::SetSession {
                        client_id,
                        session: value,
                    };
                    (call, Change::SetSession(id.clone(), session))
                } else {
                    let call = ApiCall::UpdateSession {
                        client_id,
                        session: value,
                    };
                    (call, Change::UpdateSession(id.clone(), session))
                };
                (call, change, PhpValue::Null, ("getSession", by_id))
            }
            _ => {
                let call = if name == "destroyClient" {
                    ApiCall::DestroyClient { client_id }
                } else {
                    let message = self.program.chance(50).then(|| PhpValue::str("bye"));
                    ApiCall::CloseClient { client_id, message }
                };
                let change = Change::Disconnect(id.clone());
                (call, change, PhpValue::Bool(true), ("isOnline", by_id))
            }
        };
        let closes = matches!(change, Change::Disconnect(_));
        Some(StateCall {
            name,
            call,
            target: Some((id, is_live)),
            // Under faults a close leaves its target to its own end (`on_close_asked`).
            change: (is_live && (self.exact || !closes)).then_some(change),
            returns,
            confirm,
        })
    }

    /// The library's register list can be trusted since `since`: the register announced
    /// every gateway shard and its list did not move within the library's cache time
    /// (see [`ApiHost::send`]).
    fn register_list_trusted(&self, cached_since: Duration) -> bool {
        control_plane_whole(&self.config, &host_ip)
            && observe::with(|o| o.addresses_at) < cached_since
    }

    /// One state call, under the harness lock from the draw to the end of its
    /// transition (see [`ApiHost`] for the handling of failures).
    async fn state_call(&mut self, client: &GatewayClient) {
        let _guard = self.lock.clone().lock_owned().await;
        let (live, dead) = {
            let w = self.world.borrow();
            let live: Vec<ClientId> = w.model.current().clients.keys().cloned().collect();
            let dead: Vec<ClientId> = w
                .model
                .ever_clients
                .iter()
                .filter(|id| !w.model.current().clients.contains_key(*id))
                .cloned()
                .collect();
            (live, dead)
        };
        let Some(draw) = self.draw_state_call(&live, &dead) else {
            return;
        };
        let started = now();
        let transition = {
            let mut w = self.world.borrow_mut();
            w.ops += 1;
            if let (ApiCall::CloseClient { .. } | ApiCall::DestroyClient { .. }, Some((id, true))) =
                (&draw.call, &draw.target)
            {
                w.model.on_close_asked(id, started);
            }
            draw.change.clone().map(|c| w.model.begin(c, started))
        };
        let target = match &draw.target {
            Some((id, live)) => format!("{id}{}", if *live { "" } else { " (gone)" }),
            None => String::new(),
        };
        self.record(format!("calls {} {target} {:?}", draw.name, draw.call));
        let (settled, list_trusted, written_until) = self
            .attempt_until_settled(client, &draw, transition.is_some())
            .await;
        tokio::time::sleep_until(Instant::now() + written_until.saturating_sub(now())).await;
        if let Some(t) = transition {
            if settled {
                self.world.borrow_mut().model.end(t, now());
            }
            let ungroup = matches!(draw.call, ApiCall::Ungroup { .. });
            if ungroup && !(self.exact || settled && list_trusted) {
                self.record("the ungroup may have missed gateways: its members are unsettled");
                self.world.borrow_mut().model.unsettle_ungroup(t);
            }
        }
        if self.exact && settled {
            let (name, args) = draw.confirm.clone();
            self.query_locked(client, name, &args, true).await;
        }
    }

    /// Makes `draw`'s call until an attempt is written whole (retrying failed attempts
    /// while `retry`: a transition waits on it), its target leaves the model, or it fails
    /// for good; then whether it settled, whether the register list of the last attempt
    /// could be trusted, and until when a frame of it may still land.
    async fn attempt_until_settled(
        &mut self,
        client: &GatewayClient,
        draw: &StateCall,
        retry: bool,
    ) -> (bool, bool, Duration) {
        let started = now();
        let mut may_land_until = Duration::ZERO;
        loop {
            let attempt_at = now();
            let cached_since =
                attempt_at.saturating_sub(REGISTER_CACHE_TTL_DEFAULT + REGISTER_ANSWER_LATENCY_MAX);
            let trusted_then = self.register_list_trusted(cached_since);
            let background_before = client.stats().send_parts_background;
            let result = client.call(&draw.call).await;
            let background = client.stats().send_parts_background > background_before;
            let trusted = trusted_then && self.register_list_trusted(cached_since);
            may_land_until = may_land_until.max(now() + API_LAND_BOUND);
            if background {
                may_land_until = may_land_until.max(attempt_at + API_BACKGROUND_BOUND);
            }
            match result {
                Ok(value) if !background => {
                    if value != draw.returns {
                        self.violation(format!(
                            "GatewayClient {} returned {value:?}, the original returns {:?}",
                            draw.name, draw.returns
                        ));
                    }
                    return (true, trusted, may_land_until);
                }
                Ok(_) => {
                    self.record(format!("{}: a part left in the background", draw.name));
                    if self.exact {
                        self.violation(format!(
                            "{} left a part in the background without a fault",
                            draw.name
                        ));
                        return (false, false, may_land_until);
                    }
                }
                Err(e) => {
                    self.record(format!("{} failed: {e}", draw.name));
                    if self.exact {
                        self.violation(format!("{} failed: {e}", draw.name));
                        return (false, false, may_land_until);
                    }
                }
            }
            if !retry {
                return (false, false, may_land_until);
            }
            if let Some((id, _)) = &draw.target {
                if !self.world.borrow().model.current().clients.contains_key(id) {
                    // Its own connection ended: nothing of the change is left to follow.
                    self.record(format!("{id} is gone: the {} is settled", draw.name));
                    return (true, false, may_land_until);
                }
            }
            if now() >= started + API_GIVE_UP && self.world.borrow().open_faults == 0 {
                self.violation(format!(
                    "{} still failing after {API_GIVE_UP:?}, no fault open",
                    draw.name
                ));
                return (false, false, may_land_until);
            }
            tokio::time::sleep(API_RETRY).await;
        }
    }

    /// A send through the library: a message to a client, to all, to uids or groups.
    async fn send(&mut self, client: &GatewayClient, live: &[ClientId], dead: &[ClientId]) {
        let payload = self.program.payload();
        let n = {
            let mut w = self.world.borrow_mut();
            w.op_number += 1;
            w.ops += 1;
            w.op_number
        };
        let message = PhpValue::Str(Bytes::from(message_text(n, &payload)));
        let bytes = |ids: &[ClientId]| {
            ids.iter()
                .map(|i| Bytes::from(i.clone()))
                .collect::<Vec<_>>()
        };
        let (target, call) = match self.program.below(4) {
            0 => {
                let id = if self.program.chance(15) && !dead.is_empty() {
                    self.program.pick(dead).expect("not empty")
                } else {
                    match self.program.pick(live) {
                        Some(id) => id,
                        None => return,
                    }
                };
                let call = ApiCall::SendToClient {
                    client_id: Bytes::from(id.clone()),
                    message,
                    raw: false,
                };
                (Target::Client(id), call)
            }
            1 => {
                let list = self.program.chance(40).then(|| self.program.subset(live));
                let exclude = if self.program.chance(50) {
                    self.program.subset(live)
                } else {
                    vec![]
                };
                let call = ApiCall::SendToAll {
                    message,
                    client_id_list: list.as_deref().map(bytes),
                    exclude: (!exclude.is_empty()).then(|| bytes(&exclude)),
                    raw: false,
                };
                (Target::All { list, exclude }, call)
            }
            2 => {
                let mut uids = vec![self.program.uid(), self.program.uid()];
                uids.sort();
                uids.dedup();
                let call = ApiCall::SendToUid {
                    uids: uids.iter().map(|u| Bytes::from(u.clone())).collect(),
                    message,
                    raw: false,
                };
                (Target::Uid(uids), call)
            }
            _ => {
                let mut groups = vec![self.program.group()];
                if self.program.chance(30) {
                    groups.push(self.program.group());
                }
                groups.sort();
                groups.dedup();
                let exclude = if self.program.chance(30) {
                    self.program.subset(live)
                } else {
                    vec![]
                };
                let call = ApiCall::SendToGroup {
                    groups: groups.iter().map(|g| Bytes::from(g.clone())).collect(),
                    message,
                    exclude: (!exclude.is_empty()).then(|| bytes(&exclude)),
                    raw: false,
                };
                (Target::Group { groups, exclude }, call)
            }
        };
        // Each call its own sender: two calls travel on two connections, unordered.
        let sender = format!("api#{n}");
        self.record(format!("sends m{n} ({} bytes): {target:?}", payload.len()));
        self.world
            .borrow_mut()
            .model
            .on_send(n, &sender, target, &payload, now());
        // The library reuses a register list for `REGISTER_CACHE_TTL_DEFAULT` (1 s, as
        // the original): a list fetched while the register's was still partial (a
        // register restart) may miss gateways for that long, silently. Counted from the
        // answer's arrival, so the list can be older by the answer's way through the
        // network (turmoil's latency is at most 100 ms; seed 30000745: a list answered at
        // the register 5 ms before its last gateway re-registered, cached on arrival).
        let cached_since =
            now().saturating_sub(REGISTER_CACHE_TTL_DEFAULT + REGISTER_ANSWER_LATENCY_MAX);
        let linked_sent = control_plane_whole(&self.config, &host_ip)
            && observe::with(|o| o.addresses_at) < cached_since;
        let result = client.call(&call).await;
        // The register's list moving during the call (gateways re-registering after a
        // register restart) means the list the library fetched may have been partial too.
        let addresses_moved = observe::with(|o| o.addresses_at) >= cached_since;
        if !linked_sent || addresses_moved || !control_plane_whole(&self.config, &host_ip) {
            self.world.borrow_mut().model.on_send_unlinked(n);
        }
        match result {
            Ok(_) => self.world.borrow_mut().model.on_send_replied(n, now()),
            Err(e) => {
                self.record(format!("send m{n} failed: {e}"));
                if self.exact {
                    self.violation(format!("send m{n} failed: {e}"));
                }
            }
        }
    }
}

/// Every string in `v` (client ids in lists and map keys).
fn collect_ids(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(items) => items.iter().for_each(|i| collect_ids(i, out)),
        Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                collect_ids(v, out);
            }
        }
        _ => {}
    }
}

/// Every sub-op of a `multi` reply succeeded.
fn reply_all_ok(reply: &Value) -> bool {
    reply["ok"] == true
        && reply["result"]
            .as_array()
            .is_none_or(|r| r.iter().all(|x| x["ok"] == true))
}

/// Why an op ended without its reply.
#[derive(Debug)]
struct Lost;

/// One connection of a client, with the id the probe told it.
struct Client {
    conn: Conn,
    id: ClientId,
    /// Which connection of this id it is (see [`Model::incarnation`]).
    incarnation: usize,
    requests: u64,
    /// It speaks the text protocol.
    text: bool,
    /// Answers to messages that were no op request, in arrival order.
    raw_in: Vec<String>,
}

/// A simulated end user running its program.
struct Actor {
    name: String,
    index: usize,
    config: SimConfig,
    program: Program,
    world: World,
    lock: Lock,
    exact: bool,
    connects: u64,
}

impl Actor {
    fn new(config: &SimConfig, index: usize, world: World, lock: Lock) -> Actor {
        let seed = config.seed ^ (index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Actor {
            name: format!("c{index}"),
            index,
            config: config.clone(),
            program: Program::new(seed, config.workload.clone()),
            world,
            lock,
            exact: config.faults.is_none(),
            connects: 0,
        }
    }

    fn record(&self, what: impl AsRef<str>) {
        self.world.borrow_mut().trace.record(&self.name, what);
    }

    fn violation(&self, what: String) {
        let line = format!("{} at {:?}: {what}", self.name, now());
        self.record(format!("VIOLATION {what}"));
        self.world.borrow_mut().model.violation(line);
    }

    async fn run(mut self) {
        let stagger = Duration::from_millis(self.program.below(500));
        tokio::time::sleep(CLIENTS_START + stagger).await;
        let mut client: Option<Client> = None;
        let mut done = 0;
        while done < self.config.workload.ops_per_client {
            let Some(c) = client.as_mut() else {
                client = self.connect().await;
                if client.is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            };
            let think = Duration::from_millis(self.program.think_ms());
            if self.pump(c, tokio::time::sleep(think)).await.is_err() {
                self.lost(client.take().expect("connected"));
                continue;
            }
            let (live, dead) = self.known_clients();
            let op = self.program.next(&c.id, &live, &dead, self.exact, c.text);
            done += 1;
            match self.run_op(c, op).await {
                Ok(true) => {}
                Ok(false) => client = None,
                Err(Lost) => self.lost(client.take().expect("connected")),
            }
        }
        self.world.borrow_mut().done += 1;
        self.record("program done");
        self.finish(client).await;
    }

    /// Waits for the audit, proves the client is alive, lets `c0` audit, waits for it.
    async fn finish(&mut self, mut client: Option<Client>) {
        let mut pinged = false;
        loop {
            let (phase, audited, all_pinged) = {
                let w = self.world.borrow();
                (w.phase, w.audited, w.pinged == self.config.workload.clients)
            };
            if audited {
                break;
            }
            let Some(c) = client.as_mut() else {
                client = self.connect().await;
                if client.is_none() {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                continue;
            };
            if phase == Phase::Audit && !pinged {
                let op = Op {
                    name: "echo".into(),
                    args: json!({ "data": "alive" }),
                    effect: Effect::None,
                    query: None,
                    changes: false,
                };
                match self.run_op(c, op).await {
                    Ok(true) => {
                        pinged = true;
                        self.world.borrow_mut().pinged += 1;
                    }
                    Ok(false) => {
                        self.violation("no echo after the faults healed".into());
                        client = None;
                        continue;
                    }
                    Err(Lost) => {
                        self.violation("connection lost after the faults healed".into());
                        self.lost(client.take().expect("connected"));
                        continue;
                    }
                }
            }
            if self.index == 0 && pinged && all_pinged {
                self.audit(c).await;
                // The GatewayClient host audits too, before the register restarts.
                while !self.world.borrow().api_audited {
                    if !self.pause(c, 100).await {
                        break;
                    }
                }
                if self.stall_probe(c).await {
                    self.audit_control_plane(c).await;
                }
                self.world.borrow_mut().audited = true;
                break;
            }
            if self
                .pump(c, tokio::time::sleep(Duration::from_millis(100)))
                .await
                .is_err()
            {
                if phase == Phase::Audit {
                    self.violation("connection lost during the audit".into());
                }
                self.lost(client.take().expect("connected"));
            }
        }
        self.record("finished");
    }

    /// Every query of the model, asked with the harness lock, compared exactly.
    async fn audit(&mut self, client: &mut Client) {
        if !self.settle(client).await {
            return;
        }
        let state = self.world.borrow().model.current().clone();
        let mut ids: Vec<ClientId> = state.clients.keys().cloned().collect();
        ids.extend(
            self.world
                .borrow()
                .model
                .ever_clients
                .iter()
                .take(3)
                .cloned(),
        );
        let queries = audit_queries(&self.config.workload, &ids);
        self.record(format!("audit: {} queries", queries.len()));
        for (name, args) in queries {
            let op = Op {
                name: name.clone(),
                args: args.clone(),
                effect: Effect::None,
                query: Some((name, args)),
                changes: true,
            };
            match self.run_op_checked(client, op, true).await {
                Ok(true) => {}
                Ok(false) => {
                    self.violation("no reply during the audit".into());
                    return;
                }
                Err(Lost) => {
                    self.violation("connection lost during the audit".into());
                    return;
                }
            }
        }
        let (faults, holds, drops) = {
            let w = self.world.borrow();
            let drops = observe::with(|o| o.drops.clone());
            (w.fault_log.clone(), w.hold_log.clone(), drops)
        };
        let mut w = self.world.borrow_mut();
        w.model
            .check_deliveries(|loss| explain_loss(loss, &faults, &holds, &drops));
        let explained = std::mem::take(&mut w.model.losses_explained);
        for line in &explained {
            w.trace
                .record("harness", format!("lost, explained: {line}"));
        }
        w.model.losses_explained = explained;
    }

    /// Settles what faults left open: the members of each group an ungroup may have
    /// missed, asked now that every fault healed.
    async fn settle(&mut self, client: &mut Client) -> bool {
        let groups = self.world.borrow().model.unsettled_groups();
        for group in groups {
            let lock = self.lock.clone();
            let Ok(_guard) = self.pump(client, lock.lock_owned()).await else {
                self.violation("connection lost during the audit".into());
                return false;
            };
            client.requests += 1;
            let id = format!("{}.{}", self.name, client.requests);
            let op = Op {
                name: "getClientIdListByGroup".into(),
                args: json!({ "group": group }),
                effect: Effect::None,
                query: None,
                changes: true,
            };
            let request = op.request(&id);
            self.record(format!("settles {group}: {request}"));
            let deadline = Instant::now() + self.config.op_timeout;
            let sent = self.send_text(client, &request).await;
            let reply = match sent {
                true => self.wait_reply(client, &id, deadline).await,
                false => Err(Lost),
            };
            let Ok(Some(reply)) = reply else {
                self.violation("no reply during the audit".into());
                return false;
            };
            self.record(format!("reply {reply}"));
            let listed: Vec<ClientId> = reply["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect();
            self.world
                .borrow_mut()
                .model
                .settle_group(&group, &listed, now());
        }
        true
    }

    /// Sends one query on `client` and waits for its reply (handling what else arrives);
    /// the reply and how long it took, or `None` (a violation is recorded).
    async fn ask(
        &mut self,
        client: &mut Client,
        name: &str,
        args: &Value,
    ) -> Option<(Value, Duration)> {
        client.requests += 1;
        let id = format!("{}.{}", self.name, client.requests);
        let request = json!({ "op": name, "args": args, "id": id }).to_string();
        self.record(format!("asks {request}"));
        let started = now();
        let deadline = Instant::now() + self.config.op_timeout;
        let reply = match self.send_text(client, &request).await {
            true => self.wait_reply(client, &id, deadline).await,
            false => Err(Lost),
        };
        let Ok(Some(reply)) = reply else {
            self.violation(format!("stall probe: no reply to {request}"));
            return None;
        };
        let took = now() - started;
        self.record(format!("reply after {took:?}: {reply}"));
        Some((reply, took))
    }

    /// The stall property (issue 18): one gateway host stalls (all its traffic held, as a
    /// stopped process); a client of another gateway asks queries that involve every
    /// gateway. Each answers within the worker's `suspect_after` + [`STALL_SLACK`]
    /// (no query waits out the 5 s timeout), with `ok:false` naming as missing exactly
    /// the stalled host's shards (the error counts them; the workers' suspicions, seen
    /// through the hook, name them and nothing else); a query that involves only the
    /// healthy gateway answers at once. The GatewayClient library, from the same host,
    /// does the same with its own suspicions: two calls each within its `suspect_after`
    /// (the workers') + [`STALL_SLACK`], failing with [`LinkFailure::Suspect`] for a
    /// stalled shard, every stalled shard and nothing else suspect. After the release,
    /// queries answer `ok:true` again, exactly, through the worker and the library, and no
    /// gateway stays suspect in either.
    async fn stall_probe(&mut self, client: &mut Client) -> bool {
        let gateways = self.config.gateways;
        if gateways < 2 {
            return true;
        }
        let stalled = (self.config.seed % gateways as u64) as usize;
        let healthy = (stalled + 1) % gateways;
        let stalled_ip = host_ip(&format!("gw{stalled}"));
        let stalled_shards: BTreeSet<String> = (0..self.config.shards as u16)
            .map(|k| format!("{stalled_ip}:{}", LAN_PORT + k))
            .collect();
        let prober = {
            let _guard = self.lock.clone().lock_owned().await;
            self.connect_to(healthy, 0).await
        };
        let Some(mut p) = prober else {
            self.violation(format!("stall probe: no client on gw{healthy}"));
            return false;
        };
        let suspicions_before = observe::with(|o| o.suspicions.len());
        let library = {
            let mut settings = ClientSettings::new(Gateways::Register(vec![register_address()]));
            settings.connector = Some(Arc::new(crate::api::TurmoilConnector));
            settings.suspect_after = Some(self.config.suspect_after);
            GatewayClient::new(settings)
        };
        self.request(Action::Stall(format!("gw{stalled}")));
        if !self.pause(client, 20).await {
            return false;
        }
        let limit = self.config.suspect_after + STALL_SLACK;
        let missing = format!("from {} gateway(s)", stalled_shards.len());
        // Twice: the first query waits for the suspicion, the second finds it (or meets
        // another instance, which waits for its own).
        for round in 0..2 {
            let Some((reply, took)) = self.ask(&mut p, "getAllClientIdList", &json!({})).await
            else {
                return false;
            };
            let error = reply["error"].as_str().unwrap_or("");
            if took > limit {
                self.violation(format!(
                    "stall probe: query {round} while gw{stalled} stalls took {took:?}, more than suspect_after {:?} + {STALL_SLACK:?}",
                    self.config.suspect_after
                ));
            }
            if reply["ok"] != false || !error.contains(&missing) {
                self.violation(format!(
                    "stall probe: query {round} while gw{stalled} stalls answered {reply}, not ok:false {missing}"
                ));
            }
        }
        let own = json!({ "client_id": p.id });
        let Some((reply, took)) = self.ask(&mut p, "isOnline", &own).await else {
            return false;
        };
        if reply["ok"] != true || reply["result"] != 1 || took > STALL_SLACK {
            self.violation(format!(
                "stall probe: a query of the healthy gateway only answered {reply} after {took:?}"
            ));
        }
        for round in 0..2 {
            let started = now();
            let outcome = library.call(&ApiCall::GetAllClientIdList).await;
            let took = now() - started;
            self.record(format!("library query {round} after {took:?}: {outcome:?}"));
            let named_suspect = matches!(
                &outcome,
                Err(ClientError::Gateway { gateway, reason: LinkFailure::Suspect(_) })
                    if stalled_shards.contains(&gateway.to_string())
            );
            if took > limit || !named_suspect {
                self.violation(format!(
                    "stall probe: GatewayClient query {round} while gw{stalled} stalls answered {outcome:?} after {took:?} (limit {limit:?})"
                ));
            }
        }
        let library_suspects: BTreeSet<String> = library
            .suspect_gateways()
            .iter()
            .map(ToString::to_string)
            .collect();
        if library_suspects != stalled_shards {
            self.violation(format!(
                "stall probe: the GatewayClient suspects {library_suspects:?}, gw{stalled}'s shards are {stalled_shards:?}"
            ));
        }
        let stalled_at = self.world.borrow().stalled_at;
        let suspected: Vec<(Duration, String, Vec<String>)> =
            observe::with(|o| o.suspicions[suspicions_before..].to_vec());
        let named: BTreeSet<String> = suspected.iter().flat_map(|(_, _, s)| s.clone()).collect();
        if named != stalled_shards {
            self.violation(format!(
                "stall probe: gw{stalled} stalled at {stalled_at:?}, the workers suspected {named:?}, its shards are {stalled_shards:?}"
            ));
        }
        self.request(Action::Unstall(format!("gw{stalled}")));
        if !self.pause(client, 300).await {
            return false;
        }
        let _guard = self.lock.clone().lock_owned().await;
        let Some((reply, took)) = self.ask(&mut p, "getAllClientIdList", &json!({})).await else {
            return false;
        };
        let expected = expect_query(
            self.world.borrow().model.current(),
            "getAllClientIdList",
            &json!({}),
        );
        if reply["ok"] != true || Some(&reply["result"]) != expected.as_ref() || took > STALL_SLACK
        {
            self.violation(format!(
                "stall probe: after gw{stalled} resumed, a query answered {reply} after {took:?}, the model says {expected:?}"
            ));
        }
        let started = now();
        let outcome = library.call(&ApiCall::GetAllClientIdList).await;
        let took = now() - started;
        let got = outcome
            .as_ref()
            .ok()
            .map(|v| crate::api::normalise("getAllClientIdList", v));
        if got != expected || took > STALL_SLACK || !library.suspect_gateways().is_empty() {
            self.violation(format!(
                "stall probe: after gw{stalled} resumed, a GatewayClient query answered {outcome:?} after {took:?} (suspects {:?}), the model says {expected:?}",
                library.suspect_gateways()
            ));
        }
        let still: Vec<String> = observe::with(|o| {
            o.suspicions
                .iter()
                .rev()
                .map(|(_, key, s)| (key, s))
                .fold(BTreeMap::new(), |mut m, (k, s)| {
                    m.entry(k.clone()).or_insert_with(|| s.clone());
                    m
                })
                .into_iter()
                .filter(|(_, s)| !s.is_empty())
                .map(|(k, s)| format!("{k} suspects {s:?}"))
                .collect()
        });
        if !still.is_empty() {
            self.violation(format!(
                "stall probe: after gw{stalled} resumed: {}",
                still.join("; ")
            ));
        }
        self.disconnect_self(&p);
        true
    }

    /// Asks the run loop for `action` (at its next step).
    fn request(&self, action: Action) {
        self.record(format!("asks for {action:?}"));
        self.world.borrow_mut().requests.push(action);
    }

    /// See [`control_plane_gaps`].
    fn control_plane_gaps(&self, hosts: &[usize]) -> Vec<String> {
        control_plane_gaps(&self.config, hosts, &host_ip)
    }

    /// Waits (handling `client`'s messages) until the control plane shows `hosts`; a
    /// violation if it does not within [`RECONNECT_BOUND`].
    async fn converge(&mut self, client: &mut Client, what: &str, hosts: &[usize]) -> bool {
        let started = now();
        loop {
            let gaps = self.control_plane_gaps(hosts);
            if gaps.is_empty() {
                self.record(format!(
                    "control plane {what}: settled in {:?}",
                    now() - started
                ));
                return true;
            }
            if now() - started > RECONNECT_BOUND {
                self.violation(format!(
                    "control plane {what}: not settled within {RECONNECT_BOUND:?}: {}",
                    gaps.join("; ")
                ));
                return false;
            }
            let pause = tokio::time::sleep(Duration::from_millis(100));
            if self.pump(client, pause).await.is_err() {
                self.violation(format!(
                    "connection lost during the control-plane audit ({what})"
                ));
                return false;
            }
        }
    }

    /// Waits `ms` simulated milliseconds handling `client`'s messages.
    async fn pause(&mut self, client: &mut Client, ms: u64) -> bool {
        let pause = tokio::time::sleep(Duration::from_millis(ms));
        if self.pump(client, pause).await.is_err() {
            self.violation("connection lost during the control-plane audit".into());
            return false;
        }
        true
    }

    /// A new connection to every shard of every gateway gets its connect event and an
    /// echo: served by the only worker host left, `what`.
    async fn serve_on_every_shard(&mut self, what: &str, kept: &mut Vec<Client>) -> bool {
        for g in 0..self.config.gateways {
            for k in 0..self.config.shards as u16 {
                let connected = {
                    let _guard = self.lock.clone().lock_owned().await;
                    self.connect_to(g, k).await
                };
                let Some(mut c) = connected else {
                    self.violation(format!("{what} serves no client on gw{g} shard {k}"));
                    return false;
                };
                let op = Op {
                    name: "echo".into(),
                    args: json!({ "data": format!("served by {what}") }),
                    effect: Effect::None,
                    query: None,
                    changes: false,
                };
                match self.run_op_checked(&mut c, op, true).await {
                    Ok(true) => kept.push(c),
                    _ => {
                        self.violation(format!("{what} does not answer on gw{g} shard {k}"));
                        return false;
                    }
                }
            }
        }
        true
    }

    /// The control plane after the faults healed (issue 19, item 1): the register
    /// announces exactly the live gateways and has the live workers, every gateway has
    /// authorised every live worker instance; then the register restarts, one more worker
    /// host starts and `wk0` restarts, each change settling within [`RECONNECT_BOUND`];
    /// then only the new host runs and serves a new client on every gateway shard, then
    /// only the restarted `wk0`.
    async fn audit_control_plane(&mut self, client: &mut Client) {
        let workers = self.config.workers;
        let all: Vec<usize> = (0..workers).collect();
        if !self.converge(client, "after the heal", &all).await {
            return;
        }
        self.request(Action::Crash("register".into()));
        if !self.pause(client, 1000).await {
            return;
        }
        self.request(Action::Bounce("register".into()));
        if !self
            .converge(client, "after a register restart", &all)
            .await
        {
            return;
        }
        self.request(Action::AddWorker(workers));
        self.request(Action::Crash("wk0".into()));
        if !self.pause(client, 500).await {
            return;
        }
        self.request(Action::Bounce("wk0".into()));
        let grown: Vec<usize> = (0..=workers).collect();
        if !self
            .converge(client, "with a new worker host and wk0 restarted", &grown)
            .await
        {
            return;
        }
        let mut kept = Vec::new();
        for w in 0..workers {
            self.request(Action::Crash(format!("wk{w}")));
        }
        if !self
            .converge(client, "with only the new worker host", &[workers])
            .await
            || !self
                .serve_on_every_shard("the new worker host", &mut kept)
                .await
        {
            return;
        }
        self.request(Action::Bounce("wk0".into()));
        self.request(Action::Crash(format!("wk{workers}")));
        if !self
            .converge(client, "with only the restarted wk0", &[0])
            .await
        {
            return;
        }
        self.serve_on_every_shard("the restarted wk0", &mut kept)
            .await;
    }

    /// Clients the model has connected, and some that are gone (ghost ids).
    fn known_clients(&self) -> (Vec<ClientId>, Vec<ClientId>) {
        let w = self.world.borrow();
        let live: Vec<ClientId> = w.model.current().clients.keys().cloned().collect();
        let dead: Vec<ClientId> = w
            .model
            .ever_clients
            .iter()
            .filter(|id| !w.model.current().clients.contains_key(*id))
            .cloned()
            .collect();
        (live, dead)
    }

    /// The connection ended without the client closing it.
    fn lost(&mut self, client: Client) {
        self.record(format!("lost {}", client.id));
        if self.is_current(&client) {
            if self.exact {
                self.violation(format!("connection {} lost without a fault", client.id));
            }
            self.disconnect_self(&client);
        }
    }

    /// The model's client of this id is this connection: connected, and no later
    /// connection took the id (a restarted gateway counts connection ids from 1 again,
    /// so a connection that a crash ended unnoticed may share its id with a new one).
    fn is_current(&self, client: &Client) -> bool {
        let w = self.world.borrow();
        w.model.current().clients.contains_key(&client.id)
            && w.model.incarnation(&client.id) == client.incarnation
    }

    /// This connection ended: the model forgets its client, unless the id now names a
    /// later connection.
    fn disconnect_self(&self, client: &Client) {
        if self.is_current(client) {
            self.world
                .borrow_mut()
                .model
                .apply_now(Change::Disconnect(client.id.clone()), now());
        } else {
            self.record(format!("{} names a later connection now", client.id));
        }
    }

    /// Connects to a gateway and shard chosen by the seed; the probe's connect event
    /// names the client. Holds the harness lock: a connection changes the model.
    async fn connect(&mut self) -> Option<Client> {
        let _guard = self.lock.clone().lock_owned().await;
        let gateway = self.program.below(self.config.gateways as u64) as usize;
        let shard = self.program.below(self.config.shards as u64) as u16;
        self.connect_to(gateway, shard).await
    }

    /// Connects to `shard` of gateway `gateway` (the caller holds the harness lock).
    async fn connect_to(&mut self, gateway: usize, shard: u16) -> Option<Client> {
        let text =
            gateway >= self.config.gateways - self.config.text_gateways.min(self.config.gateways);
        let host = format!("gw{gateway}");
        let started = now();
        self.connects += 1;
        let seed = self.config.seed ^ ((self.index as u64) << 32) ^ self.connects;
        let timeout = self.config.op_timeout;
        let conn = tokio::time::timeout(
            timeout,
            Conn::connect(&host, PUBLIC_PORT + shard, !text, seed),
        )
        .await;
        let mut conn = match conn {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => {
                self.record(format!("connect to {host} failed: {e}"));
                // The TCP connection may have been accepted before the handshake failed.
                self.world.borrow_mut().model.on_connect_abandoned();
                return None;
            }
            Err(_) => {
                self.record(format!("connect to {host} timed out"));
                self.world.borrow_mut().model.on_connect_abandoned();
                return None;
            }
        };
        // Pushes may overtake the connect event (a concurrent sendToAll): keep them with
        // their arrival time until the client knows its id.
        let mut early = Vec::new();
        let deadline = Instant::now() + timeout;
        let id = loop {
            let message = tokio::select! {
                biased;
                m = conn.recv() => m,
                () = tokio::time::sleep_until(deadline) => {
                    self.record(format!("no connect event from {host}"));
                    self.world.borrow_mut().model.on_connect_abandoned();
                    return None;
                }
            };
            let Some((text, at)) = message else {
                self.record(format!("{host} closed before the connect event"));
                self.world.borrow_mut().model.on_connect_abandoned();
                return None;
            };
            let event: Option<Value> = serde_json::from_str(&text).ok();
            match event.as_ref().and_then(|v| {
                (v["event"] == "connect").then(|| v["client_id"].as_str().map(str::to_string))
            }) {
                Some(Some(id)) => break id,
                _ => early.push((at, text)),
            }
        };
        {
            let mut w = self.world.borrow_mut();
            let t = w.model.begin(Change::Connect(id.clone()), started);
            w.model.end(t, now());
            let shard = format!("{}:{}", host_ip(&host), LAN_PORT + shard);
            w.model.set_shard(&id, shard, &self.name);
        }
        self.record(format!(
            "connected {id} to {host}:{} ({})",
            PUBLIC_PORT + shard,
            if text { "text" } else { "ws" }
        ));
        let incarnation = self.world.borrow().model.incarnation(&id);
        let mut client = Client {
            conn,
            id,
            incarnation,
            requests: 0,
            text,
            raw_in: Vec::new(),
        };
        for (at, text) in early {
            if let Some(reply) = self.on_message(&mut client, &text, at) {
                self.violation(format!("a reply before the connect event: {reply}"));
            }
        }
        Some(client)
    }

    /// Runs `fut` while handling what arrives on the connection.
    async fn pump<F: Future>(&mut self, client: &mut Client, fut: F) -> Result<F::Output, Lost> {
        tokio::pin!(fut);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                message = client.conn.recv() => match message {
                    Some((text, at)) => {
                        if let Some(reply) = self.on_message(client, &text, at) {
                            self.violation(format!("an unexpected reply: {reply}"));
                        }
                    }
                    None => return Err(Lost),
                },
            }
        }
    }

    /// Handles a message that is not the awaited reply; a reply is handed back.
    fn on_message(&mut self, client: &mut Client, text: &str, at: Duration) -> Option<Value> {
        if let Some(rest) = text.strip_prefix("m|") {
            let (number, payload) = rest.split_once('|').unwrap_or((rest, ""));
            match number.parse::<u64>() {
                Ok(op) if rest.contains('|') => {
                    self.record(format!("got m{op} ({} bytes)", payload.len()));
                    let mut w = self.world.borrow_mut();
                    w.pushes += 1;
                    w.model.on_push(&client.id, op, payload, at);
                }
                _ => self.violation(format!(
                    "a mangled message {:?}",
                    text.chars().take(80).collect::<String>()
                )),
            }
            return None;
        }
        if text.starts_with("r|") || text.starts_with("{\"event\":\"raw_binary\"") {
            self.record(format!("got a raw answer ({} bytes)", text.len()));
            client.raw_in.push(text.to_string());
            return None;
        }
        if text == "bye" {
            self.record("got bye");
            return None;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                self.violation(format!("an unknown message {text:?}"));
                return None;
            }
        };
        if value["event"] == "close" {
            let closed = value["client_id"].as_str().unwrap_or("").to_string();
            self.record(format!("heard close of {closed}"));
            self.world
                .borrow_mut()
                .model
                .on_close_event(&client.id, &closed, at);
            return None;
        }
        if value.get("ok").is_some() && value.get("id").is_some() {
            return Some(value);
        }
        self.violation(format!("an unknown message {text:?}"));
        None
    }

    /// Waits for the reply `id` until `deadline` (`None`: timed out).
    async fn wait_reply(
        &mut self,
        client: &mut Client,
        id: &str,
        deadline: Instant,
    ) -> Result<Option<Value>, Lost> {
        loop {
            tokio::select! {
                biased;
                message = client.conn.recv() => match message {
                    Some((text, at)) => {
                        if let Some(reply) = self.on_message(client, &text, at) {
                            if reply["id"] == id {
                                return Ok(Some(reply));
                            }
                            self.violation(format!("a reply to another request: {reply}"));
                        }
                    }
                    None => return Err(Lost),
                },
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    /// Runs one op; `Ok(false)` when the client is no longer connected afterwards.
    async fn run_op(&mut self, client: &mut Client, op: Op) -> Result<bool, Lost> {
        let exact = self.exact;
        self.run_op_checked(client, op, exact).await
    }

    async fn run_op_checked(
        &mut self,
        client: &mut Client,
        mut op: Op,
        exact: bool,
    ) -> Result<bool, Lost> {
        let lock = self.lock.clone();
        let _guard = if op.changes {
            Some(self.pump(client, lock.lock_owned()).await?)
        } else {
            None
        };
        // Closed by another client while waiting for the lock: that close completed
        // under the lock, so the model knows; an op sent now would never run, and a
        // change it began would stay in the model as if it might have.
        if op.changes && !self.is_current(client) {
            self.record(format!("{} was closed while waiting", client.id));
            return Err(Lost);
        }
        let started = now();
        let mut transition = None;
        let mut sent_op = None;
        {
            let mut w = self.world.borrow_mut();
            w.ops += 1;
            match &op.effect {
                // Under faults the close may miss the target's gateway (no link to it at
                // that moment) even with a reply: the model keeps the target until its
                // own connection ends, which settles it; a message it then misses is
                // explained by the close asked (see `explain_loss`).
                Effect::CloseOther(target) => {
                    w.model.on_close_asked(target, started);
                    if exact && w.model.current().clients.contains_key(target) {
                        transition =
                            Some(w.model.begin(Change::Disconnect(target.clone()), started));
                    }
                }
                Effect::Send(target) => {
                    w.op_number += 1;
                    let n = w.op_number;
                    let payload = op.args["message"].as_str().unwrap_or("").to_string();
                    op.args["message"] = json!(message_text(n, &payload));
                    sent_op = Some(n);
                    w.model
                        .on_send(n, &client.id, target.clone(), &payload, started);
                }
                Effect::Change(change) => {
                    transition = Some(w.model.begin(change.clone(), started));
                }
                Effect::None | Effect::CloseSelf | Effect::Raw(_) => {}
            }
        }
        if let Effect::Raw(raw) = &op.effect {
            return self.run_raw(client, raw.clone(), exact).await;
        }
        let linked_sent = control_plane_whole(&self.config, &host_ip);
        // An ungroup whose outcome a fault may have left open.
        let ungroup =
            transition.filter(|_| matches!(op.effect, Effect::Change(Change::Ungroup(_))));
        let linked_then = ungroup.is_some() && !exact && self.all_linked();
        client.requests += 1;
        let id = format!("{}.{}", self.name, client.requests);
        let request = op.request(&id);
        self.record(format!("sends {request}"));
        if !self.send_text(client, &request).await {
            self.unsettle(ungroup);
            return Err(Lost);
        }
        let in_workload = self.world.borrow().phase == Phase::Workload;
        if self.config.faults.client_drop && in_workload && self.program.chance(3) {
            self.record(format!("drops {} mid-op", client.id));
            self.unsettle(ungroup);
            self.disconnect_self(client);
            return Ok(false);
        }
        let deadline = Instant::now() + self.config.op_timeout;
        let waited = self.wait_reply(client, &id, deadline).await;
        if !matches!(waited, Ok(Some(_))) {
            self.unsettle(ungroup);
        }
        let reply = match waited? {
            Some(reply) => reply,
            None => {
                self.record(format!("no reply to {id}; disconnects"));
                if exact {
                    self.violation(format!("no reply to {request}"));
                }
                self.disconnect_self(client);
                return Ok(false);
            }
        };
        self.record(format!("reply {reply}"));
        if let Some(n) = sent_op {
            // A failed send (or a bool-send answering false) may not have gone out.
            if reply["ok"] == true && reply["result"] != false {
                self.world.borrow_mut().model.on_send_replied(n, now());
            }
            if !linked_sent || !control_plane_whole(&self.config, &host_ip) {
                self.world.borrow_mut().model.on_send_unlinked(n);
            }
        }
        if let Some(t) = transition {
            self.world.borrow_mut().model.end(t, now());
        }
        if ungroup.is_some()
            && !(exact || self.calm_since(started, linked_then) && reply_all_ok(&reply))
        {
            self.unsettle(ungroup);
        }
        if exact {
            self.check_reply(client, &op, &reply);
        } else {
            if op.query.is_some()
                && !GC_ONLY.contains(&op.name.as_str())
                && reply["ok"] != true
                && self.quiet_since(started.saturating_sub(self.config.suspect_after + STALL_SLACK))
                && linked_sent
                && control_plane_whole(&self.config, &host_ip)
            {
                // No fault for longer than a suspicion takes, the control plane whole:
                // no gateway can be missing (issue 18: only a stalled or unreachable
                // gateway may be reported missing).
                self.violation(format!(
                    "{} failed with no fault near: {reply}",
                    op.request("")
                ));
            }
            self.check_reply_loosely(client, &op, &reply);
        }
        if op.effect == Effect::CloseSelf {
            // Reply first, then the optional message, then the end of the connection.
            let deadline = Instant::now() + self.config.op_timeout;
            // Sends of others may still arrive in between: they are pushes like any other.
            let mut closed = false;
            while let Ok(message) = tokio::time::timeout_at(deadline, client.conn.recv()).await {
                let Some((text, at)) = message else {
                    closed = true;
                    break;
                };
                if let Some(reply) = self.on_message(client, &text, at) {
                    self.violation(format!("a reply after the close's reply: {reply}"));
                }
            }
            if !closed {
                self.violation(format!("{} did not close", op.name));
            }
            self.record(format!("closed {}", client.id));
            self.disconnect_self(client);
            return Ok(false);
        }
        Ok(true)
    }

    /// Sends `text` within the op timeout (a write to a crashed host may never finish).
    async fn send_text(&mut self, client: &mut Client, text: &str) -> bool {
        let sending = client.conn.send(text);
        let sent = match tokio::time::timeout(self.config.op_timeout, sending).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                self.record("a send did not finish in time");
                false
            }
        };
        self.take_received(client);
        sent
    }

    /// Handles what the client read while it was writing (pushes, close events) at the
    /// times they arrived; a reply (the gateway may answer before the client's flush
    /// returns) stays for [`Actor::wait_reply`].
    fn take_received(&mut self, client: &mut Client) {
        let mut replies = Vec::new();
        for (text, at) in client.conn.take_received() {
            if self.on_message(client, &text, at).is_some() {
                replies.push((text, at));
            }
        }
        client.conn.put_back(replies);
    }

    /// Every worker had a link to every gateway from `since` to now: no hold or crash
    /// open now, none started or ended since `since`, every gateway shard had authorised
    /// every worker instance at `since` (`linked_then`) and has now.
    fn calm_since(&self, since: Duration, linked_then: bool) -> bool {
        self.quiet_since(since) && linked_then && self.all_linked()
    }

    /// No hold or crash open now, none started or ended since `since`.
    fn quiet_since(&self, since: Duration) -> bool {
        let w = self.world.borrow();
        w.open_faults == 0 && w.last_fault_at.is_none_or(|t| t < since)
    }

    /// Every gateway shard has authorised every instance of every worker host.
    fn all_linked(&self) -> bool {
        let all: Vec<usize> = (0..self.config.workers).collect();
        control_plane_gaps(&self.config, &all, &host_ip)
            .iter()
            .all(|gap| !gap.starts_with("gateway"))
    }

    /// The ungroup of transition `t` may have missed gateways: its members stay possible
    /// members until the audit settles them.
    fn unsettle(&self, t: Option<usize>) {
        if let Some(t) = t {
            self.record("the ungroup may have missed gateways: its members are unsettled");
            self.world.borrow_mut().model.unsettle_ungroup(t);
        }
    }

    /// Sends a message that is no op request and waits for its one answer (the exact
    /// text back, or the digest of bytes that are not UTF-8).
    async fn run_raw(&mut self, client: &mut Client, raw: Raw, exact: bool) -> Result<bool, Lost> {
        self.record(format!(
            "sends {} raw bytes{}",
            raw.bytes.len(),
            if raw.binary_frame { " (binary)" } else { "" }
        ));
        let sending = client.conn.send_bytes(&raw.bytes, raw.binary_frame);
        let sent = tokio::time::timeout(self.config.op_timeout, sending).await;
        self.take_received(client);
        if !matches!(sent, Ok(Ok(()))) {
            self.record("the raw message could not be sent");
            return Err(Lost);
        }
        let deadline = Instant::now() + self.config.op_timeout;
        while client.raw_in.is_empty() {
            let message = tokio::select! {
                biased;
                m = client.conn.recv() => m,
                () = tokio::time::sleep_until(deadline) => {
                    self.record("no answer to a raw message; disconnects");
                    if exact {
                        self.violation(format!("no answer to {} raw bytes", raw.bytes.len()));
                    }
                    self.disconnect_self(client);
                    return Ok(false);
                }
            };
            let Some((text, at)) = message else {
                return Err(Lost);
            };
            if let Some(reply) = self.on_message(client, &text, at) {
                self.violation(format!("a reply while waiting for a raw answer: {reply}"));
            }
        }
        let answer = client.raw_in.remove(0);
        if answer != raw.answer {
            let short = |s: &str| s.chars().take(80).collect::<String>();
            self.violation(format!(
                "{} raw bytes answered with {} bytes {:?}, expected {} bytes {:?}",
                raw.bytes.len(),
                answer.len(),
                short(&answer),
                raw.answer.len(),
                short(&raw.answer)
            ));
        }
        Ok(true)
    }

    /// Under faults a query may miss a gateway, or see a client the model already
    /// dropped (its gateway has not noticed yet): only what can never be is flagged, a
    /// client id that never was.
    ///
    /// A client's own session is exact even under faults: only its own ops change it,
    /// and an op whose reply was lost ended the connection (and the session with it).
    fn check_reply_loosely(&mut self, client: &Client, op: &Op, reply: &Value) {
        let own_session = op.name == "sessionGet"
            || (op.name == "getSession" && op.args["client_id"] == client.id.as_str());
        if own_session {
            self.check_reply(client, op, reply);
            return;
        }
        let lists_ids = matches!(
            op.name.as_str(),
            "getAllClientIdList" | "getClientIdListByGroup" | "getClientIdByUid"
        );
        if reply["ok"] != true || !lists_ids {
            return;
        }
        let unknown: Vec<String> = {
            let w = self.world.borrow();
            reply["result"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|id| !w.model.ever_clients.contains(*id))
                .map(str::to_string)
                .collect()
        };
        if !unknown.is_empty() {
            self.violation(format!("{} lists unknown clients {unknown:?}", op.name));
        }
    }

    /// Compares a reply with what the model predicts (the lock was held: exact).
    fn check_reply(&mut self, client: &Client, op: &Op, reply: &Value) {
        if GC_ONLY.contains(&op.name.as_str()) {
            if reply["ok"] != false {
                self.violation(format!("{} (GatewayClient only) answered {reply}", op.name));
            }
            return;
        }
        if reply["ok"] != true {
            self.violation(format!("{} failed: {reply}", op.request("")));
            return;
        }
        let result = &reply["result"];
        if op.name == "multi" {
            let all_ok = result
                .as_array()
                .is_some_and(|r| r.iter().all(|x| x["ok"] == true));
            if !all_ok {
                self.violation(format!("{} failed: {reply}", op.request("")));
            }
            return;
        }
        let Some((name, args)) = &op.query else {
            return;
        };
        let expected = {
            let w = self.world.borrow();
            let state = w.model.current();
            if name == "sessionGet" {
                match state.clients.get(&client.id) {
                    Some(c) if c.session.is_some() => Some(session_json(&c.session)),
                    Some(_) => Some(Value::Null),
                    None => None,
                }
            } else {
                expect_query(state, name, args)
            }
        };
        if let Some(expected) = expected {
            // Sessions keep PHP's key order (nested maps too): compared as text.
            let ordered = matches!(
                name.as_str(),
                "sessionGet" | "getSession" | "getAllClientSessions" | "getClientSessionsByGroup"
            );
            let differs = if ordered {
                serde_json::to_string(result).ok() != serde_json::to_string(&expected).ok()
            } else {
                *result != expected
            };
            if differs {
                self.violation(format!(
                    "{name} {args} answered {result}, the model says {expected}"
                ));
            }
        }
    }
}
