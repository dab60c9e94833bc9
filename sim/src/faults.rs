//! Faults, each on its own switch, injected by the run loop between simulation steps at
//! times drawn from the seed, and healed before the final audit.
//!
//! Network partitions are turmoil *holds*: turmoil's `partition` drops TCP segments for
//! good (it simulates no retransmission), which no real TCP connection survives silently;
//! a hold is what a real partition that heals looks like to TCP (everything arrives late,
//! in order). Crashes are real: the host's sockets go away and its peers see the ends.

use std::time::Duration;

use gatewayworker::gateway::SplitMix64;

/// Which faults a run injects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Hold all traffic between two hosts for a while (a partition that heals).
    pub hold: bool,
    /// Crash a gateway host and restart it: its clients are lost.
    pub crash_gateway: bool,
    /// Crash a worker host and restart it.
    pub crash_worker: bool,
    /// Hot reload of a worker host's wasm module (the same probe) mid-run.
    pub reload: bool,
    /// Crash the register and restart it.
    pub register_loss: bool,
    /// A client drops its connection right after sending an op.
    pub client_drop: bool,
}

/// The fault names, as `--faults` takes them.
pub const NAMES: &[&str] = &[
    "hold",
    "crash_gateway",
    "crash_worker",
    "reload",
    "register_loss",
    "client_drop",
];

impl Faults {
    /// No fault.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Every fault.
    pub fn all() -> Faults {
        Faults {
            hold: true,
            crash_gateway: true,
            crash_worker: true,
            reload: true,
            register_loss: true,
            client_drop: true,
        }
    }

    /// `none`, `all`, or a comma-separated list of [`NAMES`].
    pub fn parse(text: &str) -> Result<Faults, String> {
        match text {
            "none" => return Ok(Faults::none()),
            "all" => return Ok(Faults::all()),
            _ => {}
        }
        let mut f = Faults::none();
        for name in text.split(',').map(str::trim) {
            match name {
                "hold" => f.hold = true,
                "crash_gateway" => f.crash_gateway = true,
                "crash_worker" => f.crash_worker = true,
                "reload" => f.reload = true,
                "register_loss" => f.register_loss = true,
                "client_drop" => f.client_drop = true,
                other => return Err(format!("unknown fault {other:?}; known: {NAMES:?}")),
            }
        }
        Ok(f)
    }

    /// True when no fault is on.
    pub fn is_none(&self) -> bool {
        *self == Faults::none()
    }

    /// The faults that act on the network or hosts (all but `client_drop`, which
    /// clients inject themselves).
    fn host_kinds(&self) -> Vec<Kind> {
        let mut v = Vec::new();
        if self.hold {
            v.push(Kind::Hold);
        }
        if self.crash_gateway {
            v.push(Kind::CrashGateway);
        }
        if self.crash_worker {
            v.push(Kind::CrashWorker);
        }
        if self.reload {
            v.push(Kind::Reload);
        }
        if self.register_loss {
            v.push(Kind::RegisterLoss);
        }
        v
    }

    /// The comma-separated names of the faults that are on (`none` when none).
    pub fn describe(&self) -> String {
        let on = [
            self.hold,
            self.crash_gateway,
            self.crash_worker,
            self.reload,
            self.register_loss,
            self.client_drop,
        ];
        let names: Vec<&str> = NAMES
            .iter()
            .zip(on)
            .filter(|(_, on)| *on)
            .map(|(n, _)| *n)
            .collect();
        if names.is_empty() {
            "none".into()
        } else if names.len() == NAMES.len() {
            "all".into()
        } else {
            names.join(",")
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hold,
    CrashGateway,
    CrashWorker,
    Reload,
    RegisterLoss,
}

/// One thing the run loop must do to the simulation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hold traffic between two hosts.
    Hold(String, String),
    /// Release it.
    Release(String, String),
    /// Crash a host.
    Crash(String),
    /// Restart a crashed host.
    Bounce(String),
    /// Swap the worker host's module for a fresh compile of the same probe.
    Reload(usize),
    /// Start one more worker host (`wk<n>`), as the control-plane audit does.
    AddWorker(usize),
    /// Stall a gateway host, as a stopped process: all its traffic with every other host
    /// held (the stall probe of the audit).
    Stall(String),
    /// Release a stalled gateway host.
    Unstall(String),
}

/// Shortest and longest time a fault lasts.
const FAULT_TIME_MIN: Duration = Duration::from_millis(200);
/// See [`FAULT_TIME_MIN`].
const FAULT_TIME_MAX: Duration = Duration::from_millis(3000);
/// Longest quiet time between two faults.
const FAULT_GAP_MAX: Duration = Duration::from_millis(4000);

/// The seeded schedule of faults: draws the next fault when the last one healed.
pub struct Schedule {
    rng: SplitMix64,
    kinds: Vec<Kind>,
    gateways: usize,
    workers: usize,
    clients: usize,
    next_at: Duration,
    /// Actions due later (repairs), by time.
    pending: Vec<(Duration, Action)>,
}

impl Schedule {
    /// A schedule for `faults` over a world of `gateways`, `workers` and `clients`,
    /// starting at `from`.
    pub fn new(
        seed: u64,
        faults: Faults,
        (gateways, workers, clients): (usize, usize, usize),
        from: Duration,
    ) -> Schedule {
        Schedule {
            rng: SplitMix64(seed),
            kinds: faults.host_kinds(),
            gateways,
            workers,
            clients,
            next_at: from,
            pending: Vec::new(),
        }
    }

    fn between(&mut self, min: Duration, max: Duration) -> Duration {
        let span = (max - min).as_millis() as u64;
        min + Duration::from_millis(self.rng.below(span + 1))
    }

    fn host(&mut self) -> String {
        let n = 1 + self.gateways + self.workers;
        match self.rng.below(n as u64) as usize {
            0 => "register".into(),
            i if i <= self.gateways => format!("gw{}", i - 1),
            i => format!("wk{}", i - 1 - self.gateways),
        }
    }

    /// The actions due at `now` (faults are only started while `inject` holds).
    pub fn due(&mut self, now: Duration, inject: bool) -> Vec<Action> {
        let mut out = Vec::new();
        self.pending.sort_by_key(|(at, _)| *at);
        while self.pending.first().is_some_and(|(at, _)| *at <= now) {
            out.push(self.pending.remove(0).1);
        }
        if inject && !self.kinds.is_empty() && self.pending.is_empty() && now >= self.next_at {
            let kind = self.kinds[self.rng.below(self.kinds.len() as u64) as usize];
            let lasts = self.between(FAULT_TIME_MIN, FAULT_TIME_MAX);
            let until = now + lasts;
            match kind {
                Kind::Hold => {
                    // One side may be a client: its link to its gateway stalls too.
                    let a = if self.clients > 0 && self.rng.below(4) == 0 {
                        format!("c{}", self.rng.below(self.clients as u64))
                    } else {
                        self.host()
                    };
                    let b = loop {
                        let b = self.host();
                        if b != a {
                            break b;
                        }
                    };
                    out.push(Action::Hold(a.clone(), b.clone()));
                    self.pending.push((until, Action::Release(a, b)));
                }
                Kind::CrashGateway => {
                    let host = format!("gw{}", self.rng.below(self.gateways as u64));
                    out.push(Action::Crash(host.clone()));
                    self.pending.push((until, Action::Bounce(host)));
                }
                Kind::CrashWorker => {
                    let host = format!("wk{}", self.rng.below(self.workers as u64));
                    out.push(Action::Crash(host.clone()));
                    self.pending.push((until, Action::Bounce(host)));
                }
                Kind::RegisterLoss => {
                    out.push(Action::Crash("register".into()));
                    self.pending
                        .push((until, Action::Bounce("register".into())));
                }
                Kind::Reload => {
                    out.push(Action::Reload(self.rng.below(self.workers as u64) as usize));
                }
            }
            self.next_at = until + self.between(Duration::ZERO, FAULT_GAP_MAX);
        }
        out
    }

    /// Everything still to repair, now (before the audit).
    pub fn heal(&mut self) -> Vec<Action> {
        self.pending.sort_by_key(|(at, _)| *at);
        self.pending.drain(..).map(|(_, a)| a).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in NAMES {
            let f = Faults::parse(name).unwrap();
            assert_eq!(f.describe(), *name);
        }
        assert_eq!(Faults::parse("all").unwrap(), Faults::all());
        assert_eq!(Faults::all().describe(), "all");
        assert!(Faults::parse("nope").is_err());
    }

    #[test]
    fn every_fault_is_repaired() {
        let mut s = Schedule::new(3, Faults::all(), (2, 2, 6), Duration::ZERO);
        let mut open = 0i64;
        for ms in 0..60_000 {
            for a in s.due(Duration::from_millis(ms), ms < 50_000) {
                match a {
                    Action::Hold(..) | Action::Crash(_) | Action::Stall(_) => open += 1,
                    Action::Release(..) | Action::Bounce(_) | Action::Unstall(_) => open -= 1,
                    Action::Reload(_) | Action::AddWorker(_) => {}
                }
            }
        }
        open -= s.heal().len() as i64;
        assert_eq!(open, 0);
    }
}
