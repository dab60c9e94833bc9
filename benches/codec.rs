//! Codec throughput in bytes per second: GatewayProtocol frames (encode, decode),
//! WebSocket frames (server encode, client-frame decode with unmasking and UTF-8
//! validation), PHP serialize / unserialize of a session-like array, and permessage-deflate
//! (compress and inflate per message as a fresh stream and with context takeover, and the
//! bytes on the wire per chat message).
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
use gatewayworker::protocol::public::deflate::{Deflater, Inflater};
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

/// A chat message like the demo's, `n` of them joined in a JSON list.
fn chat_json(n: usize) -> Vec<u8> {
    let one = r#"{"type":"say","from_client_id":"7f0000010b5400000001","from_client_name":"alice","to_client_id":"all","content":"hello everybody, the meeting moves to 3 pm","time":"2026-12-02 17:20:00"}"#;
    let list: Vec<&str> = vec![one; n];
    if n == 1 {
        one.as_bytes().to_vec()
    } else {
        format!("[{}]", list.join(",")).into_bytes()
    }
}

fn deflate(messages: usize) {
    let payload = chat_json(messages);
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 64);
    let mut d = Deflater::default();
    print(
        "permessage-deflate compress, fresh stream (JSON)",
        len,
        measure(len, || {
            out.clear();
            d.deflate(black_box(&payload), true, &mut out);
            black_box(&out);
        }),
    );
    let fresh = out.clone();
    let mut i = Inflater::default();
    let mut inflated = BytesMut::with_capacity(len);
    print(
        "permessage-deflate inflate, fresh stream (JSON)",
        len,
        measure(len, || {
            inflated.clear();
            i.inflate(black_box(&fresh), u32::MAX, true, &mut inflated)
                .unwrap();
            black_box(&inflated);
        }),
    );
    let mut d = Deflater::default();
    print(
        "permessage-deflate compress, context takeover (JSON)",
        len,
        measure(len, || {
            out.clear();
            d.deflate(black_box(&payload), false, &mut out);
            black_box(&out);
        }),
    );
}

/// Bytes on the wire (frame header included) for one chat message, as the gateway sends
/// it: plain, compressed as a fresh stream, and with context takeover after a few alike.
fn wire_bytes() {
    println!();
    println!("| message (server to client) | plain frame | no-context-takeover | context-takeover (steady) |");
    println!("|---|---|---|---|");
    for n in [1, 10] {
        let payload = chat_json(n);
        let frame = |body: usize| body + if body < 126 { 2 } else { 4 };
        let mut fresh = Vec::new();
        Deflater::default().deflate(&payload, true, &mut fresh);
        let mut d = Deflater::default();
        let mut steady = Vec::new();
        for _ in 0..4 {
            steady.clear();
            d.deflate(&payload, false, &mut steady);
        }
        let what = if n == 1 {
            "one chat message (JSON)".to_owned()
        } else {
            format!("{n} chat messages in a JSON list")
        };
        println!(
            "| {what}, {} B | {} B | {} B | {} B |",
            payload.len(),
            frame(payload.len()),
            frame(fresh.len()),
            frame(steady.len())
        );
    }
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
    for messages in [1, 10] {
        deflate(messages);
    }
    wire_bytes();
}
