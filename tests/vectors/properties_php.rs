//! Properties of the PHP value model over arbitrary values and arbitrary bytes.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use gatewayworker::protocol::php::json::{
    from_json_value, json_decode, json_encode, to_json_value, JsonEncodeOptions,
};
use gatewayworker::protocol::php::serialize::serialize;
use gatewayworker::protocol::php::unserialize::{
    unserialize, unserialize_lenient, UnserializeLimits,
};
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const CASES: u64 = 1000;

/// An arbitrary PHP value: every variant, NaN/INF/-0 floats, non-UTF-8 strings, nested
/// arrays with int and string keys (string keys normalised like PHP does).
#[derive(Debug, Clone)]
struct Value(PhpValue);

fn arbitrary_float(g: &mut Gen) -> f64 {
    match u8::arbitrary(g) % 6 {
        0 => *g
            .choose(&[
                f64::NAN,
                f64::INFINITY,
                f64::NEG_INFINITY,
                -0.0,
                0.0,
                5e-324,
            ])
            .unwrap(),
        1 => f64::from_bits(u64::arbitrary(g)),
        2 => f64::from(i32::arbitrary(g)) / 8.0,
        _ => f64::arbitrary(g),
    }
}

fn arbitrary_bytes(g: &mut Gen) -> Bytes {
    if bool::arbitrary(g) {
        Bytes::from(String::arbitrary(g))
    } else {
        Bytes::from(Vec::<u8>::arbitrary(g))
    }
}

fn arbitrary_key(g: &mut Gen) -> PhpKey {
    match u8::arbitrary(g) % 3 {
        0 => PhpKey::Int(i64::arbitrary(g)),
        1 => PhpKey::Int(i64::from(u8::arbitrary(g) % 8)),
        _ => PhpKey::from_shared(arbitrary_bytes(g)),
    }
}

fn arbitrary_value(g: &mut Gen, depth: usize) -> PhpValue {
    let kinds = if depth >= 3 { 6 } else { 8 };
    match u8::arbitrary(g) % kinds {
        0 => PhpValue::Null,
        1 => PhpValue::Bool(bool::arbitrary(g)),
        2 => PhpValue::Int(i64::arbitrary(g)),
        3 => PhpValue::Float(arbitrary_float(g)),
        4 | 5 => PhpValue::Str(arbitrary_bytes(g)),
        _ => {
            let len = usize::arbitrary(g) % 24;
            let mut array = PhpArray::new();
            for _ in 0..len {
                if bool::arbitrary(g) {
                    array.push(arbitrary_value(g, depth + 1));
                } else {
                    array.insert(arbitrary_key(g), arbitrary_value(g, depth + 1));
                }
            }
            PhpValue::Array(array)
        }
    }
}

impl Arbitrary for Value {
    fn arbitrary(g: &mut Gen) -> Value {
        Value(arbitrary_value(g, 0))
    }
}

/// Equality with NaN equal to itself bit for bit (and -0 distinct from 0).
fn same(a: &PhpValue, b: &PhpValue) -> bool {
    match (a, b) {
        (PhpValue::Float(x), PhpValue::Float(y)) => x.to_bits() == y.to_bits(),
        (PhpValue::Array(x), PhpValue::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same(va, vb))
        }
        _ => a == b,
    }
}

/// Equality where floats only need to be floats.
fn same_shape(a: &PhpValue, b: &PhpValue) -> bool {
    match (a, b) {
        (PhpValue::Float(_), PhpValue::Float(_)) => true,
        (PhpValue::Array(x), PhpValue::Array(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((ka, va), (kb, vb))| ka == kb && same_shape(va, vb))
        }
        _ => a == b,
    }
}

/// NaN payloads other than PHP's canonical one are not preserved by `d:NAN;`.
fn canonical_nan(value: &PhpValue) -> PhpValue {
    match value {
        PhpValue::Float(x) if x.is_nan() => PhpValue::Float(f64::NAN),
        PhpValue::Array(a) => PhpValue::Array(
            a.iter()
                .map(|(k, v)| (k.clone(), canonical_nan(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[test]
fn serialize_unserialize_round_trips() {
    fn prop(value: Value) -> bool {
        let expected = canonical_nan(&value.0);
        let bytes = serialize(&value.0);
        let strict = unserialize(&bytes, &UnserializeLimits::default()).expect("own output");
        let lenient = unserialize_lenient(&bytes);
        same(&strict, &expected) && same(&lenient, &expected) && serialize(&strict) == bytes
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Value) -> bool);
}

/// Values json_encode accepts and json_decode gives back unchanged: UTF-8 strings, finite
/// floats that are not integral (json prints 3.0 as `3`, which decodes as an int), no
/// -0.0 (printed `-0`, an int).
fn json_lossless(value: &PhpValue) -> bool {
    match value {
        PhpValue::Float(x) => x.is_finite() && x.fract() != 0.0,
        PhpValue::Str(s) => std::str::from_utf8(s).is_ok(),
        PhpValue::Array(a) => a.iter().all(|(k, v)| {
            json_lossless(v)
                && match k {
                    PhpKey::Str(s) => std::str::from_utf8(s).is_ok(),
                    PhpKey::Int(_) => true,
                }
        }),
        _ => true,
    }
}

#[test]
fn json_encode_decode_round_trips_where_lossless() {
    fn prop(value: Value, unicode: bool, slashes: bool) -> TestResult {
        let options = JsonEncodeOptions {
            unescaped_unicode: unicode,
            unescaped_slashes: slashes,
            ..JsonEncodeOptions::default()
        };
        let encoded = json_encode(&value.0, options);
        if !json_lossless(&value.0) {
            return TestResult::discard();
        }
        let encoded = encoded.expect("lossless values encode");
        let decoded = json_decode(&encoded).expect("own output decodes");
        // serde_json agrees that it is JSON (its float parsing is not correctly rounded
        // without `float_roundtrip`, so only the shape is compared).
        let via_serde: serde_json::Value = serde_json::from_slice(&encoded).expect("valid JSON");
        let from_serde = from_json_value(&via_serde).expect("in range");
        CHECKED.fetch_add(1, Ordering::Relaxed);
        TestResult::from_bool(same(&decoded, &value.0) && same_shape(&from_serde, &value.0))
    }
    static CHECKED: AtomicU64 = AtomicU64::new(0);
    QuickCheck::new()
        .tests(CASES)
        .max_tests(CASES * 50)
        .quickcheck(prop as fn(Value, bool, bool) -> TestResult);
    // Discards must not have eaten the case count.
    assert!(CHECKED.load(Ordering::Relaxed) >= CASES);
}

#[test]
fn json_encode_refuses_exactly_nan_inf_and_bad_utf8() {
    fn has_bad(value: &PhpValue) -> bool {
        match value {
            PhpValue::Float(x) => !x.is_finite(),
            PhpValue::Str(s) => std::str::from_utf8(s).is_err(),
            PhpValue::Array(a) => a.iter().any(|(k, v)| {
                has_bad(v) || matches!(k, PhpKey::Str(s) if std::str::from_utf8(s).is_err())
            }),
            _ => false,
        }
    }
    fn prop(value: Value) -> bool {
        json_encode(&value.0, JsonEncodeOptions::default()).is_err() == has_bad(&value.0)
            && to_json_value(&value.0).is_err() == has_bad(&value.0)
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Value) -> bool);
}

#[test]
fn serde_mapping_round_trips_when_it_succeeds() {
    fn prop(value: Value) -> bool {
        match to_json_value(&value.0) {
            Ok(json) => same(&from_json_value(&json).expect("own output"), &value.0),
            Err(_) => true,
        }
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Value) -> bool);
}

/// Garbage shaped like serialized data: pieces of the grammar glued at random.
#[derive(Debug, Clone)]
struct Garbage(Vec<u8>);

impl Arbitrary for Garbage {
    fn arbitrary(g: &mut Gen) -> Garbage {
        const PIECES: &[&[u8]] = &[
            b"a:",
            b"s:",
            b"i:",
            b"d:",
            b"b:",
            b"N;",
            b"O:",
            b"r:",
            b"1",
            b"0",
            b"99999999999999999999",
            b":",
            b";",
            b"{",
            b"}",
            b"\"",
            b"-",
            b"E+",
            b".",
            b"INF",
            b"NAN",
            b"[",
            b"]",
            b",",
            b"\\u",
            b"d83d",
            b"\\",
            b"true",
            b"null",
            b"\xff",
            b"\xc3",
        ];
        let mut out = Vec::new();
        let base = serialize(&Value::arbitrary(g).0);
        if bool::arbitrary(g) && !base.is_empty() {
            // A valid document with one byte range replaced.
            let cut = usize::arbitrary(g) % base.len();
            out.extend_from_slice(&base[..cut]);
            out.extend_from_slice(g.choose(PIECES).unwrap());
            out.extend_from_slice(&base[(cut + 1).min(base.len())..]);
        } else {
            for _ in 0..usize::arbitrary(g) % 16 {
                out.extend_from_slice(g.choose(PIECES).unwrap());
            }
        }
        Garbage(out)
    }
}

#[test]
fn garbage_never_panics() {
    fn prop(garbage: Garbage, raw: Vec<u8>) -> bool {
        let limits = UnserializeLimits {
            depth_max: 4,
            elements_max: 64,
        };
        for input in [&garbage.0, &raw] {
            let strict = unserialize(input, &limits);
            let lenient = unserialize_lenient(input);
            // Whatever strict accepts, lenient accepts identically.
            if let Ok(v) = &strict {
                assert!(same(v, &lenient));
            }
            let _ = json_decode(input);
        }
        true
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Garbage, Vec<u8>) -> bool);
}

#[test]
fn lenient_ignores_trailing_bytes_after_a_value() {
    fn prop(value: Value, tail: Vec<u8>) -> bool {
        let mut bytes = serialize(&value.0);
        bytes.extend_from_slice(&tail);
        same(&unserialize_lenient(&bytes), &canonical_nan(&value.0))
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Value, Vec<u8>) -> bool);
}

#[test]
fn float_texts_read_back_as_php_promises() {
    use gatewayworker::protocol::php::float::{to_json_repr, to_php_string, to_serialize_repr};
    fn prop(bits: u64) -> TestResult {
        let x = f64::from_bits(bits);
        if !x.is_finite() {
            return TestResult::discard();
        }
        let shortest = to_serialize_repr(x);
        // serialize: exact round trip, at most 17 significant digits.
        let round_trips = shortest.parse::<f64>().map(f64::to_bits) == Ok(bits);
        let digits = shortest
            .split(['E', 'e'])
            .next()
            .unwrap()
            .bytes()
            .filter(u8::is_ascii_digit)
            .skip_while(|d| *d == b'0')
            .count();
        // json: the same text with a lower-case exponent marker.
        let json_same = to_json_repr(x) == Some(shortest.replace('E', "e"));
        // (string): the value rounded to 14 significant digits.
        let fourteen =
            to_php_string(x).parse::<f64>().ok() == format!("{:.13e}", x).parse::<f64>().ok();
        TestResult::from_bool(round_trips && digits <= 17 && json_same && fourteen)
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(u64) -> TestResult);
}
