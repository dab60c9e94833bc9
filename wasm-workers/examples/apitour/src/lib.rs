//! Test guest for the host's contract tests: each message names a scenario that exercises
//! one part of the ABI (API calls, query results, sessions, errors, context).

use gw_sdk::gateway::{self, map};
use gw_sdk::{json, log, session, Events, Message, Value};

#[derive(Default)]
struct Tour {
    starts: u64,
}

fn reply(v: &Value) {
    let _ = gateway::send_to_current_client(json::encode(v).as_bytes(), false);
}

fn error_value(e: gateway::Error) -> Value {
    map(vec![
        ("code", Value::Int(e.code as i64)),
        ("message", Value::from(e.message)),
    ])
}

impl Events for Tour {
    fn on_worker_start(&mut self) {
        self.starts += 1;
        log::info("apitour started");
    }

    fn on_connect(&mut self, client_id: &str) {
        let _ = gateway::send_to_current_client(format!("hello {}", client_id).as_bytes(), false);
    }

    fn on_close(&mut self, client_id: &str) {
        let s = session::get().unwrap_or(Value::Null);
        let msg = map(vec![("bye", Value::str(client_id)), ("session", s)]);
        let _ = gateway::send_to_group("watch", json::encode(&msg), None);
        // A change the host must not write back (the client is gone).
        let _ = session::update(|s| s.set("closed", Value::Bool(true)));
    }

    fn on_websocket_connect(&mut self, _client_id: &str, data: Value) {
        reply(&data);
    }

    fn on_message(&mut self, client_id: &str, message: Message<'_>) {
        match message.data {
            b"tour" => tour(client_id),
            b"query" => {
                let count = gateway::get_client_id_count_by_group("room");
                let ids = gateway::get_client_id_list_by_group("room");
                let sess = gateway::get_session(client_id);
                let v = map(vec![
                    ("count", count.map(Value::Int).unwrap_or_else(error_value)),
                    (
                        "ids",
                        ids.map(|l| Value::list(l.into_iter().map(Value::from).collect()))
                            .unwrap_or_else(error_value),
                    ),
                    ("session", sess.unwrap_or_else(error_value)),
                ]);
                reply(&v);
            }
            b"session" => {
                let r = session::update(|s| {
                    let n = s.get("visits").and_then(Value::as_int).unwrap_or(0);
                    s.set("visits", Value::Int(n + 1));
                    s.clone()
                });
                reply(&r.unwrap_or_else(error_value));
            }
            b"session-clear" => {
                let _ = session::set(&Value::Null);
                reply(&Value::Null);
            }
            b"session-api" => {
                // setSession on the current client also replaces $_SESSION (no write-back).
                let _ = gateway::set_session(client_id, map(vec![("a", Value::Int(1))]));
                let _ = gateway::update_session(client_id, map(vec![("b", Value::Int(2))]));
                reply(&session::get().unwrap_or_else(error_value));
            }
            b"errors" => {
                let unknown = gateway::call(99, vec![]).map(|_| ()).unwrap_err();
                let refused = gateway::get_uid_by_client_id("bad").unwrap_err();
                reply(&Value::list(vec![
                    error_value(unknown),
                    error_value(refused),
                ]));
            }
            b"ctx" => {
                let info = gateway::client_info().unwrap_or_else(error_value);
                reply(&map(vec![
                    ("info", info),
                    ("now", Value::Int(gw_sdk::now_ms())),
                    ("starts", Value::Int(self.starts as i64)),
                ]));
            }
            b"close" => {
                let _ = gateway::close_current_client(Some(Value::str("bye")));
            }
            _ => {
                let _ = gateway::send_to_current_client(message.data, message.binary);
            }
        }
    }
}

/// One call of each kind, with fixed arguments the host test knows.
fn tour(client_id: &str) {
    let _ = gateway::send_to_client("7f0000010fa000000001", "to-one");
    let _ = gateway::send_to_client_with(
        "7f0000010fa000000002",
        Value::Str(vec![0, 1, 255]),
        true,
        true,
    );
    let _ = gateway::send_to_all("all", None, Some(&["7f0000010fa000000003"]));
    let _ = gateway::send_to_all("some", Some(&["a", "b"]), None);
    let _ = gateway::send_to_uid("u1", "to-uid");
    let _ = gateway::send_to_uids(&["u1", "u2"], "to-uids");
    let _ = gateway::send_to_group("g1", map(vec![("k", Value::Int(1))]), None);
    let _ = gateway::send_to_groups(&["g1", "g2"], "to-groups", Some(&[client_id]));
    let _ = gateway::bind_uid(client_id, "u1");
    let _ = gateway::unbind_uid(client_id, "u1");
    let _ = gateway::join_group(client_id, "g1");
    let _ = gateway::leave_group(client_id, "g1");
    let _ = gateway::ungroup("g2");
    let _ = gateway::close_client("7f0000010fa000000004", None);
    let _ = gateway::destroy_client("7f0000010fa000000005");
    let _ = gateway::send_value_to_current_client(Value::Int(42), false);
    let _ = gateway::get_all_client_count();
    let _ = gateway::get_all_group_id_list();
    let _ = gateway::send_to_current_client(b"done", false);
}

gw_sdk::export_worker!(Tour);
