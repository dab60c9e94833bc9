//! `WorkerCore` under faults (issue 18), driven with a fake clock: register outages
//! (steady jittered retries, bounded warnings), drop logging, suspect gateways.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::*;

/// Local: no register pings in the way of the timers.
const REGISTER: &str = "127.0.0.1:1236";

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
    c.suspect_after = Some(ms(1_000));
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
}

/// A register lost after a stable connection starts a new outage, told at once; one that
/// flaps (accepts, then closes at once) stays within the rate limit.
#[test]
fn a_new_outage_after_a_stable_connection_warns_at_once_a_flapping_register_does_not() {
    let count = |logs: &[String]| {
        logs.iter()
            .filter(|l| l.contains("cannot reach the register"))
            .count()
    };
    let mut core = WorkerCore::new(config(1), Duration::ZERO);
    let (_, logs) = capture_logs(|| {
        // Outage at 1 s (warned), back within 2.3 s.
        outage(&mut core, 2, ms(2_300));
        let link = core
            .links
            .iter()
            .find(|(_, l)| matches!(l.peer, LinkPeer::Register(_)))
            .map(|(id, _)| *id)
            .unwrap();
        // Flapping: closed 1 s later, then 20 connections that each last 100 ms.
        let mut now = core.last_now + ms(1_000);
        core.handle_closed(now, link);
        for _ in 0..20 {
            now = core.poll_timeout().unwrap();
            core.handle_timeout(now);
            let link = register_connect(&drain(&mut core)).unwrap();
            core.handle_connected(now, link);
            now += ms(100);
            core.handle_closed(now, link);
        }
    });
    assert_eq!(count(&logs), 1, "flapping within 30 s: {logs:#?}");
    let (_, logs) = capture_logs(|| {
        let mut now = core.poll_timeout().unwrap();
        core.handle_timeout(now);
        let link = register_connect(&drain(&mut core)).unwrap();
        core.handle_connected(now, link);
        // Up for 6 s (stable), then lost: warned at once.
        now += ms(6_000);
        core.handle_closed(now, link);
    });
    assert_eq!(count(&logs), 1, "{logs:#?}");
}

// ---- suspect gateways (issue 18 item 1) ------------------------------------------------

/// A core whose register announced `n` gateways, all connected; transmits are confirmed
/// written at once (a stalled gateway's kernel buffers still take a query).
struct Cluster {
    core: WorkerCore,
    now: Duration,
    links: Vec<GatewayLinkId>,
}

impl Cluster {
    fn new(n: u8, config: WorkerConfig) -> Cluster {
        let mut core = WorkerCore::new(config, Duration::ZERO);
        let register = register_connect(&drain(&mut core)).unwrap();
        core.handle_connected(Duration::ZERO, register);
        let list: Vec<String> = (0..n).map(|i| format!("\"{}\"", gw(i))).collect();
        let line = format!(
            "{{\"event\":\"broadcast_addresses\",\"addresses\":[{}]}}\n",
            list.join(",")
        );
        core.handle_bytes(Duration::ZERO, register, line.as_bytes());
        let mut links = Vec::new();
        for a in drain(&mut core) {
            if let Action::Connect {
                link,
                peer: Peer::Gateway(_),
            } = a
            {
                links.push(link);
            }
        }
        let mut c = Cluster {
            core,
            now: Duration::ZERO,
            links,
        };
        for link in c.links.clone() {
            c.core.handle_connected(c.now, link);
        }
        c.drain();
        c
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.core.poll_action() {
            if let Action::Transmit { link, bytes } = &a {
                self.core.handle_written(self.now, *link, bytes.len());
            }
            out.push(a);
        }
        out
    }

    /// Advances the clock to `to`, firing every timer due on the way, in order.
    fn advance(&mut self, to: Duration) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(at) = self.core.poll_timeout().filter(|t| *t <= to) {
            self.now = self.now.max(at);
            self.core.handle_timeout(self.now);
            out.extend(self.drain());
        }
        self.now = to;
        out
    }

    fn query(&mut self) -> (CallId, Vec<GatewayLinkId>) {
        let id = self.core.call(self.now, &ApiCall::GetAllClientCount, None);
        let asked = self
            .drain()
            .iter()
            .filter_map(|a| match a {
                Action::Transmit { link, .. } => Some(*link),
                _ => None,
            })
            .collect();
        (id, asked)
    }

    fn reply(&mut self, gateway: usize, count: i64) -> Vec<Action> {
        let payload = crate::protocol::php::serialize::serialize(&PhpValue::Int(count));
        let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
        bytes.extend_from_slice(&payload);
        self.core
            .handle_bytes(self.now, self.links[gateway], &bytes);
        self.drain()
    }
}

fn dones(actions: &[Action]) -> Vec<CallDone> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CallDone(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

/// Issue 18 item 1: a gateway that stops answering is suspect after `suspect_after` (1 s,
/// well under the 5 s query timeout): the query waiting on it answers then, naming it
/// missing; later queries do not wait for it at all; when it moves again it is healthy
/// again, its late replies are discarded and queries get both answers.
#[test]
fn a_stalled_gateway_is_suspect_after_suspect_after_and_queries_stop_waiting_for_it() {
    let config = config(1);
    let (suspect_after, timeout) = (config.suspect_after.unwrap(), config.query_timeout);
    assert!(suspect_after * 2 <= timeout);
    let mut c = Cluster::new(2, config);
    let (first, asked) = c.query();
    assert_eq!(asked, c.links);
    c.now = ms(10);
    assert!(dones(&c.reply(0, 3)).is_empty(), "gateway 1 still owes");
    // Gateway 1 is silent: the query finishes at the suspect time, not the timeout.
    assert_eq!(c.core.poll_timeout(), Some(suspect_after));
    let actions = c.advance(suspect_after);
    let d = dones(&actions);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, first);
    assert_eq!(d[0].result, Err(ApiError::Timeout { missing: 1 }));
    assert_eq!(d[0].unanswered, vec![gw(1)]);
    assert_eq!(c.core.suspect_gateways(), vec![gw(1)]);
    assert_eq!(c.core.stats().gateways_suspected, 1);

    // The next query asks only gateway 0 and completes with its reply, naming gateway 1.
    c.advance(ms(1_500));
    let (second, asked) = c.query();
    assert_eq!(asked, vec![c.links[0]]);
    let d = dones(&c.reply(0, 4));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, second);
    assert_eq!(d[0].unanswered, vec![gw(1)]);
    assert_eq!(c.core.stats().query_parts_suspect, 1);
    assert_eq!(c.core.poll_timeout(), None, "nothing is waited for");

    // Gateway 1 resumes: its late reply to the first query is matched and discarded.
    c.now = ms(3_000);
    assert!(dones(&c.reply(1, 99)).is_empty());
    assert!(c.core.suspect_gateways().is_empty());
    let (third, asked) = c.query();
    assert_eq!(asked, c.links);
    c.reply(0, 5);
    let d = dones(&c.reply(1, 6));
    assert_eq!(d[0].id, third);
    assert_eq!(d[0].result, Ok(PhpValue::Int(11)));
    assert!(d[0].unanswered.is_empty());
}

/// A stopped gateway's kernel keeps taking our writes (its socket buffers): sends to its
/// clients every 200 ms are confirmed written, yet it answers nothing. Writes are no sign
/// of life while a reply is awaited: it is suspect `suspect_after` after the query was
/// queued, and stays suspect while it takes writes; a byte read clears it.
#[test]
fn a_stalled_gateway_that_still_takes_our_writes_is_suspect_after_suspect_after() {
    let config = config(1);
    let suspect_after = config.suspect_after.unwrap();
    let mut c = Cluster::new(2, config);
    let send = ApiCall::SendToAll {
        message: PhpValue::str("m"),
        client_id_list: None,
        exclude: None,
        raw: false,
    };
    let (first, _) = c.query();
    c.reply(0, 3);
    let mut done = Vec::new();
    for step in 1..=10u64 {
        done.extend(dones(&c.advance(ms(200 * step))));
        c.core.call(c.now, &send, None);
        let written = c.drain();
        assert!(
            written
                .iter()
                .any(|a| matches!(a, Action::Transmit { link, .. } if *link == c.links[1])),
            "the send goes to gateway 1 too"
        );
        if c.now < suspect_after {
            assert!(c.core.suspect_gateways().is_empty(), "at {:?}", c.now);
        }
    }
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].id, first);
    assert_eq!(done[0].unanswered, vec![gw(1)]);
    assert_eq!(
        c.core.suspect_gateways(),
        vec![gw(1)],
        "writes did not clear it"
    );
    // Its late reply is read: healthy again.
    c.reply(1, 7);
    assert!(c.core.suspect_gateways().is_empty());
}

/// A healthy gateway behind a backlog: a query queued behind 1 MB of sends whose writes
/// are confirmed 100 KB every 300 ms (3 s in all, three times `suspect_after`) waits while
/// its request is on its way out (the bytes moving are the sign of life then); the reply
/// that comes 400 ms after the request is out completes it with the gateway's answer.
#[test]
fn a_query_behind_a_slowly_written_backlog_does_not_make_a_healthy_gateway_suspect() {
    let mut c = Cluster::new(1, config(1));
    let link = c.links[0];
    let mut unconfirmed = 0usize;
    // Takes the actions; the transmits are handed to a socket that confirms them later.
    fn take(core: &mut WorkerCore, unconfirmed: &mut usize) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = core.poll_action() {
            if let Action::Transmit { bytes, .. } = &a {
                *unconfirmed += bytes.len();
            }
            out.push(a);
        }
        core.check_invariants();
        out
    }
    for _ in 0..16 {
        let send = ApiCall::SendToAll {
            message: PhpValue::str(&"x".repeat(64 * 1024)),
            client_id_list: None,
            exclude: None,
            raw: false,
        };
        c.core.call(c.now, &send, None);
        take(&mut c.core, &mut unconfirmed);
    }
    let id = c.core.call(c.now, &ApiCall::GetAllClientCount, None);
    let mut done = dones(&take(&mut c.core, &mut unconfirmed));
    let mut written_at = None;
    for step in 1..=20u64 {
        c.now = ms(300 * step);
        c.core.handle_timeout(c.now);
        done.extend(dones(&take(&mut c.core, &mut unconfirmed)));
        let n = unconfirmed.min(100_000);
        unconfirmed -= n;
        c.core.handle_written(c.now, link, n);
        done.extend(dones(&take(&mut c.core, &mut unconfirmed)));
        assert!(c.core.suspect_gateways().is_empty(), "at {:?}", c.now);
        if unconfirmed == 0 {
            written_at = Some(c.now);
            break;
        }
    }
    let written_at = written_at.expect("the backlog is written within 6 s");
    assert!(written_at >= ms(3_000), "written at {written_at:?}");
    assert!(done.is_empty(), "{done:?}");
    c.now = written_at + ms(400);
    c.core.handle_timeout(c.now);
    let d = dones(&c.reply(0, 5));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].result, Ok(PhpValue::Int(5)));
    assert!(c.core.suspect_gateways().is_empty());
}

/// With the partial policy, the suspect gateway's part is left out at once and the result
/// is the merge of the others.
#[test]
fn with_the_partial_policy_a_suspect_gateway_gives_a_partial_result_at_once() {
    let mut config = config(1);
    config.timeout_policy = TimeoutPolicy::Partial;
    let mut c = Cluster::new(2, config);
    c.query();
    c.reply(0, 3);
    let d = dones(&c.advance(ms(1_000)));
    assert_eq!(d[0].result, Ok(PhpValue::Int(3)));
    assert_eq!(d[0].unanswered, vec![gw(1)]);
}

/// Progress is any byte: a gateway that keeps sending events while a slow reply is on
/// its way is not suspect, nor is an idle gateway that owes nothing.
#[test]
fn a_busy_or_idle_gateway_is_never_suspect() {
    let mut c = Cluster::new(2, config(1));
    assert_eq!(c.advance(ms(60_000)).len(), 0, "idle: nothing happens");
    assert!(c.core.suspect_gateways().is_empty());
    let (id, _) = c.query();
    c.reply(0, 1);
    // Gateway 1 sends a ping frame every 0.5 s for 3 s, then the reply.
    let ping = crate::api::plan::frame_bytes(&crate::api::plan::frame(
        crate::protocol::frame::Command::Ping,
        0,
        bytes::Bytes::new(),
        &PhpValue::str(""),
        0,
    ));
    for step in 1..=6u64 {
        c.advance(c.now + ms(500));
        c.core.handle_bytes(c.now, c.links[1], &ping);
        assert!(c.core.suspect_gateways().is_empty(), "at step {step}");
    }
    let d = dones(&c.reply(1, 2));
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].result, Ok(PhpValue::Int(3)));
}

/// A gateway whose connection attempt hangs (SYN dropped) is suspect after
/// `suspect_after` too: queries do not wait for `connect_timeout`; connecting clears it.
#[test]
fn a_gateway_link_stuck_connecting_is_suspect_until_it_connects() {
    let mut core = WorkerCore::new(config(1), Duration::ZERO);
    let register = register_connect(&drain(&mut core)).unwrap();
    core.handle_connected(Duration::ZERO, register);
    core.handle_bytes(
        Duration::ZERO,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    let link = drain(&mut core)
        .iter()
        .find_map(|a| match a {
            Action::Connect {
                link,
                peer: Peer::Gateway(_),
            } => Some(*link),
            _ => None,
        })
        .unwrap();
    let id = core.call(ms(100), &ApiCall::GetAllClientCount, None);
    drain(&mut core);
    assert_eq!(core.poll_timeout(), Some(ms(1_000)));
    core.handle_timeout(ms(1_000));
    let d = dones(&drain(&mut core));
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].unanswered, vec![gw(0)]);
    core.handle_connected(ms(1_200), link);
    assert!(core.suspect_gateways().is_empty());
}

/// Issue 18 item 3: frames dropped at a full link queue are counted and logged at most
/// once per interval, with the count, never once per frame.
#[test]
fn link_queue_drops_are_logged_at_a_bounded_rate() {
    let mut config = config(1);
    config.link_queue_bytes_max = 300;
    let mut c = Cluster::new(1, config);
    let (_, lines) = capture_logs(|| {
        // The gateway takes nothing: confirmations stop.
        for i in 0..3_000u64 {
            let id = c.core.call(
                c.now,
                &ApiCall::SendToAll {
                    message: PhpValue::str(&"x".repeat(100)),
                    client_id_list: None,
                    exclude: None,
                    raw: false,
                },
                None,
            );
            while let Some(a) = c.core.poll_action() {
                if let Action::CallDone(d) = a {
                    assert_eq!(d.id, id);
                }
            }
            let to = ms(10 * (i + 1));
            while let Some(at) = c.core.poll_timeout().filter(|t| *t <= to) {
                c.core.handle_timeout(at.max(c.now));
                while c.core.poll_action().is_some() {}
            }
            c.now = to;
        }
    });
    let dropped = c.core.stats().frames_dropped;
    assert!(dropped >= 2_990, "{dropped}");
    let lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("messages dropped"))
        .collect();
    // 30 s of drops: at the first, then at 10 s and 20 s (the rest waits for 30 s).
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[0].contains("link_queue: 1 "), "{}", lines[0]);
}
