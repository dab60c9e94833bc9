//! Loader for the byte-exact test vectors produced by running the reference PHP code.
//!
//! The ground truth is `../shared/spec/vectors.json` (beside the repository); the repository
//! keeps a copy in `spec/vectors.json` so that a fresh clone can run its tests. The file is
//! found in this order: `$GATEWAYWORKER_VECTORS`, the repository copy. A test
//! (`tests/vectors/copy.rs`) checks that the copy is identical to the shared one (and fails
//! when the shared one cannot be read).
//!
//! Every accessor panics with a message that names the file and section: a missing file
//! or section is a test failure, never a skip.

use std::path::PathBuf;
use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;

use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

/// Where the vectors file is read from.
pub fn vectors_path() -> PathBuf {
    if let Ok(path) = std::env::var("GATEWAYWORKER_VECTORS") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("spec/vectors.json")
}

/// The whole parsed file, read once per process.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let path = vectors_path();
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read test vectors at {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("test vectors at {} are not JSON: {e}", path.display()));
        assert_eq!(
            doc["format"],
            "gatewayworker-wire-vectors/1",
            "unexpected vectors format in {}",
            path.display()
        );
        doc
    })
}

/// The vectors of one section; panics when the section is missing or empty.
pub fn section(name: &str) -> &'static [Value] {
    let list = document()["sections"][name].as_array().unwrap_or_else(|| {
        panic!(
            "vectors section `{name}` missing in {}",
            vectors_path().display()
        )
    });
    assert!(!list.is_empty(), "vectors section `{name}` is empty");
    list
}

/// The vector named `name` in `section`.
pub fn vector(section_name: &str, name: &str) -> &'static Value {
    section(section_name)
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("vector `{name}` missing in section `{section_name}`"))
}

/// The bytes of a `{"hex": ..., "text": ...}` object (or a bare hex string).
pub fn bytes(value: &Value) -> Vec<u8> {
    let hex = match value {
        Value::String(s) => s.as_str(),
        Value::Object(o) => o
            .get("hex")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("expected {{\"hex\":..}}, got {value}")),
        _ => panic!("expected hex bytes, got {value}"),
    };
    decode_hex(hex).unwrap_or_else(|| panic!("bad hex in vectors: {hex}"))
}

/// Decodes lowercase or uppercase hex.
pub fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Lowercase hex of `bytes`, for readable assertion messages.
pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A PHP value from the vectors' typed form (`{"t":"int","v":"123"}` ...).
pub fn php(value: &Value) -> PhpValue {
    match value["t"].as_str() {
        Some("null") => PhpValue::Null,
        Some("bool") => PhpValue::Bool(value["v"].as_bool().expect("bool v")),
        Some("int") => PhpValue::Int(int_field(&value["v"])),
        Some("float") => PhpValue::Float(float_field(value)),
        Some("string") => PhpValue::Str(Bytes::from(bytes(value))),
        Some("array") => {
            let mut array = PhpArray::new();
            for entry in value["entries"].as_array().expect("array entries") {
                let key = match php(&entry["k"]) {
                    PhpValue::Int(n) => PhpKey::Int(n),
                    PhpValue::Str(s) => PhpKey::Str(s),
                    other => panic!("array key must be int or string, got {other:?}"),
                };
                array.push_unique(key, php(&entry["v"]));
            }
            PhpValue::Array(array)
        }
        _ => panic!("unknown typed PHP value {value}"),
    }
}

/// A PHP array key from the vectors' typed form.
pub fn php_key(value: &Value) -> PhpKey {
    match php(value) {
        PhpValue::Int(n) => PhpKey::Int(n),
        PhpValue::Str(s) => PhpKey::Str(s),
        other => panic!("array key must be int or string, got {other:?}"),
    }
}

fn int_field(v: &Value) -> i64 {
    match v {
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("bad int {s}")),
        Value::Number(n) => n.as_i64().expect("int"),
        _ => panic!("bad int {v}"),
    }
}

/// The exact double of a typed float: from `ieee754_be_hex` when given (it keeps NaN,
/// -0.0 and every bit), else from `v`.
fn float_field(value: &Value) -> f64 {
    if let Some(hex) = value.get("ieee754_be_hex").and_then(Value::as_str) {
        let raw = decode_hex(hex).expect("ieee754 hex");
        let arr: [u8; 8] = raw.try_into().expect("8 bytes of ieee754");
        return f64::from_be_bytes(arr);
    }
    match &value["v"] {
        Value::String(s) => match s.as_str() {
            "NAN" | "NaN" => f64::NAN,
            "INF" => f64::INFINITY,
            "-INF" => f64::NEG_INFINITY,
            s => s.parse().unwrap_or_else(|_| panic!("bad float {s}")),
        },
        Value::Number(n) => n.as_f64().expect("float"),
        v => panic!("bad float {v}"),
    }
}
