//! Replies on a gateway link are never silently dropped (the peer matches them to its
//! requests by order): past the link's output bound, or over `reply_size_max`, the link
//! is closed instead. Driven through the real [`GatewayCore`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use gatewayworker::gateway::{
    Action, CloseReason, GatewayConfig, GatewayCore, LinkId, PublicProtocol, Target,
};
use gatewayworker::protocol::frame::{Command, Frame, Header};

fn frame(cmd: Command, connection_id: u32, ext: &[u8], body: &[u8]) -> Bytes {
    let mut header = Header::new(cmd);
    header.connection_id = connection_id;
    header.flag = 1;
    let f = Frame::new(
        header,
        Bytes::copy_from_slice(ext),
        Bytes::copy_from_slice(body),
    );
    let mut out = BytesMut::new();
    f.encode(&mut out);
    out.freeze()
}

fn config(link_pending_max: usize, reply_size_max: usize) -> GatewayConfig {
    let mut c = GatewayConfig::new("127.0.0.1".parse().unwrap(), 2900, 8282);
    c.protocol = PublicProtocol::Text;
    c.link_pending_max = link_pending_max;
    c.reply_size_max = reply_size_max;
    c
}

/// A worker link, registered, whose output is never reported flushed (a peer that does
/// not read).
fn worker_link(core: &mut GatewayCore) -> LinkId {
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let link = core.handle_link_connected(Duration::ZERO, peer).unwrap();
    let hello = frame(
        Command::WorkerConnect,
        0,
        b"",
        br#"{"worker_key":"w:0","secret_key":""}"#,
    );
    core.handle_link_bytes(Duration::ZERO, link, &hello);
    link
}

fn drain(core: &mut GatewayCore) -> Vec<Action> {
    std::iter::from_fn(|| core.poll_action()).collect()
}

/// What reached `link`: `Some(bytes)` per transmit, `None` for its close.
fn link_output(actions: &[Action], link: LinkId) -> Vec<Option<Bytes>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Transmit {
                to: Target::Link(l),
                bytes,
            } if *l == link => Some(Some(bytes.clone())),
            Action::CloseLink { id, reason, .. } if *id == link => {
                assert_eq!(*reason, CloseReason::ReplyOverflow);
                Some(None)
            }
            _ => None,
        })
        .collect()
}

/// A peer sends 60 queries and reads nothing: the gateway answers each in order until the
/// link's output passes `link_pending_max` plus one largest reply, then closes the link;
/// no reply is skipped while later ones still go out. Before, replies past the bound were
/// dropped with the link left open, so the next reply answered the wrong query.
#[test]
fn a_reply_past_the_output_bound_closes_the_link_instead_of_being_dropped() {
    let mut core = GatewayCore::new(config(300, 50), Duration::ZERO);
    let link = worker_link(&mut core);
    drain(&mut core);
    let mut queries = BytesMut::new();
    for _ in 0..60 {
        queries.extend_from_slice(&frame(Command::GetClientCountByGroup, 0, b"", b""));
    }
    core.handle_link_bytes(Duration::ZERO, link, &queries);
    let out = link_output(&drain(&mut core), link);
    let replies = out.iter().take_while(|o| o.is_some()).count();
    // Each reply is 8 bytes ("i:0;" and its length): 44 fit in 300 + 54 bytes.
    assert_eq!(replies, 44, "{out:?}");
    assert_eq!(out.len(), replies + 1, "the link closes, then nothing more");
    assert!(out[replies].is_none());
    for reply in out.iter().flatten() {
        assert_eq!(reply.as_ref(), b"\0\0\0\x04i:0;");
    }
    // Events are not matched by order: at the bound they are dropped and counted, as the
    // original does; the closing link takes nothing more either.
    assert!(core.stats().link_frames_dropped >= 1);
}

/// A legitimate big reply behind a full window of events still goes out (the headroom of
/// one largest reply), and does not close the link.
#[test]
fn a_big_reply_behind_a_full_event_window_still_goes_out() {
    let mut core = GatewayCore::new(config(100, 1000), Duration::ZERO);
    let link = worker_link(&mut core);
    drain(&mut core);
    // Clients connecting fill the link's window with ON_CONNECT events (each 28 bytes+).
    let mut ids = Vec::new();
    for port in 0..6u16 {
        let peer: SocketAddr = format!("10.0.0.9:{}", 5000 + port).parse().unwrap();
        ids.push(core.handle_client_connected(Duration::ZERO, peer).unwrap());
    }
    drain(&mut core);
    let session = vec![b'a'; 600];
    let set = frame(Command::SetSession, ids[0].0, &session, b"");
    let get = frame(Command::GetSessionByClientId, ids[0].0, b"", b"");
    core.handle_link_bytes(Duration::ZERO, link, &[set, get].concat());
    let out = link_output(&drain(&mut core), link);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].as_ref().unwrap().len(), 4 + 600);
}

/// A reply whose payload exceeds `reply_size_max` (64 MiB by default, the bound the worker
/// and the GatewayClient accept) is never sent: the link closes and the peer fails its
/// pending calls.
#[test]
fn a_reply_over_reply_size_max_closes_the_link() {
    let mut core = GatewayCore::new(config(10_000, 100), Duration::ZERO);
    let link = worker_link(&mut core);
    let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
    let id = core.handle_client_connected(Duration::ZERO, peer).unwrap();
    drain(&mut core);
    let session = vec![b'a'; 101];
    let set = frame(Command::SetSession, id.0, &session, b"");
    let get = frame(Command::GetSessionByClientId, id.0, b"", b"");
    let count = frame(Command::GetClientCountByGroup, 0, b"", b"");
    core.handle_link_bytes(Duration::ZERO, link, &[set, get, count].concat());
    let out = link_output(&drain(&mut core), link);
    assert_eq!(out, vec![None], "no reply, the link closes");
}
