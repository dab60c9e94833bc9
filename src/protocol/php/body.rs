//! Frame bodies as PHP values (spec 1.2): scalars travel as their PHP string conversion
//! with [`FLAG_BODY_IS_SCALAR`](crate::protocol::frame::FLAG_BODY_IS_SCALAR), everything
//! else (arrays and null) PHP-serialized.

use bytes::Bytes;

use super::PhpValue;

/// The body bytes of `value` and the flag bits to OR into the caller's flag
/// (`FLAG_BODY_IS_SCALAR` for scalars, 0 otherwise).
pub fn encode_body(value: &PhpValue) -> (Bytes, u8) {
    let _ = value;
    todo!("being written")
}

/// The PHP value of a received body: the raw bytes when bit 0 of `flag` is set, else the
/// unserialized value, where an empty or invalid body is `false` (as PHP's `unserialize`).
pub fn decode_body(body: &Bytes, flag: u8) -> PhpValue {
    let _ = (body, flag);
    todo!("being written")
}
