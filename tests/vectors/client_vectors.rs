//! The bytes a [`GatewayClient`] writes, captured by scripted TCP listeners standing in for
//! the `sender_api` vectors' three gateways (the client dials them through its `dial`
//! map): for every vector whose arguments are plain strings, each gateway connection
//! carries the vector's auth prefix (`sender_api/auth_prefix`) followed by the vector's
//! frame, byte for byte — one connection per frame, as the PHP GatewayClient opens them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::sender_vectors::api_call;
use bytes::{BufMut, BytesMut};
use gatewayworker::api::ApiCall;
use gatewayworker::client::GatewayClient;
use gatewayworker::protocol::frame::{Command, FrameDecoder};
use gatewayworker::testing::vectors::{encode_hex, section, vector};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Commands answered with a reply record (spec 2.3).
fn is_query(cmd: Command) -> bool {
    matches!(
        cmd,
        Command::GetAllClientSessions
            | Command::IsOnline
            | Command::GetClientIdByUid
            | Command::BatchGetClientIdByUid
            | Command::GetClientSessionsByGroup
            | Command::GetClientCountByGroup
            | Command::Select
            | Command::GetGroupIdList
            | Command::BatchGetClientCountByGroup
            | Command::GetSessionByClientId
    )
}

/// A scripted gateway: records every connection's bytes; answers `N;` once a query frame
/// is complete.
async fn scripted_gateway(
    index: usize,
    captured: mpsc::UnboundedSender<(usize, Vec<u8>)>,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let captured = captured.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let mut input = BytesMut::new();
                let mut frames = FrameDecoder::default();
                let mut buf = [0u8; 4096];
                loop {
                    let n =
                        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
                            .await
                        {
                            Ok(Ok(n)) => n,
                            _ => 0,
                        };
                    if n == 0 {
                        break;
                    }
                    all.extend_from_slice(&buf[..n]);
                    input.extend_from_slice(&buf[..n]);
                    while let Ok(Some(frame)) = frames.decode(&mut input) {
                        if is_query(frame.header.cmd) {
                            let mut reply = BytesMut::new();
                            reply.put_u32(2);
                            reply.put_slice(b"N;");
                            let _ = stream.write_all(&reply).await;
                        }
                    }
                }
                let _ = captured.send((index, all));
            });
        }
    });
    addr
}

/// The vector's call as an `ApiCall`, as a GatewayClient can make it: it has no `raw`
/// for sendToClient and sendToUid (vectors sendToClient_raw and sendToUid differ).
fn client_call(v: &Value) -> Option<ApiCall> {
    api_call(v).filter(|call| {
        !matches!(
            call,
            ApiCall::SendToClient { raw: true, .. } | ApiCall::SendToUid { raw: true, .. }
        )
    })
}

/// Expected: gateway address → its frames (hex), in order.
fn expected(v: &Value) -> BTreeMap<String, Vec<String>> {
    v["expected"]["sent"]
        .as_array()
        .expect("sent")
        .iter()
        .map(|e| {
            let frames = e["frames"]
                .as_array()
                .expect("frames")
                .iter()
                .map(|f| f["frame_hex"].as_str().unwrap().to_string())
                .collect();
            (e["address"].as_str().unwrap().to_string(), frames)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_writes_the_vector_bytes_with_the_auth_prefix() {
    let auth = vector("sender_api", "auth_prefix");
    let secret = auth["input"]["secret_key"].as_str().unwrap();
    let prefix = auth["expected"]["frame_hex"].as_str().unwrap().to_string();

    let mut checked = Vec::new();
    for v in section("sender_api") {
        if v["name"] == "auth_prefix" {
            continue;
        }
        let Some(call) = client_call(v) else {
            continue;
        };
        let gateways: Vec<String> = v["input"]["gateways"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g.as_str().unwrap().to_string())
            .collect();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut builder = GatewayClient::builder().secret(secret);
        for (i, g) in gateways.iter().enumerate() {
            let dialled = scripted_gateway(i, tx.clone()).await;
            builder = builder.gateway(g.clone()).dial(g.clone(), dialled);
        }
        let client = builder.build().unwrap();
        client
            .call(&call)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", v["name"]));

        let want = expected(v);
        let connections: usize = want.values().map(Vec::len).sum();
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for _ in 0..connections {
            let (index, bytes) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: a connection is missing", v["name"]))
                .unwrap();
            got.entry(gateways[index].clone())
                .or_default()
                .push(encode_hex(&bytes));
        }
        // Nothing more arrives: one connection per expected frame.
        assert!(
            tokio::time::timeout(Duration::from_millis(100), rx.recv())
                .await
                .is_err(),
            "{}: an extra connection",
            v["name"]
        );
        let want: BTreeMap<String, Vec<String>> = want
            .into_iter()
            .map(|(addr, frames)| {
                let mut frames: Vec<String> =
                    frames.into_iter().map(|f| format!("{prefix}{f}")).collect();
                frames.sort();
                (addr, frames)
            })
            .collect();
        for frames in got.values_mut() {
            frames.sort();
        }
        assert_eq!(got, want, "vector {}", v["name"]);
        checked.push(v["name"].as_str().unwrap().to_string());
    }
    eprintln!("checked through the client: {checked:?}");
    // Left out: sendToClient_raw (a GatewayClient has no raw there), sendToUid and
    // sendToGroup_exclude (int arguments an ApiCall cannot carry), setSocketSession_clear
    // and select_* (worker internals).
    assert_eq!(checked.len(), 23, "vectors through the client: {checked:?}");
}
