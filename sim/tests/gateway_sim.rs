//! The real gateway driver inside a turmoil simulation: a WebSocket client host
//! (tokio-tungstenite) and a scripted worker link host, both writing through
//! [`ChoppyStream`] so that the gateway reads split and merged segments. The same seed
//! must give the same trace of observed events.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use gatewayworker::gateway::{driver, GatewayConfig};
use gatewayworker::net::Net;
use gatewayworker::protocol::frame::{
    encode_frame, Command, Frame, FrameDecoder, Header, FLAG_BODY_IS_SCALAR,
};
use sim::{ChoppyStream, TurmoilNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const PUBLIC_PORT: u16 = 7272;
const LAN_PORT: u16 = 2300;
/// A fixed simulated start, so nothing depends on the wall clock.
const EPOCH_SECS: u64 = 1_700_000_000;
/// Most bytes per simulated segment written by the client and the worker.
const CHUNK_MAX: usize = 7;
/// Messages the client sends in one flush (merged on the wire), and replies likewise.
const BURST: usize = 4;

/// The ordered events seen by the client and the worker.
type Trace = Rc<RefCell<Vec<String>>>;

fn record(trace: &Trace, who: &str, what: String) {
    let at = turmoil::elapsed();
    trace.borrow_mut().push(format!("{at:?} {who} {what}"));
}

/// Runs one simulation and returns its trace.
fn run(seed: u64) -> Vec<String> {
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .simulation_duration(Duration::from_secs(60))
        .build();
    let trace: Trace = Rc::default();

    sim.host("gateway", || async {
        let net = TurmoilNet::default();
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let public = net.bind(SocketAddr::new(any, PUBLIC_PORT), true).await?;
        let lan = net.bind(SocketAddr::new(any, LAN_PORT), false).await?;
        let IpAddr::V4(lan_ip) = turmoil::lookup("gateway") else {
            panic!("the simulation runs on IPv4");
        };
        let config = GatewayConfig::new(lan_ip, LAN_PORT, PUBLIC_PORT);
        driver::serve(net, config, public, lan, std::future::pending()).await?;
        Ok(())
    });

    let worker_trace = trace.clone();
    sim.client("worker", async move {
        let stream = turmoil::net::TcpStream::connect(("gateway", LAN_PORT)).await?;
        let mut link = Link::new(ChoppyStream::new(
            stream,
            seed ^ 0x5eed_0001,
            CHUNK_MAX,
            4096,
        ));
        let hello = br#"{"worker_key":"Sim:0","secret_key":""}"#;
        link.push(Command::WorkerConnect, 0, FLAG_BODY_IS_SCALAR, hello);
        link.flush().await?;

        let connect = link.next_frame().await?;
        assert_eq!(connect.header.cmd, Command::OnConnect, "ON_CONNECT first");
        assert_eq!(connect.header.local_port, LAN_PORT);
        assert_eq!(connect.header.gateway_port, PUBLIC_PORT);
        let cid = connect.header.connection_id;
        record(&worker_trace, "worker", describe(&connect));

        let ws_hello = link.next_frame().await?;
        assert_eq!(ws_hello.header.cmd, Command::OnWebsocketConnect);
        assert!(
            String::from_utf8_lossy(&ws_hello.body).contains("s:4:\"room\";s:1:\"1\""),
            "the query string reaches the worker"
        );
        record(&worker_trace, "worker", describe(&ws_hello));

        for i in 0..BURST {
            let message = link.next_frame().await?;
            assert_eq!(message.header.cmd, Command::OnMessage);
            assert_eq!(message.header.connection_id, cid);
            assert_eq!(message.body, format!("hello {i}").as_bytes());
            record(&worker_trace, "worker", describe(&message));
        }
        // All replies in one flush: the gateway's link decoder sees them merged and cut.
        for i in 0..BURST {
            let reply = format!("world {i}");
            link.push(
                Command::SendToOne,
                cid,
                FLAG_BODY_IS_SCALAR,
                reply.as_bytes(),
            );
        }
        link.flush().await?;

        let close = link.next_frame().await?;
        assert_eq!(
            close.header.cmd,
            Command::OnClose,
            "the client's close is heard"
        );
        assert_eq!(close.header.connection_id, cid);
        record(&worker_trace, "worker", describe(&close));
        Ok(())
    });

    let client_trace = trace.clone();
    sim.client("client", async move {
        // Let the worker register first: without a worker the gateway drops clients.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stream = turmoil::net::TcpStream::connect(("gateway", PUBLIC_PORT)).await?;
        let stream = ChoppyStream::new(stream, seed ^ 0x5eed_0002, CHUNK_MAX, 4096);
        let mut request =
            format!("ws://gateway:{PUBLIC_PORT}/chat?room=1").into_client_request()?;
        // tungstenite draws the key from a thread-local RNG; the worker sees the header,
        // so a fixed key keeps the trace a function of the seed.
        request
            .headers_mut()
            .insert("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==".parse()?);
        let (mut ws, _response) = tokio_tungstenite::client_async(request, stream).await?;
        for i in 0..BURST {
            ws.feed(Message::text(format!("hello {i}"))).await?;
        }
        ws.flush().await?;
        for i in 0..BURST {
            let message = loop {
                match ws.next().await.expect("stream open")? {
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => break other,
                }
            };
            assert_eq!(message, Message::text(format!("world {i}")));
            record(&client_trace, "client", format!("{message:?}"));
        }
        drop(ws);
        Ok(())
    });

    sim.run().expect("the simulation completes");
    let trace = trace.borrow().clone();
    trace
}

fn describe(frame: &Frame) -> String {
    format!(
        "{:?} {} {:?}",
        frame.header,
        String::from_utf8_lossy(&frame.ext_data),
        String::from_utf8_lossy(&frame.body)
    )
}

/// FNV-1a over the trace lines: a fixed hash, unlike std's seeded one.
fn trace_hash(trace: &[String]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for line in trace {
        for byte in line.bytes().chain([b'\n']) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// A scripted worker link: frames out through the choppy wrapper, frames in through
/// our decoder.
struct Link<S> {
    stream: S,
    output: BytesMut,
    input: BytesMut,
    frames: FrameDecoder,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Link<S> {
    fn new(stream: S) -> Link<S> {
        Link {
            stream,
            output: BytesMut::new(),
            input: BytesMut::new(),
            frames: FrameDecoder::default(),
        }
    }

    /// Queues one frame built from an all-zero header, as PHP senders do.
    fn push(&mut self, cmd: Command, connection_id: u32, flag: u8, body: &[u8]) {
        let mut header = Header::new(cmd);
        header.connection_id = connection_id;
        header.flag = flag;
        encode_frame(&mut self.output, &header, b"", body);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.stream.write_all(&self.output).await?;
        self.output.clear();
        self.stream.flush().await
    }

    /// The next frame, skipping PINGs.
    async fn next_frame(&mut self) -> std::io::Result<Frame> {
        loop {
            if let Some(frame) = self.frames.decode(&mut self.input).expect("valid frame") {
                if frame.header.cmd == Command::Ping {
                    continue;
                }
                return Ok(frame);
            }
            let mut buf = [0u8; 4096];
            let n = self.stream.read(&mut buf).await?;
            assert!(n > 0, "the gateway closed the worker link");
            self.input.extend_from_slice(&buf[..n]);
        }
    }
}

/// The three stories hold for many seeds: ON_CONNECT, ON_MESSAGE and SEND_TO_ONE
/// through split and merged segments.
#[test]
fn messages_cross_the_gateway_under_many_seeds() {
    for seed in 0..16 {
        let trace = run(seed);
        let count = |who: &str| {
            trace
                .iter()
                .filter(|line| line.split(' ').nth(1) == Some(who))
                .count()
        };
        assert_eq!(count("worker"), 3 + BURST, "seed {seed}: {trace:#?}");
        assert_eq!(count("client"), BURST, "seed {seed}: {trace:#?}");
    }
}

/// The same seed gives the same trace, event for event (S2's rerun meta-test).
#[test]
fn the_same_seed_gives_the_same_trace() {
    let first = run(42);
    let second = run(42);
    assert!(!first.is_empty());
    assert_eq!(
        trace_hash(&first),
        trace_hash(&second),
        "{first:#?}\n{second:#?}"
    );
    assert_eq!(first, second);
    // The trace must see what the seed changes (latencies, cuts), or this test could
    // not fail.
    assert_ne!(first, run(43), "another seed, another trace");
}
