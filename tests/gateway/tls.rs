//! `wss://` through real sockets: a self-signed certificate made at test time, a real
//! WebSocket client over rustls trusting it, and a scripted worker link.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;
use futures_util::{SinkExt, StreamExt};
use gatewayworker::gateway::shards::{self, GatewaySettings};
use gatewayworker::net::tls::TlsSettings;
use gatewayworker::protocol::frame::{Command, FLAG_BODY_IS_SCALAR};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type WssClient = WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A fresh self-signed certificate for `localhost`, written as PEM files.
fn self_signed() -> (TlsSettings, CertificateDer<'static>) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])
        .expect("certificate generated");
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "gatewayworker-tls-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, certified.cert.pem()).unwrap();
    std::fs::write(&key_path, certified.signing_key.serialize_pem()).unwrap();
    (
        TlsSettings::new(cert_path, key_path),
        certified.cert.der().clone(),
    )
}

fn connector(root: &CertificateDer<'static>) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    roots.add(root.clone()).expect("root accepted");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A WebSocket client over TLS, trusting only `root`.
async fn wss_connect(addr: SocketAddr, path: &str, root: &CertificateDer<'static>) -> WssClient {
    let connect = async {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let name = ServerName::try_from("localhost").unwrap();
        let tls = connector(root)
            .connect(name, tcp)
            .await
            .expect("TLS handshake");
        let url = format!("wss://localhost:{}{path}", addr.port());
        let (ws, _response) = tokio_tungstenite::client_async(url, tls)
            .await
            .expect("WebSocket handshake");
        ws
    };
    tokio::time::timeout(WAIT, connect)
        .await
        .expect("connected in time")
}

async fn wss_next(ws: &mut WssClient) -> Option<Message> {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")?;
        match msg {
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(other) => return Some(other),
            Err(_) => return None,
        }
    }
}

fn tls_gateway(
    tweak: impl FnOnce(&mut TlsSettings),
) -> (shards::RunningGateway, CertificateDer<'static>) {
    let (mut tls, root) = self_signed();
    tweak(&mut tls);
    let gateway = start_gateway(1, |settings: &mut GatewaySettings| settings.tls = Some(tls));
    (gateway, root)
}

/// The round trip of `gateway_sockets.rs` over TLS, and a KICK whose final message
/// arrives before the close (the graceful close flushes the TLS stream).
#[tokio::test]
async fn wss_message_round_trip_and_kick() {
    let (gateway, root) = tls_gateway(|_| {});
    let lan = gateway.lan_addrs[0];
    let mut worker = TestLink::worker(lan, "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut ws = wss_connect(gateway.public_addr, "/chat?room=1", &root).await;

    let connect = worker.next_frame().await;
    assert_eq!(connect.header.cmd, Command::OnConnect);
    let cid = connect.header.connection_id;
    let hello = worker.next_frame_of(Command::OnWebsocketConnect).await;
    assert!(String::from_utf8_lossy(&hello.body).contains("s:4:\"room\";s:1:\"1\""));

    ws.send(Message::text("hello")).await.unwrap();
    let message = worker.next_frame_of(Command::OnMessage).await;
    assert_eq!(message.header.connection_id, cid);
    assert_eq!(&message.body[..], b"hello");

    worker
        .send(Command::SendToOne, cid, FLAG_BODY_IS_SCALAR, b"", b"world")
        .await;
    assert_eq!(wss_next(&mut ws).await, Some(Message::text("world")));

    // A big message crosses the adapter's stash (64 KiB) several times.
    let big = "x".repeat(300_000);
    worker
        .send(
            Command::SendToOne,
            cid,
            FLAG_BODY_IS_SCALAR,
            b"",
            big.as_bytes(),
        )
        .await;
    assert_eq!(wss_next(&mut ws).await, Some(Message::text(big)));

    worker
        .send(Command::Kick, cid, FLAG_BODY_IS_SCALAR, b"", b"bye")
        .await;
    assert_eq!(wss_next(&mut ws).await, Some(Message::text("bye")));
    let close = worker.next_frame_of(Command::OnClose).await;
    assert_eq!(close.header.connection_id, cid);
    gateway.shutdown().unwrap();
}

/// A client that opens TCP and stays silent neither blocks another client's handshake
/// nor stays forever: it is dropped after `handshake_time_max`.
#[tokio::test]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let (gateway, root) = tls_gateway(|tls| tls.handshake_time_max = Duration::from_millis(300));
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let mut silent = TcpStream::connect(gateway.public_addr).await.unwrap();

    let mut ws = wss_connect(gateway.public_addr, "/", &root).await;
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    worker
        .send(Command::SendToOne, cid, FLAG_BODY_IS_SCALAR, b"", b"served")
        .await;
    assert_eq!(wss_next(&mut ws).await, Some(Message::text("served")));

    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .expect("the gateway drops the silent client");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed, not answered: {read:?}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "not before handshake_time_max"
    );
    gateway.shutdown().unwrap();
}

/// At `handshakes_max`, the next client waits in the backlog until a slot frees up.
#[tokio::test]
async fn handshakes_max_makes_the_next_client_wait() {
    let (gateway, root) = tls_gateway(|tls| {
        tls.handshakes_max = 1;
        tls.handshake_time_max = Duration::from_millis(500);
    });
    let _worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    let _silent = TcpStream::connect(gateway.public_addr).await.unwrap();
    // Let the gateway take the silent connection into its only handshake slot.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let _ws = wss_connect(gateway.public_addr, "/", &root).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "served only once the silent handshake timed out ({:?})",
        started.elapsed()
    );
    gateway.shutdown().unwrap();
}

/// A missing key file is an error at start, before anything runs.
#[test]
fn a_missing_key_file_fails_at_start() {
    let (mut tls, _root) = self_signed();
    tls.key_path = tls.key_path.with_file_name("missing.pem");
    let mut settings = GatewaySettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        std::net::Ipv4Addr::LOCALHOST,
        0,
        1,
    );
    settings.tls = Some(tls);
    let error = shards::start(settings).expect_err("start fails");
    assert!(error.to_string().contains("missing.pem"), "{error}");
}
