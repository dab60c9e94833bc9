//! Short constructors for PHP values in tests, shared by the wasm host and probe tests.

#![allow(dead_code)] // Each test binary uses a different subset.

use bytes::Bytes;
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};

/// A PHP string.
pub fn s(text: &str) -> PhpValue {
    PhpValue::str(text)
}

/// Bytes of a text.
pub fn b(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// A PHP array with string keys, in order.
pub fn map(entries: &[(&str, PhpValue)]) -> PhpValue {
    PhpValue::Array(
        entries
            .iter()
            .map(|(k, v)| (PhpKey::from_bytes(k.as_bytes()), v.clone()))
            .collect::<PhpArray>(),
    )
}

/// A PHP list.
pub fn list(items: Vec<PhpValue>) -> PhpValue {
    let mut a = PhpArray::new();
    for v in items {
        a.push(v);
    }
    PhpValue::Array(a)
}
