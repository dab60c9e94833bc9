//! Heartbeat, worker pings, register connections and lines, handshake timeouts.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::protocol::frame::Command;

#[test]
fn websocket_pings_do_not_reset_the_heartbeat_quirk_15() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_not_response_limit = 1;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    let mut destroyed_at = None;
    for tick in 1..=6 {
        let pong = gw.client_sends(a, &ws_client_frame(9, b"p"));
        if destroyed_at.is_none() {
            assert_eq!(
                client_bytes(&pong, a),
                vec![Bytes::from_static(&[0x8a, 1, b'p'])]
            );
            assert!(link_frames(&pong, w).is_empty(), "pings are not forwarded");
        }
        let actions = gw.advance(Duration::from_secs(5));
        if !closes(&actions).is_empty() {
            destroyed_at = Some(tick);
        }
    }
    assert_eq!(
        destroyed_at,
        Some(4),
        "destroyed on the (2L+2)-th tick despite pings"
    );
}

#[test]
fn a_late_timeout_runs_one_heartbeat_tick_and_skips_the_missed_ones() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_not_response_limit = 1;
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    let start = gw.now;
    gw.client("203.0.113.7:5000");
    let actions = gw.advance(Duration::from_secs(100));
    assert!(closes(&actions).is_empty(), "one tick, not twenty");
    assert_eq!(gw.core.snapshot().clients[0].ping_count, 0);
    // The grid is kept: the next tick is at start + 105 s.
    assert_eq!(
        gw.core.poll_timeout(),
        Some(start + Duration::from_secs(105))
    );
}

#[test]
fn spurious_timeouts_do_nothing() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_data = Bytes::from_static(b"p");
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    gw.client("203.0.113.7:5000");
    let due = gw.core.poll_timeout().unwrap();
    gw.now = due - Duration::from_millis(1);
    gw.core.handle_timeout(gw.now);
    assert!(gw.drain().is_empty());
    gw.core.handle_timeout(gw.now);
    assert!(gw.drain().is_empty());
}

#[test]
fn workers_get_ping_every_25_s_unless_lan_ip_is_localhost() {
    let (mut gw, w) = Gw::with_worker();
    let api = gw.link("10.0.0.50:1");
    assert!(gw.advance(Duration::from_secs(24)).is_empty());
    let actions = gw.advance(Duration::from_secs(1));
    let frames = link_frames(&actions, w);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].cmd, frames[0].flag, &frames[0].body[..]),
        (201, S, &b""[..])
    );
    assert!(
        link_frames(&actions, api).is_empty(),
        "API links are not pinged"
    );
    let mut c = config();
    c.lan_ip = "127.0.0.1".parse().unwrap();
    let mut gw = Gw::new(c);
    gw.worker("127.0.0.1:40000", "BW:0");
    assert!(gw.advance(Duration::from_secs(60)).is_empty());
    assert_eq!(gw.core.poll_timeout(), None);
}

#[test]
fn register_gets_a_hand_concatenated_gateway_connect_on_every_connection_pings_and_reconnects_quirk_16(
) {
    let mut c = config();
    c.secret_key = Bytes::from_static(b"k");
    c.register_addresses = vec!["10.0.0.1:1236".into(), "127.0.0.1:1236".into()];
    let mut gw = Gw::new(c);
    let first = gw.drain();
    assert_eq!(
        first,
        vec![
            Action::ConnectRegister { index: 0 },
            Action::ConnectRegister { index: 1 }
        ]
    );
    let line = Bytes::from_static(
        b"{\"event\":\"gateway_connect\", \"address\":\"10.0.0.5:2900\", \"secret_key\":\"k\"}\n",
    );
    gw.core.handle_register_connected(gw.now, 0);
    gw.core.handle_register_connected(gw.now, 1);
    assert_eq!(
        gw.drain(),
        vec![
            Action::Transmit {
                to: Target::Register(0),
                bytes: line.clone()
            },
            Action::Transmit {
                to: Target::Register(1),
                bytes: line.clone()
            },
        ]
    );
    // Only the non-local register is pinged (the 25 s worker ping has nobody to go to).
    let actions = gw.advance(Duration::from_secs(25));
    assert_eq!(
        actions,
        vec![Action::Transmit {
            to: Target::Register(0),
            bytes: Bytes::from_static(b"{\"event\":\"ping\"}\n")
        }]
    );
    // Retried within `register_retry_interval` (500 ms), not before half of it.
    gw.core.handle_register_closed(gw.now, 0);
    assert!(gw.advance(Duration::from_millis(249)).is_empty());
    assert_eq!(
        gw.advance(Duration::from_millis(251)),
        vec![Action::ConnectRegister { index: 0 }]
    );
    gw.core.handle_register_connected(gw.now, 0);
    assert_eq!(
        gw.drain(),
        vec![Action::Transmit {
            to: Target::Register(0),
            bytes: line
        }]
    );
}

#[test]
fn register_lines_may_be_split_anywhere_and_one_over_the_bound_closes_the_connection() {
    use crate::protocol::register::FROM_REGISTER_LINE_MAX;
    let mut c = config();
    c.register_addresses = vec!["10.0.0.1:1236".into()];
    let mut gw = Gw::new(c);
    gw.drain();
    gw.core.handle_register_connected(gw.now, 0);
    gw.drain();
    // A line of exactly the bound (`\n` included), in pieces: read, nothing to do.
    let mut line = vec![b'x'; FROM_REGISTER_LINE_MAX - 1];
    line.push(b'\n');
    for piece in line.chunks(100_000) {
        gw.core.handle_register_bytes(gw.now, 0, piece);
        assert!(gw.drain().is_empty());
    }
    // One byte more without a `\n`: the connection is closed, later input ignored.
    for piece in vec![b'y'; FROM_REGISTER_LINE_MAX].chunks(100_000) {
        gw.core.handle_register_bytes(gw.now, 0, piece);
    }
    assert_eq!(
        gw.drain(),
        vec![Action::CloseRegister {
            index: 0,
            reason: CloseReason::RegisterLineTooLong
        }]
    );
    gw.core
        .handle_register_bytes(gw.now, 0, &[b'z'; FROM_REGISTER_LINE_MAX]);
    assert!(gw.drain().is_empty());
    // The driver's close report schedules the reconnect; the new connection starts clean.
    gw.core.handle_register_closed(gw.now, 0);
    assert_eq!(
        gw.advance(Duration::from_millis(500)),
        vec![Action::ConnectRegister { index: 0 }]
    );
    gw.core.handle_register_connected(gw.now, 0);
    gw.drain();
    gw.core
        .handle_register_bytes(gw.now, 0, &vec![b'w'; FROM_REGISTER_LINE_MAX - 1]);
    assert!(gw.drain().is_empty());
}

/// A websocket client that does not finish its handshake within `handshake_timeout` is
/// destroyed (ON_CLOSE follows); one that finished in time is not, and the deadline of a
/// connection id reused by a later client does not touch the newcomer.
#[test]
fn unfinished_websocket_handshake_is_destroyed_at_the_timeout() {
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_secs(10);
    let mut gw = Gw::new(cfg);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let slow = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:50000".parse().unwrap())
        .unwrap();
    gw.drain();
    gw.client_sends(slow, b"GET / HTTP/1.1\r\nHost: x\r\n");
    let done = gw.client("203.0.113.8:50001");
    assert_eq!(
        gw.core.poll_timeout(),
        Some(gw.now + Duration::from_secs(10))
    );

    assert!(closes(&gw.advance(Duration::from_millis(9_999))).is_empty());
    let actions = gw.advance(Duration::from_millis(1));
    assert_eq!(
        closes(&actions),
        vec![(slow, false, CloseReason::HandshakeTimeout)]
    );
    let close_events: Vec<_> = link_frames(&actions, w)
        .into_iter()
        .filter(|f| f.cmd == Command::OnClose as u8)
        .collect();
    assert_eq!(close_events.len(), 1);
    assert_eq!(close_events[0].cid, slow.0);
    assert!(
        gw.core.clients.contains(done.0),
        "a finished handshake is not timed out"
    );
    assert!(closes(&gw.advance(Duration::from_secs(60))).is_empty());
}

/// `handshake_timeout` zero turns the limit off; text and frame clients never have one.
#[test]
fn handshake_timeout_zero_or_non_websocket_never_expires() {
    let mut cfg = config();
    cfg.handshake_timeout = Duration::ZERO;
    let mut gw = Gw::new(cfg);
    gw.worker("10.0.0.9:40000", "BW:0");
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:50000".parse().unwrap())
        .unwrap();
    gw.drain();
    // Only the worker keep-alive (lan IP is not 127.0.0.1) is scheduled.
    assert_eq!(gw.core.poll_timeout(), Some(gw.now + LINK_PING_INTERVAL));
    assert!(closes(&gw.advance(Duration::from_secs(3600))).is_empty());
    assert!(gw.core.clients.contains(id.0));

    let mut cfg = config();
    cfg.protocol = PublicProtocol::Text;
    let mut gw = Gw::new(cfg);
    gw.worker("10.0.0.9:40000", "BW:0");
    let id = gw.client("203.0.113.7:50000");
    assert!(closes(&gw.advance(Duration::from_secs(3600))).is_empty());
    assert!(gw.core.clients.contains(id.0));
}

/// Issue 18 item 5: a lost register is retried at a steady, jittered interval (never
/// backing off), so the gateway re-announces itself within `register_retry_interval`
/// of the register's return; while it cannot, one warning at once, then at most one per
/// `register_warn_interval`.
#[test]
fn register_retries_are_steady_jittered_and_warn_at_a_bounded_rate() {
    let schedule = |seed: u64| {
        let mut c = config();
        c.register_addresses = vec!["10.0.0.1:1236".into()];
        c.jitter_seed = seed;
        c.lan_ip = std::net::Ipv4Addr::LOCALHOST; // no worker pings: only the retry timer
        let interval = c.register_retry_interval;
        let mut gw = Gw::new(c);
        gw.drain();
        gw.core.handle_register_connected(gw.now, 0);
        gw.drain();
        let start = gw.now;
        gw.core.handle_register_closed(gw.now, 0);
        let mut delays = Vec::new();
        // 95 s of refused attempts.
        while gw.now - start < Duration::from_secs(95) {
            let at = gw.core.poll_timeout().expect("a retry is scheduled");
            let delay = at - gw.now;
            assert!(delay >= interval / 2 && delay <= interval, "{delay:?}");
            delays.push(delay);
            let actions = gw.advance(delay);
            assert_eq!(actions, vec![Action::ConnectRegister { index: 0 }]);
            gw.core.handle_register_closed(gw.now, 0);
        }
        // Back: the next attempt connects, at most one interval later.
        let at = gw.core.poll_timeout().unwrap();
        assert!(at - gw.now <= interval);
        gw.advance(at - gw.now);
        gw.core.handle_register_connected(gw.now, 0);
        delays
    };
    let (delays, logs) = crate::worker::core::fault_tests::capture_logs(|| schedule(3));
    assert!(delays.len() > 190, "{}", delays.len());
    assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
    assert_eq!(delays, schedule(3), "reproducible from the seed");
    assert_ne!(delays, schedule(4));
    let warnings = logs
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("cannot reach the register"))
        .count();
    // At 0 s, 30 s, 60 s, 90 s.
    assert_eq!(warnings, 4, "{logs:#?}");
    assert_eq!(
        logs.iter()
            .filter(|l| l.contains("register reachable again"))
            .count(),
        1
    );
}

/// A register lost after `REGISTER_STABLE_AFTER` (5 s) up starts a new outage, warned
/// about at once even within `register_warn_interval`; one that flaps (lost after 1 s)
/// stays within the rate limit (a swapped test would warn twice for the flaps, not for
/// the stable loss).
#[test]
fn a_register_lost_after_a_stable_connection_warns_at_once_a_flapping_one_does_not() {
    let run = || {
        let mut c = config();
        c.register_addresses = vec!["10.0.0.1:1236".into()];
        c.lan_ip = std::net::Ipv4Addr::LOCALHOST;
        let mut gw = Gw::new(c);
        gw.drain();
        gw.core.handle_register_connected(gw.now, 0);
        gw.core.handle_register_closed(gw.now, 0); // warns (the first loss)
        let up_for = |gw: &mut Gw, secs: u64| {
            gw.now += Duration::from_secs(1);
            gw.core.handle_register_connected(gw.now, 0);
            gw.now += Duration::from_secs(secs);
            gw.core.handle_register_closed(gw.now, 0);
            gw.drain();
        };
        up_for(&mut gw, 10); // stable: warns at once, 11 s after the first warning
        up_for(&mut gw, 1); // flapping: 2 s after the last warning, quiet
        up_for(&mut gw, 1); // and again
    };
    let ((), logs) = crate::worker::core::fault_tests::capture_logs(run);
    let warnings = logs
        .iter()
        .filter(|l| l.contains("WARN") && l.contains("cannot reach the register"))
        .count();
    assert_eq!(warnings, 2, "{logs:#?}");
}

/// Without `ping_not_response_limit` the heartbeat only pings, and on every tick of the
/// full interval after the first (with a limit, the ticks are half an interval apart and
/// every other one pings).
#[test]
fn without_a_response_limit_every_heartbeat_tick_pings_and_nobody_is_closed() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_data = Bytes::from_static(b"p");
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    for tick in 1..=5 {
        let actions = gw.advance(Duration::from_secs(10));
        // The count starts at PHP's -1: the first tick after the connect only counts.
        let pings = usize::from(tick > 1);
        assert_eq!(
            client_bytes(&actions, a).len(),
            pings,
            "tick {tick}: {actions:?}"
        );
        assert!(closes(&actions).is_empty());
    }
}

/// A grid so fine that the ticks missed by a late timeout overflow the count (a 1 ns
/// heartbeat, 10 s late): the next tick is one period after now, never behind it.
#[test]
fn a_tick_grid_too_fine_to_count_resumes_one_period_after_now() {
    let mut c = config();
    c.ping_interval = Duration::from_nanos(1);
    let mut gw = Gw::new(c);
    gw.advance(Duration::from_secs(10));
    assert_eq!(
        gw.core.poll_timeout(),
        Some(gw.now + Duration::from_nanos(1))
    );
}
