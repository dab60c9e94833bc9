//! uid binding and groups: PHP-empty names, rebinding, ungrouping, cleanup on close.

use bytes::Bytes;

use super::*;
use crate::protocol::frame::Command;

#[test]
fn bind_uid_rejects_php_empty_uids_and_rebinding_moves_quirk_1() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"0", b"");
    gw.cmd(w, Command::BindUid, a.0, S, b"", b"");
    assert_eq!(gw.core.snapshot().clients[0].uid, None);
    gw.cmd(w, Command::BindUid, a.0, S, b"u1", b"");
    gw.cmd(w, Command::BindUid, a.0, S, b"u2", b"");
    assert_eq!(gw.query(w, Command::GetClientIdByUid, 0, b"u1"), b"a:0:{}");
    assert_eq!(
        gw.query(w, Command::GetClientIdByUid, 0, b"u2"),
        format!("a:1:{{i:0;i:{};}}", a.0).as_bytes()
    );
}

#[test]
fn unbind_uid_ignores_the_uid_argument_quirk_5() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"u1", b"");
    gw.cmd(w, Command::UnbindUid, a.0, S, b"another", b"");
    assert_eq!(gw.core.snapshot().clients[0].uid, None);
    assert!(gw.core.snapshot().uid_index.is_empty());
}

#[test]
fn groups_are_null_until_joined_and_empty_after_leaving_quirk_8() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let sel = br#"{"fields":["groups","nope"],"where":[]}"#;
    assert_eq!(
        gw.query(w, Command::Select, 0, sel),
        format!("a:1:{{i:{};a:2:{{s:6:\"groups\";N;s:4:\"nope\";N;}}}}", a.0).as_bytes()
    );
    gw.cmd(w, Command::JoinGroup, a.0, S, b"0", b"");
    assert_eq!(
        gw.core.snapshot().clients[0].groups,
        None,
        "group \"0\" is PHP-empty"
    );
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g", b"");
    gw.cmd(w, Command::LeaveGroup, a.0, S, b"g", b"");
    assert_eq!(
        gw.query(w, Command::Select, 0, sel),
        format!(
            "a:1:{{i:{};a:2:{{s:6:\"groups\";a:0:{{}}s:4:\"nope\";N;}}}}",
            a.0
        )
        .as_bytes()
    );
    assert!(gw.core.snapshot().group_index.is_empty());
}

#[test]
fn ungroup_removes_the_group_from_every_member() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    let b = gw.client("203.0.113.8:5000");
    for id in [a, b] {
        gw.cmd(w, Command::JoinGroup, id.0, S, b"7", b"");
        gw.cmd(w, Command::JoinGroup, id.0, S, b"x", b"");
    }
    gw.cmd(w, Command::Ungroup, 0, S, b"7", b"");
    let snap = gw.core.snapshot();
    assert_eq!(snap.group_index.len(), 1);
    assert_eq!(snap.clients[1].groups, Some(vec![Bytes::from_static(b"x")]));
    assert_eq!(
        gw.query(w, Command::GetGroupIdList, 0, b""),
        b"a:1:{i:0;s:1:\"x\";}"
    );
}

#[test]
fn closing_a_client_cleans_every_index() {
    let (mut gw, w) = Gw::with_worker();
    let a = gw.client("203.0.113.7:5000");
    gw.cmd(w, Command::BindUid, a.0, S, b"u", b"");
    gw.cmd(w, Command::JoinGroup, a.0, S, b"g", b"");
    gw.core.handle_client_closed(gw.now, a);
    gw.drain();
    let snap = gw.core.snapshot();
    assert!(snap.uid_index.is_empty() && snap.group_index.is_empty() && snap.clients.is_empty());
}
