//! The RFC 6455 frame decoder of the public port, after a fixed valid handshake: masking,
//! fragmented sequences (continuations, control frames between fragments), UTF-8 checks
//! on text split across fragments, close frames, length forms (7, 16, 64 bit).
//! Oracles: the same events for any split of the input; every message within the
//! configured size; heap within a bound of the input and the configured size.
#![no_main]

use gatewayworker::protocol::public::{PublicEvent, PublicProtocol};
use gatewayworker_fuzz::{
    assert_bounded, measure, public_drain, public_events, same_for_any_split,
};
use libfuzzer_sys::fuzz_target;

const HANDSHAKE: &[u8] = b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// Largest message accepted: small, so that the fuzzer reaches it.
const PACKAGE_SIZE_MAX: u32 = 1024;

fuzz_target!(|data: &[u8]| {
    let mut input = HANDSHAKE.to_vec();
    input.extend_from_slice(data);
    let events = same_for_any_split(&input, |chunks| {
        public_events(PublicProtocol::Websocket.decoder(PACKAGE_SIZE_MAX), chunks)
    });
    assert!(
        matches!(events.first(), Some(PublicEvent::Handshake { .. })),
        "the fixed handshake was refused: {:?}",
        events.first()
    );
    for event in &events {
        match event {
            PublicEvent::Message { data, .. } => {
                assert!(
                    data.len() <= PACKAGE_SIZE_MAX as usize,
                    "message over the limit"
                )
            }
            PublicEvent::Write(bytes) => assert!(bytes.len() <= 2 + 125, "control reply too long"),
            _ => {}
        }
    }
    let (_, peak) =
        measure(|| public_drain(PublicProtocol::Websocket.decoder(PACKAGE_SIZE_MAX), &input));
    assert_bounded(
        "WebsocketDecoder",
        peak,
        2 * input.len() + 2 * PACKAGE_SIZE_MAX as usize + 68 * 1024,
    );
});
