//! Edge cases of the sender beyond the `sender_api` vectors (which cover the main path of
//! every call): malformed ids per caller, empty arguments, current-client paths.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use quickcheck::QuickCheck;

use std::net::SocketAddrV4;

use crate::protocol::client_id::client_id_text;

use super::*;
use crate::protocol::php::json::json_decode;

fn gw(i: u8) -> GatewayAddr {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 2900 + u16::from(i))
}

fn id(gateway: u8, cid: u32) -> Bytes {
    client_id_text(gw(gateway), cid)
}

fn list(ids: &[Bytes]) -> PhpValue {
    names_value(ids)
}

fn ext(o: &Outgoing) -> &[u8] {
    &o.frame.ext_data
}

const GATEWAYS: [GatewayAddr; 0] = [];

fn worker(gateways: &[GatewayAddr]) -> Planner<'_> {
    Planner::new(
        Caller::Worker { current: None },
        gateways,
        GroupScan::Complete,
    )
}

fn client(gateways: &[GatewayAddr]) -> Planner<'_> {
    Planner::new(Caller::Client, gateways, GroupScan::Complete)
}

fn ready(plan: &Plan) -> &PhpValue {
    match &plan.completion {
        Completion::Ready(Ok(v)) => v,
        other => panic!("not ready: {other:?}"),
    }
}

#[test]
fn send_to_all_with_an_empty_list_sends_nothing() {
    let gws = [gw(0), gw(1)];
    let plan = worker(&gws)
        .send_to_all(
            &PhpValue::str("m"),
            &PhpValue::Array(PhpArray::new()),
            &PhpValue::Null,
            false,
        )
        .unwrap();
    assert!(plan.frames.is_empty());
    assert_eq!(ready(&plan), &PhpValue::Null);
}

#[test]
fn malformed_ids_are_skipped_by_a_worker_and_refused_by_a_client() {
    let gws = [gw(0), gw(1)];
    let ids = list(&[Bytes::from_static(b"nope"), id(0, 5), id(0, 5), id(1, 6)]);
    let plan = worker(&gws)
        .send_to_all(&PhpValue::str("m"), &ids, &PhpValue::Null, false)
        .unwrap();
    let exts: Vec<&[u8]> = plan.frames.iter().map(ext).collect();
    assert_eq!(
        exts,
        vec![
            &br#"{"connections":{"5":5}}"#[..],
            br#"{"connections":{"6":6}}"#
        ],
        "duplicates delivered once"
    );
    assert_eq!(
        client(&gws).send_to_all(&PhpValue::str("m"), &ids, &PhpValue::Null, false),
        Err(ApiError::MalformedClientId)
    );
    // With a list, exclusions are compared as text and never parsed.
    let plan = client(&gws)
        .send_to_all(
            &PhpValue::str("m"),
            &list(&[id(0, 5)]),
            &PhpValue::str("bad"),
            false,
        )
        .unwrap();
    assert_eq!(plan.frames.len(), 1);
    // Exclusions alone are parsed.
    assert_eq!(
        client(&gws).send_to_all(
            &PhpValue::str("m"),
            &PhpValue::Null,
            &PhpValue::str("bad"),
            false
        ),
        Err(ApiError::MalformedClientId)
    );
    assert_eq!(
        client(&gws).is_online(b"bad"),
        Err(ApiError::MalformedClientId)
    );
    assert_eq!(
        ready(&worker(&gws).is_online(b"bad").unwrap()),
        &PhpValue::Int(0)
    );
    assert_eq!(
        ready(&worker(&gws).get_session(b"bad").unwrap()),
        &PhpValue::Bool(false)
    );
    assert_eq!(
        ready(
            &worker(&gws)
                .send_to_client(b"bad", &PhpValue::str("m"), false)
                .unwrap()
        ),
        &PhpValue::Bool(false)
    );
    assert_eq!(
        ready(&worker(&gws).close_client(b"bad", None).unwrap()),
        &PhpValue::Bool(false)
    );
    let plan = worker(&gws).get_uid_by_client_id(b"bad").unwrap();
    assert!(plan.frames.is_empty());
    assert_eq!(ready(&plan), &PhpValue::Null);
    assert_eq!(
        client(&gws).get_uid_by_client_id(b"bad"),
        Err(ApiError::MalformedClientId)
    );
}

#[test]
fn a_worker_only_reaches_linked_gateways_a_client_any() {
    let gws = [gw(0)];
    let ghost = id(7, 1);
    let w = worker(&gws);
    assert_eq!(
        ready(
            &w.send_to_client(&ghost, &PhpValue::str("m"), false)
                .unwrap()
        ),
        &PhpValue::Bool(false)
    );
    assert_eq!(
        ready(&w.bind_uid(&ghost, &PhpValue::str("u")).unwrap()),
        &PhpValue::Null
    );
    assert_eq!(ready(&w.get_session(&ghost).unwrap()), &PhpValue::Null);
    let plan = client(&gws)
        .send_to_client(&ghost, &PhpValue::str("m"), false)
        .unwrap();
    assert_eq!(plan.frames[0].to, gw(7));
    assert_eq!(plan.completion, Completion::SendOutcome);
}

#[test]
fn exclusion_of_connection_zero_is_written_as_a_json_list() {
    // PHP's json_encode turns [0 => 0] into a list: the gateway then excludes nobody.
    let gws = [gw(0)];
    let plan = worker(&gws)
        .send_to_all(
            &PhpValue::str("m"),
            &PhpValue::Null,
            &PhpValue::Str(id(0, 0)),
            false,
        )
        .unwrap();
    assert_eq!(ext(&plan.frames[0]), br#"{"exclude":[0]}"#);
}

#[test]
fn php_empty_groups_and_names() {
    let gws = [gw(0)];
    let w = worker(&gws);
    for empty in [
        PhpValue::str(""),
        PhpValue::str("0"),
        PhpValue::Int(0),
        PhpValue::Array(PhpArray::new()),
    ] {
        let plan = w
            .send_to_group(&empty, &PhpValue::str("m"), &PhpValue::Null, false)
            .unwrap();
        assert!(plan.frames.is_empty());
        assert_eq!(ready(&plan), &PhpValue::Bool(false));
        assert_eq!(ready(&w.ungroup(&empty).unwrap()), &PhpValue::Bool(false));
        assert_eq!(
            ready(&w.get_uid_list_by_group(&empty, true).unwrap()),
            &PhpValue::Int(0)
        );
        assert_eq!(
            ready(&w.get_client_sessions_by_group(&empty).unwrap()),
            &PhpValue::Array(PhpArray::new())
        );
    }
    // Through ApiCall: a single PHP-empty name is the scalar the caller passed.
    let call = ApiCall::SendToGroup {
        groups: vec![Bytes::from_static(b"")],
        message: PhpValue::str("m"),
        exclude: Some(vec![Bytes::new()]),
        raw: false,
    };
    assert_eq!(ready(&w.plan(&call).unwrap()), &PhpValue::Bool(false));
    // joinGroup with "0": sent, ext_data left empty (the gateway ignores it).
    let plan = w.join_group(&id(0, 3), &PhpValue::str("0")).unwrap();
    assert_eq!(ext(&plan.frames[0]), b"");
    // getAllClientSessions("0") is the all-clients command.
    let plan = w.get_all_client_sessions(&PhpValue::str("0")).unwrap();
    assert_eq!(
        plan.frames[0].frame.header.cmd,
        Command::GetAllClientSessions
    );
}

#[test]
fn client_ignores_raw_where_its_library_has_no_such_parameter() {
    let gws = [gw(0)];
    let plan = client(&gws)
        .send_to_client(&id(0, 1), &PhpValue::str("m"), true)
        .unwrap();
    assert_eq!(plan.frames[0].frame.header.flag, 1);
    let plan = client(&gws)
        .send_to_uid(&PhpValue::str("u"), &PhpValue::str("m"), true)
        .unwrap();
    assert_eq!(plan.frames[0].frame.header.flag, 1);
    let plan = client(&gws)
        .send_to_all(&PhpValue::str("m"), &PhpValue::Null, &PhpValue::Null, true)
        .unwrap();
    assert_eq!(plan.frames[0].frame.header.flag, 3);
    assert_eq!(
        worker(&gws).batch_get_client_count_by_group(&PhpValue::Null),
        Err(ApiError::NotAvailable)
    );
}

#[test]
fn current_client_paths() {
    let gws = [gw(0)];
    let current = CurrentClient {
        client_id: id(0, 9),
        gateway: gw(0),
        connection_id: 9,
        session: PhpValue::Null,
    };
    let w = Planner::new(
        Caller::Worker {
            current: Some(&current),
        },
        &gws,
        GroupScan::Complete,
    );
    let by_id = w
        .close_client(&id(0, 9), Some(&PhpValue::str("bye")))
        .unwrap();
    let current_path = w.close_current_client(Some(&PhpValue::str("bye"))).unwrap();
    assert_eq!(by_id, current_path);
    assert_eq!(by_id.frames[0].frame.header.connection_id, 9);
    let plan = w.destroy_current_client().unwrap();
    assert_eq!(plan.frames[0].frame.header.cmd, Command::Destroy);
    assert_eq!(
        worker(&gws).destroy_current_client(),
        Err(ApiError::NoCurrentClient)
    );
    assert_eq!(
        worker(&gws).send_to_current_client(&PhpValue::str("m"), false),
        Err(ApiError::NoCurrentClient)
    );
    let Completion::Replies(Merge::Sessions { own }) = w
        .get_all_client_sessions(&PhpValue::Null)
        .unwrap()
        .completion
    else {
        panic!("sessions merge")
    };
    assert_eq!(own, Some((id(0, 9), PhpValue::Null)));
}

#[test]
fn cluster_queries_need_a_gateway() {
    assert_eq!(
        worker(&GATEWAYS).get_all_group_id_list(),
        Err(ApiError::NoGateway)
    );
    assert_eq!(
        client(&GATEWAYS).get_all_client_id_list(),
        Err(ApiError::NoGateway)
    );
    // Fire-and-forget fan-outs just reach nobody.
    let plan = worker(&GATEWAYS)
        .send_to_uid(&PhpValue::str("u"), &PhpValue::str("m"), false)
        .unwrap();
    assert!(plan.frames.is_empty());
}

#[test]
fn select_with_client_ids_and_other_conditions_asks_every_gateway() {
    let gws = [gw(0), gw(1), gw(2)];
    let mut w = PhpArray::new();
    w.insert(PhpKey::from_bytes(b"client_id"), list(&[id(1, 4)]));
    w.insert(
        PhpKey::from_bytes(b"uid"),
        list(&[Bytes::from_static(b"u")]),
    );
    let fields = list(&[Bytes::from_static(b"uid")]);
    let plan = worker(&gws)
        .select(&fields, &PhpValue::Array(w), Merge::ClientIdMap)
        .unwrap();
    let got: Vec<(GatewayAddr, &[u8])> = plan.frames.iter().map(|o| (o.to, ext(o))).collect();
    assert_eq!(
        got,
        vec![
            (
                gw(1),
                &br#"{"fields":["uid"],"where":{"uid":["u"],"connection_id":{"4":4}}}"#[..]
            ),
            (
                gw(0),
                br#"{"fields":["uid"],"where":{"uid":["u"],"connection_id":[]}}"#
            ),
            (
                gw(2),
                br#"{"fields":["uid"],"where":{"uid":["u"],"connection_id":[]}}"#
            ),
        ]
    );
}

/// Explicit id lists: every listed, non-excluded id of a linked gateway is delivered
/// exactly once, by the frame of its own gateway.
#[test]
fn send_to_all_lists_partition_by_gateway() {
    fn prop(ids: Vec<(u8, u8)>, excluded: Vec<(u8, u8)>) -> bool {
        let gws = [gw(0), gw(1), gw(2)];
        let to_id = |(g, c): &(u8, u8)| id(g % 4, u32::from(*c % 8) + 1);
        let listed: Vec<Bytes> = ids.iter().map(to_id).collect();
        let excluded: Vec<Bytes> = excluded.iter().map(to_id).collect();
        let exclude = if excluded.is_empty() {
            PhpValue::Null
        } else {
            list(&excluded)
        };
        let plan = worker(&gws)
            .send_to_all(&PhpValue::str("m"), &list(&listed), &exclude, false)
            .unwrap();
        let want: BTreeSet<Bytes> = listed
            .iter()
            .filter(|i| !excluded.contains(i))
            .filter(|i| gws.contains(&client_address(i).unwrap().0))
            .cloned()
            .collect();
        let mut got = BTreeSet::new();
        let mut seen_gateways = BTreeSet::new();
        for o in &plan.frames {
            if !seen_gateways.insert(o.to) {
                return false;
            }
            let Ok(PhpValue::Array(doc)) = json_decode(&o.frame.ext_data) else {
                return false;
            };
            let Some(PhpValue::Array(conns)) = doc.get_str("connections") else {
                return false;
            };
            for (_, cid) in conns.iter() {
                let PhpValue::Int(cid) = cid else {
                    return false;
                };
                if !got.insert(format_id(o.to, *cid as u32)) {
                    return false;
                }
            }
        }
        got == want
    }
    fn format_id(to: GatewayAddr, cid: u32) -> Bytes {
        client_id_text(to, cid)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<(u8, u8)>, Vec<(u8, u8)>) -> bool);
}

#[test]
fn uid_and_group_lists_are_sent_as_given_without_deduplication() {
    // Spec 9.4: a uid or group listed twice is delivered twice by the gateway; the sender
    // passes the list through unchanged.
    let gws = [gw(0)];
    let twice = list(&[Bytes::from_static(b"u/1"), Bytes::from_static(b"u/1")]);
    let plan = worker(&gws)
        .send_to_uid(&twice, &PhpValue::str("m"), false)
        .unwrap();
    assert_eq!(ext(&plan.frames[0]), br#"["u\/1","u\/1"]"#);
    let plan = worker(&gws)
        .send_to_group(&twice, &PhpValue::str("m"), &PhpValue::Null, false)
        .unwrap();
    assert_eq!(
        ext(&plan.frames[0]),
        br#"{"group":["u\/1","u\/1"],"exclude":null}"#
    );
}
