//! Hostile input through real sockets: every bad peer affects only its own connection,
//! never panics the gateway, and the well-behaved clients and workers around it keep
//! being served.

use std::time::Duration;

use crate::common::*;
use gatewayworker::protocol::frame::{Command, FLAG_BODY_IS_SCALAR};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

/// A raw client that completes the websocket handshake and then misbehaves.
async fn raw_client(addr: std::net::SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(HANDSHAKE).await.unwrap();
    let mut buf = [0u8; 1024];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "gateway closed during the handshake");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 Switching Protocol\r\n"));
    stream
}

/// Reads until the gateway closes; returns every byte received.
async fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("gateway did not close the connection in time"),
        }
    }
}

/// A gateway with one worker link and one well-behaved WebSocket client.
async fn gateway_with_a_good_client() -> (shards_handle::Running, TestLink, WsClient, u32) {
    let gateway = start_gateway(1, |_| {});
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ws = ws_connect(gateway.public_addr, "/").await;
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    (gateway, worker, ws, cid)
}

mod shards_handle {
    pub type Running = gatewayworker::gateway::shards::RunningGateway;
}

/// The good client still gets a message sent after the bad peer did its thing.
async fn good_client_still_served(worker: &mut TestLink, ws: &mut WsClient, cid: u32) {
    worker
        .send(
            Command::SendToOne,
            cid,
            FLAG_BODY_IS_SCALAR,
            b"",
            b"still served",
        )
        .await;
    assert_eq!(ws_next(ws).await, Message::text("still served"));
}

/// An unmasked client frame is a protocol error: close 1002 for that client only.
#[tokio::test]
async fn unmasked_frame_closes_that_client_with_1002() {
    let (gateway, mut worker, mut ws, cid) = gateway_with_a_good_client().await;
    let mut bad = raw_client(gateway.public_addr).await;
    bad.write_all(&[0x81, 0x02, b'h', b'i']).await.unwrap();
    let bytes = read_to_close(&mut bad).await;
    assert!(
        bytes.ends_with(&[0x88, 0x02, 0x03, 0xEA]),
        "close 1002 sent: {bytes:02x?}"
    );
    good_client_still_served(&mut worker, &mut ws, cid).await;
    gateway.shutdown().unwrap();
}

/// A frame header announcing more than the message limit is refused at once (1009),
/// without waiting for (or buffering) the payload.
#[tokio::test]
async fn oversized_frame_header_is_refused_before_its_payload() {
    let (gateway, mut worker, mut ws, cid) = gateway_with_a_good_client().await;
    let mut bad = raw_client(gateway.public_addr).await;
    let mut header = vec![0x82, 0xFF];
    header.extend_from_slice(&(1u64 << 40).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    bad.write_all(&header).await.unwrap();
    let bytes = read_to_close(&mut bad).await;
    assert!(
        bytes.ends_with(&[0x88, 0x02, 0x03, 0xF1]),
        "close 1009 sent: {bytes:02x?}"
    );
    good_client_still_served(&mut worker, &mut ws, cid).await;
    gateway.shutdown().unwrap();
}

/// A request head that never ends is cut off at its bound (16 KiB) instead of growing.
#[tokio::test]
async fn endless_request_head_is_cut_off() {
    let (gateway, mut worker, mut ws, cid) = gateway_with_a_good_client().await;
    let mut bad = TcpStream::connect(gateway.public_addr).await.unwrap();
    bad.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let line = format!("X-Filler: {}\r\n", "a".repeat(1000));
    for _ in 0..32 {
        if bad.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
    // Closed without a reply (an over-long head gets none, like a bad request would
    // get a 400): nothing at all comes back.
    let bytes = read_to_close(&mut bad).await;
    assert!(bytes.is_empty(), "nothing written: {bytes:02x?}");
    good_client_still_served(&mut worker, &mut ws, cid).await;
    gateway.shutdown().unwrap();
}

/// An internal frame announcing more than `package_size_max` closes that link as soon as
/// its length arrives; the worker link next to it is untouched.
#[tokio::test]
async fn oversized_internal_frame_closes_that_link_at_once() {
    let (gateway, mut worker, mut ws, cid) = gateway_with_a_good_client().await;
    let mut bad = TestLink::connect(gateway.lan_addrs[0]).await;
    bad.send_raw(&200_000_000u32.to_be_bytes()).await;
    assert!(bad.closed_by_peer().await, "oversized link is closed");
    good_client_still_served(&mut worker, &mut ws, cid).await;
    gateway.shutdown().unwrap();
}

/// A client that never reads: what is queued for it stops at `client_pending_max`
/// (further messages are dropped, it stays connected), and everybody else is served.
#[tokio::test]
async fn client_that_never_reads_is_bounded_and_harmless() {
    let gateway = start_gateway(1, |s| s.core.client_pending_max = 256 * 1024);
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut good = ws_connect(gateway.public_addr, "/").await;
    let good_id = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    let _sleeper = raw_client(gateway.public_addr).await;
    let sleeper_id = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;

    // 16 MiB for a client that reads nothing, far beyond its bound and the socket buffers.
    let chunk = vec![b'x'; 64 * 1024];
    for _ in 0..256 {
        worker
            .send(
                Command::SendToOne,
                sleeper_id,
                FLAG_BODY_IS_SCALAR,
                b"",
                &chunk,
            )
            .await;
    }
    good_client_still_served(&mut worker, &mut good, good_id).await;

    let mut api = TestLink::connect(gateway.lan_addrs[0]).await;
    api.send(Command::IsOnline, sleeper_id, 0, b"", b"").await;
    assert_eq!(
        &api.next_reply().await[..],
        b"i:1;",
        "the slow client stays connected"
    );
    gateway.shutdown().unwrap();
}

/// Bytes that are not HTTP at all get the original's 400 response and a close.
#[tokio::test]
async fn garbage_instead_of_a_handshake_gets_400() {
    let (gateway, mut worker, mut ws, cid) = gateway_with_a_good_client().await;
    let mut bad = TcpStream::connect(gateway.public_addr).await.unwrap();
    bad.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        .await
        .unwrap();
    let bytes = read_to_close(&mut bad).await;
    assert!(
        bytes.starts_with(b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        "{:?}",
        String::from_utf8_lossy(&bytes)
    );
    good_client_still_served(&mut worker, &mut ws, cid).await;
    gateway.shutdown().unwrap();
}

/// Slowloris: a client trickling its request head a few bytes at a time is cut off at the
/// handshake timeout, and the other clients are served meanwhile.
#[tokio::test]
async fn trickling_handshake_is_cut_off_at_the_timeout() {
    let gateway = start_gateway(1, |s| s.core.handshake_timeout = Duration::from_millis(300));
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = ws_connect(gateway.public_addr, "/").await;
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;

    let mut slow = TcpStream::connect(gateway.public_addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut cut_off = false;
    for chunk in b"GET / HTTP/1.1\r\nHost: example.com\r\nX-Slow: ".chunks(3) {
        if slow.write_all(chunk).await.is_err() {
            cut_off = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !cut_off {
        // The handshake timeout closes it without a reply.
        let bytes = read_to_close(&mut slow).await;
        assert!(bytes.is_empty(), "nothing written: {bytes:02x?}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "closed near the timeout"
    );
    good_client_still_served(&mut worker, &mut ws, cid).await;
    gateway.shutdown().unwrap();
}
