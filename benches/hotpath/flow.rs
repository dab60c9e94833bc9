//! The gateway's hot paths, in process and without sockets: a [`GatewayCore`] fed the
//! exact bytes a websocket client and a business worker send, its actions drained the
//! way the driver does (transmitted bytes reported flushed, then dropped).
//!
//! Shared by the callgrind harness (`benches/hotpath/main.rs`) and the counting-allocator
//! test (`tests/no_alloc_echo.rs`).

#![allow(dead_code)]

use std::time::Duration;

use bytes::BytesMut;
use gatewayworker::gateway::{Action, ConnectionId, GatewayConfig, GatewayCore, LinkId, Target};
use gatewayworker::protocol::frame::{Command, Frame, Header, FLAG_BODY_IS_SCALAR};

const HANDSHAKE: &[u8] = b"GET /bench HTTP/1.1\r\nHost: 127.0.0.1:8282\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A masked client text frame.
pub fn client_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&MASK);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    out
}

/// A frame from the worker to the gateway.
pub fn worker_frame(
    cmd: Command,
    connection_id: u32,
    flag: u8,
    ext: &[u8],
    body: &[u8],
) -> Vec<u8> {
    let mut header = Header::new(cmd);
    header.connection_id = connection_id;
    header.flag = flag;
    let mut out = BytesMut::new();
    Frame::new(header, ext.to_vec(), body.to_vec()).encode(&mut out);
    out.to_vec()
}

/// Counts of what a drain saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Transmits to clients.
    pub to_clients: usize,
    /// Bytes to clients.
    pub client_bytes: usize,
    /// Transmits to links.
    pub to_links: usize,
    /// Bytes to links.
    pub link_bytes: usize,
}

/// Drains every action like the driver: report the write flushed, drop the bytes.
pub fn drain(core: &mut GatewayCore, now: Duration) -> Drained {
    let mut d = Drained::default();
    while let Some(action) = core.poll_action() {
        if let Action::Transmit { to, bytes } = action {
            match to {
                Target::Client(c) => {
                    d.to_clients += 1;
                    d.client_bytes += bytes.len();
                    core.handle_client_flushed(now, c, bytes.len());
                }
                Target::Link(l) => {
                    d.to_links += 1;
                    d.link_bytes += bytes.len();
                    core.handle_link_flushed(now, l, bytes.len());
                }
                Target::Register(_) => {}
            }
        }
    }
    d
}

/// A core with one worker link (registered) and `clients` websocket clients past their
/// handshake.
pub struct Gateway {
    /// The core.
    pub core: GatewayCore,
    /// The worker's link.
    pub link: LinkId,
    /// The clients, in connect order.
    pub clients: Vec<ConnectionId>,
    /// The time fed to the core.
    pub now: Duration,
}

impl Gateway {
    /// Sets it up; every setup action is drained.
    pub fn new(clients: usize) -> Gateway {
        let now = Duration::from_secs(1);
        let mut core = GatewayCore::new(
            GatewayConfig::new("127.0.0.1".parse().expect("ip"), 2000, 8282),
            now,
        );
        let link = core
            .handle_link_connected(now, "127.0.0.1:40000".parse().expect("addr"))
            .expect("link");
        let connect = worker_frame(
            Command::WorkerConnect,
            0,
            FLAG_BODY_IS_SCALAR,
            b"",
            b"{\"worker_key\":\"BW:0\",\"secret_key\":\"\"}",
        );
        core.handle_link_bytes(now, link, &connect);
        drain(&mut core, now);
        let mut ids = Vec::with_capacity(clients);
        for i in 0..clients {
            let peer = format!(
                "127.0.{}.{}:{}",
                i / 250 % 250,
                i % 250 + 1,
                10_000 + i % 50_000
            );
            let id = core
                .handle_client_connected(now, peer.parse().expect("peer"))
                .expect("client");
            core.handle_client_bytes(now, id, HANDSHAKE);
            drain(&mut core, now);
            ids.push(id);
        }
        assert_eq!(core.client_count(), clients);
        Gateway {
            core,
            link,
            clients: ids,
            now,
        }
    }
}

/// The echo path: client message in → event frame to the worker → the worker's
/// SEND_TO_ONE back → websocket frame to the client.
pub struct EchoPath {
    /// The gateway.
    pub gw: Gateway,
    client_frame: Vec<u8>,
    reply_frame: Vec<u8>,
    size: usize,
}

impl EchoPath {
    /// One client, messages of `size` bytes.
    pub fn new(size: usize) -> EchoPath {
        let gw = Gateway::new(1);
        let payload = vec![b'x'; size];
        let reply_frame = worker_frame(
            Command::SendToOne,
            gw.clients[0].0,
            FLAG_BODY_IS_SCALAR,
            b"",
            &payload,
        );
        EchoPath {
            gw,
            client_frame: client_frame(&payload),
            reply_frame,
            size,
        }
    }

    /// One round trip; panics if a leg did not happen. Never inlined: callgrind collects
    /// inside it only (`--toggle-collect`).
    #[inline(never)]
    pub fn round(&mut self) {
        let Gateway {
            core,
            link,
            clients,
            now,
        } = &mut self.gw;
        core.handle_client_bytes(*now, clients[0], &self.client_frame);
        let up = drain(core, *now);
        assert_eq!(up.to_links, 1, "event to the worker");
        assert!(up.link_bytes >= 28 + self.size);
        core.handle_link_bytes(*now, *link, &self.reply_frame);
        let down = drain(core, *now);
        assert_eq!(down.to_clients, 1, "message to the client");
        assert!(down.client_bytes >= 2 + self.size);
    }
}

/// The broadcast path: one SEND_TO_GROUP frame from the worker → a websocket frame for
/// every member of the group.
pub struct FanoutPath {
    /// The gateway.
    pub gw: Gateway,
    frame: Vec<u8>,
}

impl FanoutPath {
    /// `members` clients in group `bench`; messages of `size` bytes.
    pub fn new(members: usize, size: usize) -> FanoutPath {
        let mut gw = Gateway::new(members);
        for id in gw.clients.clone() {
            let join = worker_frame(Command::JoinGroup, id.0, 0, b"bench", b"");
            gw.core.handle_link_bytes(gw.now, gw.link, &join);
        }
        drain(&mut gw.core, gw.now);
        let frame = worker_frame(
            Command::SendToGroup,
            0,
            FLAG_BODY_IS_SCALAR,
            b"{\"group\":[\"bench\"],\"exclude\":[]}",
            &vec![b'x'; size],
        );
        FanoutPath { gw, frame }
    }

    /// One broadcast; returns the deliveries. Never inlined (see [`EchoPath::round`]).
    #[inline(never)]
    pub fn round(&mut self) -> usize {
        let gw = &mut self.gw;
        gw.core.handle_link_bytes(gw.now, gw.link, &self.frame);
        let d = drain(&mut gw.core, gw.now);
        assert_eq!(d.to_clients, gw.clients.len(), "one delivery per member");
        d.to_clients
    }
}
