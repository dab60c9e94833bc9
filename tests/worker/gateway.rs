//! Our worker driver against our gateway over real sockets (two gateway shards), with a
//! tiny fake register and real WebSocket clients: events in, API calls out, query replies
//! interleaved with events on the same links, session write-back seen by the gateway.

use std::time::Duration;

use crate::common::*;
use bytes::Bytes;
use gatewayworker::api::CurrentClient;
use gatewayworker::api::{ApiCall, ApiResult};
use gatewayworker::net::TokioNet;
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::worker::core::{ClientEvent, ClientEventKind, WorkerConfig};
use gatewayworker::worker::DriverConfig;

use crate::harness::{run, ToWorker};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// The business code's side: events in, calls out.
struct Host {
    events: mpsc::UnboundedReceiver<ClientEvent>,
    commands: mpsc::Sender<ToWorker>,
    /// The event being handled: ended (nothing to write back) when the next is taken, as
    /// the business code must end every event before the client's next one comes.
    open: Option<ClientEvent>,
}

impl Host {
    async fn event(&mut self) -> ClientEvent {
        if let Some(prev) = self.open.take() {
            let end = ToWorker::EndEvent {
                client: prev.client,
                kind: prev.kind,
                old: PhpValue::Null,
                new: PhpValue::Null,
                reply: None,
            };
            self.commands.send(end).await.unwrap();
        }
        let event = tokio::time::timeout(WAIT, self.events.recv())
            .await
            .expect("event in time")
            .expect("worker running");
        self.open = Some(event.clone());
        event
    }

    async fn event_of(&mut self, kind: ClientEventKind) -> ClientEvent {
        loop {
            let e = self.event().await;
            if e.kind == kind {
                return e;
            }
        }
    }

    async fn call(&mut self, call: ApiCall, current: Option<&CurrentClient>) -> ApiResult {
        let (reply, result) = oneshot::channel();
        self.commands
            .send(ToWorker::Call {
                call,
                current: current.cloned(),
                reply,
            })
            .await
            .unwrap();
        tokio::time::timeout(WAIT, result)
            .await
            .expect("result in time")
            .unwrap()
            .result
    }
}

#[tokio::test]
async fn worker_and_gateway_speak_the_same_protocol() {
    let gateway = start_gateway(2, |_| {});
    let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let register_addr = register.local_addr().unwrap().to_string();
    let addresses: Vec<String> = gateway
        .lan_addrs
        .iter()
        .map(|a| format!("\"{a}\""))
        .collect();
    let broadcast = format!(
        "{{\"event\":\"broadcast_addresses\",\"addresses\":[{}]}}\n",
        addresses.join(",")
    );
    tokio::spawn(async move {
        let (stream, _) = register.accept().await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        stream.read_line(&mut line).await.unwrap();
        stream
            .get_mut()
            .write_all(broadcast.as_bytes())
            .await
            .unwrap();
        // Keep the connection open.
        let mut rest = String::new();
        let _ = stream.read_line(&mut rest).await;
    });

    let (events_tx, events) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::channel(64);
    let worker = run(
        TokioNet,
        WorkerConfig::new("it", 0, vec![register_addr]),
        DriverConfig::default(),
        events_tx,
        commands_rx,
    );
    let script = async move {
        let mut host = Host {
            events,
            commands,
            open: None,
        };
        // Wait until both links are registered with the gateway: a fan-out count answers.
        for _ in 0..100 {
            if host.call(ApiCall::GetAllClientCount, None).await == Ok(PhpValue::Int(0)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;

        let mut alice = ws_connect(gateway.public_addr, "/?name=alice").await;
        let a = host.event_of(ClientEventKind::Connect).await.client;
        let hello = host.event_of(ClientEventKind::WebSocketConnect).await;
        assert_eq!(hello.client.client_id, a.client_id);
        let mut bob = ws_connect(gateway.public_addr, "/?name=bob").await;
        let b = host.event_of(ClientEventKind::Connect).await.client;
        host.event_of(ClientEventKind::WebSocketConnect).await;
        assert_ne!(a.client_id, b.client_id);

        // A message, answered through the current client.
        ws_send_text(&mut alice, "hi").await;
        let m = host.event_of(ClientEventKind::Message).await;
        assert_eq!(m.body, PhpValue::str("hi"));
        assert_eq!(m.client.client_id, a.client_id);
        let sent = host
            .call(
                ApiCall::SendToCurrentClient {
                    message: PhpValue::str("hello alice"),
                    raw: false,
                },
                Some(&m.client),
            )
            .await;
        assert_eq!(sent, Ok(PhpValue::Bool(true)));
        assert_eq!(ws_next(&mut alice).await, Message::text("hello alice"));

        // Groups and queries across both shards.
        for (who, group) in [(&a, "room"), (&b, "room"), (&b, "7")] {
            host.call(
                ApiCall::JoinGroup {
                    client_id: who.client_id.clone(),
                    group: Bytes::from_static(group.as_bytes()),
                },
                None,
            )
            .await
            .unwrap();
        }
        host.call(
            ApiCall::BindUid {
                client_id: b.client_id.clone(),
                uid: Bytes::from_static(b"1002"),
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(
            host.call(ApiCall::GetAllClientCount, None).await,
            Ok(PhpValue::Int(2))
        );
        let members = host
            .call(
                ApiCall::GetClientIdListByGroup {
                    group: Bytes::from_static(b"room"),
                },
                None,
            )
            .await
            .unwrap();
        let PhpValue::Array(members) = members else {
            panic!("{members:?}")
        };
        assert_eq!(members.len(), 2);
        let groups = host.call(ApiCall::GetAllGroupIdList, None).await.unwrap();
        let PhpValue::Array(groups) = groups else {
            panic!()
        };
        assert!(
            groups.get(&PhpKey::Int(7)).is_some(),
            "numeric group comes back as an int"
        );
        assert_eq!(
            host.call(
                ApiCall::GetUidByClientId {
                    client_id: b.client_id.clone()
                },
                None
            )
            .await,
            Ok(PhpValue::str("1002"))
        );
        host.call(
            ApiCall::SendToGroup {
                groups: vec![Bytes::from_static(b"room")],
                message: PhpValue::str("to room"),
                exclude: Some(vec![a.client_id.clone()]),
                raw: false,
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(ws_next(&mut bob).await, Message::text("to room"));
        assert!(
            ws_silent(&mut alice, Duration::from_millis(200)).await,
            "alice excluded"
        );

        // Session written back after an event, then read through the API.
        let mut session = PhpArray::new();
        session.insert(PhpKey::from_bytes(b"name"), PhpValue::str("alice"));
        let session = PhpValue::Array(session);
        host.open = None;
        host.commands
            .send(ToWorker::EndEvent {
                client: m.client.clone(),
                kind: m.kind,
                old: PhpValue::Null,
                new: session.clone(),
                reply: None,
            })
            .await
            .unwrap();
        assert_eq!(
            host.call(
                ApiCall::GetSession {
                    client_id: a.client_id.clone()
                },
                None
            )
            .await,
            Ok(session.clone())
        );
        // The next event carries it.
        ws_send_text(&mut alice, "again").await;
        let m2 = host.event_of(ClientEventKind::Message).await;
        assert_eq!(m2.client.session, session);

        // Events keep flowing while queries are answered on the same links.
        for i in 0..20 {
            ws_send_text(&mut bob, &format!("m{i}")).await;
            let count = host.call(ApiCall::GetAllClientCount, None).await;
            assert_eq!(count, Ok(PhpValue::Int(2)));
        }
        for i in 0..20 {
            let e = host.event_of(ClientEventKind::Message).await;
            assert_eq!(e.body, PhpValue::str(&format!("m{i}")));
        }

        // Closing a client reaches the worker as ON_CLOSE.
        host.call(
            ApiCall::CloseClient {
                client_id: b.client_id.clone(),
                message: Some(PhpValue::str("bye")),
            },
            None,
        )
        .await
        .unwrap();
        assert_eq!(ws_next(&mut bob).await, Message::text("bye"));
        let closed = host.event_of(ClientEventKind::Close).await;
        assert_eq!(closed.client.client_id, b.client_id);
        gateway
    };
    let gateway = tokio::select! {
        biased;
        () = worker => panic!("the worker stopped"),
        gateway = tokio::time::timeout(Duration::from_secs(30), script) => gateway.expect("script in time"),
    };
    gateway.shutdown().unwrap();
}
