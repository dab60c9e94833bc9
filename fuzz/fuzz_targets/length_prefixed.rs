//! The frame protocol of the public port: `u32` big-endian total length (itself included),
//! then the payload. Oracles: the same events for any split; the messages re-encode to
//! exactly the consumed input; messages within the limit; heap bounded by the input
//! whatever length is announced.
#![no_main]

use bytes::BytesMut;
use gatewayworker::protocol::public::length_prefixed::encode;
use gatewayworker::protocol::public::{PublicEvent, PublicProtocol};
use gatewayworker_fuzz::{
    assert_bounded, measure, public_drain, public_events, same_for_any_split,
};
use libfuzzer_sys::fuzz_target;

const PACKAGE_SIZE_MAX: u32 = 1024;

fuzz_target!(|data: &[u8]| {
    let events = same_for_any_split(data, |chunks| {
        public_events(PublicProtocol::Frame.decoder(PACKAGE_SIZE_MAX), chunks)
    });
    let mut reencoded = BytesMut::new();
    for event in &events {
        match event {
            PublicEvent::Message { data, binary } => {
                assert!(!binary);
                assert!(data.len() <= PACKAGE_SIZE_MAX as usize);
                encode(data, &mut reencoded).expect("a decoded message encodes");
            }
            PublicEvent::Close(_) => {}
            other => panic!("unexpected frame-protocol event {other:?}"),
        }
    }
    assert_eq!(
        &reencoded[..],
        &data[..reencoded.len()],
        "messages do not re-encode to the input"
    );
    let (_, peak) = measure(|| public_drain(PublicProtocol::Frame.decoder(u32::MAX), data));
    assert_bounded(
        "LengthPrefixedDecoder",
        peak,
        2 * data.len() + 68 * 1024,
    );
});
