//! Heap cost of idle websocket clients inside [`GatewayCore`], measured with a counting
//! allocator (its own test binary, so the allocator sees nothing else).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

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
