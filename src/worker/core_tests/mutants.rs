//! Tests for behaviour that mutants surviving `scripts/mutants` showed untested (the list,
//! and why the remaining survivors are equivalent: sim/README.md, Mutation testing).

use super::*;

/// A send to every client, 40 bytes of message.
fn send_to_all() -> ApiCall {
    ApiCall::SendToAll {
        message: PhpValue::Str(Bytes::from(vec![b'x'; 40])),
        client_id_list: None,
        exclude: None,
        raw: false,
    }
}

/// Takes the pending actions without confirming any transmit as written (a driver whose
/// socket stopped taking bytes); returns the transmitted byte counts.
fn take_unconfirmed(h: &mut Harness) -> Vec<(GatewayLinkId, usize)> {
    let mut handed = Vec::new();
    while let Some(a) = h.core.poll_action() {
        if let Action::Transmit { link, bytes } = a {
            handed.push((link, bytes.len()));
        }
    }
    h.core.check_invariants();
    handed
}

/// Bytes handed to the driver and never confirmed written are owed, even with no reply
/// awaited (a send awaits none): a gateway that stops taking them becomes suspect after
/// `suspect_after`, and the confirmation of the write is progress that clears it.
/// (Mutant: `in_flight > 0` replaced by `in_flight < 0` in `Link::owing`.)
#[test]
fn unconfirmed_writes_alone_make_a_silent_gateway_suspect() {
    let mut config = Harness::config();
    config.suspect_after = Some(secs(5.0));
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    h.core.call(h.now, &send_to_all(), None);
    let handed = take_unconfirmed(&mut h);
    assert_eq!(handed.len(), 1, "{handed:?}");
    assert_eq!(handed[0].0, link);
    assert_eq!(
        h.core.poll_timeout(),
        Some(secs(5.0)),
        "the suspect deadline"
    );
    h.advance(secs(4.9));
    assert!(h.core.suspect_gateways().is_empty());
    h.advance(secs(5.0));
    assert_eq!(h.core.suspect_gateways(), vec![gw0()]);
    assert_eq!(h.core.stats().gateways_suspected, 1);
    h.now = secs(6.0);
    h.core.handle_written(h.now, link, handed[0].1);
    assert!(
        h.core.suspect_gateways().is_empty(),
        "a write confirmed is progress"
    );
}

/// Room given back is used up by the held events it releases: room for two releases two of
/// three held events and leaves none, so the next event is held too.
/// (Mutant: `event_room -= 1` replaced by `+= 1` in `set_event_room`.)
#[test]
fn released_held_events_use_up_the_room_given_back() {
    let (mut h, link) = Harness::linked_to_one_gateway(Harness::config());
    h.core.set_event_room(0);
    let mut bytes = BytesMut::new();
    for cid in 1..=3 {
        bytes.extend_from_slice(&event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1));
    }
    h.core.handle_bytes(h.now, link, &bytes);
    assert!(events(&h.drain()).is_empty());
    assert_eq!(h.core.held_events().0, 3);
    h.core.set_event_room(2);
    let ids: Vec<u32> = events(&h.drain())
        .iter()
        .map(|e| e.client.connection_id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(h.core.held_events().0, 1);
    let f = event_frame(gw0(), Command::OnMessage, 4, b"", b"m", 1);
    h.core.handle_bytes(h.now, link, &f);
    assert!(events(&h.drain()).is_empty(), "no room left");
    assert_eq!(h.core.held_events().0, 2);
    h.core.set_event_room(5);
    let ids: Vec<u32> = events(&h.drain())
        .iter()
        .map(|e| e.client.connection_id)
        .collect();
    assert_eq!(ids, vec![3, 4]);
}

/// `connected_gateway_count` counts gateway links whose connection is established (not
/// the register's, not those still connecting), and `has_actions` says whether
/// `poll_action` has something: the driver relies on both.
/// (Mutants: `connected_gateway_count` returning 1, `has_actions` returning true.)
#[test]
fn connected_gateway_count_and_has_actions_follow_links_and_outputs() {
    let mut h = Harness::new(Harness::config());
    assert!(!h.core.has_actions(), "drained");
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    assert!(h.core.has_actions(), "WORKER_CONNECT to the register");
    h.drain();
    assert!(!h.core.has_actions());
    assert_eq!(
        h.core.connected_gateway_count(),
        0,
        "the register is no gateway"
    );
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\",\"10.0.0.5:2901\",\"10.0.0.5:2902\"]}\n",
    );
    let links: Vec<GatewayLinkId> = h
        .drain()
        .iter()
        .filter_map(|a| match a {
            Action::Connect {
                link,
                peer: Peer::Gateway(_),
            } => Some(*link),
            _ => None,
        })
        .collect();
    assert_eq!(links.len(), 3);
    assert_eq!(h.core.connected_gateway_count(), 0, "still connecting");
    for link in &links {
        h.core.handle_connected(h.now, *link);
    }
    assert_eq!(h.core.connected_gateway_count(), 3);
    h.drain();
    h.core.handle_closed(h.now, links[1]);
    assert_eq!(h.core.connected_gateway_count(), 2);
}

/// The link of a gateway no longer listed closes: no reconnect is scheduled for it (no
/// timer, no failure counted), so when the register lists it again it is connected at
/// once, not after a backoff.
/// (Mutant: `listed && retry_at.is_none()` replaced by `||` in `handle_closed`.)
#[test]
fn an_unlisted_gateway_closing_schedules_nothing_and_is_relinked_at_once_when_listed() {
    let mut h = Harness::with_gateways(2);
    let register = h.register.unwrap();
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.advance(secs(3.0));
    h.drain();
    assert_eq!(h.core.gateway_addresses(), &[gw(0)]);
    let ping_at = h.core.poll_timeout();
    h.core.handle_closed(h.now, h.link(gw(1)));
    assert_eq!(h.core.poll_timeout(), ping_at, "no retry timer for gw(1)");
    h.now = secs(3.5);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\",\"10.0.0.5:2901\"]}\n",
    );
    let connects: Vec<Peer> = h
        .drain()
        .into_iter()
        .filter_map(|a| match a {
            Action::Connect { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(connects, vec![Peer::Gateway(gw(1))]);
}

/// A query for one client asks its gateway only: a listed gateway without a link is not
/// counted as missing from it (only a query asking every linked gateway answers for those).
/// (Mutant: `!targets.is_empty() && all asked` replaced by `||` in `execute`.)
#[test]
fn a_one_gateway_query_does_not_count_unlinked_gateways_as_missing() {
    let mut h = Harness::with_gateways(3);
    h.core.handle_closed(h.now, h.link(gw(2)));
    h.drain();
    assert_eq!(
        h.core.gateway_addresses(),
        &[gw(0), gw(1), gw(2)],
        "still listed"
    );
    assert_eq!(h.core.linked_gateways(), vec![gw(0), gw(1)]);
    let call = h.core.call(
        h.now,
        &ApiCall::IsOnline {
            client_id: Bytes::from_static(b"0a0000050b5400000001"),
        },
        None,
    );
    let asked = transmits(&h.drain());
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].0, h.link(gw(0)));
    h.core
        .handle_bytes(h.now, h.link(gw(0)), &reply(&PhpValue::Bool(true)));
    let d = done(&h.drain());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, call);
    assert!(d[0].unanswered.is_empty(), "{:?}", d[0].unanswered);
    assert!(d[0].result.is_ok(), "{:?}", d[0].result);
}
