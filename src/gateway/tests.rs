//! Unit tests of [`GatewayCore`] driven through its public inputs with a fake clock, in
//! the style of quinn-proto's test harness. Every quirk of spec section 9 that concerns
//! the gateway has a test whose name states the decision.

use std::time::Duration;

use bytes::Bytes;
use quickcheck::{Arbitrary, Gen, QuickCheck};

use super::wire;
use super::*;
use crate::protocol::frame::{
    Command, Frame, FLAG_BINARY, FLAG_BODY_IS_SCALAR, FLAG_NOT_CALL_ENCODE,
};

const S: u8 = FLAG_BODY_IS_SCALAR;

/// A decoded frame as seen by a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    cmd: u8,
    cid: u32,
    flag: u8,
    ext: Bytes,
    body: Bytes,
    client_ip: [u8; 4],
}

fn decode_all(bytes: &[u8]) -> Vec<Seen> {
    let mut buf = bytes::BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = wire::decode_frame(&mut buf, u32::MAX).expect("valid frame") {
        out.push(Seen {
            cmd: f.cmd,
            cid: f.connection_id,
            flag: f.flag,
            ext: f.ext_data,
            body: f.body,
            client_ip: [0; 4],
        });
    }
    out
}

/// A frame as a worker or API caller builds it (zero template, spec 1.1).
fn frame(cmd: u8, cid: u32, flag: u8, ext: &[u8], body: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&((28 + ext.len() + body.len()) as u32).to_be_bytes());
    f.push(cmd);
    f.extend_from_slice(&[0; 12]);
    f.extend_from_slice(&cid.to_be_bytes());
    f.push(flag);
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(&(ext.len() as u32).to_be_bytes());
    f.extend_from_slice(ext);
    f.extend_from_slice(body);
    f
}

fn ws_client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [7u8, 1, 9, 3];
    let mut out = vec![0x80 | opcode];
    if payload.len() <= 125 {
        out.push(0x80 | payload.len() as u8);
    } else {
        out.push(0x80 | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn ws_text(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    if payload.len() <= 125 {
        out.push(payload.len() as u8);
    } else {
        out.push(126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

const HANDSHAKE: &[u8] =
    b"GET / HTTP/1.1\r\nHost: h\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

struct Gw {
    core: GatewayCore,
    now: Duration,
    /// Report every transmit flushed at once (a fast network).
    auto_flush: bool,
}

fn config() -> GatewayConfig {
    GatewayConfig::new("10.0.0.5".parse().unwrap(), 2900, 8282)
}

impl Gw {
    fn new(config: GatewayConfig) -> Gw {
        let now = Duration::from_secs(1000);
        Gw {
            core: GatewayCore::new(config, now),
            now,
            auto_flush: true,
        }
    }

    /// A websocket gateway with one worker registered.
    fn with_worker() -> (Gw, LinkId) {
        let mut gw = Gw::new(config());
        let w = gw.worker("10.0.0.9:40000", "BW:0");
        (gw, w)
    }

    fn drain(&mut self) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(a) = self.core.poll_action() {
            if self.auto_flush {
                match &a {
                    Action::Transmit {
                        to: Target::Link(l),
                        bytes,
                    } => self.core.handle_link_flushed(self.now, *l, bytes.len()),
                    Action::Transmit {
                        to: Target::Client(c),
                        bytes,
                    } => self.core.handle_client_flushed(self.now, *c, bytes.len()),
                    _ => {}
                }
            }
            out.push(a);
        }
        self.core.check_invariants();
        out
    }

    fn link(&mut self, peer: &str) -> LinkId {
        let l = self
            .core
            .handle_link_connected(self.now, peer.parse().unwrap())
            .unwrap();
        assert!(self.drain().is_empty());
        l
    }

    fn worker(&mut self, peer: &str, key: &str) -> LinkId {
        let l = self.link(peer);
        let secret = String::from_utf8(self.core.config().secret_key.to_vec()).unwrap();
        let body = format!("{{\"worker_key\":\"{key}\",\"secret_key\":\"{secret}\"}}");
        self.send(l, &frame(200, 0, S, b"", body.as_bytes()));
        l
    }

    fn send(&mut self, link: LinkId, bytes: &[u8]) -> Vec<Action> {
        self.core.handle_link_bytes(self.now, link, bytes);
        self.drain()
    }

    fn cmd(
        &mut self,
        link: LinkId,
        cmd: Command,
        cid: u32,
        flag: u8,
        ext: &[u8],
        body: &[u8],
    ) -> Vec<Action> {
        self.send(link, &frame(cmd as u8, cid, flag, ext, body))
    }

    /// Runs a query and returns the reply payload (checking the length prefix).
    fn query(&mut self, link: LinkId, cmd: Command, cid: u32, ext: &[u8]) -> Vec<u8> {
        let actions = self.cmd(link, cmd, cid, S, ext, b"");
        let replies = link_bytes(&actions, link);
        assert_eq!(replies.len(), 1, "one reply per query: {actions:?}");
        let r = &replies[0];
        let n = u32::from_be_bytes([r[0], r[1], r[2], r[3]]) as usize;
        assert_eq!(n, r.len() - 4, "reply length prefix");
        r[4..].to_vec()
    }

    /// A websocket client that completed its handshake.
    fn client(&mut self, peer: &str) -> ConnectionId {
        let id = self
            .core
            .handle_client_connected(self.now, peer.parse().unwrap())
            .unwrap();
        self.drain();
        if self.core.config().protocol == PublicProtocol::Websocket {
            self.core.handle_client_bytes(self.now, id, HANDSHAKE);
            self.drain();
        }
        id
    }

    fn client_sends(&mut self, id: ConnectionId, bytes: &[u8]) -> Vec<Action> {
        self.core.handle_client_bytes(self.now, id, bytes);
        self.drain()
    }

    fn advance(&mut self, by: Duration) -> Vec<Action> {
        self.now += by;
        self.core.handle_timeout(self.now);
        self.drain()
    }
}

fn client_bytes(actions: &[Action], id: ConnectionId) -> Vec<Bytes> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transmit {
                to: Target::Client(c),
                bytes,
            } if *c == id => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn link_bytes(actions: &[Action], link: LinkId) -> Vec<Bytes> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transmit {
                to: Target::Link(l),
                bytes,
            } if *l == link => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn link_frames(actions: &[Action], link: LinkId) -> Vec<Seen> {
    link_bytes(actions, link)
        .iter()
        .flat_map(|b| {
            let mut seen = decode_all(b);
            for s in &mut seen {
                s.client_ip.copy_from_slice(&b[11..15]);
            }
            seen
        })
        .collect()
}

fn closes(actions: &[Action]) -> Vec<(ConnectionId, bool, CloseReason)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CloseClient {
                id,
                after_flush,
                reason,
            } => Some((*id, *after_flush, *reason)),
            _ => None,
        })
        .collect()
}

fn link_closes(actions: &[Action]) -> Vec<LinkId> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::CloseLink { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn ser(v: &crate::protocol::php::PhpValue) -> Vec<u8> {
    wire::serialize(v)
}

// ------------------------------------------------------------------------ events

#[test]
fn on_connect_is_sent_at_accept_before_the_websocket_handshake_quirk_26() {
    let (mut gw, w) = Gw::with_worker();
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
        .unwrap();
    let actions = gw.drain();
    let frames = link_frames(&actions, w);
    assert_eq!(frames.len(), 1);
    assert_eq!((frames[0].cmd, frames[0].cid, frames[0].flag), (1, id.0, S));
    assert_eq!(frames[0].client_ip, [203, 0, 113, 7]);
    // A worker sends before the handshake: queued, then flushed right after the 101.
    let early = gw.cmd(w, Command::SendToOne, id.0, S, b"", b"early");
    assert!(
        client_bytes(&early, id).is_empty(),
        "nothing before the handshake"
    );
    let actions = gw.client_sends(id, HANDSHAKE);
    let frames = link_frames(&actions, w);
    assert_eq!(frames[0].cmd, Command::OnWebsocketConnect as u8);
    let writes = client_bytes(&actions, id);
    assert!(writes[0].starts_with(b"HTTP/1.1 101 Switching Protocol"));
    assert_eq!(writes[1].to_vec(), ws_text(b"early"));
    assert_eq!(writes.len(), 2);
    // ON_WEBSOCKET_CONNECT is queued for the worker before the 101 is written.
    let pos_ws = actions.iter().position(|a| {
        matches!(
            a,
            Action::Transmit {
                to: Target::Link(_),
                ..
            }
        )
    });
    let pos_101 = actions.iter().position(|a| {
        matches!(
            a,
            Action::Transmit {
                to: Target::Client(_),
                ..
            }
        )
    });
    assert!(pos_ws < pos_101);
}

#[test]
fn on_message_carries_session_and_sets_flag_binary_for_binary_messages() {
    let (mut gw, w) = Gw::with_worker();
    let id = gw.client("203.0.113.7:5000");
    gw.cmd(
        w,
        Command::SetSession,
        id.0,
        S,
        b"a:1:{s:1:\"x\";i:1;}",
        b"",
    );
    let text = link_frames(&gw.client_sends(id, &ws_client_frame(1, b"hi")), w);
    assert_eq!(text.len(), 1);
    assert_eq!((text[0].cmd, text[0].flag), (3, S));
    assert_eq!(&text[0].ext[..], b"a:1:{s:1:\"x\";i:1;}");
    assert_eq!(&text[0].body[..], b"hi");
    let binary = link_frames(&gw.client_sends(id, &ws_client_frame(2, &[0, 255])), w);
    assert_eq!(binary[0].flag, S | FLAG_BINARY);
    assert_eq!(&binary[0].body[..], &[0, 255]);
}

#[test]
fn split_reads_give_the_same_events_as_whole_reads() {
    let (mut gw, w) = Gw::with_worker();
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
        .unwrap();
    gw.drain();
    let mut wire = HANDSHAKE.to_vec();
    wire.extend(ws_client_frame(1, b"one"));
    wire.extend(ws_client_frame(1, b"two"));
    let mut frames = Vec::new();
    for b in &wire {
        frames.extend(link_frames(&gw.client_sends(id, &[*b]), w));
    }
    let bodies: Vec<(u8, &[u8])> = frames.iter().map(|f| (f.cmd, &f.body[..])).collect();
    assert_eq!(bodies[1..], [(3, &b"one"[..]), (3, &b"two"[..])]);
    assert_eq!(bodies[0].0, Command::OnWebsocketConnect as u8);
}

#[test]
fn ipv6_client_gets_client_ip_zero_quirk_19() {
    let (mut gw, w) = Gw::with_worker();
    gw.core
        .handle_client_connected(gw.now, "[2001:db8::1]:5000".parse().unwrap())
        .unwrap();
    let frames = link_frames(&gw.drain(), w);
    assert_eq!(frames[0].client_ip, [0, 0, 0, 0]);
    // Decision: an IPv4-mapped address from a dual-stack listener is an IPv4 client.
    gw.core
        .handle_client_connected(gw.now, "[::ffff:198.51.100.4]:5000".parse().unwrap())
        .unwrap();
    let frames = link_frames(&gw.drain(), w);
    assert_eq!(frames[0].client_ip, [198, 51, 100, 4]);
}

#[test]
fn every_close_sends_on_close_with_the_session() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::SetSession, a.0, S, b"a:0:{}", b"");
    gw.core.handle_client_closed(gw.now, a);
    let frames = link_frames(&gw.drain(), w);
    assert_eq!(
        (frames[0].cmd, frames[0].cid, &frames[0].ext[..]),
        (4, a.0, &b"a:0:{}"[..])
    );
    assert_eq!(gw.core.client_count(), 0);
}

#[test]
fn websocket_close_frame_is_answered_and_closes_after_flush() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.client_sends(a, &ws_client_frame(8, &[0x03, 0xe8]));
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(&[0x88, 0x02, 0x03, 0xe8])]
    );
    assert_eq!(
        closes(&actions),
        vec![(a, true, CloseReason::ProtocolClose)]
    );
    assert_eq!(link_frames(&actions, w)[0].cmd, 4);
    // The driver's report of the finished close is not a second close.
    gw.core.handle_client_closed(gw.now, a);
    assert!(gw.drain().is_empty());
}

// ------------------------------------------------------------------------ delivery

#[test]
fn send_to_one_encodes_for_the_protocol_and_ignores_unknown_ids() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", b"hello");
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from(ws_text(b"hello"))]
    );
    assert!(gw.cmd(w, Command::SendToOne, 999, S, b"", b"x").is_empty());
}

#[test]
fn raw_flag_writes_the_body_unencoded_quirk_13() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(
        w,
        Command::SendToOne,
        a.0,
        S | FLAG_NOT_CALL_ENCODE,
        b"",
        b"\x81\x01x",
    );
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(b"\x81\x01x")]
    );
}

#[test]
fn flag_binary_sends_a_binary_websocket_frame() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::SendToOne, a.0, S | FLAG_BINARY, b"", &[1, 2]);
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(&[0x82, 2, 1, 2])]
    );
}

#[test]
fn non_string_bodies_are_converted_never_stopping_the_gateway() {
    use crate::protocol::php::{PhpArray, PhpKey, PhpValue};
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let mut array = PhpArray::new();
    array.insert(PhpKey::from_bytes(b"k"), PhpValue::str("v/é"));
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (ser(&PhpValue::Array(array)), b"{\"k\":\"v\\/\xc3\xa9\"}"),
        (b"N;".to_vec(), b"null"),
        // The original's websocket encoder throws on these and stops the whole process;
        // we send their PHP string form (spec 1.2).
        (b"i:42;".to_vec(), b"42"),
        (b"d:0.5;".to_vec(), b"0.5"),
        (b"b:1;".to_vec(), b"1"),
        (b"b:0;".to_vec(), b""),
        (b"not serialized".to_vec(), b""),
        (b"s:3:\"abc\";".to_vec(), b"abc"),
    ];
    for (body, expected) in cases {
        let actions = gw.cmd(w, Command::SendToOne, a.0, 0, b"", &body);
        assert_eq!(
            client_bytes(&actions, a),
            vec![Bytes::from(ws_text(expected))],
            "body {body:?}"
        );
    }
    assert_eq!(gw.core.stats().client_messages_unencodable, 0);
    // An array that json_encode refuses (invalid UTF-8) is dropped and counted.
    let mut bad = PhpArray::new();
    bad.insert(PhpKey::Int(0), PhpValue::Str(Bytes::from_static(b"\xff")));
    let actions = gw.cmd(
        w,
        Command::SendToOne,
        a.0,
        0,
        b"",
        &ser(&PhpValue::Array(bad)),
    );
    assert!(client_bytes(&actions, a).is_empty());
    assert_eq!(gw.core.stats().client_messages_unencodable, 1);
}

#[test]
fn text_protocol_appends_newline_and_strips_trailing_cr_quirk_22() {
    let mut c = config();
    c.protocol = PublicProtocol::Text;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    let frames = link_frames(&gw.client_sends(a, b"line\r\r\n"), w);
    assert_eq!(&frames[0].body[..], b"line");
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", b"out");
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(b"out\n")]
    );
}

#[test]
fn kick_with_null_body_closes_silently_and_with_empty_string_sends_an_empty_frame_quirk_12() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    let actions = gw.cmd(w, Command::Kick, a.0, 0, b"", b"N;");
    assert!(client_bytes(&actions, a).is_empty());
    assert_eq!(closes(&actions), vec![(a, true, CloseReason::Kicked)]);
    assert_eq!(link_frames(&actions, w)[0].cmd, 4, "ON_CLOSE follows");
    let actions = gw.cmd(w, Command::Kick, b.0, S, b"", b"");
    assert_eq!(
        client_bytes(&actions, b),
        vec![Bytes::from_static(&[0x81, 0x00])]
    );
    assert_eq!(closes(&actions), vec![(b, true, CloseReason::Kicked)]);
}

#[test]
fn kick_message_is_always_protocol_encoded_even_with_the_raw_flag_quirk_13() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::Kick, a.0, S | FLAG_NOT_CALL_ENCODE, b"", b"bye");
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from(ws_text(b"bye"))]
    );
}

#[test]
fn destroy_closes_at_once_and_frees_the_id_only_after_the_driver_reports() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::Destroy, a.0, S, b"", b"");
    assert_eq!(closes(&actions), vec![(a, false, CloseReason::Destroyed)]);
    assert_eq!(link_frames(&actions, w)[0].cmd, 4);
    assert_eq!(gw.query(w, Command::IsOnline, a.0, b""), b"i:0;");
    // The id stays reserved while the driver still holds the socket.
    gw.core.set_connection_id_recorder(a.0 - 1);
    let b = gw.client("203.0.113.8:5000");
    assert_ne!(b, a);
    gw.core.handle_client_closed(gw.now, a);
    gw.core.set_connection_id_recorder(a.0 - 1);
    let c = gw.client("203.0.113.9:5000");
    assert_eq!(c, a);
}

#[test]
fn a_broadcast_is_encoded_once_and_shared_quirk_14() {
    let (mut gw, w) = Gw::with_worker();
    let ids: Vec<ConnectionId> = (0..3)
        .map(|i| gw.client(&format!("203.0.113.{i}:5000")))
        .collect();
    let actions = gw.cmd(w, Command::SendToAll, 0, S, b"", b"all");
    let writes: Vec<Bytes> = ids
        .iter()
        .flat_map(|id| client_bytes(&actions, *id))
        .collect();
    assert_eq!(writes.len(), 3);
    assert!(
        writes.iter().all(|b| b.as_ptr() == writes[0].as_ptr()),
        "same buffer"
    );
}

#[test]
fn send_to_all_excludes_by_key_and_a_list_excludes_nobody_quirk_3() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    let who = |actions: &[Action]| -> Vec<u32> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Transmit {
                    to: Target::Client(c),
                    ..
                } => Some(c.0),
                _ => None,
            })
            .collect()
    };
    let ex = format!("{{\"exclude\":{{\"{}\":{}}}}}", a.0, a.0);
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, ex.as_bytes(), b"m")),
        vec![b.0]
    );
    let list = format!("{{\"exclude\":[{}]}}", a.0);
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, list.as_bytes(), b"m")),
        vec![a.0, b.0]
    );
    // `connections` uses values, in JSON order; unknown ids are skipped.
    let conns = format!(
        "{{\"connections\":{{\"x\":{},\"y\":999,\"z\":\"{}\"}}}}",
        b.0, a.0
    );
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, conns.as_bytes(), b"m")),
        vec![b.0, a.0]
    );
    // Decision: invalid JSON decodes to null and reaches everybody, like the original.
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, b"{bad", b"m")),
        vec![a.0, b.0]
    );
    // `"connections": null` is not set for PHP's isset(): everybody.
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, b"{\"connections\":null}", b"m")),
        vec![a.0, b.0]
    );
    // An exclude entry whose value is null is not set either.
    let null_ex = format!("{{\"exclude\":{{\"{}\":null}}}}", a.0);
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, null_ex.as_bytes(), b"m")),
        vec![a.0, b.0]
    );
}

#[test]
fn send_to_uid_delivers_duplicates_and_finds_numeric_uids_quirks_2_and_4() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"1002", b"");
    let actions = gw.cmd(
        w,
        Command::SendToUid,
        0,
        S,
        b"[1002,\"1002\",\"nobody\"]",
        b"m",
    );
    assert_eq!(client_bytes(&actions, a).len(), 2);
    // Invalid JSON: nothing (quirk 24).
    assert!(gw
        .cmd(w, Command::SendToUid, 0, S, b"nope", b"m")
        .is_empty());
}

#[test]
fn send_to_group_delivers_overlaps_twice_and_excludes_by_key() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g1", b"");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g2", b"");
    gw.cmd(w, Command::JoinGroup, b.0, S, b"g1", b"");
    let actions = gw.cmd(
        w,
        Command::SendToGroup,
        0,
        S,
        b"{\"group\":[\"g1\",\"g2\"],\"exclude\":null}",
        b"m",
    );
    let order: Vec<u32> = actions
        .iter()
        .filter_map(|x| match x {
            Action::Transmit {
                to: Target::Client(c),
                ..
            } => Some(c.0),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![a.0, b.0, a.0]);
    let ex = format!("{{\"group\":[\"g1\"],\"exclude\":{{\"{}\":{}}}}}", a.0, a.0);
    let actions = gw.cmd(w, Command::SendToGroup, 0, S, ex.as_bytes(), b"m");
    assert_eq!(
        (
            client_bytes(&actions, a).len(),
            client_bytes(&actions, b).len()
        ),
        (0, 1)
    );
}

// ------------------------------------------------------------------------ uid and groups

#[test]
fn bind_uid_rejects_php_empty_uids_and_rebinding_moves_quirk_1() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"0", b"");
    gw.cmd(w, Command::BindUid, a.0, S, b"", b"");
    assert_eq!(gw.core.snapshot().clients[0].uid, None);
    gw.cmd(w, Command::BindUid, a.0, S, b"u1", b"");
    gw.cmd(w, Command::BindUid, a.0, S, b"u2", b"");
    assert_eq!(gw.query(w, Command::GetClientIdByUid, 0, b"u1"), b"a:0:{}");
    assert_eq!(
        gw.query(w, Command::GetClientIdByUid, 0, b"u2"),
        format!("a:1:{{i:0;i:{};}}", a.0).as_bytes()
    );
}

#[test]
fn unbind_uid_ignores_the_uid_argument_quirk_5() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"u1", b"");
    gw.cmd(w, Command::UnbindUid, a.0, S, b"another", b"");
    assert_eq!(gw.core.snapshot().clients[0].uid, None);
    assert!(gw.core.snapshot().uid_index.is_empty());
}

#[test]
fn groups_are_null_until_joined_and_empty_after_leaving_quirk_8() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let sel = br#"{"fields":["groups","nope"],"where":[]}"#;
    assert_eq!(
        gw.query(w, Command::Select, 0, sel),
        format!("a:1:{{i:{};a:2:{{s:6:\"groups\";N;s:4:\"nope\";N;}}}}", a.0).as_bytes()
    );
    gw.cmd(w, Command::JoinGroup, a.0, S, b"0", b"");
    assert_eq!(
        gw.core.snapshot().clients[0].groups,
        None,
        "group \"0\" is PHP-empty"
    );
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g", b"");
    gw.cmd(w, Command::LeaveGroup, a.0, S, b"g", b"");
    assert_eq!(
        gw.query(w, Command::Select, 0, sel),
        format!(
            "a:1:{{i:{};a:2:{{s:6:\"groups\";a:0:{{}}s:4:\"nope\";N;}}}}",
            a.0
        )
        .as_bytes()
    );
    assert!(gw.core.snapshot().group_index.is_empty());
}

#[test]
fn ungroup_removes_the_group_from_every_member() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    for id in [a, b] {
        gw.cmd(w, Command::JoinGroup, id.0, S, b"7", b"");
        gw.cmd(w, Command::JoinGroup, id.0, S, b"x", b"");
    }
    gw.cmd(w, Command::Ungroup, 0, S, b"7", b"");
    let snap = gw.core.snapshot();
    assert_eq!(snap.group_index.len(), 1);
    assert_eq!(snap.clients[1].groups, Some(vec![Bytes::from_static(b"x")]));
    assert_eq!(
        gw.query(w, Command::GetGroupIdList, 0, b""),
        b"a:1:{i:0;s:1:\"x\";}"
    );
}

#[test]
fn closing_a_client_cleans_every_index() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"u", b"");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g", b"");
    gw.core.handle_client_closed(gw.now, a);
    gw.drain();
    let snap = gw.core.snapshot();
    assert!(snap.uid_index.is_empty() && snap.group_index.is_empty() && snap.clients.is_empty());
}

// ------------------------------------------------------------------------ queries

#[test]
fn queries_use_connection_order_and_php_key_normalisation_quirk_2() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    gw.cmd(w, Command::SetSession, b.0, S, b"a:0:{}", b"");
    assert_eq!(
        gw.query(w, Command::GetAllClientSessions, 0, b""),
        format!("a:2:{{i:{};s:0:\"\";i:{};s:6:\"a:0:{{}}\";}}", a.0, b.0).as_bytes()
    );
    gw.cmd(w, Command::JoinGroup, b.0, S, b"123", b"");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"0123", b"");
    assert_eq!(
        gw.query(w, Command::GetGroupIdList, 0, b""),
        b"a:2:{i:0;i:123;i:1;s:4:\"0123\";}"
    );
    assert_eq!(
        gw.query(
            w,
            Command::BatchGetClientCountByGroup,
            0,
            b"[123,\"0123\",\"no\"]"
        ),
        b"a:3:{i:123;i:1;s:4:\"0123\";i:1;s:2:\"no\";i:0;}"
    );
    assert_eq!(gw.query(w, Command::IsOnline, a.0, b""), b"i:1;");
}

#[test]
fn count_by_group_with_empty_group_counts_all_clients_quirk_7() {
    let (mut gw, w) = Gw::with_worker();
    gw.client("203.0.113.7:5000");
    gw.client("203.0.113.8:5000");
    assert_eq!(gw.query(w, Command::GetClientCountByGroup, 0, b""), b"i:2;");
    // "0" is not "": it names a group (which can never exist).
    assert_eq!(
        gw.query(w, Command::GetClientCountByGroup, 0, b"0"),
        b"i:0;"
    );
}

#[test]
fn get_session_is_null_unknown_empty_array_when_falsy_else_verbatim_quirk_7() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    assert_eq!(gw.query(w, Command::GetSessionByClientId, 999, b""), b"N;");
    assert_eq!(
        gw.query(w, Command::GetSessionByClientId, a.0, b""),
        b"a:0:{}"
    );
    // Decision: a stored "0" is PHP-falsy, so it reads back as a:0:{} like the original.
    gw.cmd(w, Command::SetSession, a.0, S, b"0", b"");
    assert_eq!(
        gw.query(w, Command::GetSessionByClientId, a.0, b""),
        b"a:0:{}"
    );
    gw.cmd(w, Command::SetSession, a.0, S, b"junk", b"");
    assert_eq!(
        gw.query(w, Command::GetSessionByClientId, a.0, b""),
        b"junk"
    );
}

#[test]
fn update_session_stores_verbatim_when_empty_merges_otherwise_and_ignores_non_arrays_quirk_6() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(
        w,
        Command::UpdateSession,
        a.0,
        S,
        b"a:1:{s:1:\"a\";i:1;}",
        b"",
    );
    gw.cmd(
        w,
        Command::UpdateSession,
        a.0,
        S,
        b"a:1:{s:1:\"b\";i:2;}",
        b"",
    );
    assert_eq!(
        &gw.core.snapshot().clients[0].session[..],
        b"a:2:{s:1:\"a\";i:1;s:1:\"b\";i:2;}"
    );
    // A non-array patch: the original throws (nothing stored); we ignore it.
    gw.cmd(w, Command::UpdateSession, a.0, S, b"i:5;", b"");
    assert_eq!(
        &gw.core.snapshot().clients[0].session[..],
        b"a:2:{s:1:\"a\";i:1;s:1:\"b\";i:2;}"
    );
    gw.cmd(w, Command::SetSession, a.0, S, b"s:1:\"x\";", b"");
    gw.cmd(w, Command::UpdateSession, a.0, S, b"a:0:{}", b"");
    assert_eq!(&gw.core.snapshot().clients[0].session[..], b"s:1:\"x\";");
}

#[test]
fn select_unions_conditions_without_duplicates() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    gw.cmd(w, Command::JoinGroup, b.0, S, b"g", b"");
    gw.cmd(w, Command::BindUid, a.0, S, b"u", b"");
    gw.cmd(w, Command::BindUid, b.0, S, b"u", b"");
    let q = format!(
        r#"{{"fields":["uid"],"where":{{"groups":["g"],"uid":["u"],"connection_id":[{}],"other":["x"]}}}}"#,
        b.0
    );
    let reply = gw.query(w, Command::Select, 0, q.as_bytes());
    let expected = format!(
        "a:2:{{i:{};a:1:{{s:3:\"uid\";s:1:\"u\";}}i:{};a:1:{{s:3:\"uid\";s:1:\"u\";}}}}",
        b.0, a.0
    );
    assert_eq!(String::from_utf8(reply).unwrap(), expected);
    assert_eq!(gw.query(w, Command::Select, 0, b"nope"), b"a:0:{}");
    assert_eq!(gw.query(w, Command::Select, 0, b"{}"), b"a:0:{}");
}

#[test]
fn batch_queries_with_invalid_json_reply_an_empty_array_quirk_24() {
    let (mut gw, w) = Gw::with_worker();
    assert_eq!(
        gw.query(w, Command::BatchGetClientIdByUid, 0, b"[oops"),
        b"a:0:{}"
    );
    assert_eq!(
        gw.query(w, Command::BatchGetClientCountByGroup, 0, b"7"),
        b"a:0:{}"
    );
}

#[test]
fn unknown_commands_and_ping_are_ignored_and_the_link_kept() {
    let (mut gw, w) = Gw::with_worker();
    assert!(gw.cmd(w, Command::Ping, 0, S, b"", b"").is_empty());
    assert!(gw.send(w, &frame(99, 0, S, b"", b"")).is_empty());
    assert_eq!(gw.core.stats().unknown_commands, 2);
    assert_eq!(gw.query(w, Command::GetClientCountByGroup, 0, b""), b"i:0;");
}

// ------------------------------------------------------------------------ auth

#[test]
fn worker_connect_without_secret_key_is_rejected_even_with_no_secret_quirk_9() {
    let mut gw = Gw::new(config());
    let l = gw.link("10.0.0.9:40000");
    let actions = gw.send(l, &frame(200, 0, S, b"", b"{\"worker_key\":\"BW:0\"}"));
    assert_eq!(link_closes(&actions), vec![l]);
    assert!(gw.core.snapshot().workers.is_empty());
    // An API caller needs no handshake when no secret is configured.
    let api = gw.link("10.0.0.10:40000");
    assert_eq!(
        gw.query(api, Command::GetClientCountByGroup, 0, b""),
        b"i:0;"
    );
}

#[test]
fn with_a_secret_commands_before_auth_close_the_link_and_a_wrong_key_too() {
    let mut c = config();
    c.secret_key = Bytes::from_static(b"s3");
    let mut gw = Gw::new(c);
    let l = gw.link("10.0.0.10:40000");
    assert_eq!(
        link_closes(&gw.cmd(l, Command::GetClientCountByGroup, 0, S, b"", b"")),
        vec![l]
    );
    let l = gw.link("10.0.0.10:40001");
    assert_eq!(
        link_closes(&gw.cmd(
            l,
            Command::GatewayClientConnect,
            0,
            S,
            b"",
            b"{\"secret_key\":1}"
        )),
        vec![l]
    );
    let l = gw.link("10.0.0.10:40002");
    assert!(gw
        .cmd(
            l,
            Command::GatewayClientConnect,
            0,
            S,
            b"",
            b"{\"secret_key\":\"s3\"}"
        )
        .is_empty());
    assert_eq!(gw.query(l, Command::GetClientCountByGroup, 0, b""), b"i:0;");
    assert!(
        gw.core.snapshot().workers.is_empty(),
        "API links never route"
    );
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    assert_eq!(gw.core.snapshot().workers[0].link, w);
    // Bytes from a closed link are ignored.
    assert_eq!(gw.core.link_count(), 2);
}

// ------------------------------------------------------------------------ routing

#[test]
fn no_worker_destroys_the_client_even_on_message_quirk_25() {
    let mut gw = Gw::new(config());
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
        .unwrap();
    assert_eq!(
        closes(&gw.drain()),
        vec![(id, false, CloseReason::NoWorker)]
    );
    // A client whose worker left is destroyed on its next message.
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let b = gw.client("203.0.113.8:5000");
    gw.core.handle_link_closed(gw.now, w);
    gw.drain();
    let actions = gw.client_sends(b, &ws_client_frame(1, b"m"));
    assert_eq!(closes(&actions), vec![(b, false, CloseReason::NoWorker)]);
    assert_eq!(gw.core.stats().clients_without_worker, 2);
}

#[test]
fn least_connections_counts_are_released_on_close_and_rebinding_is_lazy_quirk_11() {
    let mut gw = Gw::new(config());
    let w1 = gw.worker("10.0.0.21:40000", "BW:0");
    let w2 = gw.worker("10.0.0.21:40001", "BW:1");
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    let counts = |gw: &Gw| {
        gw.core
            .snapshot()
            .workers
            .iter()
            .map(|w| w.count)
            .collect::<Vec<_>>()
    };
    assert_eq!(counts(&gw), vec![1, 1]);
    gw.core.handle_client_closed(gw.now, a);
    assert_eq!(link_frames(&gw.drain(), w1)[0].cmd, 4);
    assert_eq!(counts(&gw), vec![0, 1]);
    // w2 leaves: b's ON_CLOSE goes to w1 (count +1 then -1).
    gw.core.handle_link_closed(gw.now, w2);
    gw.core.handle_client_closed(gw.now, b);
    let actions = gw.drain();
    assert_eq!(link_frames(&actions, w1)[0].cid, b.0);
    assert_eq!(counts(&gw), vec![0]);
}

#[test]
fn reregistration_with_pending_output_keeps_the_key_on_the_new_link_fix_of_quirk_10() {
    let mut gw = Gw::new(config());
    gw.auto_flush = false;
    let old = gw.worker("10.0.0.21:40000", "BW:0");
    let _a = gw.client("203.0.113.7:5000"); // output to `old` stays unflushed
    let new = gw.worker("10.0.0.21:40100", "BW:0");
    assert_eq!(gw.core.snapshot().workers[0].link, new);
    gw.core.handle_link_closed(gw.now, old);
    gw.drain();
    assert_eq!(gw.core.snapshot().workers.len(), 1, "the key stays");
    assert_eq!(gw.core.snapshot().workers[0].link, new);
}

#[test]
fn random_routing_is_deterministic_for_a_seed() {
    let run = |seed: u64| {
        let mut c = config();
        c.routing = RoutingMode::Random { seed };
        let mut gw = Gw::new(c);
        for i in 0..4 {
            gw.worker(&format!("10.0.0.{}:40000", 20 + i), "BW:0");
        }
        (0..32)
            .map(|i| {
                gw.client(&format!("203.0.113.{i}:5000"));
                gw.core
                    .snapshot()
                    .clients
                    .last()
                    .unwrap()
                    .worker_key
                    .clone()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
    let keys: std::collections::BTreeSet<_> = run(7).into_iter().collect();
    assert!(keys.len() > 1, "random mode spreads clients");
}

// ------------------------------------------------------------------------ heartbeat and timers

#[test]
fn websocket_pings_do_not_reset_the_heartbeat_quirk_15() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_not_response_limit = 1;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    let mut destroyed_at = None;
    for tick in 1..=6 {
        let pong = gw.client_sends(a, &ws_client_frame(9, b"p"));
        if destroyed_at.is_none() {
            assert_eq!(
                client_bytes(&pong, a),
                vec![Bytes::from_static(&[0x8a, 1, b'p'])]
            );
            assert!(link_frames(&pong, w).is_empty(), "pings are not forwarded");
        }
        let actions = gw.advance(Duration::from_secs(5));
        if !closes(&actions).is_empty() {
            destroyed_at = Some(tick);
        }
    }
    assert_eq!(
        destroyed_at,
        Some(4),
        "destroyed on the (2L+2)-th tick despite pings"
    );
}

#[test]
fn a_late_timeout_runs_one_heartbeat_tick_and_skips_the_missed_ones() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_not_response_limit = 1;
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    let start = gw.now;
    gw.client("203.0.113.7:5000");
    let actions = gw.advance(Duration::from_secs(100));
    assert!(closes(&actions).is_empty(), "one tick, not twenty");
    assert_eq!(gw.core.snapshot().clients[0].ping_count, 0);
    // The grid is kept: the next tick is at start + 105 s.
    assert_eq!(
        gw.core.poll_timeout(),
        Some(start + Duration::from_secs(105))
    );
}

#[test]
fn spurious_timeouts_do_nothing() {
    let mut c = config();
    c.ping_interval = Duration::from_secs(10);
    c.ping_data = Bytes::from_static(b"p");
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    gw.client("203.0.113.7:5000");
    let due = gw.core.poll_timeout().unwrap();
    gw.now = due - Duration::from_millis(1);
    gw.core.handle_timeout(gw.now);
    assert!(gw.drain().is_empty());
    gw.core.handle_timeout(gw.now);
    assert!(gw.drain().is_empty());
}

#[test]
fn workers_get_ping_every_25_s_unless_lan_ip_is_localhost() {
    let (mut gw, w) = Gw::with_worker();
    let api = gw.link("10.0.0.50:1");
    assert!(gw.advance(Duration::from_secs(24)).is_empty());
    let actions = gw.advance(Duration::from_secs(1));
    let frames = link_frames(&actions, w);
    assert_eq!(frames.len(), 1);
    assert_eq!(
        (frames[0].cmd, frames[0].flag, &frames[0].body[..]),
        (201, S, &b""[..])
    );
    assert!(
        link_frames(&actions, api).is_empty(),
        "API links are not pinged"
    );
    let mut c = config();
    c.lan_ip = "127.0.0.1".parse().unwrap();
    let mut gw = Gw::new(c);
    gw.worker("127.0.0.1:40000", "BW:0");
    assert!(gw.advance(Duration::from_secs(60)).is_empty());
    assert_eq!(gw.core.poll_timeout(), None);
}

#[test]
fn register_gets_a_hand_concatenated_gateway_connect_on_every_connection_pings_and_reconnects_quirk_16(
) {
    let mut c = config();
    c.secret_key = Bytes::from_static(b"k");
    c.register_addresses = vec!["10.0.0.1:1236".into(), "127.0.0.1:1236".into()];
    let mut gw = Gw::new(c);
    let first = gw.drain();
    assert_eq!(
        first,
        vec![
            Action::ConnectRegister { index: 0 },
            Action::ConnectRegister { index: 1 }
        ]
    );
    let line = Bytes::from_static(
        b"{\"event\":\"gateway_connect\", \"address\":\"10.0.0.5:2900\", \"secret_key\":\"k\"}\n",
    );
    gw.core.handle_register_connected(gw.now, 0);
    gw.core.handle_register_connected(gw.now, 1);
    assert_eq!(
        gw.drain(),
        vec![
            Action::Transmit {
                to: Target::Register(0),
                bytes: line.clone()
            },
            Action::Transmit {
                to: Target::Register(1),
                bytes: line.clone()
            },
        ]
    );
    // Only the non-local register is pinged (the 25 s worker ping has nobody to go to).
    let actions = gw.advance(Duration::from_secs(25));
    assert_eq!(
        actions,
        vec![Action::Transmit {
            to: Target::Register(0),
            bytes: Bytes::from_static(b"{\"event\":\"ping\"}\n")
        }]
    );
    gw.core.handle_register_closed(gw.now, 0);
    assert!(gw.advance(Duration::from_millis(999)).is_empty());
    assert_eq!(
        gw.advance(Duration::from_millis(1)),
        vec![Action::ConnectRegister { index: 0 }]
    );
    gw.core.handle_register_connected(gw.now, 0);
    assert_eq!(
        gw.drain(),
        vec![Action::Transmit {
            to: Target::Register(0),
            bytes: line
        }]
    );
}

#[test]
fn register_lines_may_be_split_anywhere_and_one_over_the_bound_closes_the_connection() {
    use crate::protocol::register::FROM_REGISTER_LINE_MAX;
    let mut c = config();
    c.register_addresses = vec!["10.0.0.1:1236".into()];
    let mut gw = Gw::new(c);
    gw.drain();
    gw.core.handle_register_connected(gw.now, 0);
    gw.drain();
    // A line of exactly the bound (`\n` included), in pieces: read, nothing to do.
    let mut line = vec![b'x'; FROM_REGISTER_LINE_MAX - 1];
    line.push(b'\n');
    for piece in line.chunks(100_000) {
        gw.core.handle_register_bytes(gw.now, 0, piece);
        assert!(gw.drain().is_empty());
    }
    // One byte more without a `\n`: the connection is closed, later input ignored.
    for piece in vec![b'y'; FROM_REGISTER_LINE_MAX].chunks(100_000) {
        gw.core.handle_register_bytes(gw.now, 0, piece);
    }
    assert_eq!(
        gw.drain(),
        vec![Action::CloseRegister {
            index: 0,
            reason: CloseReason::RegisterLineTooLong
        }]
    );
    gw.core
        .handle_register_bytes(gw.now, 0, &[b'z'; FROM_REGISTER_LINE_MAX]);
    assert!(gw.drain().is_empty());
    // The driver's close report schedules the reconnect; the new connection starts clean.
    gw.core.handle_register_closed(gw.now, 0);
    assert_eq!(
        gw.advance(Duration::from_secs(1)),
        vec![Action::ConnectRegister { index: 0 }]
    );
    gw.core.handle_register_connected(gw.now, 0);
    gw.drain();
    gw.core
        .handle_register_bytes(gw.now, 0, &vec![b'w'; FROM_REGISTER_LINE_MAX - 1]);
    assert!(gw.drain().is_empty());
}

// ------------------------------------------------------------------------ bounds

#[test]
fn client_pending_max_drops_messages_and_keeps_the_client() {
    let mut c = config();
    c.client_pending_max = 100;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    gw.auto_flush = false;
    let big = vec![b'x'; 80];
    assert_eq!(
        client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).len(),
        1
    );
    // 82 bytes pending: under the bound, this one still goes (like workerman)...
    assert_eq!(
        client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).len(),
        1
    );
    // ...164 pending: at the bound, dropped and counted.
    assert!(client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).is_empty());
    assert_eq!(gw.core.stats().client_messages_dropped, 1);
    assert_eq!(gw.query(w, Command::IsOnline, a.0, b""), b"i:1;");
    gw.core.handle_client_flushed(gw.now, a, 164);
    assert_eq!(
        client_bytes(&gw.cmd(w, Command::SendToOne, a.0, S, b"", &big), a).len(),
        1
    );
}

#[test]
fn pending_before_handshake_max_bounds_the_queue() {
    let mut c = config();
    c.pending_before_handshake_max = 10;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:1".parse().unwrap())
        .unwrap();
    gw.drain();
    for _ in 0..3 {
        gw.cmd(w, Command::SendToOne, id.0, S, b"", b"1234");
    }
    assert_eq!(
        gw.core.stats().client_messages_dropped,
        1,
        "12 bytes queued: the third is dropped"
    );
    let writes = client_bytes(&gw.client_sends(id, HANDSHAKE), id);
    assert_eq!(
        writes.len(),
        2,
        "101, then the two queued messages in one write"
    );
    assert_eq!(
        writes[1].to_vec(),
        [ws_text(b"1234"), ws_text(b"1234")].concat()
    );
}

#[test]
fn link_pending_max_drops_events_and_keeps_the_client() {
    let mut c = config();
    c.link_pending_max = 40;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    gw.auto_flush = false;
    let a = gw.client("203.0.113.7:5000"); // ON_CONNECT (28) + ON_WEBSOCKET_CONNECT: over 40
    let actions = gw.client_sends(a, &ws_client_frame(1, b"m"));
    assert!(link_frames(&actions, w).is_empty());
    assert_eq!(gw.core.stats().link_frames_dropped, 1);
    assert_eq!(gw.core.client_count(), 1);
}

#[test]
fn package_size_max_closes_the_connection_that_exceeds_it_quirk_20() {
    let mut c = config();
    c.package_size_max = 128;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.client_sends(a, &ws_client_frame(1, &[b'x'; 129]));
    assert_eq!(
        closes(&actions),
        vec![(a, true, CloseReason::ProtocolError)]
    );
    let actions = gw.send(w, &frame(5, 1, S, b"", &[b'x'; 101]));
    assert_eq!(link_closes(&actions), vec![w]);
    assert!(gw.core.snapshot().workers.is_empty());
}

#[test]
fn malformed_frame_lengths_close_the_link_quirk_18() {
    let (mut gw, _) = Gw::with_worker();
    let l = gw.link("10.0.0.10:1");
    let mut short = frame(11, 0, S, b"", b"");
    short[3] = 27;
    assert_eq!(link_closes(&gw.send(l, &short)), vec![l]);
    let l = gw.link("10.0.0.10:2");
    let mut zero = frame(11, 0, S, b"", b"");
    zero[..4].copy_from_slice(&[0; 4]);
    assert_eq!(
        link_closes(&gw.send(l, &zero)),
        vec![l],
        "0 no longer stalls"
    );
    let l = gw.link("10.0.0.10:3");
    let mut ext = frame(11, 0, S, b"ab", b"");
    ext[27] = 3;
    assert_eq!(link_closes(&gw.send(l, &ext)), vec![l]);
    // Frames after the bad one in the same read are not executed.
    let l = gw.link("10.0.0.10:4");
    let mut wire = short.clone();
    wire.extend(frame(11, 0, S, b"", b""));
    let actions = gw.send(l, &wire);
    assert_eq!(actions.len(), 1);
}

#[test]
fn clients_max_and_links_max_refuse_at_accept() {
    let mut c = config();
    c.clients_max = 2;
    c.links_max = 1;
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    assert_eq!(
        gw.core
            .handle_link_connected(gw.now, "10.0.0.9:1".parse().unwrap()),
        Err(Refused::LinksMax)
    );
    let a = gw.client("203.0.113.7:1");
    gw.client("203.0.113.7:2");
    assert_eq!(
        gw.core
            .handle_client_connected(gw.now, "203.0.113.7:3".parse().unwrap()),
        Err(Refused::ClientsMax)
    );
    assert!(gw.drain().is_empty(), "a refused client reaches no worker");
    // A destroyed client still holds its slot until the driver reports it closed.
    gw.core
        .handle_link_bytes(gw.now, LinkId(1), &frame(8, a.0, S, b"", b""));
    gw.drain();
    assert_eq!(
        gw.core
            .handle_client_connected(gw.now, "203.0.113.7:3".parse().unwrap()),
        Err(Refused::ClientsMax)
    );
    gw.core.handle_client_closed(gw.now, a);
    assert!(gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:3".parse().unwrap())
        .is_ok());
}

#[test]
fn idle_client_state_is_small() {
    // The table entry of an idle websocket client: the struct plus its map slots.
    let size = std::mem::size_of::<super::clients::Client>();
    assert!(size <= 320, "Client is {size} bytes");
}

// ------------------------------------------------------------------------ property

/// One step of a random workload against one gateway.
#[derive(Debug, Clone)]
enum Op {
    Connect,
    Close(u8),
    Message(u8),
    Cmd(u8, u8, u8),
    WorkerUp(u8),
    WorkerDown(u8),
    Tick,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        match u8::arbitrary(g) % 10 {
            0 | 1 => Op::Connect,
            2 => Op::Close(u8::arbitrary(g)),
            3 => Op::Message(u8::arbitrary(g)),
            4..=6 => Op::Cmd(u8::arbitrary(g), u8::arbitrary(g), u8::arbitrary(g)),
            7 => Op::WorkerUp(u8::arbitrary(g) % 3),
            8 => Op::WorkerDown(u8::arbitrary(g) % 3),
            _ => Op::Tick,
        }
    }
}

/// Random commands with random targets and names never panic, keep every index
/// consistent with the clients (checked after every input by `Gw::drain`), and the core
/// lists exactly the clients a driver following its actions believes connected.
#[test]
fn random_workloads_keep_the_indexes_consistent() {
    fn prop(ops: Vec<Op>) -> bool {
        let mut c = config();
        c.ping_interval = Duration::from_secs(2);
        c.ping_not_response_limit = 1;
        c.ping_data = Bytes::from_static(b"p");
        let mut gw = Gw::new(c);
        let api = gw.link("10.0.0.50:1");
        let mut workers: Vec<Option<LinkId>> = vec![None; 3];
        let mut clients: Vec<ConnectionId> = Vec::new();
        let names: [&[u8]; 4] = [b"a", b"7", b"0", b""];
        let cmds = [
            5u8, 6, 7, 8, 9, 12, 13, 14, 20, 21, 22, 27, 204, 10, 16, 23, 25, 26, 28,
        ];
        for op in ops {
            match op {
                Op::Connect => {
                    if let Ok(id) = gw
                        .core
                        .handle_client_connected(gw.now, "203.0.113.1:1".parse().unwrap())
                    {
                        clients.push(id);
                        gw.core.handle_client_bytes(gw.now, id, HANDSHAKE);
                    }
                }
                Op::Close(i) if !clients.is_empty() => {
                    let id = clients.remove(i as usize % clients.len());
                    gw.core.handle_client_closed(gw.now, id);
                }
                Op::Message(i) if !clients.is_empty() => {
                    let id = clients[i as usize % clients.len()];
                    gw.core
                        .handle_client_bytes(gw.now, id, &ws_client_frame(1, b"m"));
                }
                Op::Cmd(c, t, n) => {
                    let cmd = cmds[c as usize % cmds.len()];
                    let cid = clients
                        .get(t as usize % clients.len().max(1))
                        .map_or(0, |c| c.0);
                    let name = names[n as usize % names.len()];
                    let ext: Vec<u8> = match cmd {
                        14 | 16 | 28 => {
                            format!("[\"{}\"]", String::from_utf8_lossy(name)).into_bytes()
                        }
                        22 => format!(
                            "{{\"group\":[\"{}\"],\"exclude\":{{\"{cid}\":1}}}}",
                            String::from_utf8_lossy(name)
                        )
                        .into_bytes(),
                        25 => {
                            br#"{"fields":["uid","groups","session"],"where":{"groups":["a","7"]}}"#
                                .to_vec()
                        }
                        9 | 204 => b"a:1:{s:1:\"k\";i:1;}".to_vec(),
                        _ => name.to_vec(),
                    };
                    gw.core
                        .handle_link_bytes(gw.now, api, &frame(cmd, cid, S, &ext, b"m"));
                }
                Op::WorkerUp(i) => {
                    let l = gw
                        .core
                        .handle_link_connected(
                            gw.now,
                            format!("10.0.0.{}:1", 20 + i).parse().unwrap(),
                        )
                        .unwrap();
                    gw.core.handle_link_bytes(
                        gw.now,
                        l,
                        &frame(
                            200,
                            0,
                            S,
                            b"",
                            b"{\"worker_key\":\"BW:0\",\"secret_key\":\"\"}",
                        ),
                    );
                    workers[i as usize] = Some(l);
                }
                Op::WorkerDown(i) => {
                    if let Some(l) = workers[i as usize].take() {
                        gw.core.handle_link_closed(gw.now, l);
                    }
                }
                Op::Tick => {
                    gw.now += Duration::from_secs(1);
                    gw.core.handle_timeout(gw.now);
                }
                _ => {}
            }
            for a in gw.drain() {
                if let Action::CloseClient { id, .. } = a {
                    clients.retain(|c| *c != id);
                    gw.core.handle_client_closed(gw.now, id);
                }
            }
            let snap = gw.core.snapshot();
            if snap.clients.len() != clients.len() {
                return false;
            }
        }
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Op>) -> bool);
}

#[test]
fn frame_encoder_roundtrips_through_the_decoder() {
    let f = Frame {
        header: crate::protocol::frame::Header {
            cmd: Command::OnMessage,
            local_ip: "10.0.0.5".parse().unwrap(),
            local_port: 2900,
            client_ip: "1.2.3.4".parse().unwrap(),
            client_port: 9,
            connection_id: 77,
            flag: 1,
            gateway_port: 8282,
        },
        ext_data: Bytes::from_static(b"ext"),
        body: Bytes::from_static(b"body"),
    };
    let seen = decode_all(&wire::encode_frame(&f));
    assert_eq!(
        (
            seen[0].cmd,
            seen[0].cid,
            &seen[0].ext[..],
            &seen[0].body[..]
        ),
        (3, 77, &b"ext"[..], &b"body"[..])
    );
}

#[test]
fn pipelined_commands_get_one_reply_per_query_in_order_quirk_23() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let mut wire = frame(Command::BindUid as u8, a.0, S, b"u", b"");
    wire.extend(frame(Command::IsOnline as u8, a.0, S, b"", b""));
    wire.extend(frame(Command::SendToOne as u8, a.0, S, b"", b"x"));
    wire.extend(frame(Command::GetClientIdByUid as u8, 0, S, b"u", b""));
    wire.extend(frame(Command::IsOnline as u8, 999, S, b"", b""));
    let replies = link_bytes(&gw.send(w, &wire), w);
    let expected_list = format!("a:1:{{i:0;i:{};}}", a.0);
    let expected: Vec<Bytes> = [&b"i:1;"[..], expected_list.as_bytes(), b"i:0;"]
        .iter()
        .map(|p| wire::encode_reply(p))
        .collect();
    assert_eq!(replies, expected);
}

#[test]
fn a_worker_registering_again_on_the_same_link_keeps_one_key() {
    let mut gw = Gw::new(config());
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    // Same key again: the original would close the link itself; we just reset the count.
    let again = frame(
        200,
        0,
        S,
        b"",
        b"{\"worker_key\":\"BW:0\",\"secret_key\":\"\"}",
    );
    assert!(gw.send(w, &again).is_empty());
    // Another key: the link leaves its old key (the original leaves it dangling).
    let other = frame(
        200,
        0,
        S,
        b"",
        b"{\"worker_key\":\"BW:1\",\"secret_key\":\"\"}",
    );
    assert!(gw.send(w, &other).is_empty());
    let keys: Vec<Bytes> = gw
        .core
        .snapshot()
        .workers
        .iter()
        .map(|e| e.key.clone())
        .collect();
    assert_eq!(keys, vec![Bytes::from_static(b"10.0.0.9:BW:1")]);
    // A non-string worker_key is converted like PHP's string concatenation.
    let l = gw.link("10.0.0.8:1");
    gw.send(
        l,
        &frame(200, 0, S, b"", b"{\"worker_key\":5,\"secret_key\":\"\"}"),
    );
    assert_eq!(
        gw.core.snapshot().workers[1].key,
        Bytes::from_static(b"10.0.0.8:5")
    );
}

#[test]
fn a_worker_closed_for_a_bad_frame_leaves_routing_at_once_even_while_flushing() {
    let mut gw = Gw::new(config());
    gw.auto_flush = false;
    let w1 = gw.worker("10.0.0.21:40000", "BW:0");
    let w2 = gw.worker("10.0.0.22:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000"); // bound to w1, whose output stays unflushed
    let mut bad = frame(11, 0, S, b"", b"");
    bad[3] = 1;
    assert_eq!(link_closes(&gw.send(w1, &bad)), vec![w1]);
    assert_eq!(gw.core.snapshot().workers.len(), 1);
    let frames = link_frames(&gw.client_sends(a, &ws_client_frame(1, b"m")), w2);
    assert_eq!(
        (frames[0].cmd, frames[0].cid),
        (3, a.0),
        "the client moved to w2"
    );
    gw.core.handle_link_closed(gw.now, w1);
    gw.drain();
    assert_eq!(gw.core.link_count(), 1);
}

#[test]
fn long_lived_strings_do_not_share_the_read_buffer() {
    let read = Bytes::from(vec![b'x'; 4096]);
    let slice = read.slice(10..12);
    let kept = super::commands::stored(&slice);
    assert!(
        slice.try_into_mut().is_err(),
        "a slice pins the read buffer"
    );
    assert!(kept.try_into_mut().is_ok(), "a stored copy owns its bytes");
    drop(read);
}

/// Splits `wire` at the (sorted, deduplicated) cut points.
fn chunks(wire: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([wire.len()]) {
        out.push(wire[start..c].to_vec());
        start = c;
    }
    out
}

/// However a client's bytes are split into reads, the worker sees the same ON_MESSAGE
/// frames: one per message, in order, with FLAG_BINARY exactly on binary messages.
#[test]
fn client_reads_split_anywhere_give_the_same_messages() {
    fn prop(messages: Vec<(Vec<u8>, bool)>, cuts: Vec<usize>) -> bool {
        let (mut gw, w) = Gw::with_worker();
        let id = gw
            .core
            .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
            .unwrap();
        gw.drain();
        let mut wire = HANDSHAKE.to_vec();
        for (payload, binary) in &messages {
            let payload = if *binary {
                payload.clone()
            } else {
                String::from_utf8_lossy(payload).into_owned().into_bytes()
            };
            wire.extend(ws_client_frame(if *binary { 2 } else { 1 }, &payload));
        }
        let mut frames = Vec::new();
        for chunk in chunks(&wire, &cuts) {
            frames.extend(link_frames(&gw.client_sends(id, &chunk), w));
        }
        let messages: Vec<(Vec<u8>, u8)> = messages
            .iter()
            .map(|(p, binary)| {
                if *binary {
                    (p.clone(), S | FLAG_BINARY)
                } else {
                    (String::from_utf8_lossy(p).into_owned().into_bytes(), S)
                }
            })
            .collect();
        let seen: Vec<(Vec<u8>, u8)> = frames[1..]
            .iter()
            .map(|f| (f.body.to_vec(), f.flag))
            .collect();
        frames[0].cmd == Command::OnWebsocketConnect as u8 && seen == messages
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<(Vec<u8>, bool)>, Vec<usize>) -> bool);
}

/// However a link's bytes are split into reads, the replies are the same bytes as for
/// one read of everything.
#[test]
fn link_reads_split_anywhere_give_the_same_replies() {
    fn prop(queries: Vec<(u8, u8)>, cuts: Vec<usize>) -> bool {
        let run = |split: bool| {
            let (mut gw, _) = Gw::with_worker();
            let ids: Vec<u32> = (0..3)
                .map(|i| gw.client(&format!("203.0.113.{i}:5000")).0)
                .collect();
            let api = gw.link("10.0.0.50:1");
            let mut wire = Vec::new();
            for (kind, target) in &queries {
                let cid = ids[*target as usize % 3] + u32::from(*target % 2);
                let f = match kind % 5 {
                    0 => frame(11, cid, S, b"", b""),
                    1 => frame(12, cid, S, b"u", b""),
                    2 => frame(15, 0, S, b"u", b""),
                    3 => frame(20, cid, S, b"g", b""),
                    _ => frame(25, 0, S, br#"{"fields":["uid","groups"],"where":[]}"#, b""),
                };
                wire.extend(f);
            }
            let reads = if split {
                chunks(&wire, &cuts)
            } else {
                vec![wire]
            };
            let mut replies = Vec::new();
            for r in reads {
                for b in link_bytes(&gw.send(api, &r), api) {
                    replies.extend_from_slice(&b);
                }
            }
            replies
        };
        run(true) == run(false)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<(u8, u8)>, Vec<usize>) -> bool);
}

/// Garbage from links and clients never panics the core; the indexes stay consistent
/// (checked in `drain`) and a link or client either survives or is closed cleanly.
#[test]
fn garbage_input_never_panics() {
    fn prop(link_reads: Vec<Vec<u8>>, client_reads: Vec<Vec<u8>>, valid_prefix: bool) -> bool {
        let mut c = config();
        c.package_size_max = 4096;
        let mut gw = Gw::new(c);
        gw.worker("10.0.0.9:40000", "BW:0");
        let a = gw.client("203.0.113.7:5000");
        let api = gw.link("10.0.0.50:1");
        if valid_prefix {
            // Start each garbage read with a plausible header so commands get parsed.
            for (i, read) in link_reads.iter().enumerate() {
                let cmd = [5u8, 6, 9, 12, 14, 16, 22, 25, 28, 204][i % 10];
                let mut f = frame(
                    cmd,
                    a.0,
                    (i % 4) as u8,
                    &read[..read.len() / 2],
                    &read[read.len() / 2..],
                );
                f.truncate(f.len().min(4096));
                gw.send(api, &f);
            }
        }
        for read in &link_reads {
            gw.send(api, read);
        }
        for read in &client_reads {
            gw.client_sends(a, read);
        }
        gw.core.check_invariants();
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Vec<u8>>, Vec<Vec<u8>>, bool) -> bool);
}

/// One membership operation of the model-based property.
#[derive(Debug, Clone)]
enum MemberOp {
    Connect,
    Close(u8),
    Bind(u8, u8),
    Unbind(u8),
    Join(u8, u8),
    Leave(u8, u8),
    Ungroup(u8),
}

impl Arbitrary for MemberOp {
    fn arbitrary(g: &mut Gen) -> MemberOp {
        let (i, n) = (u8::arbitrary(g), u8::arbitrary(g));
        match u8::arbitrary(g) % 8 {
            0 | 1 => MemberOp::Connect,
            2 => MemberOp::Close(i),
            3 => MemberOp::Bind(i, n),
            4 => MemberOp::Unbind(i),
            5 => MemberOp::Join(i, n),
            6 => MemberOp::Leave(i, n),
            _ => MemberOp::Ungroup(n),
        }
    }
}

/// uid and group bookkeeping against a plain model of the original's PHP arrays:
/// clients in connect order, groups in creation order, members in join/bind order,
/// `groups` null until the first join.
#[test]
fn membership_matches_a_model_of_the_php_arrays() {
    type ModelClient = (u32, Option<Vec<u8>>, Option<Vec<Vec<u8>>>);
    type Model = (
        Vec<ModelClient>,
        Vec<(Vec<u8>, Vec<u32>)>,
        Vec<(Vec<u8>, Vec<u32>)>,
    );
    fn prop(ops: Vec<MemberOp>) -> bool {
        let names: [&[u8]; 5] = [b"a", b"b", b"7", b"0", b""];
        let (mut gw, w) = Gw::with_worker();
        let (mut clients, mut groups, mut uids): Model = (Vec::new(), Vec::new(), Vec::new());
        let remove = |list: &mut Vec<(Vec<u8>, Vec<u32>)>, name: &[u8], cid: u32| {
            if let Some(pos) = list.iter().position(|(n, _)| n == name) {
                list[pos].1.retain(|c| *c != cid);
                if list[pos].1.is_empty() {
                    list.remove(pos);
                }
            }
        };
        for op in ops {
            let pick = |i: u8, clients: &Vec<(u32, _, _)>| {
                (!clients.is_empty()).then(|| i as usize % clients.len())
            };
            match op {
                MemberOp::Connect => {
                    let id = gw.client("203.0.113.1:1");
                    clients.push((id.0, None, None));
                }
                MemberOp::Close(i) => {
                    let Some(k) = pick(i, &clients) else { continue };
                    let (cid, uid, gs) = clients.remove(k);
                    gw.core.handle_client_closed(gw.now, ConnectionId(cid));
                    gw.drain();
                    if let Some(uid) = uid {
                        remove(&mut uids, &uid, cid);
                    }
                    for g in gs.into_iter().flatten() {
                        remove(&mut groups, &g, cid);
                    }
                }
                MemberOp::Bind(i, n) | MemberOp::Join(i, n) | MemberOp::Leave(i, n) => {
                    let Some(k) = pick(i, &clients) else { continue };
                    let name = names[n as usize % names.len()].to_vec();
                    let cid = clients[k].0;
                    let cmd = match op {
                        MemberOp::Bind(..) => Command::BindUid,
                        MemberOp::Join(..) => Command::JoinGroup,
                        _ => Command::LeaveGroup,
                    };
                    gw.cmd(w, cmd, cid, S, &name, b"");
                    if is_empty_name(&name) {
                        continue;
                    }
                    match op {
                        MemberOp::Bind(..) => {
                            if let Some(old) = clients[k].1.take() {
                                remove(&mut uids, &old, cid);
                            }
                            match uids.iter_mut().find(|(n, _)| *n == name) {
                                Some((_, m)) => m.push(cid),
                                None => uids.push((name.clone(), vec![cid])),
                            }
                            clients[k].1 = Some(name);
                        }
                        MemberOp::Join(..) => {
                            let gs = clients[k].2.get_or_insert_with(Vec::new);
                            if !gs.contains(&name) {
                                gs.push(name.clone());
                                match groups.iter_mut().find(|(n, _)| *n == name) {
                                    Some((_, m)) => m.push(cid),
                                    None => groups.push((name, vec![cid])),
                                }
                            }
                        }
                        _ => {
                            if let Some(gs) = clients[k].2.as_mut() {
                                if gs.contains(&name) {
                                    gs.retain(|g| *g != name);
                                    remove(&mut groups, &name, cid);
                                }
                            }
                        }
                    }
                }
                MemberOp::Unbind(i) => {
                    let Some(k) = pick(i, &clients) else { continue };
                    let cid = clients[k].0;
                    gw.cmd(w, Command::UnbindUid, cid, S, b"x", b"");
                    if let Some(old) = clients[k].1.take() {
                        remove(&mut uids, &old, cid);
                    }
                }
                MemberOp::Ungroup(n) => {
                    let name = names[n as usize % names.len()].to_vec();
                    gw.cmd(w, Command::Ungroup, 0, S, &name, b"");
                    if let Some(pos) = groups.iter().position(|(g, _)| *g == name) {
                        let (_, members) = groups.remove(pos);
                        for c in clients.iter_mut().filter(|c| members.contains(&c.0)) {
                            if let Some(gs) = c.2.as_mut() {
                                gs.retain(|g| *g != name);
                            }
                        }
                    }
                }
            }
            let snap = gw.core.snapshot();
            let ours_clients: Vec<ModelClient> = snap
                .clients
                .iter()
                .map(|c| {
                    (
                        c.connection_id,
                        c.uid.as_ref().map(|u| u.to_vec()),
                        c.groups
                            .as_ref()
                            .map(|g| g.iter().map(|n| n.to_vec()).collect()),
                    )
                })
                .collect();
            let ours_groups: Vec<(Vec<u8>, Vec<u32>)> = snap
                .group_index
                .iter()
                .map(|(g, m)| (g.to_vec(), m.clone()))
                .collect();
            let ours_uids: Vec<(Vec<u8>, Vec<u32>)> = snap
                .uid_index
                .iter()
                .map(|(u, m)| (u.to_vec(), m.clone()))
                .collect();
            let mut model_uids = uids.clone();
            model_uids.sort();
            if ours_clients != clients || ours_groups != groups || ours_uids != model_uids {
                return false;
            }
        }
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<MemberOp>) -> bool);
}

fn is_empty_name(name: &[u8]) -> bool {
    name.is_empty() || name == b"0"
}

/// A websocket client that does not finish its handshake within `handshake_timeout` is
/// destroyed (ON_CLOSE follows); one that finished in time is not, and the deadline of a
/// connection id reused by a later client does not touch the newcomer.
#[test]
fn unfinished_websocket_handshake_is_destroyed_at_the_timeout() {
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_secs(10);
    let mut gw = Gw::new(cfg);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let slow = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:50000".parse().unwrap())
        .unwrap();
    gw.drain();
    gw.client_sends(slow, b"GET / HTTP/1.1\r\nHost: x\r\n");
    let done = gw.client("203.0.113.8:50001");
    assert_eq!(
        gw.core.poll_timeout(),
        Some(gw.now + Duration::from_secs(10))
    );

    assert!(closes(&gw.advance(Duration::from_millis(9_999))).is_empty());
    let actions = gw.advance(Duration::from_millis(1));
    assert_eq!(
        closes(&actions),
        vec![(slow, false, CloseReason::HandshakeTimeout)]
    );
    let close_events: Vec<_> = link_frames(&actions, w)
        .into_iter()
        .filter(|f| f.cmd == Command::OnClose as u8)
        .collect();
    assert_eq!(close_events.len(), 1);
    assert_eq!(close_events[0].cid, slow.0);
    assert!(
        gw.core.clients.contains(done.0),
        "a finished handshake is not timed out"
    );
    assert!(closes(&gw.advance(Duration::from_secs(60))).is_empty());
}

/// `handshake_timeout` zero turns the limit off; text and frame clients never have one.
#[test]
fn handshake_timeout_zero_or_non_websocket_never_expires() {
    let mut cfg = config();
    cfg.handshake_timeout = Duration::ZERO;
    let mut gw = Gw::new(cfg);
    gw.worker("10.0.0.9:40000", "BW:0");
    let id = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.7:50000".parse().unwrap())
        .unwrap();
    gw.drain();
    // Only the worker keep-alive (lan IP is not 127.0.0.1) is scheduled.
    assert_eq!(gw.core.poll_timeout(), Some(gw.now + LINK_PING_INTERVAL));
    assert!(closes(&gw.advance(Duration::from_secs(3600))).is_empty());
    assert!(gw.core.clients.contains(id.0));

    let mut cfg = config();
    cfg.protocol = PublicProtocol::Text;
    let mut gw = Gw::new(cfg);
    gw.worker("10.0.0.9:40000", "BW:0");
    let id = gw.client("203.0.113.7:50000");
    assert!(closes(&gw.advance(Duration::from_secs(3600))).is_empty());
    assert!(gw.core.clients.contains(id.0));
}

#[test]
fn shutdown_says_going_away_to_websocket_clients_and_closes_everyone_after_flushing() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    // A client still in its handshake gets no websocket frame (it never spoke websocket).
    let pending = gw
        .core
        .handle_client_connected(gw.now, "203.0.113.9:5000".parse().unwrap())
        .unwrap();
    gw.drain();
    gw.core.handle_shutdown(gw.now);
    let actions = gw.drain();
    let going_away = Bytes::from_static(&[0x88, 0x02, 0x03, 0xe9]);
    assert_eq!(client_bytes(&actions, a), vec![going_away.clone()]);
    assert_eq!(client_bytes(&actions, b), vec![going_away]);
    assert!(client_bytes(&actions, pending).is_empty());
    assert_eq!(
        closes(&actions),
        vec![
            (a, true, CloseReason::Shutdown),
            (b, true, CloseReason::Shutdown),
            (pending, true, CloseReason::Shutdown)
        ],
        "every client, in accept order, after its output"
    );
    let on_close: Vec<u8> = link_frames(&actions, w).iter().map(|f| f.cmd).collect();
    assert_eq!(on_close, vec![4, 4, 4], "the worker hears of every client");
    assert_eq!(link_closes(&actions), vec![w]);
    assert_eq!(gw.core.poll_timeout(), None, "no timers after shutdown");
    gw.core.handle_shutdown(gw.now);
    assert!(gw.drain().is_empty(), "a second shutdown does nothing");
    gw.core.check_invariants();
}

#[test]
fn shutdown_closes_text_clients_without_a_frame() {
    let mut c = config();
    c.protocol = PublicProtocol::Text;
    let mut gw = Gw::new(c);
    gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    gw.core.handle_shutdown(gw.now);
    let actions = gw.drain();
    assert!(client_bytes(&actions, a).is_empty());
    assert_eq!(closes(&actions), vec![(a, true, CloseReason::Shutdown)]);
}
