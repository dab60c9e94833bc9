//! Messages from workers to clients: single sends, raw and binary flags, kicks, broadcasts.

use bytes::Bytes;

use super::*;
use crate::protocol::frame::{Command, FLAG_BINARY, FLAG_NOT_CALL_ENCODE};

#[test]
fn send_to_one_encodes_for_the_protocol_and_ignores_unknown_ids() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", b"hello");
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from(ws_text(b"hello"))]
    );
    assert!(gw.cmd(w, Command::SendToOne, 999, S, b"", b"x").is_empty());
}

#[test]
fn raw_flag_writes_the_body_unencoded_quirk_13() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(
        w,
        Command::SendToOne,
        a.0,
        S | FLAG_NOT_CALL_ENCODE,
        b"",
        b"\x81\x01x",
    );
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(b"\x81\x01x")]
    );
}

#[test]
fn flag_binary_sends_a_binary_websocket_frame() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::SendToOne, a.0, S | FLAG_BINARY, b"", &[1, 2]);
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(&[0x82, 2, 1, 2])]
    );
}

#[test]
fn non_string_bodies_are_converted_never_stopping_the_gateway() {
    use crate::protocol::php::{PhpArray, PhpKey, PhpValue};
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let mut array = PhpArray::new();
    array.insert(PhpKey::from_bytes(b"k"), PhpValue::str("v/é"));
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (ser(&PhpValue::Array(array)), b"{\"k\":\"v\\/\xc3\xa9\"}"),
        (b"N;".to_vec(), b"null"),
        // The original's websocket encoder throws on these and stops the whole process;
        // we send their PHP string form (spec 1.2).
        (b"i:42;".to_vec(), b"42"),
        (b"d:0.5;".to_vec(), b"0.5"),
        (b"b:1;".to_vec(), b"1"),
        (b"b:0;".to_vec(), b""),
        (b"not serialized".to_vec(), b""),
        (b"s:3:\"abc\";".to_vec(), b"abc"),
    ];
    for (body, expected) in cases {
        let actions = gw.cmd(w, Command::SendToOne, a.0, 0, b"", &body);
        assert_eq!(
            client_bytes(&actions, a),
            vec![Bytes::from(ws_text(expected))],
            "body {body:?}"
        );
    }
    assert_eq!(gw.core.stats().client_messages_unencodable, 0);
    // An array that json_encode refuses (invalid UTF-8) is dropped and counted.
    let mut bad = PhpArray::new();
    bad.insert(PhpKey::Int(0), PhpValue::Str(Bytes::from_static(b"\xff")));
    let actions = gw.cmd(
        w,
        Command::SendToOne,
        a.0,
        0,
        b"",
        &ser(&PhpValue::Array(bad)),
    );
    assert!(client_bytes(&actions, a).is_empty());
    assert_eq!(gw.core.stats().client_messages_unencodable, 1);
}

#[test]
fn text_protocol_appends_newline_and_strips_trailing_cr_quirk_22() {
    let mut c = config();
    c.protocol = PublicProtocol::Text;
    let mut gw = Gw::new(c);
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    let a = gw.client("203.0.113.7:5000");
    let frames = link_frames(&gw.client_sends(a, b"line\r\r\n"), w);
    assert_eq!(&frames[0].body[..], b"line");
    let actions = gw.cmd(w, Command::SendToOne, a.0, S, b"", b"out");
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from_static(b"out\n")]
    );
}

#[test]
fn kick_with_null_body_closes_silently_and_with_empty_string_sends_an_empty_frame_quirk_12() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    let actions = gw.cmd(w, Command::Kick, a.0, 0, b"", b"N;");
    assert!(client_bytes(&actions, a).is_empty());
    assert_eq!(closes(&actions), vec![(a, true, CloseReason::Kicked)]);
    assert_eq!(link_frames(&actions, w)[0].cmd, 4, "ON_CLOSE follows");
    let actions = gw.cmd(w, Command::Kick, b.0, S, b"", b"");
    assert_eq!(
        client_bytes(&actions, b),
        vec![Bytes::from_static(&[0x81, 0x00])]
    );
    assert_eq!(closes(&actions), vec![(b, true, CloseReason::Kicked)]);
}

#[test]
fn kick_message_is_always_protocol_encoded_even_with_the_raw_flag_quirk_13() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::Kick, a.0, S | FLAG_NOT_CALL_ENCODE, b"", b"bye");
    assert_eq!(
        client_bytes(&actions, a),
        vec![Bytes::from(ws_text(b"bye"))]
    );
}

#[test]
fn destroy_closes_at_once_and_frees_the_id_only_after_the_driver_reports() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let actions = gw.cmd(w, Command::Destroy, a.0, S, b"", b"");
    assert_eq!(closes(&actions), vec![(a, false, CloseReason::Destroyed)]);
    assert_eq!(link_frames(&actions, w)[0].cmd, 4);
    assert_eq!(gw.query(w, Command::IsOnline, a.0, b""), b"i:0;");
    // The id stays reserved while the driver still holds the socket.
    gw.core.set_connection_id_recorder(a.0 - 1);
    let b = gw.client("203.0.113.8:5000");
    assert_ne!(b, a);
    gw.core.handle_client_closed(gw.now, a);
    gw.core.set_connection_id_recorder(a.0 - 1);
    let c = gw.client("203.0.113.9:5000");
    assert_eq!(c, a);
}

#[test]
fn a_broadcast_is_encoded_once_and_shared_quirk_14() {
    let (mut gw, w) = Gw::with_worker();
    let ids: Vec<ConnectionId> = (0..3)
        .map(|i| gw.client(&format!("203.0.113.{i}:5000")))
        .collect();
    let actions = gw.cmd(w, Command::SendToAll, 0, S, b"", b"all");
    let writes: Vec<Bytes> = ids
        .iter()
        .flat_map(|id| client_bytes(&actions, *id))
        .collect();
    assert_eq!(writes.len(), 3);
    assert!(
        writes.iter().all(|b| b.as_ptr() == writes[0].as_ptr()),
        "same buffer"
    );
}

#[test]
fn send_to_all_excludes_by_key_and_a_list_excludes_nobody_quirk_3() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    let who = |actions: &[Action]| -> Vec<u32> {
        actions
            .iter()
            .filter_map(|x| match x {
                Action::Transmit {
                    to: Target::Client(c),
                    ..
                } => Some(c.0),
                _ => None,
            })
            .collect()
    };
    let ex = format!("{{\"exclude\":{{\"{}\":{}}}}}", a.0, a.0);
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, ex.as_bytes(), b"m")),
        vec![b.0]
    );
    let list = format!("{{\"exclude\":[{}]}}", a.0);
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, list.as_bytes(), b"m")),
        vec![a.0, b.0]
    );
    // `connections` uses values, in JSON order; unknown ids are skipped.
    let conns = format!(
        "{{\"connections\":{{\"x\":{},\"y\":999,\"z\":\"{}\"}}}}",
        b.0, a.0
    );
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, conns.as_bytes(), b"m")),
        vec![b.0, a.0]
    );
    // Decision: invalid JSON decodes to null and reaches everybody, like the original.
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, b"{bad", b"m")),
        vec![a.0, b.0]
    );
    // `"connections": null` is not set for PHP's isset(): everybody.
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, b"{\"connections\":null}", b"m")),
        vec![a.0, b.0]
    );
    // An exclude entry whose value is null is not set either.
    let null_ex = format!("{{\"exclude\":{{\"{}\":null}}}}", a.0);
    assert_eq!(
        who(&gw.cmd(w, Command::SendToAll, 0, S, null_ex.as_bytes(), b"m")),
        vec![a.0, b.0]
    );
}

#[test]
fn send_to_uid_delivers_duplicates_and_finds_numeric_uids_quirks_2_and_4() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"1002", b"");
    let actions = gw.cmd(
        w,
        Command::SendToUid,
        0,
        S,
        b"[1002,\"1002\",\"nobody\"]",
        b"m",
    );
    assert_eq!(client_bytes(&actions, a).len(), 2);
    // Invalid JSON: nothing (quirk 24).
    assert!(gw
        .cmd(w, Command::SendToUid, 0, S, b"nope", b"m")
        .is_empty());
}

#[test]
fn send_to_group_delivers_overlaps_twice_and_excludes_by_key() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g1", b"");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g2", b"");
    gw.cmd(w, Command::JoinGroup, b.0, S, b"g1", b"");
    let actions = gw.cmd(
        w,
        Command::SendToGroup,
        0,
        S,
        b"{\"group\":[\"g1\",\"g2\"],\"exclude\":null}",
        b"m",
    );
    let order: Vec<u32> = actions
        .iter()
        .filter_map(|x| match x {
            Action::Transmit {
                to: Target::Client(c),
                ..
            } => Some(c.0),
            _ => None,
        })
        .collect();
    assert_eq!(order, vec![a.0, b.0, a.0]);
    let ex = format!("{{\"group\":[\"g1\"],\"exclude\":{{\"{}\":{}}}}}", a.0, a.0);
    let actions = gw.cmd(w, Command::SendToGroup, 0, S, ex.as_bytes(), b"m");
    assert_eq!(
        (
            client_bytes(&actions, a).len(),
            client_bytes(&actions, b).len()
        ),
        (0, 1)
    );
}

#[test]
fn long_lived_strings_do_not_share_the_read_buffer() {
    let read = Bytes::from(vec![b'x'; 4096]);
    let slice = read.slice(10..12);
    let kept = super::commands::stored(&slice);
    assert!(
        slice.try_into_mut().is_err(),
        "a slice pins the read buffer"
    );
    assert!(kept.try_into_mut().is_ok(), "a stored copy owns its bytes");
    drop(read);
}
