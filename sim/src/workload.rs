//! The workload: what each simulated client does, drawn from its own seeded generator.
//!
//! A client runs a program of ops from the probe's op language (`ops.md`): sends to a
//! client, to all, to uids and groups (with excludes), uid binding, groups, sessions, every
//! query the model knows, closes. Ops that change the model act on the client itself
//! (bind, join, session) so that their effect is applied on the gateway before the reply
//! leaves on the same link; `ungroup` and closing another client travel in a `multi`
//! behind which a query waits for every gateway (see `model`).

use gatewayworker::gateway::SplitMix64;
use serde_json::{json, Value};

use crate::model::{ClientId, Target};
use crate::php;

/// Relative weights of the op kinds (0 turns a kind off).
#[derive(Debug, Clone, Copy)]
pub struct Weights {
    /// `echo`.
    pub echo: u32,
    /// `sendToClient` (a live, dead or malformed id).
    pub send_to_client: u32,
    /// `sendToAll`, with or without `client_id_list` and `exclude`.
    pub send_to_all: u32,
    /// `sendToUid`, one uid or a list.
    pub send_to_uid: u32,
    /// `sendToGroup`, one group or a list, with or without `exclude`.
    pub send_to_group: u32,
    /// `bindUid` / `unbindUid` on itself.
    pub bind: u32,
    /// `joinGroup` / `leaveGroup` on itself.
    pub group: u32,
    /// `ungroup` (in a `multi` with a barrier query).
    pub ungroup: u32,
    /// `setSession` / `updateSession` on itself.
    pub session: u32,
    /// `sessionGet` (its `$_SESSION` inside the event).
    pub session_get: u32,
    /// A query from `ops.md` 5.4 (and `getSession`).
    pub query: u32,
    /// `closeCurrentClient` / `destroyCurrentClient`, then reconnect.
    pub close_self: u32,
    /// `closeClient` / `destroyClient` on another client (in a `multi` with a barrier).
    pub close_other: u32,
    /// A message that is no op request: UTF-8 text (echoed back exactly) or bytes that
    /// are not UTF-8 (answered with their length and MD5).
    pub raw: u32,
}

impl Default for Weights {
    fn default() -> Weights {
        Weights {
            echo: 2,
            send_to_client: 6,
            send_to_all: 4,
            send_to_uid: 5,
            send_to_group: 8,
            bind: 6,
            group: 10,
            ungroup: 1,
            session: 5,
            session_get: 2,
            query: 10,
            close_self: 1,
            close_other: 1,
            raw: 3,
        }
    }
}

/// Sizes and weights of the workload.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Clients (each runs one program).
    pub clients: usize,
    /// Ops per client program.
    pub ops_per_client: usize,
    /// Longest think time between two ops of a client, in milliseconds.
    pub think_ms_max: u64,
    /// Distinct uids (`u0`, `u1`, ...).
    pub uids: usize,
    /// Distinct groups (`g0`, `g1`, ...), besides `closewatch`.
    pub groups: usize,
    /// The op kinds' weights.
    pub weights: Weights,
    /// Now and then a message payload of up to [`LARGE_PAYLOAD_MAX`] bytes (else up to
    /// [`PAYLOAD_MAX`]).
    pub large_payloads: bool,
}

/// Longest payload of a message in a run without `large_payloads`.
pub const PAYLOAD_MAX: usize = 16 * 1024;
/// Longest payload with `large_payloads`: near the gateway's per-client send buffer
/// (`client_pending_max`, 1 024 000 bytes), which is the tightest limit a message meets
/// on its way (a client's package limit is 10 MB); a quarter of it, so that a few such
/// messages queued for one client still fit.
pub const LARGE_PAYLOAD_MAX: usize = 256 * 1024;

impl Default for WorkloadConfig {
    fn default() -> WorkloadConfig {
        WorkloadConfig {
            clients: 6,
            ops_per_client: 40,
            think_ms_max: 300,
            uids: 4,
            groups: 3,
            weights: Weights::default(),
            large_payloads: false,
        }
    }
}

/// The queries drawn by [`Weights::query`]: name and which argument it takes.
const QUERIES: &[(&str, Arg)] = &[
    ("isOnline", Arg::ClientId),
    ("isUidOnline", Arg::Uid),
    ("getClientIdByUid", Arg::Uid),
    ("getUidByClientId", Arg::ClientId),
    ("getClientIdListByGroup", Arg::Group),
    ("getClientSessionsByGroup", Arg::Group),
    ("getClientCountByGroup", Arg::GroupOrAll),
    ("getClientIdCountByGroup", Arg::GroupOrAll),
    ("getAllClientIdList", Arg::None),
    ("getAllClientSessions", Arg::GroupOrAll),
    ("getAllClientIdCount", Arg::None),
    ("getAllClientCount", Arg::None),
    ("getAllUidList", Arg::None),
    ("getAllUidCount", Arg::None),
    ("getUidListByGroup", Arg::Group),
    ("getUidCountByGroup", Arg::Group),
    ("getAllGroupIdList", Arg::None),
    ("getAllGroupUidList", Arg::None),
    ("getAllGroupUidCount", Arg::None),
    ("getAllGroupClientIdList", Arg::None),
    ("getAllGroupClientIdCount", Arg::None),
    ("getSession", Arg::ClientId),
    ("batchGetClientIdByUid", Arg::Uids),
    ("batchGetClientIdCountByGroup", Arg::Groups),
    ("isUidsOnline", Arg::Uids),
];

/// Ops the worker-side `Lib\Gateway` lacks (GatewayClient only): `ok:false` in a worker.
pub const GC_ONLY: &[&str] = &[
    "batchGetClientIdByUid",
    "batchGetClientIdCountByGroup",
    "isUidsOnline",
];

/// Every query of `QUERIES` with all its argument values, for the final audit.
pub fn audit_queries(config: &WorkloadConfig, clients: &[ClientId]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, arg) in QUERIES {
        let values: Vec<Value> = match arg {
            Arg::None => vec![json!({})],
            Arg::ClientId => clients.iter().map(|c| json!({ "client_id": c })).collect(),
            Arg::Uid => (0..config.uids)
                .map(|u| json!({ "uid": format!("u{u}") }))
                .collect(),
            Arg::Uids => vec![json!({ "uids": ["u0", "u1"] })],
            Arg::Groups => vec![json!({ "groups": ["g0", "closewatch"] })],
            Arg::Group | Arg::GroupOrAll => {
                let mut v: Vec<Value> = group_names(config)
                    .into_iter()
                    .map(|g| json!({ "group": g }))
                    .collect();
                if matches!(arg, Arg::GroupOrAll) {
                    v.push(json!({ "group": "" }));
                }
                v
            }
        };
        out.extend(values.into_iter().map(|a| (name.to_string(), a)));
    }
    out
}

fn group_names(config: &WorkloadConfig) -> Vec<String> {
    let mut v: Vec<String> = (0..config.groups).map(|g| format!("g{g}")).collect();
    v.push("closewatch".into());
    v
}

#[derive(Debug, Clone, Copy)]
enum Arg {
    None,
    ClientId,
    Uid,
    Group,
    GroupOrAll,
    Uids,
    Groups,
}

/// What an op does to the model when its reply arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Nothing (echo, queries).
    None,
    /// A send: the oracle tracks its message.
    Send(Target),
    /// Changes the model (the caller's own uid, groups, session; an ungroup).
    Change(crate::model::Change),
    /// Closes the caller (reply first, then the close).
    CloseSelf,
    /// Closes another client.
    CloseOther(ClientId),
    /// A message that is no op request; what must come back.
    Raw(Raw),
}

/// A message that is no op request, and the answer it must get.
#[derive(Debug, Clone, PartialEq)]
pub struct Raw {
    /// The bytes sent.
    pub bytes: Vec<u8>,
    /// Sent as a websocket binary frame (a text frame otherwise; text protocol: a line).
    pub binary_frame: bool,
    /// The one message that must come back: the same text, or
    /// `{"event":"raw_binary","len":N,"md5":"..."}` for bytes that are not UTF-8.
    pub answer: String,
}

/// One op ready to send.
#[derive(Debug, Clone)]
pub struct Op {
    /// Op name as in `ops.md` (the outer one for a `multi`).
    pub name: String,
    /// Its arguments.
    pub args: Value,
    /// Its effect on the model.
    pub effect: Effect,
    /// The query whose answer the model predicts (name, args), if any.
    pub query: Option<(String, Value)>,
    /// True when the op changes the model (it runs under the harness lock).
    pub changes: bool,
}

impl Op {
    /// The request text with `id`.
    pub fn request(&self, id: &str) -> String {
        json!({ "op": self.name, "args": self.args, "id": id }).to_string()
    }
}

/// The message text a send carries: the op's number, so the recipient can name it, and
/// its payload.
pub fn message_text(op_number: u64, payload: &str) -> String {
    format!("m|{op_number}|{payload}")
}

/// Characters of payloads: ASCII with JSON's special ones, a NUL, a tab, two- to
/// four-byte UTF-8 (never a line end: text-protocol clients receive lines).
pub const PAYLOAD_CHARS: &[char] = &[
    'a', 'b', 'z', 'Q', '0', '9', ' ', '|', '"', '\\', '/', '{', '}', '\0', '\t', '\u{7f}', 'é',
    'ß', 'ж', '日', '本', '\u{2028}', '\u{fffd}', '🎉', '𝄞',
];

/// Draws ops for one client.
pub struct Program {
    rng: SplitMix64,
    config: WorkloadConfig,
}

impl Program {
    /// A program from `seed`.
    pub fn new(seed: u64, config: WorkloadConfig) -> Program {
        Program {
            rng: SplitMix64(seed),
            config,
        }
    }

    /// A number below `n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.rng.below(n.max(1))
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// The think time before the next op.
    pub fn think_ms(&mut self) -> u64 {
        self.below(self.config.think_ms_max + 1)
    }

    /// A uid of the workload.
    pub fn uid(&mut self) -> String {
        format!("u{}", self.below(self.config.uids as u64))
    }

    /// A group of the workload (`closewatch` now and then).
    pub fn group(&mut self) -> String {
        // `closewatch` now and then: its members hear of every close.
        if self.chance(15) {
            return "closewatch".into();
        }
        format!("g{}", self.below(self.config.groups as u64))
    }

    /// One of `items`.
    pub fn pick<T: Clone>(&mut self, items: &[T]) -> Option<T> {
        if items.is_empty() {
            return None;
        }
        Some(items[self.below(items.len() as u64) as usize].clone())
    }

    /// A payload: empty, short, medium or (now and then) long, of [`PAYLOAD_CHARS`].
    pub fn payload(&mut self) -> String {
        let max = if self.config.large_payloads {
            LARGE_PAYLOAD_MAX
        } else {
            PAYLOAD_MAX
        };
        let chars = match self.below(20) {
            0..=7 => 0,
            8..=14 => self.below(40) as usize,
            15..=18 => self.below(4096) as usize,
            _ => max / 4 + self.below((max - max / 4) as u64) as usize,
        };
        let mut out = String::new();
        while out.len() < chars {
            out.push(PAYLOAD_CHARS[self.below(PAYLOAD_CHARS.len() as u64) as usize]);
        }
        // Multi-byte characters may overshoot: stay within `max` bytes.
        while out.len() > max {
            out.pop();
        }
        out
    }

    /// A message that is no op request (see [`Raw`]); `text_line`: the client speaks
    /// the text protocol (no line ends inside).
    fn raw(&mut self, text_line: bool) -> Raw {
        if self.chance(50) {
            let text = format!("r|{}", self.payload());
            return Raw {
                binary_frame: self.chance(30),
                answer: text.clone(),
                bytes: text.into_bytes(),
            };
        }
        let len = match self.below(10) {
            0..=6 => 1 + self.below(64) as usize,
            7..=8 => self.below(8192) as usize + 1,
            _ => self.payload().len().max(1),
        };
        let mut bytes: Vec<u8> = (0..len).map(|_| self.below(256) as u8).collect();
        // Never UTF-8: a lone continuation byte up front. No line ends for text lines.
        bytes[0] = 0x80 | (self.below(64) as u8);
        if text_line {
            for b in &mut bytes {
                if *b == b'\n' || *b == b'\r' {
                    *b = 0xff;
                }
            }
        }
        let answer = format!(
            "{{\"event\":\"raw_binary\",\"len\":{},\"md5\":\"{}\"}}",
            bytes.len(),
            crate::md5::hex(&bytes)
        );
        Raw {
            bytes,
            binary_frame: true,
            answer,
        }
    }

    /// A session value: scalars of every kind, empty arrays, lists and maps, nested.
    fn session_value(&mut self, depth: u32) -> Value {
        // Arrays more often near the top: merges recurse into them.
        let kind = match depth {
            0 | 1 if self.chance(40) => 7 + self.below(3),
            0..=2 => self.below(10),
            _ => self.below(7),
        };
        match kind {
            0 => json!(self.below(2000) as i64 - 1000),
            1 => json!([0.5, -1.25, 3.75, 1000.5, -0.125][self.below(5) as usize]),
            2 => json!(self.chance(50)),
            3 => Value::Null,
            4 => json!(
                [
                    "",
                    "a",
                    "héllo",
                    "日本語",
                    "🎉",
                    "q\"b\\s/",
                    "1",
                    "0x1A",
                    "1e3",
                    "null"
                ][self.below(10) as usize]
            ),
            5 => json!({}),
            6 => json!([]),
            7 => Value::Array(
                (0..1 + self.below(3))
                    .map(|_| self.session_value(depth + 1))
                    .collect(),
            ),
            _ => Value::Object(self.session_object(depth + 1)),
        }
    }

    /// A session object: keys that collide across updates, numeric ones (integer keys
    /// in PHP), ones that only look numeric, the empty key.
    pub fn session_object(&mut self, depth: u32) -> serde_json::Map<String, Value> {
        const KEYS: &[&str] = &["k0", "1", "k1", "0", "2", "k2", "-3", "05", "1.5", "", "+1"];
        // Few keys at the top, so that updates meet what earlier ones left.
        let keys = if depth == 0 { 4 } else { KEYS.len() };
        let mut map = serde_json::Map::new();
        for _ in 0..1 + self.below(3) {
            let key = KEYS[self.below(keys as u64) as usize].to_string();
            let value = self.session_value(depth);
            map.insert(key, value);
        }
        map
    }

    /// A query of `QUERIES` with arguments drawn from the workload (`me` when no
    /// client is live).
    pub fn query(
        &mut self,
        me: &str,
        live: &[ClientId],
        dead: &[ClientId],
    ) -> (&'static str, Value) {
        let (name, arg) = QUERIES[self.below(QUERIES.len() as u64) as usize];
        let args = match arg {
            Arg::None => json!({}),
            Arg::ClientId => {
                let id = if self.chance(20) && !dead.is_empty() {
                    self.pick(dead).expect("not empty")
                } else {
                    self.pick(live).unwrap_or_else(|| me.to_string())
                };
                json!({ "client_id": id })
            }
            Arg::Uid => json!({ "uid": self.uid() }),
            Arg::Uids => json!({ "uids": [self.uid(), self.uid()] }),
            Arg::Groups => json!({ "groups": [self.group()] }),
            Arg::Group => json!({ "group": self.group() }),
            Arg::GroupOrAll => {
                if self.chance(30) {
                    json!({ "group": "" })
                } else {
                    json!({ "group": self.group() })
                }
            }
        };
        (name, args)
    }

    /// A random subset of `items`.
    pub fn subset(&mut self, items: &[ClientId]) -> Vec<ClientId> {
        items.iter().filter(|_| self.chance(40)).cloned().collect()
    }

    /// The next op for the client `me`; `live` are the clients the model has connected
    /// (`me` included), `dead` ids of clients gone. `exact` allows ops whose effect
    /// on others can only be pinned down without faults.
    pub fn next(
        &mut self,
        me: &str,
        live: &[ClientId],
        dead: &[ClientId],
        exact: bool,
        text_line: bool,
    ) -> Op {
        let w = self.config.weights;
        // Under faults too: the model holds what a fault leaves open (see `model`).
        let _ = exact;
        let (ungroup, close_other) = (w.ungroup, w.close_other);
        let kinds = [
            w.echo,
            w.send_to_client,
            w.send_to_all,
            w.send_to_uid,
            w.send_to_group,
            w.bind,
            w.group,
            ungroup,
            w.session,
            w.session_get,
            w.query,
            w.close_self,
            close_other,
            w.raw,
        ];
        let total: u32 = kinds.iter().sum();
        let mut roll = self.below(u64::from(total.max(1))) as u32;
        let mut kind = 0;
        for (i, k) in kinds.iter().enumerate() {
            if roll < *k {
                kind = i;
                break;
            }
            roll -= k;
        }
        let payload = if (1..=4).contains(&kind) {
            self.payload()
        } else {
            String::new()
        };
        let me = me.to_string();
        let plain = |name: &str, args: Value, effect: Effect, changes: bool| Op {
            name: name.into(),
            args,
            effect,
            query: None,
            changes,
        };
        match kind {
            1 => {
                let target = if self.chance(15) && !dead.is_empty() {
                    self.pick(dead).expect("not empty")
                } else {
                    self.pick(live).unwrap_or_else(|| me.clone())
                };
                plain(
                    "sendToClient",
                    json!({ "client_id": target, "message": payload }),
                    Effect::Send(Target::Client(target)),
                    false,
                )
            }
            2 => {
                let list = self.chance(40).then(|| self.subset(live));
                let exclude = if self.chance(50) {
                    self.subset(live)
                } else {
                    vec![]
                };
                let mut args = json!({ "message": payload });
                if let Some(l) = &list {
                    args["client_id_list"] = json!(l);
                }
                if exclude.len() == 1 && self.chance(50) {
                    args["exclude"] = json!(exclude[0]);
                } else if !exclude.is_empty() {
                    args["exclude"] = json!(exclude);
                }
                plain(
                    "sendToAll",
                    args,
                    Effect::Send(Target::All { list, exclude }),
                    false,
                )
            }
            3 => {
                let mut uids: Vec<String> = (0..1 + self.below(2)).map(|_| self.uid()).collect();
                uids.sort();
                uids.dedup();
                let uid_arg = if uids.len() == 1 && self.chance(50) {
                    json!(uids[0])
                } else {
                    json!(uids)
                };
                plain(
                    "sendToUid",
                    json!({ "uid": uid_arg, "message": payload }),
                    Effect::Send(Target::Uid(uids)),
                    false,
                )
            }
            4 => {
                let mut groups: Vec<String> =
                    (0..1 + self.below(2)).map(|_| self.group()).collect();
                groups.sort();
                groups.dedup();
                let exclude = if self.chance(30) {
                    self.subset(live)
                } else {
                    vec![]
                };
                let group_arg = if groups.len() == 1 && self.chance(50) {
                    json!(groups[0])
                } else {
                    json!(groups)
                };
                let mut args = json!({ "group": group_arg, "message": payload });
                if !exclude.is_empty() {
                    args["exclude"] = json!(exclude);
                }
                plain(
                    "sendToGroup",
                    args,
                    Effect::Send(Target::Group { groups, exclude }),
                    false,
                )
            }
            5 => {
                let uid = self.uid();
                if self.chance(30) {
                    plain(
                        "unbindUid",
                        json!({ "client_id": me, "uid": uid }),
                        Effect::Change(crate::model::Change::Unbind(me.clone())),
                        true,
                    )
                } else {
                    plain(
                        "bindUid",
                        json!({ "client_id": me, "uid": uid }),
                        Effect::Change(crate::model::Change::Bind(me.clone(), uid)),
                        true,
                    )
                }
            }
            6 => {
                let group = self.group();
                if self.chance(35) {
                    plain(
                        "leaveGroup",
                        json!({ "client_id": me, "group": group }),
                        Effect::Change(crate::model::Change::Leave(me.clone(), group)),
                        true,
                    )
                } else {
                    plain(
                        "joinGroup",
                        json!({ "client_id": me, "group": group }),
                        Effect::Change(crate::model::Change::Join(me.clone(), group)),
                        true,
                    )
                }
            }
            7 => {
                let group = self.group();
                plain(
                    "multi",
                    json!({ "ops": [
                        { "op": "ungroup", "args": { "group": group } },
                        { "op": "getAllClientIdCount", "args": {} },
                    ]}),
                    Effect::Change(crate::model::Change::Ungroup(group)),
                    true,
                )
            }
            8 => {
                let object = self.session_object(0);
                let session = php::array_from_object(&object);
                let update = self.chance(50);
                let name = if update {
                    "updateSession"
                } else {
                    "setSession"
                };
                let effect = if update {
                    crate::model::Change::UpdateSession(me.clone(), session.clone())
                } else {
                    crate::model::Change::SetSession(me.clone(), session.clone())
                };
                plain(
                    name,
                    json!({ "client_id": me, "session": object }),
                    Effect::Change(effect),
                    true,
                )
            }
            9 => Op {
                name: "sessionGet".into(),
                args: json!({}),
                effect: Effect::None,
                query: Some(("sessionGet".into(), json!({}))),
                changes: true,
            },
            10 => {
                let (name, args) = self.query(&me, live, dead);
                Op {
                    name: name.into(),
                    args: args.clone(),
                    effect: Effect::None,
                    query: Some((name.into(), args)),
                    // Queries run under the lock so that their answer is exact.
                    changes: true,
                }
            }
            11 => {
                let destroy = self.chance(50);
                let (name, args) = if destroy {
                    ("destroyCurrentClient", json!({}))
                } else {
                    ("closeCurrentClient", json!({ "message": "bye" }))
                };
                plain(name, args, Effect::CloseSelf, true)
            }
            12 => {
                let others: Vec<ClientId> = live.iter().filter(|c| **c != me).cloned().collect();
                match self.pick(&others) {
                    Some(target) => {
                        let close = if self.chance(50) {
                            json!({ "op": "closeClient", "args": { "client_id": target, "message": "bye" } })
                        } else {
                            json!({ "op": "destroyClient", "args": { "client_id": target } })
                        };
                        plain(
                            "multi",
                            json!({ "ops": [close, { "op": "getAllClientIdCount", "args": {} }] }),
                            Effect::CloseOther(target),
                            true,
                        )
                    }
                    None => plain("echo", json!({ "data": 1 }), Effect::None, false),
                }
            }
            13 => {
                let raw = self.raw(text_line);
                plain("raw", Value::Null, Effect::Raw(raw), false)
            }
            _ => plain(
                "echo",
                json!({ "data": self.below(1000) }),
                Effect::None,
                false,
            ),
        }
    }
}
