//! Queries and their replies: orders, PHP key normalisation, sessions, select, batches.

use bytes::Bytes;

use super::*;
use crate::protocol::frame::Command;

#[test]
fn queries_use_connection_order_and_php_key_normalisation_quirk_2() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    gw.cmd(w, Command::SetSession, b.0, S, b"a:0:{}", b"");
    assert_eq!(
        gw.query(w, Command::GetAllClientSessions, 0, b""),
        format!("a:2:{{i:{};s:0:\"\";i:{};s:6:\"a:0:{{}}\";}}", a.0, b.0).as_bytes()
    );
    gw.cmd(w, Command::JoinGroup, b.0, S, b"123", b"");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"0123", b"");
    assert_eq!(
        gw.query(w, Command::GetGroupIdList, 0, b""),
        b"a:2:{i:0;i:123;i:1;s:4:\"0123\";}"
    );
    assert_eq!(
        gw.query(
            w,
            Command::BatchGetClientCountByGroup,
            0,
            b"[123,\"0123\",\"no\"]"
        ),
        b"a:3:{i:123;i:1;s:4:\"0123\";i:1;s:2:\"no\";i:0;}"
    );
    assert_eq!(gw.query(w, Command::IsOnline, a.0, b""), b"i:1;");
}

#[test]
fn count_by_group_with_empty_group_counts_all_clients_quirk_7() {
    let (mut gw, w) = Gw::with_worker();
    gw.client("203.0.113.7:5000");
    gw.client("203.0.113.8:5000");
    assert_eq!(gw.query(w, Command::GetClientCountByGroup, 0, b""), b"i:2;");
    // "0" is not "": it names a group (which can never exist).
    assert_eq!(
        gw.query(w, Command::GetClientCountByGroup, 0, b"0"),
        b"i:0;"
    );
}

#[test]
fn get_session_is_null_unknown_empty_array_when_falsy_else_verbatim_quirk_7() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    assert_eq!(gw.query(w, Command::GetSessionByClientId, 999, b""), b"N;");
    assert_eq!(
        gw.query(w, Command::GetSessionByClientId, a.0, b""),
        b"a:0:{}"
    );
    // Decision: a stored "0" is PHP-falsy, so it reads back as a:0:{} like the original.
    gw.cmd(w, Command::SetSession, a.0, S, b"0", b"");
    assert_eq!(
        gw.query(w, Command::GetSessionByClientId, a.0, b""),
        b"a:0:{}"
    );
    gw.cmd(w, Command::SetSession, a.0, S, b"junk", b"");
    assert_eq!(
        gw.query(w, Command::GetSessionByClientId, a.0, b""),
        b"junk"
    );
}

#[test]
fn update_session_stores_verbatim_when_empty_merges_otherwise_and_ignores_non_arrays_quirk_6() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(
        w,
        Command::UpdateSession,
        a.0,
        S,
        b"a:1:{s:1:\"a\";i:1;}",
        b"",
    );
    gw.cmd(
        w,
        Command::UpdateSession,
        a.0,
        S,
        b"a:1:{s:1:\"b\";i:2;}",
        b"",
    );
    assert_eq!(
        &gw.core.snapshot().clients[0].session[..],
        b"a:2:{s:1:\"a\";i:1;s:1:\"b\";i:2;}"
    );
    // A non-array patch: the original throws (nothing stored); we ignore it.
    gw.cmd(w, Command::UpdateSession, a.0, S, b"i:5;", b"");
    assert_eq!(
        &gw.core.snapshot().clients[0].session[..],
        b"a:2:{s:1:\"a\";i:1;s:1:\"b\";i:2;}"
    );
    gw.cmd(w, Command::SetSession, a.0, S, b"s:1:\"x\";", b"");
    gw.cmd(w, Command::UpdateSession, a.0, S, b"a:0:{}", b"");
    assert_eq!(&gw.core.snapshot().clients[0].session[..], b"s:1:\"x\";");
}

#[test]
fn select_unions_conditions_without_duplicates() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    gw.cmd(w, Command::JoinGroup, b.0, S, b"g", b"");
    gw.cmd(w, Command::BindUid, a.0, S, b"u", b"");
    gw.cmd(w, Command::BindUid, b.0, S, b"u", b"");
    let q = format!(
        r#"{{"fields":["uid"],"where":{{"groups":["g"],"uid":["u"],"connection_id":[{}],"other":["x"]}}}}"#,
        b.0
    );
    let reply = gw.query(w, Command::Select, 0, q.as_bytes());
    let expected = format!(
        "a:2:{{i:{};a:1:{{s:3:\"uid\";s:1:\"u\";}}i:{};a:1:{{s:3:\"uid\";s:1:\"u\";}}}}",
        b.0, a.0
    );
    assert_eq!(String::from_utf8(reply).unwrap(), expected);
    assert_eq!(gw.query(w, Command::Select, 0, b"nope"), b"a:0:{}");
    assert_eq!(gw.query(w, Command::Select, 0, b"{}"), b"a:0:{}");
}

#[test]
fn batch_queries_with_invalid_json_reply_an_empty_array_quirk_24() {
    let (mut gw, w) = Gw::with_worker();
    assert_eq!(
        gw.query(w, Command::BatchGetClientIdByUid, 0, b"[oops"),
        b"a:0:{}"
    );
    assert_eq!(
        gw.query(w, Command::BatchGetClientCountByGroup, 0, b"7"),
        b"a:0:{}"
    );
}

#[test]
fn unknown_commands_and_ping_are_ignored_and_the_link_kept() {
    let (mut gw, w) = Gw::with_worker();
    assert!(gw.cmd(w, Command::Ping, 0, S, b"", b"").is_empty());
    assert!(gw.send(w, &frame(99, 0, S, b"", b"")).is_empty());
    assert_eq!(gw.core.stats().unknown_commands, 2);
    assert_eq!(gw.query(w, Command::GetClientCountByGroup, 0, b""), b"i:0;");
}

#[test]
fn pipelined_commands_get_one_reply_per_query_in_order_quirk_23() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let mut wire = frame(Command::BindUid as u8, a.0, S, b"u", b"");
    wire.extend(frame(Command::IsOnline as u8, a.0, S, b"", b""));
    wire.extend(frame(Command::SendToOne as u8, a.0, S, b"", b"x"));
    wire.extend(frame(Command::GetClientIdByUid as u8, 0, S, b"u", b""));
    wire.extend(frame(Command::IsOnline as u8, 999, S, b"", b""));
    let replies = link_bytes(&gw.send(w, &wire), w);
    let expected_list = format!("a:1:{{i:0;i:{};}}", a.0);
    let expected: Vec<Bytes> = [&b"i:1;"[..], expected_list.as_bytes(), b"i:0;"]
        .iter()
        .map(|p| wire::encode_reply(p))
        .collect();
    assert_eq!(replies, expected);
}
