//! Folding query replies from several gateways into one API result, as the original
//! `Lib\Gateway` does: counts summed, maps keyed by client ids rebuilt from the gateway's
//! ip and port plus the connection id of each entry.
//!
//! Replies are visited in the original's order: the original files each reply under
//! `[$local_ip][$local_port]`, so gateways are grouped by ip (first appearance) and then
//! taken in request order within an ip. A gateway that did not answer is simply absent
//! (the original reads `false` and skips it).
//!
//! The `getAllGroup*` merges scan each gateway's clients; the original stops a gateway's
//! scan at the first client without a uid or without groups (`break` where `continue` was
//! meant, ops.md 5.4). [`GroupScan`] chooses: we default to [`GroupScan::Complete`] (a
//! documented difference) and keep [`GroupScan::StopAtFirstGap`] for byte-for-byte
//! comparisons with the reference.

use std::collections::HashMap;

use bytes::Bytes;

use crate::protocol::client_id::client_id_text;
use crate::protocol::client_id::GatewayAddr;
use crate::protocol::php::body::scalar_to_string;
use crate::protocol::php::unserialize::unserialize_lenient;
use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

/// How the `getAllGroup*` merges treat a client without uid or groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupScan {
    /// Skip that client and go on (what the original meant).
    #[default]
    Complete,
    /// Stop scanning that gateway's clients (what the original does).
    StopAtFirstGap,
}

/// How the replies of one query become its result.
#[derive(Debug, Clone, PartialEq)]
pub enum Merge {
    /// The one reply as is (`getSession`); `false` without a reply.
    Single,
    /// `(int)` of the one reply (`isOnline`).
    IsOnline,
    /// Sum of the truthy replies (`getClientIdCountByGroup`).
    Count,
    /// Lists of connection ids → one list of client ids (`getClientIdByUid`).
    ClientIdList,
    /// `(int)` of [`Merge::ClientIdList`]: 1 when any client id (`isUidOnline`).
    IsUidOnline,
    /// Maps cid ⇒ session text → client_id ⇒ session array (`getAllClientSessions`);
    /// `own` is the current client's id and `$_SESSION`, reported instead of the
    /// gateway's copy.
    Sessions {
        /// The current client's id and session, when inside an event.
        own: Option<(Bytes, PhpValue)>,
    },
    /// Group ids, first occurrence kept (`getAllGroupIdList`).
    GroupIdList,
    /// SELECT rows → client_id ⇒ client_id (`getAllClientIdList`, `getClientIdListByGroup`).
    ClientIdMap,
    /// SELECT rows → uid ⇒ uid of the non-empty uids, or its count.
    UidMap {
        /// Return the number of entries instead of the map.
        count: bool,
    },
    /// SELECT rows → the first row's uid, or null (`getUidByClientId`).
    FirstUid,
    /// SELECT rows → group ⇒ (uid ⇒ uid), or group ⇒ count (`getAllGroupUid*`).
    GroupUids {
        /// Return counts per group instead of the uid maps.
        count: bool,
        /// How a client without uid or groups is treated.
        scan: GroupScan,
    },
    /// SELECT rows → group ⇒ (client_id ⇒ client_id), or counts (`getAllGroupClientId*`).
    GroupClientIds {
        /// Return counts per group instead of the client id maps.
        count: bool,
        /// How a client without groups is treated.
        scan: GroupScan,
    },
    /// uid ⇒ connection ids → uid ⇒ client ids (`batchGetClientIdByUid`).
    BatchClientIds,
    /// group ⇒ count, summed (`batchGetClientIdCountByGroup`).
    BatchCounts,
    /// [`Merge::BatchClientIds`] with each list cast to int (`isUidsOnline`).
    UidsOnline,
}

/// PHP `(int)$value`.
pub fn php_int(value: &PhpValue) -> i64 {
    match value {
        PhpValue::Null => 0,
        PhpValue::Bool(b) => i64::from(*b),
        PhpValue::Int(n) => *n,
        PhpValue::Float(x) if x.is_finite() => *x as i64,
        PhpValue::Float(_) => 0,
        PhpValue::Str(s) => leading_int(s),
        PhpValue::Array(a) => i64::from(!a.is_empty()),
    }
}

/// The integer prefix of a numeric string (`(int)"12abc"` is 12), saturating like PHP.
fn leading_int(s: &[u8]) -> i64 {
    let s = s.trim_ascii_start();
    let (negative, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut n: i64 = 0;
    for &d in digits.iter().take_while(|d| d.is_ascii_digit()) {
        let digit = i64::from(d - b'0');
        n = n.saturating_mul(10);
        n = if negative {
            n.saturating_sub(digit)
        } else {
            n.saturating_add(digit)
        };
    }
    n
}

/// The array key PHP uses for `$map[$value]`; `None` for an array (an illegal offset).
fn key_of(value: &PhpValue) -> Option<PhpKey> {
    match value {
        PhpValue::Int(n) => Some(PhpKey::Int(*n)),
        PhpValue::Str(s) => Some(PhpKey::from_shared(s.clone())),
        PhpValue::Bool(b) => Some(PhpKey::Int(i64::from(*b))),
        PhpValue::Float(x) => Some(PhpKey::Int(php_int(&PhpValue::Float(*x)))),
        PhpValue::Null => Some(PhpKey::Str(Bytes::new())),
        PhpValue::Array(_) => None,
    }
}

/// An ordered map under construction with O(1) lookups; keeps PHP assignment semantics
/// (an existing key keeps its place).
#[derive(Default)]
struct MapBuilder {
    entries: Vec<(PhpKey, PhpValue)>,
    index: HashMap<PhpKey, usize>,
}

impl MapBuilder {
    fn slot(&mut self, key: PhpKey, init: impl FnOnce() -> PhpValue) -> &mut PhpValue {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, init()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    fn set(&mut self, key: PhpKey, value: PhpValue) {
        *self.slot(key, || PhpValue::Null) = value;
    }

    fn set_if_absent(&mut self, key: PhpKey, value: PhpValue) {
        self.slot(key, || value);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn into_array(self) -> PhpArray {
        let mut array = PhpArray::with_capacity(self.entries.len());
        for (k, v) in self.entries {
            array.push_unique(k, v);
        }
        array
    }

    fn into_value(self) -> PhpValue {
        PhpValue::Array(self.into_array())
    }
}

/// `$map[$key][$inner] = $value` for nested maps built in one pass.
#[derive(Default)]
struct NestedBuilder {
    outer: Vec<(PhpKey, MapBuilder)>,
    index: HashMap<PhpKey, usize>,
}

impl NestedBuilder {
    fn set(&mut self, key: PhpKey, inner: PhpKey, value: PhpValue) {
        let i = match self.index.get(&key) {
            Some(&i) => i,
            None => {
                self.index.insert(key.clone(), self.outer.len());
                self.outer.push((key, MapBuilder::default()));
                self.outer.len() - 1
            }
        };
        self.outer[i].1.set(inner, value);
    }

    fn into_value(self, count: bool) -> PhpValue {
        let mut array = PhpArray::with_capacity(self.outer.len());
        for (k, inner) in self.outer {
            let v = if count {
                PhpValue::Int(inner.len() as i64)
            } else {
                inner.into_value()
            };
            array.push_unique(k, v);
        }
        PhpValue::Array(array)
    }
}

/// Replies in the original's `[$local_ip][$local_port]` order.
fn php_order(replies: &[(GatewayAddr, PhpValue)]) -> Vec<&(GatewayAddr, PhpValue)> {
    let mut ips = Vec::new();
    for (addr, _) in replies {
        if !ips.contains(addr.ip()) {
            ips.push(*addr.ip());
        }
    }
    let mut ordered = Vec::with_capacity(replies.len());
    for ip in ips {
        ordered.extend(replies.iter().filter(|(a, _)| *a.ip() == ip));
    }
    ordered
}

fn client_id(addr: &GatewayAddr, cid: i64) -> Bytes {
    // pack('N') keeps the low 32 bits.
    client_id_text(*addr, cid as u32)
}

fn rows(reply: &PhpValue) -> impl Iterator<Item = (&PhpKey, &PhpValue)> {
    match reply {
        PhpValue::Array(a) => Some(a.iter()),
        _ => None,
    }
    .into_iter()
    .flatten()
}

fn field<'v>(info: &'v PhpValue, name: &str) -> &'v PhpValue {
    match info {
        PhpValue::Array(a) => a.get_str(name).unwrap_or(&PhpValue::Null),
        _ => &PhpValue::Null,
    }
}

fn key_int(key: &PhpKey) -> i64 {
    match key {
        PhpKey::Int(n) => *n,
        PhpKey::Str(s) => leading_int(s),
    }
}

impl Merge {
    /// The result of the query from the replies received, in request order.
    pub fn merge(&self, replies: &[(GatewayAddr, PhpValue)]) -> PhpValue {
        let ordered = php_order(replies);
        match self {
            Merge::Single => ordered
                .first()
                .map_or(PhpValue::Bool(false), |(_, v)| v.clone()),
            Merge::IsOnline => PhpValue::Int(ordered.first().map_or(0, |(_, v)| php_int(v))),
            Merge::Count => PhpValue::Int(
                ordered
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .fold(0i64, |sum, (_, v)| sum.saturating_add(php_int(v))),
            ),
            Merge::ClientIdList => PhpValue::Array(client_id_list(&ordered)),
            Merge::IsUidOnline => PhpValue::Int(i64::from(!client_id_list(&ordered).is_empty())),
            Merge::Sessions { own } => sessions(&ordered, own.as_ref()),
            Merge::GroupIdList => {
                let mut map = MapBuilder::default();
                for (_, reply) in &ordered {
                    for (_, group) in rows(reply) {
                        if let Some(k) = key_of(group) {
                            map.set_if_absent(k, group.clone());
                        }
                    }
                }
                map.into_value()
            }
            Merge::ClientIdMap => {
                let mut map = MapBuilder::default();
                for (addr, reply) in &ordered {
                    for (cid, _) in rows(reply) {
                        let id = client_id(addr, key_int(cid));
                        map.set(PhpKey::from_shared(id.clone()), PhpValue::Str(id));
                    }
                }
                map.into_value()
            }
            Merge::UidMap { count } => {
                let mut map = MapBuilder::default();
                for (_, reply) in &ordered {
                    for (_, info) in rows(reply) {
                        let uid = field(info, "uid");
                        if let (false, Some(k)) = (uid.is_empty(), key_of(uid)) {
                            map.set(k, uid.clone());
                        }
                    }
                }
                if *count {
                    PhpValue::Int(map.len() as i64)
                } else {
                    map.into_value()
                }
            }
            Merge::FirstUid => ordered
                .iter()
                .find_map(|(_, reply)| {
                    rows(reply)
                        .next()
                        .map(|(_, info)| field(info, "uid").clone())
                })
                .unwrap_or(PhpValue::Null),
            Merge::GroupUids { count, scan } => {
                let mut map = NestedBuilder::default();
                for (_, reply) in &ordered {
                    for (_, info) in rows(reply) {
                        let uid = field(info, "uid");
                        let groups = field(info, "groups");
                        if uid.is_empty() || groups.is_empty() {
                            match scan {
                                GroupScan::Complete => continue,
                                GroupScan::StopAtFirstGap => break,
                            }
                        }
                        let Some(uid_key) = key_of(uid) else { continue };
                        for (_, group) in rows(groups) {
                            if let Some(g) = key_of(group) {
                                map.set(g, uid_key.clone(), uid.clone());
                            }
                        }
                    }
                }
                map.into_value(*count)
            }
            Merge::GroupClientIds { count, scan } => {
                let mut map = NestedBuilder::default();
                for (addr, reply) in &ordered {
                    for (cid, info) in rows(reply) {
                        let groups = field(info, "groups");
                        if groups.is_empty() {
                            match scan {
                                GroupScan::Complete => continue,
                                GroupScan::StopAtFirstGap => break,
                            }
                        }
                        let id = client_id(addr, key_int(cid));
                        for (_, group) in rows(groups) {
                            if let Some(g) = key_of(group) {
                                map.set(
                                    g,
                                    PhpKey::from_shared(id.clone()),
                                    PhpValue::Str(id.clone()),
                                );
                            }
                        }
                    }
                }
                map.into_value(*count)
            }
            Merge::BatchClientIds => batch_client_ids(&ordered),
            Merge::UidsOnline => match batch_client_ids(&ordered) {
                PhpValue::Array(a) => PhpValue::Array(
                    a.into_entries()
                        .into_iter()
                        .map(|(k, v)| (k, PhpValue::Int(php_int(&v))))
                        .collect(),
                ),
                other => other,
            },
            Merge::BatchCounts => {
                let mut map = MapBuilder::default();
                for (_, reply) in &ordered {
                    for (group, count) in rows(reply) {
                        let slot = map.slot(group.clone(), || PhpValue::Int(0));
                        *slot = PhpValue::Int(php_int(slot).saturating_add(php_int(count)));
                    }
                }
                map.into_value()
            }
        }
    }
}

fn client_id_list(ordered: &[&(GatewayAddr, PhpValue)]) -> PhpArray {
    let mut list = PhpArray::new();
    for (addr, reply) in ordered {
        if reply.is_empty() {
            continue;
        }
        for (_, cid) in rows(reply) {
            list.push(PhpValue::Str(client_id(addr, php_int(cid))));
        }
    }
    list
}

fn sessions(ordered: &[&(GatewayAddr, PhpValue)], own: Option<&(Bytes, PhpValue)>) -> PhpValue {
    let mut map = MapBuilder::default();
    for (addr, reply) in ordered {
        for (cid, text) in rows(reply) {
            let id = client_id(addr, key_int(cid));
            let session = match own {
                Some((own_id, own_session)) if *own_id == id => as_array(own_session),
                _ if text.is_empty() => PhpValue::Array(PhpArray::new()),
                _ => unserialize_lenient(&scalar_to_string(text).unwrap_or_default()),
            };
            map.set(PhpKey::from_shared(id), session);
        }
    }
    map.into_value()
}

/// PHP `(array)$value`.
fn as_array(value: &PhpValue) -> PhpValue {
    match value {
        PhpValue::Null => PhpValue::Array(PhpArray::new()),
        PhpValue::Array(_) => value.clone(),
        scalar => {
            let mut a = PhpArray::new();
            a.push(scalar.clone());
            PhpValue::Array(a)
        }
    }
}

fn batch_client_ids(ordered: &[&(GatewayAddr, PhpValue)]) -> PhpValue {
    let mut map = MapBuilder::default();
    for (addr, reply) in ordered {
        for (uid, cids) in rows(reply) {
            let slot = map.slot(uid.clone(), || PhpValue::Array(PhpArray::new()));
            if let PhpValue::Array(list) = slot {
                for (_, cid) in rows(cids) {
                    list.push(PhpValue::Str(client_id(addr, php_int(cid))));
                }
            }
        }
    }
    map.into_value()
}

#[cfg(test)]
#[path = "merge_tests.rs"]
mod tests;
