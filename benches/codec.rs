//! Codec throughput in bytes per second: GatewayProtocol frames (encode, decode),
//! WebSocket frames (server encode, client-frame decode with unmasking and UTF-8
//! validation) and PHP serialize / unserialize of a session-like array.
//!
//! ```sh
//! cargo bench --bench codec          # release; bounded: about 0.3 s per figure
//! ```
#![allow(
    clippy::disallowed_methods,
    reason = "benchmarks measure wall-clock time"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use gatewayworker::protocol::frame::{Command, Frame, FrameDecoder, Header, FLAG_BODY_IS_SCALAR};
use gatewayworker::protocol::php::serialize::serialize_into;
use gatewayworker::protocol::php::unserialize::unserialize_lenient;
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::protocol::public::{PublicEvent, PublicProtocol};

/// Time spent measuring one figure.
const FIGURE_TIME: Duration = Duration::from_millis(300);
/// Frames per decode batch.
const BATCH: usize = 256;

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: h:1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Runs `f` (which handles `bytes` bytes per call) for [`FIGURE_TIME`]; bytes per second.
fn measure(bytes: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..16 {
        f();
    }
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < FIGURE_TIME {
        for _ in 0..16 {
            f();
        }
        calls += 16;
    }
    (calls as f64 * bytes as f64) / start.elapsed().as_secs_f64()
}

/// One table row: `rate` in bytes/s of items of `item_bytes` bytes each.
fn print(figure: &str, item_bytes: usize, rate: f64) {
    let items = rate / item_bytes as f64;
    let items = if items >= 1e6 {
        format!("{:.2} M/s", items / 1e6)
    } else {
        format!("{:.1} k/s", items / 1e3)
    };
    println!(
        "| {figure} | {item_bytes} B | {:.3} GB/s | {items} |",
        rate / 1e9
    );
}

fn frame(size: usize) -> Frame {
    let mut header = Header::new(Command::OnMessage);
    header.connection_id = 7;
    header.flag = FLAG_BODY_IS_SCALAR;
    Frame::new(header, Bytes::new(), vec![b'x'; size])
}

fn gateway_frames(size: usize) {
    let f = frame(size);
    let mut out = BytesMut::with_capacity(f.encoded_len() * 2);
    let len = f.encoded_len();
    print(
        "GatewayProtocol frame encode (whole frame, 64 or 4096 B body)",
        len,
        measure(len, || {
            out.clear();
            black_box(&f).encode(&mut out);
            black_box(&out);
        }),
    );
    let mut batch = BytesMut::new();
    for _ in 0..BATCH {
        f.encode(&mut batch);
    }
    let batch = batch.freeze();
    let mut decoder = FrameDecoder::new(u32::MAX);
    let mut buf = BytesMut::with_capacity(batch.len());
    print(
        "GatewayProtocol frame decode (whole frame)",
        len,
        measure(len * BATCH, || {
            buf.clear();
            buf.extend_from_slice(&batch);
            while let Ok(Some(frame)) = decoder.decode(&mut buf) {
                black_box(frame);
            }
        }),
    );
}

fn websocket_frames(size: usize) {
    let payload = vec![b'x'; size];
    let mut out = BytesMut::with_capacity(size + 16);
    print(
        "WebSocket frame encode (server), payload",
        size,
        measure(size, || {
            out.clear();
            PublicProtocol::Websocket
                .encode(black_box(&payload), false, &mut out)
                .expect("encode");
            black_box(&out);
        }),
    );
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let mut one = vec![0x81u8];
    match size {
        n if n < 126 => one.push(0x80 | n as u8),
        n => {
            one.push(0x80 | 126);
            one.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    one.extend_from_slice(&mask);
    one.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    let batch: Vec<u8> = one
        .iter()
        .copied()
        .cycle()
        .take(one.len() * BATCH)
        .collect();
    let mut decoder = PublicProtocol::Websocket.decoder(u32::MAX);
    let mut input = BytesMut::from(HANDSHAKE);
    decoder.decode(&mut input, &mut |_| {});
    assert!(decoder.is_ready(), "handshake accepted");
    let mut buf = BytesMut::with_capacity(batch.len());
    let mut messages = 0usize;
    print(
        "WebSocket frame decode (client: unmask, UTF-8 check), payload",
        size,
        measure(size * BATCH, || {
            buf.clear();
            buf.extend_from_slice(&batch);
            decoder.decode(&mut buf, &mut |e| {
                if let PublicEvent::Message { data, .. } = e {
                    messages += 1;
                    black_box(data);
                }
            });
        }),
    );
    assert!(messages > 0, "frames decoded");
}

fn session(fields: usize) -> PhpValue {
    let mut a = PhpArray::new();
    for i in 0..fields {
        a.push_unique(
            PhpKey::from_bytes(format!("field_{i}").as_bytes()),
            match i % 3 {
                0 => PhpValue::Int(i as i64 * 1_000_003),
                1 => PhpValue::str("some session text value"),
                _ => PhpValue::Bool(true),
            },
        );
    }
    PhpValue::Array(a)
}

fn php(fields: usize) {
    let value = session(fields);
    let mut out = Vec::new();
    serialize_into(&value, &mut out);
    let len = out.len();
    print(
        &format!("PHP serialize ({fields}-field array)"),
        len,
        measure(len, || {
            out.clear();
            serialize_into(black_box(&value), &mut out);
            black_box(&out);
        }),
    );
    let text = out.clone();
    print(
        &format!("PHP unserialize ({fields}-field array)"),
        len,
        measure(len, || {
            black_box(unserialize_lenient(black_box(&text)));
        }),
    );
}

fn main() {
    println!("| codec | item (frame or payload) | bytes/s | items/s |");
    println!("|---|---|---|---|");
    for size in [64, 4096] {
        gateway_frames(size);
    }
    for size in [64, 4096] {
        websocket_frames(size);
    }
    for fields in [4, 64] {
        php(fields);
    }
}
