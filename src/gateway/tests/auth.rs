//! Link authentication: WORKER_CONNECT, GATEWAY_CLIENT_CONNECT and the secret key.

use bytes::Bytes;

use super::*;
use crate::protocol::frame::Command;

#[test]
fn worker_connect_without_secret_key_is_rejected_even_with_no_secret_quirk_9() {
    let mut gw = Gw::new(config());
    let l = gw.link("10.0.0.9:40000");
    let actions = gw.send(l, &frame(200, 0, S, b"", b"{\"worker_key\":\"BW:0\"}"));
    assert_eq!(link_closes(&actions), vec![l]);
    assert!(gw.core.snapshot().workers.is_empty());
    // An API caller needs no handshake when no secret is configured.
    let api = gw.link("10.0.0.10:40000");
    assert_eq!(
        gw.query(api, Command::GetClientCountByGroup, 0, b""),
        b"i:0;"
    );
}

#[test]
fn with_a_secret_commands_before_auth_close_the_link_and_a_wrong_key_too() {
    let mut c = config();
    c.secret_key = Bytes::from_static(b"s3");
    let mut gw = Gw::new(c);
    let l = gw.link("10.0.0.10:40000");
    assert_eq!(
        link_closes(&gw.cmd(l, Command::GetClientCountByGroup, 0, S, b"", b"")),
        vec![l]
    );
    let l = gw.link("10.0.0.10:40001");
    assert_eq!(
        link_closes(&gw.cmd(
            l,
            Command::GatewayClientConnect,
            0,
            S,
            b"",
            b"{\"secret_key\":1}"
        )),
        vec![l]
    );
    let l = gw.link("10.0.0.10:40002");
    assert!(gw
        .cmd(
            l,
            Command::GatewayClientConnect,
            0,
            S,
            b"",
            b"{\"secret_key\":\"s3\"}"
        )
        .is_empty());
    assert_eq!(gw.query(l, Command::GetClientCountByGroup, 0, b""), b"i:0;");
    assert!(
        gw.core.snapshot().workers.is_empty(),
        "API links never route"
    );
    let w = gw.worker("10.0.0.9:40000", "BW:0");
    assert_eq!(gw.core.snapshot().workers[0].link, w);
    // Bytes from a closed link are ignored.
    assert_eq!(gw.core.link_count(), 2);
}
