//! `sender_api` vectors: for each API call of the original worker library, with three
//! gateways linked, the exact frames written to each gateway, byte for byte and in order.
//! Each call is made through the PHP-typed sender functions (the vectors' argument types)
//! and, where the arguments are plain strings, through `Planner::plan(&ApiCall)` as well.

use std::net::SocketAddrV4;

use crate::sender_vectors::{api_call, arg, flag, text};
use bytes::{BufMut, BytesMut};
use gatewayworker::api::merge::{GroupScan, Merge};
use gatewayworker::api::plan::{auth_frame, Caller, Plan, Planner};
use gatewayworker::protocol::frame::Frame;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::testing::vectors::{bytes, encode_hex, section, vector};
use serde_json::Value;

/// Frame bytes (spec 1.1), written here so that the test does not trust the code under test.
fn encode(frame: &Frame) -> Vec<u8> {
    let h = &frame.header;
    let mut out = BytesMut::new();
    out.put_u32((28 + frame.ext_data.len() + frame.body.len()) as u32);
    out.put_u8(h.cmd as u8);
    out.put_u32(u32::from(h.local_ip));
    out.put_u16(h.local_port);
    out.put_u32(u32::from(h.client_ip));
    out.put_u16(h.client_port);
    out.put_u32(h.connection_id);
    out.put_u8(h.flag);
    out.put_u16(h.gateway_port);
    out.put_u32(frame.ext_data.len() as u32);
    out.put_slice(&frame.ext_data);
    out.put_slice(&frame.body);
    out.to_vec()
}

/// The plan of the vector's call through the PHP-typed functions.
fn typed_plan(sender: &Planner, v: &Value) -> Plan {
    let method = v["input"]["call"]["method"].as_str().expect("method");
    let a = |name: &str| arg(v, name);
    let result = match method {
        "sendToClient" => {
            sender.send_to_client(&text(&a("client_id")), &a("message"), flag(&a("raw")))
        }
        "sendToAll" => sender.send_to_all(
            &a("message"),
            &a("client_id_array"),
            &a("exclude_client_id"),
            flag(&a("raw")),
        ),
        "sendToUid" => sender.send_to_uid(&a("uid"), &a("message"), flag(&a("raw"))),
        "sendToGroup" => sender.send_to_group(
            &a("group"),
            &a("message"),
            &a("exclude_client_id"),
            flag(&a("raw")),
        ),
        "bindUid" => sender.bind_uid(&text(&a("client_id")), &a("uid")),
        "unbindUid" => sender.unbind_uid(&text(&a("client_id")), &a("uid")),
        "joinGroup" => sender.join_group(&text(&a("client_id")), &a("group")),
        "leaveGroup" => sender.leave_group(&text(&a("client_id")), &a("group")),
        "ungroup" => sender.ungroup(&a("group")),
        "closeClient" => {
            let message = a("message");
            let message = (message != PhpValue::Null).then_some(message);
            sender.close_client(&text(&a("client_id")), message.as_ref())
        }
        "destoryClient" => sender.destroy_client(&text(&a("client_id"))),
        "setSession" => sender.set_session(&text(&a("client_id")), &a("session")),
        "updateSession" => sender.update_session(&text(&a("client_id")), &a("session")),
        "setSocketSession" => {
            sender.set_socket_session(&text(&a("client_id")), &text(&a("session_str")))
        }
        "getClientIdCountByGroup" => sender.get_client_count_by_group(&a("group")),
        "getAllClientSessions" => sender.get_all_client_sessions(&a("group")),
        "getClientSessionsByGroup" => sender.get_client_sessions_by_group(&a("group")),
        "getClientIdByUid" => sender.get_client_id_by_uid(&a("uid")),
        "getAllGroupIdList" => sender.get_all_group_id_list(),
        "select" => sender.select(&a("fields"), &a("where"), Merge::ClientIdMap),
        other => panic!("vector method {other} not mapped"),
    };
    result.unwrap_or_else(|e| panic!("{}: {e}", v["name"]))
}

/// Frames of a plan grouped per gateway in first-appearance order, as hex.
fn sent(plan: &Plan) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for o in &plan.frames {
        let addr = o.to.to_string();
        let hex = encode_hex(&encode(&o.frame));
        match out.iter_mut().find(|(a, _)| *a == addr) {
            Some((_, frames)) => frames.push(hex),
            None => out.push((addr, vec![hex])),
        }
    }
    out
}

fn expected(v: &Value) -> Vec<(String, Vec<String>)> {
    v["expected"]["sent"]
        .as_array()
        .expect("sent")
        .iter()
        .map(|e| {
            assert_eq!(e["event"], "to_gateway", "{}", v["name"]);
            let frames = e["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| f["frame_hex"].as_str().expect("frame_hex").to_string())
                .collect();
            (e["address"].as_str().expect("address").to_string(), frames)
        })
        .collect()
}

fn gateways(v: &Value) -> Vec<SocketAddrV4> {
    v["input"]["gateways"]
        .as_array()
        .expect("gateways")
        .iter()
        .map(|g| g.as_str().expect("address").parse().expect("ipv4:port"))
        .collect()
}

#[test]
fn every_call_writes_the_vector_frames() {
    let mut checked = 0;
    let mut via_api = 0;
    for v in section("sender_api") {
        if v["name"] == "auth_prefix" {
            continue;
        }
        assert_eq!(v["input"]["context"], "BusinessWorker (no auth prefix)");
        let gateways = gateways(v);
        let sender = Planner::new(
            Caller::Worker { current: None },
            &gateways,
            GroupScan::Complete,
        );
        let want = expected(v);
        let plan = typed_plan(&sender, v);
        assert_eq!(sent(&plan), want, "vector {}", v["name"]);
        if let Some(call) = api_call(v) {
            let plan = sender
                .plan(&call)
                .unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
            assert_eq!(sent(&plan), want, "vector {} through ApiCall", v["name"]);
            via_api += 1;
        }
        checked += 1;
    }
    assert_eq!(checked, 30, "sender_api call vectors");
    assert!(via_api >= 20, "only {via_api} vectors mapped to ApiCall");
}

#[test]
fn auth_prefix_frame() {
    let v = vector("sender_api", "auth_prefix");
    let secret = v["input"]["secret_key"].as_str().expect("secret");
    let want = bytes(&v["expected"]["frame_hex"]);
    assert_eq!(
        encode_hex(&encode(&auth_frame(secret.as_bytes()))),
        encode_hex(&want)
    );
}
