//! PHP `unserialize` (sessions in ext_data, serialized bodies, reply payloads), strict and
//! lenient, and the session merge built on it. Oracles: a value accepted serializes to
//! bytes that unserialize to the same value (same bytes again); the element and depth
//! limits hold; heap bounded by the input whatever counts and lengths are announced.
#![no_main]

use gatewayworker::protocol::php::merge::merge_session;
use gatewayworker::protocol::php::serialize::serialize;
use gatewayworker::protocol::php::unserialize::{
    unserialize, unserialize_lenient, unserialize_prefix, UnserializeLimits,
};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker_fuzz::{assert_bounded, measure};
use libfuzzer_sys::fuzz_target;

/// Small limits, so that the fuzzer reaches them.
const LIMITS: UnserializeLimits = UnserializeLimits {
    depth_max: 32,
    elements_max: 256,
};

fn count(value: &PhpValue) -> usize {
    match value {
        PhpValue::Array(a) => 1 + a.iter().map(|(_, v)| count(v)).sum::<usize>(),
        _ => 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let (strict, peak) = measure(|| unserialize(data, &LIMITS));
    assert_bounded("unserialize", peak, 256 * data.len() + 4096);
    if let Ok(value) = &strict {
        assert!(
            count(value) <= LIMITS.elements_max + 1,
            "elements_max not enforced"
        );
        let bytes = serialize(value);
        let back = unserialize(&bytes, &UnserializeLimits::default())
            .expect("serialize output unserializes");
        assert_eq!(
            serialize(&back),
            bytes,
            "serialize/unserialize round trip differs"
        );
        // The prefix form takes the same value, all of it.
        let (prefix, used) = unserialize_prefix(data, &LIMITS).expect("prefix of a whole value");
        assert_eq!(used, data.len());
        assert_eq!(serialize(&prefix), bytes);
    }
    let (lenient, peak) = measure(|| unserialize_lenient(data));
    assert_bounded("unserialize_lenient", peak, 256 * data.len() + 4096);
    if let Ok(value) = &strict {
        assert_eq!(
            serialize(value),
            serialize(&lenient),
            "strict and lenient disagree"
        );
    }
    // The session merge: the input cut in two at its first 0xff byte.
    let (current, update) = match data.iter().position(|&b| b == 0xff) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b""[..]),
    };
    let (merged, peak) = measure(|| merge_session(current, update));
    assert_bounded("merge_session", peak, 512 * data.len() + 4096);
    if let Ok(merged) = merged {
        let _ = unserialize_lenient(&merged);
    }
});
