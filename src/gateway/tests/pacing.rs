//! Pacing (issue 18 item 2): a worker link is paused while a client it fed is over its
//! high-water mark, resumed when the client drains to its low-water mark, and never
//! paused longer than `link_pause_max` per episode.

use std::collections::BTreeSet;
use std::time::Duration;

use quickcheck::{Arbitrary, Gen, QuickCheck};

use super::*;
use crate::drop_log::DROP_LOG_INTERVAL;
use crate::protocol::frame::Command;

/// 1 000-byte client buffers: high-water 750, low-water 250; episodes of at most 1 s.
fn paced() -> GatewayConfig {
    let mut c = config();
    c.client_pending_max = 1000;
    c.link_pause_max = Duration::from_secs(1);
    c.lan_ip = std::net::Ipv4Addr::LOCALHOST; // no worker pings in the action lists
    c
}

/// A payload whose websocket frame is 404 bytes (4-byte header).
fn body() -> Vec<u8> {
    vec![b'x'; 400]
}

fn pauses(actions: &[Action]) -> Vec<LinkId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::PauseLink { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn resumes(actions: &[Action]) -> Vec<LinkId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ResumeLink { id } => Some(*id),
            _ => None,
        })
        .collect()
}

fn flush(gw: &mut Gw, id: ConnectionId, bytes: usize) -> Vec<Action> {
    gw.core.handle_client_flushed(gw.now, id, bytes);
    gw.drain()
}

/// Gateway with one worker and one websocket client whose writes are not reported.
fn one_client() -> (Gw, LinkId, ConnectionId) {
    let mut gw = Gw::new(paced());
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    gw.auto_flush = false;
    (gw, w, a)
}

#[test]
fn a_link_pauses_at_high_water_and_resumes_at_low_water() {
    let (mut gw, w, a) = one_client();
    assert_eq!(gw.core.pace_high_water(), 750);
    assert_eq!(gw.core.pace_low_water(), 250);
    let first = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    assert!(pauses(&first).is_empty(), "404 pending: under high-water");
    let start = gw.now;
    let second = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    assert_eq!(
        client_bytes(&second, a).len(),
        1,
        "the message itself goes out"
    );
    assert_eq!(pauses(&second), vec![w], "808 pending: the link is paused");
    assert_eq!(gw.core.paused_links(), vec![w]);
    assert_eq!(gw.core.stats().link_pauses, 1);
    // The pause is logged at once (the first in an interval), then the bound is next.
    assert_eq!(gw.core.poll_timeout(), Some(Duration::ZERO));
    assert!(gw.advance(Duration::ZERO).is_empty());
    assert_eq!(gw.core.poll_timeout(), Some(start + Duration::from_secs(1)));

    // Frames already read still execute (the driver stops reading, the core does not
    // refuse input); the link is not paused twice.
    gw.now += Duration::from_millis(100);
    let third = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    assert!(pauses(&third).is_empty());
    assert_eq!(client_bytes(&third, a).len(), 1, "808 < client_pending_max");
    assert_eq!(gw.core.stats().client_messages_dropped, 0);

    gw.now += Duration::from_millis(200);
    let partial = flush(&mut gw, a, 900); // 312 left: over low-water
    assert!(resumes(&partial).is_empty());
    assert_eq!(gw.core.paused_links(), vec![w]);
    let drained = flush(&mut gw, a, 62); // 250 left: at low-water
    assert_eq!(resumes(&drained), vec![w]);
    assert!(gw.core.paused_links().is_empty());
    let stats = gw.core.stats();
    assert_eq!(stats.link_pauses, 1);
    assert_eq!(stats.link_pauses_at_bound, 0);
    assert_eq!(stats.link_paused_micros, 300_000, "paused from 0 to 300 ms");
    assert_eq!(
        gw.core.poll_timeout(),
        Some(gw.now - Duration::from_millis(300) + DROP_LOG_INTERVAL),
        "the next pace log line"
    );
}

#[test]
fn a_pause_ends_at_the_bound_and_the_client_then_drops_and_counts_until_it_drains() {
    let (mut gw, w, a) = one_client();
    gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    let start = gw.now;
    assert_eq!(
        pauses(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &body())),
        vec![w]
    );
    // Nothing before the bound...
    let early = gw.advance(Duration::from_millis(999));
    assert!(resumes(&early).is_empty());
    // ...and at it the link is read again.
    let at_bound = gw.advance(Duration::from_millis(1));
    assert_eq!(resumes(&at_bound), vec![w]);
    assert_eq!(gw.now, start + Duration::from_secs(1));
    let stats = gw.core.stats();
    assert_eq!(stats.link_pauses_at_bound, 1);
    assert_eq!(stats.link_paused_micros, 1_000_000);

    // The slow client now gets the original's policy: queued up to client_pending_max,
    // then dropped and counted; it pauses nothing, however far over high-water it is.
    let mut dropped = 0;
    for _ in 0..5 {
        let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
        assert!(pauses(&actions).is_empty(), "{actions:?}");
        dropped += usize::from(client_bytes(&actions, a).is_empty());
    }
    assert_eq!(dropped, 4, "808 → 1 212 pending, then full");
    assert_eq!(gw.core.stats().client_messages_dropped, 4);
    // Draining part of the way does not make it paced again...
    flush(&mut gw, a, 800); // 412 left
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body()); // 816
    assert!(pauses(&actions).is_empty());
    // ...draining to low-water does: the next crossing starts a new episode.
    flush(&mut gw, a, 600); // 216 left
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body()); // 620
    assert!(pauses(&actions).is_empty());
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body()); // 1 024
    assert_eq!(pauses(&actions), vec![w]);
    assert_eq!(gw.core.stats().link_pauses, 2);
}

/// A broadcast over several clients: the fast one drains, the slow one holds the link
/// until the bound, not longer; the fast one never holds it again meanwhile.
#[test]
fn a_slow_client_holds_the_link_for_the_others_at_most_the_bound() {
    let mut gw = Gw::new(paced());
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let _slow = gw.client("203.0.113.7:5000");
    let fast = gw.client("203.0.113.7:5001");
    gw.auto_flush = false;
    gw.cmd(w, Command::SendToAll, 0, S, b"", &body());
    let actions = gw.cmd(w, Command::SendToAll, 0, S, b"", &body());
    assert_eq!(pauses(&actions), vec![w], "one pause for both holders");
    gw.now += Duration::from_millis(10);
    assert!(
        resumes(&flush(&mut gw, fast, 808)).is_empty(),
        "slow still holds"
    );
    let actions = gw.advance(Duration::from_millis(990));
    assert_eq!(resumes(&actions), vec![w], "at the bound");
    // Another broadcast: the fast client (flushed) is under high-water, the slow one is
    // unpaced: no new pause.
    let actions = gw.cmd(w, Command::SendToAll, 0, S, b"", &body());
    assert!(pauses(&actions).is_empty());
    assert_eq!(client_bytes(&actions, fast).len(), 1);
}

#[test]
fn a_closed_client_releases_its_hold() {
    let (mut gw, w, a) = one_client();
    gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    assert_eq!(
        pauses(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &body())),
        vec![w]
    );
    gw.core.handle_client_closed(gw.now, a);
    assert_eq!(resumes(&gw.drain()), vec![w]);
    assert!(gw.core.paused_links().is_empty());
    assert_eq!(
        gw.core.poll_timeout(),
        Some(Duration::ZERO),
        "no bound left, only the log line"
    );

    // Destroyed by a command of another link: released at once too.
    let b = {
        gw.auto_flush = true;
        let b = gw.client("203.0.113.7:5001");
        gw.auto_flush = false;
        b
    };
    gw.cmd(w, Command::SendToOne, b.0, S, b"", &body());
    gw.cmd(w, Command::SendToOne, b.0, S, b"", &body());
    assert_eq!(gw.core.paused_links(), vec![w]);
    let api = gw.link("10.0.0.10:1");
    let actions = gw.cmd(api, Command::Destroy, b.0, S, b"", b"");
    assert_eq!(resumes(&actions), vec![w]);
}

#[test]
fn a_closing_link_ends_its_pause_and_its_holds() {
    let (mut gw, w, a) = one_client();
    let w2 = gw.worker("10.0.0.9:40001", "BW:1");
    gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
    // The second link feeds the same client over high-water: it is paused too.
    assert_eq!(
        pauses(&gw.cmd(w2, Command::SendToOne, a.0, S, b"", &body())),
        vec![w2]
    );
    assert_eq!(gw.core.paused_links(), vec![w, w2]);
    gw.core.handle_link_closed(gw.now, w);
    let actions = gw.drain();
    assert!(resumes(&actions).is_empty(), "a closed link is not resumed");
    assert_eq!(gw.core.paused_links(), vec![w2]);
    // Draining releases what is left.
    assert_eq!(resumes(&flush(&mut gw, a, 1000)), vec![w2]);
}

#[test]
fn only_messages_from_a_link_pause_it_and_zero_bound_turns_pacing_off() {
    let mut c = paced();
    c.link_pause_max = Duration::ZERO;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    gw.auto_flush = false;
    for _ in 0..4 {
        let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
        assert!(pauses(&actions).is_empty());
    }
    assert_eq!(
        gw.core.stats().client_messages_dropped,
        1,
        "the original's policy"
    );
    assert_eq!(
        gw.core.poll_timeout(),
        Some(Duration::ZERO),
        "the drop log only"
    );

    // With pacing on, bytes the core writes on its own (pongs) pause nothing.
    let (mut gw, _, a) = one_client();
    for _ in 0..8 {
        let actions = gw.client_sends(a, &ws_client_frame(9, &[b'p'; 120]));
        assert!(pauses(&actions).is_empty());
    }
    assert!(gw.core.client_count() == 1 && gw.core.paused_links().is_empty());
}

/// Pause episodes are logged at a bounded rate: a pause every 100 ms for 25 s gives one
/// line at the start and one per 10 s, never one per pause.
#[test]
fn pauses_are_logged_at_a_bounded_rate() {
    let (stats, lines) = crate::worker::core::fault_tests::capture_logs(|| {
        let (mut gw, w, a) = one_client();
        for _ in 0..250 {
            gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
            gw.cmd(w, Command::SendToOne, a.0, S, b"", &body());
            gw.now += Duration::from_millis(50);
            flush(&mut gw, a, 808);
            let at = gw.now + Duration::from_millis(50);
            while let Some(due) = gw.core.poll_timeout().filter(|t| *t <= at) {
                gw.advance(due.saturating_sub(gw.now));
            }
            gw.now = at;
        }
        while let Some(due) = gw.core.poll_timeout() {
            gw.advance(due.saturating_sub(gw.now));
        }
        gw.core.stats()
    });
    let lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("worker links paused"))
        .collect();
    assert_eq!(stats.link_pauses, 250);
    assert_eq!(lines.len(), 4, "{lines:#?}");
    let started: u64 = lines
        .iter()
        .filter_map(|l| l.split("started=").nth(1))
        .map(|r| r.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(started, 250, "every pause is in exactly one line");
}

/// One step of a random pacing workload.
#[derive(Debug, Clone)]
enum Op {
    /// Link `i % 2` sends `size` bytes to client `j % 3`, or to all.
    Send(u8, u8, u8),
    Broadcast(u8, u8),
    /// Client `j % 3` reports `n * 16` bytes flushed.
    Flush(u8, u8),
    CloseClient(u8),
    CloseLink(u8),
    Wait(u8),
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        match u8::arbitrary(g) % 12 {
            0..=3 => Op::Send(u8::arbitrary(g), u8::arbitrary(g), u8::arbitrary(g)),
            4 => Op::Broadcast(u8::arbitrary(g), u8::arbitrary(g)),
            5..=8 => Op::Flush(u8::arbitrary(g), u8::arbitrary(g)),
            9 => Op::CloseClient(u8::arbitrary(g)),
            10 => Op::CloseLink(u8::arbitrary(g)),
            _ => Op::Wait(u8::arbitrary(g)),
        }
    }
}

/// Random sends, flushes, closes and waits: the invariants hold after every input
/// (`Gw::drain`), a driver that follows the Pause/Resume actions believes exactly the
/// core's paused links paused, and no link stays paused past the bound once the timer ran.
#[test]
fn random_pacing_workloads_keep_pauses_consistent_and_bounded() {
    fn prop(ops: Vec<Op>) -> bool {
        let mut gw = Gw::new(paced());
        let mut links = [
            Some(gw.worker("10.0.0.9:40000", "BW:0")),
            Some(gw.worker("10.0.0.9:40001", "BW:1")),
        ];
        let mut clients: Vec<Option<ConnectionId>> = (0..3)
            .map(|i| Some(gw.client(&format!("203.0.113.7:{}", 5000 + i))))
            .collect();
        let mut pending = [0usize; 3];
        gw.auto_flush = false;
        let mut believed: BTreeSet<LinkId> = BTreeSet::new();
        let mut paused_at: std::collections::BTreeMap<LinkId, Duration> = Default::default();
        for op in ops {
            let actions = match op {
                Op::Send(i, j, size) => {
                    match (links[usize::from(i % 2)], clients[usize::from(j % 3)]) {
                        (Some(l), Some(c)) => gw.cmd(
                            l,
                            Command::SendToOne,
                            c.0,
                            S,
                            b"",
                            &vec![b'x'; usize::from(size) * 2],
                        ),
                        _ => continue,
                    }
                }
                Op::Broadcast(i, size) => match links[usize::from(i % 2)] {
                    Some(l) => gw.cmd(
                        l,
                        Command::SendToAll,
                        0,
                        S,
                        b"",
                        &vec![b'y'; usize::from(size)],
                    ),
                    None => continue,
                },
                Op::Flush(j, n) => match clients[usize::from(j % 3)] {
                    Some(c) => {
                        let n = (usize::from(n) * 16).min(pending[usize::from(j % 3)]);
                        flush(&mut gw, c, n)
                    }
                    None => continue,
                },
                Op::CloseClient(j) => match clients[usize::from(j % 3)].take() {
                    Some(c) => {
                        gw.core.handle_client_closed(gw.now, c);
                        gw.drain()
                    }
                    None => continue,
                },
                Op::CloseLink(i) => match links[usize::from(i % 2)].take() {
                    Some(l) => {
                        gw.core.handle_link_closed(gw.now, l);
                        believed.remove(&l);
                        paused_at.remove(&l);
                        gw.drain()
                    }
                    None => continue,
                },
                Op::Wait(ms) => gw.advance(Duration::from_millis(u64::from(ms) * 8)),
            };
            for a in &actions {
                match a {
                    Action::PauseLink { id } => {
                        assert!(believed.insert(*id), "paused twice: {id:?}");
                        paused_at.insert(*id, gw.now);
                    }
                    Action::ResumeLink { id } => {
                        assert!(believed.remove(id), "resumed while not paused: {id:?}");
                        paused_at.remove(id);
                    }
                    Action::Transmit {
                        to: Target::Client(c),
                        bytes,
                    } => {
                        if let Some(j) = clients.iter().position(|x| *x == Some(*c)) {
                            pending[j] += bytes.len();
                        }
                    }
                    _ => {}
                }
            }
            if let Op::Flush(j, n) = op {
                let j = usize::from(j % 3);
                pending[j] -= (usize::from(n) * 16).min(pending[j]);
            }
            let core: BTreeSet<LinkId> = gw.core.paused_links().into_iter().collect();
            assert_eq!(core, believed);
            gw.core.handle_timeout(gw.now);
            let late = gw.drain();
            for a in &late {
                if let Action::ResumeLink { id } = a {
                    believed.remove(id);
                    paused_at.remove(id);
                }
            }
            for at in paused_at.values() {
                assert!(
                    gw.now < *at + Duration::from_secs(1),
                    "paused past the bound"
                );
            }
        }
        true
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Vec<Op>) -> bool);
}
