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

/// One core, its clock and what it asked for.
struct Harness {
    core: WorkerCore,
    now: Duration,
    register: Option<GatewayLinkId>,
    gateway_links: Vec<(GatewayAddr, GatewayLinkId)>,
}

impl Harness {
    fn new(config: WorkerConfig) -> Harness {
        let core = WorkerCore::new(config, Duration::ZERO);
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

    /// All pending actions; transmits are confirmed as written.
    fn drain(&mut self) -> Vec<Action> {
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
                    self.core
                        .end_event(
                            self.now,
                            &e.client,
                            e.kind,
                            &PhpValue::Null,
                            &PhpValue::Null,
                        )
                        .unwrap();
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

#[test]
fn register_connect_line_and_broadcast_opens_links_with_worker_connect_first() {
    let mut h = Harness::new(Harness::config());
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    let sent = transmits(&h.drain());
    assert_eq!(
        sent,
        vec![(
            register,
            Bytes::from_static(b"{\"event\":\"worker_connect\",\"secret_key\":\"s3cr3t\"}\n")
        )]
    );
    // The object form of a de-duplicated list.
    let line =
        br#"{"event":"broadcast_addresses","addresses":{"0":"10.0.0.5:2900","2":"10.0.0.5:2901"}}"#;
    h.core.handle_bytes(h.now, register, line);
    assert!(
        h.drain().is_empty(),
        "a line is only complete at its newline"
    );
    h.core.handle_bytes(h.now, register, b"\r\n");
    let actions = h.drain();
    let connects: Vec<&Peer> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Connect { peer, .. } => Some(peer),
            _ => None,
        })
        .collect();
    assert_eq!(connects, vec![&Peer::Gateway(gw(0)), &Peer::Gateway(gw(1))]);
    assert!(
        transmits(&actions).is_empty(),
        "nothing is written before the connection"
    );
    assert_eq!(h.core.gateway_addresses(), &[gw(0), gw(1)]);

    let Action::Connect { link, .. } = actions[0] else {
        unreachable!()
    };
    h.core.handle_connected(h.now, link);
    let sent = transmits(&h.drain());
    let hello = &sent[0].1;
    assert_eq!(cmd_of(hello), 200);
    assert_eq!(
        &hello[28..],
        br#"{"worker_key":"probe:0","secret_key":"s3cr3t"}"#
    );
    assert_eq!(hello[21], 1, "the JSON body is a scalar string");
}

#[test]
fn register_pings_every_25_s_unless_local() {
    let mut h = Harness::new(Harness::config());
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.drain();
    assert_eq!(h.core.poll_timeout(), Some(secs(25.0)));
    h.advance(secs(25.0));
    let sent = transmits(&h.drain());
    assert_eq!(
        sent,
        vec![(register, Bytes::from_static(b"{\"event\":\"ping\"}\n"))]
    );
    assert_eq!(h.core.poll_timeout(), Some(secs(50.0)));

    let local = WorkerConfig::new("w", 1, vec!["127.0.0.1:1236".into()]);
    let mut core = WorkerCore::new(local, Duration::ZERO);
    let Some(Action::Connect { link, .. }) = core.poll_action() else {
        panic!()
    };
    core.handle_connected(Duration::ZERO, link);
    assert_eq!(core.poll_timeout(), None, "no keep-alive towards 127.0.0.1");
}

#[test]
fn event_frames_become_client_events_and_ping_is_ignored() {
    let mut h = Harness::with_gateways(2);
    let link = h.link(gw(1));
    let session = serialize(&map(vec![(PhpKey::from_bytes(b"a"), PhpValue::Int(1))]));
    let mut bytes = BytesMut::new();
    bytes.put_slice(&event_frame(gw(1), Command::OnConnect, 7, b"", b"", 1));
    bytes.put_slice(&event_frame(gw(1), Command::Ping, 0, b"", b"", 1));
    bytes.put_slice(&event_frame(
        gw(1),
        Command::OnMessage,
        8,
        &session,
        b"\x00\xff",
        1 | FLAG_BINARY,
    ));
    h.core.handle_bytes(h.now, link, &bytes);
    let evs = events(&h.drain());
    assert_eq!(evs.len(), 2);
    assert_eq!(evs[0].kind, ClientEventKind::Connect);
    assert_eq!(
        evs[0].client.client_id,
        Bytes::from_static(b"0a0000050b5500000007")
    );
    assert_eq!(evs[0].client.session, PhpValue::Null);
    assert!(!evs[0].binary);
    let m = &evs[1];
    assert_eq!(m.kind, ClientEventKind::Message);
    assert_eq!(m.client.gateway, gw(1));
    assert_eq!(m.client.connection_id, 8);
    assert_eq!(m.header.client_port, 50000);
    assert_eq!(m.body, PhpValue::Str(Bytes::from_static(b"\x00\xff")));
    assert!(m.binary);
    assert_eq!(m.client.session, unserialize_lenient(&session));
    assert_eq!(m.session_text, Bytes::from(session));
}

#[test]
fn query_across_three_gateways_gathers_and_sums() {
    let mut h = Harness::with_gateways(3);
    let id = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let sent = transmits(&h.drain());
    assert_eq!(sent.len(), 3);
    assert!(sent.iter().all(|(_, b)| cmd_of(b) == 24));
    for (i, n) in [(0, 2), (2, 0), (1, 3)] {
        h.core
            .handle_bytes(h.now, h.link(gw(i)), &reply(&PhpValue::Int(n)));
    }
    let finished = done(&h.drain());
    assert_eq!(
        finished,
        vec![CallDone {
            id,
            result: Ok(PhpValue::Int(5)),
            unanswered: vec![]
        }]
    );
}

#[test]
fn select_replies_rebuild_client_ids_from_each_gateway() {
    let mut h = Harness::with_gateways(2);
    let id = h.core.call(h.now, &ApiCall::GetAllClientIdList, None);
    h.drain();
    let row = |uid: PhpValue| map(vec![(PhpKey::from_bytes(b"uid"), uid)]);
    h.core.handle_bytes(
        h.now,
        h.link(gw(1)),
        &reply(&map(vec![(PhpKey::Int(7), row(PhpValue::Null))])),
    );
    h.core.handle_bytes(
        h.now,
        h.link(gw(0)),
        &reply(&map(vec![
            (PhpKey::Int(1), row(PhpValue::str("u1"))),
            (PhpKey::Int(2), row(PhpValue::Null)),
        ])),
    );
    let d = done(&h.drain());
    let ids: Vec<PhpValue> = [
        "0a0000050b5400000001",
        "0a0000050b5400000002",
        "0a0000050b5500000007",
    ]
    .iter()
    .map(|s| PhpValue::str(s))
    .collect();
    let want = map(ids
        .iter()
        .map(|v| (PhpKey::from_bytes(&php_bytes(v)), v.clone()))
        .collect());
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].result, Ok(want), "gateway order, not reply order");
}

fn php_bytes(v: &PhpValue) -> Vec<u8> {
    match v {
        PhpValue::Str(s) => s.to_vec(),
        _ => unreachable!(),
    }
}

#[test]
fn silent_gateway_times_out_without_blocking_other_calls() {
    let mut h = Harness::with_gateways(3);
    let query = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, h.link(gw(0)), &reply(&PhpValue::Int(1)));
    h.core
        .handle_bytes(h.now, h.link(gw(1)), &reply(&PhpValue::Int(1)));
    assert!(
        done(&h.drain()).is_empty(),
        "one gateway still owes a reply"
    );

    // Other calls go on meanwhile.
    let send = h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: Bytes::from_static(b"0a0000050b5400000001"),
            message: PhpValue::str("hi"),
            raw: false,
        },
        None,
    );
    let d = done(&h.drain());
    assert_eq!(d[0].id, send);
    assert_eq!(d[0].result, Ok(PhpValue::Bool(true)));

    assert_eq!(h.core.poll_timeout(), Some(secs(5.0)));
    h.advance(secs(4.9));
    assert!(done(&h.drain()).is_empty());
    h.advance(secs(5.0));
    let d = done(&h.drain());
    assert_eq!(
        d,
        vec![CallDone {
            id: query,
            result: Err(ApiError::Timeout { missing: 1 }),
            unanswered: vec![gw(2)]
        }]
    );
    assert_eq!(h.core.stats().queries_incomplete, 1);

    // The late reply is consumed in order and does not confuse the next query.
    let next = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, h.link(gw(2)), &reply(&PhpValue::Int(100)));
    for i in 0..3 {
        h.core
            .handle_bytes(h.now, h.link(gw(i)), &reply(&PhpValue::Int(2)));
    }
    let d = done(&h.drain());
    assert_eq!(d[0].id, next);
    assert_eq!(d[0].result, Ok(PhpValue::Int(6)));
}

#[test]
fn partial_policy_returns_what_arrived() {
    let mut config = Harness::config();
    config.timeout_policy = TimeoutPolicy::Partial;
    let mut h = Harness::new(config);
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\",\"10.0.0.5:2901\"]}\n",
    );
    let links: Vec<GatewayLinkId> = h
        .drain()
        .iter()
        .filter_map(|a| match a {
            Action::Connect {
                link,
                peer: Peer::Gateway(_),
            } => Some(*link),
            _ => None,
        })
        .collect();
    for l in &links {
        h.core.handle_connected(h.now, *l);
    }
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, links[0], &reply(&PhpValue::Int(4)));
    h.advance(secs(5.0));
    let d = done(&h.drain());
    assert_eq!(d[0].result, Ok(PhpValue::Int(4)));
    assert_eq!(d[0].unanswered, vec![gw(1)]);
}

#[test]
fn closed_link_fails_its_part_at_once_and_reconnects_with_backoff() {
    let mut h = Harness::with_gateways(2);
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core
        .handle_bytes(h.now, h.link(gw(0)), &reply(&PhpValue::Int(3)));
    h.now = secs(0.5);
    h.core.handle_closed(h.now, h.link(gw(1)));
    let d = done(&h.drain());
    assert_eq!(d[0].result, Err(ApiError::Timeout { missing: 1 }));
    assert_eq!(d[0].unanswered, vec![gw(1)]);

    // 1 s, then doubling up to 4 s while attempts fail.
    let mut at = secs(0.5);
    for delay in [1.0, 2.0, 4.0, 4.0] {
        assert_eq!(h.core.poll_timeout(), Some(at + secs(delay)));
        at += secs(delay);
        h.advance(at);
        let actions = h.drain();
        let Some(Action::Connect { link, peer }) = actions.first() else {
            panic!("expected a reconnect: {actions:?}")
        };
        assert_eq!(peer, &Peer::Gateway(gw(1)));
        h.core.handle_closed(h.now, *link);
    }
    // A link that stays up resets the backoff.
    at += secs(4.0);
    h.advance(at);
    let Some(Action::Connect { link, .. }) = h.drain().first().cloned() else {
        panic!()
    };
    h.core.handle_connected(h.now, link);
    let hello = transmits(&h.drain());
    assert_eq!(
        cmd_of(&hello[0].1),
        200,
        "WORKER_CONNECT again on every connection"
    );
    at += secs(10.0);
    h.now = at;
    h.core.handle_closed(h.now, link);
    let connects = |actions: Vec<Action>| {
        actions
            .into_iter()
            .filter(|a| matches!(a, Action::Connect { .. }))
            .count()
    };
    h.advance(at + secs(0.99));
    assert_eq!(connects(h.drain()), 0);
    h.advance(at + secs(1.0));
    assert_eq!(connects(h.drain()), 1, "back to a 1 s delay");
}

#[test]
fn unlisted_address_is_not_reconnected_and_its_link_is_not_closed() {
    let mut h = Harness::with_gateways(2);
    let register = h.register.unwrap();
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    assert!(h.drain().is_empty(), "no link is closed proactively");
    // Within the grace period the address is kept.
    assert_eq!(h.core.gateway_addresses(), &[gw(0), gw(1)]);
    h.advance(secs(3.0));
    assert_eq!(h.core.gateway_addresses(), &[gw(0)]);
    // Still linked: sends and fan-outs still reach it.
    assert_eq!(h.core.linked_gateways(), vec![gw(0), gw(1)]);
    h.core.handle_closed(h.now, h.link(gw(1)));
    h.advance(secs(10.0));
    assert!(h.drain().is_empty(), "a dropped address is not retried");
    assert_eq!(h.core.linked_gateways(), vec![gw(0)]);
}

#[test]
fn register_loss_keeps_the_last_good_list() {
    let mut h = Harness::with_gateways(3);
    let register = h.register.unwrap();
    // A register shutting down broadcasts shrinking lists, then closes.
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[]}\n",
    );
    h.now = secs(1.0);
    h.core.handle_closed(h.now, register);
    h.advance(secs(10.0));
    assert_eq!(h.core.gateway_addresses(), &[gw(0), gw(1), gw(2)]);
    // It reconnected and says hello again.
    let actions = h.drain();
    let link = actions
        .iter()
        .find_map(|a| match a {
            Action::Connect {
                link,
                peer: Peer::Register(_),
            } => Some(*link),
            _ => None,
        })
        .expect("register reconnect");
    h.core.handle_connected(h.now, link);
    assert_eq!(transmits(&h.drain()).len(), 1);
}

#[test]
fn full_queue_drops_counted_and_send_returns_false() {
    let mut config = Harness::config();
    config.link_queue_max = 210;
    let mut h = Harness::new(config);
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.drain();
    // The link is still connecting: frames queue behind WORKER_CONNECT up to the bound.
    let send = |h: &mut Harness| {
        h.core.call(
            h.now,
            &ApiCall::SendToClient {
                client_id: Bytes::from_static(b"0a0000050b5400000001"),
                message: PhpValue::Str(Bytes::from(vec![b'x'; 40])),
                raw: false,
            },
            None,
        );
        done(&h.drain())[0].result.clone()
    };
    // 74 bytes of hello + 68 per send: two fit in 210 exactly, the third does not.
    assert_eq!(send(&mut h), Ok(PhpValue::Bool(true)));
    assert_eq!(send(&mut h), Ok(PhpValue::Bool(true)));
    assert_eq!(send(&mut h), Ok(PhpValue::Bool(false)));
    assert_eq!(h.core.stats().frames_dropped, 1);
    assert_eq!(h.core.stats().bytes_dropped, 68);
    // A query that cannot be queued fails that gateway at once.
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let d = done(&h.drain());
    assert_eq!(d[0].result, Err(ApiError::Timeout { missing: 1 }));
}

#[test]
fn window_bounds_what_the_driver_holds() {
    let mut config = Harness::config();
    config.link_window_max = 100;
    let mut h = Harness::new(config);
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    h.drain();
    let link = GatewayLinkId(2);
    for _ in 0..3 {
        h.core.call(
            h.now,
            &ApiCall::SendToAll {
                message: PhpValue::Str(Bytes::from(vec![b'x'; 40])),
                client_id_list: None,
                exclude: None,
                raw: false,
            },
            None,
        );
    }
    h.core.handle_connected(h.now, link);
    let mut handed = Vec::new();
    while let Some(a) = h.core.poll_action() {
        if let Action::Transmit { bytes, .. } = a {
            handed.push(bytes.len());
        }
    }
    assert_eq!(handed, vec![74, 68], "stops once the window is used");
    h.core.handle_written(h.now, link, 142);
    let more = transmits(&h.drain());
    assert_eq!(more.len(), 2);
}

#[test]
fn changed_session_is_written_back_after_the_event() {
    let mut h = Harness::with_gateways(2);
    let link = h.link(gw(1));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(1), Command::OnMessage, 7, b"", b"m", 1),
    );
    let ev = events(&h.drain()).remove(0);
    let new = map(vec![(PhpKey::from_bytes(b"k"), PhpValue::str("v"))]);
    h.core
        .end_event(h.now, &ev.client, ev.kind, &ev.client.session, &new)
        .expect("array session");
    let sent = transmits(&h.drain());
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, link);
    let f = &sent[0].1;
    assert_eq!(cmd_of(f), 204);
    assert_eq!(&f[17..21], &7u32.to_be_bytes());
    assert_eq!(&f[28..], serialize(&new).as_slice());

    // Unchanged: nothing. Cleared to null: empty ext_data. Close: nothing.
    h.core
        .end_event(h.now, &ev.client, ev.kind, &new, &new)
        .unwrap();
    assert!(h.drain().is_empty());
    h.core
        .end_event(h.now, &ev.client, ev.kind, &new, &PhpValue::Null)
        .unwrap();
    let f = &transmits(&h.drain())[0].1;
    assert_eq!(f.len(), 28, "no ext_data, empty body");
    h.core
        .end_event(
            h.now,
            &ev.client,
            ClientEventKind::Close,
            &PhpValue::Null,
            &new,
        )
        .unwrap();
    assert!(h.drain().is_empty());
    assert!(matches!(
        h.core
            .end_event(h.now, &ev.client, ev.kind, &new, &PhpValue::Int(3)),
        Err(ApiError::BadArgument(_))
    ));
}

#[test]
fn stale_session_is_reloaded_before_the_event_and_later_events_wait() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    let a = serialize(&map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, &a, b"1", 1),
    );
    let ev = events(&h.drain()).remove(0);
    let b = map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(2))]);
    h.core
        .end_event(h.now, &ev.client, ev.kind, &ev.client.session, &b)
        .unwrap();
    h.drain();
    // The gateway sent the next events before applying our write: they carry `a`.
    let mut bytes = BytesMut::new();
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 3, &a, b"2", 1));
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 9, b"", b"other", 1));
    h.core.handle_bytes(h.now, link, &bytes);
    let actions = h.drain();
    assert!(
        events(&actions).is_empty(),
        "held until the session is reloaded"
    );
    let sent = transmits(&actions);
    assert_eq!(sent.len(), 1);
    assert_eq!(cmd_of(&sent[0].1), 203);
    assert_eq!(&sent[0].1[17..21], &3u32.to_be_bytes());
    // An event frame before the reply is still an event; then the reply.
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnClose, 9, b"", b"", 1),
    );
    h.core.handle_bytes(h.now, link, &reply(&b));
    let evs = events(&h.drain_ended());
    let bodies: Vec<&PhpValue> = evs.iter().map(|e| &e.body).collect();
    assert_eq!(
        bodies,
        vec![
            &PhpValue::str("2"),
            &PhpValue::str("other"),
            &PhpValue::str("")
        ]
    );
    assert_eq!(evs[0].client.session, b, "the reloaded session");
    assert_eq!(h.core.stats().session_reloads, 1);
}

#[test]
fn malformed_frames_close_the_link() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    h.core.handle_bytes(h.now, link, &[0, 0, 0, 5, 3, 0, 0, 0]);
    let actions = h.drain();
    assert_eq!(
        actions,
        vec![Action::Close {
            link,
            reason: CloseReason::Protocol("frame shorter than its header")
        }]
    );
    assert_eq!(h.core.stats().protocol_errors, 1);
    assert_eq!(
        h.core.poll_timeout(),
        Some(secs(1.0)),
        "reconnect scheduled"
    );
}

#[test]
fn calls_outside_an_event_and_worker_only_rules() {
    let mut h = Harness::with_gateways(1);
    h.core.call(
        h.now,
        &ApiCall::SendToCurrentClient {
            message: PhpValue::str("x"),
            raw: false,
        },
        None,
    );
    h.core
        .call(h.now, &ApiCall::IsUidsOnline { uids: vec![] }, None);
    h.core.call(
        h.now,
        &ApiCall::IsOnline {
            client_id: Bytes::from_static(b"short"),
        },
        None,
    );
    // A gateway we have no link to: 0 without asking (the original's worker rule).
    h.core.call(
        h.now,
        &ApiCall::IsOnline {
            client_id: Bytes::from_static(b"0a0000060b5400000001"),
        },
        None,
    );
    let actions = h.drain();
    assert!(transmits(&actions).is_empty());
    let results: Vec<ApiResult> = done(&actions).into_iter().map(|d| d.result).collect();
    assert_eq!(
        results,
        vec![
            Err(ApiError::NoCurrentClient),
            Err(ApiError::NotAvailable),
            Ok(PhpValue::Int(0)),
            Ok(PhpValue::Int(0)),
        ]
    );
}

/// Feeding a link's byte stream in arbitrary pieces gives the same actions as feeding it
/// whole: events and replies interleaved, split anywhere.
#[test]
fn split_reads_do_not_change_the_outcome() {
    fn run(cuts: Vec<u16>) -> TestResult {
        let stream = {
            let mut s = BytesMut::new();
            s.put_slice(&event_frame(gw(0), Command::OnConnect, 1, b"", b"", 1));
            s.put_slice(&reply(&PhpValue::Int(4)));
            s.put_slice(&event_frame(gw(0), Command::OnMessage, 1, b"", b"hello", 1));
            s.put_slice(&reply(&map(vec![(PhpKey::Int(0), PhpValue::Int(1))])));
            s.put_slice(&reply(&PhpValue::Null));
            s.put_slice(&event_frame(gw(0), Command::OnClose, 1, b"", b"", 1));
            s.freeze()
        };
        let outcome = |pieces: Vec<Bytes>| {
            let mut h = Harness::with_gateways(1);
            let link = h.link(gw(0));
            h.core.call(h.now, &ApiCall::GetAllClientCount, None);
            h.core.call(
                h.now,
                &ApiCall::GetClientIdByUid {
                    uid: Bytes::from_static(b"u"),
                },
                None,
            );
            h.core.call(
                h.now,
                &ApiCall::GetSession {
                    client_id: Bytes::from_static(b"0a0000050b5400000001"),
                },
                None,
            );
            h.drain();
            let mut out = Vec::new();
            for p in pieces {
                h.core.handle_bytes(h.now, link, &p);
                out.extend(h.drain());
            }
            // The business code ends its events only now, whatever the reads were.
            for e in events(&out) {
                h.core
                    .end_event(h.now, &e.client, e.kind, &PhpValue::Null, &PhpValue::Null)
                    .unwrap();
            }
            out.extend(h.drain_ended());
            out
        };
        let whole = outcome(vec![stream.clone()]);
        let mut points: Vec<usize> = cuts
            .iter()
            .map(|c| usize::from(*c) % (stream.len() + 1))
            .collect();
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut last = 0;
        for p in points {
            pieces.push(stream.slice(last..p));
            last = p;
        }
        pieces.push(stream.slice(last..));
        let split = outcome(pieces);
        if whole.len() != 6 {
            return TestResult::error(format!("whole stream gave {whole:?}"));
        }
        TestResult::from_bool(whole == split)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(run as fn(Vec<u16>) -> TestResult);
}

#[test]
fn crc32_matches_php() {
    // php -r 'echo crc32("The quick brown fox jumped over the lazy dog.");'
    assert_eq!(
        crc32(b"The quick brown fox jumped over the lazy dog."),
        2191738434
    );
    assert_eq!(crc32(b""), 0);
}

#[test]
fn connection_attempts_time_out_and_are_retried() {
    let mut h = Harness::new(Harness::config());
    let register = h.register.unwrap();
    h.core.handle_connected(h.now, register);
    h.core.handle_bytes(
        h.now,
        register,
        b"{\"event\":\"broadcast_addresses\",\"addresses\":[\"10.0.0.5:2900\"]}\n",
    );
    let actions = h.drain();
    let Some(Action::Connect { link, .. }) = actions.last().cloned() else {
        panic!("{actions:?}")
    };
    // Frames and queries wait behind the connection attempt.
    let query = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    assert!(h.drain().is_empty());
    assert_eq!(h.core.poll_timeout(), Some(secs(5.0)));
    h.advance(secs(5.0));
    let actions = h.drain();
    assert_eq!(
        actions[0],
        Action::Close {
            link,
            reason: CloseReason::ConnectTimeout
        }
    );
    let d = done(&actions);
    assert_eq!(d[0].id, query);
    assert_eq!(d[0].unanswered, vec![gw(0)]);
    // A late report of the abandoned link changes nothing.
    h.core.handle_connected(h.now, link);
    h.core.handle_closed(h.now, link);
    assert!(h.drain().is_empty());
    assert_eq!(h.core.poll_timeout(), Some(secs(6.0)));
    h.advance(secs(6.0));
    assert!(matches!(
        h.drain().first(),
        Some(Action::Connect {
            peer: Peer::Gateway(_),
            ..
        })
    ));
}

#[test]
fn held_events_are_bounded_and_a_late_reload_reply_is_ignored() {
    let mut config = Harness::config();
    config.parked_events_max = 3;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    let a = serialize(&map(vec![(PhpKey::from_bytes(b"n"), PhpValue::Int(1))]));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnConnect, 3, b"", b"", 1),
    );
    h.drain_ended();
    // Session changed elsewhere: reload, then two more events are held.
    for body in [&b"1"[..], b"2", b"3"] {
        h.core.handle_bytes(
            h.now,
            link,
            &event_frame(gw(0), Command::OnMessage, 3, &a, body, 1),
        );
    }
    assert!(events(&h.drain()).is_empty(), "held within the bound");
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, &a, b"4", 1),
    );
    let bodies: Vec<PhpValue> = events(&h.drain_ended())
        .into_iter()
        .map(|e| e.body)
        .collect();
    assert_eq!(
        bodies,
        ["1", "2", "3", "4"].map(PhpValue::str).to_vec(),
        "over the bound: delivered in order with the sessions they carried"
    );
    // The reload reply comes later and must not be taken for anything else.
    let count = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    h.core.handle_bytes(h.now, link, &reply(&PhpValue::Null));
    h.core.handle_bytes(h.now, link, &reply(&PhpValue::Int(9)));
    let d = done(&h.drain());
    assert_eq!(d[0].id, count);
    assert_eq!(d[0].result, Ok(PhpValue::Int(9)));
}

#[test]
fn register_lines_match_the_vectors() {
    use crate::testing::vectors::{decode_hex, vector};
    let wire = |name: &str| {
        let v = vector("register", name);
        decode_hex(v["expected"]["wire_hex"].as_str().expect("wire_hex")).expect("hex")
    };
    let config = WorkerConfig::new("w", 0, vec![REGISTER.into()]);
    let mut core = WorkerCore::new(config, Duration::ZERO);
    let Some(Action::Connect { link, .. }) = core.poll_action() else {
        panic!()
    };
    core.handle_connected(Duration::ZERO, link);
    let Some(Action::Transmit { bytes, .. }) = core.poll_action() else {
        panic!()
    };
    assert_eq!(bytes.as_ref(), wire("message_worker_connect").as_slice());
    core.handle_written(Duration::ZERO, link, bytes.len());
    core.handle_timeout(secs(25.0));
    let Some(Action::Transmit { bytes, .. }) = core.poll_action() else {
        panic!()
    };
    assert_eq!(bytes.as_ref(), wire("message_ping").as_slice());
}

/// Whatever happens to the links (replies, silence, closes, reconnects) and the clock,
/// every call finishes exactly once, and never later than its deadline.
#[test]
fn every_call_finishes_exactly_once() {
    #[derive(Debug, Clone)]
    enum Step {
        Query,
        Send,
        Reply(u8),
        Close(u8),
        Advance(u16),
    }
    impl quickcheck::Arbitrary for Step {
        fn arbitrary(g: &mut quickcheck::Gen) -> Step {
            match u8::arbitrary(g) % 10 {
                0..=2 => Step::Query,
                3 => Step::Send,
                4..=6 => Step::Reply(u8::arbitrary(g) % 3),
                7 => Step::Close(u8::arbitrary(g) % 3),
                _ => Step::Advance(u16::arbitrary(g) % 3000),
            }
        }
    }
    fn prop(steps: Vec<Step>) -> TestResult {
        let mut h = Harness::with_gateways(3);
        let mut issued: Vec<(CallId, Duration)> = Vec::new();
        let mut finished: Vec<CallId> = Vec::new();
        let observe = |h: &mut Harness, finished: &mut Vec<CallId>| -> Vec<Action> {
            let actions = h.drain();
            finished.extend(done(&actions).into_iter().map(|d| d.id));
            actions
        };
        for step in steps {
            match step {
                Step::Query => {
                    issued.push((h.core.call(h.now, &ApiCall::GetAllClientCount, None), h.now))
                }
                Step::Send => issued.push((
                    h.core.call(
                        h.now,
                        &ApiCall::SendToAll {
                            message: PhpValue::str("m"),
                            client_id_list: None,
                            exclude: None,
                            raw: false,
                        },
                        None,
                    ),
                    h.now,
                )),
                Step::Reply(i) => {
                    if let Some(&(_, link)) =
                        h.gateway_links.iter().rev().find(|(a, _)| *a == gw(i))
                    {
                        h.core.handle_bytes(h.now, link, &reply(&PhpValue::Int(1)));
                    }
                }
                Step::Close(i) => {
                    if let Some(&(_, link)) =
                        h.gateway_links.iter().rev().find(|(a, _)| *a == gw(i))
                    {
                        h.core.handle_closed(h.now, link);
                    }
                }
                Step::Advance(ms) => {
                    let to = h.now + Duration::from_millis(u64::from(ms));
                    h.advance(to);
                }
            }
            for a in observe(&mut h, &mut finished) {
                // Reconnect at once: the new link is the one replies go to.
                if let Action::Connect {
                    link,
                    peer: Peer::Gateway(addr),
                } = a
                {
                    h.gateway_links.push((addr, link));
                    h.core.handle_connected(h.now, link);
                }
            }
            observe(&mut h, &mut finished);
            // No call outlives its deadline.
            for (id, at) in &issued {
                if h.now >= *at + secs(5.0) && !finished.contains(id) {
                    return TestResult::error(format!(
                        "{id:?} from {at:?} still open at {:?}",
                        h.now
                    ));
                }
            }
        }
        let end = h.now + secs(5.0);
        h.advance(end);
        observe(&mut h, &mut finished);
        let mut ids: Vec<CallId> = issued.iter().map(|(id, _)| *id).collect();
        ids.sort();
        finished.sort();
        TestResult::from_bool(ids == finished)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Step>) -> TestResult);
}

/// Arbitrary bytes from a gateway or the register never panic the core: they become
/// events, replies, ignored lines or a closed link.
#[test]
fn garbage_input_never_panics() {
    fn prop(chunks: Vec<Vec<u8>>, register_lines: Vec<String>, queries: u8) -> bool {
        let mut h = Harness::with_gateways(2);
        for _ in 0..queries % 4 {
            h.core.call(h.now, &ApiCall::GetAllClientIdList, None);
        }
        h.drain();
        let link = h.link(gw(0));
        for chunk in &chunks {
            h.core.handle_bytes(h.now, link, chunk);
            h.drain();
        }
        let register = h.register.unwrap();
        for line in &register_lines {
            h.core.handle_bytes(h.now, register, line.as_bytes());
            h.core.handle_bytes(h.now, register, b"\n");
            h.drain();
        }
        h.advance(secs(60.0));
        h.drain();
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Vec<u8>>, Vec<String>, u8) -> bool);
}

#[test]
fn a_clients_next_event_waits_for_the_end_of_the_previous_one() {
    let mut h = Harness::with_gateways(1);
    let link = h.link(gw(0));
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"1", 1),
    );
    let first = events(&h.drain()).remove(0);
    // The client saw the reply of its first event and spoke again before the first event
    // ended: the gateway still has the old (empty) session. Another client's event follows.
    let mut bytes = BytesMut::new();
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 3, b"", b"2", 1));
    bytes.put_slice(&event_frame(gw(0), Command::OnMessage, 9, b"", b"x", 1));
    h.core.handle_bytes(h.now, link, &bytes);
    assert!(
        events(&h.drain()).is_empty(),
        "held behind the running event, in link order"
    );
    // The first event ends with a changed session: written back, then the held event's
    // session is found stale and reloaded before it runs.
    let new = map(vec![(PhpKey::from_bytes(b"k"), PhpValue::Int(1))]);
    h.core
        .end_event(h.now, &first.client, first.kind, &PhpValue::Null, &new)
        .unwrap();
    let sent = transmits(&h.drain());
    let cmds: Vec<u8> = sent.iter().map(|(_, f)| cmd_of(f)).collect();
    assert_eq!(cmds, vec![204, 203], "write-back, then the reload");
    h.core.handle_bytes(h.now, link, &reply(&new));
    let evs = events(&h.drain());
    let bodies: Vec<&PhpValue> = evs.iter().map(|e| &e.body).collect();
    assert_eq!(bodies, vec![&PhpValue::str("2"), &PhpValue::str("x")]);
    assert_eq!(
        evs[0].client.session, new,
        "the session the first event wrote"
    );
}

#[test]
fn events_held_behind_a_running_one_are_bounded() {
    let mut config = Harness::config();
    config.parked_events_max = 2;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    for body in [&b"1"[..], b"2", b"3"] {
        h.core.handle_bytes(
            h.now,
            link,
            &event_frame(gw(0), Command::OnMessage, 3, b"", body, 1),
        );
    }
    assert_eq!(events(&h.drain()).len(), 1, "one running, two held");
    h.core.handle_bytes(
        h.now,
        link,
        &event_frame(gw(0), Command::OnMessage, 3, b"", b"4", 1),
    );
    let bodies: Vec<PhpValue> = events(&h.drain()).into_iter().map(|e| e.body).collect();
    assert_eq!(
        bodies,
        vec![PhpValue::str("2")],
        "over the bound the head goes out as it is"
    );
}

// ---- hardening: size limits, pending-reply bound, event room ------------------------

const GW0: &str = "10.0.0.5:2900";

fn gw0() -> GatewayAddr {
    GW0.parse().unwrap()
}

/// A call over the gateway's package size is refused before anything is sent: a
/// bool-send returns false, a session call fails with `TooLarge`, a session write-back
/// too; the gateway would otherwise close the whole link on the frame.
#[test]
fn frames_over_the_package_size_are_refused_unsent() {
    let mut config = Harness::config();
    config.package_size_max = 1000;
    let (mut h, _link) = Harness::linked_to_one_gateway(config);
    let client = Bytes::from_static(b"0a0000050b5400000001");
    h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: client.clone(),
            message: PhpValue::Str(Bytes::from(vec![b'x'; 2000])),
            raw: false,
        },
        None,
    );
    let a = h.drain();
    assert!(transmits(&a).is_empty(), "nothing sent: {a:?}");
    assert_eq!(done(&a)[0].result, Ok(PhpValue::Bool(false)));
    let big = map(vec![(
        PhpKey::from_bytes(b"k"),
        PhpValue::Str(Bytes::from(vec![b'y'; 2000])),
    )]);
    h.core.call(
        h.now,
        &ApiCall::SetSession {
            client_id: client.clone(),
            session: big.clone(),
        },
        None,
    );
    let a = h.drain();
    assert!(transmits(&a).is_empty(), "nothing sent: {a:?}");
    assert!(
        matches!(
            done(&a)[0].result,
            Err(ApiError::TooLarge { max: 1000, .. })
        ),
        "{a:?}"
    );
    let current = CurrentClient {
        client_id: client,
        gateway: gw0(),
        connection_id: 1,
        session: PhpValue::Null,
    };
    let outcome = h.core.end_event(
        h.now,
        &current,
        ClientEventKind::Message,
        &PhpValue::Null,
        &big,
    );
    assert!(matches!(outcome, Err(ApiError::TooLarge { .. })));
    assert!(transmits(&h.drain()).is_empty());
    assert_eq!(h.core.stats().frames_too_large, 3);
    // A frame at the limit still goes.
    h.core.call(
        h.now,
        &ApiCall::SendToClient {
            client_id: Bytes::from_static(b"0a0000050b5400000001"),
            message: PhpValue::Str(Bytes::from(vec![b'x'; 100])),
            raw: false,
        },
        None,
    );
    let a = h.drain();
    assert_eq!(transmits(&a).len(), 1);
    assert_eq!(done(&a)[0].result, Ok(PhpValue::Bool(true)));
}

/// A reply larger than the frame limit but within `reply_size_max` (64 MiB, the bound
/// the gateway and the GatewayClient use too) is accepted; a larger one closes the link.
#[test]
fn replies_are_bounded_by_reply_size_max_not_the_frame_limit() {
    let (mut h, link) = Harness::linked_to_one_gateway(Harness::config());
    h.core.call(
        h.now,
        &ApiCall::GetAllClientSessions {
            group: Bytes::new(),
        },
        None,
    );
    h.drain();
    // An 11 MiB string reply: over the 10 MiB package size.
    let text = vec![b'z'; 11 << 20];
    let payload = serialize(&PhpValue::Str(Bytes::from(text)));
    let mut record = BytesMut::new();
    record.put_u32(payload.len() as u32);
    record.put_slice(&payload);
    h.core.handle_bytes(h.now, link, &record);
    let a = h.drain();
    assert!(
        !a.iter().any(|a| matches!(a, Action::Close { .. })),
        "link kept"
    );
    assert_eq!(done(&a).len(), 1);
    assert_eq!(h.core.stats().protocol_errors, 0);

    let mut config = Harness::config();
    config.reply_size_max = 100;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    let mut record = BytesMut::new();
    record.put_u32(101);
    record.put_u8(b's');
    h.core.handle_bytes(h.now, link, &record);
    let a = h.drain();
    assert!(a.iter().any(|a| matches!(a, Action::Close { .. })), "{a:?}");
    assert_eq!(
        done(&a)[0].result,
        Err(ApiError::Timeout { missing: 1 }),
        "the pending call fails with the link"
    );
}

/// At most `pending_replies_max` replies are awaited per link: a query beyond fails at
/// once with `Busy` (counted), nothing is sent for it, and the link's replies stay
/// aligned with the calls that were sent.
#[test]
fn awaited_replies_per_link_are_bounded() {
    let mut config = Harness::config();
    config.pending_replies_max = 2;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    let first = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let second = h.core.call(h.now, &ApiCall::GetAllUidCount, None);
    let a = h.drain();
    assert_eq!(transmits(&a).len(), 2);
    assert!(done(&a).is_empty());
    let third = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    let a = h.drain();
    assert!(transmits(&a).is_empty(), "the refused query is not sent");
    let d = done(&a);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].id, third);
    assert_eq!(d[0].result, Err(ApiError::Busy { max: 2 }));
    assert_eq!(h.core.stats().calls_refused_busy, 1);
    // The two replies go to the two calls that were sent, in order.
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&reply(&PhpValue::Int(5)));
    bytes.extend_from_slice(&reply(&PhpValue::Array(PhpArray::new())));
    h.core.handle_bytes(h.now, link, &bytes);
    let d = done(&h.drain());
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0].id, d[0].result.clone()),
        (first, Ok(PhpValue::Int(5)))
    );
    assert_eq!(d[1].id, second);
    // Room again: a query goes out.
    h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    assert_eq!(transmits(&h.drain()).len(), 1);
}

/// Events beyond the driver's room are held in order while replies keep being handled;
/// room given back releases them; held bytes at the bound pause input.
#[test]
fn events_beyond_the_room_are_held_and_replies_still_flow() {
    let mut config = Harness::config();
    config.held_events_bytes_max = 2000;
    let (mut h, link) = Harness::linked_to_one_gateway(config);
    h.core.set_event_room(2);
    let call = h.core.call(h.now, &ApiCall::GetAllClientCount, None);
    h.drain();
    let mut bytes = BytesMut::new();
    for cid in 1..=5 {
        bytes.extend_from_slice(&event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1));
    }
    bytes.extend_from_slice(&reply(&PhpValue::Int(9)));
    h.core.handle_bytes(h.now, link, &bytes);
    let a = h.drain();
    let e = events(&a);
    assert_eq!(
        e.iter().map(|e| e.client.connection_id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let d = done(&a);
    assert_eq!((d[0].id, d[0].result.clone()), (call, Ok(PhpValue::Int(9))));
    assert_eq!(h.core.held_events().0, 3);
    assert!(!h.core.input_paused());
    // More events while no room: held until the bound pauses input.
    let mut cid = 6;
    while !h.core.input_paused() {
        let f = event_frame(gw0(), Command::OnMessage, cid, b"", b"m", 1);
        h.core.handle_bytes(h.now, link, &f);
        assert!(events(&h.drain()).is_empty());
        cid += 1;
        assert!(cid < 100, "the bound holds");
    }
    let (held, bytes_held) = h.core.held_events();
    assert!(
        bytes_held >= 2000 && held == cid as usize - 3,
        "{held} {bytes_held}"
    );
    // Room given back: the held events go out oldest first and input resumes.
    h.core.set_event_room(1000);
    let e = events(&h.drain());
    let ids: Vec<u32> = e.iter().map(|e| e.client.connection_id).collect();
    assert_eq!(ids, (3..cid).collect::<Vec<_>>());
    assert!(!h.core.input_paused());
    assert_eq!(h.core.held_events(), (0, 0));
}
