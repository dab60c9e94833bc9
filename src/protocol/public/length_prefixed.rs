//! workerman's `frame` protocol (spec 6.2): `u32` big-endian total length **including** the
//! 4 length bytes, then `total_length - 4` payload bytes.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{CloseReason, EncodeError, PublicEvent};

/// Bytes of the length prefix.
pub const PREFIX_LEN: usize = 4;

/// A frame-protocol client broke the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LengthPrefixedError {
    /// A total length below 4 cannot even cover its own prefix. (The original does not
    /// guard this: 0 stalls the connection, 1..3 misparse; we close.)
    #[error("frame length {0} is below the 4 length bytes")]
    TooShort(u32),
    /// A total length above the connection's `package_size_max`.
    #[error("frame length {len} exceeds the maximum of {max}")]
    TooLong {
        /// The announced total length.
        len: u32,
        /// The connection's `package_size_max`.
        max: u32,
    },
}

/// Decoding state of one frame-protocol client (stateless between frames but for the bound).
#[derive(Debug)]
pub struct LengthPrefixedDecoder {
    /// Largest accepted total length (prefix included), as the original checks it.
    package_size_max: u32,
    /// Set once a Close was emitted.
    closed: bool,
}

impl LengthPrefixedDecoder {
    /// A decoder that rejects total lengths above `package_size_max`.
    pub fn new(package_size_max: u32) -> LengthPrefixedDecoder {
        LengthPrefixedDecoder {
            package_size_max,
            closed: false,
        }
    }

    /// True once a Close was emitted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Consumes every complete frame of `input`; see [`super::PublicDecoder::decode`].
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut impl FnMut(PublicEvent)) {
        while !self.closed && input.len() >= PREFIX_LEN {
            let len = u32::from_be_bytes([input[0], input[1], input[2], input[3]]);
            let error = if (len as usize) < PREFIX_LEN {
                Some(LengthPrefixedError::TooShort(len))
            } else if len > self.package_size_max {
                Some(LengthPrefixedError::TooLong {
                    len,
                    max: self.package_size_max,
                })
            } else {
                None
            };
            if let Some(error) = error {
                self.closed = true;
                out(PublicEvent::Close(CloseReason::Frame(error)));
                break;
            }
            if input.len() < len as usize {
                return;
            }
            input.advance(PREFIX_LEN);
            let data = input.split_to(len as usize - PREFIX_LEN).freeze();
            out(PublicEvent::Message {
                data,
                binary: false,
            });
        }
        if self.closed {
            input.clear();
        }
    }
}

/// Appends `u32(len + 4) ‖ payload` to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) -> Result<(), EncodeError> {
    let total = u32::try_from(payload.len())
        .ok()
        .and_then(|n| n.checked_add(PREFIX_LEN as u32))
        .ok_or(EncodeError::TooLong { len: payload.len() })?;
    out.reserve(total as usize);
    out.put_u32(total);
    out.put_slice(payload);
    Ok(())
}

/// `u32(len + 4) ‖ payload` as one buffer.
pub fn encoded(payload: &[u8]) -> Result<Bytes, EncodeError> {
    let mut out = BytesMut::new();
    encode(payload, &mut out)?;
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(decoder: &mut LengthPrefixedDecoder, bytes: &[u8]) -> Vec<PublicEvent> {
        let mut input = BytesMut::from(bytes);
        let mut events = Vec::new();
        decoder.decode(&mut input, &mut |e| events.push(e));
        events
    }

    #[test]
    fn lengths_below_four_close() {
        for len in 0u32..4 {
            let mut d = LengthPrefixedDecoder::new(100);
            let events = run(&mut d, &len.to_be_bytes());
            assert_eq!(
                events,
                vec![PublicEvent::Close(CloseReason::Frame(
                    LengthPrefixedError::TooShort(len)
                ))]
            );
            assert!(d.is_closed());
        }
    }

    #[test]
    fn length_four_is_an_empty_message() {
        let mut d = LengthPrefixedDecoder::new(100);
        assert_eq!(
            run(&mut d, &[0, 0, 0, 4]),
            vec![PublicEvent::Message {
                data: Bytes::new(),
                binary: false
            }]
        );
    }

    #[test]
    fn length_at_the_max_passes_and_above_closes() {
        let mut d = LengthPrefixedDecoder::new(8);
        let events = run(&mut d, &[0, 0, 0, 8, 1, 2, 3, 4]);
        assert_eq!(events.len(), 1);
        let events = run(&mut d, &[0, 0, 0, 9]);
        assert_eq!(
            events,
            vec![PublicEvent::Close(CloseReason::Frame(
                LengthPrefixedError::TooLong { len: 9, max: 8 }
            ))]
        );
    }

    #[test]
    fn encode_prefixes_total_length() {
        assert_eq!(&encoded(b"hello").unwrap()[..], b"\0\0\0\x09hello");
        assert_eq!(&encoded(b"").unwrap()[..], b"\0\0\0\x04");
    }
}
