//! The `probe` test worker: runs the op language of `spec/ops.md` (requests
//! `{"op":..,"args":{..},"id":..}` executed as Gateway API calls, replies
//! `{"id":..,"ok":..,"result"|"error":..}`), so a test client cannot tell it from the PHP
//! reference worker.
//!
//! `sleep` needs a host whose API handler offers `gw.sleep_ms` (else it answers `ok:false`).

mod md5;

use std::collections::BTreeMap;

use gw_sdk::gateway::{self, op};
use gw_sdk::{json, session, Events, Message, Value};

/// A reply tree: plain values are JSON-encoded as PHP's `json_encode` would, `Map` is
/// always an object (even empty: `{}`), `List` always a list.
enum Out {
    V(Value),
    Map(Vec<(Vec<u8>, Out)>),
    List(Vec<Out>),
}

fn encode(out: &Out, s: &mut String) {
    match out {
        Out::V(v) => s.push_str(&json::encode(v)),
        Out::Map(entries) => {
            s.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&json::encode(&Value::Str(k.clone())));
                s.push(':');
                encode(v, s);
            }
            s.push('}');
        }
        Out::List(items) => {
            s.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                encode(v, s);
            }
            s.push(']');
        }
    }
}

fn to_json(out: &Out) -> String {
    let mut s = String::new();
    encode(out, &mut s);
    s
}

fn obj(entries: Vec<(&str, Out)>) -> Out {
    Out::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v))
            .collect(),
    )
}

/// PHP's string conversion of a scalar, for `sort($v, SORT_STRING)` and key order.
fn sort_key(v: &Value) -> Vec<u8> {
    match v {
        Value::Str(s) => s.clone(),
        Value::Int(n) => n.to_string().into_bytes(),
        Value::Bool(true) => b"1".to_vec(),
        Value::Float(f) => format!("{}", f).into_bytes(),
        _ => Vec::new(),
    }
}

/// §4 list: the values, sorted by byte-wise string comparison.
fn norm_list(v: Value) -> Out {
    let mut items: Vec<Value> = match v {
        Value::Array(e) => e.into_iter().map(|(_, v)| v).collect(),
        _ => Vec::new(),
    };
    items.sort_by_key(sort_key);
    Out::List(items.into_iter().map(Out::V).collect())
}

/// §4 map: keys sorted byte-wise, values normalised by `f`.
fn norm_map(v: Value, f: fn(Value) -> Out) -> Out {
    let mut entries: Vec<(Vec<u8>, Value)> = match v {
        Value::Array(e) => e.into_iter().map(|(k, v)| (k.to_bytes(), v)).collect(),
        _ => Vec::new(),
    };
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Out::Map(entries.into_iter().map(|(k, v)| (k, f(v))).collect())
}

/// §4 session: null and false stay, an array is a top-level object (nested values plain).
fn norm_session(v: Value) -> Out {
    match v {
        Value::Array(e) => Out::Map(
            e.into_iter()
                .map(|(k, v)| (k.to_bytes(), Out::V(v)))
                .collect(),
        ),
        other => Out::V(other),
    }
}

fn norm_int(v: Value) -> Out {
    Out::V(match v {
        Value::Int(n) => Value::Int(n),
        Value::Bool(b) => Value::Int(b as i64),
        _ => Value::Int(0),
    })
}

fn plain(v: Value) -> Out {
    Out::V(v)
}

fn bool_send(v: Value) -> Out {
    Out::V(Value::Bool(v != Value::Bool(false)))
}

fn void(_: Value) -> Out {
    Out::V(Value::Null)
}

/// A `message` argument: strings as they are, anything else as its JSON text.
fn message_arg(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Str(s)) => Value::Str(s.clone()),
        Some(other) => Value::str(&json::encode(other)),
        None => Value::Null,
    }
}

/// PHP `empty()` of a group argument (`""`, `"0"`, `0`, `[]`, null, false).
fn php_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Str(s)) => s.is_empty() || s == b"0",
        Some(Value::Int(n)) => *n == 0,
        Some(Value::Array(e)) => e.is_empty(),
        _ => false,
    }
}

type OpResult = Result<Out, String>;

fn err_text(e: gateway::Error) -> String {
    e.message
}

/// Calls `op` with `args` and normalises the result with `f`.
fn api(code: i32, args: Vec<Value>, f: fn(Value) -> Out) -> OpResult {
    gateway::call(code, args).map(f).map_err(err_text)
}

struct Request<'a> {
    args: &'a Value,
}

impl<'a> Request<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.args.get(key)
    }

    fn required(&self, key: &str) -> Result<Value, String> {
        self.get(key)
            .cloned()
            .ok_or_else(|| format!("missing argument {}", key))
    }

    fn or_null(&self, key: &str) -> Value {
        self.get(key).cloned().unwrap_or(Value::Null)
    }

    fn or_empty(&self, key: &str) -> Value {
        self.get(key).cloned().unwrap_or_else(|| Value::str(""))
    }
}

#[derive(Default)]
struct Probe {
    /// onWebSocketConnect data per client id.
    handshakes: BTreeMap<String, Value>,
    /// Set while an op has already replied (the `*CurrentClient` ops reply first).
    replied: bool,
}

fn reply(id: &Value, result: OpResult) {
    let id = Out::V(id.clone());
    let out = match result {
        Ok(r) => obj(vec![
            ("id", id),
            ("ok", Out::V(Value::Bool(true))),
            ("result", r),
        ]),
        Err(e) => obj(vec![
            ("id", id),
            ("ok", Out::V(Value::Bool(false))),
            ("error", Out::V(Value::str(&e))),
        ]),
    };
    let _ = gateway::send_to_current_client(to_json(&out).as_bytes(), false);
}

impl Probe {
    fn run(
        &mut self,
        client_id: &str,
        name: &str,
        r: &Request<'_>,
        id: Option<&Value>,
    ) -> OpResult {
        match name {
            "echo" => Ok(Out::V(r.or_null("data"))),
            "sleep" => {
                let ms = r
                    .get("ms")
                    .and_then(Value::as_int)
                    .unwrap_or(0)
                    .clamp(0, 2000);
                gw_sdk::sleep_ms(ms as u32).map_err(err_text)?;
                Ok(Out::V(Value::Null))
            }
            "multi" => {
                let ops = r.required("ops")?;
                let mut results = Vec::new();
                for (_, sub) in ops.entries().unwrap_or(&[]) {
                    let sub_name = sub.get("op").and_then(Value::as_str).unwrap_or("");
                    let empty = Value::array();
                    let sub_args = match sub.get("args") {
                        Some(a @ Value::Array(_)) => a,
                        _ => &empty,
                    };
                    let res = self.run(client_id, sub_name, &Request { args: sub_args }, None);
                    results.push(match res {
                        Ok(v) => obj(vec![("ok", Out::V(Value::Bool(true))), ("result", v)]),
                        Err(e) => obj(vec![
                            ("ok", Out::V(Value::Bool(false))),
                            ("error", Out::V(Value::str(&e))),
                        ]),
                    });
                }
                Ok(Out::List(results))
            }
            "context" => {
                let info = gateway::client_info().map_err(err_text)?;
                let field = |k: &str| Out::V(info.get(k).cloned().unwrap_or(Value::Null));
                Ok(obj(vec![
                    ("client_id", field("client_id")),
                    ("remote_addr", field("remote_addr")),
                    ("remote_port", field("remote_port")),
                    ("gateway_addr", field("gateway_addr")),
                    ("gateway_port", field("gateway_port")),
                ]))
            }
            "getWebSocketData" => Ok(match self.handshakes.get(client_id) {
                None => Out::V(Value::Null),
                Some(data) => obj(vec![
                    (
                        "get",
                        norm_session(data.get("get").cloned().unwrap_or(Value::array())),
                    ),
                    (
                        "server",
                        norm_session(data.get("server").cloned().unwrap_or(Value::array())),
                    ),
                    (
                        "cookie",
                        norm_session(data.get("cookie").cloned().unwrap_or(Value::array())),
                    ),
                ]),
            }),
            "sendToClient" => api(
                op::SEND_TO_CLIENT,
                vec![r.required("client_id")?, message_arg(r.get("message"))],
                bool_send,
            ),
            "sendToCurrentClient" => api(
                op::SEND_TO_CURRENT_CLIENT,
                vec![message_arg(r.get("message"))],
                bool_send,
            ),
            "sendToAll" => api(
                op::SEND_TO_ALL,
                vec![
                    message_arg(r.get("message")),
                    r.or_null("client_id_list"),
                    r.or_null("exclude"),
                ],
                void,
            ),
            "sendToUid" => api(
                op::SEND_TO_UID,
                vec![r.required("uid")?, message_arg(r.get("message"))],
                void,
            ),
            "sendToGroup" => {
                if php_empty(r.get("group")) {
                    return Ok(Out::V(Value::Bool(false)));
                }
                api(
                    op::SEND_TO_GROUP,
                    vec![
                        r.or_null("group"),
                        message_arg(r.get("message")),
                        r.or_null("exclude"),
                    ],
                    void,
                )
            }
            "bindUid" | "unbindUid" | "joinGroup" | "leaveGroup" => {
                let (code, what) = match name {
                    "bindUid" => (op::BIND_UID, "uid"),
                    "unbindUid" => (op::UNBIND_UID, "uid"),
                    "joinGroup" => (op::JOIN_GROUP, "group"),
                    _ => (op::LEAVE_GROUP, "group"),
                };
                api(code, vec![r.required("client_id")?, r.or_null(what)], void)
            }
            "ungroup" => {
                if php_empty(r.get("group")) {
                    return Ok(Out::V(Value::Bool(false)));
                }
                api(op::UNGROUP, vec![r.or_null("group")], void)
            }
            "isOnline" => api(op::IS_ONLINE, vec![r.required("client_id")?], norm_int),
            "isUidOnline" => api(op::IS_UID_ONLINE, vec![r.required("uid")?], norm_int),
            "getClientIdByUid" => api(
                op::GET_CLIENT_ID_BY_UID,
                vec![r.required("uid")?],
                norm_list,
            ),
            "getUidByClientId" => api(
                op::GET_UID_BY_CLIENT_ID,
                vec![r.required("client_id")?],
                plain,
            ),
            "getClientIdListByGroup" => api(
                op::GET_CLIENT_ID_LIST_BY_GROUP,
                vec![r.or_empty("group")],
                norm_list,
            ),
            "getClientSessionsByGroup" => api(
                op::GET_CLIENT_SESSIONS_BY_GROUP,
                vec![r.or_empty("group")],
                |v| norm_map(v, norm_session),
            ),
            "getClientCountByGroup" | "getClientIdCountByGroup" => api(
                op::GET_CLIENT_COUNT_BY_GROUP,
                vec![r.or_empty("group")],
                norm_int,
            ),
            "getAllClientIdList" => api(op::GET_ALL_CLIENT_ID_LIST, vec![], norm_list),
            "getAllClientSessions" => api(
                op::GET_ALL_CLIENT_SESSIONS,
                vec![r.or_empty("group")],
                |v| norm_map(v, norm_session),
            ),
            "getAllClientIdCount" | "getAllClientCount" => {
                api(op::GET_ALL_CLIENT_COUNT, vec![], norm_int)
            }
            "getAllUidList" => api(op::GET_ALL_UID_LIST, vec![], norm_list),
            "getAllUidCount" => api(op::GET_ALL_UID_COUNT, vec![], norm_int),
            "getUidListByGroup" => api(
                op::GET_UID_LIST_BY_GROUP,
                vec![r.or_empty("group")],
                norm_list,
            ),
            "getUidCountByGroup" => api(
                op::GET_UID_COUNT_BY_GROUP,
                vec![r.or_empty("group")],
                norm_int,
            ),
            "getAllGroupIdList" => api(op::GET_ALL_GROUP_ID_LIST, vec![], norm_list),
            "getAllGroupUidList" => api(op::GET_ALL_GROUP_UID_LIST, vec![], |v| {
                norm_map(v, norm_list)
            }),
            "getAllGroupUidCount" => api(op::GET_ALL_GROUP_UID_COUNT, vec![], |v| {
                norm_map(v, norm_int)
            }),
            "getAllGroupClientIdList" => api(op::GET_ALL_GROUP_CLIENT_ID_LIST, vec![], |v| {
                norm_map(v, norm_list)
            }),
            "getAllGroupClientIdCount" => api(op::GET_ALL_GROUP_CLIENT_ID_COUNT, vec![], |v| {
                norm_map(v, norm_int)
            }),
            "batchGetClientIdByUid" => api(
                op::BATCH_GET_CLIENT_ID_BY_UID,
                vec![r.required("uids")?],
                |v| norm_map(v, norm_list),
            ),
            "batchGetClientIdCountByGroup" => api(
                op::BATCH_GET_CLIENT_ID_COUNT_BY_GROUP,
                vec![r.required("groups")?],
                |v| norm_map(v, norm_int),
            ),
            "isUidsOnline" => api(op::IS_UIDS_ONLINE, vec![r.required("uids")?], |v| {
                norm_map(v, norm_int)
            }),
            "setSession" | "updateSession" => {
                let s = r.required("session")?;
                if !matches!(s, Value::Array(_)) {
                    return Err("session must be an object".into());
                }
                let code = if name == "setSession" {
                    op::SET_SESSION
                } else {
                    op::UPDATE_SESSION
                };
                api(code, vec![r.required("client_id")?, s], void)
            }
            "getSession" => api(
                op::GET_SESSION,
                vec![r.required("client_id")?],
                norm_session,
            ),
            "sessionGet" => session::get().map(norm_session).map_err(err_text),
            "sessionSet" => {
                let key = r
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or("missing argument key")?
                    .to_string();
                let value = r.or_null("value");
                session::update(|s| {
                    s.set(&key, value);
                    s.clone()
                })
                .map(norm_session)
                .map_err(err_text)
            }
            "sessionUnset" => {
                let key = r
                    .get("key")
                    .and_then(Value::as_str)
                    .ok_or("missing argument key")?
                    .to_string();
                session::update(|s| {
                    if matches!(s, Value::Array(_)) {
                        s.remove(&key);
                    }
                    s.clone()
                })
                .map(norm_session)
                .map_err(err_text)
            }
            "sessionReplace" => {
                let s = r.or_null("session");
                if !matches!(s, Value::Null | Value::Array(_)) {
                    return Err("session must be an object or null".into());
                }
                session::set(&s).map_err(err_text)?;
                Ok(norm_session(s))
            }
            "closeClient" => api(
                op::CLOSE_CLIENT,
                vec![
                    r.required("client_id")?,
                    r.get("message")
                        .map(|m| message_arg(Some(m)))
                        .unwrap_or(Value::Null),
                ],
                bool_send,
            ),
            "destroyClient" | "destoryClient" => api(
                op::DESTROY_CLIENT,
                vec![r.required("client_id")?],
                bool_send,
            ),
            "closeCurrentClient" | "destroyCurrentClient" | "destoryCurrentClient" => {
                // The reply goes first (only at top level; sub-ops of multi never reply early).
                if let Some(id) = id {
                    reply(id, Ok(Out::V(Value::Null)));
                    self.replied = true;
                }
                let res = if name == "closeCurrentClient" {
                    let m = r
                        .get("message")
                        .map(|m| message_arg(Some(m)))
                        .unwrap_or(Value::Null);
                    gateway::call(op::CLOSE_CURRENT_CLIENT, vec![m])
                } else {
                    gateway::call(op::DESTROY_CURRENT_CLIENT, vec![])
                };
                res.map(void).map_err(err_text)
            }
            other => Err(format!("unknown op {}", other)),
        }
    }
}

impl Events for Probe {
    fn on_connect(&mut self, client_id: &str) {
        let msg = format!("{{\"event\":\"connect\",\"client_id\":\"{}\"}}", client_id);
        let _ = gateway::send_to_current_client(msg.as_bytes(), false);
    }

    fn on_websocket_connect(&mut self, client_id: &str, data: Value) {
        self.handshakes.insert(client_id.to_string(), data);
    }

    fn on_close(&mut self, client_id: &str) {
        self.handshakes.remove(client_id);
        let s = session::get().unwrap_or(Value::Null);
        let msg = obj(vec![
            ("event", Out::V(Value::str("close"))),
            ("client_id", Out::V(Value::str(client_id))),
            ("session", norm_session(s)),
        ]);
        let _ = gateway::send_to_group("closewatch", to_json(&msg), None);
    }

    fn on_message(&mut self, client_id: &str, message: Message<'_>) {
        let req = json::parse(message.data);
        let op_name = req
            .as_ref()
            .and_then(|r| r.get("op"))
            .and_then(Value::as_str)
            .map(String::from);
        let (req, op_name) = match (req, op_name) {
            (Some(r), Some(n)) => (r, n),
            _ => return plain_echo(message.data),
        };
        let empty = Value::array();
        let args = match req.get("args") {
            Some(a @ Value::Array(_)) => a,
            _ => &empty,
        };
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        self.replied = false;
        let result = self.run(client_id, &op_name, &Request { args }, Some(&id));
        if !self.replied {
            reply(&id, result);
        }
    }
}

/// Not an op request: the bytes come back if they are UTF-8, else a digest.
fn plain_echo(data: &[u8]) {
    if std::str::from_utf8(data).is_ok() {
        let _ = gateway::send_to_current_client(data, false);
    } else {
        let msg = format!(
            "{{\"event\":\"raw_binary\",\"len\":{},\"md5\":\"{}\"}}",
            data.len(),
            md5::hex(data)
        );
        let _ = gateway::send_to_current_client(msg.as_bytes(), false);
    }
}

gw_sdk::export_worker!(Probe);
