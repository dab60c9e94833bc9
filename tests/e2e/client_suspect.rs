//! The GatewayClient library and a stalled gateway (issue 18, item 1): one of our gateways
//! on 127.0.0.1 that answers, next to a gateway that accepts and does not answer until it
//! is released, or one whose connects hang (a full accept backlog). A call stops waiting
//! for the stalled one after `suspect_after`, later calls do not wait for it at all, and
//! its first answer clears the mark.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use gatewayworker::api::gather::TimeoutPolicy;
use gatewayworker::client::{ClientError, GatewayClient, LinkFailure};
use gatewayworker::gateway::shards::RunningGateway;
use gatewayworker::protocol::frame::{Command, FrameDecoder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};

use super::client_sockets::{eventually, next_text, worker_link};
use crate::common::*;

/// Short, but long enough that our gateway on 127.0.0.1 always answers within it even on a
/// loaded test host (a false suspicion of it would name the wrong gateway).
const SUSPECT_AFTER: Duration = Duration::from_secs(1);
/// Far above the suspect time: a call that waited for it would break the bound below.
const LONG: Duration = Duration::from_secs(10);
/// A call over a stalled gateway returns within this (a behaviour bound: without the
/// suspect mark it takes [`LONG`]).
const BOUND: Duration = Duration::from_secs(5);

/// One of our gateways with a worker link and one WebSocket client on it.
async fn answering_gateway() -> (RunningGateway, TestLink, WsClient) {
    let gateway = start_gateway(1, |_| {});
    let worker = worker_link(gateway.lan_addrs[0], "").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ws = ws_connect(gateway.public_addr, "/").await;
    (gateway, worker, ws)
}

/// A gateway that reads every request and reports its command, but answers (`i:2;` to
/// any query) only once `release` is set to true.
async fn held_gateway() -> (SocketAddr, watch::Sender<bool>, mpsc::UnboundedReceiver<u8>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (release, released) = watch::channel(false);
    let (tx, commands) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_held(stream, released.clone(), tx.clone()));
        }
    });
    (addr, release, commands)
}

async fn serve_held(
    mut stream: TcpStream,
    mut released: watch::Receiver<bool>,
    commands: mpsc::UnboundedSender<u8>,
) {
    let mut input = BytesMut::new();
    let mut frames = FrameDecoder::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        input.extend_from_slice(&buf[..n]);
        while let Ok(Some(frame)) = frames.decode(&mut input) {
            let _ = commands.send(frame.header.cmd as u8);
            if released.wait_for(|r| *r).await.is_err() {
                return;
            }
            let mut out = BytesMut::new();
            out.put_u32(4);
            out.put_slice(b"i:2;");
            let _ = stream.write_all(&out).await;
        }
    }
}

fn client(gateways: &[SocketAddr], policy: TimeoutPolicy) -> GatewayClient {
    let mut builder = GatewayClient::builder()
        .connect_timeout(LONG)
        .reply_timeout(LONG)
        .suspect_after(SUSPECT_AFTER)
        .timeout_policy(policy);
    for g in gateways {
        builder = builder.gateway(g.to_string());
    }
    builder.build().unwrap()
}

fn v4(addr: SocketAddr) -> std::net::SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("127.0.0.1"),
    }
}

/// The command numbers received within `wait`, then nothing more for a moment.
async fn commands_seen(commands: &mut mpsc::UnboundedReceiver<u8>, wait: Duration) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut wait = wait;
    while let Ok(Some(cmd)) = tokio::time::timeout(wait, commands.recv()).await {
        seen.push(cmd);
        wait = Duration::from_millis(200);
    }
    seen
}

const COUNT: u8 = Command::GetClientCountByGroup as u8;

/// A query over an answering and a held gateway gives up on the held one after
/// `suspect_after` (`ok:false` naming it, or the partial result under the partial
/// policy), the next calls do not ask it (one probe does), and once it answers the mark
/// clears and full results come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_gateway_is_suspected_skipped_then_cleared() {
    let (gateway, _worker, _ws) = answering_gateway().await;
    let answering = gateway.lan_addrs[0];
    let (held, release, mut commands) = held_gateway().await;
    let only_answering = client(&[answering], TimeoutPolicy::Fail);
    eventually("the client is counted", || async {
        only_answering.get_all_client_count().await.ok() == Some(1)
    })
    .await;

    let failing = client(&[answering, held], TimeoutPolicy::Fail);
    let started = std::time::Instant::now();
    let error = failing.get_all_client_count().await.unwrap_err();
    let took = started.elapsed();
    assert!(took < BOUND, "the first query waited {took:?}");
    assert_eq!(
        error,
        ClientError::Gateway {
            gateway: v4(held),
            reason: LinkFailure::Suspect(SUSPECT_AFTER),
        }
    );
    assert_eq!(failing.suspect_gateways(), vec![v4(held)]);
    assert_eq!(commands_seen(&mut commands, BOUND).await, vec![COUNT]);

    // While suspect: not asked at all (the call's Select never reaches it), one probe.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        let error = failing.get_all_uid_count().await.unwrap_err();
        assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
        assert!(
            matches!(&error, ClientError::Gateway { gateway, reason: LinkFailure::Suspect(_) } if *gateway == v4(held)),
            "{error:?}"
        );
    }
    assert_eq!(commands_seen(&mut commands, BOUND).await, vec![COUNT]);
    let stats = failing.stats();
    assert_eq!(stats.gateways_suspected, 1, "{stats:?}");
    assert_eq!(stats.query_parts_suspect, 4, "{stats:?}");
    assert_eq!(stats.probes, 1, "{stats:?}");
    assert_eq!(stats.gateways_cleared, 0, "{stats:?}");

    // The original's policy: what the answering gateway said, as soon.
    let partial = client(&[answering, held], TimeoutPolicy::Partial);
    for _ in 0..2 {
        let started = std::time::Instant::now();
        assert_eq!(partial.get_all_client_count().await.unwrap(), 1);
        assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    }
    assert_eq!(partial.stats().gateways_suspected, 1);
    assert_eq!(partial.stats().query_parts_suspect, 2);

    // It answers again: the probe's answer clears the mark; full results.
    release.send(true).unwrap();
    eventually("the mark clears", || async {
        failing.suspect_gateways().is_empty()
    })
    .await;
    assert_eq!(failing.get_all_client_count().await.unwrap(), 3);
    assert_eq!(failing.stats().gateways_cleared, 1);
    eventually("the partial client's mark clears", || async {
        partial.suspect_gateways().is_empty()
    })
    .await;
    assert_eq!(partial.get_all_client_count().await.unwrap(), 3);
    gateway.shutdown().unwrap();
}

/// A listener whose accept backlog is full, so that a connect to it hangs, with the
/// connections that filled it; `None` where this cannot be made (the test is skipped).
async fn hanging_listener() -> Option<(SocketAddr, tokio::net::TcpListener, Vec<TcpStream>)> {
    let socket = TcpSocket::new_v4().ok()?;
    socket.bind("127.0.0.1:0".parse().unwrap()).ok()?;
    let listener = socket.listen(0).ok()?;
    let addr = listener.local_addr().ok()?;
    let mut held = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            Ok(Err(_)) => return None,
            Err(_) => return Some((addr, listener, held)),
        }
    }
    None
}

/// A gateway whose connects hang: sends do not wait for it past `suspect_after` (they go
/// on in the background) and stop waiting for it at all once it is suspect; queries report
/// it missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_connects_hang_does_not_hold_sends() {
    let Some((hanging, listener, filled)) = hanging_listener().await else {
        eprintln!("skipped: no way here to make a connect hang (accept backlog not bounded)");
        return;
    };
    let (gateway, _worker, mut ws) = answering_gateway().await;
    let answering = gateway.lan_addrs[0];
    let only_answering = client(&[answering], TimeoutPolicy::Fail);
    eventually("the client is counted", || async {
        only_answering.get_all_client_count().await.ok() == Some(1)
    })
    .await;

    let client = client(&[answering, hanging], TimeoutPolicy::Fail);
    for round in 0..3 {
        let started = std::time::Instant::now();
        client
            .send_to_all(format!("hello {round}"), &[])
            .await
            .unwrap();
        assert!(
            started.elapsed() < BOUND,
            "send {round}: {:?}",
            started.elapsed()
        );
        assert_eq!(next_text(&mut ws).await, format!("hello {round}"));
    }
    let started = std::time::Instant::now();
    let error = client.get_all_client_count().await.unwrap_err();
    assert!(started.elapsed() < BOUND, "{:?}", started.elapsed());
    assert_eq!(
        error,
        ClientError::Gateway {
            gateway: v4(hanging),
            reason: LinkFailure::Suspect(SUSPECT_AFTER),
        }
    );
    let stats = client.stats();
    assert_eq!(stats.gateways_suspected, 1, "{stats:?}");
    assert_eq!(stats.send_parts_background, 3, "{stats:?}");
    assert_eq!(stats.query_parts_suspect, 1, "{stats:?}");
    assert_eq!(stats.probes, 1, "{stats:?}");

    // It dies: the probe's connect is refused, which clears the mark (nothing hangs any
    // more), and calls report the refusal again, at once.
    drop((listener, filled));
    eventually("the mark clears", || async {
        client.suspect_gateways().is_empty()
    })
    .await;
    let error = client.send_to_all("after", &[]).await.unwrap_err();
    assert!(
        matches!(&error, ClientError::Gateway { gateway, reason: LinkFailure::Connect(_) } if *gateway == v4(hanging)),
        "{error:?}"
    );
    assert_eq!(next_text(&mut ws).await, "after");
    gateway.shutdown().unwrap();
}
