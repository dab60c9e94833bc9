//! Commands arriving on links (spec 2.2-2.7 and 4), with the original's semantics.
//!
//! Values that PHP would use as array keys (cids in `connections`/`exclude`, uids and
//! groups in JSON lists) go through [`array_key`], PHP's key conversion, so `"7"`, `7`
//! and `7.9` all name connection 7 and `"1002"` and `1002` name the same uid.

use std::time::Duration;

use bytes::Bytes;

use super::action::{CloseReason, LinkId};
use super::core::{GatewayCore, Outgoing};
use super::wire::{self, RawFrame};
use crate::protocol::frame::{Command, FLAG_BINARY, FLAG_BODY_IS_SCALAR, FLAG_NOT_CALL_ENCODE};
use crate::protocol::php::merge::merge_session;
use crate::protocol::php::{is_empty_bytes, PhpArray, PhpKey, PhpValue};

/// The PHP array key a value converts to when used as an offset (`$a[$v]`); `None` for
/// arrays, which PHP refuses (TypeError) and we skip.
pub fn array_key(value: &PhpValue) -> Option<PhpKey> {
    Some(match value {
        PhpValue::Null => PhpKey::Str(Bytes::new()),
        PhpValue::Bool(b) => PhpKey::Int(i64::from(*b)),
        PhpValue::Int(n) => PhpKey::Int(*n),
        // PHP truncates toward zero (NaN and out-of-range values become 0 on PHP 8).
        PhpValue::Float(f) if f.is_finite() && f.abs() < 9.2e18 => PhpKey::Int(f.trunc() as i64),
        PhpValue::Float(_) => PhpKey::Int(0),
        PhpValue::Str(s) => PhpKey::from_shared(s.clone()),
        PhpValue::Array(_) => return None,
    })
}

/// The connection id a key names, if any.
fn key_cid(key: &PhpKey) -> Option<u32> {
    match key {
        PhpKey::Int(n) => u32::try_from(*n).ok().filter(|n| *n != 0),
        PhpKey::Str(_) => None,
    }
}

/// The values of a decoded JSON array (PHP `foreach`); nothing for scalars.
fn values(value: Option<&PhpValue>) -> Vec<PhpValue> {
    match value {
        Some(PhpValue::Array(a)) => a.iter().map(|(_, v)| v.clone()).collect(),
        _ => Vec::new(),
    }
}

/// `isset($exclude[$cid])`: an array with a non-null value under key `cid`. A JSON list
/// is keyed 0, 1, ... (quirk 3: `{"exclude":[5]}` excludes nobody). PHP would also
/// index into a string here (`"12"` excludes cid 1); we treat non-arrays as "nobody".
fn excluded(exclude: Option<&PhpValue>, cid: u32) -> bool {
    match exclude {
        Some(PhpValue::Array(a)) => a
            .get(&PhpKey::Int(i64::from(cid)))
            .is_some_and(|v| *v != PhpValue::Null),
        _ => false,
    }
}

/// The text of a handshake body (the original json-decodes the decoded body).
fn body_text(flag: u8, body: &Bytes) -> Option<Bytes> {
    if flag & FLAG_BODY_IS_SCALAR != 0 {
        return Some(body.clone());
    }
    match wire::unserialize(body) {
        PhpValue::Array(_) => None,
        v => Some(wire::scalar_to_bytes(&v)),
    }
}

/// The message text a send command carries (spec 6.3 "Message types"): a scalar body
/// as is; otherwise the unserialized value, where an array becomes its JSON
/// (`json_encode` with unescaped Unicode), null becomes `null`, and — unlike the
/// original, which stops the whole gateway process on them — int, float and bool
/// become their PHP string form (spec 1.2) and an invalid body (PHP `false`) the empty
/// string. `None` when the array cannot be JSON-encoded (invalid UTF-8, INF/NAN).
pub fn message_payload(flag: u8, body: &Bytes) -> Option<Bytes> {
    if flag & FLAG_BODY_IS_SCALAR != 0 {
        return Some(body.clone());
    }
    match wire::unserialize(body) {
        PhpValue::Null => Some(Bytes::from_static(b"null")),
        v @ PhpValue::Array(_) => wire::json_encode(&v).map(Bytes::from),
        v => Some(wire::scalar_to_bytes(&v)),
    }
}

/// True when a KICK body is PHP null (`N;` without the scalar flag): close silently.
fn is_null_body(flag: u8, body: &Bytes) -> bool {
    flag & FLAG_BODY_IS_SCALAR == 0 && wire::unserialize(body) == PhpValue::Null
}

/// A copy of frame bytes kept beyond the command (session, uid, group name): a slice
/// would pin the whole read buffer it came from for the client's lifetime.
pub(super) fn stored(bytes: &Bytes) -> Bytes {
    Bytes::copy_from_slice(bytes)
}

fn reply(value: &PhpValue) -> Bytes {
    wire::encode_reply(&wire::serialize(value))
}

fn int_list(ids: impl Iterator<Item = u32>) -> PhpValue {
    let mut list = PhpArray::new();
    for (i, id) in ids.enumerate() {
        list.push_unique(PhpKey::Int(i as i64), PhpValue::Int(i64::from(id)));
    }
    PhpValue::Array(list)
}

/// A uid or group name as the PHP value `array_keys` gives back (ints for canonical
/// decimal names, quirk 2).
fn key_value(name: &Bytes) -> PhpValue {
    match PhpKey::from_shared(name.clone()) {
        PhpKey::Int(n) => PhpValue::Int(n),
        PhpKey::Str(s) => PhpValue::Str(s),
    }
}

impl GatewayCore {
    /// Executes one frame received on `link`.
    pub(super) fn handle_frame(&mut self, _now: Duration, link: LinkId, f: RawFrame) {
        let Some(authorised) = self.links.get(&link.0).map(|l| l.authorised) else {
            return;
        };
        let cmd = f.cmd;
        let handshake =
            cmd == Command::WorkerConnect as u8 || cmd == Command::GatewayClientConnect as u8;
        if !authorised && !handshake {
            tracing::warn!(link = link.0, cmd, "unauthorised request: link closed");
            self.close_link(link, CloseReason::Unauthorised);
            return;
        }
        use Command::*;
        match Command::from_u8(cmd) {
            Some(WorkerConnect) => self.worker_connect(link, &f),
            Some(GatewayClientConnect) => {
                if self.secret_matches(&f) {
                    if let Some(l) = self.links.get_mut(&link.0) {
                        l.authorised = true;
                    }
                } else {
                    self.close_link(link, CloseReason::BadSecret);
                }
            }
            Some(SendToOne) => self.send_to_one(&f),
            Some(SendToAll) => self.send_to_all(&f),
            Some(Kick) => self.kick(&f),
            Some(Destroy) => self.close_client(f.connection_id, false, CloseReason::Destroyed),
            Some(UpdateSession) => self.update_session(&f),
            Some(GetAllClientSessions) => self.reply_all_sessions(link),
            Some(IsOnline) => {
                let online = self.clients.contains(f.connection_id);
                self.transmit_reply(link, reply(&PhpValue::Int(i64::from(online))));
            }
            Some(BindUid) => {
                if is_empty_bytes(&f.ext_data) {
                    tracing::info!("bindUid: empty uid ignored");
                } else {
                    self.clients.bind_uid(f.connection_id, stored(&f.ext_data));
                }
            }
            Some(UnbindUid) => self.clients.unbind_uid(f.connection_id),
            Some(SendToUid) => self.send_to_uid(&f),
            Some(GetClientIdByUid) => {
                let ids = int_list(self.clients.uid_members(&f.ext_data));
                self.transmit_reply(link, reply(&ids));
            }
            Some(BatchGetClientIdByUid) => self.reply_batch_client_ids(link, &f),
            Some(JoinGroup) => {
                if is_empty_bytes(&f.ext_data) {
                    tracing::info!("joinGroup: empty group ignored");
                } else {
                    self.clients
                        .join_group(f.connection_id, stored(&f.ext_data));
                }
            }
            Some(LeaveGroup) => {
                if !is_empty_bytes(&f.ext_data) {
                    self.clients.leave_group(f.connection_id, &f.ext_data);
                }
            }
            Some(SendToGroup) => self.send_to_group(&f),
            Some(GetClientSessionsByGroup) => self.reply_group_sessions(link, &f),
            Some(GetClientCountByGroup) => {
                let count = if f.ext_data.is_empty() {
                    self.clients.len()
                } else {
                    self.clients.group_len(&f.ext_data).unwrap_or(0)
                };
                self.transmit_reply(link, reply(&PhpValue::Int(count as i64)));
            }
            Some(Select) => self.reply_select(link, &f),
            Some(GetGroupIdList) => {
                let mut list = PhpArray::new();
                for (i, name) in self.clients.group_names().enumerate() {
                    list.push_unique(PhpKey::Int(i as i64), key_value(name));
                }
                self.transmit_reply(link, reply(&PhpValue::Array(list)));
            }
            Some(Ungroup) => {
                if !is_empty_bytes(&f.ext_data) {
                    self.clients.ungroup(&f.ext_data);
                }
            }
            Some(BatchGetClientCountByGroup) => self.reply_batch_group_counts(link, &f),
            Some(GetSessionByClientId) => self.reply_session(link, &f),
            Some(SetSession) => {
                if let Some(client) = self.clients.get_mut(f.connection_id) {
                    client.session = stored(&f.ext_data);
                }
            }
            // Events (1, 3, 4, 205) and PING (201) are gateway-to-worker only.
            None | Some(OnConnect | OnMessage | OnClose | Ping | OnWebsocketConnect) => {
                self.stats.unknown_commands += 1;
                tracing::warn!(link = link.0, cmd, "unknown command ignored");
            }
        }
    }

    /// `secret_key` of a handshake body equals ours, strictly (quirk 9: a missing key or
    /// a non-string never matches, not even an empty secret).
    fn secret_matches(&self, f: &RawFrame) -> bool {
        let Some(PhpValue::Array(info)) =
            body_text(f.flag, &f.body).and_then(|t| wire::json_decode(&t))
        else {
            return false;
        };
        matches!(info.get_str("secret_key"), Some(PhpValue::Str(s)) if *s == self.config.secret_key)
    }

    /// WORKER_CONNECT (spec 4): key `<peer ip>:<worker_key>`, replacing an older link
    /// registered under it.
    fn worker_connect(&mut self, link: LinkId, f: &RawFrame) {
        if !self.secret_matches(f) {
            tracing::warn!(
                link = link.0,
                "worker secret key does not match: link closed"
            );
            self.close_link(link, CloseReason::BadSecret);
            return;
        }
        let info = body_text(f.flag, &f.body).and_then(|t| wire::json_decode(&t));
        let worker_key = match info.as_ref() {
            Some(PhpValue::Array(a)) => a.get_str("worker_key").map(wire::scalar_to_bytes),
            _ => None,
        }
        .unwrap_or_default();
        let Some(ip) = self.link_ip(link) else {
            return;
        };
        let mut key = ip.to_string().into_bytes();
        key.push(b':');
        key.extend_from_slice(&worker_key);
        let key = Bytes::from(key);
        // A link registering a second time under another key leaves its old key (the
        // original would leave the old key pointing at this link forever).
        let previous = self.links.get(&link.0).and_then(|l| l.key.clone());
        if let Some(previous) = previous.filter(|p| *p != key) {
            self.router.unregister(&previous, link);
        }
        if let Some(old) = self.router.link_for(&key).filter(|old| *old != link) {
            tracing::warn!(key = %String::from_utf8_lossy(&key), "worker key conflict: old link closed");
            self.close_link(old, CloseReason::WorkerReplaced);
        }
        if let Some(l) = self.links.get_mut(&link.0) {
            l.key = Some(key.clone());
            l.authorised = true;
        }
        self.router.register(key, link);
    }

    /// The bytes a send command writes to each recipient, encoded once.
    fn prepare(&mut self, f: &RawFrame, honour_raw: bool) -> Option<Outgoing> {
        let Some(payload) = message_payload(f.flag, &f.body) else {
            self.stats.client_messages_unencodable += 1;
            tracing::warn!(cmd = f.cmd, "message cannot be JSON-encoded: dropped");
            return None;
        };
        if honour_raw && f.flag & FLAG_NOT_CALL_ENCODE != 0 {
            return Some(Outgoing::raw(payload));
        }
        let binary = f.flag & FLAG_BINARY != 0;
        let Some(encoded) = self.encode_for_clients(&payload, binary) else {
            self.stats.client_messages_unencodable += 1;
            return None;
        };
        Some(Outgoing::message(encoded, payload, binary))
    }

    fn send_to_one(&mut self, f: &RawFrame) {
        if !self.clients.contains(f.connection_id) {
            return;
        }
        // The common case, a string message to protocol-encode: no allocation.
        if f.flag & (FLAG_BODY_IS_SCALAR | FLAG_NOT_CALL_ENCODE) == FLAG_BODY_IS_SCALAR
            && self.sent_plain(f.connection_id, f.body.len())
        {
            let binary = f.flag & FLAG_BINARY != 0;
            if let Some(bytes) = self.encode_for_one(f.connection_id, &f.body, binary) {
                self.deliver(f.connection_id, &mut Outgoing::raw(bytes));
                return;
            }
        }
        if let Some(mut msg) = self.prepare(f, true) {
            self.deliver(f.connection_id, &mut msg);
        }
    }

    /// KICK: the final message (protocol-encoded even with flag 0x02, quirk 13) unless
    /// the body is null, then a close after flush (quirk 12).
    fn kick(&mut self, f: &RawFrame) {
        if !self.clients.contains(f.connection_id) {
            return;
        }
        if !is_null_body(f.flag, &f.body) {
            if let Some(mut msg) = self.prepare(f, false) {
                self.deliver(f.connection_id, &mut msg);
            }
        }
        self.close_client(f.connection_id, true, CloseReason::Kicked);
    }

    /// SEND_TO_ALL (spec 2.5).
    fn send_to_all(&mut self, f: &RawFrame) {
        let Some(mut msg) = self.prepare(f, true) else {
            return;
        };
        // `$ext ? json_decode($ext, true) : ''`; invalid JSON decodes to null and, like
        // the original, reaches everybody.
        let ext = if is_empty_bytes(&f.ext_data) {
            None
        } else {
            wire::json_decode(&f.ext_data)
        };
        let ext = match ext {
            Some(PhpValue::Array(a)) => Some(a),
            _ => None,
        };
        let connections = ext
            .as_ref()
            .and_then(|a| a.get_str("connections"))
            .filter(|v| **v != PhpValue::Null);
        if let Some(connections) = connections {
            for v in values(Some(connections)) {
                if let Some(cid) = array_key(&v).as_ref().and_then(key_cid) {
                    self.deliver(cid, &mut msg);
                }
            }
            return;
        }
        let exclude = ext
            .as_ref()
            .and_then(|a| a.get_str("exclude"))
            .filter(|v| !v.is_empty())
            .cloned();
        let ids: Vec<u32> = self.clients.ids().collect();
        for cid in ids {
            if !excluded(exclude.as_ref(), cid) {
                self.deliver(cid, &mut msg);
            }
        }
    }

    /// SEND_TO_UID: every listed uid in order, duplicates delivered again (quirk 4).
    fn send_to_uid(&mut self, f: &RawFrame) {
        let Some(mut msg) = self.prepare(f, true) else {
            return;
        };
        let uids = wire::json_decode(&f.ext_data);
        for uid in values(uids.as_ref()) {
            let Some(key) = array_key(&uid) else { continue };
            let members: Vec<u32> = self.clients.uid_members(&key.to_bytes()).collect();
            for cid in members {
                self.deliver(cid, &mut msg);
            }
        }
    }

    /// SEND_TO_GROUP: every listed group in order, members not excluded by key.
    fn send_to_group(&mut self, f: &RawFrame) {
        let Some(mut msg) = self.prepare(f, true) else {
            return;
        };
        let ext = match wire::json_decode(&f.ext_data) {
            Some(PhpValue::Array(a)) => a,
            _ => return,
        };
        // An empty exclude list excludes nobody: skip the per-member lookup.
        let exclude = ext
            .get_str("exclude")
            .filter(|e| !matches!(e, PhpValue::Array(a) if a.is_empty()))
            .cloned();
        for group in values(ext.get_str("group")) {
            let Some(key) = array_key(&group) else {
                continue;
            };
            let mut members = std::mem::take(&mut self.recipients);
            members.clear();
            members.extend(self.clients.group_members(&key.to_bytes()));
            for &cid in &members {
                if !excluded(exclude.as_ref(), cid) {
                    self.deliver(cid, &mut msg);
                }
            }
            self.recipients = members;
        }
    }

    /// UPDATE_SESSION (spec 2.6): verbatim when the session is PHP-falsy, else merged.
    fn update_session(&mut self, f: &RawFrame) {
        let Some(client) = self.clients.get_mut(f.connection_id) else {
            return;
        };
        if is_empty_bytes(&client.session) {
            client.session = stored(&f.ext_data);
            return;
        }
        match merge_session(&client.session, &f.ext_data) {
            Ok(merged) => client.session = Bytes::from(merged),
            // The original throws a TypeError here (nothing stored); we ignore the command.
            Err(error) => {
                tracing::warn!(connection_id = f.connection_id, %error, "updateSession ignored")
            }
        }
    }

    fn reply_all_sessions(&mut self, link: LinkId) {
        let mut map = PhpArray::with_capacity(self.clients.len());
        for cid in self.clients.ids() {
            let session = self
                .clients
                .get(cid)
                .map(|c| c.session.clone())
                .unwrap_or_default();
            map.push_unique(PhpKey::Int(i64::from(cid)), PhpValue::Str(session));
        }
        self.transmit_reply(link, reply(&PhpValue::Array(map)));
    }

    fn reply_group_sessions(&mut self, link: LinkId, f: &RawFrame) {
        let mut map = PhpArray::new();
        for cid in self.clients.group_members(&f.ext_data) {
            let session = self
                .clients
                .get(cid)
                .map(|c| c.session.clone())
                .unwrap_or_default();
            map.push_unique(PhpKey::Int(i64::from(cid)), PhpValue::Str(session));
        }
        self.transmit_reply(link, reply(&PhpValue::Array(map)));
    }

    /// GET_SESSION_BY_CLIENT_ID (quirk 7): `N;` unknown, `a:0:{}` falsy, else verbatim.
    fn reply_session(&mut self, link: LinkId, f: &RawFrame) {
        let payload = match self.clients.get(f.connection_id) {
            None => Bytes::from_static(b"N;"),
            Some(c) if is_empty_bytes(&c.session) => Bytes::from_static(b"a:0:{}"),
            Some(c) => c.session.clone(),
        };
        self.transmit_reply(link, wire::encode_reply(&payload));
    }

    fn reply_batch_client_ids(&mut self, link: LinkId, f: &RawFrame) {
        let mut map = PhpArray::new();
        for uid in values(wire::json_decode(&f.ext_data).as_ref()) {
            let Some(key) = array_key(&uid) else { continue };
            let ids = int_list(self.clients.uid_members(&key.to_bytes()));
            map.insert(key, ids);
        }
        self.transmit_reply(link, reply(&PhpValue::Array(map)));
    }

    fn reply_batch_group_counts(&mut self, link: LinkId, f: &RawFrame) {
        let mut map = PhpArray::new();
        for group in values(wire::json_decode(&f.ext_data).as_ref()) {
            let Some(key) = array_key(&group) else {
                continue;
            };
            let count = self.clients.group_len(&key.to_bytes()).unwrap_or(0);
            map.insert(key, PhpValue::Int(count as i64));
        }
        self.transmit_reply(link, reply(&PhpValue::Array(map)));
    }

    /// SELECT (spec 2.7).
    fn reply_select(&mut self, link: LinkId, f: &RawFrame) {
        let result = match wire::json_decode(&f.ext_data) {
            Some(PhpValue::Array(query)) if !query.is_empty() => self.select(&query),
            _ => PhpArray::new(),
        };
        self.transmit_reply(link, reply(&PhpValue::Array(result)));
    }

    fn select(&self, query: &PhpArray) -> PhpArray {
        let fields: Vec<PhpKey> = values(query.get_str("fields"))
            .iter()
            .filter_map(array_key)
            .collect();
        let mut result = PhpArray::new();
        let where_ = query.get_str("where");
        if where_.is_none_or(PhpValue::is_empty) {
            for cid in self.clients.ids() {
                // With no field at all PHP never creates the entry.
                if !fields.is_empty() {
                    result.push_unique(
                        PhpKey::Int(i64::from(cid)),
                        self.select_fields(cid, &fields),
                    );
                }
            }
            return result;
        }
        let Some(PhpValue::Array(conditions)) = where_ else {
            return result;
        };
        for (key, items) in conditions.iter() {
            let items = values(Some(items));
            match key.to_bytes().as_ref() {
                b"connection_id" => {
                    for item in &items {
                        let Some(k) = array_key(item) else { continue };
                        if let Some(cid) = key_cid(&k).filter(|c| self.clients.contains(*c)) {
                            result.insert(k, self.select_fields(cid, &fields));
                        }
                    }
                }
                which @ (b"groups" | b"uid") => {
                    for item in &items {
                        let Some(k) = array_key(item) else { continue };
                        let name = k.to_bytes();
                        let members: Vec<u32> = if which == b"groups" {
                            self.clients.group_members(&name).collect()
                        } else {
                            self.clients.uid_members(&name).collect()
                        };
                        for cid in members {
                            let ck = PhpKey::Int(i64::from(cid));
                            if result.get(&ck).is_none() {
                                result.push_unique(ck, self.select_fields(cid, &fields));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        result
    }

    /// The requested fields of one client (quirk 8): `uid` text or null, `groups` map
    /// or null, `session` raw; anything else null.
    fn select_fields(&self, cid: u32, fields: &[PhpKey]) -> PhpValue {
        let mut info = PhpArray::new();
        let Some(client) = self.clients.get(cid) else {
            return PhpValue::Array(info);
        };
        for field in fields {
            let value = match field.to_bytes().as_ref() {
                b"uid" => client
                    .uid
                    .as_ref()
                    .map_or(PhpValue::Null, |u| PhpValue::Str(u.name.clone())),
                b"groups" => client.groups.as_ref().map_or(PhpValue::Null, |groups| {
                    PhpValue::Array(
                        groups
                            .iter()
                            .map(|g| {
                                (
                                    PhpKey::from_shared(g.name.clone()),
                                    PhpValue::Str(g.name.clone()),
                                )
                            })
                            .collect(),
                    )
                }),
                b"session" => PhpValue::Str(client.session.clone()),
                _ => PhpValue::Null,
            };
            info.insert(field.clone(), value);
        }
        PhpValue::Array(info)
    }
}
