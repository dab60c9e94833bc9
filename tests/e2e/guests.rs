//! End to end over real sockets on 127.0.0.1: our register, our gateway (2 shards) and our
//! BusinessWorker running the example and test guests of `wasm-workers/dist/`, driven by
//! real WebSocket clients. Echo, chat, isolation of failing events, hot reload.
//!
//! The echo and chat tests run once per guest language (Rust, AssemblyScript, C: see
//! [`per_language!`]): each language's build must pass the same assertions.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::system::{guest, next_text, System};
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

/// The guest languages with an echo and a chat example: (test module name, file suffix in
/// `wasm-workers/dist/`): `echo.wasm`, `echo_as.wasm`, `echo_c.wasm`, and the same for chat.
pub const LANGUAGES: [(&str, &str); 3] = [("rust", ""), ("assemblyscript", "_as"), ("c", "_c")];

/// The module `example` (echo, chat) in language `suffix` (see [`LANGUAGES`]).
pub fn example(example: &str, suffix: &str) -> std::path::PathBuf {
    guest(&format!("{example}{suffix}"))
}

/// Runs `async fn $test(suffix)` as one test per language: `$test::rust`,
/// `$test::assemblyscript`, `$test::c`.
macro_rules! per_language {
    ($test:ident) => {
        mod $test {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn rust() {
                super::$test(super::LANGUAGES[0].1).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn assemblyscript() {
                super::$test(super::LANGUAGES[1].1).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn c() {
                super::$test(super::LANGUAGES[2].1).await
            }
        }
    };
}

/// Sends `text` and returns the next text the client receives.
async fn ask(ws: &mut WsClient, text: &str) -> String {
    ws_send_text(ws, text).await;
    next_text(ws).await
}

per_language!(echo_keeps_bytes_and_message_type);
async fn echo_keeps_bytes_and_message_type(lang: &str) {
    let sys = System::start(example("echo", lang), 2, 2, |_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(sys.client().await);
    }
    for (i, ws) in clients.iter_mut().enumerate() {
        let text = format!("héllo ✓ {i} \u{0}\u{1F600}");
        assert_eq!(ask(ws, &text).await, text);
        // Every byte value, and a message larger than one read chunk of any link.
        let binary: Vec<u8> = (0..=255u8).cycle().take(200_000 + i).collect();
        ws.send(Message::binary(binary.clone())).await.unwrap();
        assert_eq!(ws_next(ws).await, Message::binary(binary));
        // Bytes that are not UTF-8 stay binary; text that looks binary stays text.
        ws.send(Message::binary(vec![0xff, 0, 0x80])).await.unwrap();
        assert_eq!(ws_next(ws).await, Message::binary(vec![0xff, 0, 0x80]));
        assert_eq!(ask(ws, "0").await, "0");
    }
    let stats = sys.worker().stats();
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 0);
    sys.stop();
}

per_language!(echo_round_trip_time);
/// Event round trip through gateway, worker link, wasm guest and back, one at a time.
async fn echo_round_trip_time(lang: &str) {
    let sys = System::start(example("echo", lang), 1, 1, |_| {}).await;
    let mut ws = sys.client().await;
    assert_eq!(ask(&mut ws, "warm up").await, "warm up");
    let rounds = 500;
    let started = Instant::now();
    for i in 0..rounds {
        let text = format!("m{i}");
        assert_eq!(ask(&mut ws, &text).await, text);
    }
    let per = started.elapsed() / rounds;
    eprintln!(
        "echo{lang} round trip (client → gateway → worker → wasm → gateway → client): {per:?}"
    );
    assert!(per < Duration::from_millis(50), "round trip {per:?}");
    sys.stop();
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

per_language!(chat_join_talk_whisper_leave);
async fn chat_join_talk_whisper_leave(lang: &str) {
    // One instance: a `$_SESSION` write-back travels the worker's link after the event,
    // while the client, having seen the event's reply, may already send its next message
    // on its own connection (the original has the same race). With one instance, the
    // write-back of bob's login precedes ann's `say` on the same links, so once bob sees
    // the `say` his session is on the gateway.
    let sys = System::start(example("chat", lang), 2, 1, |_| {}).await;
    let mut ann = sys.client().await;
    let mut bob = sys.client().await;

    let welcome = ask(&mut ann, r#"{"type":"login","room":"lobby","name":"ann"}"#).await;
    // The newcomer's `$_SESSION` reaches the gateway only after the event, but the members
    // query inside it reports the caller's entry from `$_SESSION` (the original's
    // getClientSessionsByGroup goes through getAllClientSessions, which does that).
    assert_eq!(
        welcome,
        r#"{"type":"welcome","room":"lobby","name":"ann","members":["ann"]}"#
    );
    ws_send_text(&mut bob, r#"{"type":"login","room":"lobby","name":"bob"}"#).await;
    let join = json(&next_text(&mut ann).await);
    assert_eq!(join["type"], "join");
    assert_eq!(join["name"], "bob");
    assert_eq!(join["room"], "lobby");
    let bob_id = join["client_id"].as_str().unwrap().to_owned();
    assert_eq!(bob_id.len(), 20);
    assert_eq!(
        next_text(&mut bob).await,
        r#"{"type":"welcome","room":"lobby","name":"bob","members":["ann","bob"]}"#
    );

    ws_send_text(&mut ann, r#"{"type":"say","text":"hi bob"}"#).await;
    for ws in [&mut ann, &mut bob] {
        let say = json(&next_text(ws).await);
        assert_eq!(say["type"], "say");
        assert_eq!(say["from"], "ann");
        assert_eq!(say["text"], "hi bob");
        assert!(say["time"].as_i64().unwrap() > 1_700_000_000_000);
    }
    assert_eq!(
        ask(&mut bob, r#"{"type":"list"}"#).await,
        r#"{"type":"members","room":"lobby","members":["ann","bob"]}"#
    );
    assert_eq!(
        ask(&mut bob, r#"{"type":"whisper","to":"ann","text":"psst"}"#).await,
        r#"{"type":"whispered","to":"ann"}"#
    );
    assert_eq!(
        next_text(&mut ann).await,
        r#"{"type":"whisper","from":"bob","text":"psst"}"#
    );
    assert_eq!(
        ask(&mut bob, r#"{"type":"whisper","to":"cid","text":"?"}"#).await,
        r#"{"type":"error","reason":"cid is not online"}"#
    );

    // Bob leaves: ann is told, and the room is hers alone.
    bob.close(None).await.unwrap();
    assert_eq!(
        next_text(&mut ann).await,
        r#"{"type":"leave","room":"lobby","name":"bob"}"#
    );
    assert_eq!(
        ask(&mut ann, r#"{"type":"list"}"#).await,
        r#"{"type":"members","room":"lobby","members":["ann"]}"#
    );
    assert_eq!(
        ask(&mut ann, "not json").await,
        r#"{"type":"error","reason":"messages are JSON objects"}"#
    );
    sys.stop();
}

/// A message that loops forever costs only its event: fuel stops it, the instance is
/// recreated, and every other client (on both instances) keeps being served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_loop_costs_only_its_event() {
    let sys = System::start(guest("spin"), 2, 2, |_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(sys.client().await);
    }
    ws_send_text(&mut clients[0], "spin").await;
    for round in 0..3 {
        for (i, ws) in clients.iter_mut().enumerate() {
            let text = format!("c{i}r{round}");
            let reply = ask(ws, &text).await;
            assert!(reply.starts_with(&format!("{text}#")), "{reply}");
        }
    }
    let stats = sys.worker().stats();
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 1);
    sys.stop();
}

/// Panics, out-of-bounds reads and aborts lose their event only; the next event of the
/// same instance runs on a fresh instance (its state starts over).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashing_guest_loses_only_the_event() {
    let sys = System::start(guest("crash"), 1, 1, |_| {}).await;
    let mut a = sys.client().await;
    let mut b = sys.client().await;
    assert_eq!(ask(&mut a, "one").await, "ok:one#1");
    assert_eq!(ask(&mut b, "two").await, "ok:two#2");
    let plain = Instant::now();
    assert_eq!(ask(&mut a, "three").await, "ok:three#3");
    let plain = plain.elapsed();
    for (n, poison) in ["panic", "oob", "abort"].into_iter().enumerate() {
        ws_send_text(&mut b, poison).await;
        // Fresh instance: the count starts over.
        let fresh = Instant::now();
        assert_eq!(ask(&mut a, "after").await, "ok:after#1");
        eprintln!(
            "round trip after a {poison} (failed event + new instance + event): {:?}, plain: {plain:?}",
            fresh.elapsed()
        );
        assert_eq!(ask(&mut b, "again").await, "ok:again#2");
        assert!(ws_silent(&mut b, Duration::from_millis(50)).await);
        let stats = sys.worker().stats();
        assert_eq!(stats[0].events_failed, n as u64 + 1);
    }
    sys.stop();
}

/// Replaces echo with spin (an echo that numbers its replies) while clients stay connected
/// and keep sending numbered messages: every message is answered exactly once, in order,
/// by the old module up to the swap and by the new one after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_loses_no_event_and_runs_none_twice() {
    let dir = std::env::temp_dir().join(format!(
        "gw-e2e-reload-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("worker.wasm");
    std::fs::copy(guest("echo"), &module).unwrap();
    let sys = System::start(module.clone(), 2, 2, |_| {}).await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(sys.client().await);
    }
    // Numbered messages flow while the new module compiles and swaps in: some before the
    // reload, the rest while it runs, then `after` more once the slot holds the new module.
    let mut sent = 0;
    for _ in 0..10 {
        send_round(&mut clients, &mut sent).await;
    }
    // Atomic replace, then reload.
    let staged = dir.join("worker.wasm.new");
    std::fs::copy(guest("spin"), &staged).unwrap();
    std::fs::rename(&staged, &module).unwrap();
    let reload = sys.worker().reload();
    while !reload.is_finished() {
        if sent < 1000 {
            send_round(&mut clients, &mut sent).await;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(reload.wait().expect("new module compiles"), 2);
    let before = sent;
    let after = 20;
    for _ in 0..after {
        send_round(&mut clients, &mut sent).await;
    }
    let mut swapped_at = Vec::new();
    for ws in clients.iter_mut() {
        let mut first_new = None;
        for n in 0..before + after {
            let reply = next_text(ws).await;
            let (number, new) = match reply.split_once('#') {
                Some((number, count)) => {
                    assert!(count.parse::<u64>().is_ok(), "{reply}");
                    (number, true)
                }
                None => (reply.as_str(), false),
            };
            assert_eq!(
                number,
                n.to_string(),
                "replies in order, none lost or doubled"
            );
            match (first_new, new) {
                (None, true) => first_new = Some(n),
                (Some(_), false) => panic!("old module answered {n} after the swap"),
                _ => {}
            }
        }
        let first_new = first_new.expect("the new module answered");
        assert!(
            first_new <= before,
            "sent after the reload, answered by the old module"
        );
        assert!(
            ws_silent(ws, Duration::from_millis(50)).await,
            "nothing extra"
        );
        swapped_at.push(first_new);
    }
    eprintln!(
        "first message answered by the new module, per client: {swapped_at:?} (of {}; {before} sent before the reload returned)",
        before + after
    );
    let stats = sys.worker().stats();
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 0);
    assert!(stats.iter().all(|s| s.reloads == 1), "{stats:?}");
    sys.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// While one instance is stuck in an endless event (until its 3 s wall-clock deadline),
/// the other instance keeps answering its clients at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_instance_blocks_only_its_own_clients() {
    let deadline = Duration::from_secs(3);
    let sys = System::start(guest("spin"), 2, 2, |s| {
        s.host.fuel_per_event = u64::MAX / 4;
        s.host.epoch_deadline = Some(deadline);
    })
    .await;
    let mut stuck = sys.client().await;
    // With 4 clients over 2 shards some shard has 2, and each shard spreads its clients
    // over both instances: at least one of these is on the other instance.
    let mut others = Vec::new();
    for _ in 0..3 {
        others.push(sys.client().await);
    }
    let started = Instant::now();
    ws_send_text(&mut stuck, "spin").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for (i, mut ws) in others.into_iter().enumerate() {
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            ws_send_text(&mut ws, "x").await;
            let reply = next_text_within(&mut ws, deadline * 2).await;
            let _ = done_tx.send((i, reply, started.elapsed()));
        });
    }
    let (_, reply, first) = done.recv().await.unwrap();
    assert!(reply.starts_with("x#"), "{reply}");
    assert!(
        first < deadline / 2,
        "first answer after {first:?}, the stuck event lasts {deadline:?}"
    );
    for _ in 0..2 {
        let (_, reply, _) = done.recv().await.unwrap();
        assert!(reply.starts_with("x#"), "{reply}");
    }
    // The stuck client's own instance serves again after the deadline.
    let reply = ask(&mut stuck, "back").await;
    assert!(reply.starts_with("back#"), "{reply}");
    assert!(
        started.elapsed() >= deadline,
        "the spin ran to its deadline"
    );
    let stats = sys.worker().stats();
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 1);
    eprintln!("first answer from the other instance after {first:?}");
    sys.stop();
}

async fn next_text_within(ws: &mut WsClient, wait: Duration) -> String {
    use futures_util::StreamExt;
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            other => panic!("text expected, got {other:?}"),
        }
    }
}

/// A guest that allocates without end hits the per-instance memory limit: that event is
/// lost, the instance is recreated, the next message is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_costs_only_its_event() {
    let sys = System::start(guest("hog"), 1, 1, |s| s.host.memory_size_max = 16 << 20).await;
    let mut a = sys.client().await;
    let mut b = sys.client().await;
    ws_send_text(&mut a, "hog").await;
    assert_eq!(ask(&mut b, "still here").await, "still here");
    assert_eq!(ask(&mut a, "me too").await, "me too");
    assert_eq!(sys.worker().stats()[0].events_failed, 1);
    sys.stop();
}

/// The file watcher picks up a replaced module by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_watch_reloads_a_replaced_module() {
    let dir = std::env::temp_dir().join(format!(
        "gw-e2e-watch-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("worker.wasm");
    std::fs::copy(guest("echo"), &module).unwrap();
    let sys = System::start(module.clone(), 1, 1, |s| {
        s.reload_poll = Some(Duration::from_millis(20));
    })
    .await;
    let mut ws = sys.client().await;
    assert_eq!(ask(&mut ws, "a").await, "a");
    let staged = dir.join("worker.wasm.new");
    std::fs::copy(guest("spin"), &staged).unwrap();
    std::fs::rename(&staged, &module).unwrap();
    let waited = Instant::now();
    while sys.worker().generation() < 2 {
        assert!(waited.elapsed() < WAIT, "the watcher reloads the module");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("replaced module live after {:?}", waited.elapsed());
    assert_eq!(ask(&mut ws, "b").await, "b#1");
    sys.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends the next number to every client.
async fn send_round(clients: &mut [WsClient], sent: &mut usize) {
    for ws in clients.iter_mut() {
        ws_send_text(ws, &sent.to_string()).await;
    }
    *sent += 1;
}

/// Events queued while the module is swapped: the instance is stuck in a long event of the
/// old module (spin, until its deadline) while numbered messages pile up behind it and the
/// new module (echo) is swapped in; every queued message is then answered once, in order,
/// by the new module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_with_events_queued_behind_a_long_event() {
    let dir = std::env::temp_dir().join(format!(
        "gw-e2e-queued-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("worker.wasm");
    std::fs::copy(guest("spin"), &module).unwrap();
    let sys = System::start(module.clone(), 1, 1, |s| {
        s.host.fuel_per_event = u64::MAX / 4;
        s.host.epoch_deadline = Some(Duration::from_millis(1500));
    })
    .await;
    let mut clients = vec![sys.client().await, sys.client().await];
    assert_eq!(ask(&mut clients[0], "old").await, "old#1");
    ws_send_text(&mut clients[0], "spin").await;
    let mut sent = 0;
    for _ in 0..50 {
        send_round(&mut clients, &mut sent).await;
    }
    let staged = dir.join("worker.wasm.new");
    std::fs::copy(guest("echo"), &staged).unwrap();
    std::fs::rename(&staged, &module).unwrap();
    assert_eq!(sys.worker().reload().wait().expect("compiles"), 2);
    for _ in 0..20 {
        send_round(&mut clients, &mut sent).await;
    }
    for ws in clients.iter_mut() {
        for n in 0..sent {
            assert_eq!(
                next_text(ws).await,
                n.to_string(),
                "once, in order, by echo"
            );
        }
        assert!(
            ws_silent(ws, Duration::from_millis(50)).await,
            "nothing extra"
        );
    }
    let stats = sys.worker().stats();
    assert_eq!(stats[0].events_failed, 1, "the spin");
    // Start, then the new module after the failed event (the failure discarded the old
    // instance, so the host counts no reload).
    assert_eq!(stats[0].instantiations, 2);
    sys.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Shutdown closes every link (the gateway then has no worker for a client's message and
/// closes that client, spec 5.2); a new BusinessWorker registering with the same register
/// serves new clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_links_and_a_new_worker_takes_over() {
    use futures_util::StreamExt;
    use gatewayworker::business::{self, BusinessSettings};

    let mut sys = System::start(guest("echo"), 2, 2, |_| {}).await;
    let mut ws = sys.client().await;
    assert_eq!(ask(&mut ws, "a").await, "a");
    let worker = sys.worker.take().unwrap();
    let stopping = Instant::now();
    tokio::task::spawn_blocking(move || worker.shutdown())
        .await
        .unwrap()
        .expect("worker stops");
    eprintln!("shutdown took {:?}", stopping.elapsed());
    // Let the gateways see the links close.
    tokio::time::sleep(Duration::from_millis(200)).await;
    ws_send_text(&mut ws, "b").await;
    match tokio::time::timeout(WAIT, ws.next()).await {
        Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {}
        other => panic!("client closed for lack of a worker expected, got {other:?}"),
    }

    let register = sys.register.as_ref().unwrap().addr.to_string();
    let mut settings = BusinessSettings::new("e2e", 2, vec![register], guest("echo"));
    settings.core.secret_key = crate::system::SECRET.into();
    let worker = business::start(settings).expect("a new worker starts");
    let waited = Instant::now();
    while worker.connected_gateways() != [2, 2] {
        assert!(waited.elapsed() < WAIT, "{:?}", worker.connected_gateways());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    sys.worker = Some(worker);
    let mut ws = sys.client().await;
    assert_eq!(ask(&mut ws, "c").await, "c");
    sys.stop();
}

per_language!(echo_under_many_concurrent_clients);
/// Many clients at once, each with many messages in flight: every reply arrives, in order
/// per client, through both instances and both shards.
async fn echo_under_many_concurrent_clients(lang: &str) {
    let sys = System::start(example("echo", lang), 2, 2, |_| {}).await;
    let (clients, messages) = (24, 200);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let mut ws = sys.client().await;
        tasks.push(tokio::spawn(async move {
            for m in 0..messages {
                ws_send_text(&mut ws, &format!("{c}:{m}")).await;
            }
            for m in 0..messages {
                assert_eq!(next_text(&mut ws).await, format!("{c}:{m}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = clients * messages;
    eprintln!(
        "echo{lang}: {total} echoes from {clients} clients in {:?}",
        started.elapsed()
    );
    let stats = sys.worker().stats();
    assert!(stats.iter().all(|s| s.events_ok > 0), "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.events_failed).sum::<u64>(), 0);
    sys.stop();
}
