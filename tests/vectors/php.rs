//! The PHP value vectors (`php_serialize`, `php_unserialize`, `scalar_body_float`,
//! `array_replace_recursive`, `php_array_keys`), byte for byte.

use bytes::Bytes;
use gatewayworker::protocol::frame::FLAG_BODY_IS_SCALAR;
use gatewayworker::protocol::php::body::{decode_body, encode_body};
use gatewayworker::protocol::php::float::{to_json_repr, to_php_string, to_serialize_repr};
use gatewayworker::protocol::php::json::{json_encode, JsonEncodeOptions};
use gatewayworker::protocol::php::merge::array_replace_recursive;
use gatewayworker::protocol::php::serialize::serialize;
use gatewayworker::protocol::php::unserialize::{
    unserialize, unserialize_lenient, UnserializeError, UnserializeLimits,
};
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::testing::vectors::{bytes, encode_hex, php, php_key, section};

fn show(b: &[u8]) -> String {
    format!("{:?} ({})", String::from_utf8_lossy(b), encode_hex(b))
}

/// Equality that treats NaN as equal to itself, bit for bit.
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

#[test]
fn php_serialize_vectors() {
    let vectors = section("php_serialize");
    assert!(vectors.len() >= 70);
    for v in vectors {
        let value = php(&v["input"]["value"]);
        let expected = bytes(&v["expected"]["serialized"]);
        let got = serialize(&value);
        assert_eq!(
            got,
            expected,
            "{}: {} != {}",
            v["name"],
            show(&got),
            show(&expected)
        );
        // And back: the strict decoder reads PHP's output into the same value.
        let back = unserialize(&expected, &UnserializeLimits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", v["name"]));
        assert!(same(&back, &value), "{}: {back:?} != {value:?}", v["name"]);
    }
}

#[test]
fn php_unserialize_vectors() {
    let vectors = section("php_unserialize");
    assert_eq!(vectors.len(), 9);
    for v in vectors {
        let name = &v["name"];
        let input = bytes(&v["input"]["serialized"]);
        let strict = unserialize(&input, &UnserializeLimits::default());
        if v["expected"]["must_reject"] == true {
            assert!(
                matches!(strict, Err(UnserializeError::Object { offset: 0 })),
                "{name}: {strict:?}"
            );
            assert_eq!(unserialize_lenient(&input), PhpValue::Bool(false), "{name}");
            continue;
        }
        let expected = php(&v["expected"]["value"]);
        let lenient = unserialize_lenient(&input);
        assert!(
            same(&lenient, &expected),
            "{name}: {lenient:?} != {expected:?}"
        );
        let reserialized = serialize(&lenient);
        assert_eq!(
            reserialized,
            bytes(&v["expected"]["reserialized"]),
            "{name}"
        );
        // Same through the frame body decoder (flag bit 0 clear).
        let body = decode_body(&Bytes::from(input.clone()), 0);
        assert!(same(&body, &expected), "{name}: body {body:?}");
    }
}

#[test]
fn scalar_body_float_vectors() {
    let vectors = section("scalar_body_float");
    assert_eq!(vectors.len(), 41);
    for v in vectors {
        let name = &v["name"];
        let value = php(&v["input"]["value"]);
        let PhpValue::Float(x) = value else {
            panic!("{name}: not a float");
        };
        let body = bytes(&v["expected"]["body"]);
        assert_eq!(to_php_string(x).as_bytes(), &body[..], "{name}");
        let (encoded, flag) = encode_body(&value);
        assert_eq!(&encoded[..], &body[..], "{name}");
        assert_eq!(
            u64::from(flag),
            v["expected"]["flag"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(flag, FLAG_BODY_IS_SCALAR);
        let serialized = bytes(&v["expected"]["serialized"]);
        assert_eq!(serialize(&value), serialized, "{name}");
        assert_eq!(
            format!("d:{};", to_serialize_repr(x)).as_bytes(),
            &serialized[..],
            "{name}"
        );
        // `json` is absent or false where json_encode fails (INF, NAN).
        match v["expected"]["json"].as_str() {
            Some(json) => {
                assert_eq!(to_json_repr(x).as_deref(), Some(json), "{name}");
                let encoded = json_encode(&value, JsonEncodeOptions::default()).unwrap();
                assert_eq!(encoded, json.as_bytes(), "{name}");
            }
            None => {
                assert!(!x.is_finite(), "{name}: {}", v["expected"]["json"]);
                assert_eq!(to_json_repr(x), None, "{name}");
                assert!(json_encode(&value, JsonEncodeOptions::default()).is_err());
            }
        }
        // A scalar body decodes as its raw bytes.
        let decoded = decode_body(&encoded, flag);
        assert_eq!(decoded, PhpValue::Str(Bytes::from(body.clone())), "{name}");
    }
}

fn as_array(value: PhpValue, what: &str) -> PhpArray {
    match value {
        PhpValue::Array(a) => a,
        other => panic!("{what}: expected an array, got {other:?}"),
    }
}

#[test]
fn array_replace_recursive_vectors() {
    let vectors = section("array_replace_recursive");
    assert_eq!(vectors.len(), 9);
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let base = as_array(php(&v["input"]["base"]), name);
        let patch = as_array(php(&v["input"]["patch"]), name);
        // The serialized inputs decode to the typed ones.
        let base_bytes = bytes(&v["input"]["base_serialized"]);
        let patch_bytes = bytes(&v["input"]["patch_serialized"]);
        let limits = UnserializeLimits::default();
        assert_eq!(
            unserialize(&base_bytes, &limits),
            Ok(PhpValue::Array(base.clone()))
        );
        assert_eq!(
            unserialize(&patch_bytes, &limits),
            Ok(PhpValue::Array(patch.clone()))
        );
        let merged = PhpValue::Array(array_replace_recursive(&base, &patch));
        assert_eq!(merged, php(&v["expected"]["result"]), "{name}");
        assert_eq!(
            serialize(&merged),
            bytes(&v["expected"]["result_serialized"]),
            "{name}"
        );
    }
}

#[test]
fn php_array_keys_vectors() {
    let vectors = section("php_array_keys");
    assert_eq!(vectors.len(), 1);
    for v in vectors {
        let keys = v["input"]["keys"].as_array().unwrap();
        let stored = v["expected"]["stored_keys"].as_array().unwrap();
        assert_eq!(keys.len(), stored.len());
        let mut map = PhpArray::new();
        for (key, expected) in keys.iter().zip(stored) {
            let key = PhpKey::from_bytes(key.as_str().unwrap().as_bytes());
            assert_eq!(key, php_key(expected), "{key:?}");
            map.insert(key, PhpValue::Bool(true));
        }
        let map = PhpValue::Array(map);
        assert_eq!(serialize(&map), bytes(&v["expected"]["serialized_map"]));
        let back = unserialize(
            &bytes(&v["expected"]["serialized_map"]),
            &UnserializeLimits::default(),
        );
        assert_eq!(back, Ok(map));
    }
}
