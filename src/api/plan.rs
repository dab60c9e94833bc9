//! The sender side of the Gateway API: each call of the original `Lib\Gateway` turned into
//! the exact frames it writes to each gateway (spec 2.4), as a pure function of the call,
//! the caller's context and the ordered list of gateways.
//!
//! A [`Plan`] says which frames go where and how the call completes: at once with a known
//! result, with the outcome of the sends (`sendToClient` returns whether the frame was
//! queued), or after one reply per frame, folded by a [`Merge`].
//!
//! The functions take PHP-typed arguments (`&PhpValue`) like the original, because the
//! original's output depends on PHP types (`sendToUid([1001, "bob"])` writes
//! `[1001,"bob"]`); [`Planner::plan`] maps an [`ApiCall`] onto them.
//!
//! Two callers exist, with the original's differences:
//!
//! | | [`Caller::Worker`] (`GatewayWorker\Lib\Gateway`) | [`Caller::Client`] (GatewayClient) |
//! |---|---|---|
//! | malformed client id | skipped / `false` / `0` / `null` | [`ApiError::MalformedClientId`] |
//! | single-client target | only a gateway in the list (else `false`) | any address |
//! | current client | `client_id === current` takes the current path | never |
//! | `raw` of sendToClient / sendToUid | honoured | ignored (no such parameter) |
//! | batch calls | [`ApiError::NotAvailable`] | available |
//!
//! The auth prefix of GatewayClient ([`auth_frame`]) is the transport's business: it goes
//! in front of every request buffer, not into the plan.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use bytes::Bytes;

use super::merge::{GroupScan, Merge};
use super::{ApiCall, ApiError, ApiResult, CurrentClient};
use crate::protocol::client_id::{client_address, GatewayAddr};
use crate::protocol::frame::{Command, Frame, Header, FLAG_NOT_CALL_ENCODE};
use crate::protocol::php::body::{encode_body, scalar_to_string};
use crate::protocol::php::json::{self, JsonEncodeOptions};
use crate::protocol::php::serialize::serialize;
use crate::protocol::php::{is_empty_bytes, PhpArray, PhpKey, PhpValue};

/// Who makes the call; see the module table.
#[derive(Debug, Clone, Copy)]
pub enum Caller<'a> {
    /// Business code inside a worker, maybe inside a client event.
    Worker {
        /// The client of the event being handled, if any.
        current: Option<&'a CurrentClient>,
    },
    /// An outside program using the GatewayClient library.
    Client,
}

/// One frame for one gateway.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    /// The gateway's internal address.
    pub to: GatewayAddr,
    /// The frame (all-zero header except cmd, connection id and flag).
    pub frame: Frame,
}

/// How a call completes once its frames are handed to the links.
#[derive(Debug, Clone, PartialEq)]
pub enum Completion {
    /// The result is known now.
    Ready(ApiResult),
    /// `true` when every frame was accepted by its link, else `false` (the original's
    /// `send()` return value).
    SendOutcome,
    /// One reply per frame, folded by the merge.
    Replies(Merge),
}

/// What a call does: frames in order, then how it completes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Frames to send, in order (gateway order for fan-outs).
    pub frames: Vec<Outgoing>,
    /// How the call completes.
    pub completion: Completion,
}

impl Plan {
    fn ready(value: PhpValue) -> Plan {
        Plan {
            frames: Vec::new(),
            completion: Completion::Ready(Ok(value)),
        }
    }

    fn sent(frames: Vec<Outgoing>, value: PhpValue) -> Plan {
        Plan {
            frames,
            completion: Completion::Ready(Ok(value)),
        }
    }

    /// A send whose result the caller ignores (`void` in the original).
    fn void(mut self) -> Plan {
        if let Completion::SendOutcome = self.completion {
            self.completion = Completion::Ready(Ok(PhpValue::Null));
        } else if let Completion::Ready(Ok(PhpValue::Bool(false))) = self.completion {
            self.completion = Completion::Ready(Ok(PhpValue::Null));
        }
        self
    }

    fn query(frames: Vec<Outgoing>, merge: Merge) -> Plan {
        if frames.is_empty() {
            // Nobody to ask: the original folds an empty reply set.
            let value = merge.merge(&[]);
            return Plan::ready(value);
        }
        Plan {
            frames,
            completion: Completion::Replies(merge),
        }
    }
}

/// The GATEWAY_CLIENT_CONNECT frame a GatewayClient writes before every request when a
/// secret is set (`sender_api/auth_prefix`).
pub fn auth_frame(secret_key: &[u8]) -> Frame {
    let mut body = PhpArray::new();
    body.insert(
        PhpKey::from_bytes(b"secret_key"),
        PhpValue::Str(Bytes::copy_from_slice(secret_key)),
    );
    let json = json_encode(&PhpValue::Array(body)).unwrap_or_default();
    frame(
        Command::GatewayClientConnect,
        0,
        Bytes::new(),
        &PhpValue::Str(json),
        0,
    )
}

/// The frame template of the original senders: everything zero but the given fields; the
/// flag is `flag | BODY_IS_SCALAR` for scalar bodies (spec 1.2).
pub fn frame(
    cmd: Command,
    connection_id: u32,
    ext_data: Bytes,
    body: &PhpValue,
    flag: u8,
) -> Frame {
    let (body, scalar_bit) = encode_body(body);
    Frame {
        header: Header {
            cmd,
            local_ip: Ipv4Addr::UNSPECIFIED,
            local_port: 0,
            client_ip: Ipv4Addr::UNSPECIFIED,
            client_port: 0,
            connection_id,
            flag: flag | scalar_bit,
            gateway_port: 0,
        },
        ext_data,
        body,
    }
}

/// The bytes of one frame on the wire.
pub fn frame_bytes(frame: &Frame) -> Bytes {
    let mut out = bytes::BytesMut::with_capacity(frame.encoded_len());
    frame.encode(&mut out);
    out.freeze()
}

/// PHP `json_encode` without flags; `None` where PHP returns `false`.
pub(crate) fn json_encode(value: &PhpValue) -> Option<Bytes> {
    json::json_encode(value, JsonEncodeOptions::default())
        .ok()
        .map(Bytes::from)
}

/// PHP truthiness (`if ($x)`).
fn truthy(value: &PhpValue) -> bool {
    !value.is_empty()
}

/// `(array)$x` for an argument the original wraps when it is not an array.
fn as_list(value: &PhpValue) -> PhpArray {
    match value {
        PhpValue::Array(a) => a.clone(),
        other => {
            let mut a = PhpArray::new();
            a.push(other.clone());
            a
        }
    }
}

/// A list of names as PHP values (strings).
fn names_value(names: &[Bytes]) -> PhpValue {
    let mut a = PhpArray::with_capacity(names.len());
    for name in names {
        a.push(PhpValue::Str(name.clone()));
    }
    PhpValue::Array(a)
}

/// The text PHP writes for an `ext_data` value (`strlen`/concatenation of a scalar).
fn ext_text(value: &PhpValue) -> Result<Bytes, ApiError> {
    match value {
        PhpValue::Null => Ok(Bytes::new()),
        PhpValue::Array(_) => Err(ApiError::BadArgument(
            "an array where a string is expected".into(),
        )),
        scalar => Ok(scalar_to_string(scalar).unwrap_or_default()),
    }
}

/// `json_encode`, where PHP's `false` (invalid UTF-8, INF/NAN) becomes empty ext_data.
fn json_ext(value: &PhpValue) -> Bytes {
    json_encode(value).unwrap_or_default()
}

/// An array built by string keys in order (for the small JSON objects of ext_data).
fn object(entries: Vec<(&str, PhpValue)>) -> PhpValue {
    let mut a = PhpArray::with_capacity(entries.len());
    for (k, v) in entries {
        a.insert(PhpKey::from_bytes(k.as_bytes()), v);
    }
    PhpValue::Array(a)
}

/// Connection ids grouped per gateway in first-appearance order, each a `cid => cid` map
/// (`$map[$address][$cid] = $cid`).
#[derive(Default)]
struct PerGateway {
    order: Vec<(GatewayAddr, PhpArray)>,
    index: HashMap<GatewayAddr, usize>,
}

impl PerGateway {
    fn add(&mut self, addr: GatewayAddr, cid: u32) {
        let slot = match self.index.get(&addr) {
            Some(&i) => i,
            None => {
                self.index.insert(addr, self.order.len());
                self.order.push((addr, PhpArray::new()));
                self.order.len() - 1
            }
        };
        let cid = i64::from(cid);
        self.order[slot]
            .1
            .insert(PhpKey::Int(cid), PhpValue::Int(cid));
    }

    fn get(&self, addr: &GatewayAddr) -> Option<&PhpArray> {
        self.index.get(addr).map(|&i| &self.order[i].1)
    }
}

/// Turns API calls into plans for one caller and one ordered gateway list.
#[derive(Debug, Clone, Copy)]
pub struct Planner<'a> {
    caller: Caller<'a>,
    /// Gateways for fan-outs, in order: a worker's open links, a client's register list.
    gateways: &'a [GatewayAddr],
    /// How the `getAllGroup*` merges scan each gateway's clients.
    group_scan: GroupScan,
}

impl<'a> Planner<'a> {
    /// A sender for `caller` over `gateways` (fan-out order).
    pub fn new(caller: Caller<'a>, gateways: &'a [GatewayAddr], group_scan: GroupScan) -> Self {
        Planner {
            caller,
            gateways,
            group_scan,
        }
    }

    fn current(&self) -> Option<&'a CurrentClient> {
        match self.caller {
            Caller::Worker { current } => current,
            Caller::Client => None,
        }
    }

    fn is_worker(&self) -> bool {
        matches!(self.caller, Caller::Worker { .. })
    }

    /// Whether a frame can be sent to `addr`: a worker only has its links, a client
    /// connects anywhere.
    fn reachable(&self, addr: &GatewayAddr) -> bool {
        !self.is_worker() || self.gateways.contains(addr)
    }

    /// `Context::clientIdToAddress`: `Ok(None)` for a malformed id in a worker (logged and
    /// skipped there), an error for a client (the library throws).
    fn address(&self, client_id: &[u8]) -> Result<Option<(GatewayAddr, u32)>, ApiError> {
        match client_address(client_id) {
            Some(found) => Ok(Some(found)),
            None if self.is_worker() => {
                tracing::debug!(client_id = ?client_id, "malformed client id skipped");
                Ok(None)
            }
            None => Err(ApiError::MalformedClientId),
        }
    }

    /// `address()` of each id, grouped per gateway (`clientIdArrayToAddressArray`).
    fn group_ids(&self, ids: &PhpArray) -> Result<PerGateway, ApiError> {
        let mut grouped = PerGateway::default();
        for (_, id) in ids.iter() {
            let text = ext_text(id).unwrap_or_default();
            if let Some((addr, cid)) = self.address(&text)? {
                grouped.add(addr, cid);
            }
        }
        Ok(grouped)
    }

    fn fan_out(&self, frame: &Frame) -> Vec<Outgoing> {
        self.gateways
            .iter()
            .map(|&to| Outgoing {
                to,
                frame: frame.clone(),
            })
            .collect()
    }

    /// `getAllGatewayAddress()` for queries: the original throws on an empty list.
    fn query_all(&self, frame: Frame, merge: Merge) -> Result<Plan, ApiError> {
        if self.gateways.is_empty() {
            return Err(ApiError::NoGateway);
        }
        Ok(Plan::query(self.fan_out(&frame), merge))
    }

    fn raw_flag(raw: bool) -> u8 {
        if raw {
            FLAG_NOT_CALL_ENCODE
        } else {
            0
        }
    }

    /// `sendCmdAndMessageToClient`: the current client when `client_id` is `None` or equal
    /// to the current id, else the parsed id; PHP-empty ext_data stays empty.
    fn send_cmd(
        &self,
        client_id: Option<&[u8]>,
        cmd: Command,
        message: &PhpValue,
        ext: &PhpValue,
        flag: u8,
    ) -> Result<Plan, ApiError> {
        let current = self.current();
        let target = match (client_id, current) {
            (None, Some(c)) => Some((c.gateway, c.connection_id)),
            (None, None) => return Err(ApiError::NoCurrentClient),
            (Some(id), Some(c)) if id == c.client_id.as_ref() => Some((c.gateway, c.connection_id)),
            (Some(id), _) => self.address(id)?,
        };
        let Some((to, cid)) = target else {
            return Ok(Plan::ready(PhpValue::Bool(false)));
        };
        if !self.reachable(&to) {
            return Ok(Plan::ready(PhpValue::Bool(false)));
        }
        let ext = if ext.is_empty() {
            Bytes::new()
        } else {
            ext_text(ext)?
        };
        Ok(Plan {
            frames: vec![Outgoing {
                to,
                frame: frame(cmd, cid, ext, message, flag),
            }],
            completion: Completion::SendOutcome,
        })
    }

    /// The current client's target, for the `*CurrentClient` calls.
    fn current_target(&self) -> Result<&'a CurrentClient, ApiError> {
        self.current().ok_or(ApiError::NoCurrentClient)
    }

    // ---- sending -------------------------------------------------------------------

    /// `sendToAll($message, $client_id_array, $exclude_client_id, $raw)`.
    pub fn send_to_all(
        &self,
        message: &PhpValue,
        client_id_array: &PhpValue,
        exclude: &PhpValue,
        raw: bool,
    ) -> Result<Plan, ApiError> {
        let template = frame(
            Command::SendToAll,
            0,
            Bytes::new(),
            message,
            Self::raw_flag(raw),
        );
        let exclude_list = truthy(exclude).then(|| as_list(exclude));

        if truthy(client_id_array) {
            let PhpValue::Array(ids) = client_id_array else {
                // The original prints "bad $client_id_array" and returns.
                return Ok(Plan::ready(PhpValue::Null));
            };
            // Exclusion by exact text (array_flip + isset), before grouping.
            let excluded: Vec<Bytes> = exclude_list
                .iter()
                .flat_map(|l| l.iter().map(|(_, v)| ext_text(v).unwrap_or_default()))
                .collect();
            let mut grouped = PerGateway::default();
            for (_, id) in ids.iter() {
                let text = ext_text(id).unwrap_or_default();
                if excluded.contains(&text) {
                    continue;
                }
                if let Some((addr, cid)) = self.address(&text)? {
                    grouped.add(addr, cid);
                }
            }
            let frames = grouped
                .order
                .into_iter()
                .filter(|(addr, _)| self.reachable(addr))
                .map(|(to, cids)| {
                    let mut f = template.clone();
                    f.ext_data = json_ext(&object(vec![("connections", PhpValue::Array(cids))]));
                    Outgoing { to, frame: f }
                })
                .collect();
            return Ok(Plan::sent(frames, PhpValue::Null));
        }
        if matches!(client_id_array, PhpValue::Array(_)) {
            // An explicitly empty list sends nothing.
            return Ok(Plan::ready(PhpValue::Null));
        }
        let Some(exclude_list) = exclude_list else {
            return Ok(Plan::sent(self.fan_out(&template), PhpValue::Null));
        };
        let grouped = self.group_ids(&exclude_list)?;
        let frames = self
            .gateways
            .iter()
            .map(|&to| {
                let mut f = template.clone();
                if let Some(cids) = grouped.get(&to) {
                    f.ext_data =
                        json_ext(&object(vec![("exclude", PhpValue::Array(cids.clone()))]));
                }
                Outgoing { to, frame: f }
            })
            .collect();
        Ok(Plan::sent(frames, PhpValue::Null))
    }

    /// `sendToClient($client_id, $message, $raw)` → bool.
    pub fn send_to_client(
        &self,
        client_id: &[u8],
        message: &PhpValue,
        raw: bool,
    ) -> Result<Plan, ApiError> {
        let flag = if self.is_worker() {
            Self::raw_flag(raw)
        } else {
            0
        };
        self.send_cmd(
            Some(client_id),
            Command::SendToOne,
            message,
            &PhpValue::Null,
            flag,
        )
    }

    /// `sendToCurrentClient($message, $raw)` → bool.
    pub fn send_to_current_client(&self, message: &PhpValue, raw: bool) -> Result<Plan, ApiError> {
        self.current_target()?;
        self.send_cmd(
            None,
            Command::SendToOne,
            message,
            &PhpValue::Null,
            Self::raw_flag(raw),
        )
    }

    /// `sendToUid($uid, $message, $raw)`: the JSON list of uids to every gateway.
    pub fn send_to_uid(
        &self,
        uid: &PhpValue,
        message: &PhpValue,
        raw: bool,
    ) -> Result<Plan, ApiError> {
        let flag = if self.is_worker() {
            Self::raw_flag(raw)
        } else {
            0
        };
        let mut f = frame(Command::SendToUid, 0, Bytes::new(), message, flag);
        f.ext_data = json_ext(&PhpValue::Array(as_list(uid)));
        Ok(Plan::sent(self.fan_out(&f), PhpValue::Null))
    }

    /// `sendToGroup($group, $message, $exclude_client_id, $raw)`: `false` for a PHP-empty
    /// group; exclusions only in the frames of the gateways owning them.
    pub fn send_to_group(
        &self,
        group: &PhpValue,
        message: &PhpValue,
        exclude: &PhpValue,
        raw: bool,
    ) -> Result<Plan, ApiError> {
        if group.is_empty() {
            return Ok(Plan::ready(PhpValue::Bool(false)));
        }
        let groups = PhpValue::Array(as_list(group));
        let template = frame(
            Command::SendToGroup,
            0,
            Bytes::new(),
            message,
            Self::raw_flag(raw),
        );
        let default_ext = json_ext(&object(vec![
            ("group", groups.clone()),
            ("exclude", PhpValue::Null),
        ]));
        if exclude.is_empty() {
            let mut f = template;
            f.ext_data = default_ext;
            return Ok(Plan::sent(self.fan_out(&f), PhpValue::Null));
        }
        let grouped = self.group_ids(&as_list(exclude))?;
        let frames = self
            .gateways
            .iter()
            .map(|&to| {
                let mut f = template.clone();
                f.ext_data = match grouped.get(&to) {
                    Some(cids) => json_ext(&object(vec![
                        ("group", groups.clone()),
                        ("exclude", PhpValue::Array(cids.clone())),
                    ])),
                    None => default_ext.clone(),
                };
                Outgoing { to, frame: f }
            })
            .collect();
        Ok(Plan::sent(frames, PhpValue::Null))
    }

    // ---- uids, groups, sessions ----------------------------------------------------

    fn client_command(
        &self,
        client_id: &[u8],
        cmd: Command,
        ext: &PhpValue,
    ) -> Result<Plan, ApiError> {
        self.send_cmd(Some(client_id), cmd, &PhpValue::str(""), ext, 0)
    }

    /// `bindUid($client_id, $uid)`.
    pub fn bind_uid(&self, client_id: &[u8], uid: &PhpValue) -> Result<Plan, ApiError> {
        Ok(self
            .client_command(client_id, Command::BindUid, uid)?
            .void())
    }

    /// `unbindUid($client_id, $uid)`.
    pub fn unbind_uid(&self, client_id: &[u8], uid: &PhpValue) -> Result<Plan, ApiError> {
        Ok(self
            .client_command(client_id, Command::UnbindUid, uid)?
            .void())
    }

    /// `joinGroup($client_id, $group)`.
    pub fn join_group(&self, client_id: &[u8], group: &PhpValue) -> Result<Plan, ApiError> {
        Ok(self
            .client_command(client_id, Command::JoinGroup, group)?
            .void())
    }

    /// `leaveGroup($client_id, $group)`.
    pub fn leave_group(&self, client_id: &[u8], group: &PhpValue) -> Result<Plan, ApiError> {
        Ok(self
            .client_command(client_id, Command::LeaveGroup, group)?
            .void())
    }

    /// `ungroup($group)`: `false` for a PHP-empty group, else UNGROUP to every gateway.
    pub fn ungroup(&self, group: &PhpValue) -> Result<Plan, ApiError> {
        if group.is_empty() {
            return Ok(Plan::ready(PhpValue::Bool(false)));
        }
        let f = frame(Command::Ungroup, 0, ext_text(group)?, &PhpValue::str(""), 0);
        Ok(Plan::sent(self.fan_out(&f), PhpValue::Null))
    }

    fn session_array(session: &PhpValue) -> Result<(), ApiError> {
        match session {
            PhpValue::Array(_) => Ok(()),
            _ => Err(ApiError::BadArgument("a session must be an array".into())),
        }
    }

    /// `setSession($client_id, array $session)`: SET_SESSION with the serialized array.
    pub fn set_session(&self, client_id: &[u8], session: &PhpValue) -> Result<Plan, ApiError> {
        Self::session_array(session)?;
        let text = PhpValue::Str(Bytes::from(serialize(session)));
        Ok(self
            .client_command(client_id, Command::SetSession, &text)?
            .void())
    }

    /// `updateSession($client_id, array $session)`: UPDATE_SESSION with the partial array.
    pub fn update_session(&self, client_id: &[u8], session: &PhpValue) -> Result<Plan, ApiError> {
        Self::session_array(session)?;
        let text = PhpValue::Str(Bytes::from(serialize(session)));
        Ok(self
            .client_command(client_id, Command::UpdateSession, &text)?
            .void())
    }

    /// `setSocketSession($client_id, $session_str)` → bool: the worker's write-back after
    /// an event (empty text clears the session).
    pub fn set_socket_session(
        &self,
        client_id: &[u8],
        session_text: &Bytes,
    ) -> Result<Plan, ApiError> {
        self.client_command(
            client_id,
            Command::SetSession,
            &PhpValue::Str(session_text.clone()),
        )
    }

    // ---- closing -------------------------------------------------------------------

    /// `closeClient($client_id, $message)` → bool; a `None` message closes without one.
    pub fn close_client(
        &self,
        client_id: &[u8],
        message: Option<&PhpValue>,
    ) -> Result<Plan, ApiError> {
        let message = message.cloned().unwrap_or(PhpValue::Null);
        self.send_cmd(Some(client_id), Command::Kick, &message, &PhpValue::Null, 0)
    }

    /// `closeCurrentClient($message)` → bool.
    pub fn close_current_client(&self, message: Option<&PhpValue>) -> Result<Plan, ApiError> {
        self.current_target()?;
        let message = message.cloned().unwrap_or(PhpValue::Null);
        self.send_cmd(None, Command::Kick, &message, &PhpValue::Null, 0)
    }

    /// `destoryClient($client_id)` → bool.
    pub fn destroy_client(&self, client_id: &[u8]) -> Result<Plan, ApiError> {
        self.send_cmd(
            Some(client_id),
            Command::Destroy,
            &PhpValue::str(""),
            &PhpValue::Null,
            0,
        )
    }

    /// `destoryCurrentClient()` → bool.
    pub fn destroy_current_client(&self) -> Result<Plan, ApiError> {
        self.current_target()?;
        self.send_cmd(
            None,
            Command::Destroy,
            &PhpValue::str(""),
            &PhpValue::Null,
            0,
        )
    }

    // ---- queries -------------------------------------------------------------------

    /// A query to the one gateway of `client_id`; `unknown` when the id is malformed or
    /// (worker) its gateway is not linked.
    fn client_query(
        &self,
        client_id: &[u8],
        cmd: Command,
        merge: Merge,
        unknown: PhpValue,
    ) -> Result<Plan, ApiError> {
        let Some((to, cid)) = self.address(client_id)? else {
            return Ok(Plan::ready(unknown));
        };
        if !self.reachable(&to) {
            return Ok(Plan::ready(unknown));
        }
        let f = frame(cmd, cid, Bytes::new(), &PhpValue::str(""), 0);
        Ok(Plan::query(vec![Outgoing { to, frame: f }], merge))
    }

    /// `isOnline($client_id)` → int 0/1.
    pub fn is_online(&self, client_id: &[u8]) -> Result<Plan, ApiError> {
        self.client_query(
            client_id,
            Command::IsOnline,
            Merge::IsOnline,
            PhpValue::Int(0),
        )
    }

    /// `getSession($client_id)`: `false` for a malformed id, `null` for an unknown
    /// gateway or client, else the session array.
    pub fn get_session(&self, client_id: &[u8]) -> Result<Plan, ApiError> {
        match self.address(client_id)? {
            None => Ok(Plan::ready(PhpValue::Bool(false))),
            Some(_) => self.client_query(
                client_id,
                Command::GetSessionByClientId,
                Merge::Single,
                PhpValue::Null,
            ),
        }
    }

    /// `getAllClientSessions($group)`: CMD 10, or CMD 23 for a non-empty group.
    pub fn get_all_client_sessions(&self, group: &PhpValue) -> Result<Plan, ApiError> {
        let (cmd, ext) = if truthy(group) {
            (Command::GetClientSessionsByGroup, ext_text(group)?)
        } else {
            (Command::GetAllClientSessions, Bytes::new())
        };
        let own = self
            .current()
            .map(|c| (c.client_id.clone(), c.session.clone()));
        let f = frame(cmd, 0, ext, &PhpValue::str(""), 0);
        self.query_all(f, Merge::Sessions { own })
    }

    /// `getClientSessionsByGroup($group)`: `[]` for a PHP-empty group.
    pub fn get_client_sessions_by_group(&self, group: &PhpValue) -> Result<Plan, ApiError> {
        if group.is_empty() {
            return Ok(Plan::ready(PhpValue::Array(PhpArray::new())));
        }
        self.get_all_client_sessions(group)
    }

    /// `getClientIdCountByGroup($group)`: counts summed; `""` counts every client.
    pub fn get_client_count_by_group(&self, group: &PhpValue) -> Result<Plan, ApiError> {
        let f = frame(
            Command::GetClientCountByGroup,
            0,
            ext_text(group)?,
            &PhpValue::str(""),
            0,
        );
        self.query_all(f, Merge::Count)
    }

    /// `getClientIdByUid($uid)` → list of client ids.
    pub fn get_client_id_by_uid(&self, uid: &PhpValue) -> Result<Plan, ApiError> {
        let f = frame(
            Command::GetClientIdByUid,
            0,
            ext_text(uid)?,
            &PhpValue::str(""),
            0,
        );
        self.query_all(f, Merge::ClientIdList)
    }

    /// `isUidOnline($uid)` → `(int)` of the client id list.
    pub fn is_uid_online(&self, uid: &PhpValue) -> Result<Plan, ApiError> {
        let f = frame(
            Command::GetClientIdByUid,
            0,
            ext_text(uid)?,
            &PhpValue::str(""),
            0,
        );
        self.query_all(f, Merge::IsUidOnline)
    }

    /// `getAllGroupIdList()`.
    pub fn get_all_group_id_list(&self) -> Result<Plan, ApiError> {
        let f = frame(
            Command::GetGroupIdList,
            0,
            Bytes::new(),
            &PhpValue::str(""),
            0,
        );
        self.query_all(f, Merge::GroupIdList)
    }

    /// The original's internal `select($fields, $where)`: CMD 25 with JSON ext_data; a
    /// `client_id` condition is rewritten per gateway into `connection_id` maps and only
    /// those gateways are asked (all of them when other conditions remain).
    pub fn select(
        &self,
        fields: &PhpValue,
        where_: &PhpValue,
        merge: Merge,
    ) -> Result<Plan, ApiError> {
        let request =
            |where_: PhpValue| object(vec![("fields", fields.clone()), ("where", where_)]);
        let blank = frame(Command::Select, 0, Bytes::new(), &PhpValue::str(""), 0);
        let conditions = match where_ {
            PhpValue::Array(a) => a.clone(),
            _ => PhpArray::new(),
        };
        let client_id_key = PhpKey::from_bytes(b"client_id");
        let Some(client_ids) = conditions.get(&client_id_key) else {
            let mut f = blank;
            f.ext_data = json_ext(&request(where_.clone()));
            return self.query_all(f, merge);
        };
        let mut base_where = conditions.clone();
        base_where.remove(&client_id_key);
        let connection_id_key = PhpKey::from_bytes(b"connection_id");
        base_where.insert(connection_id_key.clone(), PhpValue::Array(PhpArray::new()));
        let grouped = self.group_ids(&as_list(client_ids))?;
        let mut frames: Vec<Outgoing> = grouped
            .order
            .iter()
            .filter(|(to, _)| self.reachable(to))
            .map(|(to, cids)| {
                let mut w = base_where.clone();
                w.insert(connection_id_key.clone(), PhpValue::Array(cids.clone()));
                let mut f = blank.clone();
                f.ext_data = json_ext(&request(PhpValue::Array(w)));
                Outgoing { to: *to, frame: f }
            })
            .collect();
        if conditions.len() != 1 {
            if self.gateways.is_empty() {
                return Err(ApiError::NoGateway);
            }
            let mut f = blank;
            f.ext_data = json_ext(&request(PhpValue::Array(base_where)));
            for &to in self.gateways {
                if grouped.get(&to).is_none() {
                    frames.push(Outgoing {
                        to,
                        frame: f.clone(),
                    });
                }
            }
        }
        Ok(Plan::query(frames, merge))
    }

    fn fields(names: &[&str]) -> PhpValue {
        let mut a = PhpArray::new();
        for n in names {
            a.push(PhpValue::str(n));
        }
        PhpValue::Array(a)
    }

    fn where_groups(group: &PhpValue) -> PhpValue {
        object(vec![("groups", PhpValue::Array(as_list(group)))])
    }

    fn no_condition() -> PhpValue {
        PhpValue::Array(PhpArray::new())
    }

    /// `getClientIdListByGroup($group)` → map client_id ⇒ client_id.
    pub fn get_client_id_list_by_group(&self, group: &PhpValue) -> Result<Plan, ApiError> {
        if group.is_empty() {
            return Ok(Plan::ready(PhpValue::Array(PhpArray::new())));
        }
        self.select(
            &Self::fields(&["uid"]),
            &Self::where_groups(group),
            Merge::ClientIdMap,
        )
    }

    /// `getAllClientIdList()` → map client_id ⇒ client_id.
    pub fn get_all_client_id_list(&self) -> Result<Plan, ApiError> {
        self.select(
            &Self::fields(&["uid"]),
            &Self::no_condition(),
            Merge::ClientIdMap,
        )
    }

    /// `getUidListByGroup($group)` / `getUidCountByGroup($group)`.
    pub fn get_uid_list_by_group(&self, group: &PhpValue, count: bool) -> Result<Plan, ApiError> {
        if group.is_empty() {
            let empty = if count {
                PhpValue::Int(0)
            } else {
                PhpValue::Array(PhpArray::new())
            };
            return Ok(Plan::ready(empty));
        }
        self.select(
            &Self::fields(&["uid"]),
            &Self::where_groups(group),
            Merge::UidMap { count },
        )
    }

    /// `getAllUidList()` / `getAllUidCount()`.
    pub fn get_all_uid_list(&self, count: bool) -> Result<Plan, ApiError> {
        self.select(
            &Self::fields(&["uid"]),
            &Self::no_condition(),
            Merge::UidMap { count },
        )
    }

    /// `getUidByClientId($client_id)` → the uid or null.
    pub fn get_uid_by_client_id(&self, client_id: &[u8]) -> Result<Plan, ApiError> {
        let ids = names_value(&[Bytes::copy_from_slice(client_id)]);
        self.select(
            &Self::fields(&["uid"]),
            &object(vec![("client_id", ids)]),
            Merge::FirstUid,
        )
    }

    /// `getAllGroupUidList()` / `getAllGroupUidCount()`.
    pub fn get_all_group_uid_list(&self, count: bool) -> Result<Plan, ApiError> {
        let merge = Merge::GroupUids {
            count,
            scan: self.group_scan,
        };
        self.select(
            &Self::fields(&["uid", "groups"]),
            &Self::no_condition(),
            merge,
        )
    }

    /// `getAllGroupClientIdList()` / `getAllGroupClientIdCount()`.
    pub fn get_all_group_client_id_list(&self, count: bool) -> Result<Plan, ApiError> {
        let merge = Merge::GroupClientIds {
            count,
            scan: self.group_scan,
        };
        self.select(&Self::fields(&["groups"]), &Self::no_condition(), merge)
    }

    fn client_only(&self) -> Result<(), ApiError> {
        if self.is_worker() {
            Err(ApiError::NotAvailable)
        } else {
            Ok(())
        }
    }

    /// GatewayClient `batchGetClientIdByUid($uids)` / `isUidsOnline($uids)`.
    pub fn batch_get_client_id_by_uid(
        &self,
        uids: &PhpValue,
        online: bool,
    ) -> Result<Plan, ApiError> {
        self.client_only()?;
        let f = frame(
            Command::BatchGetClientIdByUid,
            0,
            json_ext(uids),
            &PhpValue::str(""),
            0,
        );
        let merge = if online {
            Merge::UidsOnline
        } else {
            Merge::BatchClientIds
        };
        self.query_all(f, merge)
    }

    /// GatewayClient `batchGetClientIdCountByGroup($groups)`.
    pub fn batch_get_client_count_by_group(&self, groups: &PhpValue) -> Result<Plan, ApiError> {
        self.client_only()?;
        let f = frame(
            Command::BatchGetClientCountByGroup,
            0,
            json_ext(groups),
            &PhpValue::str(""),
            0,
        );
        self.query_all(f, Merge::BatchCounts)
    }

    // ---- the API enum --------------------------------------------------------------

    /// The plan of one [`ApiCall`]. Names arrive as strings; a list of one PHP-empty name
    /// is read as the PHP-empty scalar the caller most likely passed (`sendToGroup("")`).
    pub fn plan(&self, call: &ApiCall) -> Result<Plan, ApiError> {
        let s = |b: &Bytes| PhpValue::Str(b.clone());
        match call {
            ApiCall::SendToClient {
                client_id,
                message,
                raw,
            } => self.send_to_client(client_id, message, *raw),
            ApiCall::SendToCurrentClient { message, raw } => {
                self.send_to_current_client(message, *raw)
            }
            ApiCall::SendToAll {
                message,
                client_id_list,
                exclude,
                raw,
            } => {
                let list = client_id_list
                    .as_deref()
                    .map_or(PhpValue::Null, names_value);
                self.send_to_all(message, &list, &optional_names(exclude.as_deref()), *raw)
            }
            ApiCall::SendToUid { uids, message, raw } => {
                self.send_to_uid(&names_value(uids), message, *raw)
            }
            ApiCall::SendToGroup {
                groups,
                message,
                exclude,
                raw,
            } => self.send_to_group(
                &optional_names(Some(groups)),
                message,
                &optional_names(exclude.as_deref()),
                *raw,
            ),
            ApiCall::BindUid { client_id, uid } => self.bind_uid(client_id, &s(uid)),
            ApiCall::UnbindUid { client_id, uid } => self.unbind_uid(client_id, &s(uid)),
            ApiCall::JoinGroup { client_id, group } => self.join_group(client_id, &s(group)),
            ApiCall::LeaveGroup { client_id, group } => self.leave_group(client_id, &s(group)),
            ApiCall::Ungroup { group } => self.ungroup(&s(group)),
            ApiCall::SetSession { client_id, session } => self.set_session(client_id, session),
            ApiCall::UpdateSession { client_id, session } => {
                self.update_session(client_id, session)
            }
            ApiCall::GetSession { client_id } => self.get_session(client_id),
            ApiCall::CloseClient { client_id, message } => {
                self.close_client(client_id, message.as_ref())
            }
            ApiCall::DestroyClient { client_id } => self.destroy_client(client_id),
            ApiCall::CloseCurrentClient { message } => self.close_current_client(message.as_ref()),
            ApiCall::DestroyCurrentClient => self.destroy_current_client(),
            ApiCall::IsOnline { client_id } => self.is_online(client_id),
            ApiCall::IsUidOnline { uid } => self.is_uid_online(&s(uid)),
            ApiCall::GetClientIdByUid { uid } => self.get_client_id_by_uid(&s(uid)),
            ApiCall::GetUidByClientId { client_id } => self.get_uid_by_client_id(client_id),
            ApiCall::GetClientIdListByGroup { group } => {
                self.get_client_id_list_by_group(&s(group))
            }
            ApiCall::GetClientSessionsByGroup { group } => {
                self.get_client_sessions_by_group(&s(group))
            }
            ApiCall::GetClientCountByGroup { group } => self.get_client_count_by_group(&s(group)),
            ApiCall::GetAllClientIdList => self.get_all_client_id_list(),
            ApiCall::GetAllClientSessions { group } => self.get_all_client_sessions(&s(group)),
            ApiCall::GetAllClientCount => self.get_client_count_by_group(&PhpValue::str("")),
            ApiCall::GetAllUidList => self.get_all_uid_list(false),
            ApiCall::GetAllUidCount => self.get_all_uid_list(true),
            ApiCall::GetUidListByGroup { group } => self.get_uid_list_by_group(&s(group), false),
            ApiCall::GetUidCountByGroup { group } => self.get_uid_list_by_group(&s(group), true),
            ApiCall::GetAllGroupIdList => self.get_all_group_id_list(),
            ApiCall::GetAllGroupUidList => self.get_all_group_uid_list(false),
            ApiCall::GetAllGroupUidCount => self.get_all_group_uid_list(true),
            ApiCall::GetAllGroupClientIdList => self.get_all_group_client_id_list(false),
            ApiCall::GetAllGroupClientIdCount => self.get_all_group_client_id_list(true),
            ApiCall::BatchGetClientIdByUid { uids } => {
                self.batch_get_client_id_by_uid(&names_value(uids), false)
            }
            ApiCall::BatchGetClientIdCountByGroup { groups } => {
                self.batch_get_client_count_by_group(&names_value(groups))
            }
            ApiCall::IsUidsOnline { uids } => {
                self.batch_get_client_id_by_uid(&names_value(uids), true)
            }
        }
    }
}

/// An optional list of names as the PHP argument: `None` → null, one PHP-empty name → that
/// empty string (falsy like the scalar the caller passed), else the list.
fn optional_names(names: Option<&[Bytes]>) -> PhpValue {
    match names {
        None => PhpValue::Null,
        Some([one]) if is_empty_bytes(one) => PhpValue::Str(one.clone()),
        Some(list) => names_value(list),
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
