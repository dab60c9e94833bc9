//! Register lines, both directions: the line splitter of the register link, the register's
//! reading of a request (`classify_request`) and a worker's reading of the register's
//! answer (`decode_from_register`). Oracles: the same lines for any split; no line holds
//! a `\n` or is over the limit; the lines, the too-long error and the bytes consumed are
//! those of a plain reference splitter, also under a small bound taken from the input (so
//! the error path is reached often); a gateway_connect read re-encodes (ToRegister) to a
//! line read the same; a broadcast list re-encodes to a line decoded the same.
#![no_main]

use bytes::BytesMut;
use gatewayworker::protocol::register::{
    classify_request, decode_from_register, encode_broadcast_addresses, unique_with_indexes,
    FromRegister, LineDecodeError, LineDecoder, RegisterRequest, ToRegister,
};
use gatewayworker_fuzz::{assert_bounded, measure, pull, same_for_any_split};
use libfuzzer_sys::fuzz_target;

const LINE_LENGTH_MAX: usize = 1024;

fn without_newline(mut line: BytesMut) -> Vec<u8> {
    assert_eq!(line.last(), Some(&b'\n'));
    line.truncate(line.len() - 1);
    line.to_vec()
}

/// The lines a `\n` splitter with bound `max` must give, computed without the decoder:
/// every segment of at most `max` bytes (`\n` included), trailing `\r`/`\n` stripped,
/// until `max` bytes hold no `\n` (the error, consuming nothing more); and the bytes
/// consumed.
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

/// The decoder under `max`, for every cutting of `data`, against the reference.
fn check_against_reference(data: &[u8], max: usize) {
    let pulled = same_for_any_split(data, |chunks| {
        let mut decoder = LineDecoder::new(max);
        pull(chunks, |buf| decoder.decode(buf), |_| true)
    });
    let got: Vec<Vec<u8>> = pulled
        .items
        .iter()
        .map(|l| l.as_ref().expect("only fatal errors").to_vec())
        .collect();
    let (lines, error, consumed) = reference_lines(data, max);
    assert_eq!(got, lines, "lines differ from the reference (bound {max})");
    assert_eq!(
        pulled.fatal, error,
        "error differs from the reference (bound {max})"
    );
    assert_eq!(pulled.consumed, consumed, "consumed differs (bound {max})");
}

fuzz_target!(|data: &[u8]| {
    // A small bound from the first byte: the too-long path at every position.
    if let Some(first) = data.first() {
        check_against_reference(data, usize::from(first % 32) + 1);
    }
    check_against_reference(data, LINE_LENGTH_MAX);
    let pulled = same_for_any_split(data, |chunks| {
        let mut decoder = LineDecoder::new(LINE_LENGTH_MAX);
        pull(chunks, |buf| decoder.decode(buf), |_| true)
    });
    let mut lines: Vec<&[u8]> = pulled.items.iter().flatten().map(|l| &l[..]).collect();
    for line in &lines {
        assert!(line.len() < LINE_LENGTH_MAX);
        assert!(!line.contains(&b'\n'));
    }
    // The whole input as one line too (what the JSON readers see when fuzzed directly).
    lines.push(data);
    for line in lines {
        let (request, peak) = measure(|| classify_request(line));
        assert_bounded("classify_request", peak, 256 * line.len() + 4096);
        if let RegisterRequest::GatewayConnect {
            address: Some(address),
            secret_key: Some(secret_key),
        } = &request
        {
            let mut out = BytesMut::new();
            ToRegister::GatewayConnect {
                address: address.clone(),
                secret_key: secret_key.clone(),
            }
            .encode(&mut out);
            assert_eq!(
                classify_request(&without_newline(out)),
                request,
                "gateway_connect does not survive re-encoding"
            );
        }
        if let RegisterRequest::WorkerConnect {
            secret_key: Some(secret_key),
        } = &request
        {
            let mut out = BytesMut::new();
            ToRegister::WorkerConnect {
                secret_key: secret_key.clone(),
            }
            .encode(&mut out);
            assert_eq!(classify_request(&without_newline(out)), request);
        }
        if let Ok(FromRegister::BroadcastAddresses(addresses)) = decode_from_register(line) {
            let unique = unique_with_indexes(addresses.iter().map(String::as_str));
            let mut out = BytesMut::new();
            encode_broadcast_addresses(&unique, &mut out);
            let expected: Vec<String> = unique.iter().map(|(_, a)| a.to_string()).collect();
            assert_eq!(
                decode_from_register(&without_newline(out)),
                Ok(FromRegister::BroadcastAddresses(expected)),
                "broadcast_addresses does not survive re-encoding"
            );
        }
    }
});
