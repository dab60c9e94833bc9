//! Gateway API calls through the core: fan-out, gathering, timeouts, caller rules.

use super::*;

#[test]
fn query_across_three_gateways_gathers_and_sums() {
    let mut h = Harness::with_gateways(3);
    let id = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let sent = transmits(&h.drain());
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|(_, b)| cmd_of(b) == 24));
    for (i, n) in [(0, 2), (2, 0), (1, 3)] {
        h.core
            .handle_bytes(h.now, h.link(gw(i)), &reply(&PhpValue::Int(n)));
    }
    let finished = done(&h.drain());
    assert_eq!(
        finished,
        vec![CallDone {
            id,
            result: Ok(PhpValue::Int(5)),
            unanswered: vec![]
        }]
    );
}

#[test]
fn select_replies_rebuild_client_ids_from_each_gateway() {
    let mut h = Harness::with_gateways(2);
    let id = h.core.call(h.now, &ApiCall::GetAllClientIdList, None);
    h.drain();
    let row = |uid: PhpValue| map(vec![(PhpKey::from_bytes(b"uid"), uid)]);
    h.core.handle_bytes(
        h.now,
        h.link(gw(1)),
        &reply(&map(vec![(PhpKey::Int(7), row(PhpValue::Null))])),
    );
    h.core.handle_bytes(
        h.now,
        h.link(gw(0)),
        &reply(&map(vec![
            (PhpKey::Int(1), row(PhpValue::str("u1"))),
            (PhpKey::Int(2), row(PhpValue::Null)),
        ])),
    );
    let d = done(&h.drain());
    let ids: Vec<PhpValue> = [
        "0a0000050b5400000001",
        "0a0000050b5400000002",
        "0a0000050b5500000007",
    ]
    .iter()
    .map(|s| PhpValue::str(s))
    .collect();
    let want = map(ids
        .iter()
        .map(|v| (PhpKey::from_bytes(&php_bytes(v)), v.clone()))
        .collect());
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].result, Ok(want), "gateway order, not reply order");
}

#[test]
fn silent_gateway_times_out_without_blocking_other_calls() {
    let mut h = Harness::with_gateways(3);
    let query = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, h.link(gw(0)), &reply(&PhpValue::Int(1)));
    h.core
        .handle_bytes(h.now, h.link(gw(1)), &reply(&PhpValue::Int(1)));
    assert!(
        done(&h.drain()).is_empty(),
        "one gateway still owes a reply"
    );

    // Other calls go on meanwhile.
    let send = h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: Bytes::from_static(b"0a0000050b5400000001"),
            message: PhpValue::str("hi"),
            raw: false,
        },
        None,
    );
    let d = done(&h.drain());
    assert_eq!(d[0].id, send);
    assert_eq!(d[0].result, Ok(PhpValue::Bool(true)));

    assert_eq!(h.core.poll_timeout(), Some(secs(5.0)));
    h.advance(secs(4.9));
    assert!(done(&h.drain()).is_empty());
    h.advance(secs(5.0));
    let d = done(&h.drain());
    assert_eq!(
        d,
        vec![CallDone {
            id: query,
            result: Err(ApiError::Timeout { missing: 1 }),
            unanswered: vec![gw(2)]
        }]
    );
    assert_eq!(h.core.stats().queries_incomplete, 1);

    // The late reply is consumed in order and does not confuse the next query.
    let next = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, h.link(gw(2)), &reply(&PhpValue::Int(100)));
    for i in 0..3 {
        h.core
            .handle_bytes(h.now, h.link(gw(i)), &reply(&PhpValue::Int(2)));
    }
    let d = done(&h.drain());
    assert_eq!(d[0].id, next);
    assert_eq!(d[0].result, Ok(PhpValue::Int(6)));
}

#[test]
fn partial_policy_returns_what_arrived() {
    let mut config = Harness::config();
    config.timeout_policy = TimeoutPolicy::Partial;
    let mut h = Harness::new(config);
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\",\"10.0.0.5:2901\"]}\n",
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
    for l in &links {
        h.core.handle_connected(h.now, *l);
    }
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, links[0], &reply(&PhpValue::Int(4)));
    h.advance(secs(5.0));
    let d = done(&h.drain());
    assert_eq!(d[0].result, Ok(PhpValue::Int(4)));
    assert_eq!(d[0].unanswered, vec![gw(1)]);
}

#[test]
fn calls_outside_an_event_and_worker_only_rules() {
    let mut h = Harness::with_gateways(1);
    h.core.call(
        h.now,
        &ApiCall::SendToCurrentClient {
            message: PhpValue::str("x"),
            raw: false,
        },
        None,
    );
    h.core
        .call(h.now, &ApiCall::IsUidsOnline { uids: vec![] }, None);
    h.core.call(
        h.now,
        &ApiCall::IsOnline {
            client_id: Bytes::from_static(b"short"),
        },
        None,
    );
    // A gateway we have no link to: 0 without asking (the original's worker rule).
    h.core.call(
        h.now,
        &ApiCall::IsOnline {
            client_id: Bytes::from_static(b"0a0000060b5400000001"),
        },
        None,
    );
    let actions = h.drain();
    assert!(transmits(&actions).is_empty());
    let results: Vec<ApiResult> = done(&actions).into_iter().map(|d| d.result).collect();
    assert_eq!(
        results,
        vec![
            Err(ApiError::NoCurrentClient),
            Err(ApiError::NotAvailable),
            Ok(PhpValue::Int(0)),
            Ok(PhpValue::Int(0)),
        ]
    );
}
