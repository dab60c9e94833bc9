//! Register and gateway links: connecting, keep-alives, broadcasts, reconnect backoff.

use super::*;

#[test]
fn register_connect_line_and_broadcast_opens_links_with_worker_connect_first() {
    let mut h = Harness::new(Harness::config());
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    let sent = transmits(&h.drain());
    assert_eq!(
        sent,
        vec![(
            register,
            Bytes::from_static(b"{\"event\":\"worker_connect\",\"secret_key\":\"s3cr3t\"}\n")
        )]
    );
    // The object form of a de-duplicated list.
    let line =
        br#"{"event":"broadcast_addresses","addresses":{"0":"10.0.0.5:2900","2":"10.0.0.5:2901"}}"#;
    h.core.handle_bytes(h.now, register, line);
    assert!(
        h.drain().is_empty(),
        "a line is only complete at its newline"
    );
    h.core.handle_bytes(h.now, register, b"\r\n");
    let actions = h.drain();
    let connects: Vec<&Peer> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(connects, vec![&Peer::Gateway(gw(0)), &Peer::Gateway(gw(1))]);
    assert!(
        transmits(&actions).is_empty(),
        "nothing is written before the connection"
    );
    assert_eq!(h.core.gateway_addresses(), &[gw(0), gw(1)]);

    let Action::Connect { link, .. } = actions[0] else {
        unreachable!()
    };
    h.core.handle_connected(h.now, link);
    let sent = transmits(&h.drain());
    let hello = &sent[0].1;
    assert_eq!(cmd_of(hello), 200);
    assert_eq!(
        &hello[28..],
        br#"{"worker_key":"probe:0","secret_key":"s3cr3t"}"#
    );
    assert_eq!(hello[21], 1, "the JSON body is a scalar string");
}

#[test]
fn register_pings_every_25_s_unless_local() {
    let mut h = Harness::new(Harness::config());
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.drain();
    assert_eq!(h.core.poll_timeout(), Some(secs(25.0)));
    h.advance(secs(25.0));
    let sent = transmits(&h.drain());
    assert_eq!(
        sent,
        vec![(register, Bytes::from_static(b"{\"event\":\"ping\"}\n"))]
    );
    assert_eq!(h.core.poll_timeout(), Some(secs(50.0)));

    let local = WorkerConfig::new("w", 1, vec!["127.0.0.1:1236".into()]);
    let mut core = WorkerCore::new(local, Duration::ZERO);
    let Some(Action::Connect { link, .. }) = core.poll_action() else {
        panic!()
    };
    core.handle_connected(Duration::ZERO, link);
    assert_eq!(core.poll_timeout(), None, "no keep-alive towards 127.0.0.1");
}

#[test]
fn closed_link_fails_its_part_at_once_and_reconnects_with_backoff() {
    let mut h = Harness::with_gateways(2);
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, h.link(gw(0)), &reply(&PhpValue::Int(3)));
    h.now = secs(0.5);
    h.core.handle_closed(h.now, h.link(gw(1)));
    let d = done(&h.drain());
    assert_eq!(d[0].result, Err(ApiError::Timeout { missing: 1 }));
    assert_eq!(d[0].unanswered, vec![gw(1)]);

    // 1 s, then doubling up to 4 s while attempts fail.
    let mut at = secs(0.5);
    for delay in [1.0, 2.0, 4.0, 4.0] {
        assert_eq!(h.core.poll_timeout(), Some(at + secs(delay)));
        at += secs(delay);
        h.advance(at);
        let actions = h.drain();
        let Some(Action::Connect { link, peer }) = actions.first() else {
            panic!("expected a reconnect: {actions:?}")
        };
        assert_eq!(peer, &Peer::Gateway(gw(1)));
        h.core.handle_closed(h.now, *link);
    }
    // A link that stays up resets the backoff.
    at += secs(4.0);
    h.advance(at);
    let Some(Action::Connect { link, .. }) = h.drain().first().cloned() else {
        panic!()
    };
    h.core.handle_connected(h.now, link);
    let hello = transmits(&h.drain());
    assert_eq!(
        cmd_of(&hello[0].1),
        200,
        "WORKER_CONNECT again on every connection"
    );
    at += secs(10.0);
    h.now = at;
    h.core.handle_closed(h.now, link);
    let connects = |actions: Vec<Action>| {
        actions
            .into_iter()
            .filter(|a| matches!(a, Action::Connect { .. }))
            .count()
    };
    h.advance(at + secs(0.99));
    assert_eq!(connects(h.drain()), 0);
    h.advance(at + secs(1.0));
    assert_eq!(connects(h.drain()), 1, "back to a 1 s delay");
}

#[test]
fn unlisted_address_is_not_reconnected_and_its_link_is_not_closed() {
    let mut h = Harness::with_gateways(2);
    let register = h.register.unwrap();
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    assert!(h.drain().is_empty(), "no link is closed proactively");
    // Within the grace period the address is kept.
    assert_eq!(h.core.gateway_addresses(), &[gw(0), gw(1)]);
    h.advance(secs(3.0));
    assert_eq!(h.core.gateway_addresses(), &[gw(0)]);
    // Still linked: sends and fan-outs still reach it.
    assert_eq!(h.core.linked_gateways(), vec![gw(0), gw(1)]);
    h.core.handle_closed(h.now, h.link(gw(1)));
    h.advance(secs(10.0));
    assert!(h.drain().is_empty(), "a dropped address is not retried");
    assert_eq!(h.core.linked_gateways(), vec![gw(0)]);
}

#[test]
fn register_loss_keeps_the_last_good_list() {
    let mut h = Harness::with_gateways(3);
    let register = h.register.unwrap();
    // A register shutting down broadcasts shrinking lists, then closes.
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[]}\n",
    );
    h.now = secs(1.0);
    h.core.handle_closed(h.now, register);
    h.advance(secs(10.0));
    assert_eq!(h.core.gateway_addresses(), &[gw(0), gw(1), gw(2)]);
    // It reconnected and says hello again.
    let actions = h.drain();
    let link = actions
        .iter()
        .find_map(|a| match a {
            Action::Connect {
                link,
                peer: Peer::Register(_),
            } => Some(*link),
            _ => None,
        })
        .expect("register reconnect");
    h.core.handle_connected(h.now, link);
    assert_eq!(transmits(&h.drain()).len(), 1);
}

#[test]
fn connection_attempts_time_out_and_are_retried() {
    let mut h = Harness::new(Harness::config());
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    let actions = h.drain();
    let Some(Action::Connect { link, .. }) = actions.last().cloned() else {
        panic!("{actions:?}")
    };
    // Frames and queries wait behind the connection attempt.
    let query = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    assert!(h.drain().is_empty());
    assert_eq!(h.core.poll_timeout(), Some(secs(5.0)));
    h.advance(secs(5.0));
    let actions = h.drain();
    assert_eq!(
        actions[0],
        Action::Close {
            link,
            reason: CloseReason::ConnectTimeout
        }
    );
    let d = done(&actions);
    assert_eq!(d[0].id, query);
    assert_eq!(d[0].unanswered, vec![gw(0)]);
    // A late report of the abandoned link changes nothing.
    h.core.handle_connected(h.now, link);
    h.core.handle_closed(h.now, link);
    assert!(h.drain().is_empty());
    assert_eq!(h.core.poll_timeout(), Some(secs(6.0)));
    h.advance(secs(6.0));
    assert!(matches!(
        h.drain().first(),
        Some(Action::Connect {
            peer: Peer::Gateway(_),
            ..
        })
    ));
}

#[test]
fn register_lines_match_the_vectors() {
    use crate::testing::vectors::{decode_hex, vector};
    let wire = |name: &str| {
        let v = vector("register", name);
        decode_hex(v["expected"]["wire_hex"].as_str().expect("wire_hex")).expect("hex")
    };
    let config = WorkerConfig::new("w", 0, vec![REGISTER.into()]);
    let mut core = WorkerCore::new(config, Duration::ZERO);
    let Some(Action::Connect { link, .. }) = core.poll_action() else {
        panic!()
    };
    core.handle_connected(Duration::ZERO, link);
    let Some(Action::Transmit { bytes, .. }) = core.poll_action() else {
        panic!()
    };
    assert_eq!(bytes.as_ref(), wire("message_worker_connect").as_slice());
    core.handle_written(Duration::ZERO, link, bytes.len());
    core.handle_timeout(secs(25.0));
    let Some(Action::Transmit { bytes, .. }) = core.poll_action() else {
        panic!()
    };
    assert_eq!(bytes.as_ref(), wire("message_ping").as_slice());
}
