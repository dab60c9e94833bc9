//! The worker driver over real sockets: a fake register and a fake gateway on 127.0.0.1.
//! The worker learns the gateway from the register, says WORKER_CONNECT, receives an event,
//! runs a query, a send and a session write-back; then the gateway goes away and the worker
//! reconnects.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use gatewayworker::api::ApiCall;
use gatewayworker::net::TokioNet;
use gatewayworker::protocol::frame::{Command, Frame, FrameDecoder, Header};
use gatewayworker::protocol::php::{PhpKey, PhpValue};
use gatewayworker::worker::core::{ClientEventKind, WorkerConfig};
use gatewayworker::worker::DriverConfig;

use crate::harness::{run, ToWorker};
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

fn event(cmd: Command, gateway_port: u16, cid: u32, session: &[u8], body: &[u8]) -> Bytes {
    let mut header = Header::new(cmd);
    header.local_ip = "127.0.0.1".parse().unwrap();
    header.local_port = gateway_port;
    header.connection_id = cid;
    header.flag = 1;
    let frame = Frame::new(
        header,
        Bytes::copy_from_slice(session),
        Bytes::copy_from_slice(body),
    );
    let mut out = BytesMut::new();
    frame.encode(&mut out);
    out.freeze()
}

#[tokio::test]
async fn worker_links_through_the_register_and_serves_events_and_calls() {
    let register = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let register_addr = register.local_addr().unwrap().to_string();
    let gateway_port = gateway.local_addr().unwrap().port();

    let mut config = WorkerConfig::new("probe", 3, vec![register_addr]);
    config.secret_key = "k".into();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (commands, commands_rx) = mpsc::channel(16);
    let worker = run(
        TokioNet,
        config,
        DriverConfig::default(),
        events_tx,
        commands_rx,
    );

    let script = async move {
        // The register hears worker_connect and answers with the list.
        let (reg, _) = register.accept().await.unwrap();
        let mut reg = BufReader::new(reg);
        let mut line = String::new();
        reg.read_line(&mut line).await.unwrap();
        assert_eq!(
            line,
            "{\"event\":\"worker_connect\",\"secret_key\":\"k\"}\n"
        );
        let broadcast = format!(
            "{{\"event\":\"broadcast_addresses\",\"addresses\":[\"127.0.0.1:{gateway_port}\"]}}\n"
        );
        reg.get_mut().write_all(broadcast.as_bytes()).await.unwrap();

        // The gateway hears WORKER_CONNECT first.
        let (mut gw, _) = gateway.accept().await.unwrap();
        let mut buf = BytesMut::new();
        let hello = read_frame(&mut gw, &mut buf).await;
        assert_eq!(hello.header.cmd, Command::WorkerConnect);
        assert_eq!(
            hello.body.as_ref(),
            br#"{"worker_key":"probe:3","secret_key":"k"}"#
        );

        // An event reaches the business code.
        gw.write_all(&event(Command::OnMessage, gateway_port, 5, b"", b"hello"))
            .await
            .unwrap();
        let ev = events.recv().await.expect("event");
        assert_eq!(ev.kind, ClientEventKind::Message);
        assert_eq!(ev.body, PhpValue::str("hello"));
        assert_eq!(ev.client.connection_id, 5);

        // A query: the frame goes out, the reply comes back as the result.
        let (reply, result) = oneshot::channel();
        commands
            .send(ToWorker::Call {
                call: ApiCall::GetAllClientCount,
                current: Some(ev.client.clone()),
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
        let done = result.await.unwrap();
        assert_eq!(done.result, Ok(PhpValue::Int(7)));

        // A send completes at once and reaches the gateway.
        let (reply, result) = oneshot::channel();
        commands
            .send(ToWorker::Call {
                call: ApiCall::SendToCurrentClient {
                    message: PhpValue::str("pong"),
                    raw: false,
                },
                current: Some(ev.client.clone()),
                reply,
            })
            .await
            .unwrap();
        assert_eq!(result.await.unwrap().result, Ok(PhpValue::Bool(true)));
        let send = read_frame(&mut gw, &mut buf).await;
        assert_eq!(send.header.cmd, Command::SendToOne);
        assert_eq!(send.body.as_ref(), b"pong");

        // The changed session is written back.
        let new: PhpValue = PhpValue::Array(
            [(PhpKey::from_bytes(b"a"), PhpValue::Int(1))]
                .into_iter()
                .collect(),
        );
        commands
            .send(ToWorker::EndEvent {
                client: ev.client.clone(),
                kind: ev.kind,
                old: PhpValue::Null,
                new,
                reply: None,
            })
            .await
            .unwrap();
        let write = read_frame(&mut gw, &mut buf).await;
        assert_eq!(write.header.cmd, Command::SetSession);
        assert_eq!(write.ext_data.as_ref(), b"a:1:{s:1:\"a\";i:1;}");

        // The gateway goes away: the worker comes back about 1 s later, hello first.
        drop(gw);
        let (mut gw, _) = timeout(Duration::from_secs(5), gateway.accept())
            .await
            .expect("reconnect")
            .unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(
            read_frame(&mut gw, &mut buf).await.header.cmd,
            Command::WorkerConnect
        );
    };
    tokio::select! {
        biased;
        () = worker => panic!("the worker stopped"),
        outcome = timeout(Duration::from_secs(20), script) => outcome.expect("script timed out"),
    }
}
