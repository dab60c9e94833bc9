//! Unit tests of [`GatewayCore`] driven through its public inputs with a fake clock, in
//! the style of quinn-proto's test harness. Every quirk of spec section 9 that concerns
//! the gateway has a test whose name states the decision.

use std::time::Duration;

use bytes::Bytes;

use super::wire;
use super::*;
use crate::protocol::frame::{Command, FLAG_BODY_IS_SCALAR};

mod auth;
mod bounds;
mod delivery;
mod events;
mod pacing;
mod property;
mod queries;
mod routing;
mod shutdown;
mod timers;
mod uid_groups;

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
