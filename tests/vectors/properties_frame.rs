//! Properties of the frame, reply, client_id and register-line codecs (quickcheck, 1000
//! cases each): round trips, chunking independence, and no panic on any input.

use std::net::Ipv4Addr;

use bytes::BytesMut;
use gatewayworker::protocol::client_id::ClientId;
use gatewayworker::protocol::frame::{
    encode_reply, Command, Frame, FrameDecodeError, FrameDecoder, Header, RawHeader, ReplyDecoder,
    HEADER_LEN,
};
use gatewayworker::protocol::register::{classify_request, decode_from_register, LineDecoder};
use quickcheck::{Arbitrary, Gen, QuickCheck, TestResult};

const CASES: u64 = 1000;

fn defined_commands() -> Vec<Command> {
    (0..=255u8).filter_map(Command::from_u8).collect()
}

#[derive(Debug, Clone)]
struct AnyFrame(Frame);

impl Arbitrary for AnyFrame {
    fn arbitrary(g: &mut Gen) -> AnyFrame {
        let cmd = *g.choose(&defined_commands()).unwrap();
        let header = Header {
            cmd,
            local_ip: Ipv4Addr::from(u32::arbitrary(g)),
            local_port: u16::arbitrary(g),
            client_ip: Ipv4Addr::from(u32::arbitrary(g)),
            client_port: u16::arbitrary(g),
            connection_id: u32::arbitrary(g),
            flag: u8::arbitrary(g),
            gateway_port: u16::arbitrary(g),
        };
        AnyFrame(Frame::new(
            header,
            Vec::<u8>::arbitrary(g),
            Vec::<u8>::arbitrary(g),
        ))
    }
}

/// One frame of a stream: a defined command, or the same bytes with an undefined number.
#[derive(Debug, Clone)]
struct StreamItem {
    frame: Frame,
    undefined_cmd: Option<u8>,
}

impl Arbitrary for StreamItem {
    fn arbitrary(g: &mut Gen) -> StreamItem {
        let undefined: Vec<u8> = (0..=255u8)
            .filter(|n| Command::from_u8(*n).is_none())
            .collect();
        StreamItem {
            frame: AnyFrame::arbitrary(g).0,
            undefined_cmd: if u8::arbitrary(g) % 4 == 0 {
                g.choose(&undefined).copied()
            } else {
                None
            },
        }
    }
}

fn encode_stream(items: &[StreamItem]) -> BytesMut {
    let mut out = BytesMut::new();
    for item in items {
        let start = out.len();
        item.frame.encode(&mut out);
        if let Some(cmd) = item.undefined_cmd {
            out[start + 4] = cmd;
        }
    }
    out
}

type Decoded = Result<Frame, FrameDecodeError>;

/// Feeds `stream` cut at `cuts` (positions, any order, any value) and collects every
/// result until the decoder needs more input or fails fatally.
fn decode_chunked(stream: &[u8], cuts: &[usize], decoder: FrameDecoder) -> Vec<Decoded> {
    let mut decoder = decoder;
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    points.push(stream.len());
    points.sort_unstable();
    let mut src = BytesMut::new();
    let mut out = Vec::new();
    let mut fed = 0;
    for point in points {
        src.extend_from_slice(&stream[fed..point]);
        fed = point;
        loop {
            match decoder.decode(&mut src) {
                Ok(None) => break,
                Ok(Some(frame)) => out.push(Ok(frame)),
                Err(e) if !e.is_fatal() => out.push(Err(e)),
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

#[test]
fn encode_then_decode_gives_the_frame_back() {
    fn prop(frame: AnyFrame) -> bool {
        let frame = frame.0;
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let mut by_parts = BytesMut::new();
        gatewayworker::protocol::frame::encode_frame(
            &mut by_parts,
            &frame.header,
            &frame.ext_data,
            &frame.body,
        );
        buf.len() == frame.encoded_len()
            && buf == by_parts
            && FrameDecoder::default().decode(&mut buf) == Ok(Some(frame))
            && buf.is_empty()
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(AnyFrame) -> bool);
}

#[test]
fn any_chunking_gives_the_same_frames() {
    fn prop(items: Vec<StreamItem>, cuts: Vec<usize>) -> TestResult {
        if items.is_empty() {
            return TestResult::discard();
        }
        let stream = encode_stream(&items);
        let whole = decode_chunked(&stream, &[], FrameDecoder::default());
        let chunked = decode_chunked(&stream, &cuts, FrameDecoder::default());
        let expected: Vec<Decoded> = items
            .iter()
            .map(|item| match item.undefined_cmd {
                None => Ok(item.frame.clone()),
                Some(cmd) => Err(FrameDecodeError::UnknownCommand {
                    header: RawHeader {
                        cmd,
                        ..RawHeader::from_header(
                            &item.frame.header,
                            item.frame.ext_data.len(),
                            item.frame.body.len(),
                        )
                    },
                }),
            })
            .collect();
        TestResult::from_bool(whole == expected && chunked == expected)
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Vec<StreamItem>, Vec<usize>) -> TestResult);
}

#[test]
fn reply_records_survive_any_chunking() {
    fn prop(payloads: Vec<Vec<u8>>, cuts: Vec<usize>) -> bool {
        let mut stream = BytesMut::new();
        for p in &payloads {
            encode_reply(p, &mut stream);
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut decoder = ReplyDecoder::default();
        let (mut src, mut got, mut fed) = (BytesMut::new(), Vec::new(), 0);
        for point in points {
            src.extend_from_slice(&stream[fed..point]);
            fed = point;
            while let Ok(Some(p)) = decoder.decode(&mut src) {
                got.push(p.to_vec());
            }
        }
        got == payloads && src.is_empty()
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Vec<Vec<u8>>, Vec<usize>) -> bool);
}

/// Random bytes, or a valid stream with bytes overwritten: decoders return, never panic,
/// and always make progress or stop.
#[derive(Debug, Clone)]
struct Garbage(Vec<u8>);

impl Arbitrary for Garbage {
    fn arbitrary(g: &mut Gen) -> Garbage {
        if bool::arbitrary(g) {
            return Garbage(Vec::<u8>::arbitrary(g));
        }
        let items: Vec<StreamItem> = Vec::arbitrary(g);
        let mut bytes = encode_stream(&items).to_vec();
        for (at, value) in Vec::<(usize, u8)>::arbitrary(g) {
            if !bytes.is_empty() {
                let len = bytes.len();
                bytes[at % len] = value;
            }
        }
        Garbage(bytes)
    }
}

#[test]
fn garbage_never_panics_a_frame_decoder() {
    fn prop(garbage: Garbage, cuts: Vec<usize>, small_max: bool) -> bool {
        let max = if small_max {
            HEADER_LEN as u32 + 64
        } else {
            u32::MAX
        };
        let results = decode_chunked(&garbage.0, &cuts, FrameDecoder::new(max));
        results.iter().all(|r| match r {
            Ok(f) => f.encoded_len() as u64 <= u64::from(max),
            Err(_) => true,
        })
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Garbage, Vec<usize>, bool) -> bool);
}

#[test]
fn garbage_never_panics_a_reply_decoder() {
    fn prop(garbage: Garbage, small_max: bool) -> bool {
        let max = if small_max { 64 } else { u32::MAX };
        let mut decoder = ReplyDecoder::new(max);
        let mut src = BytesMut::from(&garbage.0[..]);
        loop {
            let before = src.len();
            match decoder.decode(&mut src) {
                Ok(Some(p)) if p.len() as u64 <= u64::from(max) && src.len() < before => {}
                Ok(Some(_)) => return false,
                Ok(None) | Err(_) => return true,
            }
        }
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Garbage, bool) -> bool);
}

#[test]
fn garbage_never_panics_the_register_line_decoders() {
    fn prop(garbage: Garbage, json_like: bool) -> bool {
        let mut bytes = garbage.0;
        if json_like {
            // Bias towards the shapes the classifiers look into.
            let mut framed = b"{\"event\":".to_vec();
            framed.extend_from_slice(&bytes);
            framed.push(b'\n');
            bytes = framed;
        }
        let mut decoder = LineDecoder::new(64);
        let mut src = BytesMut::from(&bytes[..]);
        loop {
            match decoder.decode(&mut src) {
                Ok(Some(line)) => {
                    if line.len() >= 64 {
                        return false;
                    }
                    let _ = classify_request(&line);
                    let _ = decode_from_register(&line);
                }
                Ok(None) | Err(_) => return true,
            }
        }
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Garbage, bool) -> bool);
}

#[test]
fn client_id_format_then_parse_round_trips() {
    fn prop(ip: u32, port: u16, connection_id: u32) -> bool {
        let id = ClientId {
            local_ip: Ipv4Addr::from(ip),
            local_port: port,
            connection_id,
        };
        let text = id.to_string();
        text.len() == 20
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            && text.as_bytes() == id.to_hex()
            && text.parse::<ClientId>() == Ok(id)
            && text.to_uppercase().parse::<ClientId>() == Ok(id)
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(u32, u16, u32) -> bool);
}

#[test]
fn register_lines_survive_any_chunking() {
    fn prop(lines: Vec<String>, cuts: Vec<usize>) -> bool {
        // Lines without terminators, each sent with "\n" or "\r\n".
        let lines: Vec<String> = lines
            .into_iter()
            .map(|l| l.replace(['\r', '\n'], " "))
            .collect();
        let mut stream = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
        points.push(stream.len());
        points.sort_unstable();
        let mut decoder = LineDecoder::default();
        let (mut src, mut got, mut fed) = (BytesMut::new(), Vec::new(), 0);
        for point in points {
            src.extend_from_slice(&stream[fed..point]);
            fed = point;
            while let Ok(Some(line)) = decoder.decode(&mut src) {
                got.push(String::from_utf8(line.to_vec()).unwrap());
            }
        }
        got == lines && src.is_empty()
    }
    QuickCheck::new()
        .tests(CASES)
        .quickcheck(prop as fn(Vec<String>, Vec<usize>) -> bool);
}
