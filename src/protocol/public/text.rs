//! The text protocol (spec 6.1): a message is the bytes up to and including the first `\n`.
//!
//! Decoding strips **every** trailing `\r` and `\n` (so a payload ending in `\r` loses it,
//! spec 9 item 22); encoding appends one `\n`.

use bytes::{BufMut, Bytes, BytesMut};

use super::{CloseReason, PublicEvent};

/// A text-protocol client broke the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A line (including its `\n`), or buffered data without a `\n`, reached
    /// `package_size_max` bytes.
    #[error("line of {len} bytes or more reaches the maximum of {max}")]
    LineTooLong {
        /// Bytes counted so far.
        len: usize,
        /// The connection's `package_size_max`.
        max: u32,
    },
}

/// Decoding state of one text-protocol client: only how far the unconsumed input has
/// already been searched for `\n`, so that byte-at-a-time input stays linear.
#[derive(Debug)]
pub struct TextDecoder {
    /// Bytes of the input already known to hold no `\n`.
    scanned: u32,
    /// Largest accepted line, `\n` included, is `package_size_max - 1` bytes.
    package_size_max: u32,
    /// Set once a Close was emitted.
    closed: bool,
}

impl TextDecoder {
    /// A decoder that rejects lines of `package_size_max` bytes or more.
    pub fn new(package_size_max: u32) -> TextDecoder {
        TextDecoder {
            scanned: 0,
            package_size_max,
            closed: false,
        }
    }

    /// True once a Close was emitted.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Consumes every complete line of `input`; see [`super::PublicDecoder::decode`].
    pub fn decode(&mut self, input: &mut BytesMut, out: &mut impl FnMut(PublicEvent)) {
        if self.closed {
            input.clear();
            return;
        }
        let max = self.package_size_max as usize;
        loop {
            let from = (self.scanned as usize).min(input.len());
            let Some(offset) = input[from..].iter().position(|&b| b == b'\n') else {
                // The original closes when its buffer reaches the maximum (>=).
                if input.len() >= max {
                    return self.fail(input, out, input.len());
                }
                // input.len() < max <= u32::MAX here; saturating keeps it a plain hint.
                self.scanned = u32::try_from(input.len()).unwrap_or(u32::MAX);
                return;
            };
            let line_len = from + offset + 1;
            if line_len >= max {
                return self.fail(input, out, line_len);
            }
            self.scanned = 0;
            let mut line = input.split_to(line_len);
            let kept = line
                .iter()
                .rposition(|&b| b != b'\r' && b != b'\n')
                .map_or(0, |i| i + 1);
            line.truncate(kept);
            out(PublicEvent::Message {
                data: line.freeze(),
                binary: false,
            });
        }
    }

    fn fail(&mut self, input: &mut BytesMut, out: &mut impl FnMut(PublicEvent), len: usize) {
        self.closed = true;
        input.clear();
        out(PublicEvent::Close(CloseReason::Text(
            TextError::LineTooLong {
                len,
                max: self.package_size_max,
            },
        )));
    }
}

/// Appends `payload` followed by `\n` to `out`.
pub fn encode(payload: &[u8], out: &mut BytesMut) {
    out.reserve(payload.len() + 1);
    out.put_slice(payload);
    out.put_u8(b'\n');
}

/// `payload + "\n"` as one buffer.
pub fn encoded(payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(payload.len() + 1);
    encode(payload, &mut out);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(decoder: &mut TextDecoder, bytes: &[u8]) -> Vec<PublicEvent> {
        let mut input = BytesMut::from(bytes);
        let mut events = Vec::new();
        decoder.decode(&mut input, &mut |e| events.push(e));
        events
    }

    fn message(text: &[u8]) -> PublicEvent {
        PublicEvent::Message {
            data: Bytes::copy_from_slice(text),
            binary: false,
        }
    }

    #[test]
    fn strips_every_trailing_cr_and_lf_but_not_inner_ones() {
        let mut d = TextDecoder::new(100);
        assert_eq!(run(&mut d, b"a\rb\r\r\n"), vec![message(b"a\rb")]);
        assert_eq!(run(&mut d, b"\r\n"), vec![message(b"")]);
    }

    #[test]
    fn line_one_below_the_max_passes_and_at_the_max_closes() {
        let mut d = TextDecoder::new(5);
        assert_eq!(run(&mut d, b"abc\n"), vec![message(b"abc")]);
        let events = run(&mut d, b"abcd\n");
        assert_eq!(
            events,
            vec![PublicEvent::Close(CloseReason::Text(
                TextError::LineTooLong { len: 5, max: 5 }
            ))]
        );
        assert!(d.is_closed());
        assert!(run(&mut d, b"x\n").is_empty());
    }

    #[test]
    fn unterminated_data_reaching_the_max_closes() {
        let mut d = TextDecoder::new(5);
        let mut input = BytesMut::new();
        let mut events = Vec::new();
        for b in b"abcd" {
            input.extend_from_slice(&[*b]);
            d.decode(&mut input, &mut |e| events.push(e));
        }
        assert!(events.is_empty());
        assert_eq!(input.len(), 4);
        input.extend_from_slice(b"e");
        d.decode(&mut input, &mut |e| events.push(e));
        assert!(matches!(events[..], [PublicEvent::Close(_)]));
        assert!(input.is_empty());
    }

    #[test]
    fn encode_appends_newline() {
        assert_eq!(&encoded(b"pong")[..], b"pong\n");
        assert_eq!(&encoded(b"")[..], b"\n");
    }
}
