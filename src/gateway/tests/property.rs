//! Properties over random workloads, splits and garbage; the membership model.

use std::time::Duration;

use bytes::Bytes;
use quickcheck::{Arbitrary, Gen, QuickCheck};

use super::*;
use crate::protocol::frame::{Command, Frame, FLAG_BINARY};

/// One step of a random workload against one gateway.
#[derive(Debug, Clone)]
enum Op {
    Connect,
    Close(u8),
    Message(u8),
    Cmd(u8, u8, u8),
    WorkerUp(u8),
    WorkerDown(u8),
    Tick,
}

impl Arbitrary for Op {
    fn arbitrary(g: &mut Gen) -> Op {
        match u8::arbitrary(g) % 10 {
            0 | 1 => Op::Connect,
            2 => Op::Close(u8::arbitrary(g)),
            3 => Op::Message(u8::arbitrary(g)),
            4..=6 => Op::Cmd(u8::arbitrary(g), u8::arbitrary(g), u8::arbitrary(g)),
            7 => Op::WorkerUp(u8::arbitrary(g) % 3),
            8 => Op::WorkerDown(u8::arbitrary(g) % 3),
            _ => Op::Tick,
        }
    }
}

/// Random commands with random targets and names never panic, keep every index
/// consistent with the clients (checked after every input by `Gw::drain`), and the core
/// lists exactly the clients a driver following its actions believes connected.
#[test]
fn random_workloads_keep_the_indexes_consistent() {
    fn prop(ops: Vec<Op>) -> bool {
        let mut c = config();
        c.ping_interval = Duration::from_secs(2);
        c.ping_not_response_limit = 1;
        c.ping_data = Bytes::from_static(b"p");
        let mut gw = Gw::new(c);
        let api = gw.link("10.0.0.50:1");
        let mut workers: Vec<Option<LinkId>> = vec![None; 3];
        let mut clients: Vec<ConnectionId> = Vec::new();
        let names: [&[u8]; 4] = [b"a", b"7", b"0", b""];
        let cmds = [
            5u8, 6, 7, 8, 9, 12, 13, 14, 20, 21, 22, 27, 204, 10, 16, 23, 25, 26, 28,
        ];
        for op in ops {
            match op {
                Op::Connect => {
                    if let Ok(id) = gw
                        .core
                        .handle_client_connected(gw.now, "203.0.113.1:1".parse().unwrap())
                    {
                        clients.push(id);
                        gw.core.handle_client_bytes(gw.now, id, HANDSHAKE);
                    }
                }
                Op::Close(i) if !clients.is_empty() => {
                    let id = clients.remove(i as usize % clients.len());
                    gw.core.handle_client_closed(gw.now, id);
                }
                Op::Message(i) if !clients.is_empty() => {
                    let id = clients[i as usize % clients.len()];
                    gw.core
                        .handle_client_bytes(gw.now, id, &ws_client_frame(1, b"m"));
                }
                Op::Cmd(c, t, n) => {
                    let cmd = cmds[c as usize % cmds.len()];
                    let cid = clients
                        .get(t as usize % clients.len().max(1))
                        .map_or(0, |c| c.0);
                    let name = names[n as usize % names.len()];
                    let ext: Vec<u8> = match cmd {
                        14 | 16 | 28 => {
                            format!("[\"{}\"]", String::from_utf8_lossy(name)).into_bytes()
                        }
                        22 => format!(
                            "{{\"group\":[\"{}\"],\"exclude\":{{\"{cid}\":1}}}}",
                            String::from_utf8_lossy(name)
                        )
                        .into_bytes(),
                        25 => {
                            br#"{"fields":["uid","groups","session"],"where":{"groups":["a","7"]}}"#
                                .to_vec()
                        }
                        9 | 204 => b"a:1:{s:1:\"k\";i:1;}".to_vec(),
                        _ => name.to_vec(),
                    };
                    gw.core
                        .handle_link_bytes(gw.now, api, &frame(cmd, cid, S, &ext, b"m"));
                }
                Op::WorkerUp(i) => {
                    let l = gw
                        .core
                        .handle_link_connected(
                            gw.now,
                            format!("10.0.0.{}:1", 20 + i).parse().unwrap(),
                        )
                        .unwrap();
                    gw.core.handle_link_bytes(
                        gw.now,
                        l,
                        &frame(
                            200,
                            0,
                            S,
                            b"",
                            b"{\"worker_key\":\"BW:0\",\"secret_key\":\"\"}",
                        ),
                    );
                    workers[i as usize] = Some(l);
                }
                Op::WorkerDown(i) => {
                    if let Some(l) = workers[i as usize].take() {
                        gw.core.handle_link_closed(gw.now, l);
                    }
                }
                Op::Tick => {
                    gw.now += Duration::from_secs(1);
                    gw.core.handle_timeout(gw.now);
                }
                _ => {}
            }
            for a in gw.drain() {
                if let Action::CloseClient { id, .. } = a {
                    clients.retain(|c| *c != id);
                    gw.core.handle_client_closed(gw.now, id);
                }
            }
            let snap = gw.core.snapshot();
            if snap.clients.len() != clients.len() {
                return false;
            }
        }
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Op>) -> bool);
}

#[test]
fn frame_encoder_roundtrips_through_the_decoder() {
    let f = Frame {
        header: crate::protocol::frame::Header {
            cmd: Command::OnMessage,
            local_ip: "10.0.0.5".parse().unwrap(),
            local_port: 2900,
            client_ip: "1.2.3.4".parse().unwrap(),
            client_port: 9,
            connection_id: 77,
            flag: 1,
            gateway_port: 8282,
        },
        ext_data: Bytes::from_static(b"ext"),
        body: Bytes::from_static(b"body"),
    };
    let seen = decode_all(&wire::encode_frame(&f));
    assert_eq!(
        (
            seen[0].cmd,
            seen[0].cid,
            &seen[0].ext[..],
            &seen[0].body[..]
        ),
        (3, 77, &b"ext"[..], &b"body"[..])
    );
}

/// Splits `wire` at the (sorted, deduplicated) cut points.
fn chunks(wire: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([wire.len()]) {
        out.push(wire[start..c].to_vec());
        start = c;
    }
    out
}

/// However a client's bytes are split into reads, the worker sees the same ON_MESSAGE
/// frames: one per message, in order, with FLAG_BINARY exactly on binary messages.
#[test]
fn client_reads_split_anywhere_give_the_same_messages() {
    fn prop(messages: Vec<(Vec<u8>, bool)>, cuts: Vec<usize>) -> bool {
        let (mut gw, w) = Gw::with_worker();
        let id = gw
            .core
            .handle_client_connected(gw.now, "203.0.113.7:5000".parse().unwrap())
            .unwrap();
        gw.drain();
        let mut wire = HANDSHAKE.to_vec();
        for (payload, binary) in &messages {
            let payload = if *binary {
                payload.clone()
            } else {
                String::from_utf8_lossy(payload).into_owned().into_bytes()
            };
            wire.extend(ws_client_frame(if *binary { 2 } else { 1 }, &payload));
        }
        let mut frames = Vec::new();
        for chunk in chunks(&wire, &cuts) {
            frames.extend(link_frames(&gw.client_sends(id, &chunk), w));
        }
        let messages: Vec<(Vec<u8>, u8)> = messages
            .iter()
            .map(|(p, binary)| {
                if *binary {
                    (p.clone(), S | FLAG_BINARY)
                } else {
                    (String::from_utf8_lossy(p).into_owned().into_bytes(), S)
                }
            })
            .collect();
        let seen: Vec<(Vec<u8>, u8)> = frames[1..]
            .iter()
            .map(|f| (f.body.to_vec(), f.flag))
            .collect();
        frames[0].cmd == Command::OnWebsocketConnect as u8 && seen == messages
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<(Vec<u8>, bool)>, Vec<usize>) -> bool);
}

/// However a link's bytes are split into reads, the replies are the same bytes as for
/// one read of everything.
#[test]
fn link_reads_split_anywhere_give_the_same_replies() {
    fn prop(queries: Vec<(u8, u8)>, cuts: Vec<usize>) -> bool {
        let run = |split: bool| {
            let (mut gw, _) = Gw::with_worker();
            let ids: Vec<u32> = (0..3)
                .map(|i| gw.client(&format!("203.0.113.{i}:5000")).0)
                .collect();
            let api = gw.link("10.0.0.50:1");
            let mut wire = Vec::new();
            for (kind, target) in &queries {
                let cid = ids[*target as usize % 3] + u32::from(*target % 2);
                let f = match kind % 5 {
                    0 => frame(11, cid, S, b"", b""),
                    1 => frame(12, cid, S, b"u", b""),
                    2 => frame(15, 0, S, b"u", b""),
                    3 => frame(20, cid, S, b"g", b""),
                    _ => frame(25, 0, S, br#"{"fields":["uid","groups"],"where":[]}"#, b""),
                };
                wire.extend(f);
            }
            let reads = if split {
                chunks(&wire, &cuts)
            } else {
                vec![wire]
            };
            let mut replies = Vec::new();
            for r in reads {
                for b in link_bytes(&gw.send(api, &r), api) {
                    replies.extend_from_slice(&b);
                }
            }
            replies
        };
        run(true) == run(false)
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<(u8, u8)>, Vec<usize>) -> bool);
}

/// Garbage from links and clients never panics the core; the indexes stay consistent
/// (checked in `drain`) and a link or client either survives or is closed cleanly.
#[test]
fn garbage_input_never_panics() {
    fn prop(link_reads: Vec<Vec<u8>>, client_reads: Vec<Vec<u8>>, valid_prefix: bool) -> bool {
        let mut c = config();
        c.package_size_max = 4096;
        let mut gw = Gw::new(c);
        gw.worker("10.0.0.9:40000", "BW:0");
        let a = gw.client("203.0.113.7:5000");
        let api = gw.link("10.0.0.50:1");
        if valid_prefix {
            // Start each garbage read with a plausible header so commands get parsed.
            for (i, read) in link_reads.iter().enumerate() {
                let cmd = [5u8, 6, 9, 12, 14, 16, 22, 25, 28, 204][i % 10];
                let mut f = frame(
                    cmd,
                    a.0,
                    (i % 4) as u8,
                    &read[..read.len() / 2],
                    &read[read.len() / 2..],
                );
                f.truncate(f.len().min(4096));
                gw.send(api, &f);
            }
        }
        for read in &link_reads {
            gw.send(api, read);
        }
        for read in &client_reads {
            gw.client_sends(a, read);
        }
        gw.core.check_invariants();
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<Vec<u8>>, Vec<Vec<u8>>, bool) -> bool);
}

/// One membership operation of the model-based property.
#[derive(Debug, Clone)]
enum MemberOp {
    Connect,
    Close(u8),
    Bind(u8, u8),
    Unbind(u8),
    Join(u8, u8),
    Leave(u8, u8),
    Ungroup(u8),
}

impl Arbitrary for MemberOp {
    fn arbitrary(g: &mut Gen) -> MemberOp {
        let (i, n) = (u8::arbitrary(g), u8::arbitrary(g));
        match u8::arbitrary(g) % 8 {
            0 | 1 => MemberOp::Connect,
            2 => MemberOp::Close(i),
            3 => MemberOp::Bind(i, n),
            4 => MemberOp::Unbind(i),
            5 => MemberOp::Join(i, n),
            6 => MemberOp::Leave(i, n),
            _ => MemberOp::Ungroup(n),
        }
    }
}

/// uid and group bookkeeping against a plain model of the original's PHP arrays:
/// clients in connect order, groups in creation order, members in join/bind order,
/// `groups` null until the first join.
#[test]
fn membership_matches_a_model_of_the_php_arrays() {
    type ModelClient = (u32, Option<Vec<u8>>, Option<Vec<Vec<u8>>>);
    type Model = (
        Vec<ModelClient>,
        Vec<(Vec<u8>, Vec<u32>)>,
        Vec<(Vec<u8>, Vec<u32>)>,
    );
    fn prop(ops: Vec<MemberOp>) -> bool {
        let names: [&[u8]; 5] = [b"a", b"b", b"7", b"0", b""];
        let (mut gw, w) = Gw::with_worker();
        let (mut clients, mut groups, mut uids): Model = (Vec::new(), Vec::new(), Vec::new());
        let remove = |list: &mut Vec<(Vec<u8>, Vec<u32>)>, name: &[u8], cid: u32| {
            if let Some(pos) = list.iter().position(|(n, _)| n == name) {
                list[pos].1.retain(|c| *c != cid);
                if list[pos].1.is_empty() {
                    list.remove(pos);
                }
            }
        };
        for op in ops {
            let pick = |i: u8, clients: &Vec<(u32, _, _)>| {
                (!clients.is_empty()).then(|| i as usize % clients.len())
            };
            match op {
                MemberOp::Connect => {
                    let id = gw.client("203.0.113.1:1");
                    clients.push((id.0, None, None));
                }
                MemberOp::Close(i) => {
                    let Some(k) = pick(i, &clients) else { continue };
                    let (cid, uid, gs) = clients.remove(k);
                    gw.core.handle_client_closed(gw.now, ConnectionId(cid));
                    gw.drain();
                    if let Some(uid) = uid {
                        remove(&mut uids, &uid, cid);
                    }
                    for g in gs.into_iter().flatten() {
                        remove(&mut groups, &g, cid);
                    }
                }
                MemberOp::Bind(i, n) | MemberOp::Join(i, n) | MemberOp::Leave(i, n) => {
                    let Some(k) = pick(i, &clients) else { continue };
                    let name = names[n as usize % names.len()].to_vec();
                    let cid = clients[k].0;
                    let cmd = match op {
                        MemberOp::Bind(..) => Command::BindUid,
                        MemberOp::Join(..) => Command::JoinGroup,
                        _ => Command::LeaveGroup,
                    };
                    gw.cmd(w, cmd, cid, S, &name, b"");
                    if is_empty_name(&name) {
                        continue;
                    }
                    match op {
                        MemberOp::Bind(..) => {
                            if let Some(old) = clients[k].1.take() {
                                remove(&mut uids, &old, cid);
                            }
                            match uids.iter_mut().find(|(n, _)| *n == name) {
                                Some((_, m)) => m.push(cid),
                                None => uids.push((name.clone(), vec![cid])),
                            }
                            clients[k].1 = Some(name);
                        }
                        MemberOp::Join(..) => {
                            let gs = clients[k].2.get_or_insert_with(Vec::new);
                            if !gs.contains(&name) {
                                gs.push(name.clone());
                                match groups.iter_mut().find(|(n, _)| *n == name) {
                                    Some((_, m)) => m.push(cid),
                                    None => groups.push((name, vec![cid])),
                                }
                            }
                        }
                        _ => {
                            if let Some(gs) = clients[k].2.as_mut() {
                                if gs.contains(&name) {
                                    gs.retain(|g| *g != name);
                                    remove(&mut groups, &name, cid);
                                }
                            }
                        }
                    }
                }
                MemberOp::Unbind(i) => {
                    let Some(k) = pick(i, &clients) else { continue };
                    let cid = clients[k].0;
                    gw.cmd(w, Command::UnbindUid, cid, S, b"x", b"");
                    if let Some(old) = clients[k].1.take() {
                        remove(&mut uids, &old, cid);
                    }
                }
                MemberOp::Ungroup(n) => {
                    let name = names[n as usize % names.len()].to_vec();
                    gw.cmd(w, Command::Ungroup, 0, S, &name, b"");
                    if let Some(pos) = groups.iter().position(|(g, _)| *g == name) {
                        let (_, members) = groups.remove(pos);
                        for c in clients.iter_mut().filter(|c| members.contains(&c.0)) {
                            if let Some(gs) = c.2.as_mut() {
                                gs.retain(|g| *g != name);
                            }
                        }
                    }
                }
            }
            let snap = gw.core.snapshot();
            let ours_clients: Vec<ModelClient> = snap
                .clients
                .iter()
                .map(|c| {
                    (
                        c.connection_id,
                        c.uid.as_ref().map(|u| u.to_vec()),
                        c.groups
                            .as_ref()
                            .map(|g| g.iter().map(|n| n.to_vec()).collect()),
                    )
                })
                .collect();
            let ours_groups: Vec<(Vec<u8>, Vec<u32>)> = snap
                .group_index
                .iter()
                .map(|(g, m)| (g.to_vec(), m.clone()))
                .collect();
            let ours_uids: Vec<(Vec<u8>, Vec<u32>)> = snap
                .uid_index
                .iter()
                .map(|(u, m)| (u.to_vec(), m.clone()))
                .collect();
            let mut model_uids = uids.clone();
            model_uids.sort();
            if ours_clients != clients || ours_groups != groups || ours_uids != model_uids {
                return false;
            }
        }
        true
    }
    QuickCheck::new()
        .tests(1000)
        .quickcheck(prop as fn(Vec<MemberOp>) -> bool);
}

fn is_empty_name(name: &[u8]) -> bool {
    name.is_empty() || name == b"0"
}
