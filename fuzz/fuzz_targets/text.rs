//! The text protocol of the public port: `\n`-terminated lines, trailing CR/LF stripped.
//! Oracles: the same events for any split (the byte count of a too-long line aside); no message holds a `\n` or ends in `\r`;
//! messages within the limit; heap bounded by the input.
#![no_main]

use gatewayworker::protocol::public::{CloseReason, PublicEvent, PublicProtocol, TextError};
use gatewayworker_fuzz::{
    assert_bounded, measure, public_drain, public_events, same_for_any_split,
};
use libfuzzer_sys::fuzz_target;

const PACKAGE_SIZE_MAX: u32 = 512;

fuzz_target!(|data: &[u8]| {
    let events = same_for_any_split(data, |chunks| {
        let mut events = public_events(PublicProtocol::Text.decoder(PACKAGE_SIZE_MAX), chunks);
        // LineTooLong counts the bytes buffered when the limit was seen ("len bytes or
        // more"), which depends on how the input was cut: compared as at least `max`.
        if let Some(PublicEvent::Close(CloseReason::Text(TextError::LineTooLong { len, max }))) =
            events.last_mut()
        {
            assert!(*len >= *max as usize, "LineTooLong below the maximum");
            *len = *max as usize;
        }
        events
    });
    for event in &events {
        match event {
            PublicEvent::Message { data, binary } => {
                assert!(!binary);
                assert!(data.len() <= PACKAGE_SIZE_MAX as usize);
                assert!(!data.contains(&b'\n'), "a message holds a newline");
                assert!(!data.ends_with(b"\r"), "a message ends in CR");
            }
            PublicEvent::Close(_) => {}
            other => panic!("unexpected text-protocol event {other:?}"),
        }
    }
    let (_, peak) = measure(|| public_drain(PublicProtocol::Text.decoder(PACKAGE_SIZE_MAX), data));
    assert_bounded("TextDecoder", peak, 2 * data.len() + 4096);
});
