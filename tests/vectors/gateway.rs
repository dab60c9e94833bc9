//! The gateway vectors (`gateway_scenarios`, `routing`, `client_heartbeat`,
//! `connection_id_allocation`, `websocket_connect_body`) fed through [`GatewayCore`],
//! comparing frames, reply records, client writes and state snapshots byte for byte.
//!
//! The reference harness drove a real Gateway with fake connections: clients were handed
//! decoded messages and "sent" PHP values, and a websocket client never did a handshake.
//! Here clients are real: websocket clients complete a handshake right after connecting
//! (its ON_WEBSOCKET_CONNECT frame and 101 response are checked, then set aside), messages
//! are fed as masked websocket frames or text lines, and a client write is compared with
//! the bytes the client protocol makes of the recorded value.
//!
//! Where a vector records a quirk we deliberately fix (quirk 10, the deferred worker-key
//! removal), the test says so and asserts our behaviour instead.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::gateway::{
    Action, ConnectionId, GatewayConfig, GatewayCore, GatewaySnapshot, IdAllocator, LinkId,
    PublicProtocol, Target,
};
use gatewayworker::protocol::php::{PhpKey, PhpValue};
use gatewayworker::testing::vectors::{bytes, encode_hex, php, section, vector};
use serde_json::Value;

const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

/// What a step produced, in a form both our actions and the vectors' events map to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    /// Bytes to a link (event frame or reply record), by label.
    Link(String, String),
    /// Bytes to a client.
    Client(u32, String),
    /// Graceful close of a client (after its final message).
    ClientClose(u32),
    /// Immediate close of a client.
    ClientDestroy(u32),
    /// Close of a link, by label.
    LinkClose(String),
}

struct Harness {
    core: GatewayCore,
    now: Duration,
    protocol: PublicProtocol,
    links: HashMap<String, LinkId>,
    labels: HashMap<LinkId, String>,
    clients: HashMap<String, ConnectionId>,
    /// Links whose output is never reported flushed (to keep a close pending).
    held: HashSet<String>,
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip in vector")
}

fn config_of(v: &Value, protocol: PublicProtocol) -> GatewayConfig {
    let c = &v["config"];
    let mut config = GatewayConfig::new(
        c["lanIp"].as_str().unwrap().parse().unwrap(),
        c["lanPort"].as_u64().unwrap() as u16,
        c["gateway_port"].as_u64().unwrap_or(8282) as u16,
    );
    config.secret_key = Bytes::from(c["secretKey"].as_str().unwrap_or("").to_string());
    config.protocol = protocol;
    config
}

/// The public protocol of a scenario, from its clients.
fn protocol_of(v: &Value) -> PublicProtocol {
    for step in v["steps"].as_array().unwrap() {
        if let Some(p) = step["client"]["protocol"].as_str() {
            return match p {
                "Workerman\\Protocols\\Websocket" => PublicProtocol::Websocket,
                "Workerman\\Protocols\\Text" => PublicProtocol::Text,
                other => panic!("unexpected client protocol {other}"),
            };
        }
    }
    PublicProtocol::Websocket
}

/// A masked websocket frame (text) carrying `payload`.
fn ws_client_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut out = vec![0x81];
    match payload.len() {
        n if n <= 125 => out.push(0x80 | n as u8),
        n if n <= 65535 => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A server websocket text frame (what the gateway must write).
fn ws_server_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n if n <= 125 => out.push(n as u8),
        n if n <= 65535 => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// JSON of a PHP value as websocket `json_encode` makes it, for the plain shapes the
/// vectors use (string maps and lists), written with serde_json independently of the
/// gateway's encoder.
fn json_of(value: &PhpValue) -> Vec<u8> {
    fn to_json(value: &PhpValue) -> serde_json::Value {
        match value {
            PhpValue::Null => serde_json::Value::Null,
            PhpValue::Int(n) => (*n).into(),
            PhpValue::Str(s) => std::str::from_utf8(s).expect("utf-8").into(),
            PhpValue::Array(a) => {
                let is_list = a
                    .iter()
                    .enumerate()
                    .all(|(i, (k, _))| *k == PhpKey::Int(i as i64));
                if is_list {
                    a.iter().map(|(_, v)| to_json(v)).collect()
                } else {
                    let mut map = serde_json::Map::new();
                    for (k, v) in a.iter() {
                        map.insert(
                            String::from_utf8(k.to_bytes().to_vec()).unwrap(),
                            to_json(v),
                        );
                    }
                    serde_json::Value::Object(map)
                }
            }
            other => panic!("no such value in the gateway vectors: {other:?}"),
        }
    }
    serde_json::to_vec(&to_json(value)).unwrap()
}

impl Harness {
    fn new(config: GatewayConfig) -> Harness {
        let protocol = config.protocol;
        let now = Duration::from_secs(100);
        Harness {
            core: GatewayCore::new(config, now),
            now,
            protocol,
            links: HashMap::new(),
            labels: HashMap::new(),
            clients: HashMap::new(),
            held: HashSet::new(),
        }
    }

    /// Drains the core, reporting every link write flushed (unless held) and every
    /// client write flushed.
    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(action) = self.core.poll_action() {
            if let Action::Transmit { to, bytes } = &action {
                match to {
                    Target::Link(l) => {
                        if !self
                            .held
                            .contains(self.labels.get(l).map(String::as_str).unwrap_or(""))
                        {
                            self.core.handle_link_flushed(self.now, *l, bytes.len());
                        }
                    }
                    Target::Client(c) => self.core.handle_client_flushed(self.now, *c, bytes.len()),
                    Target::Register(_) => {}
                }
            }
            out.push(action);
        }
        self.core.check_invariants();
        out
    }

    fn seen(&self, actions: &[Action]) -> Vec<Seen> {
        actions
            .iter()
            .map(|a| match a {
                Action::Transmit {
                    to: Target::Link(l),
                    bytes,
                } => Seen::Link(self.labels[l].clone(), encode_hex(bytes)),
                Action::Transmit {
                    to: Target::Client(c),
                    bytes,
                } => Seen::Client(c.0, encode_hex(bytes)),
                Action::CloseClient {
                    id,
                    after_flush: true,
                    ..
                } => Seen::ClientClose(id.0),
                Action::CloseClient {
                    id,
                    after_flush: false,
                    ..
                } => Seen::ClientDestroy(id.0),
                Action::CloseLink { id, .. } => Seen::LinkClose(self.labels[id].clone()),
                other => panic!("unexpected action {other:?}"),
            })
            .collect()
    }

    fn link(&mut self, label: &str, peer: SocketAddr) -> LinkId {
        if let Some(l) = self.links.get(label) {
            return *l;
        }
        let l = self
            .core
            .handle_link_connected(self.now, peer)
            .expect("link accepted");
        self.links.insert(label.to_string(), l);
        self.labels.insert(l, label.to_string());
        l
    }

    /// The bytes the client protocol writes for a recorded client value.
    fn client_bytes(&self, data: &Value, raw: bool) -> String {
        let payload = match php(data) {
            PhpValue::Str(s) => s.to_vec(),
            PhpValue::Null => b"null".to_vec(),
            v @ PhpValue::Array(_) => json_of(&v),
            other => panic!("unexpected client value {other:?}"),
        };
        if raw {
            return encode_hex(&payload);
        }
        match self.protocol {
            PublicProtocol::Websocket => encode_hex(&ws_server_frame(&payload)),
            PublicProtocol::Text => {
                let mut p = payload;
                p.push(b'\n');
                encode_hex(&p)
            }
            PublicProtocol::Frame => unreachable!("no frame-protocol vectors"),
        }
    }

    fn expected(&self, events: &Value, ignore_destroy: bool) -> Vec<Seen> {
        let mut out = Vec::new();
        for e in events.as_array().unwrap() {
            let cid = || e["connection_id"].as_u64().unwrap() as u32;
            match e["event"].as_str().unwrap() {
                "inner_send_frame" => out.push(Seen::Link(
                    e["to"].as_str().unwrap().into(),
                    e["frame_hex"].as_str().unwrap().into(),
                )),
                "inner_send_raw" => out.push(Seen::Link(
                    e["to"].as_str().unwrap().into(),
                    e["bytes_hex"].as_str().unwrap().into(),
                )),
                "client_send" => out.push(Seen::Client(
                    cid(),
                    self.client_bytes(&e["data"], e["raw"].as_bool().unwrap()),
                )),
                "client_close" => {
                    if php(&e["final_data"]) != PhpValue::Null {
                        out.push(Seen::Client(
                            cid(),
                            self.client_bytes(&e["final_data"], false),
                        ));
                    }
                    out.push(Seen::ClientClose(cid()));
                }
                "client_destroy" if ignore_destroy => {}
                "client_destroy" => out.push(Seen::ClientDestroy(cid())),
                "inner_close" => out.push(Seen::LinkClose(e["to"].as_str().unwrap().into())),
                other => panic!("unknown event kind {other}"),
            }
        }
        out
    }

    /// Connects a client; a websocket client then completes its handshake, whose
    /// ON_WEBSOCKET_CONNECT frame and 101 response are checked and set aside.
    fn connect_client(
        &mut self,
        label: &str,
        peer: SocketAddr,
    ) -> (Option<ConnectionId>, Vec<Action>) {
        let id = self
            .core
            .handle_client_connected(self.now, peer)
            .expect("client accepted");
        let actions = self.drain();
        let destroyed = actions
            .iter()
            .any(|a| matches!(a, Action::CloseClient { id: c, .. } if *c == id));
        self.clients.insert(label.to_string(), id);
        if self.protocol == PublicProtocol::Websocket && !destroyed {
            let request = format!(
                "GET /ws HTTP/1.1\r\nHost: gw\r\nSec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            );
            self.core
                .handle_client_bytes(self.now, id, request.as_bytes());
            let hs = self.drain();
            assert_eq!(
                hs.len(),
                2,
                "handshake gives ON_WEBSOCKET_CONNECT and the 101: {hs:?}"
            );
            match &hs[0] {
                Action::Transmit {
                    to: Target::Link(_),
                    bytes,
                } => assert_eq!(bytes[4], 205, "cmd"),
                other => panic!("expected ON_WEBSOCKET_CONNECT, got {other:?}"),
            }
            match &hs[1] {
                Action::Transmit {
                    to: Target::Client(c),
                    bytes,
                } => {
                    assert_eq!(*c, id);
                    assert!(bytes.starts_with(b"HTTP/1.1 101 Switching Protocol\r\n"));
                }
                other => panic!("expected the 101 response, got {other:?}"),
            }
        }
        (Some(id), actions)
    }

    fn send_message(&mut self, label: &str, message: &[u8]) -> Vec<Action> {
        let id = self.clients[label];
        let wire = match self.protocol {
            PublicProtocol::Websocket => ws_client_frame(message),
            PublicProtocol::Text => [message, b"\n"].concat(),
            PublicProtocol::Frame => unreachable!(),
        };
        self.core.handle_client_bytes(self.now, id, &wire);
        self.drain()
    }
}

/// Peer address of a link label: the step's `worker` record, else a fixed address per
/// label (API callers; the secret-key scenario's worker, whose key shows 10.0.0.9).
fn link_peer(step: &Value, label: &str) -> SocketAddr {
    if step["worker"].is_object() {
        let w = &step["worker"];
        return SocketAddr::new(
            ip(w["remote_ip"].as_str().unwrap()),
            w["remote_port"].as_u64().unwrap() as u16,
        );
    }
    let host = if label == "worker" {
        "10.0.0.9"
    } else {
        "10.0.0.100"
    };
    let port = 40000 + label.bytes().map(u16::from).sum::<u16>();
    SocketAddr::new(ip(host), port)
}

/// A typed PHP value, where the state snapshots write a bare JSON `null` for null.
fn php_or_null(v: &Value) -> PhpValue {
    if v.is_null() {
        PhpValue::Null
    } else {
        php(v)
    }
}

fn check_state(snapshot: &GatewaySnapshot, expected: &Value, context: &str) {
    if expected.is_null() {
        return;
    }
    let clients = expected["clients"].as_array().unwrap();
    assert_eq!(
        snapshot.clients.len(),
        clients.len(),
        "{context}: client count"
    );
    for (ours, theirs) in snapshot.clients.iter().zip(clients) {
        let ctx = format!("{context}: client {}", ours.connection_id);
        assert_eq!(
            u64::from(ours.connection_id),
            theirs["connection_id"].as_u64().unwrap(),
            "{ctx}"
        );
        assert_eq!(
            ours.session.to_vec(),
            bytes(&theirs["session"]),
            "{ctx}: session"
        );
        let uid = match php_or_null(&theirs["uid"]) {
            PhpValue::Null => None,
            PhpValue::Str(s) => Some(s),
            other => panic!("uid {other:?}"),
        };
        assert_eq!(ours.uid, uid, "{ctx}: uid");
        let groups = match php_or_null(&theirs["groups"]) {
            PhpValue::Null => None,
            PhpValue::Array(a) => Some(
                a.iter()
                    .map(|(k, v)| {
                        let PhpValue::Str(name) = v else {
                            panic!("group value {v:?}")
                        };
                        assert_eq!(*k, PhpKey::from_bytes(name), "{ctx}: group key normalised");
                        name.clone()
                    })
                    .collect::<Vec<_>>(),
            ),
            other => panic!("groups {other:?}"),
        };
        assert_eq!(ours.groups, groups, "{ctx}: groups");
        let key = theirs["businessworker_address"]
            .as_str()
            .map(|s| Bytes::from(s.to_string()));
        assert_eq!(ours.worker_key, key, "{ctx}: worker key");
    }
    // uid order is not observable in any output: compare as sorted lists.
    let mut uid_index: Vec<(Vec<u8>, Vec<u32>)> = expected["uid_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let uid = match php(&e["uid"]) {
                PhpValue::Str(s) => s.to_vec(),
                PhpValue::Int(n) => n.to_string().into_bytes(),
                other => panic!("uid {other:?}"),
            };
            let ids = e["connection_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (uid, ids)
        })
        .collect();
    uid_index.sort();
    let ours: Vec<(Vec<u8>, Vec<u32>)> = snapshot
        .uid_index
        .iter()
        .map(|(u, ids)| (u.to_vec(), ids.clone()))
        .collect();
    assert_eq!(ours, uid_index, "{context}: uid index");
    let group_index: Vec<(Vec<u8>, Vec<u32>)> = expected["group_index"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let group = match php(&e["group"]) {
                PhpValue::Str(s) => s.to_vec(),
                PhpValue::Int(n) => n.to_string().into_bytes(),
                other => panic!("group {other:?}"),
            };
            let ids = e["connection_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i.as_u64().unwrap() as u32)
                .collect();
            (group, ids)
        })
        .collect();
    let ours: Vec<(Vec<u8>, Vec<u32>)> = snapshot
        .group_index
        .iter()
        .map(|(g, ids)| (g.to_vec(), ids.clone()))
        .collect();
    assert_eq!(ours, group_index, "{context}: group index");
    let keys: Vec<String> = expected["worker_keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<String> = snapshot
        .workers
        .iter()
        .map(|w| String::from_utf8(w.key.to_vec()).unwrap())
        .collect();
    assert_eq!(ours, keys, "{context}: worker keys in tie order");
    let record: Vec<(String, u32)> = match &expected["least_connections_record"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap() as u32))
            .collect(),
        Value::Array(a) if a.is_empty() => Vec::new(),
        other => panic!("least_connections_record {other}"),
    };
    let ours: Vec<(String, u32)> = snapshot
        .workers
        .iter()
        .map(|w| (String::from_utf8(w.key.to_vec()).unwrap(), w.count))
        .collect();
    assert_eq!(ours, record, "{context}: least-connections record");
}

/// Runs one scenario (gateway_scenarios or routing). `fixed` lists the steps where we
/// assert our own behaviour instead of the recording; each returns true when handled.
fn run_scenario(v: &Value, held: &[&str], fixed: &dyn Fn(&str, &mut Harness, &Value) -> bool) {
    let name = v["name"].as_str().unwrap();
    let protocol = protocol_of(v);
    let mut h = Harness::new(config_of(v, protocol));
    h.held = held.iter().map(|s| s.to_string()).collect();
    for step in v["steps"].as_array().unwrap() {
        let step_name = step["step"].as_str().unwrap();
        let context = format!("{name}/{step_name}");
        if fixed(step_name, &mut h, step) {
            continue;
        }
        let (actions, ignore_destroy) = match step["action"].as_str().unwrap() {
            "inner_frame" => {
                let label = step["from"].as_str().unwrap();
                let peer = link_peer(step, label);
                let link = h.link(label, peer);
                let frame = vectors_hex(step["frame_hex"].as_str().unwrap());
                h.core.handle_link_bytes(h.now, link, &frame);
                (h.drain(), false)
            }
            "client_connect" => {
                let c = &step["client"];
                let peer = SocketAddr::new(
                    ip(c["remote_ip"].as_str().unwrap()),
                    c["remote_port"].as_u64().unwrap() as u16,
                );
                let (id, actions) = h.connect_client(c["label"].as_str().unwrap(), peer);
                assert_eq!(
                    u64::from(id.unwrap().0),
                    step["assigned_connection_id"].as_u64().unwrap(),
                    "{context}: connection id"
                );
                (actions, false)
            }
            "client_message" => {
                let label = step["client"].as_str().unwrap();
                (h.send_message(label, &bytes(&step["message"])), false)
            }
            "client_close" => {
                let id = h.clients[step["client"].as_str().unwrap()];
                h.core.handle_client_closed(h.now, id);
                // The recording shows the harness's own destroy; the driver needs no action.
                (h.drain(), true)
            }
            "worker_close" => {
                let link = h.links[step["worker"].as_str().unwrap()];
                h.core.handle_link_closed(h.now, link);
                (h.drain(), false)
            }
            other => panic!("{context}: unknown action {other}"),
        };
        assert_eq!(
            h.seen(&actions),
            h.expected(&step["events"], ignore_destroy),
            "{context}: events"
        );
        check_state(&h.core.snapshot(), &step["state_after"], &context);
    }
}

fn vectors_hex(hex: &str) -> Vec<u8> {
    gatewayworker::testing::vectors::decode_hex(hex).expect("hex")
}

fn no_fix(_: &str, _: &mut Harness, _: &Value) -> bool {
    false
}

#[test]
fn gateway_scenarios_match_the_reference_byte_for_byte() {
    let scenarios = section("gateway_scenarios");
    let names: Vec<&str> = scenarios
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    for expected in [
        "command_tour",
        "kick_without_message",
        "secret_key",
        "handshake_validation",
        "no_worker_available",
    ] {
        assert!(names.contains(&expected), "scenario {expected} missing");
    }
    for v in scenarios {
        run_scenario(v, &[], &no_fix);
    }
}

#[test]
fn routing_least_connections_sticky() {
    run_scenario(vector("routing", "least_connections_sticky"), &[], &no_fix);
}

#[test]
fn routing_reregister_old_closes_at_once() {
    run_scenario(
        vector("routing", "reregister_old_closes_at_once"),
        &[],
        &no_fix,
    );
}

/// The recording shows quirk 10: when the old link's deferred close completes, the key
/// (now the new link's) is removed and client `a` is re-bound to k2. We fix it: the key
/// is removed only if it still maps to the closing link, so nothing changes and `a`
/// stays with the new link under its key.
#[test]
fn routing_reregister_old_close_deferred_keeps_the_new_link_fix_of_quirk_10() {
    let fixed = |step: &str, h: &mut Harness, s: &Value| -> bool {
        match step {
            "worker_close_completes:k1_old" => {
                let old = h.links["k1_old"];
                h.core.handle_link_closed(h.now, old);
                assert!(h.drain().is_empty());
                let snap = h.core.snapshot();
                let workers: Vec<(String, LinkId, u32)> = snap
                    .workers
                    .iter()
                    .map(|w| (String::from_utf8(w.key.to_vec()).unwrap(), w.link, w.count))
                    .collect();
                assert_eq!(
                    workers,
                    vec![
                        ("10.0.0.21:BW:0".to_string(), h.links["k1_new"], 1),
                        ("10.0.0.21:BW:1".to_string(), h.links["k2"], 0),
                    ],
                    "fix of quirk 10: the key stays with k1_new"
                );
                true
            }
            "client_message:a" => {
                let actions = h.send_message("a", &bytes(&s["message"]));
                let recorded = s["events"][0]["frame_hex"].as_str().unwrap().to_string();
                assert_eq!(
                    h.seen(&actions),
                    vec![Seen::Link("k1_new".into(), recorded)],
                    "a stays sticky"
                );
                let snap = h.core.snapshot();
                assert_eq!(
                    snap.clients[0].worker_key.as_deref(),
                    Some(&b"10.0.0.21:BW:0"[..])
                );
                assert_eq!(snap.workers[0].count, 1, "no re-count");
                true
            }
            _ => false,
        }
    };
    // k1_old's output is never reported flushed, so its close stays pending.
    run_scenario(
        vector("routing", "reregister_old_close_deferred"),
        &["k1_old"],
        &fixed,
    );
}

#[test]
fn client_heartbeat_ticks() {
    for v in section("client_heartbeat") {
        let name = v["name"].as_str().unwrap();
        let input = &v["input"];
        let mut config = GatewayConfig::new("10.0.0.5".parse().unwrap(), 2000, 8282);
        config.ping_interval = Duration::from_secs(input["pingInterval"].as_u64().unwrap());
        config.ping_not_response_limit = input["pingNotResponseLimit"].as_u64().unwrap() as u32;
        config.ping_data = Bytes::from(input["pingData"].as_str().unwrap().to_string());
        let period = Duration::from_secs(input["timer_period"].as_u64().unwrap());
        assert_eq!(
            config.heartbeat_period(),
            Some(period),
            "{name}: timer period"
        );
        let ping_frame = ws_server_frame(&config.ping_data);
        let mut h = Harness::new(config);
        let start = h.now;
        let worker: SocketAddr = "10.0.0.9:40000".parse().unwrap();
        let w = h.link("w", worker);
        h.core
            .handle_link_bytes(h.now, w, &worker_connect_frame("BW:0", ""));
        h.drain();
        let (id, _) = h.connect_client("c", "203.0.113.7:5000".parse().unwrap());
        let id = id.unwrap();
        for (i, tick) in v["expected"]["ticks"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
        {
            let ctx = format!("{name} tick {}", tick["tick"]);
            if tick["client_data_before_tick"].as_bool().unwrap() {
                h.send_message("c", b"hi");
            }
            h.now = start + period * (i as u32 + 1);
            assert_eq!(
                h.core.poll_timeout().map(|t| t <= h.now),
                Some(true),
                "{ctx}: timer due"
            );
            h.core.handle_timeout(h.now);
            let seen: Vec<&str> = h
                .drain()
                .iter()
                .filter_map(|a| match a {
                    Action::Transmit {
                        to: Target::Client(c),
                        bytes,
                    } if *c == id => {
                        assert_eq!(bytes.to_vec(), ping_frame, "{ctx}: ping bytes");
                        Some("client_send")
                    }
                    Action::CloseClient {
                        id: c,
                        after_flush: false,
                        ..
                    } if *c == id => Some("client_destroy"),
                    Action::Transmit {
                        to: Target::Link(_),
                        ..
                    } => None,
                    other => panic!("{ctx}: unexpected {other:?}"),
                })
                .collect();
            let expected: Vec<&str> = tick["events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
                .collect();
            assert_eq!(seen, expected, "{ctx}: events");
            let counter = h
                .core
                .snapshot()
                .clients
                .first()
                .map(|c| i64::from(c.ping_count));
            assert_eq!(counter, tick["counter_after"].as_i64(), "{ctx}: counter");
        }
    }
}

fn worker_connect_frame(worker_key: &str, secret: &str) -> Vec<u8> {
    let body = format!("{{\"worker_key\":\"{worker_key}\",\"secret_key\":\"{secret}\"}}");
    let mut f = Vec::new();
    f.extend_from_slice(&((28 + body.len()) as u32).to_be_bytes());
    f.push(200);
    f.extend_from_slice(&[0; 16]);
    f.push(1);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(body.as_bytes());
    f
}

#[test]
fn connection_id_allocation_sequences() {
    for v in section("connection_id_allocation") {
        let name = v["name"].as_str().unwrap();
        let mut alloc = IdAllocator {
            recorder: v["input"]["recorder"].as_u64().unwrap() as u32,
        };
        let mut in_use: HashSet<u32> = v["input"]["in_use"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        let expected: Vec<u32> = v["expected"]["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        let ids: Vec<u32> = expected
            .iter()
            .map(|_| {
                let id = alloc.allocate(|i| in_use.contains(&i)).expect("free id");
                in_use.insert(id);
                id
            })
            .collect();
        assert_eq!(ids, expected, "{name}");
    }
}

/// The same sequences through the core itself: ids in use are real connected clients.
#[test]
fn connection_id_allocation_through_the_core() {
    for v in section("connection_id_allocation") {
        let name = v["name"].as_str().unwrap();
        let mut h = Harness::new(GatewayConfig::new("10.0.0.5".parse().unwrap(), 2000, 8282));
        let w = h.link("w", "10.0.0.9:40000".parse().unwrap());
        h.core
            .handle_link_bytes(h.now, w, &worker_connect_frame("BW:0", ""));
        h.drain();
        let in_use: Vec<u32> = v["input"]["in_use"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        for id in &in_use {
            h.core.set_connection_id_recorder(id - 1);
            let got = h
                .core
                .handle_client_connected(h.now, "203.0.113.1:1".parse().unwrap())
                .unwrap();
            assert_eq!(got.0, *id, "{name}: occupying {id}");
        }
        h.drain();
        h.core
            .set_connection_id_recorder(v["input"]["recorder"].as_u64().unwrap() as u32);
        for expected in v["expected"]["ids"].as_array().unwrap() {
            let got = h
                .core
                .handle_client_connected(h.now, "203.0.113.1:2".parse().unwrap())
                .unwrap();
            assert_eq!(u64::from(got.0), expected.as_u64().unwrap(), "{name}");
        }
    }
}

#[test]
fn websocket_connect_body_frame() {
    let v = vector("websocket_connect_body", "on_websocket_connect_frame");
    let input = &v["input"];
    let mut config = GatewayConfig::new(
        input["lanIp"].as_str().unwrap().parse().unwrap(),
        input["lanPort"].as_u64().unwrap() as u16,
        input["gateway_port"].as_u64().unwrap() as u16,
    );
    config.protocol = PublicProtocol::Websocket;
    let mut h = Harness::new(config);
    let worker = &input["bound_worker"];
    let label = worker["label"].as_str().unwrap();
    let w = h.link(
        label,
        SocketAddr::new(ip(worker["remote_ip"].as_str().unwrap()), 40000),
    );
    h.core.handle_link_bytes(
        h.now,
        w,
        &worker_connect_frame(worker["worker_key"].as_str().unwrap(), ""),
    );
    h.drain();
    let peer = SocketAddr::new(
        ip(input["remote_ip"].as_str().unwrap()),
        input["remote_port"].as_u64().unwrap() as u16,
    );
    let id = h.core.handle_client_connected(h.now, peer).unwrap();
    assert_eq!(u64::from(id.0), input["connection_id"].as_u64().unwrap());
    h.drain();
    h.core
        .handle_client_bytes(h.now, id, &bytes(&input["handshake_request"]));
    let actions = h.drain();
    let seen = h.seen(&actions);
    let expected = h.expected(&v["expected"]["events"], false);
    assert_eq!(seen[..1], expected[..], "ON_WEBSOCKET_CONNECT frame");
    let Seen::Client(c, hex) = &seen[1] else {
        panic!("101 response expected, got {seen:?}")
    };
    assert_eq!(*c, id.0);
    let response = vectors_hex(hex);
    assert!(response.starts_with(b"HTTP/1.1 101 Switching Protocol\r\n"));
    // base64(sha1("dGhlIHNhbXBsZSBub25jZQ==" + GUID)), RFC 6455 section 1.3.
    assert!(std::str::from_utf8(&response)
        .unwrap()
        .contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
}
