//! The `probe` guest (the op language of spec/ops.md) through the whole system over real
//! sockets: our register, our gateway with 2 shards, our BusinessWorker with 2 instances,
//! real WebSocket clients. Replies are compared byte for byte.

use std::time::Duration;

use crate::common::*;
use crate::system::{guest, next_text, System};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// A probe client: its id (from the connect message) and its socket.
struct Probe {
    id: String,
    ws: WsClient,
    next_id: u64,
}

impl Probe {
    async fn connect(sys: &System) -> Probe {
        Probe::with(sys.client().await).await
    }

    async fn connect_path(sys: &System, path: &str) -> Probe {
        Probe::with(ws_connect(sys.public, path).await).await
    }

    async fn with(mut ws: WsClient) -> Probe {
        let hello = next_text(&mut ws).await;
        let id = hello
            .strip_prefix(r#"{"event":"connect","client_id":""#)
            .and_then(|rest| rest.strip_suffix(r#""}"#))
            .unwrap_or_else(|| panic!("connect message first, got {hello}"))
            .to_owned();
        assert_eq!(id.len(), 20);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        Probe { id, ws, next_id: 1 }
    }

    /// Sends op `op` with `args` (JSON text) and returns the reply's `result`/`error` part:
    /// the text after `{"id":N,` without the closing brace.
    async fn op(&mut self, op: &str, args: &str) -> String {
        let id = self.send(op, args).await;
        self.reply(id).await
    }

    async fn send(&mut self, op: &str, args: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let request = format!(r#"{{"op":"{op}","args":{args},"id":{id}}}"#);
        ws_send_text(&mut self.ws, &request).await;
        id
    }

    async fn reply(&mut self, id: u64) -> String {
        let text = self.text().await;
        let prefix = format!(r#"{{"id":{id},"#);
        text.strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix('}'))
            .unwrap_or_else(|| panic!("reply to {id} expected, got {text}"))
            .to_owned()
    }

    async fn text(&mut self) -> String {
        next_text(&mut self.ws).await
    }

    async fn silent(&mut self) -> bool {
        ws_silent(&mut self.ws, Duration::from_millis(100)).await
    }
}

const NULL: &str = r#""ok":true,"result":null"#;
const TRUE: &str = r#""ok":true,"result":true"#;

fn ok(result: &str) -> String {
    format!(r#""ok":true,"result":{result}"#)
}

/// A well-formed id that names no connection: `who`'s gateway, connection id 0xffffffff.
fn ghost(who: &str) -> String {
    format!("{}ffffffff", &who[..12])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_ops_through_the_whole_system() {
    let sys = System::start(guest("probe"), 2, 2, |_| {}).await;
    let mut a = Probe::connect(&sys).await;
    let mut b = Probe::connect(&sys).await;
    let mut c = Probe::connect(&sys).await;
    let mut d = Probe::connect(&sys).await;
    let (ai, bi, ci, di) = (a.id.clone(), b.id.clone(), c.id.clone(), d.id.clone());

    // Plain echo: the exact bytes, text or binary, when they are UTF-8...
    ws_send_text(&mut a.ws, "plain wörds {not an op}").await;
    assert_eq!(a.text().await, "plain wörds {not an op}");
    a.ws.send(Message::binary(b"utf8 in binary".to_vec()))
        .await
        .unwrap();
    assert_eq!(a.text().await, "utf8 in binary");
    // ...else a digest (md5 of ff 00 80, computed independently).
    a.ws.send(Message::binary(vec![0xff, 0x00, 0x80]))
        .await
        .unwrap();
    assert_eq!(
        a.text().await,
        r#"{"event":"raw_binary","len":3,"md5":"60cdccd4000580a3c394b8ad6ea9b899"}"#
    );
    assert_eq!(a.op("echo", r#"{"data":[1,"x"]}"#).await, ok(r#"[1,"x"]"#));
    assert_eq!(
        a.op("nosuchop", "{}").await.split(',').next(),
        Some(r#""ok":false"#)
    );

    // Every client counted, whichever instance and shard asks.
    for p in [&mut a, &mut b, &mut c, &mut d] {
        assert_eq!(p.op("getAllClientIdCount", "{}").await, ok("4"));
    }
    let used: Vec<u64> = sys.worker().stats().iter().map(|s| s.events_ok).collect();
    assert!(
        used.iter().all(|&n| n > 0),
        "both instances serve clients: {used:?}"
    );

    // sendToClient: the target gets the message, the caller the reply.
    let args = format!(r#"{{"client_id":"{bi}","message":"to b"}}"#);
    assert_eq!(a.op("sendToClient", &args).await, TRUE);
    assert_eq!(b.text().await, "to b");
    let args = r#"{"client_id":"short","message":"x"}"#;
    assert_eq!(a.op("sendToClient", args).await, ok("false"));
    let args = format!(r#"{{"client_id":"{}","message":"x"}}"#, ghost(&bi));
    assert_eq!(a.op("sendToClient", &args).await, TRUE);

    // sendToAll with exclude (list and single string); a message that is not a string is
    // sent as its JSON text.
    let args = format!(r#"{{"message":{{"k":[1]}},"exclude":["{ai}","{ci}"]}}"#);
    assert_eq!(a.op("sendToAll", &args).await, NULL);
    assert_eq!(b.text().await, r#"{"k":[1]}"#);
    assert_eq!(d.text().await, r#"{"k":[1]}"#);
    let args = format!(r#"{{"message":"all but d","exclude":"{di}"}}"#);
    let id = a.send("sendToAll", &args).await;
    assert_eq!(a.text().await, "all but d", "pushes come before the reply");
    assert_eq!(a.reply(id).await, NULL);
    assert_eq!(b.text().await, "all but d");
    assert_eq!(c.text().await, "all but d");
    assert!(c.silent().await && d.silent().await);

    // bindUid + getClientIdByUid (sorted list), across shards.
    for who in [&bi, &ci] {
        let args = format!(r#"{{"client_id":"{who}","uid":"u1"}}"#);
        assert_eq!(a.op("bindUid", &args).await, NULL);
    }
    let mut both = [bi.clone(), ci.clone()];
    both.sort();
    let list = format!(r#"["{}","{}"]"#, both[0], both[1]);
    assert_eq!(a.op("getClientIdByUid", r#"{"uid":"u1"}"#).await, ok(&list));
    assert_eq!(
        a.op("getUidByClientId", &format!(r#"{{"client_id":"{bi}"}}"#))
            .await,
        ok(r#""u1""#)
    );

    // Groups: b in g1 and g2, c in g1; a message to [g1, g2] reaches b twice.
    for (who, group) in [(&bi, "g1"), (&bi, "g2"), (&ci, "g1")] {
        let args = format!(r#"{{"client_id":"{who}","group":"{group}"}}"#);
        assert_eq!(a.op("joinGroup", &args).await, NULL);
    }
    assert_eq!(
        a.op("getClientIdListByGroup", r#"{"group":"g1"}"#).await,
        ok(&list)
    );
    let args = r#"{"group":["g1","g2"],"message":"grp"}"#;
    assert_eq!(a.op("sendToGroup", args).await, NULL);
    assert_eq!(b.text().await, "grp");
    assert_eq!(b.text().await, "grp");
    assert_eq!(c.text().await, "grp");
    assert!(b.silent().await && c.silent().await);
    assert_eq!(
        a.op("sendToGroup", r#"{"group":"","message":"x"}"#).await,
        ok("false")
    );

    // Sessions through the API: set, update (lists merged by index), get.
    let args = format!(r#"{{"client_id":"{bi}","session":{{"a":1,"l":[1,2]}}}}"#);
    assert_eq!(a.op("setSession", &args).await, NULL);
    let args = format!(r#"{{"client_id":"{bi}","session":{{"l":[9],"n":{{"x":1}}}}}}"#);
    assert_eq!(a.op("updateSession", &args).await, NULL);
    let b_session = r#"{"a":1,"l":[9,2],"n":{"x":1}}"#;
    let get_b = format!(r#"{{"client_id":"{bi}"}}"#);
    assert_eq!(a.op("getSession", &get_b).await, ok(b_session));
    // The session arrives with b's next event.
    assert_eq!(b.op("sessionGet", "{}").await, ok(b_session));
    assert_eq!(
        a.op("getSession", r#"{"client_id":"bad"}"#).await,
        ok("false")
    );
    let ghost_arg = format!(r#"{{"client_id":"{}"}}"#, ghost(&ai));
    assert_eq!(a.op("getSession", &ghost_arg).await, NULL);
    assert_eq!(
        a.op("getSession", &format!(r#"{{"client_id":"{ai}"}}"#))
            .await,
        ok("{}")
    );

    // `$_SESSION` changed in c's event is written back after it; another client (maybe on
    // the other instance) reads it from the gateway.
    assert_eq!(
        c.op("sessionSet", r#"{"key":"k","value":"v"}"#).await,
        ok(r#"{"k":"v"}"#)
    );
    // c's next reply leaves after the write-back on the same link, so the gateway has it.
    assert_eq!(c.op("echo", "{}").await, NULL);
    let get_c = format!(r#"{{"client_id":"{ci}"}}"#);
    assert_eq!(a.op("getSession", &get_c).await, ok(r#"{"k":"v"}"#));
    assert_eq!(d.op("getSession", &get_c).await, ok(r#"{"k":"v"}"#));

    // Inside an event the caller's own entry of getAllClientSessions is its `$_SESSION`
    // as changed so far in the event; the others come from the gateways.
    let request = r#"{"ops":[{"op":"sessionSet","args":{"key":"m","value":1}},{"op":"getAllClientSessions"}]}"#;
    let mut sessions = [
        (ai.clone(), "{}"),
        (bi.clone(), b_session),
        (ci.clone(), r#"{"k":"v","m":1}"#),
        (di.clone(), "{}"),
    ];
    sessions.sort();
    let map: Vec<String> = sessions
        .iter()
        .map(|(id, s)| format!(r#""{id}":{s}"#))
        .collect();
    let expected = format!(
        r#"[{{"ok":true,"result":{{"k":"v","m":1}}}},{{"ok":true,"result":{{{}}}}}]"#,
        map.join(",")
    );
    assert_eq!(c.op("multi", request).await, ok(&expected));

    // isOnline: live 1, ghost 0, malformed 0.
    assert_eq!(a.op("isOnline", &get_b).await, ok("1"));
    assert_eq!(a.op("isOnline", &ghost_arg).await, ok("0"));
    assert_eq!(a.op("isOnline", r#"{"client_id":"nope"}"#).await, ok("0"));

    // closeCurrentClient: the reply first, then the message, then the close; the close
    // event reaches the closewatch group with d's session.
    let args = format!(r#"{{"client_id":"{ai}","group":"closewatch"}}"#);
    assert_eq!(a.op("joinGroup", &args).await, NULL);
    assert_eq!(
        d.op("sessionSet", r#"{"key":"n","value":4}"#).await,
        ok(r#"{"n":4}"#)
    );
    let id = d.send("closeCurrentClient", r#"{"message":"bye"}"#).await;
    assert_eq!(d.reply(id).await, NULL);
    assert_eq!(d.text().await, "bye");
    assert_closed(&mut d.ws).await;
    assert_eq!(
        a.text().await,
        format!(r#"{{"event":"close","client_id":"{di}","session":{{"n":4}}}}"#)
    );

    // closeClient on another client: the caller's reply, the target's message and close,
    // the closewatch notice with the target's session.
    let args = format!(r#"{{"client_id":"{bi}","message":"kicked"}}"#);
    assert_eq!(c.op("closeClient", &args).await, TRUE);
    assert_eq!(b.text().await, "kicked");
    assert_closed(&mut b.ws).await;
    assert_eq!(
        a.text().await,
        format!(r#"{{"event":"close","client_id":"{bi}","session":{b_session}}}"#)
    );
    assert_eq!(a.op("isOnline", &get_b).await, ok("0"));
    assert_eq!(a.op("getAllClientIdCount", "{}").await, ok("2"));
    assert_eq!(
        a.op("getClientIdByUid", r#"{"uid":"u1"}"#).await,
        ok(&format!(r#"["{ci}"]"#))
    );

    let stats = sys.worker().stats();
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 0);
    sys.stop();
}

fn sorted_list(ids: &[&String]) -> String {
    let mut ids: Vec<&String> = ids.to_vec();
    ids.sort();
    let quoted: Vec<String> = ids.iter().map(|id| format!(r#""{id}""#)).collect();
    format!("[{}]", quoted.join(","))
}

fn failed(reply: &str) -> bool {
    reply.starts_with(r#""ok":false,"error":""#)
}

/// The ops the first test leaves out: context and handshake data, sleep, uids, every
/// group query (with every client bound and grouped, so the original's early `break` in
/// the getAllGroup* scans cannot show), the `$_SESSION` ops, the GatewayClient-only ops
/// and every way of closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_queries_uids_groups_sessions_and_closes() {
    let sys = System::start(guest("probe"), 2, 2, |_| {}).await;
    let mut a = Probe::connect_path(&sys, "/chat?room=r1&n=2").await;
    let mut b = Probe::connect(&sys).await;
    let mut c = Probe::connect(&sys).await;
    let mut d = Probe::connect(&sys).await;
    let (ai, bi, ci, di) = (a.id.clone(), b.id.clone(), c.id.clone(), d.id.clone());

    // context: $_SERVER as the gateway filled it: the gateway address is the lan ip of the
    // client id, the gateway port the public port, the remote port our socket's.
    let local = match a.ws.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => unreachable!("plain tcp"),
    };
    assert_eq!(&ai[..8], "7f000001");
    let expected = format!(
        r#"{{"client_id":"{ai}","remote_addr":"127.0.0.1","remote_port":{},"gateway_addr":"127.0.0.1","gateway_port":{}}}"#,
        local.port(),
        sys.public.port()
    );
    assert_eq!(a.op("context", "{}").await, ok(&expected));

    // getWebSocketData: the handshake's query string, parsed (in order, as a session is
    // normalised) and raw.
    let data = a.op("getWebSocketData", "{}").await;
    for part in [
        r#""get":{"room":"r1","n":"2"}"#,
        r#""cookie":{}"#,
        r#""QUERY_STRING":"room=r1&n=2""#,
        r#""REQUEST_METHOD":"GET""#,
        r#""REQUEST_URI":"/chat?room=r1&n=2""#,
        r#""HTTP_UPGRADE":"websocket""#,
    ] {
        assert!(data.contains(part), "{part} in {data}");
    }

    // sleep: in the worker, clamped to 0..2000 ms.
    let started = std::time::Instant::now();
    assert_eq!(a.op("sleep", r#"{"ms":60}"#).await, NULL);
    assert!(started.elapsed() >= Duration::from_millis(60));
    assert_eq!(a.op("sleep", r#"{"ms":-5}"#).await, NULL);

    // sendToCurrentClient: the push first, then the reply.
    let id = a.send("sendToCurrentClient", r#"{"message":"me"}"#).await;
    assert_eq!(a.text().await, "me");
    assert_eq!(a.reply(id).await, TRUE);

    // Uids: the int uid travels as a string; sendToUid with a list.
    for (who, uid) in [
        (&ai, r#""ua""#),
        (&bi, r#""u1""#),
        (&ci, r#""u2""#),
        (&di, "123"),
    ] {
        let args = format!(r#"{{"client_id":"{who}","uid":{uid}}}"#);
        assert_eq!(a.op("bindUid", &args).await, NULL);
    }
    let args = r#"{"uid":["u1",123],"message":"hi"}"#;
    assert_eq!(a.op("sendToUid", args).await, NULL);
    assert_eq!(b.text().await, "hi");
    assert_eq!(d.text().await, "hi");
    assert!(c.silent().await);
    assert_eq!(a.op("isUidOnline", r#"{"uid":"u1"}"#).await, ok("1"));
    assert_eq!(a.op("isUidOnline", r#"{"uid":"nobody"}"#).await, ok("0"));
    assert_eq!(
        a.op("getClientIdByUid", r#"{"uid":"nobody"}"#).await,
        ok("[]")
    );
    assert_eq!(
        a.op("getAllUidList", "{}").await,
        ok(r#"["123","u1","u2","ua"]"#)
    );
    assert_eq!(a.op("getAllUidCount", "{}").await, ok("4"));

    // Groups: "7" is numeric, so the gateways hand it back as an integer.
    for (who, group) in [
        (&ai, r#""g2""#),
        (&bi, r#""g1""#),
        (&ci, r#""g1""#),
        (&di, "7"),
        (&bi, r#""7""#),
        (&bi, r#""7""#),
    ] {
        let args = format!(r#"{{"client_id":"{who}","group":{group}}}"#);
        assert_eq!(a.op("joinGroup", &args).await, NULL);
    }
    let all = sorted_list(&[&ai, &bi, &ci, &di]);
    let g1 = sorted_list(&[&bi, &ci]);
    let g7 = sorted_list(&[&bi, &di]);
    assert_eq!(
        a.op("getAllGroupIdList", "{}").await,
        ok(r#"[7,"g1","g2"]"#)
    );
    assert_eq!(a.op("getAllClientIdList", "{}").await, ok(&all));
    assert_eq!(a.op("getAllClientCount", "{}").await, ok("4"));
    assert_eq!(
        a.op("getClientCountByGroup", r#"{"group":"g1"}"#).await,
        ok("2")
    );
    assert_eq!(a.op("getClientCountByGroup", "{}").await, ok("4"));
    assert_eq!(
        a.op("getClientIdCountByGroup", r#"{"group":"7"}"#).await,
        ok("2")
    );
    assert_eq!(
        a.op("getClientIdCountByGroup", r#"{"group":""}"#).await,
        ok("4")
    );
    assert_eq!(
        a.op("getClientIdListByGroup", r#"{"group":""}"#).await,
        ok("[]")
    );
    let mut members = [bi.clone(), ci.clone()];
    members.sort();
    let sessions = format!(r#"{{"{}":{{}},"{}":{{}}}}"#, members[0], members[1]);
    assert_eq!(
        a.op("getClientSessionsByGroup", r#"{"group":"g1"}"#).await,
        ok(&sessions)
    );
    assert_eq!(
        a.op("getAllClientSessions", r#"{"group":"g1"}"#).await,
        ok(&sessions)
    );
    assert_eq!(
        a.op("getClientSessionsByGroup", r#"{"group":""}"#).await,
        ok("{}")
    );
    assert_eq!(
        a.op("getUidListByGroup", r#"{"group":"g1"}"#).await,
        ok(r#"["u1","u2"]"#)
    );
    assert_eq!(a.op("getUidCountByGroup", r#"{"group":7}"#).await, ok("2"));
    assert_eq!(a.op("getUidCountByGroup", r#"{"group":""}"#).await, ok("0"));
    assert_eq!(
        a.op("getAllGroupUidList", "{}").await,
        ok(r#"{"7":["123","u1"],"g1":["u1","u2"],"g2":["ua"]}"#)
    );
    assert_eq!(
        a.op("getAllGroupUidCount", "{}").await,
        ok(r#"{"7":2,"g1":2,"g2":1}"#)
    );
    let lists = format!(r#"{{"7":{g7},"g1":{g1},"g2":["{ai}"]}}"#);
    assert_eq!(a.op("getAllGroupClientIdList", "{}").await, ok(&lists));
    assert_eq!(
        a.op("getAllGroupClientIdCount", "{}").await,
        ok(r#"{"7":2,"g1":2,"g2":1}"#)
    );

    // The GatewayClient-only ops are not part of the worker's API.
    for (op, args) in [
        ("batchGetClientIdByUid", r#"{"uids":["u1"]}"#),
        ("batchGetClientIdCountByGroup", r#"{"groups":["g1"]}"#),
        ("isUidsOnline", r#"{"uids":["u1"]}"#),
    ] {
        assert!(failed(&a.op(op, args).await), "{op} answers ok:false");
    }

    // Leaving, ungrouping, unbinding (the gateway drops the current uid whatever is named).
    let args = format!(r#"{{"client_id":"{bi}","group":"g1"}}"#);
    assert_eq!(a.op("leaveGroup", &args).await, NULL);
    assert_eq!(
        a.op("getClientIdListByGroup", r#"{"group":"g1"}"#).await,
        ok(&format!(r#"["{ci}"]"#))
    );
    assert_eq!(a.op("ungroup", r#"{"group":"7"}"#).await, NULL);
    assert_eq!(a.op("ungroup", r#"{"group":""}"#).await, ok("false"));
    assert_eq!(a.op("getAllGroupIdList", "{}").await, ok(r#"["g1","g2"]"#));
    let args = format!(r#"{{"client_id":"{bi}","uid":"not-u1"}}"#);
    assert_eq!(a.op("unbindUid", &args).await, NULL);
    let get_b = format!(r#"{{"client_id":"{bi}"}}"#);
    assert_eq!(a.op("getUidByClientId", &get_b).await, NULL);
    assert_eq!(a.op("isUidOnline", r#"{"uid":"u1"}"#).await, ok("0"));

    // $_SESSION inside events, written back after each.
    assert_eq!(c.op("sessionGet", "{}").await, NULL);
    assert_eq!(
        c.op("sessionSet", r#"{"key":"x","value":[1,{"y":null}]}"#)
            .await,
        ok(r#"{"x":[1,{"y":null}]}"#)
    );
    assert_eq!(c.op("sessionUnset", r#"{"key":"x"}"#).await, ok("{}"));
    assert_eq!(
        c.op("sessionReplace", r#"{"session":{"s":[1]}}"#).await,
        ok(r#"{"s":[1]}"#)
    );
    assert!(failed(&c.op("sessionReplace", r#"{"session":5}"#).await));
    assert_eq!(c.op("echo", "{}").await, NULL);
    let get_c = format!(r#"{{"client_id":"{ci}"}}"#);
    assert_eq!(a.op("getSession", &get_c).await, ok(r#"{"s":[1]}"#));
    assert_eq!(c.op("sessionReplace", r#"{"session":null}"#).await, NULL);
    assert_eq!(c.op("echo", "{}").await, NULL);
    assert_eq!(a.op("getSession", &get_c).await, ok("{}"));

    // Closing. c watches; every close reaches it with the closing client's session.
    let args = format!(r#"{{"client_id":"{ci}","group":"closewatch"}}"#);
    assert_eq!(c.op("joinGroup", &args).await, NULL);
    let mut e = Probe::connect(&sys).await;
    let mut f = Probe::connect(&sys).await;
    let (ei, fi) = (e.id.clone(), f.id.clone());
    let close_of = |id: &str| format!(r#"{{"event":"close","client_id":"{id}","session":null}}"#);

    // destroyClient: no message, the target is gone; malformed ⇒ false, ghost ⇒ true.
    assert_eq!(a.op("destroyClient", &get_b).await, TRUE);
    assert_closed(&mut b.ws).await;
    assert_eq!(c.text().await, close_of(&bi));
    let ghost_arg = format!(r#"{{"client_id":"{}"}}"#, ghost(&bi));
    assert_eq!(a.op("destoryClient", &ghost_arg).await, TRUE);
    assert_eq!(
        a.op("destroyClient", r#"{"client_id":"x"}"#).await,
        ok("false")
    );

    // destroyCurrentClient and its misspelt twin: the reply, then the close.
    for (p, op, id) in [
        (&mut e, "destroyCurrentClient", &ei),
        (&mut f, "destoryCurrentClient", &fi),
    ] {
        let request = p.send(op, "{}").await;
        assert_eq!(p.reply(request).await, NULL);
        assert_closed(&mut p.ws).await;
        assert_eq!(c.text().await, close_of(id));
    }

    // closeClient naming the caller takes the current-client path: the message, the close,
    // and no reply (spec 5.8).
    let args = format!(r#"{{"client_id":"{di}","message":"self"}}"#);
    d.send("closeClient", &args).await;
    assert_eq!(d.text().await, "self");
    assert_closed(&mut d.ws).await;
    assert_eq!(c.text().await, close_of(&di));

    assert_eq!(a.op("getAllClientIdCount", "{}").await, ok("2"));
    assert_eq!(a.op("getAllUidList", "{}").await, ok(r#"["u2","ua"]"#));
    let stats = sys.worker().stats();
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 0);
    sys.stop();
}

/// The probe over the text protocol: lines in, lines out, no handshake data.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_over_the_text_protocol() {
    use gatewayworker::gateway::PublicProtocol;
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

    let sys = System::start_with(
        guest("probe"),
        1,
        1,
        |g| g.core.protocol = PublicProtocol::Text,
        |_| {},
    )
    .await;
    let mut lines = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let stream = tokio::net::TcpStream::connect(sys.public).await.unwrap();
        let (read, write) = stream.into_split();
        let mut read = BufReader::new(read).lines();
        let hello = tokio::time::timeout(WAIT, read.next_line())
            .await
            .expect("connect message in time")
            .unwrap()
            .expect("a line");
        let id = hello
            .strip_prefix(r#"{"event":"connect","client_id":""#)
            .and_then(|rest| rest.strip_suffix(r#""}"#))
            .unwrap_or_else(|| panic!("connect message first, got {hello}"))
            .to_owned();
        ids.push(id);
        lines.push((read, write));
    }
    let (read0, write0) = &mut lines[0];
    write0
        .write_all(b"{\"op\":\"getWebSocketData\",\"id\":\"w\"}\nplain text\n")
        .await
        .unwrap();
    assert_eq!(next(read0).await, r#"{"id":"w","ok":true,"result":null}"#);
    assert_eq!(next(read0).await, "plain text");
    let request = format!(
        "{{\"op\":\"sendToAll\",\"args\":{{\"message\":\"to all\",\"exclude\":\"{}\"}},\"id\":2}}\n",
        ids[0]
    );
    write0.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(next(read0).await, r#"{"id":2,"ok":true,"result":null}"#);
    let (read1, _) = &mut lines[1];
    assert_eq!(next(read1).await, "to all");
    sys.stop();
}

type LineReader = tokio::io::Lines<tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>>;

/// The next line of a text-protocol client; panics after [`WAIT`].
async fn next(read: &mut LineReader) -> String {
    tokio::time::timeout(WAIT, read.next_line())
        .await
        .expect("line in time")
        .unwrap()
        .expect("a line")
}

/// The connection ends (a close frame, or the TCP close of workerman 4) with no more data.
async fn assert_closed(ws: &mut WsClient) {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => panic!("connection still open"),
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(other))) => panic!("data after the close: {other:?}"),
        }
    }
}
