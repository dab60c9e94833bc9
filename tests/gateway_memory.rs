//! Heap cost of idle websocket clients, measured with a counting allocator (its own test
//! binary, so the allocator sees nothing else): inside [`GatewayCore`] alone, and through
//! the whole gateway (driver, connection tasks, tokio's I/O registrations) on real
//! sockets. The tests take turns: they read one global counter.
#![allow(
    clippy::disallowed_methods,
    reason = "tests drive real sockets and processes: wall-clock deadlines, helper threads"
)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use gatewayworker::gateway::shards::{self, GatewaySettings};

use gatewayworker::gateway::{Action, GatewayConfig, GatewayCore, Target};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One measurement at a time.
static TURN: Mutex<()> = Mutex::new(());

const HANDSHAKE: &[u8] = b"GET /ws?token=abc HTTP/1.1\r\nHost: gw:8282\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

fn worker_connect() -> Vec<u8> {
    let body = b"{\"worker_key\":\"BW:0\",\"secret_key\":\"\"}";
    let mut f = ((28 + body.len()) as u32).to_be_bytes().to_vec();
    f.push(200);
    f.extend_from_slice(&[0; 16]);
    f.push(1);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(body);
    f
}

/// Drains actions, reporting every write flushed (a fast network) and dropping the
/// bytes, as a driver does once they are written.
fn drain(core: &mut GatewayCore, now: Duration) {
    while let Some(action) = core.poll_action() {
        match action {
            Action::Transmit {
                to: Target::Client(c),
                bytes,
            } => core.handle_client_flushed(now, c, bytes.len()),
            Action::Transmit {
                to: Target::Link(l),
                bytes,
            } => core.handle_link_flushed(now, l, bytes.len()),
            _ => {}
        }
    }
}

#[test]
fn an_idle_websocket_client_costs_well_under_2_kib_in_the_core() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let now = Duration::from_secs(1);
    let mut core = GatewayCore::new(
        GatewayConfig::new("10.0.0.5".parse().unwrap(), 2900, 8282),
        now,
    );
    let w = core
        .handle_link_connected(now, "10.0.0.9:40000".parse().unwrap())
        .unwrap();
    core.handle_link_bytes(now, w, &worker_connect());
    drain(&mut core, now);
    // Warm up the shared buffers, then measure a large batch.
    for i in 0..100u32 {
        let id = core
            .handle_client_connected(now, format!("203.0.113.1:{}", 1000 + i).parse().unwrap())
            .unwrap();
        core.handle_client_bytes(now, id, HANDSHAKE);
        drain(&mut core, now);
    }
    let before = LIVE.load(Ordering::Relaxed);
    let clients = 20_000u32;
    for i in 0..clients {
        let peer = format!("198.51.{}.{}:{}", i / 256 % 256, i % 256, 2000 + i % 50_000);
        let id = core
            .handle_client_connected(now, peer.parse().unwrap())
            .unwrap();
        core.handle_client_bytes(now, id, HANDSHAKE);
        drain(&mut core, now);
    }
    let per_client = (LIVE.load(Ordering::Relaxed) - before) / clients as usize;
    eprintln!("idle websocket client: {per_client} bytes of core heap");
    assert_eq!(core.client_count(), 20_100);
    assert!(per_client <= 1024, "{per_client} bytes per idle client");
}

/// Opens a websocket connection with blocking std sockets (no allocation on this side
/// once connected) and waits for the 101.
fn open_idle_client(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(HANDSHAKE).unwrap();
    let mut response = [0u8; 512];
    let mut got = 0;
    while !response[..got].ends_with(b"\r\n\r\n") {
        let n = stream
            .read(&mut response[got..])
            .expect("handshake response");
        assert!(n > 0, "gateway closed the client");
        got += n;
    }
    assert!(response.starts_with(b"HTTP/1.1 101"));
    stream
}

/// The issue's idle target is 2 KiB of gateway RSS per connection; this is the heap
/// part of it, for everything the gateway keeps per connection: the core's client, the
/// connection task, its output side, and tokio's registration of the socket. It failed
/// at 1,865 bytes (debug build) before connection tasks polled readiness instead of
/// holding futures and clients were boxed in the table; 1,400 after.
#[test]
fn an_idle_websocket_connection_costs_under_1_5_kib_of_gateway_heap() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let gateway = shards::start(GatewaySettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Ipv4Addr::LOCALHOST,
        0,
        1,
    ))
    .expect("gateway starts");
    // A worker link that reads and drops what the gateway sends, so no event waits in
    // the gateway's queues.
    let mut worker = TcpStream::connect(gateway.lan_addrs[0]).unwrap();
    worker.write_all(&worker_connect()).unwrap();
    let mut sink = worker.try_clone().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        while matches!(sink.read(&mut buf), Ok(n) if n > 0) {}
    });
    std::thread::sleep(Duration::from_millis(100));

    let (warm_up, measured) = (200, 3_000);
    let mut clients = Vec::with_capacity(warm_up + measured);
    for _ in 0..warm_up {
        clients.push(open_idle_client(gateway.public_addr));
    }
    std::thread::sleep(Duration::from_millis(200));
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..measured {
        clients.push(open_idle_client(gateway.public_addr));
    }
    // Let the last events reach the worker link and the tasks settle.
    std::thread::sleep(Duration::from_millis(300));
    let per_connection = LIVE.load(Ordering::Relaxed).saturating_sub(before) / measured;
    eprintln!("idle websocket connection: {per_connection} bytes of gateway heap");
    assert!(
        per_connection <= 1_536,
        "{per_connection} bytes of heap per idle connection"
    );
    drop(clients);
    let _ = worker.shutdown(std::net::Shutdown::Both);
    gateway.shutdown().unwrap();
    let _ = reader.join();
}

/// permessage-deflate: an idle client that negotiated no context takeover (and has sent
/// and received compressed messages) costs what a client without compression costs; one
/// with context takeover keeps its compressor and decompressor, measured here (README,
/// Compression).
#[test]
fn compression_costs_nothing_per_idle_client_without_context_takeover() {
    use flate2::{Compress, Compression, FlushCompress};
    use gatewayworker::gateway::CompressionMode;
    use gatewayworker::protocol::frame::{encode_frame, Command, Header, FLAG_BODY_IS_SCALAR};

    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let now = Duration::from_secs(1);
    let handshake = String::from_utf8_lossy(HANDSHAKE).replace(
        "\r\n\r\n",
        "\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
    );
    let text = br#"{"type":"say","from":"alice","content":"hello, how is everybody doing today?"}"#;
    // A compressed, masked client frame of `text` (mask 0: the payload as is).
    let client_frame = |context: &mut Compress| {
        let mut c = Vec::with_capacity(256);
        context
            .compress_vec(text, &mut c, FlushCompress::Sync)
            .unwrap();
        c.truncate(c.len() - 4);
        let mut f = vec![0xC1, 0x80 | c.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(&c);
        f
    };
    // Per-client heap after connecting, upgrading, one message each way.
    let per_client = |mode: CompressionMode, clients: u32| -> usize {
        let mut config = GatewayConfig::new("10.0.0.5".parse().unwrap(), 2900, 8282);
        config.compression = mode;
        let mut core = GatewayCore::new(config, now);
        let w = core
            .handle_link_connected(now, "10.0.0.9:40000".parse().unwrap())
            .unwrap();
        core.handle_link_bytes(now, w, &worker_connect());
        drain(&mut core, now);
        let round = |core: &mut GatewayCore, i: u32| {
            let peer = format!("198.51.{}.{}:{}", i / 256 % 256, i % 256, 2000 + i % 50_000);
            let id = core
                .handle_client_connected(now, peer.parse().unwrap())
                .unwrap();
            core.handle_client_bytes(now, id, handshake.as_bytes());
            if mode == CompressionMode::Off {
                let mut f = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
                f.extend_from_slice(text);
                core.handle_client_bytes(now, id, &f);
            } else {
                let mut context = Compress::new(Compression::default(), false);
                core.handle_client_bytes(now, id, &client_frame(&mut context));
            }
            let mut send = bytes::BytesMut::new();
            let mut h = Header::new(Command::SendToOne);
            h.connection_id = id.0;
            h.flag = FLAG_BODY_IS_SCALAR;
            encode_frame(&mut send, &h, b"", text);
            core.handle_link_bytes(now, w, &send);
            drain(core, now);
        };
        for i in 0..50 {
            round(&mut core, i);
        }
        let before = LIVE.load(Ordering::Relaxed);
        for i in 50..50 + clients {
            round(&mut core, i);
        }
        (LIVE.load(Ordering::Relaxed) - before) / clients as usize
    };
    let off = per_client(CompressionMode::Off, 10_000);
    assert!(off > 200, "the clients stayed connected: {off} B");
    let shared = per_client(CompressionMode::NoContextTakeover, 10_000);
    let context = per_client(CompressionMode::ContextTakeover, 200);
    eprintln!(
        "heap per idle client after one message each way: off {off} B, \
         no-context-takeover {shared} B, context-takeover {context} B"
    );
    assert!(
        shared * 10 <= off * 11,
        "no-context-takeover {shared} B vs off {off} B"
    );
    assert!(
        context > 32 * 1024,
        "context takeover keeps a window per client: {context} B"
    );
}
