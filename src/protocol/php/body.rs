//! Frame bodies as PHP values (spec 1.2): scalars travel as their PHP string conversion
//! with [`FLAG_BODY_IS_SCALAR`](crate::protocol::frame::FLAG_BODY_IS_SCALAR), everything
//! else (arrays and null) PHP-serialized.

use bytes::Bytes;

use super::float::to_php_string;
use super::serialize::serialize;
use super::unserialize::unserialize_lenient;
use super::PhpValue;
use crate::protocol::frame::FLAG_BODY_IS_SCALAR;

/// The body bytes of `value` and the flag bits to OR into the caller's flag
/// (`FLAG_BODY_IS_SCALAR` for scalars, 0 otherwise).
pub fn encode_body(value: &PhpValue) -> (Bytes, u8) {
    match scalar_to_string(value) {
        Some(text) => (text, FLAG_BODY_IS_SCALAR),
        None => (Bytes::from(serialize(value)), 0),
    }
}

/// PHP's `(string)$value` for scalars (string, int, float, bool); `None` for null and
/// arrays, which PHP senders serialize instead.
pub fn scalar_to_string(value: &PhpValue) -> Option<Bytes> {
    match value {
        PhpValue::Str(s) => Some(s.clone()),
        PhpValue::Int(n) => Some(Bytes::from(n.to_string())),
        PhpValue::Float(x) => Some(Bytes::from(to_php_string(*x))),
        PhpValue::Bool(true) => Some(Bytes::from_static(b"1")),
        PhpValue::Bool(false) => Some(Bytes::new()),
        PhpValue::Null | PhpValue::Array(_) => None,
    }
}

/// The PHP value of a received body: the raw bytes when bit 0 of `flag` is set, else the
/// unserialized value, where an empty or invalid body is `false` (as PHP's `unserialize`).
pub fn decode_body(body: &Bytes, flag: u8) -> PhpValue {
    if flag & FLAG_BODY_IS_SCALAR != 0 {
        PhpValue::Str(body.clone())
    } else {
        unserialize_lenient(body)
    }
}
