//! permessage-deflate (RFC 7692) through the gateway: a raw TCP client that offers the
//! extension and speaks compressed frames (flate2 on the test side), on real sockets; and
//! the core alone for what only the actions show (a broadcast compressed once).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use gatewayworker::gateway::{Action, CompressionMode, GatewayConfig, GatewayCore, Target};
use gatewayworker::protocol::frame::{encode_frame, Command, Header, FLAG_BODY_IS_SCALAR};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::*;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ANSWER_NCT: &str = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n";
const MASK: [u8; 4] = [1, 2, 3, 4];

fn head(offer: Option<&str>) -> String {
    let ext = offer.map_or(String::new(), |o| {
        format!("Sec-WebSocket-Extensions: {o}\r\n")
    });
    format!("GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{ext}\r\n")
}

/// Raw deflate with a sync flush, tail removed (a fresh stream per call).
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    c.compress_vec(payload, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(compressed: &[u8]) -> Vec<u8> {
    let mut d = Decompress::new(false);
    let mut input = compressed.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut out = Vec::with_capacity(1 << 20);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    gatewayworker::protocol::public::websocket::encode_frame(b0, payload, &mut out);
    let header_len = out.len() - payload.len();
    let mut frame = out[..header_len].to_vec();
    frame[1] |= 0x80;
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Connects, upgrades with `offer`, returns the client and the 101 head.
    async fn connect(addr: SocketAddr, offer: Option<&str>) -> (RawClient, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(head(offer).as_bytes()).await.unwrap();
        let mut client = RawClient {
            stream,
            buf: Vec::new(),
        };
        let end = loop {
            if let Some(i) = client.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            client.read_more().await;
        };
        let response = String::from_utf8(client.buf.drain(..end).collect()).unwrap();
        (client, response)
    }

    async fn read_more(&mut self) {
        let mut chunk = [0u8; 65536];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk))
            .await
            .expect("read in time")
            .unwrap();
        assert!(n > 0, "connection closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next server frame: (first byte, payload).
    async fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.buf.len() >= 2 {
                let (len, at) = match self.buf[1] {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().unwrap()) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= at + len {
                    let b0 = self.buf[0];
                    let payload = self.buf[at..at + len].to_vec();
                    self.buf.drain(..at + len);
                    return (b0, payload);
                }
            }
            self.read_more().await;
        }
    }

    async fn send(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }
}

async fn next_message(worker: &mut TestLink) -> Bytes {
    worker.next_frame_of(Command::OnMessage).await.body
}

/// Negotiation answer byte-exact, compressed messages both ways, the same compressed
/// bytes for every member of a broadcast, the plain frame for a client without it.
#[tokio::test]
async fn compressed_round_trip_and_broadcast_on_real_sockets() {
    let gateway = start_gateway(1, |s| {
        s.core.compression = CompressionMode::NoContextTakeover;
    });
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut a, response) = RawClient::connect(gateway.public_addr, Some(OFFER)).await;
    assert!(response.starts_with("HTTP/1.1 101 "));
    assert!(
        response.ends_with(&format!("{ANSWER_NCT}\r\n")),
        "{response}"
    );
    let (mut b, _) = RawClient::connect(gateway.public_addr, Some(OFFER)).await;
    let (mut plain, response) = RawClient::connect(gateway.public_addr, None).await;
    assert!(!response.contains("Extensions"));

    let text = r#"{"type":"say","from":"alice","content":"hello everybody, hello everybody"}"#;
    a.send(&masked(0xC1, &deflate(text.as_bytes()))).await;
    assert_eq!(&next_message(&mut worker).await[..], text.as_bytes());
    // Fragmented compressed message.
    let c = deflate(text.as_bytes());
    let mut frames = masked(0x41, &c[..5]);
    frames.extend(masked(0x80, &c[5..]));
    b.send(&frames).await;
    assert_eq!(&next_message(&mut worker).await[..], text.as_bytes());

    let broadcast = format!("[{}]", [text; 4].join(","));
    worker
        .send(
            Command::SendToAll,
            0,
            FLAG_BODY_IS_SCALAR,
            b"",
            broadcast.as_bytes(),
        )
        .await;
    let (a0, a_payload) = a.frame().await;
    let (b0, b_payload) = b.frame().await;
    let (p0, p_payload) = plain.frame().await;
    assert_eq!((a0, b0, p0), (0xC1, 0xC1, 0x81));
    assert_eq!(a_payload, b_payload, "one compression for both");
    assert!(a_payload.len() * 3 < broadcast.len(), "{}", a_payload.len());
    assert_eq!(inflate(&a_payload), broadcast.as_bytes());
    assert_eq!(p_payload, broadcast.as_bytes());
    // Below the minimum size: plain even for a compressing client.
    worker
        .send(Command::SendToAll, 0, FLAG_BODY_IS_SCALAR, b"", b"short")
        .await;
    assert_eq!(a.frame().await, (0x81, b"short".to_vec()));
    gateway.shutdown().unwrap();
}

/// A compressed message that inflates past package_size_max closes with 1009, and the
/// worker hears of the close; nothing reaches it as a message.
#[tokio::test]
async fn zip_bomb_closes_with_1009_on_real_sockets() {
    let gateway = start_gateway(1, |s| {
        s.core.compression = CompressionMode::NoContextTakeover;
        s.core.package_size_max = 1 << 20;
    });
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut client, _) = RawClient::connect(gateway.public_addr, Some(OFFER)).await;
    // 64 MiB of zeros, about 64 KiB compressed.
    let bomb = deflate(&vec![0u8; 64 << 20]);
    assert!(bomb.len() < 128 * 1024, "{}", bomb.len());
    client.send(&masked(0xC2, &bomb)).await;
    assert_eq!(client.frame().await, (0x88, vec![0x03, 0xF1]));
    let close = worker.next_frame_of(Command::OnClose).await;
    assert_eq!(close.header.cmd, Command::OnClose);
    gateway.shutdown().unwrap();
}

/// Context takeover: each client keeps its window; consecutive equal messages shrink.
#[tokio::test]
async fn context_takeover_mode_keeps_windows_per_connection() {
    let gateway = start_gateway(1, |s| {
        s.core.compression = CompressionMode::ContextTakeover;
    });
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (mut client, response) = RawClient::connect(gateway.public_addr, Some(OFFER)).await;
    assert!(response.ends_with("Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"));
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    let text = r#"{"type":"say","from":"bob","content":"the same message again and again"}"#;
    let mut d = Decompress::new(false);
    let mut sizes = Vec::new();
    for _ in 0..3 {
        worker
            .send(
                Command::SendToOne,
                cid,
                FLAG_BODY_IS_SCALAR,
                b"",
                text.as_bytes(),
            )
            .await;
        let (b0, mut payload) = client.frame().await;
        assert_eq!(b0, 0xC1);
        sizes.push(payload.len());
        payload.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        let mut out = Vec::with_capacity(1024);
        d.decompress_vec(&payload, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, text.as_bytes());
    }
    assert!(sizes[1] * 2 < sizes[0], "{sizes:?}");
    gateway.shutdown().unwrap();
}

/// In the core: a group broadcast to compressing members hands every one of them the very
/// same `Bytes` (compressed once), and plain members the one plain encode.
#[test]
fn broadcast_is_compressed_once_in_the_core() {
    let mut config = GatewayConfig::new("127.0.0.1".parse().unwrap(), 2000, 8282);
    config.compression = CompressionMode::NoContextTakeover;
    let mut core = GatewayCore::new(config, Duration::ZERO);
    let now = Duration::ZERO;
    let link = core
        .handle_link_connected(now, "127.0.0.1:5000".parse().unwrap())
        .unwrap();
    let mut frame = BytesMut::new();
    let mut header = Header::new(Command::WorkerConnect);
    header.flag = FLAG_BODY_IS_SCALAR;
    encode_frame(
        &mut frame,
        &header,
        b"",
        br#"{"worker_key":"W:0","secret_key":""}"#,
    );
    core.handle_link_bytes(now, link, &frame);
    let mut ids = Vec::new();
    for (i, offer) in [Some(OFFER), Some(OFFER), None, Some(OFFER)]
        .into_iter()
        .enumerate()
    {
        let peer: SocketAddr = format!("127.0.0.1:{}", 6000 + i).parse().unwrap();
        let id = core.handle_client_connected(now, peer).unwrap();
        core.handle_client_bytes(now, id, head(offer).as_bytes());
        ids.push(id);
        let mut join = BytesMut::new();
        let mut h = Header::new(Command::JoinGroup);
        h.connection_id = id.0;
        encode_frame(&mut join, &h, b"room", b"");
        core.handle_link_bytes(now, link, &join);
    }
    while core.poll_action().is_some() {}
    let payload = "{\"say\":\"hello\"}".repeat(20);
    let mut send = BytesMut::new();
    let mut h = Header::new(Command::SendToGroup);
    h.flag = FLAG_BODY_IS_SCALAR;
    encode_frame(
        &mut send,
        &h,
        br#"{"group":["room"],"exclude":[]}"#,
        payload.as_bytes(),
    );
    core.handle_link_bytes(now, link, &send);
    let mut sent = Vec::new();
    while let Some(action) = core.poll_action() {
        if let Action::Transmit {
            to: Target::Client(id),
            bytes,
        } = action
        {
            sent.push((id, bytes));
        }
    }
    assert_eq!(sent.len(), 4);
    let compressed: Vec<&Bytes> = sent
        .iter()
        .filter(|(id, _)| *id != ids[2])
        .map(|(_, b)| b)
        .collect();
    assert_eq!(compressed[0][0], 0xC1);
    for b in &compressed {
        assert_eq!(b.as_ptr(), compressed[0].as_ptr(), "the same buffer");
    }
    let plain = &sent.iter().find(|(id, _)| *id == ids[2]).unwrap().1;
    assert_eq!(plain[0], 0x81);
    assert_eq!(&plain[4..], payload.as_bytes());
}
