//! The worker driver under event backpressure, over real sockets (a fake register and a
//! fake gateway on 127.0.0.1): while the business code is not taking events, the replies
//! its own calls wait for still arrive, and what is held meanwhile is bounded.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gatewayworker::api::ApiCall;
use gatewayworker::net::TokioNet;
use gatewayworker::protocol::frame::{Command, Frame, FrameDecoder, Header};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::worker::core::{EventKind, WorkerConfig};
use gatewayworker::worker::driver::{run, DriverConfig, ToWorker};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
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
/// reply. Before, the driver stopped reading every link once 4 events were pending, so the
/// reply sat unread and the query timed out.
#[tokio::test]
async fn replies_arrive_while_events_are_throttled() {
    let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway_port = gateway.local_addr().unwrap().port();
    let mut config = WorkerConfig::new("bp", 0, vec![register.local_addr().unwrap().to_string()]);
    config.query_timeout = Duration::from_secs(30);
    let driver = DriverConfig {
        events_pending_max: 4,
        ..DriverConfig::default()
    };
    let (events_tx, mut events) = mpsc::channel(1);
    let (commands, commands_rx) = mpsc::channel(16);
    let worker = run(TokioNet, config, driver, events_tx, commands_rx);

    let script = async move {
        let (mut gw, mut buf, _reg) = link_up(register, &gateway).await;
        // 300 events from distinct clients, none taken by the business code yet.
        let mut burst = BytesMut::new();
        for cid in 1..=300u32 {
            burst.extend_from_slice(&event(gateway_port, cid, b"busy"));
        }
        gw.write_all(&burst).await.unwrap();
        // Let the driver read the burst and fill its queue.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let (reply, result) = oneshot::channel();
        commands
            .send(ToWorker::Call {
                call: ApiCall::GetAllClientCount,
                current: None,
                reply,
            })
            .await
            .unwrap();
        let query = read_frame(&mut gw, &mut buf).await;
        assert_eq!(query.header.cmd, Command::GetClientCountByGroup);
        let mut record = BytesMut::new();
        record.put_u32(4);
        record.put_slice(b"i:7;");
        gw.write_all(&record).await.unwrap();
        let done = timeout(Duration::from_secs(10), result)
            .await
            .expect("the reply was read while events were throttled")
            .unwrap();
        assert_eq!(done.result, Ok(PhpValue::Int(7)));

        // Every event still arrives, in order, once the business code takes them.
        for cid in 1..=300u32 {
            let ev = timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("event")
                .expect("worker running");
            assert_eq!(ev.kind, EventKind::Message);
            assert_eq!(ev.client.connection_id, cid);
        }
    };
    tokio::select! {
        biased;
        () = worker => panic!("the worker stopped"),
        outcome = timeout(Duration::from_secs(30), script) => outcome.expect("script timed out"),
    }
}
