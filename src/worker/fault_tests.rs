//! `WorkerCore` under faults (issue 18), driven with a fake clock: register outages
//! (steady jittered retries, bounded warnings), drop logging, suspect gateways.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

const REGISTER: &str = "10.0.0.1:1236";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn gw(i: u8) -> GatewayAddr {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 2900 + u16::from(i))
}

/// Everything logged (any level) while `f` runs on this thread, as text lines.
pub(crate) fn capture_logs<R>(f: impl FnOnce() -> R) -> (R, Vec<String>) {
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let r = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned();
    (r, text.lines().map(str::to_string).collect())
}

fn config(seed: u64) -> WorkerConfig {
    let mut c = WorkerConfig::new("faults", 0, vec![REGISTER.to_string()]);
    c.seed = seed;
    c
}

/// The register connection attempt among `actions`, if any.
fn register_connect(actions: &[Action]) -> Option<GatewayLinkId> {
    actions.iter().find_map(|a| match a {
        Action::Connect {
            link,
            peer: Peer::Register(_),
        } => Some(*link),
        _ => None,
    })
}

fn drain(core: &mut WorkerCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// Runs a register outage: connected at 0, lost at 1 s, `attempts` refused attempts, then
/// the register is back and the next attempt connects. Returns the delays between a
/// failure and the next attempt, and the time from the register's return to the worker's
/// `worker_connect` line being handed to the driver.
fn outage(
    core: &mut WorkerCore,
    attempts: usize,
    back_after: Duration,
) -> (Vec<Duration>, Duration) {
    let mut now = Duration::ZERO;
    let mut link = register_connect(&drain(core)).expect("first attempt at once");
    core.handle_connected(now, link);
    drain(core);
    now = ms(1000);
    core.handle_closed(now, link);
    let lost_at = now;
    let mut delays = Vec::new();
    for _ in 0..attempts {
        let at = core.poll_timeout().expect("a retry is scheduled");
        delays.push(at - now);
        now = at;
        core.handle_timeout(now);
        link = register_connect(&drain(core)).expect("a register attempt when due");
        core.handle_closed(now, link); // connection refused
    }
    // The register is back at `back`: the first attempt after it connects.
    let back = lost_at + back_after;
    assert!(back >= now, "the outage outlasts the attempts");
    loop {
        let at = core.poll_timeout().expect("a retry is scheduled");
        delays.push(at - now);
        now = at;
        core.handle_timeout(now);
        link = register_connect(&drain(core)).expect("a register attempt when due");
        if now >= back {
            break;
        }
        core.handle_closed(now, link);
    }
    core.handle_connected(now, link);
    let hello = drain(core)
        .into_iter()
        .any(|a| matches!(a, Action::Transmit { link: l, .. } if l == link));
    assert!(hello, "worker_connect goes out on the new connection");
    (delays, now - back)
}

/// Issue 18 item 5: after a register loss the worker retries at a steady short interval
/// (never backing off), so it rejoins within one interval (≤ 500 ms by default, so within
/// the 1 s the original achieves) of the register's return, however long the outage; the
/// delays are jittered from the seed passed in, the same seed giving the same schedule.
#[test]
fn register_retries_are_steady_jittered_and_rejoin_within_the_interval() {
    let interval = WorkerConfig::new("x", 0, vec![]).register_retry_interval;
    assert!(interval <= ms(500));
    let mut worst_rejoin = Duration::ZERO;
    for back_after in [ms(2_300), ms(9_100), ms(60_000)] {
        let mut core = WorkerCore::new(config(7), Duration::ZERO);
        let (delays, rejoin) = outage(&mut core, 3, back_after);
        for d in &delays {
            assert!(
                *d >= interval / 2 && *d <= interval,
                "delay {d:?} outside [interval/2, interval]: {delays:?}"
            );
        }
        worst_rejoin = worst_rejoin.max(rejoin);
    }
    assert!(worst_rejoin <= interval, "rejoin after {worst_rejoin:?}");

    // Jitter: the delays vary, are reproducible per seed and differ between seeds (and
    // between instances sharing a seed).
    let schedule = |seed: u64, index: u32| {
        let mut c = config(seed);
        c.index = index;
        let mut core = WorkerCore::new(c, Duration::ZERO);
        outage(&mut core, 20, ms(30_000)).0
    };
    let a = schedule(7, 0);
    assert!(a.iter().any(|d| *d != a[0]), "no jitter: {a:?}");
    assert_eq!(a, schedule(7, 0));
    assert_ne!(a, schedule(8, 0));
    assert_ne!(a, schedule(7, 1));
}

/// Issue 18 item 5: a worker that cannot reach its register warns at once, then at most
/// once per `register_warn_interval`, and says when it is back (one line).
#[test]
fn unreachable_register_warns_once_then_at_a_bounded_rate() {
    let mut core = WorkerCore::new(config(1), Duration::ZERO);
    // A 95 s outage: about 250 refused attempts.
    let ((delays, _), logs) = capture_logs(|| outage(&mut core, 200, ms(95_000)));
    assert!(delays.len() > 200);
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("cannot reach the register"))
        .collect();
    // At 1 s, then every 30 s: 1 s, 31 s, 61 s, 91 s.
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    assert!(warnings[0].contains("lost=true"), "{}", warnings[0]);
    assert!(warnings[3].contains("attempts="), "{}", warnings[3]);
    let back: Vec<&String> = logs
        .iter()
        .filter(|l| l.contains("register reachable again"))
        .collect();
    assert_eq!(back.len(), 1, "{logs:#?}");
    assert_eq!(logs.len(), 5, "nothing else logged: {logs:#?}");
    let _ = gw(0);
}
