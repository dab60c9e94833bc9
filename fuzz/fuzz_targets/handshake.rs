//! The websocket handshake head (request line, headers) up to the 101 answer or a refusal,
//! then the ON_WEBSOCKET_CONNECT data built from it: the query string (PHP `parse_str`,
//! with its `a[b][]` nesting) and the Cookie header (PHP's cookie parsing).
//! Oracles: the same events for any split; the head kept is at most 16 KiB; `connect_data`
//! serializes and unserializes back to itself; heap bounded by the input.
#![no_main]

use std::net::SocketAddr;

use gatewayworker::protocol::php::serialize::serialize;
use gatewayworker::protocol::php::unserialize::{unserialize, UnserializeLimits};
use gatewayworker::protocol::public::handshake::{parse_cookie, parse_str, HANDSHAKE_SIZE_MAX};
use gatewayworker::protocol::public::{PublicEvent, PublicProtocol};
use gatewayworker_fuzz::{assert_bounded, measure, public_events, same_for_any_split};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Up to the end of the head only: frames after it are the websocket target's.
    let head_end = data
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(data.len(), |i| i + 4);
    let head = &data[..head_end];
    let events = same_for_any_split(head, |chunks| {
        public_events(PublicProtocol::Websocket.decoder(1 << 20), chunks)
    });
    let remote: SocketAddr = "203.0.113.7:51234".parse().unwrap();
    for event in &events {
        if let PublicEvent::Handshake { request, .. } = event {
            assert!(request.head().len() <= HANDSHAKE_SIZE_MAX);
            let (value, peak) = measure(|| request.connect_data(remote, 8282));
            assert_bounded("connect_data", peak, 256 * request.head().len() + 64 * 1024);
            let bytes = serialize(&value);
            let back = unserialize(&bytes, &UnserializeLimits::default())
                .expect("connect_data serializes to a value unserialize takes back");
            assert_eq!(serialize(&back), bytes);
        }
    }
    // The query string and cookie parsers on their own, on any bytes.
    let (_, peak) = measure(|| {
        let query = parse_str(data);
        let cookie = parse_cookie(data);
        (query, cookie)
    });
    assert_bounded(
        "parse_str + parse_cookie",
        peak,
        256 * data.len() + 64 * 1024,
    );
});
