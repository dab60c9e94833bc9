//! GWV, the encoding of PHP values across the guest boundary (ABI.md section 3): a tag
//! byte, then little-endian fixed-width numbers or length-prefixed bytes. Chosen over JSON
//! and PHP serialize because it keeps byte strings, int-vs-string keys and floats exact,
//! and takes a few lines to implement in any guest language.

use bytes::Bytes;

use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

const TAG_NULL: u8 = 0x00;
const TAG_FALSE: u8 = 0x01;
const TAG_TRUE: u8 = 0x02;
const TAG_INT: u8 = 0x03;
const TAG_FLOAT: u8 = 0x04;
const TAG_STR: u8 = 0x05;
const TAG_ARRAY: u8 = 0x06;

/// Most arrays nested in one GWV value (the outermost counts 1); deeper values are refused
/// with [`GwvError::TooDeep`] before the next array is read (the guest SDK has the same
/// bound). The decoder recurses once per array, so this bounds its stack use.
pub const GWV_DEPTH_MAX_ARRAYS: usize = 64;

/// [`GWV_DEPTH_MAX_ARRAYS`] under its historical name.
pub const GWV_DEPTH_MAX: usize = GWV_DEPTH_MAX_ARRAYS;

/// Why GWV bytes from a guest were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GwvError {
    /// The bytes end inside a value.
    #[error("truncated value")]
    Truncated,
    /// A tag byte is not one of the seven tags (or not a key tag where a key is due).
    #[error("unknown tag {0:#04x}")]
    BadTag(u8),
    /// Arrays nest deeper than [`GWV_DEPTH_MAX_ARRAYS`].
    #[error("nesting deeper than {GWV_DEPTH_MAX_ARRAYS} arrays")]
    TooDeep,
    /// Bytes remain after one complete value.
    #[error("trailing bytes after the value")]
    Trailing,
    /// An array declares more entries than the remaining bytes could hold.
    #[error("array count larger than the input")]
    BadCount,
}

/// Appends the GWV encoding of `value` to `out`.
pub fn encode_into(value: &PhpValue, out: &mut Vec<u8>) {
    match value {
        PhpValue::Null => out.push(TAG_NULL),
        PhpValue::Bool(false) => out.push(TAG_FALSE),
        PhpValue::Bool(true) => out.push(TAG_TRUE),
        PhpValue::Int(n) => {
            out.push(TAG_INT);
            out.extend_from_slice(&n.to_le_bytes());
        }
        PhpValue::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&f.to_le_bytes());
        }
        PhpValue::Str(s) => encode_str(s, out),
        PhpValue::Array(array) => {
            out.push(TAG_ARRAY);
            out.extend_from_slice(&(array.len() as u32).to_le_bytes());
            for (k, v) in array.iter() {
                match k {
                    PhpKey::Int(n) => {
                        out.push(TAG_INT);
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                    PhpKey::Str(s) => encode_str(s, out),
                }
                encode_into(v, out);
            }
        }
    }
}

/// The GWV encoding of `value`.
pub fn encode(value: &PhpValue) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(value, &mut out);
    out
}

fn encode_str(s: &[u8], out: &mut Vec<u8>) {
    out.push(TAG_STR);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

/// Decodes exactly one value filling `bytes`. String keys go through PHP key
/// normalisation (`"7"` becomes int key 7), as PHP would store them.
pub fn decode(bytes: &[u8]) -> Result<PhpValue, GwvError> {
    let mut r = Reader { bytes, at: 0 };
    let v = r.value(0)?;
    if r.at != bytes.len() {
        return Err(GwvError::Trailing);
    }
    Ok(v)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], GwvError> {
        let end = self.at.checked_add(n).ok_or(GwvError::Truncated)?;
        let s = self.bytes.get(self.at..end).ok_or(GwvError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, GwvError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize, GwvError> {
        let b: [u8; 4] = self.take(4)?.try_into().expect("4 bytes");
        Ok(u32::from_le_bytes(b) as usize)
    }

    fn u64(&mut self) -> Result<[u8; 8], GwvError> {
        Ok(self.take(8)?.try_into().expect("8 bytes"))
    }

    fn str(&mut self) -> Result<&'a [u8], GwvError> {
        let n = self.u32()?;
        self.take(n)
    }

    fn value(&mut self, depth: usize) -> Result<PhpValue, GwvError> {
        let tag = self.byte()?;
        Ok(match tag {
            TAG_NULL => PhpValue::Null,
            TAG_FALSE => PhpValue::Bool(false),
            TAG_TRUE => PhpValue::Bool(true),
            TAG_INT => PhpValue::Int(i64::from_le_bytes(self.u64()?)),
            TAG_FLOAT => PhpValue::Float(f64::from_le_bytes(self.u64()?)),
            TAG_STR => PhpValue::Str(Bytes::copy_from_slice(self.str()?)),
            TAG_ARRAY => PhpValue::Array(self.array(depth)?),
            other => return Err(GwvError::BadTag(other)),
        })
    }

    fn array(&mut self, depth: usize) -> Result<PhpArray, GwvError> {
        if depth >= GWV_DEPTH_MAX_ARRAYS {
            return Err(GwvError::TooDeep);
        }
        let count = self.u32()?;
        // Each entry takes at least two bytes: a count the input cannot hold is a lie,
        // refused before it sizes an allocation.
        if count > (self.bytes.len() - self.at) / 2 {
            return Err(GwvError::BadCount);
        }
        let mut array = PhpArray::with_capacity(count);
        // PhpArray::insert scans for the key; a set keeps decoding linear for big arrays.
        let mut seen = std::collections::HashSet::with_capacity(count);
        for _ in 0..count {
            let key = match self.byte()? {
                TAG_INT => PhpKey::Int(i64::from_le_bytes(self.u64()?)),
                TAG_STR => PhpKey::from_bytes(self.str()?),
                other => return Err(GwvError::BadTag(other)),
            };
            let value = self.value(depth + 1)?;
            // Guests may send the same key twice: PHP semantics, the last one wins in place.
            if seen.insert(key.clone()) {
                array.push_unique(key, value);
            } else {
                array.insert(key, value);
            }
        }
        Ok(array)
    }
}

#[cfg(test)]
mod tests {
    use quickcheck::{Arbitrary, Gen, QuickCheck};

    use super::*;

    /// A random PHP value, nested at most three arrays deep.
    #[derive(Debug, Clone)]
    struct AnyValue(PhpValue);

    fn gen_value(g: &mut Gen, depth: usize) -> PhpValue {
        let kinds = if depth == 0 { 6 } else { 7 };
        match u8::arbitrary(g) % kinds {
            0 => PhpValue::Null,
            1 => PhpValue::Bool(bool::arbitrary(g)),
            2 => PhpValue::Int(i64::arbitrary(g)),
            3 => PhpValue::Float(f64::arbitrary(g)),
            4 | 5 => PhpValue::Str(Bytes::from(Vec::<u8>::arbitrary(g))),
            _ => {
                let mut a = PhpArray::new();
                for _ in 0..usize::arbitrary(g) % 6 {
                    let key = if bool::arbitrary(g) {
                        PhpKey::Int(i64::arbitrary(g))
                    } else {
                        PhpKey::from_bytes(&Vec::<u8>::arbitrary(g))
                    };
                    a.insert(key, gen_value(g, depth - 1));
                }
                PhpValue::Array(a)
            }
        }
    }

    impl Arbitrary for AnyValue {
        fn arbitrary(g: &mut Gen) -> AnyValue {
            AnyValue(gen_value(g, 3))
        }
    }

    /// Equality that treats NaN as equal to itself (a round trip keeps the bits).
    fn same(a: &PhpValue, b: &PhpValue) -> bool {
        match (a, b) {
            (PhpValue::Float(x), PhpValue::Float(y)) => x.to_bits() == y.to_bits(),
            (PhpValue::Array(x), PhpValue::Array(y)) => {
                x.len() == y.len()
                    && x.iter()
                        .zip(y.iter())
                        .all(|((k1, v1), (k2, v2))| k1 == k2 && same(v1, v2))
            }
            _ => a == b,
        }
    }

    #[test]
    fn gwv_round_trips_every_value() {
        fn prop(v: AnyValue) -> bool {
            same(&decode(&encode(&v.0)).unwrap(), &v.0)
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(AnyValue) -> bool);
    }

    #[test]
    fn gwv_refuses_every_strict_prefix_and_trailing_bytes() {
        fn prop(v: AnyValue) -> bool {
            let bytes = encode(&v.0);
            let mut longer = bytes.clone();
            longer.push(0);
            (0..bytes.len()).all(|n| decode(&bytes[..n]).is_err())
                && decode(&longer) == Err(GwvError::Trailing)
        }
        QuickCheck::new()
            .tests(1000)
            .quickcheck(prop as fn(AnyValue) -> bool);
    }

    #[test]
    fn gwv_bounds_depth_and_counts() {
        let mut deep = Vec::new();
        for _ in 0..=GWV_DEPTH_MAX {
            deep.extend_from_slice(&[TAG_ARRAY, 1, 0, 0, 0, TAG_INT, 0, 0, 0, 0, 0, 0, 0, 0]);
        }
        deep.push(TAG_NULL);
        assert_eq!(decode(&deep), Err(GwvError::TooDeep));
        // GWV_DEPTH_MAX levels are fine.
        assert!(decode(&deep[14..]).is_ok());
        assert_eq!(
            decode(&[TAG_ARRAY, 0xff, 0xff, 0xff, 0xff]),
            Err(GwvError::BadCount)
        );
        assert_eq!(decode(&[0x07]), Err(GwvError::BadTag(7)));
        // A key must be an int or a string.
        assert_eq!(
            decode(&[TAG_ARRAY, 1, 0, 0, 0, TAG_NULL, TAG_NULL]),
            Err(GwvError::BadTag(0))
        );
    }

    #[test]
    fn gwv_keys_follow_php_rules() {
        // {"7": 1, "07": 2, "7": 3}: "7" becomes int 7, the duplicate overwrites in place.
        let mut bytes = vec![TAG_ARRAY, 3, 0, 0, 0];
        for (key, value) in [("7", 1i64), ("07", 2), ("7", 3)] {
            encode_str(key.as_bytes(), &mut bytes);
            encode_into(&PhpValue::Int(value), &mut bytes);
        }
        let PhpValue::Array(a) = decode(&bytes).unwrap() else {
            panic!("array expected");
        };
        let entries: Vec<_> = a.into_entries();
        assert_eq!(
            entries,
            vec![
                (PhpKey::Int(7), PhpValue::Int(3)),
                (PhpKey::Str(Bytes::from_static(b"07")), PhpValue::Int(2)),
            ]
        );
    }
}
