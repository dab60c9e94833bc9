//! The `frames` vectors: every command encoded from typed input, decoded back, the decode
//! edge cases and the original's length detection (`GatewayProtocol::input()`).

use bytes::{Bytes, BytesMut};
use gatewayworker::protocol::frame::{
    encode_frame, frame_len, FrameDecodeError, FrameDecoder, RawHeader, FLAG_BODY_IS_SCALAR,
    HEADER_LEN, PACKAGE_SIZE_MAX_DEFAULT,
};
use gatewayworker::protocol::php::body::{decode_body, encode_body};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::testing::vectors::{bytes, encode_hex, php, section};
use serde_json::Value;

fn num(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("field {field} missing in {v}"))
}

/// The raw header a vector's `input.fields` describes, before body flags.
fn input_raw_header(fields: &Value) -> RawHeader {
    RawHeader {
        pack_len: 0,
        cmd: num(fields, "cmd") as u8,
        local_ip: num(fields, "local_ip") as u32,
        local_port: num(fields, "local_port") as u16,
        client_ip: num(fields, "client_ip") as u32,
        client_port: num(fields, "client_port") as u16,
        connection_id: num(fields, "connection_id") as u32,
        flag: num(fields, "flag") as u8,
        gateway_port: num(fields, "gateway_port") as u16,
        ext_len: 0,
    }
}

fn expected_raw_header(decoded: &Value) -> RawHeader {
    RawHeader {
        pack_len: num(decoded, "pack_len") as u32,
        ext_len: num(decoded, "ext_len") as u32,
        ..input_raw_header(decoded)
    }
}

fn is_string(typed: &Value) -> bool {
    typed["t"] == "string"
}

/// Body bytes and flag bits of a typed body: strings directly (no dependency on the PHP
/// codec), everything else through `encode_body`.
fn body_bytes(typed: &Value) -> (Bytes, u8) {
    match php(typed) {
        PhpValue::Str(s) if is_string(typed) => (s, FLAG_BODY_IS_SCALAR),
        other => encode_body(&other),
    }
}

fn encode_vector(v: &Value) {
    let name = v["name"].as_str().unwrap();
    let input = &v["input"];
    let expected = &v["expected"];
    let ext = bytes(&input["ext_data"]);
    let (body, flag_bits) = body_bytes(&input["body"]);
    let mut raw = input_raw_header(&input["fields"]);
    raw.flag |= flag_bits;
    let mut out = BytesMut::new();
    match raw.to_header() {
        Some(header) => encode_frame(&mut out, &header, &ext, &body),
        None => {
            // An undefined cmd (max_header_values) cannot be a `Header`: write it raw.
            RawHeader {
                pack_len: (HEADER_LEN + ext.len() + body.len()) as u32,
                ext_len: ext.len() as u32,
                ..raw
            }
            .write(&mut out);
            out.extend_from_slice(&ext);
            out.extend_from_slice(&body);
        }
    }
    assert_eq!(
        encode_hex(&out),
        expected["frame_hex"].as_str().unwrap(),
        "{name}: encoded bytes"
    );
    assert_eq!(out.len() as u64, num(expected, "frame_length"), "{name}");
    assert_eq!(
        encode_hex(&out[..HEADER_LEN]),
        expected["header_hex"].as_str().unwrap(),
        "{name}: header"
    );
}

/// Decodes `frame` all at once and byte by byte, checking both give the vector's fields.
fn decode_vector(v: &Value, frame: &[u8]) {
    let name = v["name"].as_str().unwrap();
    let expected = &v["expected"];
    let want = expected_raw_header(&expected["decoded_header"]);
    let want_ext = bytes(&expected["decoded_ext_data"]);

    let mut whole = BytesMut::from(frame);
    let at_once = FrameDecoder::default().decode(&mut whole);
    assert!(whole.is_empty(), "{name}: frame fully consumed");

    let mut decoder = FrameDecoder::default();
    let mut trickle = BytesMut::new();
    let mut by_byte = Ok(None);
    for (i, b) in frame.iter().enumerate() {
        trickle.extend_from_slice(&[*b]);
        by_byte = decoder.decode(&mut trickle);
        if i + 1 < frame.len() {
            assert_eq!(by_byte, Ok(None), "{name}: early result at byte {i}");
        }
    }
    assert_eq!(at_once, by_byte, "{name}: chunking changed the result");

    let frame_decoded = match at_once {
        Ok(Some(f)) => f,
        Err(FrameDecodeError::UnknownCommand { header }) => {
            assert_eq!(header, want, "{name}: header of the skipped frame");
            assert!(gatewayworker::protocol::frame::Command::from_u8(header.cmd).is_none());
            let ext_end = HEADER_LEN + header.ext_len as usize;
            assert_eq!(&frame[HEADER_LEN..ext_end], &want_ext[..], "{name}: ext");
            assert_eq!(
                php(&expected["decoded_body"]),
                PhpValue::Str(Bytes::copy_from_slice(&frame[ext_end..])),
                "{name}: body"
            );
            return;
        }
        other => panic!("{name}: decoder gave {other:?}"),
    };
    let got = RawHeader::from_header(
        &frame_decoded.header,
        frame_decoded.ext_data.len(),
        frame_decoded.body.len(),
    );
    assert_eq!(got, want, "{name}: decoded header");
    assert_eq!(
        &frame_decoded.ext_data[..],
        &want_ext[..],
        "{name}: ext_data"
    );
    let want_body = &expected["decoded_body"];
    let body = if is_string(want_body) && got.flag & FLAG_BODY_IS_SCALAR != 0 {
        PhpValue::Str(frame_decoded.body.clone())
    } else {
        decode_body(&frame_decoded.body, got.flag)
    };
    assert_eq!(body, php(want_body), "{name}: decoded body");
}

fn needs_php_codec(v: &Value) -> bool {
    let typed = |x: &Value| !x.is_null() && !is_string(x);
    typed(&v["input"]["body"])
        || typed(&v["expected"]["decoded_body"])
        || (v["input"].get("frame_hex").is_some()
            && num(&v["expected"]["decoded_header"], "flag") as u8 & FLAG_BODY_IS_SCALAR == 0)
}

fn run(v: &Value) {
    let name = v["name"].as_str().unwrap();
    let input = &v["input"];
    if input.get("fields").is_some() {
        encode_vector(v);
        decode_vector(v, &bytes(&v["expected"]["frame_hex"]));
    } else if let Some(frame_hex) = input.get("frame_hex") {
        decode_vector(v, &bytes(frame_hex));
    } else if let Some(buffer) = input.get("buffer_hex") {
        input_length_vector(v, &bytes(buffer));
    } else {
        panic!("{name}: vector of an unknown kind");
    }
}

/// `input()` returns 0 until 28 bytes are buffered, then pack_len; our decoder must wait in
/// the same cases and split exactly pack_len bytes otherwise.
fn input_length_vector(v: &Value, buffer: &[u8]) {
    let name = v["name"].as_str().unwrap();
    let want = num(&v["expected"], "input_return") as usize;
    let got = frame_len(buffer, PACKAGE_SIZE_MAX_DEFAULT).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(got.unwrap_or(0), want, "{name}: detected length");
    let mut src = BytesMut::from(buffer);
    let decoded = FrameDecoder::default().decode(&mut src);
    if want == 0 {
        assert_eq!(decoded, Ok(None), "{name}");
        assert_eq!(src.len(), buffer.len(), "{name}: nothing consumed");
    } else {
        let frame = decoded
            .unwrap()
            .unwrap_or_else(|| panic!("{name}: no frame"));
        assert_eq!(
            HEADER_LEN + frame.ext_data.len() + frame.body.len(),
            want,
            "{name}"
        );
        assert_eq!(
            src.len(),
            buffer.len() - want,
            "{name}: trailing bytes kept"
        );
    }
}

#[test]
fn frame_vectors_without_php_values() {
    let mut count = 0;
    for v in section("frames").iter().filter(|v| !needs_php_codec(v)) {
        run(v);
        count += 1;
    }
    assert!(count >= 30, "only {count} string-body frame vectors");
}

#[test]
fn frame_vectors_with_php_values() {
    let mut count = 0;
    for v in section("frames").iter().filter(|v| needs_php_codec(v)) {
        run(v);
        count += 1;
    }
    assert!(count >= 5, "only {count} typed-body frame vectors");
}
