//! The `probe` guest (the op language of spec/ops.md) through the whole system over real
//! sockets: our register, our gateway with 2 shards, our BusinessWorker with 2 instances,
//! real WebSocket clients. Replies are compared byte for byte.

mod common;
mod system;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use system::{guest, next_text, System};
use tokio_tungstenite::tungstenite::Message;

/// A probe client: its id (from the connect message) and its socket.
struct Probe {
    id: String,
    ws: WsClient,
    next_id: u64,
}

impl Probe {
    async fn connect(sys: &System) -> Probe {
        let mut ws = sys.client().await;
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
