//! The GatewayClient library against the real parts on 127.0.0.1: our register, two of our
//! gateways announcing themselves to it, a scripted worker link on each (so that clients
//! are kept: a gateway without workers drops them), and WebSocket clients of a real client
//! crate. Every call of the API is made through the library and checked from the
//! clients' side or by a query.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use crate::common::*;
use bytes::BytesMut;
use futures_util::StreamExt;
use gatewayworker::api::ApiError;
use gatewayworker::client::{ClientError, GatewayClient, LinkFailure};
use gatewayworker::gateway::shards::RunningGateway;
use gatewayworker::protocol::frame::{encode_frame, Command, Header, FLAG_BODY_IS_SCALAR};
use gatewayworker::protocol::php::json::{json_decode, to_json_value};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::register::driver::{start, RegisterSettings, RunningRegister};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

pub(crate) const SECRET: &str = "s3cr3t";

pub(crate) fn start_register(secret: &str) -> RunningRegister {
    start(RegisterSettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        secret,
    ))
    .expect("register starts")
}

pub(crate) fn start_announced_gateway(register: SocketAddr, secret: &str) -> RunningGateway {
    start_gateway(1, |s| {
        s.core.register_addresses = vec![register.to_string()];
        s.core.secret_key = bytes::Bytes::copy_from_slice(secret.as_bytes());
    })
}

/// A worker link that presents `secret`; it only has to exist, so that clients are kept.
pub(crate) async fn worker_link(lan: SocketAddr, secret: &str) -> TestLink {
    let mut link = TestLink::connect(lan).await;
    let body = format!("{{\"worker_key\":\"Test:0\",\"secret_key\":\"{secret}\"}}");
    let mut header = Header::new(Command::WorkerConnect);
    header.flag = FLAG_BODY_IS_SCALAR;
    let mut buf = BytesMut::new();
    encode_frame(&mut buf, &header, b"", body.as_bytes());
    link.stream.write_all(&buf).await.unwrap();
    link
}

/// Retries `check` until it returns true (commands and queries travel on separate
/// connections, as in the original, so a query may overtake a command just sent).
pub(crate) async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not reached in time: {what}");
}

fn json(text: &str) -> PhpValue {
    json_decode(text.as_bytes()).expect("test JSON")
}

/// A map result as JSON whose equality ignores key order: which gateway's rows come first
/// depends on which gateway registered first.
fn unordered(value: &PhpValue) -> serde_json::Value {
    to_json_value(value).expect("JSON-able result")
}

pub(crate) async fn next_text(ws: &mut WsClient) -> String {
    match ws_next(ws).await {
        Message::Text(t) => t.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

/// True when the client's connection was closed by the gateway within [`WAIT`].
async fn closed(ws: &mut WsClient) -> bool {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => continue,
        }
    }
}

/// A cluster: register, two gateways, a worker link on each, two clients on each.
pub(crate) struct Cluster {
    pub(crate) register: RunningRegister,
    gateways: Vec<RunningGateway>,
    _workers: Vec<TestLink>,
    pub(crate) clients: Vec<WsClient>,
    /// Client ids in the order of `clients`.
    pub(crate) ids: Vec<String>,
    pub(crate) client: GatewayClient,
}

pub(crate) async fn cluster() -> Cluster {
    cluster_with(false).await
}

async fn cluster_with(persistent: bool) -> Cluster {
    let register = start_register(SECRET);
    let gateways = vec![
        start_announced_gateway(register.addr, SECRET),
        start_announced_gateway(register.addr, SECRET),
    ];
    let client = GatewayClient::builder()
        .register(register.addr.to_string())
        .secret(SECRET)
        .persistent(persistent)
        .build()
        .unwrap();
    eventually("both gateways registered", || async {
        client.gateways().await.map(|g| g.len()).unwrap_or(0) == 2
    })
    .await;
    let mut workers = Vec::new();
    for g in &gateways {
        workers.push(worker_link(g.lan_addrs[0], SECRET).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut clients = Vec::new();
    for g in &gateways {
        for _ in 0..2 {
            clients.push(ws_connect(g.public_addr, "/").await);
        }
    }
    // Learn each client's id: send every id to itself and see who gets which.
    eventually("4 clients counted", || async {
        client.get_all_client_count().await.ok() == Some(4)
    })
    .await;
    let all = client.get_all_client_id_list().await.unwrap();
    assert_eq!(all.len(), 4);
    for id in &all {
        client.send_to_client(id, id.as_bytes()).await.unwrap();
    }
    let mut ids = Vec::new();
    for ws in &mut clients {
        ids.push(next_text(ws).await);
    }
    let distinct: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 4, "each client got its own id: {ids:?}");
    Cluster {
        register,
        gateways,
        _workers: workers,
        clients,
        ids,
        client,
    }
}

impl Cluster {
    pub(crate) fn shutdown(self) {
        for g in self.gateways {
            g.shutdown().unwrap();
        }
        self.register.shutdown().unwrap();
    }
}

fn set(list: Vec<String>) -> BTreeSet<String> {
    list.into_iter().collect()
}

/// Sends reach the right clients: to all (with and without excludes), to a list, to a
/// uid, to a group with excludes on both gateways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sends_reach_the_right_clients() {
    let mut c = cluster().await;
    let client = c.client.clone();
    let id = c.ids.clone();

    client.send_to_all(b"everyone", &[]).await.unwrap();
    for ws in &mut c.clients {
        assert_eq!(next_text(ws).await, "everyone");
    }

    // Excluded: one client on each gateway.
    client
        .send_to_all(b"most", &[&id[0], &id[3]])
        .await
        .unwrap();
    assert_eq!(next_text(&mut c.clients[1]).await, "most");
    assert_eq!(next_text(&mut c.clients[2]).await, "most");

    client
        .send_to_clients(&[&id[0], &id[2], &id[3]], b"listed", &[&id[3]])
        .await
        .unwrap();
    assert_eq!(next_text(&mut c.clients[0]).await, "listed");
    assert_eq!(next_text(&mut c.clients[2]).await, "listed");

    client.bind_uid(&id[1], "ann").await.unwrap();
    client.bind_uid(&id[2], "ann").await.unwrap();
    eventually("ann bound twice", || async {
        client.get_client_id_by_uid("ann").await.unwrap().len() == 2
    })
    .await;
    client.send_to_uid(&["ann"], b"to ann").await.unwrap();
    assert_eq!(next_text(&mut c.clients[1]).await, "to ann");
    assert_eq!(next_text(&mut c.clients[2]).await, "to ann");

    for i in [0, 1, 2, 3] {
        client.join_group(&id[i], "room").await.unwrap();
    }
    eventually("room of 4", || async {
        client.get_client_count_by_group("room").await.unwrap() == 4
    })
    .await;
    client
        .send_to_group("room", b"hi room", &[&id[1], &id[2]])
        .await
        .unwrap();
    assert_eq!(next_text(&mut c.clients[0]).await, "hi room");
    assert_eq!(next_text(&mut c.clients[3]).await, "hi room");

    // Nobody got anything more than asserted: a final broadcast is everyone's next message.
    client.send_to_all(b"end", &[]).await.unwrap();
    for ws in &mut c.clients {
        assert_eq!(next_text(ws).await, "end");
    }
    c.shutdown();
}

/// Queries fan out to both gateways and are merged as a worker merges them: counts
/// summed, client ids rebuilt from each gateway's address, uid and group maps joined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_merge_both_gateways() {
    let c = cluster().await;
    let client = c.client.clone();
    let id = c.ids.clone();

    assert_eq!(client.get_all_client_count().await.unwrap(), 4);
    assert_eq!(
        set(client.get_all_client_id_list().await.unwrap()),
        set(id.clone())
    );

    client.bind_uid(&id[0], "ann").await.unwrap();
    client.bind_uid(&id[3], "ann").await.unwrap();
    client.bind_uid(&id[1], "1002").await.unwrap();
    client.join_group(&id[0], "red").await.unwrap();
    client.join_group(&id[2], "red").await.unwrap();
    client.join_group(&id[3], "blue").await.unwrap();
    eventually("binds and joins applied", || async {
        client.get_all_uid_count().await.unwrap() == 2
            && client.get_client_count_by_group("red").await.unwrap() == 2
            && client.get_client_count_by_group("blue").await.unwrap() == 1
            && client.get_client_id_by_uid("ann").await.unwrap().len() == 2
    })
    .await;

    assert_eq!(
        set(client.get_client_id_by_uid("ann").await.unwrap()),
        set(vec![id[0].clone(), id[3].clone()])
    );
    assert!(client.is_uid_online("ann").await.unwrap());
    assert!(!client.is_uid_online("nobody").await.unwrap());
    assert_eq!(
        client
            .get_uid_by_client_id(&id[1])
            .await
            .unwrap()
            .as_deref(),
        Some("1002")
    );
    assert_eq!(client.get_uid_by_client_id(&id[2]).await.unwrap(), None);
    assert_eq!(
        set(client.get_all_uid_list().await.unwrap()),
        set(vec!["ann".into(), "1002".into()])
    );
    assert_eq!(
        set(client.get_client_id_list_by_group("red").await.unwrap()),
        set(vec![id[0].clone(), id[2].clone()])
    );
    assert_eq!(
        client.get_uid_list_by_group("red").await.unwrap(),
        vec!["ann".to_owned()]
    );
    assert_eq!(client.get_uid_count_by_group("blue").await.unwrap(), 1);
    assert_eq!(
        set(client.get_all_group_id_list().await.unwrap()),
        set(vec!["red".into(), "blue".into()])
    );
    let counts = client.get_all_group_client_id_count().await.unwrap();
    assert_eq!(
        unordered(&counts),
        unordered(&json(r#"{"red":2,"blue":1}"#))
    );
    let batch = client
        .batch_get_client_count_by_group(&["red", "blue", "none"])
        .await
        .unwrap();
    assert_eq!(batch, json(r#"{"red":2,"blue":1,"none":0}"#));
    let online = client.is_uids_online(&["ann", "bob"]).await.unwrap();
    assert_eq!(online, json(r#"{"ann":1,"bob":0}"#));
    let uids = client.get_all_group_uid_list().await.unwrap();
    assert_eq!(
        unordered(&uids),
        unordered(&json(r#"{"red":{"ann":"ann"},"blue":{"ann":"ann"}}"#))
    );
    // The merge keeps every member's client id under its group.
    let members = client.get_all_group_client_id_list().await.unwrap();
    let red = format!(r#""red":{{"{0}":"{0}","{1}":"{1}"}}"#, id[0], id[2]);
    let blue = format!(r#""blue":{{"{0}":"{0}"}}"#, id[3]);
    assert_eq!(
        unordered(&members),
        unordered(&json(&format!("{{{red},{blue}}}")))
    );

    // Leaving and dissolving groups.
    client.leave_group(&id[0], "red").await.unwrap();
    client.ungroup("blue").await.unwrap();
    eventually("only red with one member", || async {
        client.get_all_group_id_list().await.unwrap() == vec!["red".to_owned()]
            && client.get_client_count_by_group("red").await.unwrap() == 1
    })
    .await;
    client.unbind_uid(&id[0], "ann").await.unwrap();
    eventually("ann on one client", || async {
        client.get_client_id_by_uid("ann").await.unwrap() == vec![id[3].clone()]
    })
    .await;
    c.shutdown();
}

/// Sessions: set, read, update (merged by the gateway), all sessions; unknown client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_set_get_update() {
    let c = cluster().await;
    let client = c.client.clone();
    let id = c.ids.clone();

    assert_eq!(
        client.get_session(&id[0]).await.unwrap(),
        Some(json("[]")),
        "a known client without a session has an empty one"
    );
    client
        .set_session(&id[0], json(r#"{"name":"ann","room":1}"#))
        .await
        .unwrap();
    eventually("session set", || async {
        client.get_session(&id[0]).await.unwrap() == Some(json(r#"{"name":"ann","room":1}"#))
    })
    .await;
    client
        .update_session(&id[0], json(r#"{"room":2,"age":30}"#))
        .await
        .unwrap();
    eventually("session merged", || async {
        client.get_session(&id[0]).await.unwrap()
            == Some(json(r#"{"name":"ann","room":2,"age":30}"#))
    })
    .await;
    client
        .set_session(&id[3], json(r#"{"x":1}"#))
        .await
        .unwrap();
    eventually("second session", || async {
        client.get_session(&id[3]).await.unwrap() == Some(json(r#"{"x":1}"#))
    })
    .await;
    let all = client.get_all_client_sessions().await.unwrap();
    let PhpValue::Array(all) = all else {
        panic!("sessions map")
    };
    assert_eq!(all.len(), 4);
    client.join_group(&id[3], "g").await.unwrap();
    eventually("group sessions", || async {
        client.get_client_sessions_by_group("g").await.unwrap()
            == json(&format!(r#"{{"{}":{{"x":1}}}}"#, id[3]))
    })
    .await;

    // An id of a live gateway but of no client: null.
    let mut unknown = id[0].clone();
    unknown.replace_range(12.., "ffffff00");
    assert_eq!(client.get_session(&unknown).await.unwrap(), None);
    assert!(!client.is_online(&unknown).await.unwrap());

    // The library refuses what the original throws on.
    assert_eq!(
        client.get_session("abc").await.unwrap_err(),
        ClientError::Api(ApiError::MalformedClientId)
    );
    assert!(matches!(
        client.set_session(&id[0], PhpValue::str("x")).await,
        Err(ClientError::Api(ApiError::BadArgument(_)))
    ));
    c.shutdown();
}

/// is_online, close_client with a last message, destroy_client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kick_and_destroy() {
    let mut c = cluster().await;
    let client = c.client.clone();
    let id = c.ids.clone();

    assert!(client.is_online(&id[1]).await.unwrap());
    client.close_client(&id[1], Some(b"bye")).await.unwrap();
    assert_eq!(next_text(&mut c.clients[1]).await, "bye");
    assert!(closed(&mut c.clients[1]).await);
    client.destroy_client(&id[2]).await.unwrap();
    assert!(closed(&mut c.clients[2]).await);
    eventually("two clients left", || async {
        client.get_all_client_count().await.unwrap() == 2
    })
    .await;
    assert!(!client.is_online(&id[1]).await.unwrap());
    assert!(!client.is_online(&id[2]).await.unwrap());
    assert!(client.is_online(&id[3]).await.unwrap());
    c.shutdown();
}

/// Persistent mode against real gateways: the same calls, over kept connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_client_against_real_gateways() {
    let mut c = cluster_with(true).await;
    let client = c.client.clone();
    let id = c.ids.clone();
    for i in [0, 2] {
        client.join_group(&id[i], "p").await.unwrap();
    }
    // One connection per gateway, used in order: the joins are applied before the count.
    assert_eq!(client.get_client_count_by_group("p").await.unwrap(), 2);
    client.send_to_group("p", b"kept", &[]).await.unwrap();
    assert_eq!(next_text(&mut c.clients[0]).await, "kept");
    assert_eq!(next_text(&mut c.clients[2]).await, "kept");
    assert_eq!(client.get_all_client_count().await.unwrap(), 4);
    c.shutdown();
}

/// A wrong secret is a clear error: the register closes without a list, a gateway closes
/// a query's connection without a reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_is_a_clear_error() {
    let register = start_register(SECRET);
    let gateway = start_announced_gateway(register.addr, SECRET);

    let via_register = GatewayClient::builder()
        .register(register.addr.to_string())
        .secret("wrong")
        .build()
        .unwrap();
    let error = via_register.get_all_client_count().await.unwrap_err();
    assert!(matches!(error, ClientError::Register { .. }), "{error:?}");
    assert!(error.to_string().contains("wrong secret key"), "{error}");

    let lan = gateway.lan_addrs[0].to_string();
    let direct = GatewayClient::builder()
        .gateway(lan.clone())
        .secret("wrong")
        .build()
        .unwrap();
    let error = direct.get_all_client_count().await.unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::Gateway {
                reason: LinkFailure::Closed,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        format!("gateway {lan}: closed the connection before answering (wrong secret key?)")
    );

    // The right secret through the same fixed list works.
    let right = GatewayClient::builder()
        .gateway(lan)
        .secret(SECRET)
        .build()
        .unwrap();
    assert_eq!(right.get_all_client_count().await.unwrap(), 0);

    gateway.shutdown().unwrap();
    register.shutdown().unwrap();
}

/// Nothing listening: connect errors name the address; no configuration is refused.
#[tokio::test]
async fn unreachable_parts_are_named() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = free.local_addr().unwrap();
    drop(free);
    let client = GatewayClient::builder()
        .register(addr.to_string())
        .build()
        .unwrap();
    let error = client.get_all_client_count().await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("register {addr}: cannot connect")),
        "{error}"
    );
    let client = GatewayClient::builder()
        .gateway(addr.to_string())
        .build()
        .unwrap();
    let error = client.send_to_all(b"x", &[]).await.unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with(&format!("gateway {addr}: cannot connect")),
        "{error}"
    );
    assert_eq!(
        GatewayClient::builder().build().unwrap_err(),
        ClientError::NotConfigured
    );
    assert!(GatewayClient::builder()
        .gateway("localhost:1")
        .build()
        .is_err());
}
