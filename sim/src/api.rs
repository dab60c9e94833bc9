//! The GatewayClient library as a host of the world: its connector over turmoil's TCP,
//! the calls the `api` host makes, and its answers normalised the way the probe
//! normalises a worker's (`ops.md` §4), so that one model checks both.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use gatewayworker::api::ApiCall;
use gatewayworker::client::exchange::{ClientStream, Connector, ConnectorFuture, Stream};
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use serde_json::{json, Map, Value};

use crate::php::{self, Key, Php};

/// A turmoil TCP stream as the client library holds it.
#[derive(Debug)]
struct SimStream(turmoil::net::TcpStream);

impl tokio::io::AsyncRead for SimStream {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SimStream {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl ClientStream for SimStream {
    /// turmoil streams cannot be probed without reading: never reused (the simulation
    /// runs the library in its default, non-persistent mode anyway).
    fn idle_usable(&self) -> bool {
        false
    }
}

/// The client library's connector over turmoil: TCP to simulated hosts, names looked up
/// in the simulation.
#[derive(Debug, Clone, Copy, Default)]
pub struct TurmoilConnector;

impl Connector for TurmoilConnector {
    fn connect(&self, addr: SocketAddr) -> ConnectorFuture<'_, io::Result<Stream>> {
        Box::pin(async move {
            let stream = turmoil::net::TcpStream::connect(addr).await?;
            Ok(Box::new(SimStream(stream)) as Stream)
        })
    }

    fn resolve<'a>(&'a self, address: &'a str) -> ConnectorFuture<'a, Result<SocketAddr, String>> {
        Box::pin(async move {
            let (host, port) = address
                .rsplit_once(':')
                .ok_or_else(|| format!("bad address `{address}`"))?;
            let port: u16 = port.parse().map_err(|e| format!("{address}: {e}"))?;
            Ok(SocketAddr::new(turmoil::lookup(host), port))
        })
    }
}

/// The client library's call for query `name` with the op language's `args`.
pub fn query_call(name: &str, args: &Value) -> Option<ApiCall> {
    let text = |k: &str| Bytes::from(args[k].as_str().unwrap_or("").to_string());
    let list = |k: &str| -> Vec<Bytes> {
        args[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| Bytes::from(s.to_string()))
            .collect()
    };
    Some(match name {
        "isOnline" => ApiCall::IsOnline {
            client_id: text("client_id"),
        },
        "isUidOnline" => ApiCall::IsUidOnline { uid: text("uid") },
        "getClientIdByUid" => ApiCall::GetClientIdByUid { uid: text("uid") },
        "getUidByClientId" => ApiCall::GetUidByClientId {
            client_id: text("client_id"),
        },
        "getClientIdListByGroup" => ApiCall::GetClientIdListByGroup {
            group: text("group"),
        },
        "getClientSessionsByGroup" => ApiCall::GetClientSessionsByGroup {
            group: text("group"),
        },
        "getClientCountByGroup" | "getClientIdCountByGroup" => ApiCall::GetClientCountByGroup {
            group: text("group"),
        },
        "getAllClientIdList" => ApiCall::GetAllClientIdList,
        "getAllClientSessions" => ApiCall::GetAllClientSessions {
            group: text("group"),
        },
        "getAllClientIdCount" | "getAllClientCount" => ApiCall::GetAllClientCount,
        "getAllUidList" => ApiCall::GetAllUidList,
        "getAllUidCount" => ApiCall::GetAllUidCount,
        "getUidListByGroup" => ApiCall::GetUidListByGroup {
            group: text("group"),
        },
        "getUidCountByGroup" => ApiCall::GetUidCountByGroup {
            group: text("group"),
        },
        "getAllGroupIdList" => ApiCall::GetAllGroupIdList,
        "getAllGroupUidList" => ApiCall::GetAllGroupUidList,
        "getAllGroupUidCount" => ApiCall::GetAllGroupUidCount,
        "getAllGroupClientIdList" => ApiCall::GetAllGroupClientIdList,
        "getAllGroupClientIdCount" => ApiCall::GetAllGroupClientIdCount,
        "getSession" => ApiCall::GetSession {
            client_id: text("client_id"),
        },
        "batchGetClientIdByUid" => ApiCall::BatchGetClientIdByUid { uids: list("uids") },
        "batchGetClientIdCountByGroup" => ApiCall::BatchGetClientIdCountByGroup {
            groups: list("groups"),
        },
        "isUidsOnline" => ApiCall::IsUidsOnline { uids: list("uids") },
        _ => return None,
    })
}

/// A library value as the model's PHP value (data only: no library logic).
fn model_value(v: &PhpValue) -> Php {
    match v {
        PhpValue::Null => Php::Null,
        PhpValue::Bool(b) => Php::Bool(*b),
        PhpValue::Int(i) => Php::Int(*i),
        PhpValue::Float(f) => Php::Float(*f),
        PhpValue::Str(s) => Php::Str(String::from_utf8_lossy(s).into_owned()),
        PhpValue::Array(a) => Php::Arr(
            a.iter()
                .map(|(k, v)| {
                    let key = match k {
                        PhpKey::Int(i) => Key::Int(*i),
                        PhpKey::Str(s) => Key::Str(String::from_utf8_lossy(s).into_owned()),
                    };
                    (key, model_value(v))
                })
                .collect(),
        ),
    }
}

/// A model value as the library's (data only): the sessions the `api` host sets, built
/// as a PHP program builds its array (the model decided each key's type).
pub fn library_value(v: &Php) -> PhpValue {
    match v {
        Php::Null => PhpValue::Null,
        Php::Bool(b) => PhpValue::Bool(*b),
        Php::Int(i) => PhpValue::Int(*i),
        Php::Float(f) => PhpValue::Float(*f),
        Php::Str(s) => PhpValue::str(s),
        Php::Arr(a) => library_array(a),
    }
}

/// A model array as the library's [`PhpValue::Array`].
pub fn library_array(a: &php::Array) -> PhpValue {
    let mut out = PhpArray::new();
    for (key, value) in a {
        let key = match key {
            Key::Int(i) => PhpKey::Int(*i),
            Key::Str(s) => PhpKey::Str(Bytes::copy_from_slice(s.as_bytes())),
        };
        out.insert(key, library_value(value));
    }
    PhpValue::Array(out)
}

fn entries(v: &PhpValue) -> Vec<(String, &PhpValue)> {
    match v {
        PhpValue::Array(a) => a
            .iter()
            .map(|(k, v)| {
                let key = match k {
                    PhpKey::Int(i) => i.to_string(),
                    PhpKey::Str(s) => String::from_utf8_lossy(s).into_owned(),
                };
                (key, v)
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn int(v: &PhpValue) -> Value {
    match v {
        PhpValue::Int(i) => json!(i),
        PhpValue::Bool(b) => json!(i64::from(*b)),
        _ => json!(0),
    }
}

/// §4 list: the values, sorted byte-wise as strings.
fn list(v: &PhpValue) -> Value {
    let mut items: Vec<Value> = entries(v)
        .into_iter()
        .map(|(_, v)| php::to_json(&model_value(v)))
        .collect();
    let key = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    items.sort_by_key(key);
    Value::Array(items)
}

/// §4 map: keys sorted byte-wise, values by `f`.
fn map(v: &PhpValue, f: fn(&PhpValue) -> Value) -> Value {
    let mut e = entries(v);
    e.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    Value::Object(e.into_iter().map(|(k, v)| (k, f(v))).collect::<Map<_, _>>())
}

/// §4 session: null and false stay, an array is a top-level object.
fn session(v: &PhpValue) -> Value {
    match model_value(v) {
        Php::Arr(a) => php::object(&a),
        other => php::to_json(&other),
    }
}

/// The answer of query `name` normalised as the probe normalises a worker's.
pub fn normalise(name: &str, v: &PhpValue) -> Value {
    match name {
        "isOnline"
        | "isUidOnline"
        | "getClientCountByGroup"
        | "getClientIdCountByGroup"
        | "getAllClientIdCount"
        | "getAllClientCount"
        | "getAllUidCount"
        | "getUidCountByGroup" => int(v),
        "getClientIdByUid"
        | "getClientIdListByGroup"
        | "getAllClientIdList"
        | "getAllUidList"
        | "getUidListByGroup"
        | "getAllGroupIdList" => list(v),
        "getClientSessionsByGroup" | "getAllClientSessions" => map(v, session),
        "getAllGroupUidList" | "getAllGroupClientIdList" | "batchGetClientIdByUid" => map(v, list),
        "getAllGroupUidCount"
        | "getAllGroupClientIdCount"
        | "batchGetClientIdCountByGroup"
        | "isUidsOnline" => map(v, int),
        "getSession" => session(v),
        _ => php::to_json(&model_value(v)),
    }
}
