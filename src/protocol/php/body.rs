//! Frame bodies as PHP values (spec 1.2): scalars travel as their PHP string conversion
//! with [`FLAG_BODY_IS_SCALAR`], everything else (arrays and null) PHP-serialized.

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::php::{PhpArray, PhpKey};

    fn encoded(value: PhpValue) -> (Vec<u8>, u8) {
        let (body, flag) = encode_body(&value);
        (body.to_vec(), flag)
    }

    #[test]
    fn scalars_become_strings_with_the_scalar_flag() {
        assert_eq!(
            encoded(PhpValue::Bool(true)),
            (b"1".to_vec(), FLAG_BODY_IS_SCALAR)
        );
        assert_eq!(
            encoded(PhpValue::Bool(false)),
            (b"".to_vec(), FLAG_BODY_IS_SCALAR)
        );
        assert_eq!(
            encoded(PhpValue::Int(-42)),
            (b"-42".to_vec(), FLAG_BODY_IS_SCALAR)
        );
        assert_eq!(
            encoded(PhpValue::Float(0.1 + 0.2)),
            (b"0.3".to_vec(), FLAG_BODY_IS_SCALAR)
        );
        assert_eq!(
            encoded(PhpValue::str("")),
            (b"".to_vec(), FLAG_BODY_IS_SCALAR)
        );
    }

    #[test]
    fn null_and_arrays_are_serialized_without_the_flag() {
        // Spec 9 item 12: null is `N;` with flag 0, so KICK with null sends no goodbye.
        assert_eq!(encoded(PhpValue::Null), (b"N;".to_vec(), 0));
        let mut array = PhpArray::new();
        array.insert(PhpKey::from_bytes(b"7"), PhpValue::Int(7));
        assert_eq!(
            encoded(PhpValue::Array(array)),
            (b"a:1:{i:7;i:7;}".to_vec(), 0)
        );
    }

    #[test]
    fn decode_follows_bit_zero_only() {
        let raw = Bytes::from_static(b"i:5;");
        assert_eq!(
            decode_body(&raw, FLAG_BODY_IS_SCALAR),
            PhpValue::str("i:5;")
        );
        assert_eq!(decode_body(&raw, 0x02 | 0x80), PhpValue::Int(5));
        assert_eq!(decode_body(&Bytes::new(), 0), PhpValue::Bool(false));
        assert_eq!(
            decode_body(&Bytes::from_static(b"O:1:\"a\":0:{}"), 0),
            PhpValue::Bool(false)
        );
    }
}
