//! The client table: every connected client with its session, uid and groups, and the
//! uid → clients and group → clients indexes, kept consistent by one owner.
//!
//! Output order follows the original's PHP arrays, which iterate in insertion order:
//! clients in accept order, a uid's or group's members in bind/join order, groups in
//! creation order. Each of those orders is a `BTreeMap` keyed by a monotonically
//! increasing sequence number, so removal is O(log n) and iteration is ordered; lookups
//! go through `hashbrown` maps with a fixed hasher.

use std::collections::BTreeMap;
use std::hash::BuildHasherDefault;
use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use hashbrown::HashMap;

use super::config::{HashKey, NameState};
use crate::protocol::public::{ConnContext, PublicDecoder};

/// The hasher of maps keyed by ids the gateway allocates itself (connection ids, link
/// ids): fixed (map iteration never decides output, and a fixed hasher keeps every run
/// of the same input identical even in memory layout), and a few instructions instead
/// of SipHash's ~100,
/// which the profile showed as the largest cost of a message (see README, Benchmarks).
/// Not for keys a peer chooses: it has no resistance to crafted collisions; the uid and
/// group maps use [`NameState`], keyed by the config's [`HashKey`](super::config::HashKey).
pub type IdState = BuildHasherDefault<IdHasher>;

/// FxHash's multiply-rotate step over the integers a key writes (see [`IdState`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher {
    hash: u64,
}

impl IdHasher {
    const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(Self::SEED);
    }
}

impl std::hash::Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.add(u64::from_le_bytes(tail) ^ ((rest.len() as u64) << 56));
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn write_isize(&mut self, i: isize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        // hashbrown takes the bucket from the low bits and the tag from the top 7: fold
        // the well-mixed high half into the low one.
        self.hash ^ (self.hash >> 32)
    }
}

/// A uid or group a client belongs to, with the sequence number of its place in that
/// uid's or group's member order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The uid or group name as received (canonical ints print as themselves, so the
    /// bytes are the PHP array key's identity, spec 7.3).
    pub name: Bytes,
    /// Position in the member order.
    pub seq: u64,
}

/// One connected client.
#[derive(Debug)]
pub struct Client {
    /// Accept order.
    pub seq: u64,
    /// The client's address.
    pub peer: SocketAddr,
    /// The session string (serialized PHP array, or empty).
    pub session: Bytes,
    /// Bound uid (`None` = never bound or unbound: SELECT shows null).
    pub uid: Option<Membership>,
    /// Groups in join order; `None` until the first join (SELECT shows null), then a
    /// possibly empty list (SELECT shows `a:0:{}`), quirk 8.
    pub groups: Option<Vec<Membership>>,
    /// The routing key of the worker this client's events go to.
    pub worker_key: Option<Bytes>,
    /// Heartbeat counter: -1 after activity, +1 per tick.
    pub ping_count: i32,
    /// Bytes handed to the driver and not yet reported flushed.
    pub pending: usize,
    /// The public protocol's decoder.
    pub decoder: PublicDecoder,
    /// Bytes of an incomplete message (empty, and unallocated, between messages).
    pub input: BytesMut,
    /// Encoded websocket messages sent before the handshake completed, concatenated
    /// (spec 6.3 step 7).
    pub before_handshake: BytesMut,
    /// permessage-deflate state kept across messages (context takeover only); `None`, and
    /// unallocated, otherwise.
    pub deflate: Option<Box<ConnContext>>,
}

/// A group: its creation order and its members in join order.
#[derive(Debug, Default)]
struct Group {
    seq: u64,
    members: BTreeMap<u64, u32>,
}

/// All clients and their indexes.
#[derive(Debug, Default)]
pub struct ClientTable {
    /// Boxed: a hash table keeps empty slots (up to half of them after it grows), and
    /// an empty slot of an inline `Client` costs its full size; a boxed one costs a
    /// pointer. With 10k idle connections that is ~150 bytes per connection.
    clients: HashMap<u32, Box<Client>, IdState>,
    order: BTreeMap<u64, u32>,
    uids: HashMap<Bytes, BTreeMap<u64, u32>, NameState>,
    groups: HashMap<Bytes, Group, NameState>,
    group_order: BTreeMap<u64, Bytes>,
    seq: u64,
}

impl ClientTable {
    /// An empty table whose name maps hash with `key`.
    pub fn with_hash_key(key: HashKey) -> ClientTable {
        ClientTable {
            uids: HashMap::with_hasher(NameState::new(key)),
            groups: HashMap::with_hasher(NameState::new(key)),
            ..ClientTable::default()
        }
    }

    /// The hash the uid and group maps compute for `name` (for tests of the keying).
    #[cfg(test)]
    pub fn name_hash(&self, name: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        self.groups.hasher().hash_one(name)
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Number of clients.
    pub fn len(&self) -> usize {
        self.clients.len()
    }

    /// True when `id` is a connected client.
    pub fn contains(&self, id: u32) -> bool {
        self.clients.contains_key(&id)
    }

    /// The client `id`.
    pub fn get(&self, id: u32) -> Option<&Client> {
        self.clients.get(&id).map(|client| &**client)
    }

    /// The client `id`, mutably.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut Client> {
        self.clients.get_mut(&id).map(|client| &mut **client)
    }

    /// Adds a client at the end of the accept order.
    pub fn insert(&mut self, id: u32, peer: SocketAddr, decoder: PublicDecoder) {
        let seq = self.next_seq();
        let client = Client {
            seq,
            peer,
            session: Bytes::new(),
            uid: None,
            groups: None,
            worker_key: None,
            ping_count: -1,
            pending: 0,
            decoder,
            input: BytesMut::new(),
            before_handshake: BytesMut::new(),
            deflate: None,
        };
        let previous = self.clients.insert(id, Box::new(client));
        debug_assert!(previous.is_none(), "connection id {id} allocated twice");
        self.order.insert(seq, id);
    }

    /// Removes a client and every index entry pointing at it.
    pub fn remove(&mut self, id: u32) -> Option<Client> {
        let client = *self.clients.remove(&id)?;
        self.order.remove(&client.seq);
        if let Some(uid) = &client.uid {
            remove_member(&mut self.uids, uid);
        }
        for group in client.groups.iter().flatten() {
            self.remove_group_member(group);
        }
        Some(client)
    }

    /// Connection ids in accept order.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.order.values().copied()
    }

    /// Binds `id` to `uid`, leaving its previous uid (spec 2.2 cmd 12).
    pub fn bind_uid(&mut self, id: u32, uid: Bytes) {
        if !self.clients.contains_key(&id) {
            return;
        }
        self.unbind_uid(id);
        let seq = self.next_seq();
        self.uids.entry(uid.clone()).or_default().insert(seq, id);
        if let Some(client) = self.clients.get_mut(&id) {
            client.uid = Some(Membership { name: uid, seq });
        }
    }

    /// Unbinds whatever uid `id` has (quirk 5: the uid argument is not compared).
    pub fn unbind_uid(&mut self, id: u32) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        if let Some(uid) = client.uid.take() {
            remove_member(&mut self.uids, &uid);
        }
    }

    /// Adds `id` to `group`; a member keeps its place (PHP assignment to an existing key).
    pub fn join_group(&mut self, id: u32, group: Bytes) {
        let Some(client) = self.clients.get(&id) else {
            return;
        };
        if client.groups.iter().flatten().any(|g| g.name == group) {
            return;
        }
        let member_seq = self.next_seq();
        if !self.groups.contains_key(&group) {
            let group_seq = self.next_seq();
            self.group_order.insert(group_seq, group.clone());
            self.groups.insert(
                group.clone(),
                Group {
                    seq: group_seq,
                    members: BTreeMap::new(),
                },
            );
        }
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.insert(member_seq, id);
        }
        if let Some(client) = self.clients.get_mut(&id) {
            client.groups.get_or_insert_with(Vec::new).push(Membership {
                name: group,
                seq: member_seq,
            });
        }
    }

    /// Removes `id` from `group` if it is a member.
    pub fn leave_group(&mut self, id: u32, group: &[u8]) {
        let Some(client) = self.clients.get_mut(&id) else {
            return;
        };
        let Some(groups) = client.groups.as_mut() else {
            return;
        };
        let Some(i) = groups.iter().position(|g| g.name == group) else {
            return;
        };
        let membership = groups.remove(i);
        self.remove_group_member(&membership);
    }

    /// Dissolves `group`: every member leaves it (their group list may become empty).
    pub fn ungroup(&mut self, group: &[u8]) {
        let Some(g) = self.groups.remove(group) else {
            return;
        };
        self.group_order.remove(&g.seq);
        for id in g.members.values() {
            if let Some(groups) = self.clients.get_mut(id).and_then(|c| c.groups.as_mut()) {
                groups.retain(|m| m.name != group);
            }
        }
    }

    fn remove_group_member(&mut self, membership: &Membership) {
        let Some(g) = self.groups.get_mut(&membership.name) else {
            return;
        };
        g.members.remove(&membership.seq);
        if g.members.is_empty() {
            let seq = g.seq;
            self.groups.remove(&membership.name);
            self.group_order.remove(&seq);
        }
    }

    /// Clients bound to `uid`, in bind order (empty when unknown).
    pub fn uid_members(&self, uid: &[u8]) -> impl Iterator<Item = u32> + '_ {
        self.uids
            .get(uid)
            .into_iter()
            .flat_map(|m| m.values().copied())
    }

    /// Members of `group` in join order (empty when unknown).
    pub fn group_members(&self, group: &[u8]) -> impl Iterator<Item = u32> + '_ {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(|g| g.members.values().copied())
    }

    /// Member count of `group`, `None` when it does not exist.
    pub fn group_len(&self, group: &[u8]) -> Option<usize> {
        self.groups.get(group).map(|g| g.members.len())
    }

    /// Groups having members, in creation order.
    pub fn group_names(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.group_order.values()
    }

    /// Uids having clients, in no particular order (for invariant checks and snapshots).
    pub fn uid_names(&self) -> impl Iterator<Item = &Bytes> + '_ {
        self.uids.keys()
    }

    /// Panics when the indexes disagree with the clients (tests and simulation call it
    /// after every input).
    pub fn check_invariants(&self) {
        assert_eq!(self.clients.len(), self.order.len(), "order vs clients");
        for (seq, id) in &self.order {
            let client = self.clients.get(id).expect("ordered id is a client");
            assert_eq!(client.seq, *seq, "client {id} seq");
            if let Some(uid) = &client.uid {
                let members = self.uids.get(&uid.name).expect("bound uid indexed");
                assert_eq!(members.get(&uid.seq), Some(id), "uid member of {id}");
            }
            for g in client.groups.iter().flatten() {
                let group = self.groups.get(&g.name).expect("joined group indexed");
                assert_eq!(group.members.get(&g.seq), Some(id), "group member of {id}");
                let dups = client
                    .groups
                    .iter()
                    .flatten()
                    .filter(|o| o.name == g.name)
                    .count();
                assert_eq!(dups, 1, "group listed once per client");
            }
        }
        for (name, members) in &self.uids {
            assert!(!members.is_empty(), "empty uid entry kept");
            for (seq, id) in members {
                let uid = self.clients[id].uid.as_ref().expect("member has uid");
                assert!(
                    uid.name == name && uid.seq == *seq,
                    "uid index entry of {id}"
                );
            }
        }
        assert_eq!(self.groups.len(), self.group_order.len(), "group order");
        for (seq, name) in &self.group_order {
            let group = &self.groups[name];
            assert_eq!(group.seq, *seq);
            assert!(!group.members.is_empty(), "empty group kept");
            for (mseq, id) in &group.members {
                let listed = self.clients[id]
                    .groups
                    .iter()
                    .flatten()
                    .any(|g| g.name == *name && g.seq == *mseq);
                assert!(listed, "group index entry of {id}");
            }
        }
    }
}

fn remove_member(index: &mut HashMap<Bytes, BTreeMap<u64, u32>, NameState>, m: &Membership) {
    if let Some(members) = index.get_mut(&m.name) {
        members.remove(&m.seq);
        if members.is_empty() {
            index.remove(&m.name);
        }
    }
}

/// Allocates connection ids exactly like the original (spec 3): a counter starting at 0;
/// reset to 0 when it has reached 4 294 967 295; then incremented until an id not in use
/// is found. Ids run 1..=4 294 967 295; 0 is never produced.
#[derive(Debug, Clone, Default)]
pub struct IdAllocator {
    /// The last id handed out (the original's `_connectionIdRecorder`).
    pub recorder: u32,
}

impl IdAllocator {
    /// The next free id, `None` when all 4 294 967 295 are in use.
    pub fn allocate(&mut self, in_use: impl Fn(u32) -> bool) -> Option<u32> {
        if self.recorder == u32::MAX {
            self.recorder = 0;
        }
        // The original stops at the maximum and returns 4 294 967 296 when every id above
        // the counter is taken; wrapping to 1 and giving up after one full turn is the
        // sane reading (only reachable with billions of clients).
        for _ in 0..u32::MAX {
            self.recorder = if self.recorder == u32::MAX {
                1
            } else {
                self.recorder + 1
            };
            if !in_use(self.recorder) {
                return Some(self.recorder);
            }
        }
        None
    }
}
