//! What the simulation sees inside the servers: the drivers call a hook with their core
//! after every input (`after_input` in `GatewayConfig`, `RegisterConfig` and the worker's
//! `DriverConfig`, `None` outside tests). The hooks check each core's invariants and keep
//! the control plane's view for the audit: which gateway addresses and how many workers
//! the register would announce, which workers each gateway shard has authorised.
//!
//! They also keep, with simulated time stamps, what the fault properties need: when the
//! register's view last changed (rejoin times), every counted drop (the explanations a lost
//! message may have) and every change of a worker's suspect gateways.
//!
//! turmoil runs every host on the one thread of [`crate::run`], so the record is a
//! thread-local, reset at the start of each run.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use gatewayworker::gateway::GatewayCore;
use gatewayworker::register::RegisterCore;
use gatewayworker::worker::WorkerCore;

/// Invariant failures kept per run at most (the first ones; the count goes on).
pub const FAILURES_KEPT: usize = 10;

/// The control plane as the cores last showed it.
#[derive(Debug, Default, Clone)]
pub struct Observed {
    /// The register's gateway addresses (what it would announce to workers) and its
    /// registered workers (API callers included), after its last input.
    pub register: Option<(Vec<String>, usize)>,
    /// Per gateway shard (`ip:lan_port`): the keys of its authorised workers
    /// (`<worker ip>:<name>:<index>`), after its last input.
    pub gateways: BTreeMap<String, Vec<String>>,
    /// Invariant checks run.
    pub checks: u64,
    /// Invariant failures: core, message (the first [`FAILURES_KEPT`]).
    pub failures: Vec<String>,
    /// All invariant failures.
    pub failure_count: u64,
    /// When the register's view (announced addresses, worker count) last changed.
    pub register_at: Duration,
    /// When the register's announced addresses last changed.
    pub addresses_at: Duration,
    /// Every counted drop, in order of time.
    pub drops: Vec<CountedDrop>,
    /// Every change of a worker core's suspect gateways: when, the worker key
    /// (`name:index`), the suspect gateway addresses (`ip:lan_port`) after the change.
    pub suspicions: Vec<(Duration, String, Vec<String>)>,
    /// Per core (a gateway shard's `ip:port`, a worker's `name:index`): its drop counters
    /// last seen.
    counters: BTreeMap<String, [u64; 3]>,
    /// Per worker key: its suspect gateways last seen.
    suspect_now: BTreeMap<String, Vec<String>>,
}

/// A drop counter that moved: a message (or frame) given up and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedDrop {
    /// When (simulated time since the start).
    pub at: Duration,
    /// Where: a gateway shard's lan address (`ip:port`) or a worker key (`name:index`).
    pub core: String,
    /// Which counter: `client` (a gateway's client send buffer or handshake queue),
    /// `unencodable` (a message a gateway could not convert for its client),
    /// `gateway_link` (a gateway's worker link queue), `worker_link` (a worker's gateway
    /// link queue), `too_large` (a worker call refused over the package size).
    pub kind: &'static str,
    /// By how much it moved.
    pub count: u64,
}

thread_local! {
    static OBSERVED: RefCell<Observed> = RefCell::new(Observed::default());
}

/// Forgets everything (a new run).
pub fn reset() {
    OBSERVED.with(|o| *o.borrow_mut() = Observed::default());
}

/// A copy of what is observed now.
pub fn snapshot() -> Observed {
    OBSERVED.with(|o| o.borrow().clone())
}

/// Runs `f` on what is observed now (no copy).
pub fn with<T>(f: impl FnOnce(&Observed) -> T) -> T {
    OBSERVED.with(|o| f(&o.borrow()))
}

/// Simulated time now (zero outside a simulation).
fn now() -> Duration {
    if turmoil::in_simulation() {
        turmoil::elapsed()
    } else {
        Duration::ZERO
    }
}

/// Compares `core`'s drop counters with the ones last seen and records the ones that
/// grew (a restarted core counts from zero again: a decrease is no drop).
fn count_drops(o: &mut Observed, core: &str, kinds: [&'static str; 3], now_counts: [u64; 3]) {
    let last = o.counters.get(core).copied().unwrap_or_default();
    if last == now_counts {
        return;
    }
    for i in 0..3 {
        if now_counts[i] > last[i] {
            o.drops.push(CountedDrop {
                at: now(),
                core: core.to_string(),
                kind: kinds[i],
                count: now_counts[i] - last[i],
            });
        }
    }
    o.counters.insert(core.to_string(), now_counts);
}

/// Takes the invariant record out (the end of a run): checks, failure count, failures.
pub fn take_failures() -> (u64, u64, Vec<String>) {
    OBSERVED.with(|o| {
        let mut o = o.borrow_mut();
        (o.checks, o.failure_count, std::mem::take(&mut o.failures))
    })
}

/// Runs one core's `check_invariants`; a panic is recorded, not propagated (the driver
/// would contain it as a connection's failure and the run would never know).
fn check(core: &str, f: impl FnOnce()) {
    let result = std::panic::catch_unwind(AssertUnwindSafe(f));
    OBSERVED.with(|o| {
        let mut o = o.borrow_mut();
        o.checks += 1;
        if let Err(panic) = result {
            o.failure_count += 1;
            if o.failures.len() < FAILURES_KEPT {
                let text = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                o.failures.push(format!("{core}: invariant broken: {text}"));
            }
        }
    });
}

/// The register's hook.
pub fn register_after_input(core: &RegisterCore) {
    check("register", || core.check_invariants());
    let view = (core.addresses(), core.workers().len());
    OBSERVED.with(|o| {
        let mut o = o.borrow_mut();
        if o.register.as_ref() != Some(&view) {
            if o.register.as_ref().map(|(a, _)| a) != Some(&view.0) {
                o.addresses_at = now();
            }
            o.register_at = now();
            o.register = Some(view);
        }
    });
}

/// A gateway shard's hook.
pub fn gateway_after_input(core: &GatewayCore) {
    let config = core.config();
    let shard = format!("{}:{}", config.lan_ip, config.lan_port);
    check(&format!("gateway {shard}"), || core.check_invariants());
    OBSERVED.with(|o| {
        let mut o = o.borrow_mut();
        let routes = core.routes();
        let same = o.gateways.get(&shard).is_some_and(|keys| {
            keys.len() == routes.len()
                && keys
                    .iter()
                    .zip(routes)
                    .all(|(k, r)| k.as_bytes() == &r.key[..])
        });
        if !same {
            let keys = routes
                .iter()
                .map(|r| String::from_utf8_lossy(&r.key).into_owned())
                .collect();
            o.gateways.insert(shard.clone(), keys);
        }
        let stats = core.stats();
        count_drops(
            &mut o,
            &shard,
            ["client", "unencodable", "gateway_link"],
            [
                stats.client_messages_dropped,
                stats.client_messages_unencodable,
                stats.link_frames_dropped,
            ],
        );
    });
}

/// A worker instance's hook.
pub fn worker_after_input(core: &WorkerCore) {
    check("worker", || {
        core.check_invariants();
        // And across the public accessors: established gateway links are linked gateways.
        let linked = core.linked_gateways().len();
        let connected = core.connected_gateway_count();
        assert!(
            connected <= linked,
            "{connected} established gateway links, {linked} linked gateways"
        );
    });
    let config = core.config();
    let key = format!("{}:{}", config.name, config.index);
    let stats = core.stats();
    let counts = [stats.frames_dropped, stats.frames_too_large, 0];
    let suspect = core.suspect_gateways();
    OBSERVED.with(|o| {
        let mut o = o.borrow_mut();
        count_drops(&mut o, &key, ["worker_link", "too_large", "-"], counts);
        let same = o.suspect_now.get(&key).is_some_and(|last| {
            last.len() == suspect.len()
                && last.iter().zip(&suspect).all(|(a, b)| *a == b.to_string())
        }) || (suspect.is_empty() && !o.suspect_now.contains_key(&key));
        if !same {
            let addresses: Vec<String> = suspect.iter().map(|a| a.to_string()).collect();
            o.suspicions.push((now(), key.clone(), addresses.clone()));
            o.suspect_now.insert(key, addresses);
        }
    });
}

/// A host crashed: what its cores showed is gone with them (a restarted core shows
/// itself again after its first input).
pub fn forget_host(name: &str, ip: std::net::IpAddr) {
    OBSERVED.with(|o| {
        let mut o = o.borrow_mut();
        if name == "register" {
            o.register = None;
        }
        let prefix = format!("{ip}:");
        o.gateways.retain(|shard, _| !shard.starts_with(&prefix));
    });
}
