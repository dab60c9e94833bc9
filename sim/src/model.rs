//! The reference model and its oracle: who is connected, uid bindings, groups and
//! sessions, in plain Rust, written from the op language's spec (`ops.md`), not from the
//! gateway's code.
//!
//! Time and uncertainty. The harness serializes every op that changes the model (a lock
//! held from the request leaving the client to its reply arriving), so the states form one
//! sequence `S0, S1, ...`: transition `k` (into `S_k`) takes effect at some unknown moment
//! `e_k` in `[sent_k, replied_k]`. A message sent at `t_s` and received at `t_r` was routed
//! by its recipient's gateway at some moment in `[t_s, t_r]`, when the state was any `S_k`
//! with `sent_k <= t_r` and `replied_{k+1} > t_s` (a transition without reply yet counts as
//! never replied). The oracle allows exactly those states and no others: a message must be
//! addressed to its recipient in one of them, arrive at most as many times as that state
//! addresses it, and after the sender's earlier messages.
//!
//! Effects that another gateway must apply (ungroup, closing another client) travel in a
//! `multi` with a query behind them: the query's answers come back on the same links after
//! the effect, so the reply still closes the interval.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Map, Value};

/// A client id as the probe reports it (20 hex digits).
pub type ClientId = String;

/// A session: a PHP array (nested arrays, int and string keys, any scalar), see
/// [`crate::php`].
pub type Session = crate::php::Array;

/// One connected client in the model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientState {
    /// Its uid, if bound.
    pub uid: Option<String>,
    /// Its groups.
    pub groups: BTreeSet<String>,
    /// Its session (`None`: never set).
    pub session: Option<Session>,
}

/// Everything the model knows at one point of the sequence.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// Connected clients by id.
    pub clients: BTreeMap<ClientId, ClientState>,
    /// Memberships an `ungroup` under faults may have left (a gateway without a link to
    /// the worker at that moment never heard it): the client is not counted a member,
    /// but a message to the group may still reach it. The audit settles them
    /// ([`Model::settle_group`]); the member's own join or leave, or its end, settles one
    /// at once.
    pub maybe: BTreeSet<(ClientId, String)>,
    /// Groups whose unsettled ungroup may still land (a held link delivers it late, a
    /// lost reply bounds it by nothing): a later join to them is unsettled too, until the
    /// audit settles the group.
    pub doubtful: BTreeSet<String>,
}

/// A change of the model, as an op (or a connection) makes it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A client connected.
    Connect(ClientId),
    /// A client is gone (closed, dropped, or its gateway crashed).
    Disconnect(ClientId),
    /// `bindUid`: moves the client to the uid.
    Bind(ClientId, String),
    /// `unbindUid`: removes the client's current uid, whatever uid is named.
    Unbind(ClientId),
    /// `joinGroup`.
    Join(ClientId, String),
    /// `leaveGroup`.
    Leave(ClientId, String),
    /// `ungroup`: empties the group.
    Ungroup(String),
    /// `setSession`: replaces the session.
    SetSession(ClientId, Session),
    /// `updateSession`: merges into the session with PHP's `array_replace_recursive`.
    UpdateSession(ClientId, Session),
}

impl State {
    /// The state after `change`.
    pub fn apply(&self, change: &Change) -> State {
        let mut next = self.clone();
        let clients = &mut next.clients;
        match change {
            Change::Connect(id) => {
                clients.insert(id.clone(), ClientState::default());
            }
            Change::Disconnect(id) => {
                clients.remove(id);
                next.maybe.retain(|(member, _)| member != id);
            }
            Change::Bind(id, uid) => {
                if let Some(c) = clients.get_mut(id) {
                    if !uid.is_empty() {
                        c.uid = Some(uid.clone());
                    }
                }
            }
            Change::Unbind(id) => {
                if let Some(c) = clients.get_mut(id) {
                    c.uid = None;
                }
            }
            Change::Join(id, group) => {
                if let Some(c) = clients.get_mut(id) {
                    c.groups.insert(group.clone());
                }
                if next.doubtful.contains(group) {
                    next.maybe.insert((id.clone(), group.clone()));
                } else {
                    next.maybe.remove(&(id.clone(), group.clone()));
                }
            }
            Change::Leave(id, group) => {
                if let Some(c) = clients.get_mut(id) {
                    c.groups.remove(group);
                }
                next.maybe.remove(&(id.clone(), group.clone()));
            }
            Change::Ungroup(group) => {
                for c in clients.values_mut() {
                    c.groups.remove(group);
                }
            }
            Change::SetSession(id, session) => {
                if let Some(c) = clients.get_mut(id) {
                    c.session = Some(session.clone());
                }
            }
            Change::UpdateSession(id, session) => {
                if let Some(c) = clients.get_mut(id) {
                    let s = c.session.get_or_insert_with(Session::new);
                    crate::php::replace_recursive(s, session);
                }
            }
        }
        next
    }

    /// Members of `group`.
    pub fn members<'a>(
        &'a self,
        group: &'a str,
    ) -> impl Iterator<Item = (&'a ClientId, &'a ClientState)> + 'a {
        self.clients
            .iter()
            .filter(move |(_, c)| c.groups.contains(group))
    }
}

/// Whom a send addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `sendToClient`.
    Client(ClientId),
    /// `sendToAll` with an optional `client_id_list` and an exclude list.
    All {
        /// `client_id_list` (`None`: everyone).
        list: Option<Vec<ClientId>>,
        /// `exclude`.
        exclude: Vec<ClientId>,
    },
    /// `sendToUid` with distinct uids.
    Uid(Vec<String>),
    /// `sendToGroup` with distinct groups: once per membership.
    Group {
        /// The groups.
        groups: Vec<String>,
        /// `exclude`.
        exclude: Vec<ClientId>,
    },
}

impl Target {
    /// Copies of the message `recipient` gets when the send is routed in `state`.
    pub fn copies(&self, state: &State, recipient: &str) -> usize {
        let Some(client) = state.clients.get(recipient) else {
            return 0;
        };
        let excluded = |exclude: &[ClientId]| exclude.iter().any(|e| e == recipient);
        match self {
            Target::Client(id) => usize::from(id == recipient),
            Target::All { list, exclude } => {
                let listed = list
                    .as_ref()
                    .is_none_or(|l| l.iter().any(|id| id == recipient));
                usize::from(listed && !excluded(exclude))
            }
            Target::Uid(uids) => usize::from(
                client
                    .uid
                    .as_ref()
                    .is_some_and(|u| uids.iter().any(|x| x == u)),
            ),
            Target::Group { groups, exclude } => {
                if excluded(exclude) {
                    0
                } else {
                    groups
                        .iter()
                        .filter(|g| {
                            client.groups.contains(*g)
                                || state.maybe.contains(&(recipient.to_string(), (*g).clone()))
                        })
                        .count()
                }
            }
        }
    }

    /// Copies `recipient` gets for sure when the send is routed in `state`: as
    /// [`Target::copies`], without the memberships an open `ungroup` may have removed.
    pub fn certain_copies(&self, state: &State, recipient: &str) -> usize {
        match self {
            Target::Group { groups, exclude } => {
                let Some(client) = state.clients.get(recipient) else {
                    return 0;
                };
                if exclude.iter().any(|e| e == recipient) {
                    return 0;
                }
                groups
                    .iter()
                    .filter(|g| {
                        client.groups.contains(*g)
                            && !state.maybe.contains(&(recipient.to_string(), (*g).clone()))
                    })
                    .count()
            }
            _ => self.copies(state, recipient),
        }
    }
}

/// A message the model expected at a client that never came: what the judge of
/// [`Model::check_deliveries`] weighs against the counted drops and the faults.
#[derive(Debug, Clone)]
pub struct Loss {
    /// The send op's number.
    pub op: u64,
    /// Its sender.
    pub sender: ClientId,
    /// The client that never got it.
    pub recipient: ClientId,
    /// The recipient's gateway shard (`ip:lan_port`), if known.
    pub shard: Option<String>,
    /// The recipient's client host (`c<n>`), if known.
    pub host: Option<String>,
    /// When the send left and when its reply came.
    pub sent: Duration,
    /// See [`Loss::sent`].
    pub replied: Duration,
    /// Every worker instance was linked to every gateway shard, and the register
    /// announced every shard, when it was sent and when it was answered.
    pub linked: bool,
    /// When the recipient's connection ended (`None`: connected to the end).
    pub ended: Option<Duration>,
    /// When the recipient's connection began (its connect event came).
    pub connected: Duration,
    /// When another client first asked to close it (`closeClient`/`destroyClient`) after
    /// it connected, if one did.
    pub close_asked: Option<Duration>,
}

/// One transition of the sequence and the state it leads to.
#[derive(Debug, Clone)]
struct Transition {
    sent: Duration,
    replied: Option<Duration>,
    change: Option<Change>,
    state: State,
}

/// A send op as the oracle tracks it.
#[derive(Debug, Clone)]
struct SendRecord {
    sender: ClientId,
    target: Target,
    sent: Duration,
    /// The payload's length and hash: every copy must carry it unchanged.
    payload: (usize, u64),
    /// When its successful reply came: the op ran (a sender closed mid-op may never
    /// have sent it; a failed one may not have).
    replied: Option<Duration>,
    /// The control plane was whole when it was sent and answered ([`Loss::linked`]).
    linked: bool,
    received: BTreeMap<ClientId, usize>,
}

/// The model's sequence of states, the sends in flight, and what the oracle found.
#[derive(Debug, Default)]
pub struct Model {
    history: Vec<Transition>,
    sends: BTreeMap<u64, SendRecord>,
    last_from: BTreeMap<(ClientId, ClientId), u64>,
    closes_seen: BTreeMap<(ClientId, ClientId), usize>,
    /// Connections per client id: a restarted gateway counts connection ids from 1
    /// again, as the original does, so an id names several connections over a run.
    incarnations: BTreeMap<ClientId, usize>,
    abandoned_connects: usize,
    unknown_closes: BTreeMap<ClientId, usize>,
    /// The gateway shard (`ip:lan_port`) and client host of each client id's latest
    /// connection.
    shards: BTreeMap<ClientId, (String, String)>,
    /// Every client id ever connected.
    pub ever_clients: BTreeSet<ClientId>,
    /// When other clients asked to close each client id (`closeClient`/`destroyClient`).
    closes_asked: BTreeMap<ClientId, Vec<Duration>>,
    /// Lost messages explained by a counted drop or a fault: what, and the explanation.
    pub losses_explained: Vec<String>,
    /// Violations found, in order.
    pub violations: Vec<String>,
}

impl Model {
    /// An empty world.
    pub fn new() -> Model {
        Model {
            history: vec![Transition {
                sent: Duration::ZERO,
                replied: Some(Duration::ZERO),
                change: None,
                state: State::default(),
            }],
            ..Model::default()
        }
    }

    /// How many connections had client id `id` so far (the latest is that number).
    pub fn incarnation(&self, id: &str) -> usize {
        self.incarnations.get(id).copied().unwrap_or(0)
    }

    /// The latest state (exact when no transition is in flight).
    pub fn current(&self) -> &State {
        &self.history.last().expect("the initial state").state
    }

    /// Starts a transition at `now`; [`Model::end`] closes it.
    pub fn begin(&mut self, change: Change, now: Duration) -> usize {
        if let Change::Connect(id) = &change {
            self.ever_clients.insert(id.clone());
            *self.incarnations.entry(id.clone()).or_default() += 1;
        }
        let state = self.current().apply(&change);
        self.history.push(Transition {
            sent: now,
            replied: None,
            change: Some(change),
            state,
        });
        self.history.len() - 1
    }

    /// The reply of transition `index` arrived at `now`.
    pub fn end(&mut self, index: usize, now: Duration) {
        self.history[index].replied = Some(now);
    }

    /// A change known at once (both ends at `now`).
    pub fn apply_now(&mut self, change: Change, now: Duration) {
        let index = self.begin(change, now);
        self.end(index, now);
    }

    /// True while some transition has no reply.
    pub fn in_flight(&self) -> bool {
        self.history.iter().any(|t| t.replied.is_none())
    }

    /// The states possibly current at some moment of `[from, to]`.
    fn possible(&self, from: Duration, to: Duration) -> impl Iterator<Item = &State> + '_ {
        let h = &self.history;
        (0..h.len())
            .filter(move |&k| {
                let next_replied = h.get(k + 1).and_then(|t| t.replied);
                h[k].sent <= to && next_replied.is_none_or(|r| r > from)
            })
            .map(move |k| &h[k].state)
    }

    /// A send op `op` left `sender` at `now`.
    pub fn on_send(&mut self, op: u64, sender: &str, target: Target, payload: &str, now: Duration) {
        self.sends.insert(
            op,
            SendRecord {
                sender: sender.to_string(),
                target,
                sent: now,
                payload: (payload.len(), fnv(payload.as_bytes())),
                replied: None,
                linked: true,
                received: BTreeMap::new(),
            },
        );
    }

    /// The successful reply of send `op` arrived at `now`: the op ran.
    pub fn on_send_replied(&mut self, op: u64, now: Duration) {
        if let Some(record) = self.sends.get_mut(&op) {
            record.replied = Some(now);
        }
    }

    /// Some gateway shard lacked a worker instance's link (or the register did not
    /// announce it) when send `op` left or was answered: a copy may have had no way.
    pub fn on_send_unlinked(&mut self, op: u64) {
        if let Some(record) = self.sends.get_mut(&op) {
            record.linked = false;
        }
    }

    /// Another client asked at `now` to close client `id`.
    pub fn on_close_asked(&mut self, id: &str, now: Duration) {
        self.closes_asked
            .entry(id.to_string())
            .or_default()
            .push(now);
    }

    /// Client `id`'s latest connection is on gateway shard `shard` (`ip:lan_port`),
    /// from client host `host`.
    pub fn set_shard(&mut self, id: &str, shard: String, host: &str) {
        self.shards
            .insert(id.to_string(), (shard, host.to_string()));
    }

    /// A connection was given up before its connect event named it: the gateway may have
    /// had it, so a close of an id the model never learned may be heard, once per such
    /// connection.
    pub fn on_connect_abandoned(&mut self) {
        self.abandoned_connects += 1;
    }

    /// `recipient` received the message of send `op` at `now`: checks addressing,
    /// duplicates and per-sender order.
    pub fn on_push(&mut self, recipient: &str, op: u64, payload: &str, now: Duration) {
        let Some(record) = self.sends.get(&op) else {
            self.violation(format!("{recipient} received message {op} never sent"));
            return;
        };
        let sent_payload = record.payload;
        let (sender, sent) = (record.sender.clone(), record.sent);
        let copies_max = self
            .possible(sent, now)
            .map(|s| record.target.copies(s, recipient))
            .max()
            .unwrap_or(0);
        let record = self.sends.get_mut(&op).expect("looked up above");
        let got = record.received.entry(recipient.to_string()).or_default();
        *got += 1;
        let got = *got;
        let target = format!("{:?}", record.target);
        if copies_max == 0 {
            self.violation(format!(
                "{recipient} received message {op} from {sender} not addressed to it: {target}"
            ));
        } else if got > copies_max {
            self.violation(format!(
                "{recipient} received message {op} from {sender} {got} times, at most {copies_max}: {target}"
            ));
        }
        let last = self
            .last_from
            .entry((sender.clone(), recipient.to_string()))
            .or_insert(0);
        if op < *last {
            let last = *last;
            self.violation(format!(
                "{recipient} received message {op} from {sender} after its later message {last}"
            ));
        } else {
            *last = op;
        }
        if sent_payload != (payload.len(), fnv(payload.as_bytes())) {
            let sent_len = sent_payload.0;
            self.violation(format!(
                "{recipient} received message {op} with another payload: {} bytes (sent {sent_len}), starting {:?}",
                payload.len(),
                payload.chars().take(40).collect::<String>()
            ));
        }
    }

    /// `recipient` received a `closewatch` event about `closed` at `now`.
    pub fn on_close_event(&mut self, recipient: &str, closed: &str, now: Duration) {
        if !self.ever_clients.contains(closed) {
            let unknown = self
                .unknown_closes
                .entry(recipient.to_string())
                .or_default();
            *unknown += 1;
            if *unknown > self.abandoned_connects {
                self.violation(format!(
                    "{recipient} heard of the close of {closed}, never a client"
                ));
            }
            return;
        }
        let watched = self
            .possible(Duration::ZERO, now)
            .any(|s| s.members("closewatch").any(|(id, _)| id == recipient));
        if !watched {
            self.violation(format!(
                "{recipient} heard of the close of {closed} but never watched closes"
            ));
        }
        let heard = self
            .closes_seen
            .entry((recipient.to_string(), closed.to_string()))
            .or_default();
        *heard += 1;
        let (heard, lives) = (*heard, self.incarnations.get(closed).copied().unwrap_or(0));
        if heard > lives {
            self.violation(format!(
                "{recipient} heard of the close of {closed} {heard} times, for {lives} connection(s)"
            ));
        }
    }

    /// Liveness: a client that every state from a send on addresses for sure, until its
    /// connection ended or to the end, got that send, or `judge` explains why not (its
    /// connection ended before the message was due, a counted drop, a fault around it:
    /// `Some(explanation)`); a loss nothing explains is a violation.
    pub fn check_deliveries(&mut self, judge: impl Fn(&Loss) -> Option<String>) {
        let mut missing = Vec::new();
        for (op, record) in &self.sends {
            let Some(replied) = record.replied else {
                continue;
            };
            let h = &self.history;
            let from = (0..h.len())
                .find(|&k| {
                    h.get(k + 1)
                        .and_then(|t| t.replied)
                        .is_none_or(|r| r > record.sent)
                })
                .unwrap_or(h.len() - 1);
            // The states possible when it was routed or later: a state whose successor
            // was answered before the send is over (an earlier unanswered transition
            // keeps `from` early, not the states its neighbours closed).
            let states: Vec<&Transition> = (from..h.len())
                .filter(|&k| {
                    h.get(k + 1)
                        .and_then(|t| t.replied)
                        .is_none_or(|r| r > record.sent)
                })
                .map(|k| &h[k])
                .collect();
            for recipient in states[0].state.clients.keys() {
                if record.received.contains_key(recipient) {
                    continue;
                }
                // Addressed for sure from the send on, until the connection ended.
                let mut ended = None;
                let mut certain = true;
                for t in &states {
                    if !t.state.clients.contains_key(recipient) {
                        ended = Some(t.sent);
                        break;
                    }
                    if record.target.certain_copies(&t.state, recipient) == 0 {
                        certain = false;
                        break;
                    }
                }
                let connected = self.history[..=from]
                    .iter()
                    .rev()
                    .find(|t| t.change.as_ref() == Some(&Change::Connect(recipient.clone())))
                    .map_or(Duration::ZERO, |t| t.sent);
                // Gone before the send (an earlier transition still unanswered kept
                // older states possible): never addressed.
                if certain && ended.is_none_or(|t| t > record.sent) {
                    missing.push(Loss {
                        op: *op,
                        sender: record.sender.clone(),
                        recipient: recipient.clone(),
                        shard: self.shards.get(recipient).map(|(s, _)| s.clone()),
                        host: self.shards.get(recipient).map(|(_, h)| h.clone()),
                        sent: record.sent,
                        replied,
                        linked: record.linked,
                        ended,
                        connected,
                        close_asked: self
                            .closes_asked
                            .get(recipient)
                            .and_then(|v| v.iter().find(|t| **t >= connected).copied()),
                    });
                }
            }
        }
        for loss in missing {
            let what = format!(
                "{} never received message {} from {} (sent at {:?}, answered at {:?})",
                loss.recipient, loss.op, loss.sender, loss.sent, loss.replied
            );
            match judge(&loss) {
                Some(why) => self.losses_explained.push(format!("{what}: {why}")),
                None => self.violation(format!("{what}, and no drop was counted")),
            }
        }
    }

    /// The `ungroup` of transition `index` may not have reached every gateway (faults
    /// around it): its members then, still connected, may still be members.
    pub fn unsettle_ungroup(&mut self, index: usize) {
        let Some(Change::Ungroup(group)) = self.history[index].change.clone() else {
            return;
        };
        let before: Vec<ClientId> = self.history[index - 1]
            .state
            .members(&group)
            .map(|(id, _)| id.clone())
            .collect();
        let current = &mut self.history.last_mut().expect("the initial state").state;
        current.doubtful.insert(group.clone());
        for id in before {
            // Gone since: settled (a member again by its own join is not: the ungroup
            // may still land after it).
            if current.clients.contains_key(&id) {
                current.maybe.insert((id, group.clone()));
            }
        }
    }

    /// Groups with unsettled memberships.
    pub fn unsettled_groups(&self) -> BTreeSet<String> {
        self.current()
            .maybe
            .iter()
            .map(|(_, g)| g.clone())
            .collect()
    }

    /// The audit asked `group`'s members (`listed`, exact: faults healed): an
    /// unsettled membership is a membership when listed, else none.
    pub fn settle_group(&mut self, group: &str, listed: &[ClientId], now: Duration) {
        self.history
            .last_mut()
            .expect("the initial state")
            .state
            .doubtful
            .remove(group);
        let unsettled: Vec<ClientId> = self
            .current()
            .maybe
            .iter()
            .filter(|(_, g)| g == group)
            .map(|(id, _)| id.clone())
            .collect();
        for id in unsettled {
            if listed.contains(&id) {
                self.apply_now(Change::Join(id, group.to_string()), now);
            } else {
                self.apply_now(Change::Leave(id, group.to_string()), now);
            }
        }
    }

    /// Records a violation.
    pub fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    /// Number of transitions so far (connections included).
    pub fn transitions(&self) -> usize {
        self.history.len() - 1
    }

    /// The last change, for traces.
    pub fn last_change(&self) -> Option<&Change> {
        self.history.last().and_then(|t| t.change.as_ref())
    }
}

/// FNV-1a, 64 bits: payloads are remembered by length and hash.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A session as the probe reports it from `getSession` and the session maps: `{}` for a
/// client without one.
pub fn session_json(session: &Option<Session>) -> Value {
    match session {
        Some(s) => crate::php::object(s),
        None => Value::Object(Map::new()),
    }
}

fn ids<'a>(it: impl Iterator<Item = &'a ClientId>) -> Value {
    let mut v: Vec<&ClientId> = it.collect();
    v.sort();
    v.dedup();
    json!(v)
}

fn strings(it: impl Iterator<Item = String>) -> Value {
    let v: BTreeSet<String> = it.collect();
    json!(v.into_iter().collect::<Vec<_>>())
}

/// What query `op` with `args` answers in `state` (`None`: not a query the model knows).
pub fn expect_query(state: &State, op: &str, args: &Value) -> Option<Value> {
    let arg = |name: &str| args.get(name).and_then(Value::as_str).unwrap_or("");
    let all = &state.clients;
    let in_group = |g: &str| -> Vec<(&ClientId, &ClientState)> {
        all.iter()
            .filter(|(_, c)| g.is_empty() || c.groups.contains(g))
            .collect()
    };
    let sessions = |members: Vec<(&ClientId, &ClientState)>| {
        let mut map = Map::new();
        for (id, c) in members {
            map.insert(id.clone(), session_json(&c.session));
        }
        Value::Object(map)
    };
    Some(match op {
        "isOnline" => json!(usize::from(all.contains_key(arg("client_id")))),
        "isUidOnline" => json!(usize::from(
            all.values().any(|c| c.uid.as_deref() == Some(arg("uid")))
        )),
        "getClientIdByUid" => ids(all
            .iter()
            .filter(|(_, c)| c.uid.as_deref() == Some(arg("uid")))
            .map(|(id, _)| id)),
        "getUidByClientId" => match all.get(arg("client_id")).and_then(|c| c.uid.clone()) {
            Some(uid) => json!(uid),
            None => Value::Null,
        },
        "getClientIdListByGroup" => {
            if arg("group").is_empty() {
                json!([])
            } else {
                ids(state.members(arg("group")).map(|(id, _)| id))
            }
        }
        "getClientSessionsByGroup" => {
            if arg("group").is_empty() {
                json!({})
            } else {
                sessions(state.members(arg("group")).collect())
            }
        }
        "getClientCountByGroup" | "getClientIdCountByGroup" => {
            json!(in_group(arg("group")).len())
        }
        "getAllClientIdList" => ids(all.keys()),
        "getAllClientIdCount" | "getAllClientCount" => json!(all.len()),
        "getAllClientSessions" => sessions(in_group(arg("group"))),
        "getAllUidList" => strings(all.values().filter_map(|c| c.uid.clone())),
        "getAllUidCount" => json!(all
            .values()
            .filter_map(|c| c.uid.clone())
            .collect::<BTreeSet<_>>()
            .len()),
        "getUidListByGroup" => strings(
            state
                .members(arg("group"))
                .filter_map(|(_, c)| c.uid.clone()),
        ),
        "getUidCountByGroup" => json!(state
            .members(arg("group"))
            .filter_map(|(_, c)| c.uid.clone())
            .collect::<BTreeSet<_>>()
            .len()),
        "getAllGroupIdList" => strings(all.values().flat_map(|c| c.groups.iter().cloned())),
        // `GroupScan::Complete` (the worker's default): every client is scanned, none
        // stops the scan (ops.md 5.4 quirk, decided in the worker core).
        "getAllGroupUidList" | "getAllGroupUidCount" => {
            let mut map: BTreeMap<&String, BTreeSet<&String>> = BTreeMap::new();
            for c in all.values() {
                if let Some(uid) = &c.uid {
                    for g in &c.groups {
                        map.entry(g).or_default().insert(uid);
                    }
                }
            }
            let count = op == "getAllGroupUidCount";
            Value::Object(
                map.into_iter()
                    .map(|(g, uids)| {
                        let v = if count {
                            json!(uids.len())
                        } else {
                            json!(uids)
                        };
                        (g.clone(), v)
                    })
                    .collect(),
            )
        }
        "getAllGroupClientIdList" | "getAllGroupClientIdCount" => {
            let mut map: BTreeMap<&String, BTreeSet<&ClientId>> = BTreeMap::new();
            for (id, c) in all {
                for g in &c.groups {
                    map.entry(g).or_default().insert(id);
                }
            }
            let count = op == "getAllGroupClientIdCount";
            Value::Object(
                map.into_iter()
                    .map(|(g, ids)| {
                        let v = if count { json!(ids.len()) } else { json!(ids) };
                        (g.clone(), v)
                    })
                    .collect(),
            )
        }
        // GatewayClient only (a worker answers `ok:false`).
        "batchGetClientIdByUid" | "isUidsOnline" | "batchGetClientIdCountByGroup" => {
            let key = if op == "batchGetClientIdCountByGroup" {
                "groups"
            } else {
                "uids"
            };
            let names: BTreeSet<&str> = args[key]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            Value::Object(
                names
                    .into_iter()
                    .map(|name| {
                        let v = match op {
                            "batchGetClientIdByUid" => ids(all
                                .iter()
                                .filter(|(_, c)| c.uid.as_deref() == Some(name))
                                .map(|(id, _)| id)),
                            "isUidsOnline" => json!(usize::from(
                                all.values().any(|c| c.uid.as_deref() == Some(name))
                            )),
                            _ => json!(state.members(name).count()),
                        };
                        (name.to_string(), v)
                    })
                    .collect(),
            )
        }
        "getSession" => match all.get(arg("client_id")) {
            Some(c) => session_json(&c.session),
            None => Value::Null,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_send_concurrent_with_a_join_may_reach_the_joiner_but_not_a_stranger() {
        let mut m = Model::new();
        m.apply_now(Change::Connect("a".into()), ms(1));
        m.apply_now(Change::Connect("b".into()), ms(1));
        m.apply_now(Change::Connect("c".into()), ms(1));
        let join = m.begin(Change::Join("b".into(), "g".into()), ms(10));
        let target = Target::Group {
            groups: vec!["g".into()],
            exclude: vec![],
        };
        m.on_send(1, "a", target, "", ms(11));
        m.on_push("b", 1, "", ms(12));
        m.end(join, ms(20));
        assert!(m.violations.is_empty(), "{:?}", m.violations);
        m.on_push("c", 1, "", ms(13));
        assert_eq!(m.violations.len(), 1, "c never was in g");
        m.on_push("b", 1, "", ms(14));
        assert_eq!(m.violations.len(), 2, "one membership, one copy");
    }

    #[test]
    fn a_send_after_a_completed_leave_cannot_reach_the_leaver() {
        let mut m = Model::new();
        m.apply_now(Change::Connect("a".into()), ms(1));
        m.apply_now(Change::Connect("b".into()), ms(1));
        m.apply_now(Change::Join("b".into(), "g".into()), ms(2));
        m.apply_now(Change::Leave("b".into(), "g".into()), ms(3));
        let target = Target::Group {
            groups: vec!["g".into()],
            exclude: vec![],
        };
        m.on_send(1, "a", target.clone(), "", ms(5));
        m.on_push("b", 1, "", ms(6));
        assert_eq!(m.violations.len(), 1);
        // Sent before the leave completed: allowed.
        let mut m = Model::new();
        m.apply_now(Change::Connect("a".into()), ms(1));
        m.apply_now(Change::Connect("b".into()), ms(1));
        m.apply_now(Change::Join("b".into(), "g".into()), ms(2));
        let leave = m.begin(Change::Leave("b".into(), "g".into()), ms(3));
        m.on_send(1, "a", target, "", ms(4));
        m.end(leave, ms(5));
        m.on_push("b", 1, "", ms(9));
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn order_per_sender_and_liveness() {
        let mut m = Model::new();
        m.apply_now(Change::Connect("a".into()), ms(1));
        m.apply_now(Change::Connect("b".into()), ms(1));
        m.on_send(1, "a", Target::Client("b".into()), "", ms(2));
        m.on_send(2, "a", Target::Client("b".into()), "", ms(3));
        m.on_send(3, "a", Target::Client("b".into()), "", ms(3));
        m.on_send(4, "a", Target::Client("b".into()), "", ms(3));
        m.on_send_replied(3, ms(3));
        m.on_push("b", 2, "", ms(4));
        m.on_push("b", 1, "", ms(5));
        assert_eq!(m.violations.len(), 1, "1 after 2");
        m.check_deliveries(|_| None);
        assert_eq!(
            m.violations.len(),
            2,
            "3 never arrived (4 had no reply: maybe never sent): {:?}",
            m.violations
        );
    }

    #[test]
    fn a_loss_is_a_violation_unless_the_judge_explains_it() {
        let mut m = Model::new();
        m.apply_now(Change::Connect("a".into()), ms(1));
        m.apply_now(Change::Connect("b".into()), ms(1));
        m.set_shard("b", "10.0.0.2:2300".into(), "c1");
        m.on_send(1, "a", Target::Client("b".into()), "", ms(2));
        m.on_send_replied(1, ms(3));
        m.on_send(2, "a", Target::Client("b".into()), "", ms(4));
        m.on_send_replied(2, ms(5));
        m.on_send_unlinked(2);
        m.check_deliveries(|loss| {
            assert_eq!(loss.shard.as_deref(), Some("10.0.0.2:2300"));
            (loss.op == 1).then(|| "a drop was counted".to_string())
        });
        assert_eq!(m.losses_explained.len(), 1, "{:?}", m.losses_explained);
        assert_eq!(m.violations.len(), 1, "{:?}", m.violations);
        assert!(m.violations[0].contains("message 2"), "{:?}", m.violations);
    }

    #[test]
    fn a_member_an_open_ungroup_may_have_removed_is_not_certain() {
        let mut m = Model::new();
        m.apply_now(Change::Connect("a".into()), ms(1));
        m.apply_now(Change::Connect("b".into()), ms(1));
        m.apply_now(Change::Join("b".into(), "g".into()), ms(2));
        let t = m.begin(Change::Ungroup("g".into()), ms(3));
        m.end(t, ms(4));
        m.unsettle_ungroup(t);
        let target = Target::Group {
            groups: vec!["g".into()],
            exclude: vec![],
        };
        assert_eq!(target.copies(m.current(), "b"), 1, "may still reach b");
        assert_eq!(target.certain_copies(m.current(), "b"), 0, "need not");
        m.on_send(1, "a", target, "", ms(5));
        m.on_send_replied(1, ms(6));
        m.check_deliveries(|_| None);
        assert!(m.violations.is_empty(), "{:?}", m.violations);
    }

    #[test]
    fn queries_follow_the_state() {
        let s = State::default()
            .apply(&Change::Connect("b".into()))
            .apply(&Change::Connect("a".into()))
            .apply(&Change::Bind("a".into(), "u1".into()))
            .apply(&Change::Join("a".into(), "g".into()))
            .apply(&Change::UpdateSession(
                "b".into(),
                vec![(crate::php::Key::Str("k".into()), crate::php::Php::Int(1))],
            ));
        let q = |op: &str, args: Value| expect_query(&s, op, &args).unwrap();
        assert_eq!(q("getAllClientIdList", json!({})), json!(["a", "b"]));
        assert_eq!(q("getClientIdByUid", json!({"uid":"u1"})), json!(["a"]));
        assert_eq!(q("getUidListByGroup", json!({"group":"g"})), json!(["u1"]));
        assert_eq!(
            q("getAllClientSessions", json!({})),
            json!({"a":{}, "b":{"k":1}})
        );
        assert_eq!(q("getClientCountByGroup", json!({"group":""})), json!(2));
        assert_eq!(q("getSession", json!({"client_id":"z"})), Value::Null);
    }
}
