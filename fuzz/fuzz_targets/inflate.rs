//! The websocket decoder with permessage-deflate agreed: RSV1 rules, compressed messages
//! (whole and fragmented, interleaved with control frames) inflated with a shared
//! decompressor (no context takeover) or the connection's own (context takeover, chosen by
//! the first input byte), and the inflate bound. Oracles: the same events for any split of
//! the input; every message within the configured size (a zip bomb closes with 1009);
//! heap within a bound of the input, the configured size and the codec's fixed state.
#![no_main]

use bytes::BytesMut;
use gatewayworker::protocol::public::{
    CompressionMode, ConnContext, InflateCx, PublicDecoder, PublicEvent, PublicProtocol,
    SharedCodec,
};
use gatewayworker_fuzz::{assert_bounded, measure, same_for_any_split};
use libfuzzer_sys::fuzz_target;

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

/// Largest message accepted: small, so that the fuzzer reaches it (compressed or inflated).
const PACKAGE_SIZE_MAX: u32 = 4096;

/// Decoder state plus the codec it inflates with, as the gateway core keeps them.
fn run(mode: CompressionMode, chunks: &[&[u8]]) -> Vec<PublicEvent> {
    let mut decoder = PublicProtocol::Websocket.decoder_with(PACKAGE_SIZE_MAX, mode);
    let mut shared = SharedCodec::default();
    let mut conn: Option<Box<ConnContext>> = None;
    let mut buf = BytesMut::new();
    let mut events = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        let mut cx = InflateCx {
            shared: &mut shared,
            conn: &mut conn,
        };
        decoder.decode_with(&mut buf, &mut cx, &mut |e| events.push(e));
        if decoder.is_closed() {
            break;
        }
    }
    assert_eq!(
        decoder.is_closed(),
        matches!(events.last(), Some(PublicEvent::Close(_)))
    );
    assert!(decoder.negotiated().is_on(), "the fixed offer was declined");
    let _: &PublicDecoder = &decoder;
    events
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let mode = if first & 1 == 0 {
        CompressionMode::NoContextTakeover
    } else {
        CompressionMode::ContextTakeover
    };
    let mut input = HANDSHAKE.to_vec();
    input.extend_from_slice(rest);
    let events = same_for_any_split(&input, |chunks| run(mode, chunks));
    for event in &events {
        if let PublicEvent::Message { data, .. } = event {
            assert!(
                data.len() <= PACKAGE_SIZE_MAX as usize,
                "message over the limit"
            );
        }
    }
    let (_, peak) = measure(|| run(mode, &[&input]).len());
    // Input and message buffers as in the websocket target, plus the decompressor's fixed
    // state (zlib-rs: under 64 KiB with its window) and one inflate chunk (16 KiB).
    assert_bounded(
        "WebsocketDecoder with permessage-deflate",
        peak,
        2 * input.len() + 3 * PACKAGE_SIZE_MAX as usize + 68 * 1024 + 128 * 1024,
    );
});
