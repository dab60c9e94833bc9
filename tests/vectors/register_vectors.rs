//! The scripted `register_session` vector (the real PHP Register driven line by line)
//! replayed through [`RegisterCore`]: every line sent and every close, byte for byte, in
//! order, with whole lines and again with the input split into single bytes.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gatewayworker::register::{Action, PeerId, RegisterConfig, RegisterCore};
use gatewayworker::testing::vectors::{bytes, vector};
use serde_json::Value;

fn drain(core: &mut RegisterCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

fn peer(ip: &Value, port: u16) -> SocketAddr {
    let ip: IpAddr = ip.as_str().expect("peer_ip").parse().expect("an ip");
    SocketAddr::new(ip, port)
}

/// The actions the PHP register's events stand for.
fn expected_actions(step: &Value, ids: &BTreeMap<String, PeerId>) -> Vec<Action> {
    let mut want = Vec::new();
    for event in step["events"].as_array().expect("events") {
        let to = ids[event["to"].as_str().expect("to")];
        match event["event"].as_str().expect("event kind") {
            "register_send" => {
                let wire = bytes(&event["wire_bytes"]);
                let mut line = bytes(&event["line"]);
                line.push(b'\n');
                assert_eq!(wire, line, "the vector's wire bytes are its line and \\n");
                want.push(Action::Transmit {
                    to,
                    bytes: wire.into(),
                });
            }
            "register_close" => {
                if !event["final_line"].is_null() {
                    let mut line = bytes(&event["final_line"]);
                    line.push(b'\n');
                    want.push(Action::Transmit {
                        to,
                        bytes: line.into(),
                    });
                }
                want.push(close_marker(to));
            }
            other => panic!("unknown event kind {other} in register_session"),
        }
    }
    want
}

/// A `Close` with the fields the vector does not know replaced by what we compare.
fn close_marker(id: PeerId) -> Action {
    Action::Close {
        id,
        after_flush: true,
        reason: gatewayworker::register::CloseReason::BadRequest,
    }
}

/// The vector cannot name our close reasons; compare closes by connection and flushing.
fn comparable(actions: Vec<Action>) -> Vec<Action> {
    actions
        .into_iter()
        .map(|a| match a {
            Action::Close {
                id, after_flush, ..
            } => {
                assert!(after_flush, "the register flushes before closing");
                close_marker(id)
            }
            other => other,
        })
        .collect()
}

fn replay(split_bytes: bool) {
    let v = vector("register", "register_session");
    let input = &v["input"];
    let config = RegisterConfig::new(input["secret_key"].as_str().expect("secret_key"));
    let mut core = RegisterCore::new(config);
    let mut now = Duration::ZERO;
    let mut ids: BTreeMap<String, PeerId> = BTreeMap::new();
    let connect = |core: &mut RegisterCore,
                   ids: &mut BTreeMap<String, PeerId>,
                   label: &str,
                   connection_id: u64,
                   ip: &Value| {
        let id = core
            .handle_connected(Duration::ZERO, peer(ip, 40_000 + connection_id as u16))
            .expect("under connections_max");
        assert_eq!(
            id,
            PeerId(connection_id),
            "ids are allocated like workerman's"
        );
        ids.insert(label.to_owned(), id);
        assert!(drain(core).is_empty(), "a connect sends nothing");
    };
    for conn in input["connections"].as_array().expect("connections") {
        connect(
            &mut core,
            &mut ids,
            conn["label"].as_str().unwrap(),
            conn["connection_id"].as_u64().unwrap(),
            &conn["peer_ip"],
        );
    }
    let steps = v["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 11, "the session's length");
    for (n, step) in steps.iter().enumerate() {
        now += Duration::from_millis(100);
        let label = step["from"].as_str().expect("from");
        if !ids.contains_key(label) {
            connect(
                &mut core,
                &mut ids,
                label,
                step["connection_id"].as_u64().expect("connection_id"),
                &step["peer_ip"],
            );
        }
        let id = ids[label];
        let got = if step["action"] == "connection_closed" {
            core.handle_closed(now, id);
            drain(&mut core)
        } else {
            let mut wire = bytes(&step["line"]);
            wire.push(b'\n');
            if split_bytes {
                let mut got = Vec::new();
                for b in &wire {
                    core.handle_bytes(now, id, std::slice::from_ref(b));
                    got.extend(drain(&mut core));
                }
                got
            } else {
                core.handle_bytes(now, id, &wire);
                drain(&mut core)
            }
        };
        let got = comparable(got);
        let want = expected_actions(step, &ids);
        assert_eq!(got, want, "step {n} ({}): {}", label, step["description"]);
        // What the driver does after a close: the socket goes, nothing more is sent.
        for action in &got {
            if let Action::Close { id, .. } = action {
                core.handle_closed(now, *id);
                assert!(
                    drain(&mut core).is_empty(),
                    "step {n}: closing a non-gateway"
                );
            }
        }
    }
    assert_eq!(core.addresses(), vec!["10.0.0.5:2900", "10.0.0.5:2901"]);
    assert_eq!(core.workers(), vec![ids["worker1"], ids["worker2"]]);
}

#[test]
fn register_session_whole_lines() {
    replay(false);
}

#[test]
fn register_session_byte_by_byte() {
    replay(true);
}
