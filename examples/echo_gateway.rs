//! A gateway with a native echo worker link, for WebSocket conformance runs (Autobahn via
//! `scripts/autobahn`) and quick manual tests:
//!
//! ```sh
//! cargo run --release --example echo_gateway -- 127.0.0.1:9001 [package_size_max] [compression]
//! ```
//!
//! Every client message travels the whole gateway path — client → gateway → worker link
//! (ON_MESSAGE) → gateway (SEND_TO_ONE) → client — and comes back with its type (text or
//! binary, through the `FLAG_BINARY` extension bit) and bytes intact. The worker side is
//! a few lines over our frame codec; the wasm BusinessWorker replaces it once it exists.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::BytesMut;
use gatewayworker::gateway::shards::{self, GatewaySettings};
use gatewayworker::protocol::frame::{
    encode_frame, Command, FrameDecoder, Header, FLAG_BINARY, FLAG_BODY_IS_SCALAR,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9001".into())
        .parse()
        .map_err(|e| std::io::Error::other(format!("bad listen address: {e}")))?;
    let package_size_max: usize = match args.next() {
        Some(n) => n
            .parse()
            .map_err(|e| std::io::Error::other(format!("bad size: {e}")))?,
        None => 10_485_760,
    };
    // Third argument: permessage-deflate mode (off, no-context-takeover, context-takeover).
    let compression = match args.next() {
        Some(mode) => mode.parse().map_err(std::io::Error::other)?,
        None => gatewayworker::gateway::CompressionMode::Off,
    };
    let mut settings = GatewaySettings::new(listen, Ipv4Addr::LOCALHOST, 0, 1);
    settings.core.package_size_max = package_size_max;
    settings.core.compression = compression;
    // A message is queued whole for its link and its client: the bounds must hold one.
    settings.core.link_pending_max = settings.core.link_pending_max.max(package_size_max * 4);
    settings.core.client_pending_max = settings.core.client_pending_max.max(package_size_max * 4);
    let gateway = shards::start(settings)?;
    let lan = gateway.lan_addrs[0];
    println!(
        "echo gateway: clients on ws://{}, worker link on {lan}",
        gateway.public_addr
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(echo_worker(lan, package_size_max as u32))
}

/// Registers as a worker and answers every ON_MESSAGE with the same bytes.
async fn echo_worker(lan: SocketAddr, package_size_max: u32) -> std::io::Result<()> {
    let mut stream = tokio::net::TcpStream::connect(lan).await?;
    stream.set_nodelay(true)?;
    let mut out = BytesMut::new();
    let handshake = br#"{"worker_key":"EchoWorker:0","secret_key":""}"#;
    let mut header = Header::new(Command::WorkerConnect);
    header.flag = FLAG_BODY_IS_SCALAR;
    encode_frame(&mut out, &header, b"", handshake);
    stream.write_all(&out).await?;

    let mut decoder = FrameDecoder::new(package_size_max.saturating_add(1024));
    let mut input = BytesMut::with_capacity(64 * 1024);
    loop {
        if stream.read_buf(&mut input).await? == 0 {
            return Err(std::io::Error::other("gateway closed the worker link"));
        }
        out.clear();
        while let Some(frame) = decoder.decode(&mut input).map_err(std::io::Error::other)? {
            if frame.header.cmd != Command::OnMessage {
                continue;
            }
            let mut reply = Header::new(Command::SendToOne);
            reply.connection_id = frame.header.connection_id;
            reply.flag = FLAG_BODY_IS_SCALAR | (frame.header.flag & FLAG_BINARY);
            encode_frame(&mut out, &reply, b"", &frame.body);
        }
        stream.write_all(&out).await?;
    }
}
