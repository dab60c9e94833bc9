//! The GatewayClient against scripted peers on 127.0.0.1, for what real parts do not show:
//! the register line it writes, a register list in PHP's object form (spec 9.16), the 1 s
//! list cache, a silent gateway under both timeout policies (spec 9.23), and the secret
//! key's PHP truthiness (`"0"` sends no auth prefix, like `$secretKey ? ... : ...`).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use gatewayworker::api::gather::TimeoutPolicy;
use gatewayworker::client::{ClientError, ClientSettings, GatewayClient, Gateways, LinkFailure};
use gatewayworker::protocol::frame::{Command, FrameDecoder};
use gatewayworker::testing::vectors::encode_hex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A register that records each request line and answers every one with `answer`.
async fn scripted_register(
    answer: String,
) -> (
    SocketAddr,
    Arc<AtomicUsize>,
    mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::unbounded_channel();
    let counter = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut line = Vec::new();
            let mut buf = [0u8; 1024];
            while !line.contains(&b'\n') {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => line.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tx.send(line);
            let _ = stream.write_all(format!("{answer}\n").as_bytes()).await;
        }
    });
    (addr, asked, rx)
}

/// A gateway that answers every request frame with the reply record `reply` (or never,
/// for `None`) and reports each connection's bytes.
async fn scripted_gateway(
    reply: Option<&'static [u8]>,
) -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut all = Vec::new();
                let mut input = BytesMut::new();
                let mut frames = FrameDecoder::default();
                let mut buf = [0u8; 4096];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    all.extend_from_slice(&buf[..n]);
                    input.extend_from_slice(&buf[..n]);
                    while let Ok(Some(frame)) = frames.decode(&mut input) {
                        // GATEWAY_CLIENT_CONNECT is never answered.
                        if frame.header.cmd == Command::GatewayClientConnect {
                            continue;
                        }
                        if let Some(reply) = reply {
                            let mut out = BytesMut::new();
                            out.put_u32(reply.len() as u32);
                            out.put_slice(reply);
                            let _ = stream.write_all(&out).await;
                        }
                    }
                }
                let _ = tx.send(all);
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn register_object_list_cache_and_silent_gateway_policies() {
    let (answering, _) = scripted_gateway(Some(b"i:3;")).await;
    let (silent, _) = scripted_gateway(None).await;
    // PHP's form after de-duplication: an object whose values are the addresses.
    let list = format!(
        r#"{{"event":"broadcast_addresses","addresses":{{"0":"{answering}","2":"{silent}"}}}}"#
    );
    let (register, asked, mut lines) = scripted_register(list).await;

    let client = GatewayClient::builder()
        .register(register.to_string())
        .secret("k/é")
        .reply_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gateways = client.gateways().await.unwrap();
    assert_eq!(
        gateways
            .iter()
            .map(|g| SocketAddr::V4(*g))
            .collect::<Vec<_>>(),
        vec![answering, silent]
    );
    // The line a PHP GatewayClient writes: json_encode escapes `/` and non-ASCII.
    assert_eq!(
        lines.recv().await.unwrap(),
        b"{\"event\":\"worker_connect\",\"secret_key\":\"k\\/\\u00e9\"}\n"
    );

    // The default policy names the silent gateway.
    let error = client.get_all_client_count().await.unwrap_err();
    let ClientError::Gateway { gateway, reason } = &error else {
        panic!("{error:?}")
    };
    assert_eq!(SocketAddr::V4(*gateway), silent);
    assert_eq!(
        *reason,
        LinkFailure::ReplyTimeout(Duration::from_millis(300))
    );
    // Both calls within a second: the register was asked once.
    assert_eq!(asked.load(Ordering::SeqCst), 1);

    // The original's policy: the sum of what answered.
    let partial = GatewayClient::builder()
        .register(register.to_string())
        .reply_timeout(Duration::from_millis(300))
        .timeout_policy(TimeoutPolicy::Partial)
        .build()
        .unwrap();
    assert_eq!(partial.get_all_client_count().await.unwrap(), 3);
    assert_eq!(asked.load(Ordering::SeqCst), 2, "a new client asks anew");

    // After the cache's second, the register is asked again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(partial.get_all_client_count().await.unwrap(), 3);
    assert_eq!(asked.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_empty_register_list_is_an_error() {
    let (register, _, _) =
        scripted_register(r#"{"event":"broadcast_addresses","addresses":[]}"#.to_owned()).await;
    let client = GatewayClient::builder()
        .register(register.to_string())
        .build()
        .unwrap();
    assert_eq!(
        client.send_to_all(b"x", &[]).await.unwrap_err(),
        ClientError::NoGateway {
            register: register.to_string()
        }
    );
}

/// `$secretKey ? auth . $buffer : $buffer`: the secret "0" is PHP-false, so no prefix.
#[tokio::test]
async fn the_secret_zero_sends_no_prefix_like_php() {
    let (gateway, mut captured) = scripted_gateway(None).await;
    for (secret, prefixed) in [("0", false), ("00", true), ("", false)] {
        let client = GatewayClient::builder()
            .gateway(gateway.to_string())
            .secret(secret)
            .build()
            .unwrap();
        client.ungroup("g").await.unwrap();
        let bytes = captured.recv().await.unwrap();
        // UNGROUP (cmd 27), scalar empty body, ext_data "g": 28 + 1 bytes.
        let ungroup = format!("0000001d1b{}01000000000001{}", "0".repeat(32), "67");
        let hex = encode_hex(&bytes);
        assert!(hex.ends_with(&ungroup), "{secret:?}: {hex}");
        assert_eq!(hex.len() > ungroup.len(), prefixed, "{secret:?}: {hex}");
    }
}

/// `reply_size_max` and `register_line_bytes_max` are bounds: an answer of exactly the bound is
/// taken, one byte more is refused with the bound in the error.
#[tokio::test]
async fn replies_and_register_lines_are_bounded() {
    // `s:3:"abc";` is 10 bytes.
    let (gateway, _) = scripted_gateway(Some(b"s:3:\"abc\";")).await;
    for (max, ok) in [(10, true), (9, false)] {
        let client = GatewayClient::builder()
            .gateway(gateway.to_string())
            .reply_size_max(max)
            .build()
            .unwrap();
        let result = client.get_all_group_id_list().await;
        if ok {
            assert!(result.is_ok(), "{max}: {result:?}");
        } else {
            let Err(ClientError::Gateway { reason, .. }) = result else {
                panic!("{max}: {result:?}")
            };
            assert_eq!(reason, LinkFailure::TooLarge(9));
        }
    }

    let line = format!(r#"{{"event":"broadcast_addresses","addresses":["{gateway}"]}}"#);
    let (register, _, _) = scripted_register(line.clone()).await;
    // The bound counts the line with its `\n`.
    for (max, ok) in [(line.len() + 1, true), (line.len(), false)] {
        let mut settings = ClientSettings::new(Gateways::Register(vec![register.to_string()]));
        settings.register_line_bytes_max = max;
        let client = GatewayClient::new(settings);
        let result = client.gateways().await;
        if ok {
            assert_eq!(result.unwrap().len(), 1);
        } else {
            let error = result.unwrap_err();
            assert!(
                error
                    .to_string()
                    .ends_with(&format!("answer longer than {max} bytes")),
                "{error}"
            );
        }
    }
}

/// Persistent mode (`persistentConnection`): calls share one connection per gateway, each
/// request still prefixed with the auth frame; a connection the gateway closed is
/// replaced by a fresh one without failing the call.
#[tokio::test]
async fn persistent_mode_reuses_a_connection_and_survives_its_close() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let (cmds_tx, mut cmds) = mpsc::unbounded_channel();
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let cmds_tx = cmds_tx.clone();
            tokio::spawn(async move {
                let mut input = BytesMut::new();
                let mut frames = FrameDecoder::default();
                let mut requests = 0;
                let mut buf = [0u8; 4096];
                loop {
                    let read = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => read,
                    };
                    input.extend_from_slice(&buf[..read]);
                    while let Ok(Some(frame)) = frames.decode(&mut input) {
                        let cmd = frame.header.cmd;
                        let _ = cmds_tx.send(cmd);
                        if cmd == Command::GetGroupIdList {
                            let _ = stream.write_all(b"\0\0\0\x06a:0:{}").await;
                        }
                        if cmd != Command::GatewayClientConnect {
                            requests += 1;
                        }
                    }
                    // The first connection is closed by the "gateway" after 3 requests.
                    if n == 0 && requests == 3 {
                        return;
                    }
                }
            });
        }
    });

    let client = GatewayClient::builder()
        .gateway(addr.to_string())
        .secret("k")
        .persistent(true)
        .build()
        .unwrap();
    client.ungroup("a").await.unwrap();
    assert!(client.get_all_group_id_list().await.unwrap().is_empty());
    client.ungroup("b").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(cmds.recv().await.unwrap());
    }
    assert_eq!(
        seen,
        [
            Command::GatewayClientConnect,
            Command::Ungroup,
            Command::GatewayClientConnect,
            Command::GetGroupIdList,
            Command::GatewayClientConnect,
            Command::Ungroup,
        ]
    );
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "one connection for three calls"
    );

    // The gateway closed it; the next query goes through a new connection.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(client.get_all_group_id_list().await.unwrap().is_empty());
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

/// A register list that lacks a gateway the previous list had is not cached: after a
/// register restart the first lists are partial while the gateways re-register, and the
/// original's 1 s cache would make every call of that second miss their clients. The next
/// call asks again; a list that only confirms the loss is cached as usual.
#[tokio::test]
async fn a_register_list_that_lost_gateways_is_not_cached() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let register = listener.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let list =
        |addresses: &str| format!(r#"{{"event":"broadcast_addresses","addresses":[{addresses}]}}"#);
    let answers = [
        list(r#""127.0.0.1:4001","127.0.0.1:4002""#),
        list(r#""127.0.0.1:4001""#),
    ];
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let answer = answers[n.min(answers.len() - 1)].clone();
            let mut line = Vec::new();
            let mut buf = [0u8; 1024];
            while !line.contains(&b'\n') {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => line.extend_from_slice(&buf[..n]),
                }
            }
            let _ = stream.write_all(format!("{answer}\n").as_bytes()).await;
        }
    });
    let client = GatewayClient::builder()
        .register(register.to_string())
        .build()
        .unwrap();
    assert_eq!(client.gateways().await.unwrap().len(), 2);
    assert_eq!(client.gateways().await.unwrap().len(), 2, "cached");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(client.gateways().await.unwrap().len(), 1, "a gateway left");
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(client.gateways().await.unwrap().len(), 1);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "the shrunk list was not cached: asked again at once"
    );
    assert_eq!(client.gateways().await.unwrap().len(), 1);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        3,
        "the same list again: cached as usual"
    );
}
