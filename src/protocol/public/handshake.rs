//! The websocket upgrade handshake (spec 6.3 steps 1-7) and the ON_WEBSOCKET_CONNECT data.
//!
//! The checks are exactly the original's, no more: the request must start with `GET`,
//! `Sec-WebSocket-Version` must be present and `13`, `Sec-WebSocket-Key` must be present.
//! `Upgrade`, `Connection`, `Host` and `Origin` are not checked (spec 9 item 21). The
//! responses are byte-exact copies of workerman's, down to the "Switching Protocol"
//! reason phrase.
//!
//! `Sec-WebSocket-Version` and `Sec-WebSocket-Key` are found the way the original's regex
//! finds them (see `find_header`), and the ON_WEBSOCKET_CONNECT data is read the way
//! workerman 5.2.2's HTTP `Request` reads a head. Two differences, both so that the result
//! cannot depend on how reads were split:
//!
//! * the original runs its regex over the whole receive buffer, frame bytes that follow the
//!   head in the same read included; we look in the head only;
//! * the request head may not exceed [`HANDSHAKE_SIZE_MAX`] bytes (the original only stops
//!   at its 10 MiB package size); a longer head closes the connection without a reply.
//!
//! A client that trickles its head slowly (slowloris) must be timed out by the caller, who
//! owns the clock.

use std::net::SocketAddr;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::php::{PhpArray, PhpKey, PhpValue};

/// Largest accepted request head, `\r\n\r\n` included: 16 KiB, room for the cookies and
/// headers of real browsers (nginx's default limit for a whole head is 4 × 8 KiB, per line 8 KiB).
pub const HANDSHAKE_SIZE_MAX: usize = 16 * 1024;

/// Bytes needed before the first check (the original's `input()` waits for 6).
pub const HANDSHAKE_PREFIX_MIN: usize = 6;

/// The reply to a request that is not a GET or lacks `Sec-WebSocket-Key` (102 bytes).
pub const RESPONSE_BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\r\n<div style=\"text-align:center\"><h1>400 Bad Request</h1><hr>workerman</div>";

/// The reply to a request without `Sec-WebSocket-Version`.
pub const RESPONSE_MISSING_VERSION: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The reply to a request whose `Sec-WebSocket-Version` is not `13`.
pub const RESPONSE_WRONG_VERSION: &[u8] = b"HTTP/1.1 426 Upgrade Required\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Version: 13\r\n\r\n";

/// The GUID RFC 6455 appends to the client key before hashing.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Why a handshake was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The request does not start with `GET` (400 written).
    #[error("request does not start with GET")]
    NotGet,
    /// No `Sec-WebSocket-Version` header (400 with a version hint written).
    #[error("missing Sec-WebSocket-Version")]
    MissingVersion,
    /// `Sec-WebSocket-Version` is not 13 (426 written).
    #[error("unsupported Sec-WebSocket-Version")]
    WrongVersion,
    /// No `Sec-WebSocket-Key` header (400 written).
    #[error("missing Sec-WebSocket-Key")]
    MissingKey,
    /// The head grew past [`HANDSHAKE_SIZE_MAX`] without ending (nothing written).
    #[error("request head exceeds {HANDSHAKE_SIZE_MAX} bytes")]
    TooLarge,
}

impl HandshakeError {
    /// The exact bytes the original writes before closing (empty: close silently).
    pub fn response(self) -> &'static [u8] {
        match self {
            HandshakeError::NotGet | HandshakeError::MissingKey => RESPONSE_BAD_REQUEST,
            HandshakeError::MissingVersion => RESPONSE_MISSING_VERSION,
            HandshakeError::WrongVersion => RESPONSE_WRONG_VERSION,
            HandshakeError::TooLarge => b"",
        }
    }
}

/// The outcome of looking at the buffered start of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeStep {
    /// Not enough bytes yet; `scanned` bytes are known to hold no complete head end.
    Incomplete {
        /// Where the next search for `\r\n\r\n` may start from (minus 3 bytes of overlap).
        scanned: usize,
    },
    /// A valid request head of `head_len` bytes; write `response`.
    Accepted {
        /// Length of the request head, `\r\n\r\n` included.
        head_len: usize,
        /// The 101 response.
        response: Bytes,
    },
    /// Refuse the request (write [`HandshakeError::response`], then close).
    Refused(HandshakeError),
}

/// Examines the buffered request `buf`; `scanned` is the value an earlier
/// [`HandshakeStep::Incomplete`] returned for a prefix of the same bytes (0 at first).
pub fn step(buf: &[u8], scanned: usize) -> HandshakeStep {
    if buf.len() < HANDSHAKE_PREFIX_MIN {
        return HandshakeStep::Incomplete { scanned: 0 };
    }
    if !buf.starts_with(b"GET") {
        return HandshakeStep::Refused(HandshakeError::NotGet);
    }
    let from = scanned.saturating_sub(3).min(buf.len());
    let Some(end) = find(&buf[from..], b"\r\n\r\n") else {
        if buf.len() >= HANDSHAKE_SIZE_MAX {
            return HandshakeStep::Refused(HandshakeError::TooLarge);
        }
        return HandshakeStep::Incomplete { scanned: buf.len() };
    };
    let head_len = from + end + 4;
    if head_len > HANDSHAKE_SIZE_MAX {
        return HandshakeStep::Refused(HandshakeError::TooLarge);
    }
    let head = &buf[..head_len];
    match find_header(head, b"sec-websocket-version:") {
        None => return HandshakeStep::Refused(HandshakeError::MissingVersion),
        Some(v) if v != b"13" => return HandshakeStep::Refused(HandshakeError::WrongVersion),
        Some(_) => {}
    }
    let Some(key) = find_header(head, b"sec-websocket-key:") else {
        return HandshakeStep::Refused(HandshakeError::MissingKey);
    };
    HandshakeStep::Accepted {
        head_len,
        response: response(key),
    }
}

/// The 101 response for the client key `key`.
pub fn response(key: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(160);
    out.put_slice(b"HTTP/1.1 101 Switching Protocol\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
    out.put_slice(accept(key).as_bytes());
    out.put_slice(b"\r\n\r\n");
    out.freeze()
}

/// `response` (a 101 response) with the header line `line` (`\r\n` included) added
/// before the empty line that ends it.
pub fn with_header(response: &[u8], line: &str) -> Bytes {
    let head = response.strip_suffix(b"\r\n").unwrap_or(response);
    let mut out = BytesMut::with_capacity(head.len() + line.len() + 2);
    out.put_slice(head);
    out.put_slice(line.as_bytes());
    out.put_slice(b"\r\n");
    out.freeze()
}

/// `base64(sha1(key ‖ GUID))`, the `Sec-WebSocket-Accept` value.
pub fn accept(key: &[u8]) -> String {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID);
    base64::engine::general_purpose::STANDARD.encode(sha.digest().bytes())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The value the original's `/<Name>: *(.*?)\r\n/i` finds in the head: after the first
/// case-insensitive occurrence of `name_colon` (anywhere, even inside another line) whose
/// line goes on to a `\r\n`, skipping spaces, up to that `\r\n`. Trailing spaces stay,
/// so `13 ` is not `13`: byte-exact with the original's accept key and version checks.
fn find_header<'a>(head: &'a [u8], name_colon: &[u8]) -> Option<&'a [u8]> {
    let mut from = 0;
    while from + name_colon.len() <= head.len() {
        let at = from
            + head[from..]
                .windows(name_colon.len())
                .position(|w| w.eq_ignore_ascii_case(name_colon))?;
        let rest = &head[at + name_colon.len()..];
        let rest = &rest[rest.iter().position(|&b| b != b' ').unwrap_or(rest.len())..];
        // `.` does not match `\n`: the value runs to the first `\n`, which must follow `\r`.
        if let Some(lf) = rest.iter().position(|&b| b == b'\n') {
            if lf > 0 && rest[lf - 1] == b'\r' {
                return Some(&rest[..lf - 1]);
            }
        }
        from = at + 1;
    }
    None
}

/// The header lines of a request head the way workerman's HTTP `Request` parses them:
/// lines after the request line split on `\r\n`, each split on its first `:`; the name
/// lower-cased but not trimmed, the value trimmed of spaces and tabs; lines without `:`
/// skipped.
fn headers(head: &[u8]) -> impl Iterator<Item = (Vec<u8>, &[u8])> {
    let body = head.strip_suffix(b"\r\n\r\n").unwrap_or(head);
    let after_first_line = find(body, b"\r\n").map_or(&b""[..], |i| &body[i + 2..]);
    split_crlf(after_first_line).filter_map(|line| {
        let colon = line.iter().position(|&b| b == b':')?;
        Some((line[..colon].to_ascii_lowercase(), trim(&line[colon + 1..])))
    })
}

fn split_crlf(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(bytes);
    std::iter::from_fn(move || {
        let current = rest?;
        match find(current, b"\r\n") {
            Some(i) => {
                rest = Some(&current[i + 2..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}

/// `trim($s, " \t")`.
fn trim(bytes: &[u8]) -> &[u8] {
    trim_set(bytes, b" \t")
}

fn trim_set<'a>(bytes: &'a [u8], set: &[u8]) -> &'a [u8] {
    let start = bytes
        .iter()
        .position(|b| !set.contains(b))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !set.contains(b))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// An accepted request head, kept as received; parsed on demand by [`Self::connect_data`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeRequest {
    head: Bytes,
}

impl HandshakeRequest {
    /// Wraps a request head (request line, headers, `\r\n\r\n`).
    pub fn new(head: Bytes) -> HandshakeRequest {
        HandshakeRequest { head }
    }

    /// The request head as received.
    pub fn head(&self) -> &Bytes {
        &self.head
    }

    /// The ON_WEBSOCKET_CONNECT body: the PHP array `{get, server, cookie}` of spec 6.3,
    /// for a client at `remote` connected to the gateway's public port `local_port`.
    pub fn connect_data(&self, remote: SocketAddr, local_port: u16) -> PhpValue {
        let mut data = PhpArray::with_capacity(3);
        let (server, query) = self.server(remote, local_port);
        data.push_unique(key("get"), PhpValue::Array(parse_str(query)));
        let cookie = match server.get_str("HTTP_COOKIE") {
            Some(PhpValue::Str(c)) => parse_cookie(c),
            _ => PhpArray::new(),
        };
        data.push_unique(key("server"), PhpValue::Array(server));
        data.push_unique(key("cookie"), PhpValue::Array(cookie));
        PhpValue::Array(data)
    }

    /// The `server` map and the query string.
    fn server(&self, remote: SocketAddr, local_port: u16) -> (PhpArray, &[u8]) {
        let head = &self.head[..];
        let first_line = find(head, b"\r\n").map_or(head, |i| &head[..i]);
        let mut parts = first_line.splitn(3, |&b| b == b' ');
        let method = parts.next().unwrap_or_default();
        let uri = parts.next().unwrap_or(b"/");
        // workerman: the text after the first "HTTP/" of the request line, else "1.0".
        let version = find(first_line, b"HTTP/").map_or(&b"1.0"[..], |i| &first_line[i + 5..]);
        let query = query_string(uri);

        let mut http = PhpArray::new();
        for (name, value) in headers(head) {
            let mut key_bytes = Vec::with_capacity(5 + name.len());
            key_bytes.extend_from_slice(b"HTTP_");
            key_bytes.extend(name.iter().map(|&b| match b {
                b'-' => b'_',
                b => b.to_ascii_uppercase(),
            }));
            let k = PhpKey::from_bytes(&key_bytes);
            match http.get_mut(&k) {
                Some(PhpValue::Str(existing)) => {
                    let mut joined = BytesMut::with_capacity(existing.len() + 1 + value.len());
                    joined.put_slice(existing);
                    joined.put_u8(b',');
                    joined.put_slice(value);
                    *existing = joined.freeze();
                }
                _ => http.insert(k, str_value(value)),
            }
        }
        let header_or_null = |name: &str| http.get_str(name).cloned().unwrap_or(PhpValue::Null);

        let mut server = PhpArray::with_capacity(9 + http.len());
        server.push_unique(key("QUERY_STRING"), str_value(query));
        server.push_unique(key("REQUEST_METHOD"), str_value(method));
        server.push_unique(key("REQUEST_URI"), str_value(uri));
        let mut server_protocol = b"HTTP/".to_vec();
        server_protocol.extend_from_slice(version);
        server.push_unique(key("SERVER_PROTOCOL"), str_value(&server_protocol));
        server.push_unique(key("SERVER_NAME"), header_or_null("HTTP_HOST"));
        server.push_unique(key("CONTENT_TYPE"), header_or_null("HTTP_CONTENT_TYPE"));
        server.push_unique(key("REMOTE_ADDR"), PhpValue::str(&remote.ip().to_string()));
        server.push_unique(key("REMOTE_PORT"), PhpValue::Int(remote.port().into()));
        server.push_unique(key("SERVER_PORT"), PhpValue::Int(local_port.into()));
        for (k, v) in http.into_entries() {
            server.insert(k, v);
        }
        (server, query)
    }
}

/// `parse_url($uri)['query'] ?? ''`: the text after the first `?`, up to a `#`.
fn query_string(uri: &[u8]) -> &[u8] {
    let before_fragment = uri
        .iter()
        .position(|&b| b == b'#')
        .map_or(uri, |i| &uri[..i]);
    before_fragment
        .iter()
        .position(|&b| b == b'?')
        .map_or(&b""[..], |i| &before_fragment[i + 1..])
}

fn key(name: &str) -> PhpKey {
    PhpKey::Str(Bytes::copy_from_slice(name.as_bytes()))
}

fn str_value(bytes: &[u8]) -> PhpValue {
    PhpValue::Str(Bytes::copy_from_slice(bytes))
}

/// The `cookie` map: split on `;`, each part on its first `=`; names trimmed (PHP `trim`), values kept
/// verbatim (not trimmed, not URL-decoded); parts without `=` dropped.
pub fn parse_cookie(header: &[u8]) -> PhpArray {
    let mut cookie = PhpArray::new();
    for part in header.split(|&b| b == b';') {
        let Some(eq) = part.iter().position(|&b| b == b'=') else {
            continue;
        };
        cookie.insert(
            PhpKey::from_bytes(trim_set(&part[..eq], b" \t\n\r\0\x0b")),
            str_value(&part[eq + 1..]),
        );
    }
    cookie
}

/// PHP's `urldecode`: `+` is a space, `%XX` a byte; a malformed `%` stays as is.
pub fn url_decode(bytes: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// PHP's `max_input_nesting_level` default: a `parse_str` name may open at most this many
/// brackets (`a[1]…[64]`); one more and the whole top-level variable is deleted.
pub const PARSE_STR_NESTING_MAX_LEVELS: usize = 64;

/// PHP's `max_input_vars` default: `parse_str` registers at most this many `&`-separated
/// pairs and ignores everything after them.
pub const PARSE_STR_VARS_MAX: usize = 1000;

/// PHP's `parse_str` for a query string, as PHP 8 does it with its default limits
/// (php-src `main/php_variables.c`, `php_default_treat_data` + `php_register_variable_ex`):
///
/// * `&`-separated pairs, empty ones skipped; each non-empty pair counts, and pairs past
///   the [`PARSE_STR_VARS_MAX`]th are ignored (PHP warns "Input variables exceeded" and
///   stops).
/// * `name=value` split on the first `=` (no `=`: empty value), then both URL-decoded;
///   the name ends at its first NUL byte (PHP handles it as a C string).
/// * `name[]`/`name[key]` build nested arrays (`[ ]` with one whitespace byte is `[]`);
///   in the base name (before the first `[`) leading spaces are dropped and spaces and
///   dots become `_`; later pairs overwrite earlier ones.
/// * A name opening more than [`PARSE_STR_NESTING_MAX_LEVELS`] brackets deletes the whole
///   top-level variable of its base name (including what earlier pairs stored there) and
///   its value is dropped (PHP warns "Input variable nesting level exceeded").
///
/// The result nests at most `PARSE_STR_NESTING_MAX_LEVELS + 1` arrays deep and holds at
/// most [`PARSE_STR_VARS_MAX`] values; the work is linear in the input.
pub fn parse_str(query: &[u8]) -> PhpArray {
    let mut result = PhpArray::new();
    for (count, pair) in query
        .split(|&b| b == b'&')
        .filter(|p| !p.is_empty())
        .enumerate()
    {
        if count >= PARSE_STR_VARS_MAX {
            break;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let mut name = url_decode(name);
        if let Some(nul) = name.iter().position(|&b| b == 0) {
            name.truncate(nul);
        }
        let value = PhpValue::Str(Bytes::from(url_decode(value)));
        match variable_path(&name) {
            VariableName::Empty => {}
            VariableName::TooDeep { base } => {
                result.remove(&PhpKey::from_bytes(&base));
            }
            VariableName::Path { base, path } => {
                assign(&mut result, PhpKey::from_bytes(&base), &path, value)
            }
        }
    }
    result
}

/// One bracketed index of a `parse_str` name: `None` for `[]` (append).
type Index = Option<Vec<u8>>;

/// A `parse_str` variable name as PHP registers it.
#[derive(Debug, PartialEq)]
enum VariableName {
    /// The base name is empty: nothing is registered.
    Empty,
    /// More than [`PARSE_STR_NESTING_MAX_LEVELS`] brackets: `base` is deleted.
    TooDeep { base: Vec<u8> },
    /// `base[path…]`: at most [`PARSE_STR_NESTING_MAX_LEVELS`] indexes.
    Path { base: Vec<u8>, path: Vec<Index> },
}

/// C's `isspace` in the "C" locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Splits a variable name the way PHP 8's `php_register_variable_ex` does: the base name
/// (leading spaces dropped, ` ` and `.` mapped to `_`) and the bracketed indexes
/// (`None` = `[]`, append). The nesting check comes first at every `[`, as in PHP, so the
/// 65th `[` is too deep whatever follows it.
fn variable_path(name: &[u8]) -> VariableName {
    let name = &name[name.iter().position(|&b| b != b' ').unwrap_or(name.len())..];
    let first_bracket = name.iter().position(|&b| b == b'[');
    let base_part = &name[..first_bracket.unwrap_or(name.len())];
    let mut base: Vec<u8> = base_part
        .iter()
        .map(|&b| if b == b' ' || b == b'.' { b'_' } else { b })
        .collect();
    if base.is_empty() {
        return VariableName::Empty;
    }
    let Some(first_bracket) = first_bracket else {
        return VariableName::Path {
            base,
            path: Vec::new(),
        };
    };
    let mut path = Vec::new();
    // `rest` starts at a `[` on every turn.
    let mut rest = &name[first_bracket..];
    loop {
        if path.len() >= PARSE_STR_NESTING_MAX_LEVELS {
            return VariableName::TooDeep { base };
        }
        let inner = &rest[1..];
        let skip = usize::from(inner.first().is_some_and(|&b| is_c_space(b)));
        if inner.get(skip) == Some(&b']') {
            path.push(None);
            rest = &inner[skip + 1..];
        } else {
            match inner.iter().position(|&c| c == b']') {
                Some(close) => {
                    path.push(Some(inner[..close].to_vec()));
                    rest = &inner[close + 1..];
                }
                None => {
                    if path.is_empty() {
                        // An unmatched first `[` becomes `_` and the rest stays in the
                        // base name, with ` `, `.` and `[` mapped to `_` too (PHP 8).
                        base.push(b'_');
                        base.extend(inner.iter().map(|&c| match c {
                            b' ' | b'.' | b'[' => b'_',
                            c => c,
                        }));
                    }
                    // A later unmatched `[` ends the name at the index before it.
                    return VariableName::Path { base, path };
                }
            }
        }
        if !rest.starts_with(b"[") {
            // Text after a `]` that does not open another index is ignored.
            return VariableName::Path { base, path };
        }
    }
}

/// `$target[key][path...] = value`, creating (or replacing non-array values with) arrays;
/// an append (`[]`) on an array whose next int key is taken drops the value, as in PHP.
/// Iterative: the path is at most [`PARSE_STR_NESTING_MAX_LEVELS`] long anyway.
fn assign(target: &mut PhpArray, key: PhpKey, path: &[Index], value: PhpValue) {
    let mut target = target;
    let mut key = Some(key);
    for index in path {
        let slot = match key {
            Some(k) => {
                if !matches!(target.get(&k), Some(PhpValue::Array(_))) {
                    target.insert(k.clone(), PhpValue::Array(PhpArray::new()));
                }
                k
            }
            None => match target.push(PhpValue::Array(PhpArray::new())) {
                Some(n) => PhpKey::Int(n),
                None => return,
            },
        };
        let Some(PhpValue::Array(inner)) = target.get_mut(&slot) else {
            return;
        };
        target = inner;
        key = index.as_deref().map(PhpKey::from_bytes);
    }
    match key {
        Some(k) => target.insert(k, value),
        None => {
            target.push(value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(query: &str) -> PhpArray {
        parse_str(query.as_bytes())
    }

    fn s(text: &str) -> PhpValue {
        PhpValue::str(text)
    }

    #[test]
    fn accept_matches_rfc_6455_example() {
        assert_eq!(
            accept(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn parse_str_lists_renames_and_decodes() {
        let a = get("x[]=1&x[]=2&a.b=c&d+e=%41%2&f=g+h&=skip&k");
        assert_eq!(
            a.get_str("x"),
            Some(&PhpValue::Array(
                [(PhpKey::Int(0), s("1")), (PhpKey::Int(1), s("2"))]
                    .into_iter()
                    .collect()
            ))
        );
        assert_eq!(a.get_str("a_b"), Some(&s("c")));
        assert_eq!(a.get_str("d_e"), Some(&s("A%2")));
        assert_eq!(a.get_str("f"), Some(&s("g h")));
        assert_eq!(a.get_str("k"), Some(&s("")));
        assert_eq!(a.len(), 5);
    }

    #[test]
    fn parse_str_nested_keys_and_unmatched_bracket() {
        let a = get("m[k.1][]=v&n[=w&q[x.y[z=u&p[a]b=z&7=seven");
        let inner: PhpArray = [(PhpKey::Int(0), s("v"))].into_iter().collect();
        let m: PhpArray = [(PhpKey::from_bytes(b"k.1"), PhpValue::Array(inner))]
            .into_iter()
            .collect();
        assert_eq!(a.get_str("m"), Some(&PhpValue::Array(m)));
        assert_eq!(a.get_str("n_"), Some(&s("w")));
        assert_eq!(a.get_str("q_x_y_z"), Some(&s("u")));
        let p: PhpArray = [(PhpKey::from_bytes(b"a"), s("z"))].into_iter().collect();
        assert_eq!(a.get_str("p"), Some(&PhpValue::Array(p)));
        assert_eq!(a.get(&PhpKey::Int(7)), Some(&s("seven")));
    }

    /// `$name[]…[]=$leaf` with `levels` brackets, as a query pair.
    fn nested_pair(name: &str, levels: usize, leaf: &str) -> String {
        format!("{name}{}={leaf}", "[]".repeat(levels))
    }

    /// The value `parse_str` builds for `nested_pair(_, levels, leaf)`.
    fn nested_list(levels: usize, leaf: &str) -> PhpValue {
        let mut value = s(leaf);
        for _ in 0..levels {
            value = PhpValue::Array([(PhpKey::Int(0), value)].into_iter().collect());
        }
        value
    }

    fn keys(a: &PhpArray) -> Vec<PhpKey> {
        a.iter().map(|(k, _)| k.clone()).collect()
    }

    // Vectors derived from php-src PHP 8 `main/php_variables.c`. In
    // `php_register_variable_ex` the loop over a name's brackets starts each turn with
    // `if (++nest_level > PG(max_input_nesting_level))` (default 64): at the 65th `[`, before
    // that bracket is even parsed, `zend_symtable_str_del(track_vars_array, var, var_len)`
    // deletes the whole top-level variable of that base name and the value is dropped.

    #[test]
    fn php_vector_nesting_64_levels_are_kept() {
        let a = get(&nested_pair("a", 64, "1"));
        assert_eq!(a.get_str("a"), Some(&nested_list(64, "1")));
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn php_vector_nesting_65_levels_drop_the_variable() {
        assert!(get(&nested_pair("a", 65, "1")).is_empty());
        // The check precedes the bracket's parsing: an unmatched 65th `[` is too deep too.
        assert!(get(&format!("a{}[x=1", "[]".repeat(64))).is_empty());
        // …while an unmatched 64th `[` just ends the name at the 63rd index.
        let a = get(&format!("a{}[x=1", "[]".repeat(63)));
        assert_eq!(a.get_str("a"), Some(&nested_list(63, "1")));
        // The attack: ~7,000 levels in a 16 KiB head.
        assert!(get(&nested_pair("a", 7000, "1")).is_empty());
    }

    #[test]
    fn php_vector_too_deep_deletes_an_earlier_shallow_variable_of_the_same_name() {
        let deep = nested_pair("a", 65, "z");
        let a = get(&format!("x=1&a=1&b=2&{deep}&c=3"));
        assert_eq!(keys(&a), [key("x"), key("b"), key("c")]);
        // Deleted, not reset: a later `a` is appended at the end.
        let a = get(&format!("a=1&b=2&{deep}&a=3"));
        assert_eq!(keys(&a), [key("b"), key("a")]);
        assert_eq!(a.get_str("a"), Some(&s("3")));
        // Also an array built by earlier pairs, and through the base name's mapping
        // (`a.b` registers as `a_b`; zend_symtable_str_del normalises "5" to int 5).
        let a = get(&format!(
            "a_b[k]=1&{}&5=five&{}",
            nested_pair("a.b", 65, "z"),
            nested_pair("5", 65, "z")
        ));
        assert!(a.is_empty(), "{a:?}");
    }

    // `php_default_treat_data`: tokens come from `php_strtok_r(res, "&")` (empty tokens are
    // skipped), and each token does `if (++count > max_input_vars) { warning; break; }`
    // (default 1000) before it is decoded or registered: the 1001st and later pairs are
    // ignored, whatever the earlier pairs were (empty names and too deep ones count too).

    #[test]
    fn php_vector_1000_vars_are_kept_and_the_1001st_is_ignored() {
        let pairs: Vec<String> = (0..1000).map(|i| format!("v{i}={i}")).collect();
        let a = get(&pairs.join("&"));
        assert_eq!(a.len(), 1000);
        assert_eq!(a.get_str("v999"), Some(&s("999")));
        let a = get(&format!("{}&v1000=1000", pairs.join("&&")));
        assert_eq!(a.len(), 1000);
        assert_eq!(a.get_str("v1000"), None);
        // Pairs that register nothing still count.
        let mut counted: Vec<String> = vec!["=x".into(), "%20=y".into(), nested_pair("d", 65, "z")];
        counted.extend((3..1000).map(|i| format!("v{i}=1")));
        counted.push("last=1".into());
        let a = get(&counted.join("&"));
        assert_eq!(a.len(), 997);
        assert_eq!(a.get_str("last"), None);
        // A pair overwriting another still counts: 1001 pairs of one name keep the 1000th.
        let same: Vec<String> = (0..1001).map(|i| format!("k={i}")).collect();
        assert_eq!(get(&same.join("&")).get_str("k"), Some(&s("999")));
    }

    #[test]
    fn php_vector_bracket_details() {
        // `if (isspace(*ip)) ip++; if (*ip == ']') index_s = NULL;`: `[ ]` appends.
        let a = get("a[ ]=1&a[\t]=2&b[  ]=3&c[ x]=4");
        let list: PhpArray = [(PhpKey::Int(0), s("1")), (PhpKey::Int(1), s("2"))]
            .into_iter()
            .collect();
        assert_eq!(a.get_str("a"), Some(&PhpValue::Array(list)));
        let b: PhpArray = [(PhpKey::from_bytes(b"  "), s("3"))].into_iter().collect();
        assert_eq!(a.get_str("b"), Some(&PhpValue::Array(b)));
        let c: PhpArray = [(PhpKey::from_bytes(b" x"), s("4"))].into_iter().collect();
        assert_eq!(a.get_str("c"), Some(&PhpValue::Array(c)));
        // The name is a C string after url-decoding: it ends at a NUL byte.
        let a = get("a%00b=1&%00=2");
        assert_eq!(keys(&a), [key("a")]);
        // `zend_hash_next_index_insert` failing drops the value (and `[][x]` builds nothing).
        let a = get("a[9223372036854775807]=1&a[]=2&a[][x]=3");
        let full: PhpArray = [(PhpKey::Int(i64::MAX), s("1"))].into_iter().collect();
        assert_eq!(a.get_str("a"), Some(&PhpValue::Array(full)));
    }

    #[test]
    fn url_decode_keeps_malformed_percent() {
        assert_eq!(url_decode(b"%"), b"%");
        assert_eq!(url_decode(b"%4"), b"%4");
        assert_eq!(url_decode(b"%zz%41"), b"%zzA");
        assert_eq!(url_decode(b"a%20b+c"), b"a b c");
    }

    #[test]
    fn cookie_split_rules() {
        let c = parse_cookie(b"sid=xyz; theme=dark; flag; e= =v ;x=a=b; enc=%41+b");
        assert_eq!(c.get_str("sid"), Some(&s("xyz")));
        assert_eq!(c.get_str("theme"), Some(&s("dark")));
        assert_eq!(c.get_str("e"), Some(&s(" =v ")));
        assert_eq!(c.get_str("x"), Some(&s("a=b")));
        assert_eq!(c.get_str("enc"), Some(&s("%41+b")), "not URL-decoded");
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn head_larger_than_the_bound_is_refused() {
        let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
        head.resize(HANDSHAKE_SIZE_MAX - 1, b'a');
        assert!(matches!(step(&head, 0), HandshakeStep::Incomplete { .. }));
        head.push(b'a');
        assert_eq!(
            step(&head, 0),
            HandshakeStep::Refused(HandshakeError::TooLarge)
        );
        // A head ending exactly at the bound is accepted.
        let mut head =
            b"GET / HTTP/1.1\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: k\r\nX: ".to_vec();
        head.resize(HANDSHAKE_SIZE_MAX - 4, b'a');
        head.extend_from_slice(b"\r\n\r\n");
        assert!(
            matches!(step(&head, 0), HandshakeStep::Accepted { head_len, .. } if head_len == HANDSHAKE_SIZE_MAX)
        );
    }

    #[test]
    fn server_map_joins_duplicates_and_nulls_missing_host() {
        let req = HandshakeRequest::new(Bytes::from_static(
            b"GET /p HTTP/1.0\r\nA-b:  1 \r\na-B:\t2\r\nno colon\r\n\r\n",
        ));
        let PhpValue::Array(data) = req.connect_data("[::1]:9".parse().unwrap(), 80) else {
            panic!("not an array")
        };
        let Some(PhpValue::Array(server)) = data.get_str("server") else {
            panic!("no server")
        };
        let keys: Vec<_> = server.iter().map(|(k, _)| k.to_bytes()).collect();
        assert_eq!(
            keys,
            [
                "QUERY_STRING",
                "REQUEST_METHOD",
                "REQUEST_URI",
                "SERVER_PROTOCOL",
                "SERVER_NAME",
                "CONTENT_TYPE",
                "REMOTE_ADDR",
                "REMOTE_PORT",
                "SERVER_PORT",
                "HTTP_A_B"
            ]
            .map(|k| Bytes::from_static(k.as_bytes()))
        );
        assert_eq!(server.get_str("HTTP_A_B"), Some(&s("1,2")));
        assert_eq!(server.get_str("SERVER_NAME"), Some(&PhpValue::Null));
        assert_eq!(server.get_str("SERVER_PROTOCOL"), Some(&s("HTTP/1.0")));
        assert_eq!(server.get_str("QUERY_STRING"), Some(&s("")));
        assert_eq!(server.get_str("REMOTE_ADDR"), Some(&s("::1")));
        assert_eq!(
            data.get_str("cookie"),
            Some(&PhpValue::Array(PhpArray::new()))
        );
    }

    #[test]
    fn version_and_key_are_found_like_the_original_regex() {
        let head = |lines: &str| format!("GET / HTTP/1.1\r\n{lines}\r\n").into_bytes();
        // Trailing spaces are part of the value: "13 " is not 13.
        let h = head("Sec-WebSocket-Version: 13 \r\nSec-WebSocket-Key: k\r\n");
        assert_eq!(
            step(&h, 0),
            HandshakeStep::Refused(HandshakeError::WrongVersion)
        );
        // Case-insensitive, any number of spaces (no tabs) after the colon.
        let h = head("SEC-WEBSOCKET-VERSION:13\r\nsec-websocket-key:   k \r\n");
        assert_eq!(
            step(&h, 0),
            HandshakeStep::Accepted {
                head_len: h.len(),
                response: response(b"k ")
            }
        );
        // A space before the colon is not the header.
        let h = head("Sec-WebSocket-Version : 13\r\n");
        assert_eq!(
            step(&h, 0),
            HandshakeStep::Refused(HandshakeError::MissingVersion)
        );
        // A tab is not skipped: the value starts with it.
        let h = head("Sec-WebSocket-Version:\t13\r\n");
        assert_eq!(
            step(&h, 0),
            HandshakeStep::Refused(HandshakeError::WrongVersion)
        );
    }

    #[test]
    fn request_line_is_read_like_workerman() {
        let data = |head: &'static [u8]| {
            let req = HandshakeRequest::new(Bytes::from_static(head));
            let PhpValue::Array(data) = req.connect_data("1.2.3.4:5".parse().unwrap(), 6) else {
                panic!("not an array")
            };
            data
        };
        let d = data(b"GET /HTTP/x?a=1#f HTTP/1.1\r\nHost : h\r\n\r\n");
        let Some(PhpValue::Array(server)) = d.get_str("server") else {
            panic!()
        };
        assert_eq!(
            server.get_str("SERVER_PROTOCOL"),
            Some(&s("HTTP/x?a=1#f HTTP/1.1"))
        );
        assert_eq!(server.get_str("QUERY_STRING"), Some(&s("a=1")));
        assert_eq!(server.get_str("REQUEST_URI"), Some(&s("/HTTP/x?a=1#f")));
        // The name is not trimmed: "Host " is not the Host header.
        assert_eq!(server.get_str("HTTP_HOST "), Some(&s("h")));
        assert_eq!(server.get_str("SERVER_NAME"), Some(&PhpValue::Null));
        assert_eq!(server.get_str("REMOTE_PORT"), Some(&PhpValue::Int(5)));
        assert_eq!(server.get_str("SERVER_PORT"), Some(&PhpValue::Int(6)));
        let d = data(b"GET\r\nCookie: \ta=1\r\n\r\n");
        let Some(PhpValue::Array(server)) = d.get_str("server") else {
            panic!()
        };
        assert_eq!(server.get_str("REQUEST_URI"), Some(&s("/")));
        assert_eq!(server.get_str("SERVER_PROTOCOL"), Some(&s("HTTP/1.0")));
        let cookie: PhpArray = [(PhpKey::from_bytes(b"a"), s("1"))].into_iter().collect();
        assert_eq!(d.get_str("cookie"), Some(&PhpValue::Array(cookie)));
    }
}
