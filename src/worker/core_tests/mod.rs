//! `WorkerCore` driven with a fake clock and fake links.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use quickcheck::{QuickCheck, TestResult};

use super::*;
use crate::api::plan::frame_bytes;
use crate::protocol::php::serialize::serialize;
use crate::protocol::php::unserialize::unserialize_lenient;

const REGISTER: &str = "10.0.0.1:1236";

fn gw(i: u8) -> GatewayAddr {
    SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 2900 + u16::from(i))
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// A core whose invariants are checked after every input ([`WorkerCore::check_invariants`]):
/// the `handle_*` inputs here check at once; anything else reached through `DerefMut` (calls,
/// event ends, room) is checked when the harness drains the actions it caused.
struct Checked(WorkerCore);

impl std::ops::Deref for Checked {
    type Target = WorkerCore;
    fn deref(&self) -> &WorkerCore {
        &self.0
    }
}

impl std::ops::DerefMut for Checked {
    fn deref_mut(&mut self) -> &mut WorkerCore {
        &mut self.0
    }
}

impl Checked {
    fn checked<T>(&mut self, input: impl FnOnce(&mut WorkerCore) -> T) -> T {
        let out = input(&mut self.0);
        self.0.check_invariants();
        out
    }

    fn handle_timeout(&mut self, now: Duration) {
        self.checked(|core| core.handle_timeout(now));
    }

    fn handle_connected(&mut self, now: Duration, link: GatewayLinkId) {
        self.checked(|core| core.handle_connected(now, link));
    }

    fn handle_written(&mut self, now: Duration, link: GatewayLinkId, n: usize) {
        self.checked(|core| core.handle_written(now, link, n));
    }

    fn handle_closed(&mut self, now: Duration, link: GatewayLinkId) {
        self.checked(|core| core.handle_closed(now, link));
    }

    fn handle_bytes(&mut self, now: Duration, link: GatewayLinkId, data: &[u8]) {
        self.checked(|core| core.handle_bytes(now, link, data));
    }
}

/// One core, its clock and what it asked for.
struct Harness {
    core: Checked,
    now: Duration,
    register: Option<GatewayLinkId>,
    gateway_links: Vec<(GatewayAddr, GatewayLinkId)>,
}

impl Harness {
    fn new(config: WorkerConfig) -> Harness {
        let core = Checked(WorkerCore::new(config, Duration::ZERO));
        core.check_invariants();
        let mut h = Harness {
            core,
            now: Duration::ZERO,
            register: None,
            gateway_links: Vec::new(),
        };
        let actions = h.drain();
        let Some(Action::Connect {
            link,
            peer: Peer::Register(addr),
        }) = actions.first()
        else {
            panic!("first action must connect to the register: {actions:?}");
        };
        assert_eq!(addr, REGISTER);
        h.register = Some(*link);
        h
    }

    fn config() -> WorkerConfig {
        let mut c = WorkerConfig::new("probe", 0, vec![REGISTER.to_string()]);
        c.secret_key = "s3cr3t".into();
        c
    }

    /// Connects the register and broadcasts `n` gateways, all connected; drains.
    fn with_gateways(n: u8) -> Harness {
        let mut h = Harness::new(Harness::config());
        let register = h.register.expect("register");
        h.core.handle_connected(h.now, register);
        let list: Vec<String> = (0..n).map(|i| format!("\"{}\"", gw(i))).collect();
        let line = format!(
            "{{\"event\":\"broadcast_addresses\",\"addresses\":[{}]}}\n",
            list.join(",")
        );
        h.core.handle_bytes(h.now, register, line.as_bytes());
        for a in h.drain() {
            if let Action::Connect {
                link,
                peer: Peer::Gateway(addr),
            } = a
            {
                h.gateway_links.push((addr, link));
            }
        }
        for (_, link) in h.gateway_links.clone() {
            h.core.handle_connected(h.now, link);
        }
        h.drain();
        h
    }

    fn link(&self, addr: GatewayAddr) -> GatewayLinkId {
        self.gateway_links
            .iter()
            .rev()
            .find(|(a, _)| *a == addr)
            .map(|(_, l)| *l)
            .expect("linked")
    }

    /// The link to `addr` closes (a gateway restart) and, at the reconnect 1 s later, a new
    /// one opens; drains, and returns the new link (also what [`Harness::link`] gives now).
    fn relink(&mut self, addr: GatewayAddr) -> GatewayLinkId {
        self.core.handle_closed(self.now, self.link(addr));
        self.advance(self.now + secs(1.0));
        let new_link = self
            .drain()
            .iter()
            .find_map(|a| match a {
                Action::Connect {
                    link,
                    peer: Peer::Gateway(to),
                } if *to == addr => Some(*link),
                _ => None,
            })
            .expect("reconnects");
        self.core.handle_connected(self.now, new_link);
        self.drain();
        self.gateway_links.push((addr, new_link));
        new_link
    }

    /// All pending actions; transmits are confirmed as written.
    fn drain(&mut self) -> Vec<Action> {
        self.core.check_invariants();
        let mut out = Vec::new();
        while let Some(a) = self.core.poll_action() {
            if let Action::Transmit { link, bytes } = &a {
                self.core.handle_written(self.now, *link, bytes.len());
            }
            out.push(a);
        }
        out
    }

    /// A harness whose register announced one gateway (10.0.0.5:2900), already linked.
    fn linked_to_one_gateway(config: WorkerConfig) -> (Harness, GatewayLinkId) {
        let mut h = Harness::new(config);
        let register = h.register.unwrap();
        h.core.handle_connected(h.now, register);
        h.core.handle_bytes(
            h.now,
            register,
            b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
        );
        let link = GatewayLinkId(2);
        h.core.handle_connected(h.now, link);
        h.drain();
        (h, link)
    }

    /// Ends `event` as the business code does when the session did not change.
    fn end_unchanged(&mut self, event: &ClientEvent) {
        self.core
            .end_event(
                self.now,
                &event.client,
                event.kind,
                &PhpValue::Null,
                &PhpValue::Null,
            )
            .unwrap();
    }

    /// Drains like [`Harness::drain`], ending every event (nothing to write back) as the
    /// business code would, with the events that releases.
    fn drain_ended(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        loop {
            let actions = self.drain();
            if actions.is_empty() {
                return out;
            }
            for a in &actions {
                if let Action::Event(e) = a {
                    self.end_unchanged(e);
                }
            }
            out.extend(actions);
        }
    }

    fn advance(&mut self, to: Duration) {
        self.now = to;
        self.core.handle_timeout(to);
    }
}

fn transmits(actions: &[Action]) -> Vec<(GatewayLinkId, Bytes)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transmit { link, bytes } => Some((*link, bytes.clone())),
            _ => None,
        })
        .collect()
}

fn done(actions: &[Action]) -> Vec<CallDone> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CallDone(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<ClientEvent> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// An event frame as a gateway writes it.
fn event_frame(
    gateway: GatewayAddr,
    cmd: Command,
    cid: u32,
    session: &[u8],
    body: &[u8],
    flag: u8,
) -> Bytes {
    let f = Frame {
        header: Header {
            cmd,
            local_ip: *gateway.ip(),
            local_port: gateway.port(),
            client_ip: Ipv4Addr::new(192, 168, 1, 9),
            client_port: 50000,
            connection_id: cid,
            flag,
            gateway_port: 8282,
        },
        ext_data: Bytes::copy_from_slice(session),
        body: Bytes::copy_from_slice(body),
    };
    frame_bytes(&f)
}

fn reply(value: &PhpValue) -> Bytes {
    let payload = serialize(value);
    let mut out = BytesMut::new();
    out.put_u32(payload.len() as u32);
    out.put_slice(&payload);
    out.freeze()
}

fn cmd_of(bytes: &[u8]) -> u8 {
    bytes[4]
}

fn map(entries: Vec<(PhpKey, PhpValue)>) -> PhpValue {
    PhpValue::Array(entries.into_iter().collect())
}

fn php_bytes(v: &PhpValue) -> Vec<u8> {
    match v {
        PhpValue::Str(s) => s.to_vec(),
        _ => unreachable!(),
    }
}

const GW0: &str = "10.0.0.5:2900";

fn gw0() -> GatewayAddr {
    GW0.parse().unwrap()
}

mod bounds;
mod calls;
mod drain;
mod events;
mod links;
mod mutants;
mod properties;
mod txn;
