//! JSON to PHP values: `json_decode($text, true)` (worker_connect bodies, register lines,
//! API arguments) and the serde_json conversions. Oracles: an accepted value encodes with
//! `json_encode`, and decoding and encoding that text is stable after one round; `from_json_value` and
//! `to_json_value` round-trip; heap bounded by the input.
#![no_main]

use gatewayworker::protocol::php::json::{
    from_json_value, json_decode, json_decode_with_depth, json_encode, to_json_value,
    JsonEncodeError, JsonEncodeOptions,
};
use gatewayworker::protocol::php::serialize::serialize;
use gatewayworker_fuzz::{assert_bounded, measure};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (decoded, peak) = measure(|| json_decode(data));
    assert_bounded("json_decode", peak, 256 * data.len() + 4096);
    if let Ok(value) = &decoded {
        for options in [
            JsonEncodeOptions::default(),
            JsonEncodeOptions::unescaped_unicode(),
        ] {
            // PHP too: json_decode("1e400") is INF, which json_encode refuses.
            let text = match json_encode(value, options) {
                Err(JsonEncodeError::InfOrNan) => continue,
                other => other.expect("a decoded value encodes"),
            };
            // Not always the same value: json_encode drops a float's zero fraction (PHP
            // without JSON_PRESERVE_ZERO_FRACTION), so 1.0 comes back as int 1, and -0.0
            // is written "-0", which reads back as int 0. After one such round the text is
            // a fixed point.
            let round = |text: &[u8]| {
                let back = json_decode(text).expect("json_encode output decodes");
                json_encode(&back, options).expect("a decoded value encodes")
            };
            let once = round(&text);
            let twice = round(&once);
            assert_eq!(
                String::from_utf8_lossy(&twice),
                String::from_utf8_lossy(&once),
                "json_encode . json_decode is not stable after one round"
            );
        }
    }
    // A shallow depth limit refuses, never panics.
    let _ = json_decode_with_depth(data, 4);
    if let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) {
        let (php, peak) = measure(|| from_json_value(&json));
        assert_bounded("from_json_value", peak, 256 * data.len() + 4096);
        if let Ok(php) = php {
            if let Ok(json2) = to_json_value(&php) {
                let php2 = from_json_value(&json2).expect("to_json_value output converts");
                assert_eq!(
                    serialize(&php2),
                    serialize(&php),
                    "serde_json round trip differs"
                );
            }
        }
    }
});
