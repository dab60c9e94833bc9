//! The real gateway driver inside a turmoil simulation: a WebSocket client host
//! (tokio-tungstenite) and a scripted worker link host, both writing through
//! [`ChoppyStream`] so that the gateway reads split and merged segments. The same seed
//! must give the same trace of observed events.
#![allow(
    clippy::disallowed_methods,
    reason = "tests drive real sockets and processes: wall-clock deadlines, helper threads"
)]

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use gatewayworker::gateway::{driver, GatewayConfig};
use gatewayworker::net::{AsyncStreamLimits, Net};
use gatewayworker::protocol::frame::{
    encode_frame, Command, Frame, FrameDecoder, Header, FLAG_BODY_IS_SCALAR,
};
use sim::{ChoppyStream, TurmoilNet};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const PUBLIC_PORT: u16 = 7272;
const LAN_PORT: u16 = 2300;
/// Most bytes per simulated segment written by the client and the worker (an MTU's
/// payload); half the segments are tiny anyway (see `ChoppyStream`).
const CHUNK_MAX: usize = 1460;
/// Messages the client sends in one flush (merged on the wire), and replies likewise.
const BURST: usize = 4;
/// Size of the big reply, several times the default write stash (64 KiB).
const BIG_REPLY_LEN: usize = 200_000;

/// The ordered events seen by the client and the worker.
type Trace = Rc<RefCell<Vec<String>>>;

fn record(trace: &Trace, who: &str, what: String) {
    let at = turmoil::elapsed();
    trace.borrow_mut().push(format!("{at:?} {who} {what}"));
}

/// Runs the story with the default adapter buffers.
fn run(seed: u64) -> Vec<String> {
    run_with(seed, AsyncStreamLimits::default())
}

/// The reply that crosses the adapter's stash and the simulated links in many pieces.
fn big_reply() -> String {
    "0123456789".repeat(BIG_REPLY_LEN / 10)
}

/// Runs one simulation and returns its trace. The story: a worker registers; a client
/// connects and sends a burst of messages in one flush; the worker answers with a burst
/// of SEND_TO_ONE, a big one, and a KICK with a last message, all in one flush; the
/// client reads everything, then the end of its connection; the worker hears ON_CLOSE.
fn run_with(seed: u64, limits: AsyncStreamLimits) -> Vec<String> {
    let mut sim = sim::builder(seed)
        .simulation_duration(Duration::from_secs(60))
        .build();
    let trace: Trace = Rc::default();

    sim.host("gateway", move || async move {
        let net = TurmoilNet { limits };
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
        let big = big_reply();
        link.push(Command::SendToOne, cid, FLAG_BODY_IS_SCALAR, big.as_bytes());
        // KICK closes after the flush: "bye" must still reach the client, which needs
        // the adapter's stash pushed out before the stream is dropped.
        link.push(Command::Kick, cid, FLAG_BODY_IS_SCALAR, b"bye");
        link.flush().await?;

        let close = link.next_frame().await?;
        assert_eq!(
            close.header.cmd,
            Command::OnClose,
            "the kicked client's close is heard"
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
        let big = ws.next().await.expect("stream open")?;
        assert!(big == Message::text(big_reply()), "the big reply, whole");
        record(
            &client_trace,
            "client",
            format!("big reply of {}", big.len()),
        );
        let bye = ws.next().await.expect("stream open")?;
        assert_eq!(bye, Message::text("bye"), "KICK's message before the close");
        record(&client_trace, "client", format!("{bye:?}"));
        // The gateway closes without a close frame (as the original): the stream ends
        // with an error or with nothing.
        let end = ws.next().await;
        assert!(
            !matches!(end, Some(Ok(_))),
            "nothing after the kick: {end:?}"
        );
        record(&client_trace, "client", "end".to_string());
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

    /// The next frame of command `cmd`, skipping others.
    async fn next_frame_of(&mut self, cmd: Command) -> std::io::Result<Frame> {
        loop {
            let frame = self.next_frame().await?;
            if frame.header.cmd == cmd {
                return Ok(frame);
            }
        }
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
        assert_eq!(count("client"), BURST + 3, "seed {seed}: {trace:#?}");
    }
}

/// The events without their times, per observer.
fn events_of(trace: &[String], who: &str) -> Vec<String> {
    trace
        .iter()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let _at = parts.next();
            (parts.next() == Some(who)).then(|| parts.next().unwrap_or("").to_string())
        })
        .collect()
}

/// Adapter buffers of a few bytes change when things happen, never what happens: every
/// message crosses the read buffer and the write stash in many small pieces.
#[test]
fn tiny_adapter_buffers_change_only_the_timing() {
    let tiny = AsyncStreamLimits {
        read_buffer_max: 7,
        write_stash_max: 13,
    };
    for seed in 0..4 {
        let roomy = run(seed);
        let cramped = run_with(seed, tiny);
        for who in ["worker", "client"] {
            assert_eq!(
                events_of(&roomy, who),
                events_of(&cramped, who),
                "seed {seed}, {who}"
            );
        }
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

/// A kicked client that stopped reading cannot take KICK's last bytes: the adapter's
/// shutdown waits for it at most `SHUTDOWN_TIME_MAX`, then the gateway drops the stream.
/// Simulated time makes the five seconds free.
#[test]
fn a_stalled_kicked_client_is_dropped_after_shutdown_time_max() {
    stalled_kick(0);
}

/// The same with far more output than the stream's own buffers hold: what is still in the
/// driver's queue is given up after `SHUTDOWN_TIME_MAX` too (no connection is held forever
/// by a peer that stopped reading).
#[test]
fn a_stalled_kicked_client_with_a_full_queue_is_dropped_after_shutdown_time_max() {
    stalled_kick(50_000);
}

fn stalled_kick(padding: usize) {
    /// Segments in flight per simulated connection: the client's window.
    const TCP_CAPACITY: usize = 8;
    let mut sim = sim::builder(7)
        .simulation_duration(Duration::from_secs(60))
        .tcp_capacity(TCP_CAPACITY)
        .build();
    sim.host("gateway", || async {
        let net = TurmoilNet::default();
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        let public = net.bind(SocketAddr::new(any, PUBLIC_PORT), true).await?;
        let lan = net.bind(SocketAddr::new(any, LAN_PORT), false).await?;
        let config = GatewayConfig::new(Ipv4Addr::new(192, 168, 0, 1), LAN_PORT, PUBLIC_PORT);
        driver::serve(net, config, public, lan, std::future::pending()).await?;
        Ok(())
    });
    sim.client("worker", async move {
        let stream = turmoil::net::TcpStream::connect(("gateway", LAN_PORT)).await?;
        let mut link = Link::new(stream);
        let hello = br#"{"worker_key":"Sim:0","secret_key":""}"#;
        link.push(Command::WorkerConnect, 0, FLAG_BODY_IS_SCALAR, hello);
        link.flush().await?;
        let cid = link
            .next_frame_of(Command::OnConnect)
            .await?
            .header
            .connection_id;
        // One segment per message, until the client's window is full and more wait in
        // the adapter's stash.
        for i in 0..TCP_CAPACITY * 2 {
            let message = format!("message {i}{}", "x".repeat(padding));
            link.push(
                Command::SendToOne,
                cid,
                FLAG_BODY_IS_SCALAR,
                message.as_bytes(),
            );
            link.flush().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let streams = turmoil::established_tcp_stream_count_on("gateway");
        link.push(Command::Kick, cid, FLAG_BODY_IS_SCALAR, b"bye");
        link.flush().await?;
        let kicked = tokio::time::Instant::now();
        // The core forgets the client at once (ON_CLOSE now, as the original's
        // onClose); the driver keeps the stream until its shutdown gives up.
        let close = link.next_frame_of(Command::OnClose).await?;
        assert_eq!(close.header.connection_id, cid);
        while turmoil::established_tcp_stream_count_on("gateway") >= streams {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let waited = kicked.elapsed();
        assert!(
            waited >= driver::SHUTDOWN_TIME_MAX,
            "not before SHUTDOWN_TIME_MAX: {waited:?}"
        );
        assert!(
            waited < driver::SHUTDOWN_TIME_MAX + Duration::from_secs(1),
            "soon after SHUTDOWN_TIME_MAX: {waited:?}"
        );
        Ok(())
    });
    sim.client("client", async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let stream = turmoil::net::TcpStream::connect(("gateway", PUBLIC_PORT)).await?;
        let url = format!("ws://gateway:{PUBLIC_PORT}/");
        let (ws, _response) = tokio_tungstenite::client_async(url, stream).await?;
        // Connected, and never reads again.
        tokio::time::sleep(Duration::from_secs(30)).await;
        drop(ws);
        Ok(())
    });
    sim.run().expect("the simulation completes");
}
