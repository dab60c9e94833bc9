//! The register protocol (spec section 8): one JSON document per `\n`-terminated line.
//!
//! * [`ToRegister`]: what gateways, workers and API callers send; [`ToRegister::encode`]
//!   reproduces the original's bytes, and [`classify_request`] is how the register reads
//!   any line, including garbage.
//! * [`FromRegister`]: the address broadcast, encoded the way PHP's `json_encode` does
//!   ([`encode_broadcast_addresses`], list or object form) and decoded by
//!   [`decode_from_register`], which accepts both forms.
//! * [`LineDecoder`]: the text framing of the link, with a bound on the line length, for
//!   every role: the register reads requests with it ([`LINE_LENGTH_MAX_DEFAULT`]), and
//!   gateways, workers and API callers read the register's answers with it
//!   ([`FROM_REGISTER_LINE_MAX`]).

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

use crate::protocol::php::json::{json_decode, json_encode, to_json_value, JsonEncodeOptions};
use crate::protocol::php::{is_empty_bytes, PhpArray, PhpKey, PhpValue};

/// Default bound on one register line including its `\n`: workerman's default
/// `maxPackageSize`, 10 MiB.
pub const LINE_LENGTH_MAX_DEFAULT: usize = 10_485_760;

/// Bound on one line a gateway, worker or API caller accepts from the register, `\n`
/// included: 1 MiB. The register sends them one `broadcast_addresses` list, some 25 bytes
/// per gateway, so this holds about 40 000 gateways; a longer line closes the connection
/// (the peer reconnects after its usual delay).
pub const FROM_REGISTER_LINE_MAX: usize = 1024 * 1024;

/// A message sent to the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToRegister {
    /// A gateway announces its internal address `lanIp:lanPort`.
    GatewayConnect {
        /// The gateway's internal address.
        address: String,
        /// The cluster's secret key (`""` when none).
        secret_key: String,
    },
    /// A worker (or a one-shot API caller) asks for the gateway list.
    WorkerConnect {
        /// The cluster's secret key (`""` when none).
        secret_key: String,
    },
    /// Keep-alive; the register does nothing.
    Ping,
}

impl ToRegister {
    /// Appends the message's line and its `\n` to `dst`, byte for byte as the original.
    ///
    /// `gateway_connect` is hand-concatenated in the original (spaces after the commas, no
    /// escaping at all, so a `"` or `\` in the address or key gives a line the register
    /// misreads or refuses as a bad request). We keep the layout but escape `"`, `\` and
    /// control characters the JSON way: identical bytes for every value without those
    /// characters, a correct line for the others. `worker_connect` is `json_encode`d in the
    /// original, so its key gets PHP's escaping (`/` as `\/`, non-ASCII as `\uXXXX`).
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            ToRegister::GatewayConnect {
                address,
                secret_key,
            } => {
                dst.put_slice(b"{\"event\":\"gateway_connect\", \"address\":\"");
                push_minimal_json_escaped(dst, address);
                dst.put_slice(b"\", \"secret_key\":\"");
                push_minimal_json_escaped(dst, secret_key);
                dst.put_slice(b"\"}");
            }
            ToRegister::WorkerConnect { secret_key } => {
                let message: PhpArray = [
                    (
                        PhpKey::from_bytes(b"event"),
                        PhpValue::str("worker_connect"),
                    ),
                    (PhpKey::from_bytes(b"secret_key"), PhpValue::str(secret_key)),
                ]
                .into_iter()
                .collect();
                push_json_encoded(dst, &PhpValue::Array(message));
            }
            ToRegister::Ping => dst.put_slice(b"{\"event\":\"ping\"}"),
        }
        dst.put_u8(b'\n');
    }
}

/// How the register reads one line (spec 8 table); every line gets exactly one reading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterRequest {
    /// `gateway_connect`.
    GatewayConnect {
        /// The address to register; `None` when PHP-empty (`""`, `"0"`, missing...) or
        /// not a string: the register closes the connection.
        address: Option<String>,
        /// The key sent; see [`secret_key_of`] for its reading.
        secret_key: Option<String>,
    },
    /// `worker_connect`.
    WorkerConnect {
        /// The key sent; see [`secret_key_of`] for its reading.
        secret_key: Option<String>,
    },
    /// `ping`: nothing to do.
    Ping,
    /// A non-empty `event` that is none of the above: log and close without a message.
    UnknownEvent {
        /// The event as text (JSON text when it is not a string), for the log line.
        event: String,
    },
    /// Not JSON, not an object, or `event` missing or PHP-empty: answer with
    /// [`encode_bad_request`], then close.
    BadRequest,
}

/// Reads one line (without its `\n`) the way the original register does: PHP's
/// `json_decode($line, true)` (depth 512, see [`json_decode`]), then
/// `empty($data['event'])`, then a `switch` with PHP's loose `==`: so a JSON `true` event
/// matches the first case, `gateway_connect`, and we do the same; any other non-string
/// event (number, non-empty array) is an unknown event.
pub fn classify_request(line: &[u8]) -> RegisterRequest {
    let Ok(PhpValue::Array(data)) = json_decode(line) else {
        return RegisterRequest::BadRequest;
    };
    let event = match data.get_str("event") {
        Some(event) if !event.is_empty() => event,
        _ => return RegisterRequest::BadRequest,
    };
    let secret_key = secret_key_of(data.get_str("secret_key"));
    match event {
        PhpValue::Bool(true) => gateway_connect(&data, secret_key),
        PhpValue::Str(name) => match &name[..] {
            b"gateway_connect" => gateway_connect(&data, secret_key),
            b"worker_connect" => RegisterRequest::WorkerConnect { secret_key },
            b"ping" => RegisterRequest::Ping,
            other => RegisterRequest::UnknownEvent {
                event: String::from_utf8_lossy(other).into_owned(),
            },
        },
        other => RegisterRequest::UnknownEvent {
            event: to_json_value(other).map_or_else(|_| format!("{other:?}"), |v| v.to_string()),
        },
    }
}

fn gateway_connect(data: &PhpArray, secret_key: Option<String>) -> RegisterRequest {
    let address = match data.get_str("address") {
        Some(PhpValue::Str(a)) if !is_empty_bytes(a) => Some(utf8(a)),
        _ => None,
    };
    RegisterRequest::GatewayConnect {
        address,
        secret_key,
    }
}

/// Text of a string `json_decode` produced (always valid UTF-8: the decoder checks it).
fn utf8(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The secret key a request carries, for a strict comparison with the configured key:
/// missing or `null` reads as `""` (PHP `isset`), a string as itself, any other value as
/// `None`, which equals no configured key (PHP `!==` between a non-string and a string).
pub fn secret_key_of(value: Option<&PhpValue>) -> Option<String> {
    match value {
        None | Some(PhpValue::Null) => Some(String::new()),
        Some(PhpValue::Str(key)) => Some(utf8(key)),
        Some(_) => None,
    }
}

/// Appends the register's answer to a bad request and its `\n`: the original's exact text,
/// quoting the peer's IP and the request line verbatim.
pub fn encode_bad_request(peer_ip: &str, request: &[u8], dst: &mut BytesMut) {
    dst.put_slice(b"Bad request for Register service. Request info(IP:");
    dst.put_slice(peer_ip.as_bytes());
    dst.put_slice(b", Request Buffer:");
    dst.put_slice(request);
    dst.put_slice(b"). See http://doc2.workerman.net/register-auth-timeout.html\n");
}

/// A message sent by the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromRegister {
    /// The registered gateway addresses, in order (the values of the list or object).
    BroadcastAddresses(Vec<String>),
    /// Any other event: the original workers log and ignore it.
    Other {
        /// The event as text (JSON text when it is not a string).
        event: String,
    },
}

/// Why a line from the register cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FromRegisterError {
    /// Not a JSON object.
    #[error("register line is not a JSON object")]
    NotJsonObject,
    /// No `event` member.
    #[error("register line has no event")]
    NoEvent,
    /// `addresses` is missing or neither a list nor an object.
    #[error("broadcast_addresses without a list of addresses")]
    AddressesNotList,
    /// An address that is not a string.
    #[error("broadcast address #{index} is not a string")]
    AddressNotString {
        /// Position of the bad value.
        index: usize,
    },
}

/// Reads one line from the register (without its `\n`); `addresses` may be a JSON list or
/// an object (after de-duplication in the register), whose values are taken in order.
pub fn decode_from_register(line: &[u8]) -> Result<FromRegister, FromRegisterError> {
    let Ok(Value::Object(data)) = serde_json::from_slice::<Value>(line) else {
        return Err(FromRegisterError::NotJsonObject);
    };
    let event = data.get("event").ok_or(FromRegisterError::NoEvent)?;
    if event.as_str() != Some("broadcast_addresses") {
        let event = match event {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        return Ok(FromRegister::Other { event });
    }
    let values: Vec<&Value> = match data.get("addresses") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(Value::Object(map)) => map.values().collect(),
        _ => return Err(FromRegisterError::AddressesNotList),
    };
    values
        .into_iter()
        .enumerate()
        .map(|(index, v)| match v {
            Value::String(s) => Ok(s.clone()),
            _ => Err(FromRegisterError::AddressNotString { index }),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(FromRegister::BroadcastAddresses)
}

/// PHP `array_unique(array_values($addresses))`: the first occurrence of each address with
/// its index in the input, in input order; indexes of removed duplicates are left out.
pub fn unique_with_indexes<'a>(
    addresses: impl IntoIterator<Item = &'a str>,
) -> Vec<(usize, &'a str)> {
    let mut kept: Vec<(usize, &str)> = Vec::new();
    for (index, address) in addresses.into_iter().enumerate() {
        if !kept.iter().any(|(_, seen)| *seen == address) {
            kept.push((index, address));
        }
    }
    kept
}

/// Appends the `broadcast_addresses` line and its `\n`, as PHP's `json_encode` writes it:
/// a JSON list when the indexes are exactly 0, 1, 2..., else an object keyed by index
/// (`{"0":"a","2":"b"}`). Strings get PHP's escaping (`/` as `\/`, non-ASCII as `\uXXXX`).
pub fn encode_broadcast_addresses(entries: &[(usize, &str)], dst: &mut BytesMut) {
    let addresses: PhpArray = entries
        .iter()
        .map(|(index, address)| {
            let key = i64::try_from(*index).map_or_else(
                |_| PhpKey::from_bytes(index.to_string().as_bytes()),
                PhpKey::Int,
            );
            (key, PhpValue::str(address))
        })
        .collect();
    let message: PhpArray = [
        (
            PhpKey::from_bytes(b"event"),
            PhpValue::str("broadcast_addresses"),
        ),
        (PhpKey::from_bytes(b"addresses"), PhpValue::Array(addresses)),
    ]
    .into_iter()
    .collect();
    push_json_encoded(dst, &PhpValue::Array(message));
    dst.put_u8(b'\n');
}

/// Appends PHP's `json_encode($value)`. On failure PHP's `false` is sent, which is the empty
/// string; with the UTF-8 strings two levels deep built here it cannot fail.
fn push_json_encoded(dst: &mut BytesMut, value: &PhpValue) {
    if let Ok(json) = json_encode(value, JsonEncodeOptions::default()) {
        dst.put_slice(&json);
    }
}

/// Appends `text` escaping only what JSON requires (`"`, `\`, control characters).
fn push_minimal_json_escaped(dst: &mut BytesMut, text: &str) {
    for c in text.chars() {
        match c {
            '"' => dst.put_slice(b"\\\""),
            '\\' => dst.put_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                dst.put_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut utf8 = [0u8; 4];
                dst.put_slice(c.encode_utf8(&mut utf8).as_bytes());
            }
        }
    }
}

/// Why the register link's byte stream cannot be split into lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineDecodeError {
    /// No `\n` within the first `line_length_max` bytes; close the connection.
    #[error("register line longer than {line_length_max} bytes")]
    TooLong {
        /// The decoder's bound.
        line_length_max: usize,
    },
}

/// Splits `\n`-terminated lines off the register link's input, stripping every trailing
/// `\r` and `\n` (workerman's text protocol).
#[derive(Debug, Clone)]
pub struct LineDecoder {
    line_length_max: usize,
    /// Bytes at the front of the buffer already known to hold no `\n`, so that byte-by-byte
    /// input is scanned once.
    scanned: usize,
}

impl Default for LineDecoder {
    fn default() -> LineDecoder {
        LineDecoder::new(LINE_LENGTH_MAX_DEFAULT)
    }
}

impl LineDecoder {
    /// A decoder accepting lines of at most `line_length_max` bytes, `\n` included.
    pub fn new(line_length_max: usize) -> LineDecoder {
        LineDecoder {
            line_length_max,
            scanned: 0,
        }
    }

    /// Splits the next complete line off `src` (zero-copy, terminators stripped).
    ///
    /// `Ok(None)`: no complete line yet. An error consumes nothing; close the connection.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, LineDecodeError> {
        let window = src.len().min(self.line_length_max);
        let start = self.scanned.min(window);
        match src[start..window].iter().position(|&b| b == b'\n') {
            Some(offset) => {
                self.scanned = 0;
                let mut line = src.split_to(start + offset + 1);
                let kept = line
                    .iter()
                    .rposition(|&b| b != b'\r' && b != b'\n')
                    .map_or(0, |last| last + 1);
                line.truncate(kept);
                Ok(Some(line.freeze()))
            }
            None if src.len() >= self.line_length_max => Err(LineDecodeError::TooLong {
                line_length_max: self.line_length_max,
            }),
            None => {
                self.scanned = window;
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(decoder: &mut LineDecoder, src: &mut BytesMut) -> Vec<Bytes> {
        let mut out = Vec::new();
        while let Some(line) = decoder.decode(src).unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn lines_lose_every_trailing_cr_and_lf() {
        let mut src = BytesMut::from(&b"a\r\r\n\nb\rc\r\npartial"[..]);
        let got = lines(&mut LineDecoder::default(), &mut src);
        assert_eq!(got, vec![&b"a"[..], &b""[..], &b"b\rc"[..]]);
        assert_eq!(&src[..], b"partial");
    }

    #[test]
    fn line_length_bound_counts_the_newline() {
        let mut decoder = LineDecoder::new(4);
        let mut src = BytesMut::from(&b"abc\n"[..]);
        assert_eq!(decoder.decode(&mut src).unwrap().unwrap(), &b"abc"[..]);
        let mut src = BytesMut::from(&b"abc"[..]);
        assert_eq!(decoder.decode(&mut src), Ok(None));
        src.put_u8(b'd');
        assert_eq!(
            decoder.decode(&mut src),
            Err(LineDecodeError::TooLong { line_length_max: 4 })
        );
        let mut src = BytesMut::from(&b"abcd\n"[..]);
        assert_eq!(
            LineDecoder::new(4).decode(&mut src),
            Err(LineDecodeError::TooLong { line_length_max: 4 })
        );
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_lines() {
        let input = b"{\"event\":\"ping\"}\r\nx\n";
        let mut decoder = LineDecoder::new(64);
        let mut src = BytesMut::new();
        let mut got = Vec::new();
        for &b in input {
            src.put_u8(b);
            got.extend(lines(&mut decoder, &mut src));
        }
        assert_eq!(got, vec![&b"{\"event\":\"ping\"}"[..], &b"x"[..]]);
    }

    /// What the decoder must give for `input`, computed without it: every `\n`-terminated
    /// segment of at most `max` bytes (`\n` included) as a line with its trailing `\r`s
    /// and `\n`s stripped, until the first point where `max` bytes hold no `\n` (an
    /// error that consumes nothing, then nothing more).
    fn reference_lines(input: &[u8], max: usize) -> (Vec<Vec<u8>>, Option<LineDecodeError>, usize) {
        let (mut lines, mut at) = (Vec::new(), 0);
        loop {
            let rest = &input[at..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(end) if end < max => {
                    let line = &rest[..end];
                    let kept = line
                        .iter()
                        .rposition(|&b| b != b'\r' && b != b'\n')
                        .map_or(0, |last| last + 1);
                    lines.push(line[..kept].to_vec());
                    at += end + 1;
                }
                _ if rest.len() >= max => {
                    let error = LineDecodeError::TooLong {
                        line_length_max: max,
                    };
                    return (lines, Some(error), at);
                }
                _ => return (lines, None, at),
            }
        }
    }

    /// Any input, split into reads anywhere, under any bound: the decoder gives the
    /// reference's lines, error and consumed length, and holds less than the bound.
    #[test]
    fn any_split_gives_the_reference_lines() {
        fn prop(input: Vec<u8>, cuts: Vec<u8>, max: u8) -> bool {
            // Few distinct bytes, so that `\r` and `\n` are frequent.
            let input: Vec<u8> = input
                .iter()
                .map(|b| b"ab\r\n"[usize::from(b % 4)])
                .collect();
            let max = usize::from(max % 16) + 1;
            let mut decoder = LineDecoder::new(max);
            let (mut src, mut got, mut error, mut fed) = (BytesMut::new(), Vec::new(), None, 0);
            let mut cuts = cuts.iter().map(|c| usize::from(*c % 8));
            while fed < input.len() && error.is_none() {
                let n = cuts.next().unwrap_or(input.len()).min(input.len() - fed);
                src.put_slice(&input[fed..fed + n]);
                fed += n;
                loop {
                    match decoder.decode(&mut src) {
                        Ok(Some(line)) => got.push(line.to_vec()),
                        Ok(None) => {
                            assert!(src.len() < max, "holds {} bytes at bound {max}", src.len());
                            break;
                        }
                        Err(e) => {
                            error = Some(e);
                            break;
                        }
                    }
                }
            }
            let consumed = fed - src.len();
            let (lines, expected_error, expected_consumed) = reference_lines(&input[..fed], max);
            got == lines
                && error == expected_error
                && (error.is_some() || fed == input.len())
                && consumed == expected_consumed
        }
        quickcheck::QuickCheck::new()
            .tests(2000)
            .quickcheck(prop as fn(Vec<u8>, Vec<u8>, u8) -> bool);
    }

    #[test]
    fn classification_follows_php_empty_and_loose_switch() {
        use RegisterRequest::*;
        let cases: &[(&str, RegisterRequest)] = &[
            ("hello", BadRequest),
            ("", BadRequest),
            ("\"event\"", BadRequest),
            ("[\"ping\"]", BadRequest),
            ("{}", BadRequest),
            ("{\"event\":\"\"}", BadRequest),
            ("{\"event\":\"0\"}", BadRequest),
            ("{\"event\":0}", BadRequest),
            ("{\"event\":0.0}", BadRequest),
            ("{\"event\":null}", BadRequest),
            ("{\"event\":false}", BadRequest),
            ("{\"event\":[]}", BadRequest),
            ("{\"event\":{}}", BadRequest),
            ("{\"event\":\"ping\"}", Ping),
            (
                "{\"event\":1}",
                UnknownEvent {
                    event: "1".to_owned(),
                },
            ),
            (
                "{\"event\":true,\"address\":\"a:1\"}",
                GatewayConnect {
                    address: Some("a:1".to_owned()),
                    secret_key: Some(String::new()),
                },
            ),
            (
                "{\"event\":\"gateway_connect\",\"address\":\"0\",\"secret_key\":null}",
                GatewayConnect {
                    address: None,
                    secret_key: Some(String::new()),
                },
            ),
            (
                "{\"event\":\"worker_connect\",\"secret_key\":5}",
                WorkerConnect { secret_key: None },
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(&classify_request(line.as_bytes()), expected, "line {line}");
        }
        // PHP decodes an out-of-range number as INF: not empty, an unknown event.
        assert!(matches!(
            classify_request(b"{\"event\":1e999}"),
            UnknownEvent { .. }
        ));
        // PHP's json_decode depth is 512: deep members do not make a bad request.
        let deep = format!(
            "{{\"event\":\"ping\",\"x\":{}{}}}",
            "[".repeat(300),
            "]".repeat(300)
        );
        assert_eq!(classify_request(deep.as_bytes()), Ping);
        let too_deep = format!(
            "{{\"event\":\"ping\",\"x\":{}{}}}",
            "[".repeat(600),
            "]".repeat(600)
        );
        assert_eq!(classify_request(too_deep.as_bytes()), BadRequest);
    }

    #[test]
    fn php_json_escaping() {
        let mut dst = BytesMut::new();
        ToRegister::WorkerConnect {
            secret_key: "a/\"\\\u{1}é😀\u{7f}".to_owned(),
        }
        .encode(&mut dst);
        assert_eq!(
            &dst[..],
            &b"{\"event\":\"worker_connect\",\"secret_key\":\"a\\/\\\"\\\\\\u0001\\u00e9\\ud83d\\ude00\x7f\"}\n"[..]
        );
    }

    #[test]
    fn gateway_connect_escapes_only_what_json_needs() {
        let mut dst = BytesMut::new();
        ToRegister::GatewayConnect {
            address: "10.0.0.5:2900".to_owned(),
            secret_key: "a\"b/c".to_owned(),
        }
        .encode(&mut dst);
        let line = &dst[..dst.len() - 1];
        assert_eq!(
            classify_request(line),
            RegisterRequest::GatewayConnect {
                address: Some("10.0.0.5:2900".to_owned()),
                secret_key: Some("a\"b/c".to_owned())
            }
        );
    }
}
