//! The gateway through real sockets on 127.0.0.1: a real WebSocket client crate on the
//! public port, scripted worker and API links on the lan port speaking our frame codec.
//! Each test is a short story of what a PHP worker and a browser would see.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use futures_util::SinkExt;
use gatewayworker::protocol::client_id::ClientId;
use gatewayworker::protocol::frame::{Command, FLAG_BINARY, FLAG_BODY_IS_SCALAR};
use tokio_tungstenite::tungstenite::Message;

/// A client event reaches the worker with the client's header, and the worker's reply
/// reaches the client: ON_CONNECT, ON_WEBSOCKET_CONNECT, ON_MESSAGE, SEND_TO_ONE.
#[tokio::test]
async fn message_round_trip_through_a_worker_link() {
    let gateway = start_gateway(1, |_| {});
    let lan = gateway.lan_addrs[0];
    let mut worker = TestLink::worker(lan, "Test:0").await;
    // Let the handshake frame land before the client connects.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = ws_connect(gateway.public_addr, "/chat?room=1").await;

    let connect = worker.next_frame().await;
    assert_eq!(connect.header.cmd, Command::OnConnect);
    assert_eq!(connect.header.local_port, lan.port());
    assert_eq!(connect.header.gateway_port, gateway.public_addr.port());
    let cid = connect.header.connection_id;
    assert_eq!(cid, 1, "first connection id of a fresh gateway");

    let hello = worker.next_frame().await;
    assert_eq!(hello.header.cmd, Command::OnWebsocketConnect);
    let body = String::from_utf8_lossy(&hello.body).into_owned();
    assert!(
        body.contains("s:4:\"room\";s:1:\"1\""),
        "get data in {body}"
    );

    ws_send_text(&mut ws, "hello").await;
    let message = worker.next_frame_of(Command::OnMessage).await;
    assert_eq!(message.header.connection_id, cid);
    assert_eq!(&message.body[..], b"hello");
    assert_eq!(
        message.header.flag & FLAG_BINARY,
        0,
        "text message has no binary bit"
    );

    worker
        .send(Command::SendToOne, cid, FLAG_BODY_IS_SCALAR, b"", b"world")
        .await;
    assert_eq!(ws_next(&mut ws).await, Message::text("world"));

    gateway.shutdown().unwrap();
}

/// Binary stays binary across the worker hop (our FLAG_BINARY extension), with its bytes
/// intact.
#[tokio::test]
async fn binary_messages_keep_their_type_and_bytes() {
    let gateway = start_gateway(1, |_| {});
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = ws_connect(gateway.public_addr, "/").await;
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;

    let payload: Vec<u8> = (0..=255u8).collect();
    ws.send(Message::binary(payload.clone())).await.unwrap();
    let message = worker.next_frame_of(Command::OnMessage).await;
    assert_eq!(&message.body[..], &payload[..]);
    assert_ne!(
        message.header.flag & FLAG_BINARY,
        0,
        "binary bit set on ON_MESSAGE"
    );

    worker
        .send(
            Command::SendToOne,
            cid,
            FLAG_BODY_IS_SCALAR | FLAG_BINARY,
            b"",
            &payload,
        )
        .await;
    assert_eq!(ws_next(&mut ws).await, Message::binary(payload));
    gateway.shutdown().unwrap();
}

/// A query on an API link is answered with a reply record; group commands from one link
/// are visible to the next query on it.
#[tokio::test]
async fn queries_answer_with_reply_records() {
    let gateway = start_gateway(1, |_| {});
    let lan = gateway.lan_addrs[0];
    let mut worker = TestLink::worker(lan, "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _a = ws_connect(gateway.public_addr, "/").await;
    let _b = ws_connect(gateway.public_addr, "/").await;
    let a = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    let _ = worker.next_frame_of(Command::OnConnect).await;

    let mut api = TestLink::connect(lan).await;
    api.send(Command::JoinGroup, a, 0, b"room", b"").await;
    api.send(Command::GetClientCountByGroup, 0, 0, b"room", b"")
        .await;
    assert_eq!(&api.next_reply().await[..], b"i:1;");
    api.send(Command::GetClientCountByGroup, 0, 0, b"", b"")
        .await;
    assert_eq!(
        &api.next_reply().await[..],
        b"i:2;",
        "empty group counts every client"
    );
    api.send(Command::IsOnline, 999, 0, b"", b"").await;
    assert_eq!(&api.next_reply().await[..], b"i:0;");
    gateway.shutdown().unwrap();
}

/// KICK sends the final message, then closes; the worker hears ON_CLOSE.
#[tokio::test]
async fn kick_sends_then_closes() {
    let gateway = start_gateway(1, |_| {});
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = ws_connect(gateway.public_addr, "/").await;
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;

    worker
        .send(Command::Kick, cid, FLAG_BODY_IS_SCALAR, b"", b"bye")
        .await;
    assert_eq!(ws_next(&mut ws).await, Message::text("bye"));
    let close = worker.next_frame_of(Command::OnClose).await;
    assert_eq!(close.header.connection_id, cid);
    gateway.shutdown().unwrap();
}

/// With no worker registered, a client is dropped at once (spec 5.2).
#[tokio::test]
async fn no_worker_means_the_client_is_dropped() {
    let gateway = start_gateway(1, |_| {});
    let url = format!("ws://{}/", gateway.public_addr);
    let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await;
    assert!(
        matches!(result, Ok(Err(_))),
        "handshake must fail: {result:?}"
    );
    gateway.shutdown().unwrap();
}

/// A malformed frame (length below the header) closes that link only: the worker and
/// its client keep working.
#[tokio::test]
async fn malformed_frame_closes_only_that_link() {
    let gateway = start_gateway(1, |_| {});
    let lan = gateway.lan_addrs[0];
    let (mut worker, mut ws, cid) = worker_and_client(&gateway).await;

    let mut bad = TestLink::connect(lan).await;
    let mut garbage = vec![0u8; 28];
    garbage[3] = 5; // pack_len = 5 < 28
    bad.send_raw(&garbage).await;
    assert!(bad.closed_by_peer().await, "malformed link is closed");

    worker
        .send(
            Command::SendToOne,
            cid,
            FLAG_BODY_IS_SCALAR,
            b"",
            b"still here",
        )
        .await;
    assert_eq!(ws_next(&mut ws).await, Message::text("still here"));
    gateway.shutdown().unwrap();
}

/// Several shards share the public port; each announces its own lan port and each
/// client id names the shard that holds the client.
#[tokio::test]
async fn shards_share_the_public_port() {
    let gateway = start_gateway(2, |_| {});
    assert_eq!(gateway.lan_addrs.len(), 2);
    let mut workers = Vec::new();
    for lan in &gateway.lan_addrs {
        workers.push(TestLink::worker(*lan, "Test:0").await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(ws_connect(gateway.public_addr, "/").await);
    }
    // Each client is announced by exactly one shard, with that shard's lan port.
    let mut seen = 0;
    for (worker, lan) in workers.iter_mut().zip(&gateway.lan_addrs) {
        while let Ok(frame) = tokio::time::timeout(
            Duration::from_millis(300),
            worker.next_frame_of(Command::OnConnect),
        )
        .await
        {
            let id = ClientId {
                local_ip: frame.header.local_ip,
                local_port: frame.header.local_port,
                connection_id: frame.header.connection_id,
            };
            assert_eq!(id.gateway_address().port(), lan.port());
            seen += 1;
        }
    }
    assert_eq!(seen, 8);
    let _ = Bytes::new();
    gateway.shutdown().unwrap();
}

/// Shutdown (SIGTERM in the binary): the client gets a close frame `1001 going away` after
/// what was queued for it, the worker gets its ON_CLOSE, then both connections end.
#[tokio::test]
async fn shutdown_sends_going_away_and_the_worker_hears_of_the_close() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let gateway = start_gateway(1, |_| {});
    let (mut worker, mut ws, cid) = worker_and_client(&gateway).await;
    worker
        .send(
            Command::SendToOne,
            cid,
            FLAG_BODY_IS_SCALAR,
            b"",
            b"last words",
        )
        .await;
    assert_eq!(ws_next(&mut ws).await, Message::text("last words"));

    let stopping = tokio::task::spawn_blocking(move || gateway.shutdown());
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("close frame expected, got {other:?}"),
        }
    };
    let close = close.expect("a close code");
    assert_eq!(close.code, CloseCode::Away);
    let on_close = worker.next_frame_of(Command::OnClose).await;
    assert_eq!(on_close.header.connection_id, cid);
    assert!(worker.closed_by_peer().await, "the worker link ends too");
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("shutdown in time")
        .unwrap()
        .unwrap();
}
