//! The `probe` test worker: runs the op language of `spec/ops.md` (requests
//! `{"op":..,"args":{..},"id":..}` executed as Gateway API calls, replies
//! `{"id":..,"ok":..,"result"|"error":..}`), so a test client cannot tell it from the PHP
//! reference worker.
//!
//! `sleep` needs a host whose API handler offers `gw.sleep_ms` (else it answers `ok:false`).
//!
//! Requests are read the way the reference reads them, `json_decode($message, true)`: JSON
//! objects and lists are both PHP arrays (so `{}` in `data` or `id` comes back as `[]`), an
//! argument that is missing or `null` counts as not given (`$args[$k] ?? ...`). Replies are
//! `json_encode(..., JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE |
//! JSON_INVALID_UTF8_SUBSTITUTE)`; where PHP's encoder would fail (NaN/INF, nesting beyond
//! 512) the text is empty, as `sendToCurrentClient(false)` sends an empty message.

mod md5;

use std::collections::BTreeMap;

use gw_sdk::gateway::{self, op};
use gw_sdk::{json, session, Events, Key, Message, Value};

/// A reply tree: plain values are JSON-encoded as PHP's `json_encode` would, `Map` is
/// always an object (even empty: `{}`), `List` always a list.
enum Out {
    V(Value),
    Map(Vec<(Vec<u8>, Out)>),
    List(Vec<Out>),
}

fn encode(out: &Out, depth: usize, s: &mut String) -> Result<(), json::EncodeError> {
    match out {
        Out::V(v) => json::encode_value_into(v, depth, s)?,
        Out::Map(entries) => {
            if depth >= json::PHP_DEPTH_MAX {
                return Err(json::EncodeError::Depth);
            }
            s.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                json::encode_str_into(k, s);
                s.push(':');
                encode(v, depth + 1, s)?;
            }
            s.push('}');
        }
        Out::List(items) => {
            if depth >= json::PHP_DEPTH_MAX {
                return Err(json::EncodeError::Depth);
            }
            s.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                encode(v, depth + 1, s)?;
            }
            s.push(']');
        }
    }
    Ok(())
}

/// The JSON text, or `""` where PHP's `json_encode` returns false.
fn to_json(out: &Out) -> String {
    let mut s = String::new();
    match encode(out, 0, &mut s) {
        Ok(()) => s,
        Err(_) => String::new(),
    }
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
        Value::Float(f) => gw_sdk::float::to_php_string(*f).into_bytes(),
        Value::Array(_) => b"Array".to_vec(),
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

/// A sessions query: client id ⇒ session, where the caller's own entry is its current
/// `$_SESSION` (`(array)$_SESSION`), as `Lib\Gateway::getAllClientSessions` builds it
/// in-process: the gateway's copy may predate changes made in this event.
fn sessions(code: i32, group: Value, client_id: &str) -> OpResult {
    let mut v = gateway::call(code, vec![group]).map_err(err_text)?;
    let own = Key::from_str_like(client_id.as_bytes());
    if let Value::Array(entries) = &mut v {
        if let Some(entry) = entries.iter_mut().find(|(k, _)| *k == own) {
            entry.1 = match session::get() {
                Ok(a @ Value::Array(_)) => a,
                _ => Value::array(),
            };
        }
    }
    Ok(norm_map(v, norm_session))
}

/// `sendToGroup`/`ungroup`: `false` stays, anything else is void.
fn false_or_null(v: Value) -> Out {
    Out::V(if v == Value::Bool(false) {
        v
    } else {
        Value::Null
    })
}

/// The `group` of a query that `Lib\Gateway` guards with `isValidGroupId`: `None` when it is
/// PHP-empty (the query answers its empty result without any call).
fn group_guard(r: &Request<'_>) -> Result<Option<Value>, String> {
    if r.args.get("group").is_none() {
        return Err("missing argument group".into());
    }
    Ok(if php_empty(r.get("group")) {
        None
    } else {
        r.get("group").cloned()
    })
}

fn void(_: Value) -> Out {
    Out::V(Value::Null)
}

/// A `message` argument: strings as they are, anything else as its JSON text (`""` where
/// `json_encode` fails, as PHP sends `false`).
fn message_value(v: &Value) -> Value {
    match v {
        Value::Str(s) => Value::Str(s.clone()),
        other => Value::str(&json::encode_php(other).unwrap_or_default()),
    }
}

/// PHP `empty()` of a group argument (`""`, `"0"`, `0`, `[]`, null, false).
fn php_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => true,
        Some(Value::Str(s)) => s.is_empty() || s == b"0",
        Some(Value::Int(n)) => *n == 0,
        Some(Value::Float(f)) => *f == 0.0,
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
    /// `$args[key]`, where `null` counts as not given (`isset`).
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.args.get(key).filter(|v| **v != Value::Null)
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

    /// A required `message`.
    fn message(&self) -> Result<Value, String> {
        self.required("message").map(|m| message_value(&m))
    }

    /// An optional `message`: null when not given.
    fn optional_message(&self) -> Value {
        self.get("message")
            .map(message_value)
            .unwrap_or(Value::Null)
    }

    /// A `$_SESSION` key: strings and ints as PHP uses them as array keys.
    fn session_key(&self) -> Result<String, String> {
        match self.required("key")? {
            Value::Str(s) => String::from_utf8(s).map_err(|_| String::from("bad key")),
            Value::Int(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok((b as i64).to_string()),
            Value::Float(f) if f.is_finite() => Ok((f.trunc() as i64).to_string()),
            _ => Err(String::from("Illegal offset type")),
        }
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
                // (int)$ms, clamped to 0..2000.
                let ms = match r.get("ms") {
                    Some(Value::Int(n)) => *n,
                    Some(Value::Float(f)) if f.is_finite() => f.trunc() as i64,
                    Some(Value::Bool(b)) => *b as i64,
                    _ => 0,
                }
                .clamp(0, 2000);
                gw_sdk::sleep_ms(ms as u32).map_err(err_text)?;
                Ok(Out::V(Value::Null))
            }
            "multi" => {
                let ops = match r.required("ops")? {
                    Value::Array(entries) => entries,
                    _ => return Err("ops must be a list".into()),
                };
                let empty = Value::array();
                let mut results = Vec::new();
                for (_, sub) in &ops {
                    let res = match sub.get("op") {
                        Some(Value::Str(n)) if matches!(sub, Value::Array(_)) => {
                            let sub_args = match sub.get("args") {
                                Some(a @ Value::Array(_)) => a,
                                _ => &empty,
                            };
                            let n = String::from_utf8_lossy(n).into_owned();
                            self.run(client_id, &n, &Request { args: sub_args }, None)
                        }
                        _ => Err("a sub-op is {\"op\":..,\"args\":{..}}".into()),
                    };
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
                vec![r.required("client_id")?, r.message()?],
                bool_send,
            ),
            "sendToCurrentClient" => api(op::SEND_TO_CURRENT_CLIENT, vec![r.message()?], bool_send),
            "sendToAll" => api(
                op::SEND_TO_ALL,
                vec![
                    r.message()?,
                    r.or_null("client_id_list"),
                    r.or_null("exclude"),
                ],
                void,
            ),
            "sendToUid" => api(
                op::SEND_TO_UID,
                vec![r.required("uid")?, r.message()?],
                void,
            ),
            // Lib\Gateway refuses PHP-empty groups itself (isValidGroupId), before any I/O.
            // The host API cannot tell "0" from ["0"], so the check stays here.
            "sendToGroup" => {
                let message = r.message()?;
                if php_empty(r.get("group")) {
                    return Ok(Out::V(Value::Bool(false)));
                }
                api(
                    op::SEND_TO_GROUP,
                    vec![r.or_null("group"), message, r.or_null("exclude")],
                    false_or_null,
                )
            }
            "bindUid" | "unbindUid" | "joinGroup" | "leaveGroup" => {
                let (code, what) = match name {
                    "bindUid" => (op::BIND_UID, "uid"),
                    "unbindUid" => (op::UNBIND_UID, "uid"),
                    "joinGroup" => (op::JOIN_GROUP, "group"),
                    _ => (op::LEAVE_GROUP, "group"),
                };
                let client = r.required("client_id")?;
                api(code, vec![client, r.required(what)?], void)
            }
            "ungroup" => {
                if php_empty(r.get("group")) {
                    return Ok(Out::V(Value::Bool(false)));
                }
                api(op::UNGROUP, vec![r.or_null("group")], false_or_null)
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
            "getClientIdListByGroup" => match group_guard(r)? {
                None => Ok(Out::List(Vec::new())),
                Some(g) => api(op::GET_CLIENT_ID_LIST_BY_GROUP, vec![g], norm_list),
            },
            "getClientSessionsByGroup" => match group_guard(r)? {
                None => Ok(Out::Map(Vec::new())),
                Some(g) => sessions(op::GET_CLIENT_SESSIONS_BY_GROUP, g, client_id),
            },
            "getClientCountByGroup" | "getClientIdCountByGroup" => api(
                op::GET_CLIENT_COUNT_BY_GROUP,
                vec![r.or_empty("group")],
                norm_int,
            ),
            "getAllClientIdList" => api(op::GET_ALL_CLIENT_ID_LIST, vec![], norm_list),
            "getAllClientSessions" => {
                sessions(op::GET_ALL_CLIENT_SESSIONS, r.or_empty("group"), client_id)
            }
            "getAllClientIdCount" | "getAllClientCount" => {
                api(op::GET_ALL_CLIENT_COUNT, vec![], norm_int)
            }
            "getAllUidList" => api(op::GET_ALL_UID_LIST, vec![], norm_list),
            "getAllUidCount" => api(op::GET_ALL_UID_COUNT, vec![], norm_int),
            "getUidListByGroup" => match group_guard(r)? {
                None => Ok(Out::List(Vec::new())),
                Some(g) => api(op::GET_UID_LIST_BY_GROUP, vec![g], norm_list),
            },
            "getUidCountByGroup" => match group_guard(r)? {
                None => Ok(Out::V(Value::Int(0))),
                Some(g) => api(op::GET_UID_COUNT_BY_GROUP, vec![g], norm_int),
            },
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
            // GatewayClient-only methods do not exist on the worker-side Lib\Gateway: calling
            // one is an error in the reference worker, and no call is made.
            "batchGetClientIdByUid" | "batchGetClientIdCountByGroup" | "isUidsOnline" => {
                Err(format!("{} is not available in a worker", name))
            }
            "setSession" | "updateSession" => {
                let client = r.required("client_id")?;
                let s = r.required("session")?;
                if !matches!(s, Value::Array(_)) {
                    return Err("session must be an object".into());
                }
                let code = if name == "setSession" {
                    op::SET_SESSION
                } else {
                    op::UPDATE_SESSION
                };
                api(code, vec![client, s], void)
            }
            "getSession" => api(
                op::GET_SESSION,
                vec![r.required("client_id")?],
                norm_session,
            ),
            "sessionGet" => session::get().map(norm_session).map_err(err_text),
            "sessionSet" => {
                let key = r.session_key()?;
                let value = r.or_null("value");
                let mut s = session::get().map_err(err_text)?;
                s.set(&key, value);
                session::set(&s).map_err(err_text)?;
                Ok(norm_session(s))
            }
            "sessionUnset" => {
                let key = r.session_key()?;
                let mut s = session::get().map_err(err_text)?;
                if matches!(s, Value::Array(_)) {
                    s.remove(&key);
                    session::set(&s).map_err(err_text)?;
                }
                Ok(norm_session(s))
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
                vec![r.required("client_id")?, r.optional_message()],
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
                    gateway::call(op::CLOSE_CURRENT_CLIENT, vec![r.optional_message()])
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
        let req = json::parse_with_depth(message.data, json::PHP_DEPTH_MAX);
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
