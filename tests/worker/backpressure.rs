//! The worker driver under event backpressure, over real sockets (a fake register and a
//! fake gateway on 127.0.0.1): while the business code is not taking events, the replies
//! its own calls wait for still arrive, and what is held meanwhile is bounded.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gatewayworker::api::ApiCall;
use gatewayworker::net::TokioNet;
use gatewayworker::protocol::frame::{Command, Frame, FrameDecoder, Header};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::worker::core::{ClientEventKind, WorkerConfig};
use gatewayworker::worker::{DriverConfig, WorkerDriver};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

async fn read_frame(stream: &mut TcpStream, buf: &mut BytesMut) -> Frame {
    let mut decoder = FrameDecoder::default();
    loop {
        if let Some(frame) = decoder.decode(buf).expect("valid frame") {
            return frame;
        }
        let n = stream.read_buf(buf).await.expect("read");
        assert!(n > 0, "worker closed the link");
    }
}

fn event(gateway_port: u16, cid: u32, body: &[u8]) -> Bytes {
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

/// Answers the worker's register link with a one-gateway list; returns the gateway link
/// once the worker said WORKER_CONNECT on it.
async fn link_up(register: TcpListener, gateway: &TcpListener) -> (TcpStream, BytesMut, TcpStream) {
    let gateway_port = gateway.local_addr().unwrap().port();
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
    let hello = read_frame(&mut gw, &mut buf).await;
    assert_eq!(hello.header.cmd, Command::WorkerConnect);
    (gw, buf, reg.into_inner())
}

/// The business code is busy (takes no events) while far more events arrive than the
/// driver queues (`events_pending_max` 4); a query it makes meanwhile still gets its
/// reply: the core holds the events beyond the queue and the driver keeps reading the
/// link. (Once, the driver stopped reading every link at 4 pending events, so the reply
/// sat unread and the query timed out.)
#[tokio::test]
async fn replies_arrive_while_events_are_throttled() {
    let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_port = gateway.local_addr().unwrap().port();
    let mut config = WorkerConfig::new("bp", 0, vec![register.local_addr().unwrap().to_string()]);
    config.query_timeout = Duration::from_secs(30);
    let driver_config = DriverConfig {
        events_pending_max: 4,
        ..DriverConfig::default()
    };

    // The fake register and gateway run as their own task; the driver runs here.
    let (burst_sent, burst_sent_rx) = oneshot::channel::<()>();
    let peers = tokio::spawn(async move {
        let (mut gw, mut buf, _reg) = link_up(register, &gateway).await;
        // 300 events from distinct clients, none taken by the business code yet.
        let mut burst = BytesMut::new();
        for cid in 1..=300u32 {
            burst.extend_from_slice(&event(gateway_port, cid, b"busy"));
        }
        gw.write_all(&burst).await.unwrap();
        let _ = burst_sent.send(());
        let query = read_frame(&mut gw, &mut buf).await;
        assert_eq!(query.header.cmd, Command::GetClientCountByGroup);
        let mut record = BytesMut::new();
        record.put_u32(4);
        record.put_slice(b"i:7;");
        gw.write_all(&record).await.unwrap();
        std::future::pending::<()>().await;
        drop((gw, _reg));
    });

    let local = tokio::task::LocalSet::new();
    let script = local.run_until(async move {
        let mut d = WorkerDriver::new(TokioNet, config, driver_config);
        d.wait_for_gateways(1).await;
        burst_sent_rx.await.unwrap();
        // Let the driver read the burst and fill its queue (it reads while it waits).
        // `wait` is ready at once while events are queued, so the loop yields to let the
        // timeout's timer be polled (without it the loop never returns Pending and spins).
        let _ = timeout(Duration::from_millis(300), async {
            loop {
                d.wait().await;
                tokio::task::yield_now().await;
            }
        })
        .await;
        let (held, held_bytes) = d.core().held_events();
        assert!(
            held > 0,
            "the core holds the events beyond the driver's queue"
        );
        assert!(held_bytes > 0);

        let done = timeout(
            Duration::from_secs(10),
            d.call(&ApiCall::GetAllClientCount, None, false),
        )
        .await
        .expect("the reply was read while events were throttled");
        assert_eq!(done.result, Ok(PhpValue::Int(7)));

        // Every event still arrives, in order, once the business code takes them.
        for cid in 1..=300u32 {
            let ev = timeout(Duration::from_secs(10), d.next_event())
                .await
                .expect("event");
            assert_eq!(ev.kind, ClientEventKind::Message);
            assert_eq!(ev.client.connection_id, cid);
            d.end_event(&ev.client, ev.kind, &PhpValue::Null, &PhpValue::Null)
                .unwrap();
        }
    });
    timeout(Duration::from_secs(30), script)
        .await
        .expect("script timed out");
    peers.abort();
}
