//! The driver over real sockets with a test-only hook (compiled into tests only): a panic
//! while handling one link's bytes closes that link only.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{DriverConfig, WorkerDriver, EVENT_SLOTS_KEPT};
use crate::api::{ApiCall, ApiError};
use crate::net::{memory, TokioNet};
use crate::protocol::frame::{Command, Frame, FrameDecoder, Header};
use crate::protocol::php::PhpValue;
use crate::worker::core::WorkerConfig;

/// Bytes that make the driver panic while handing them to the core (tests only).
const PANIC_MARKER: &[u8] = b"\xffdriver-test-panic\xff";

/// Called inside the driver's guarded section for every chunk a link delivers.
pub(super) fn panic_hook(bytes: &[u8]) {
    if bytes.windows(PANIC_MARKER.len()).any(|w| w == PANIC_MARKER) {
        panic!("test hook: panic while handling link bytes");
    }
}

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Option<Frame> {
    let mut decoder = FrameDecoder::default();
    loop {
        if let Some(frame) = decoder.decode(buf).expect("valid frame") {
            return Some(frame);
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

fn message(gateway_port: u16, cid: u32, body: &[u8]) -> Bytes {
    let mut header = Header::new(Command::OnMessage);
    header.local_ip = "127.0.0.1".parse().unwrap();
    header.local_port = gateway_port;
    header.connection_id = cid;
    header.flag = 1;
    let frame = Frame::new(header, Bytes::new(), Bytes::copy_from_slice(body));
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.freeze()
}

#[tokio::test]
async fn a_panic_on_one_link_closes_that_link_only() {
    let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_port = gateway.local_addr().unwrap().port();
    let mut config = WorkerConfig::new("p", 0, vec![register.local_addr().unwrap().to_string()]);
    config.query_timeout = Duration::from_secs(60);
    let panics_before = crate::net::connection_panics_total();

    // The fake register and gateway run as their own task; the driver runs here.
    let (query_seen, mut query_seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let (panic_sent, panic_sent_rx) = tokio::sync::oneshot::channel::<()>();
    let peers = tokio::spawn(async move {
        let (reg, _) = register.accept().await.unwrap();
        let mut reg = BufReader::new(reg);
        let mut line = String::new();
        reg.read_line(&mut line).await.unwrap();
        let broadcast = format!(
            "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
        );
        reg.get_mut().write_all(broadcast.as_bytes()).await.unwrap();
        let (mut gw, _) = gateway.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let hello = read_frame(&mut gw, &mut buf).await.expect("hello");
        assert_eq!(hello.header.cmd, Command::WorkerConnect);
        // A query is pending on the link when the panic comes.
        let query = read_frame(&mut gw, &mut buf).await.expect("query");
        assert_eq!(query.header.cmd, Command::GetClientCountByGroup);
        query_seen.send(()).unwrap();
        gw.write_all(&message(gateway_port, 1, PANIC_MARKER))
            .await
            .unwrap();
        let _ = panic_sent.send(());
        // The link is closed: the fake gateway reads EOF.
        assert!(read_frame(&mut gw, &mut buf).await.is_none());
        // The worker reconnects like after any close, then serves events again.
        let (mut gw, _) = timeout(Duration::from_secs(10), gateway.accept())
            .await
            .expect("reconnect")
            .unwrap();
        let mut buf = BytesMut::new();
        let hello = read_frame(&mut gw, &mut buf).await.expect("hello again");
        assert_eq!(hello.header.cmd, Command::WorkerConnect);
        gw.write_all(&message(gateway_port, 2, b"fine"))
            .await
            .unwrap();
        // Keep both peers open until the test ends.
        std::future::pending::<()>().await;
        drop((reg, gw));
    });

    let local = tokio::task::LocalSet::new();
    let script = local.run_until(async move {
        let mut driver = WorkerDriver::new(TokioNet, config, DriverConfig::default());
        driver.wait_for_gateways(1).await;
        // The pending call fails at once when its link closes (not after the 60 s query
        // timeout).
        let done = driver.call(&ApiCall::GetAllClientCount, None, false).await;
        assert!(
            matches!(done.result, Err(ApiError::Timeout { missing: 1 })),
            "{:?}",
            done.result
        );
        assert!(
            query_seen_rx.try_recv().is_ok(),
            "the query reached the gateway"
        );
        let _ = panic_sent_rx.await;
        assert!(crate::net::connection_panics_total() > panics_before);
        let ev = driver.next_event().await;
        assert_eq!(ev.client.connection_id, 2);
    });
    timeout(Duration::from_secs(40), script)
        .await
        .expect("script timed out");
    peers.abort();
}

/// A driver linked to a fake register and gateway; the gateway writes every chunk sent
/// on the returned channel to the worker's link, and keeps the link open until the test
/// ends (abort the returned task).
async fn linked_driver(
    config: DriverConfig,
) -> (
    WorkerDriver<TokioNet>,
    u16,
    tokio::sync::mpsc::UnboundedSender<Bytes>,
    tokio::task::JoinHandle<()>,
) {
    let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_port = gateway.local_addr().unwrap().port();
    let core = WorkerConfig::new("m", 0, vec![register.local_addr().unwrap().to_string()]);
    let (chunks, mut to_write) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let peers = tokio::spawn(async move {
        let (reg, _) = register.accept().await.unwrap();
        let mut reg = BufReader::new(reg);
        let mut line = String::new();
        reg.read_line(&mut line).await.unwrap();
        let broadcast = format!(
            "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
        );
        reg.get_mut().write_all(broadcast.as_bytes()).await.unwrap();
        let (mut gw, _) = gateway.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let hello = read_frame(&mut gw, &mut buf).await.expect("hello");
        assert_eq!(hello.header.cmd, Command::WorkerConnect);
        while let Some(chunk) = to_write.recv().await {
            gw.write_all(&chunk).await.unwrap();
        }
        std::future::pending::<()>().await;
        drop((reg, gw));
    });
    let mut driver = WorkerDriver::new(TokioNet, core, config);
    driver.wait_for_gateways(1).await;
    (driver, gateway_port, chunks, peers)
}

/// Takes `n` events as the business code does (each ended, session unchanged).
async fn run_events(driver: &mut WorkerDriver<TokioNet>, n: usize) {
    for _ in 0..n {
        let event = driver.next_event().await;
        driver
            .end_event(&event.client, event.kind, &PhpValue::Null, &PhpValue::Null)
            .unwrap();
    }
}

/// A backlog of incoming events (more than `memory::BACKLOG_BYTES` read while events
/// waited: most of them parked behind their clients' running events, some held by the core
/// for want of room, some in the driver's queue) gives back its queues' slots and asks for a trim once the last of them ran, not
/// before.
#[tokio::test]
async fn a_drained_incoming_backlog_gives_its_queues_back() {
    let local = tokio::task::LocalSet::new();
    let script = local.run_until(async {
        let config = DriverConfig {
            events_pending_max: 256,
            ..DriverConfig::default()
        };
        let (mut driver, gateway_port, gateway, peers) = linked_driver(config).await;
        const EVENTS: usize = 1024;
        const CLIENTS: usize = 300;
        let mut burst = BytesMut::new();
        for i in 0..EVENTS {
            burst.extend_from_slice(&message(
                gateway_port,
                1 + (i % CLIENTS) as u32,
                &[b'b'; 1024],
            ));
        }
        let burst = burst.freeze();
        assert!(burst.len() >= memory::BACKLOG_BYTES);
        // Nobody takes events until the whole burst is in (after the register's lines).
        let expected = driver.incoming_run + burst.len();
        gateway.send(burst.clone()).unwrap();
        while driver.incoming_run < expected {
            driver.sleep(Duration::from_millis(5)).await;
        }
        let (_, parked_slots, _) = driver.core().incoming_slots();
        assert!(
            parked_slots >= EVENTS - CLIENTS,
            "{parked_slots} parked slots"
        );
        assert_eq!(driver.events.len(), 256);
        assert_eq!(driver.core().held_events().0, CLIENTS - 256);
        assert!(!driver.core().incoming_drained());

        // The first event of each client runs and does not end yet: the driver's queue
        // runs empty (the held events it had room for came out) while the rest wait parked
        // behind them. Not drained.
        let mut running = Vec::new();
        for _ in 0..CLIENTS {
            running.push(driver.next_event().await);
        }
        assert!(driver.try_event().is_none());
        assert_eq!(
            driver.incoming_backlogs_drained(),
            0,
            "counted as drained while events waited parked"
        );
        assert_eq!(driver.incoming_run, expected);
        for event in running {
            driver
                .end_event(&event.client, event.kind, &PhpValue::Null, &PhpValue::Null)
                .unwrap();
        }
        run_events(&mut driver, EVENTS - CLIENTS).await;
        assert!(driver.try_event().is_none());
        assert_eq!(driver.incoming_backlogs_drained(), 1);
        assert_eq!(driver.incoming_run, 0);
        assert!(
            driver.events.capacity() <= EVENT_SLOTS_KEPT,
            "{} event slots kept",
            driver.events.capacity()
        );
        let (held, parked, actions) = driver.core().incoming_slots();
        assert!(
            held <= EVENT_SLOTS_KEPT && parked <= EVENT_SLOTS_KEPT && actions <= EVENT_SLOTS_KEPT,
            "slots kept: held {held}, parked {parked}, actions {actions}"
        );
        // Found empty again: nothing more to count.
        assert!(driver.try_event().is_none());
        assert_eq!(driver.incoming_backlogs_drained(), 1);
        peers.abort();
    });
    timeout(Duration::from_secs(40), script)
        .await
        .expect("script timed out");
}

/// Events that keep up (each read's events run before the next read) never count as a
/// backlog, however many bytes pass: no shrink, no trim request on the way of a worker
/// that keeps up.
#[tokio::test]
async fn incoming_events_that_keep_up_never_count_as_a_backlog() {
    let local = tokio::task::LocalSet::new();
    let script = local.run_until(async {
        let (mut driver, gateway_port, gateway, peers) =
            linked_driver(DriverConfig::default()).await;
        let mut round = BytesMut::new();
        for cid in 1..=4 {
            round.extend_from_slice(&message(gateway_port, cid, &[b'k'; 1024]));
        }
        let round = round.freeze();
        let rounds = 2 * memory::BACKLOG_BYTES / round.len();
        for _ in 0..rounds {
            gateway.send(round.clone()).unwrap();
            run_events(&mut driver, 4).await;
            assert!(driver.try_event().is_none());
            assert!(driver.incoming_run < memory::BACKLOG_BYTES);
        }
        assert_eq!(driver.incoming_backlogs_drained(), 0);
        peers.abort();
    });
    timeout(Duration::from_secs(40), script)
        .await
        .expect("script timed out");
}
