//! GatewayProtocol frames (spec 1): the incremental decoder of the gateway and worker links.
//! Oracles: same frames for any split of the input; each decoded frame encodes back to the
//! exact bytes it came from; `frame_len` agrees with the decoder; the buffer never grows
//! past the input plus the 64 KiB reserved ahead; bodies decode without panicking.
#![no_main]

use bytes::BytesMut;
use gatewayworker::protocol::frame::{frame_len, FrameDecodeError, FrameDecoder};
use gatewayworker::protocol::php::body::decode_body;
use gatewayworker_fuzz::{assert_bounded, measure, pull, same_for_any_split};
use libfuzzer_sys::fuzz_target;

/// Small enough that the fuzzer reaches it with short inputs.
const PACKAGE_SIZE_MAX: u32 = 2048;

fuzz_target!(|data: &[u8]| {
    let pulled = same_for_any_split(data, |chunks| {
        let mut decoder = FrameDecoder::new(PACKAGE_SIZE_MAX);
        pull(
            chunks,
            |buf| decoder.decode(buf),
            FrameDecodeError::is_fatal,
        )
    });
    // Round trip: the consumed prefix is exactly the frames re-encoded.
    let mut reencoded = BytesMut::new();
    let mut at = 0;
    for item in &pulled.items {
        let len = match item {
            Ok(frame) => {
                frame.encode(&mut reencoded);
                frame.encoded_len()
            }
            Err(FrameDecodeError::UnknownCommand { header }) => {
                reencoded.extend_from_slice(&data[at..at + header.pack_len as usize]);
                header.pack_len as usize
            }
            Err(e) => panic!("fatal error {e:?} among the items"),
        };
        assert!(len <= PACKAGE_SIZE_MAX as usize);
        at += len;
    }
    assert_eq!(at, pulled.consumed);
    assert_eq!(
        &reencoded[..],
        &data[..at],
        "re-encoded frames differ from the input"
    );
    // frame_len on what is left agrees with the decoder's stop.
    let rest = &data[at..];
    match (&pulled.fatal, frame_len(rest, PACKAGE_SIZE_MAX)) {
        (Some(e), Err(e2)) => assert_eq!(e, &e2),
        (None, Ok(None)) => {}
        (None, Ok(Some(n))) => assert!(n > rest.len(), "a complete frame was left undecoded"),
        (fatal, len) => panic!("decoder stopped with {fatal:?}, frame_len says {len:?}"),
    }
    // Memory: the whole input at once stays within the input plus the reserve-ahead bound.
    let (_, peak) = measure(|| {
        let mut buf = BytesMut::from(data);
        let mut decoder = FrameDecoder::new(u32::MAX);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    });
    assert_bounded("FrameDecoder", peak, 2 * data.len() + 64 * 1024 + 4096);
    for frame in pulled.items.iter().flatten() {
        let _ = decode_body(&frame.body, frame.header.flag);
    }
});
