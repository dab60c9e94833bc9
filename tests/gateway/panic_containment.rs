//! A panic while handling one connection's input closes that connection only, through the
//! normal close path, and the process goes on (real sockets, real gateway and register).
//!
//! The panic is injected with the drivers' hidden test trigger (`test_panic_trigger`, a
//! config field nothing but tests sets): the driver panics right after the core took the
//! bytes, before it carried out what the core queued.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::{TestLink, WAIT};
use bytes::Bytes;
use gatewayworker::gateway::driver::Observer;
use gatewayworker::gateway::shards::{self, GatewaySettings, RunningGateway};
use gatewayworker::gateway::PublicProtocol;
use gatewayworker::net::connection_panics_total;
use gatewayworker::protocol::frame::{Command, FLAG_BODY_IS_SCALAR};
use gatewayworker::register::driver::{self as register_driver, RegisterSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TRIGGER: &[u8] = b"<<test-panic>>";

/// The panic counter is process-wide: the tests of this file run one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A text-protocol gateway with the panic trigger set, and a live view of its client and
/// link counts.
fn gateway() -> (RunningGateway, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    crate::common::init_tracing();
    let mut settings = GatewaySettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Ipv4Addr::LOCALHOST,
        0,
        1,
    );
    settings.core.protocol = PublicProtocol::Text;
    settings.core.test_panic_trigger = Some(Bytes::from_static(TRIGGER));
    let clients = Arc::new(AtomicUsize::new(usize::MAX));
    let links = Arc::new(AtomicUsize::new(usize::MAX));
    let (c, l) = (clients.clone(), links.clone());
    let gateway = shards::start_observed(settings, move |_| {
        let (c, l) = (c.clone(), l.clone());
        Some(Observer {
            period: Duration::from_millis(5),
            publish: Box::new(move |core| {
                c.store(core.client_count(), Ordering::SeqCst);
                l.store(core.link_count(), Ordering::SeqCst);
            }),
        })
    })
    .expect("gateway starts");
    (gateway, clients, links)
}

async fn wait_for(what: &str, value: &AtomicUsize, expected: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while value.load(Ordering::SeqCst) != expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: {} instead of {expected}",
            value.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The peer closed `stream` (end of stream or reset), within [`WAIT`].
async fn closed_by_peer(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn a_panic_in_one_clients_input_closes_that_client_through_the_close_path() {
    let _serial = SERIAL.lock().await;
    let (gateway, clients, _links) = gateway();
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    let mut a = TcpStream::connect(gateway.public_addr).await.unwrap();
    let a_id = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    let mut b = TcpStream::connect(gateway.public_addr).await.unwrap();
    let b_id = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    wait_for("clients before", &clients, 2).await;

    let panics = connection_panics_total();
    let mut line = b"hello ".to_vec();
    line.extend_from_slice(TRIGGER);
    line.push(b'\n');
    a.write_all(&line).await.unwrap();

    // The worker hears of the panicking client's end (what the core queued before the
    // panic, its ON_MESSAGE, goes out first), the socket is closed, the count drops.
    let close = worker.next_frame_of(Command::OnClose).await;
    assert_eq!(
        close.header.connection_id, a_id,
        "ON_CLOSE for the client that panicked"
    );
    assert!(
        closed_by_peer(&mut a).await,
        "the panicking client's socket is closed"
    );
    wait_for("clients after", &clients, 1).await;
    assert_eq!(
        connection_panics_total(),
        panics + 1,
        "the panic is counted"
    );

    // The other client, and new ones, keep working.
    b.write_all(b"still here\n").await.unwrap();
    let message = worker.next_frame_of(Command::OnMessage).await;
    assert_eq!(message.header.connection_id, b_id);
    assert_eq!(&message.body[..], b"still here");
    worker
        .send(Command::SendToOne, b_id, FLAG_BODY_IS_SCALAR, b"", b"reply")
        .await;
    let mut buf = [0u8; 6];
    tokio::time::timeout(WAIT, b.read_exact(&mut buf))
        .await
        .expect("reply in time")
        .unwrap();
    assert_eq!(&buf, b"reply\n");
    let _c = TcpStream::connect(gateway.public_addr).await.unwrap();
    worker.next_frame_of(Command::OnConnect).await;
    wait_for("clients with a new one", &clients, 2).await;

    gateway.shutdown().unwrap();
}

#[tokio::test]
async fn a_panic_in_a_links_input_closes_that_link_only() {
    let _serial = SERIAL.lock().await;
    let (gateway, clients, links) = gateway();
    let mut bad = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    let mut good = TestLink::worker(gateway.lan_addrs[0], "Test:1").await;
    wait_for("links before", &links, 2).await;

    let panics = connection_panics_total();
    bad.send_raw(TRIGGER).await;
    assert!(bad.closed_by_peer().await, "the panicking link is closed");
    wait_for("links after", &links, 1).await;
    assert_eq!(
        connection_panics_total(),
        panics + 1,
        "the panic is counted"
    );

    // The remaining worker gets the next client and its messages.
    let mut client = TcpStream::connect(gateway.public_addr).await.unwrap();
    let id = good
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    wait_for("clients", &clients, 1).await;
    client.write_all(b"hi\n").await.unwrap();
    let message = good.next_frame_of(Command::OnMessage).await;
    assert_eq!(
        (message.header.connection_id, &message.body[..]),
        (id, &b"hi"[..])
    );

    gateway.shutdown().unwrap();
}

#[tokio::test]
async fn a_panic_in_one_register_connection_closes_it_only() {
    let _serial = SERIAL.lock().await;
    let mut settings = RegisterSettings::new(SocketAddr::from(([127, 0, 0, 1], 0)), "");
    settings.core.test_panic_trigger = Some(TRIGGER.to_vec());
    let connections = Arc::new(AtomicUsize::new(usize::MAX));
    let c = connections.clone();
    let register = register_driver::start_observed(
        settings,
        Some(register_driver::Observer {
            period: Duration::from_millis(5),
            publish: Box::new(move |core| c.store(core.connection_count(), Ordering::SeqCst)),
        }),
    )
    .expect("register starts");

    let mut gateway = TcpStream::connect(register.addr).await.unwrap();
    gateway
        .write_all(
            b"{\"event\":\"gateway_connect\",\"address\":\"10.0.0.1:2900\",\"secret_key\":\"\"}\n",
        )
        .await
        .unwrap();
    let mut bad = TcpStream::connect(register.addr).await.unwrap();
    wait_for("connections before", &connections, 2).await;

    let panics = connection_panics_total();
    bad.write_all(TRIGGER).await.unwrap();
    assert!(
        closed_by_peer(&mut bad).await,
        "the panicking connection is closed"
    );
    wait_for("connections after", &connections, 1).await;
    assert_eq!(
        connection_panics_total(),
        panics + 1,
        "the panic is counted"
    );

    // The register still serves: a worker gets the gateway's address.
    let mut worker = TcpStream::connect(register.addr).await.unwrap();
    worker
        .write_all(b"{\"event\":\"worker_connect\",\"secret_key\":\"\"}\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while !got.contains(&b'\n') {
        let n = tokio::time::timeout(WAIT, worker.read(&mut buf))
            .await
            .expect("address list in time")
            .unwrap();
        assert!(n > 0, "register closed the worker");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).contains("10.0.0.1:2900"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    drop(gateway);
    register.shutdown().unwrap();
}
