//! Reply records (spec 1.4): `u32` length, then a serialized payload; what a caller reads
//! on a query link. Oracles: same records for any split; records re-encode to the exact
//! input; memory within the input plus the 64 KiB reserved ahead, whatever length is
//! announced; payloads unserialize without panicking.
#![no_main]

use bytes::BytesMut;
use gatewayworker::protocol::frame::{encode_reply, ReplyDecoder};
use gatewayworker::protocol::php::unserialize::unserialize_lenient;
use gatewayworker_fuzz::{assert_bounded, measure, pull, same_for_any_split};
use libfuzzer_sys::fuzz_target;

const REPLY_SIZE_MAX: u32 = 2048;

fuzz_target!(|data: &[u8]| {
    let pulled = same_for_any_split(data, |chunks| {
        let mut decoder = ReplyDecoder::new(REPLY_SIZE_MAX);
        pull(chunks, |buf| decoder.decode(buf), |_| true)
    });
    let mut reencoded = BytesMut::new();
    for payload in pulled.items.iter().flatten() {
        assert!(payload.len() <= REPLY_SIZE_MAX as usize);
        encode_reply(payload, &mut reencoded);
    }
    assert_eq!(reencoded.len(), pulled.consumed);
    assert_eq!(&reencoded[..], &data[..pulled.consumed]);
    if let Some(e) = &pulled.fatal {
        let len = u32::from_be_bytes(data[pulled.consumed..][..4].try_into().unwrap());
        assert!(
            len > REPLY_SIZE_MAX,
            "refused a record within the bound: {e:?}"
        );
    }
    let (_, peak) = measure(|| {
        let mut buf = BytesMut::from(data);
        let mut decoder = ReplyDecoder::new(u32::MAX);
        while let Ok(Some(_)) = decoder.decode(&mut buf) {}
    });
    assert_bounded("ReplyDecoder", peak, 2 * data.len() + 64 * 1024 + 4096);
    for payload in pulled.items.iter().flatten() {
        let _ = unserialize_lenient(payload);
    }
});
