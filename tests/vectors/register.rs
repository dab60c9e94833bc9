//! The `register` vectors: the three literal messages to the register, and every literal
//! line of the scripted `register_session` read by our decoders (the session's state
//! machine itself belongs to the register core).

use bytes::BytesMut;
use gatewayworker::protocol::register::{
    classify_request, decode_from_register, encode_bad_request, encode_broadcast_addresses,
    unique_with_indexes, FromRegister, LineDecoder, RegisterRequest, ToRegister,
};
use gatewayworker::testing::vectors::{bytes, encode_hex, vector};
use serde_json::Value;

fn text(v: &Value) -> String {
    v.as_str().unwrap().to_owned()
}

fn check_message(name: &str, message: ToRegister) {
    let v = vector("register", name);
    let expected = &v["expected"];
    let mut wire = BytesMut::new();
    message.encode(&mut wire);
    assert_eq!(
        encode_hex(&wire),
        expected["wire_hex"].as_str().unwrap(),
        "{name}: wire bytes"
    );
    let line = expected["line"].as_str().unwrap();
    assert_eq!(&wire[..wire.len() - 1], line.as_bytes(), "{name}: line");
    // The wire bytes go through the line framer back to the line.
    let line_back = LineDecoder::default().decode(&mut wire).unwrap().unwrap();
    assert_eq!(&line_back[..], line.as_bytes());
    assert!(wire.is_empty());
    let parsed = &expected["parsed"];
    let classified = classify_request(line.as_bytes());
    let want = match parsed["event"].as_str().unwrap() {
        "gateway_connect" => RegisterRequest::GatewayConnect {
            address: Some(text(&parsed["address"])),
            secret_key: Some(text(&parsed["secret_key"])),
        },
        "worker_connect" => RegisterRequest::WorkerConnect {
            secret_key: Some(text(&parsed["secret_key"])),
        },
        "ping" => RegisterRequest::Ping,
        other => panic!("{name}: unexpected event {other}"),
    };
    assert_eq!(classified, want, "{name}: classification");
}

#[test]
fn message_vectors() {
    let address = "10.0.0.5:2900".to_owned();
    check_message(
        "message_gateway_connect",
        ToRegister::GatewayConnect {
            address,
            secret_key: String::new(),
        },
    );
    check_message(
        "message_worker_connect",
        ToRegister::WorkerConnect {
            secret_key: String::new(),
        },
    );
    check_message("message_ping", ToRegister::Ping);
}

/// Every incoming line of the session gets the reading its scripted outcome implies.
#[test]
fn session_lines_classify_as_the_register_reads_them() {
    let session = vector("register", "register_session");
    let mut checked = 0;
    for step in session["steps"].as_array().unwrap() {
        let Some(line) = step.get("line") else {
            continue;
        };
        let line = bytes(line);
        let from = step["from"].as_str().unwrap();
        let got = classify_request(&line);
        let want_kind = match from {
            "garbage" => "bad",
            "unknown" => "unknown",
            "no_address" => "gateway_without_address",
            "bad_key" => "worker",
            f if f.starts_with("gateway") => "gateway",
            f if f.starts_with("worker") => {
                if line == b"{\"event\":\"ping\"}" {
                    "ping"
                } else {
                    "worker"
                }
            }
            other => panic!("unexpected sender {other}"),
        };
        let ok = match (want_kind, &got) {
            ("bad", RegisterRequest::BadRequest) => true,
            ("unknown", RegisterRequest::UnknownEvent { event }) => event == "whatever",
            ("gateway_without_address", RegisterRequest::GatewayConnect { address, .. }) => {
                address.is_none()
            }
            (
                "gateway",
                RegisterRequest::GatewayConnect {
                    address,
                    secret_key,
                },
            ) => address.is_some() && secret_key.as_deref() == Some(""),
            ("worker", RegisterRequest::WorkerConnect { secret_key }) => {
                let key_ok = secret_key.as_deref() == Some("");
                key_ok == (from != "bad_key")
            }
            ("ping", RegisterRequest::Ping) => true,
            _ => false,
        };
        assert!(ok, "step from {from}: classified as {got:?}");
        checked += 1;
    }
    assert!(checked >= 9, "only {checked} lines");
}

/// Every line the register sends in the session: the broadcasts re-encode byte for byte
/// from their addresses (list or object form), decode back to the addresses, and the bad
/// request answer is reproduced.
#[test]
fn session_register_lines_encode_and_decode() {
    let session = vector("register", "register_session");
    let peer_ip = session["input"]["peer_ip"].as_str().unwrap();
    let (mut broadcasts, mut bad_requests) = (0, 0);
    for step in session["steps"].as_array().unwrap() {
        for event in step["events"].as_array().unwrap() {
            if event["event"] == "register_send" {
                let wire = bytes(&event["wire_bytes"]);
                let line = bytes(&event["line"]);
                assert_eq!(&wire[..wire.len() - 1], &line[..]);
                let FromRegister::BroadcastAddresses(addresses) =
                    decode_from_register(&line).unwrap()
                else {
                    panic!("not a broadcast: {event}");
                };
                let json: Value = serde_json::from_slice(&line).unwrap();
                let entries: Vec<(usize, &str)> = match &json["addresses"] {
                    Value::Array(list) => list
                        .iter()
                        .enumerate()
                        .map(|(i, a)| (i, a.as_str().unwrap()))
                        .collect(),
                    Value::Object(map) => map
                        .iter()
                        .map(|(k, a)| (k.parse().unwrap(), a.as_str().unwrap()))
                        .collect(),
                    other => panic!("addresses {other}"),
                };
                let values: Vec<&str> = entries.iter().map(|(_, a)| *a).collect();
                assert_eq!(addresses, values);
                let mut out = BytesMut::new();
                encode_broadcast_addresses(&entries, &mut out);
                assert_eq!(&out[..], &wire[..], "broadcast {event}");
                broadcasts += 1;
            } else if let Some(final_line) = event["final_line"].as_object() {
                let request = bytes(&step["line"]);
                let mut out = BytesMut::new();
                encode_bad_request(peer_ip, &request, &mut out);
                let mut want = bytes(&Value::Object(final_line.clone()));
                want.push(b'\n');
                assert_eq!(&out[..], &want[..]);
                bad_requests += 1;
            }
        }
    }
    assert!(broadcasts >= 7 && bad_requests == 1);
}

/// The dedup that produces the object form: the session's registration order
/// (gateway1, gateway3_dup, gateway2) gives indexes 0 and 2.
#[test]
fn dedup_keeps_indexes_and_switches_to_the_object_form() {
    let registered = ["10.0.0.5:2900", "10.0.0.5:2900", "10.0.0.5:2901"];
    let entries = unique_with_indexes(registered);
    assert_eq!(entries, vec![(0, "10.0.0.5:2900"), (2, "10.0.0.5:2901")]);
    let mut out = BytesMut::new();
    encode_broadcast_addresses(&entries, &mut out);
    assert_eq!(
        &out[..],
        &b"{\"event\":\"broadcast_addresses\",\"addresses\":{\"0\":\"10.0.0.5:2900\",\"2\":\"10.0.0.5:2901\"}}\n"[..]
    );
    let mut out = BytesMut::new();
    encode_broadcast_addresses(&unique_with_indexes(["a/b", "c"]), &mut out);
    assert_eq!(
        &out[..],
        &b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"a\\/b\",\"c\"]}\n"[..]
    );
}
