//! GWV, the PHP values guests hand the host (src/wasm/value.rs). Oracles: a value accepted
//! encodes to bytes that decode to the same value (byte-equal re-encoding); the depth
//! limit holds; heap bounded by the input whatever counts and lengths are announced.
#![no_main]

use gatewayworker::protocol::php::PhpValue;
use gatewayworker::wasm::value::{decode, encode, GWV_DEPTH_MAX};
use gatewayworker_fuzz::{assert_bounded, measure};
use libfuzzer_sys::fuzz_target;

fn depth(value: &PhpValue) -> usize {
    match value {
        PhpValue::Array(a) => 1 + a.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|data: &[u8]| {
    let (decoded, peak) = measure(|| decode(data));
    // Linear in the input: an array's count is believed up to half the bytes left, and
    // each entry reserved costs about 100 heap bytes (array slot, key index, dedup set).
    assert_bounded("gwv::decode", peak, 256 * data.len() + 4096);
    if let Ok(value) = decoded {
        assert!(depth(&value) <= GWV_DEPTH_MAX);
        let bytes = encode(&value);
        let back = decode(&bytes).expect("encode output decodes");
        assert_eq!(encode(&back), bytes, "GWV round trip differs");
    }
});
