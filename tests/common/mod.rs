//! Helpers for integration tests over real sockets on 127.0.0.1: a gateway started on
//! free ports, a scripted worker link speaking our frame codec, and WebSocket clients
//! from a real client crate.

#![allow(dead_code)] // Each test binary uses a different subset of these helpers.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use gatewayworker::gateway::shards::{self, GatewaySettings, RunningGateway};
use gatewayworker::protocol::frame::{
    encode_frame, Command, Frame, FrameDecoder, Header, ReplyDecoder, FLAG_BODY_IS_SCALAR,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// How long a test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Logs of the code under test go to the test's output (`RUST_LOG` filters them); once per
/// process, later calls do nothing.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A port that was free a moment ago, for a child process that must be told its port.
/// Taken below the kernel's ephemeral range (32768 and up), so that no outgoing connection
/// of a test running in parallel can grab it between this check and the server's bind; a
/// counter keeps the tests of this process apart, and the offset keeps test processes apart.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const BASE: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let offset = std::process::id().wrapping_mul(7919) % SPAN;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (BASE + (offset + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A gateway on 127.0.0.1 with free ports.
pub fn start_gateway(count: usize, tweak: impl FnOnce(&mut GatewaySettings)) -> RunningGateway {
    init_tracing();
    let mut settings = GatewaySettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Ipv4Addr::LOCALHOST,
        0,
        count,
    );
    tweak(&mut settings);
    shards::start(settings).expect("gateway starts")
}

/// A link to a gateway's lan port that speaks frames, as a worker or an API caller.
pub struct TestLink {
    pub stream: TcpStream,
    input: BytesMut,
    frames: FrameDecoder,
    replies: ReplyDecoder,
}

impl TestLink {
    /// Connects without a handshake.
    pub async fn connect(addr: SocketAddr) -> TestLink {
        let stream = TcpStream::connect(addr).await.expect("connect to lan port");
        TestLink::over(stream)
    }

    /// Speaks frames over a connected stream (a link the test accepted, playing the
    /// gateway for a worker).
    pub fn over(stream: TcpStream) -> TestLink {
        stream.set_nodelay(true).unwrap();
        TestLink {
            stream,
            input: BytesMut::new(),
            frames: FrameDecoder::default(),
            replies: ReplyDecoder::default(),
        }
    }

    /// Connects and registers as worker `key` (WORKER_CONNECT with an empty secret).
    pub async fn worker(addr: SocketAddr, key: &str) -> TestLink {
        let mut link = TestLink::connect(addr).await;
        let body = format!("{{\"worker_key\":\"{key}\",\"secret_key\":\"\"}}");
        link.send(
            Command::WorkerConnect,
            0,
            FLAG_BODY_IS_SCALAR,
            b"",
            body.as_bytes(),
        )
        .await;
        link
    }

    /// Sends one frame built from an all-zero header, as PHP senders do.
    pub async fn send(
        &mut self,
        cmd: Command,
        connection_id: u32,
        flag: u8,
        ext: &[u8],
        body: &[u8],
    ) {
        let mut header = Header::new(cmd);
        header.connection_id = connection_id;
        header.flag = flag;
        let mut buf = BytesMut::new();
        encode_frame(&mut buf, &header, ext, body);
        self.stream.write_all(&buf).await.expect("write frame");
    }

    /// Writes raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write raw");
    }

    /// The next frame, skipping PINGs; panics after [`WAIT`].
    pub async fn next_frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self
                .frames
                .decode(&mut self.input)
                .expect("valid frame from gateway")
            {
                if frame.header.cmd == Command::Ping {
                    continue;
                }
                return frame;
            }
            self.read_more().await;
        }
    }

    /// The next frame of command `cmd`, skipping others.
    pub async fn next_frame_of(&mut self, cmd: Command) -> Frame {
        loop {
            let frame = self.next_frame().await;
            if frame.header.cmd == cmd {
                return frame;
            }
        }
    }

    /// The next reply record's payload.
    pub async fn next_reply(&mut self) -> Bytes {
        loop {
            if let Some(reply) = self.replies.decode(&mut self.input).expect("valid reply") {
                return reply;
            }
            self.read_more().await;
        }
    }

    /// True when the gateway closed this link within [`WAIT`].
    pub async fn closed_by_peer(&mut self) -> bool {
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    async fn read_more(&mut self) {
        let mut buf = [0u8; 65536];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("gateway answered in time")
            .expect("read from gateway");
        assert!(n > 0, "gateway closed the link unexpectedly");
        self.input.extend_from_slice(&buf[..n]);
    }
}

/// A worker link registered as `Test:0`, then a websocket client whose ON_CONNECT it
/// received: the link, the client and the client's connection id.
pub async fn worker_and_client(gateway: &RunningGateway) -> (TestLink, WsClient, u32) {
    let mut worker = TestLink::worker(gateway.lan_addrs[0], "Test:0").await;
    // Let the handshake frame land before the client connects.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ws = ws_connect(gateway.public_addr, "/").await;
    let cid = worker
        .next_frame_of(Command::OnConnect)
        .await
        .header
        .connection_id;
    (worker, ws, cid)
}

/// A WebSocket client of a real client crate.
pub type WsClient =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// Connects a WebSocket client to `addr` with path `path`.
pub async fn ws_connect(addr: SocketAddr, path: &str) -> WsClient {
    let url = format!("ws://{addr}{path}");
    let (ws, _response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake succeeds");
    ws
}

/// The next data message (text or binary) a client receives; panics after [`WAIT`].
pub async fn ws_next(ws: &mut WsClient) -> Message {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("message in time")
            .expect("stream open")
            .expect("valid message");
        match msg {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Sends a text message.
pub async fn ws_send_text(ws: &mut WsClient, text: &str) {
    ws.send(Message::text(text)).await.expect("send text");
}

/// Nothing arrives on `ws` for `wait`.
pub async fn ws_silent(ws: &mut WsClient, wait: Duration) -> bool {
    tokio::time::timeout(wait, ws.next()).await.is_err()
}
