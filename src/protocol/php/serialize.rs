//! PHP `serialize()` for the value subset (spec 7.1), byte-identical to PHP 8.2.

use std::io::Write;

use super::float::to_serialize_repr;
use super::{PhpKey, PhpValue};

/// `serialize($value)` as a fresh buffer.
pub fn serialize(value: &PhpValue) -> Vec<u8> {
    let mut out = Vec::new();
    serialize_into(value, &mut out);
    out
}

/// Appends `serialize($value)` to `out`.
pub fn serialize_into(value: &PhpValue, out: &mut Vec<u8>) {
    match value {
        PhpValue::Null => out.extend_from_slice(b"N;"),
        PhpValue::Bool(b) => out.extend_from_slice(if *b { b"b:1;" } else { b"b:0;" }),
        PhpValue::Int(n) => write_int(*n, out),
        PhpValue::Float(x) => {
            out.extend_from_slice(b"d:");
            out.extend_from_slice(to_serialize_repr(*x).as_bytes());
            out.push(b';');
        }
        PhpValue::Str(s) => write_str(s, out),
        PhpValue::Array(array) => {
            let _ = write!(out, "a:{}:{{", array.len());
            for (key, value) in array.iter() {
                serialize_key_into(key, out);
                serialize_into(value, out);
            }
            out.push(b'}');
        }
    }
}

/// Appends the serialized form of an array key (`i:5;` or `s:1:"a";`) to `out`.
pub fn serialize_key_into(key: &PhpKey, out: &mut Vec<u8>) {
    match key {
        PhpKey::Int(n) => write_int(*n, out),
        PhpKey::Str(s) => write_str(s, out),
    }
}

fn write_int(n: i64, out: &mut Vec<u8>) {
    let _ = write!(out, "i:{n};");
}

fn write_str(s: &[u8], out: &mut Vec<u8>) {
    let _ = write!(out, "s:{}:\"", s.len());
    out.extend_from_slice(s);
    out.extend_from_slice(b"\";");
}
