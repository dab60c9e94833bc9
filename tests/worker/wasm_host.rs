//! The wasm host against real guests built from `wasm-workers/` (run `scripts/build-wasm`
//! first): events in, Gateway API calls out to a recording handler, isolation, hot reload.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::php_values::{b, list, map, s};
use bytes::Bytes;
use gatewayworker::api::{ApiCall, ApiError, ApiResult};
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind, FailureKind, HostConfig, LoadError, LogLevel,
    Plugin, PluginSlot, WasmHost, WasmWorker, WorkerEvent,
};

const CID: &str = "7f0000010fa000000009";

/// A guest log line as the handler saw it.
type LogLine = (LogLevel, Option<Bytes>, String);
/// Compiled modules by name.
type PluginCache = Mutex<Vec<(&'static str, Plugin<Recorder>)>>;

/// Everything a guest did through the API, in order.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<ApiRequest>>>,
    logs: Arc<Mutex<Vec<LogLine>>>,
    /// When set, `getAllClientCount` waits for this before answering (async query test).
    gate: Option<Arc<tokio::sync::Notify>>,
    /// When set, `getAllClientCount` takes this long (a slow gateway).
    delay: Option<Duration>,
    /// Sleeps asked for through `gw.sleep_ms`.
    slept: Arc<Mutex<Vec<Duration>>>,
}

impl Recorder {
    /// Canned gateway answers, as the original returns them.
    fn answer(call: &ApiCall) -> ApiResult {
        Ok(match call {
            ApiCall::GetClientCountByGroup { group } if group == "room" => PhpValue::Int(3),
            ApiCall::GetClientIdListByGroup { .. } => {
                list(vec![s("7f0000010fa000000001"), s("7f0000010fa000000002")])
            }
            ApiCall::GetSession { .. } => map(&[("name", s("ann"))]),
            ApiCall::GetUidByClientId { client_id } if client_id == "bad" => {
                return Err(ApiError::MalformedClientId)
            }
            ApiCall::IsUidOnline { uid } => PhpValue::Int((uid == "bob").into()),
            ApiCall::GetClientSessionsByGroup { .. } => map(&[
                ("7f0000010fa000000001", map(&[("name", s("zed"))])),
                (CID, map(&[("name", s("ann"))])),
            ]),
            ApiCall::GetAllClientCount => PhpValue::Int(7),
            ApiCall::SendToClient { .. }
            | ApiCall::SendToCurrentClient { .. }
            | ApiCall::CloseClient { .. }
            | ApiCall::DestroyClient { .. } => PhpValue::Bool(true),
            _ => PhpValue::Null,
        })
    }

    fn calls(&self) -> Vec<ApiRequest> {
        self.calls.lock().unwrap().clone()
    }

    /// Messages sent to the current client: (bytes, binary).
    fn replies(&self) -> Vec<(Bytes, bool)> {
        self.calls()
            .into_iter()
            .filter_map(|r| match r.call {
                ApiCall::SendToCurrentClient {
                    message: PhpValue::Str(m),
                    ..
                } => Some((m, r.binary)),
                _ => None,
            })
            .collect()
    }

    fn reply_texts(&self) -> Vec<String> {
        self.replies()
            .into_iter()
            .map(|(m, _)| String::from_utf8_lossy(&m).into_owned())
            .collect()
    }

    fn clear(&self) {
        self.calls.lock().unwrap().clear();
    }
}

impl ApiHandler for Recorder {
    async fn call(&mut self, request: ApiRequest) -> ApiResult {
        let answer = Self::answer(&request.call);
        let wait = matches!(request.call, ApiCall::GetAllClientCount);
        self.calls.lock().unwrap().push(request);
        if let (true, Some(gate)) = (wait, &self.gate) {
            gate.notified().await;
        }
        if let (true, Some(delay)) = (wait, self.delay) {
            tokio::time::sleep(delay).await;
        }
        answer
    }

    async fn sleep(&mut self, duration: Duration) -> bool {
        self.slept.lock().unwrap().push(duration);
        tokio::time::sleep(duration).await;
        true
    }

    fn log(&mut self, level: LogLevel, client: Option<&Bytes>, text: &str) {
        let entry = (level, client.cloned(), text.to_string());
        self.logs.lock().unwrap().push(entry);
    }
}

/// Small budgets so the isolation tests finish fast; no epochs (deterministic).
fn test_config() -> HostConfig {
    HostConfig {
        fuel_per_event: 20_000_000,
        memory_size_max: 16 << 20,
        ..HostConfig::deterministic()
    }
}

fn host() -> &'static WasmHost<Recorder> {
    static HOST: OnceLock<WasmHost<Recorder>> = OnceLock::new();
    HOST.get_or_init(|| WasmHost::new(test_config()).expect("host"))
}

fn dist(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("wasm-workers/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run scripts/build-wasm to build the guest modules",
        path.display()
    );
    path
}

/// Each module is compiled once per test process (compiling is the slow part).
fn plugin(name: &'static str) -> Plugin<Recorder> {
    static CACHE: OnceLock<PluginCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((_, p)) = cache.lock().unwrap().iter().find(|(n, _)| *n == name) {
        return p.clone();
    }
    let p = host().load_file(&dist(name)).expect("module loads");
    cache.lock().unwrap().push((name, p.clone()));
    p
}

fn worker(name: &'static str) -> (WasmWorker<Recorder>, Recorder) {
    worker_with(name, Recorder::default())
}

fn worker_with(name: &'static str, rec: Recorder) -> (WasmWorker<Recorder>, Recorder) {
    let slot = PluginSlot::new(host(), plugin(name));
    (WasmWorker::new(host(), &slot, rec.clone()), rec)
}

fn event(kind: EventKind) -> WorkerEvent {
    WorkerEvent {
        kind,
        client: ClientInfo {
            client_id: b(CID),
            remote_addr: "10.0.0.5".into(),
            remote_port: 50123,
            gateway_addr: "127.0.0.1".into(),
            gateway_port: 8282,
        },
        session: PhpValue::Null,
        now_ms: 1_700_000_000_123,
    }
}

fn message(text: &str) -> WorkerEvent {
    event(EventKind::Message {
        body: b(text),
        binary: false,
    })
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

#[tokio::test]
async fn echo_returns_text_as_text_and_binary_as_binary() {
    let (mut w, rec) = worker("echo");
    w.handle(&message("hello")).await.unwrap();
    let bin = event(EventKind::Message {
        body: Bytes::from_static(&[0, 159, 146, 150, 255]),
        binary: true,
    });
    w.handle(&bin).await.unwrap();
    assert_eq!(
        rec.replies(),
        vec![
            (b("hello"), false),
            (Bytes::from_static(&[0, 159, 146, 150, 255]), true)
        ]
    );
    let calls = rec.calls();
    assert_eq!(
        calls[0].current.as_ref().map(|c| c.client_id.clone()),
        Some(b(CID))
    );
    assert!(matches!(
        calls[0].call,
        ApiCall::SendToCurrentClient { raw: false, .. }
    ));
}

/// The WAT example of ABI.md, run as written there: the doc cannot drift from the ABI.
#[tokio::test]
async fn wat_guest_from_abi_md_echoes() {
    let abi = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wasm-workers/ABI.md"),
    )
    .unwrap();
    let start = abi.find("```wat\n").expect("ABI.md has a wat example") + 7;
    let wat = &abi[start..start + abi[start..].find("```").unwrap()];
    let plugin = host()
        .compile(wat.as_bytes(), "ABI.md")
        .expect("WAT compiles");
    let rec = Recorder::default();
    let mut w = WasmWorker::new(host(), &PluginSlot::new(host(), plugin), rec.clone());
    for text in ["one", "two", ""] {
        w.handle(&message(text)).await.unwrap();
    }
    w.handle(&event(EventKind::Connect)).await.unwrap(); // no on_connect: a no-op
    assert_eq!(rec.reply_texts(), vec!["one", "two", ""]);
}

#[tokio::test]
async fn every_kind_of_api_call_arrives_as_the_right_api_call() {
    let (mut w, rec) = worker("apitour");
    w.handle(&message("tour")).await.unwrap();
    let calls: Vec<(ApiCall, bool)> = rec
        .calls()
        .into_iter()
        .map(|r| (r.call, r.binary))
        .collect();
    let ids = |v: &[&str]| v.iter().map(|x| b(x)).collect::<Vec<_>>();
    let expected = vec![
        ApiCall::SendToClient {
            client_id: b("7f0000010fa000000001"),
            message: s("to-one"),
            raw: false,
        },
        ApiCall::SendToClient {
            client_id: b("7f0000010fa000000002"),
            message: PhpValue::Str(Bytes::from_static(&[0, 1, 255])),
            raw: true,
        },
        ApiCall::SendToAll {
            message: s("all"),
            client_id_list: None,
            exclude: Some(ids(&["7f0000010fa000000003"])),
            raw: false,
        },
        ApiCall::SendToAll {
            message: s("some"),
            client_id_list: Some(ids(&["a", "b"])),
            exclude: None,
            raw: false,
        },
        ApiCall::SendToUid {
            uids: ids(&["u1"]),
            message: s("to-uid"),
            raw: false,
        },
        ApiCall::SendToUid {
            uids: ids(&["u1", "u2"]),
            message: s("to-uids"),
            raw: false,
        },
        ApiCall::SendToGroup {
            groups: ids(&["g1"]),
            message: map(&[("k", PhpValue::Int(1))]),
            exclude: None,
            raw: false,
        },
        ApiCall::SendToGroup {
            groups: ids(&["g1", "g2"]),
            message: s("to-groups"),
            exclude: Some(ids(&[CID])),
            raw: false,
        },
        ApiCall::BindUid {
            client_id: b(CID),
            uid: b("u1"),
        },
        ApiCall::UnbindUid {
            client_id: b(CID),
            uid: b("u1"),
        },
        ApiCall::JoinGroup {
            client_id: b(CID),
            group: b("g1"),
        },
        ApiCall::LeaveGroup {
            client_id: b(CID),
            group: b("g1"),
        },
        ApiCall::Ungroup { group: b("g2") },
        ApiCall::CloseClient {
            client_id: b("7f0000010fa000000004"),
            message: None,
        },
        ApiCall::DestroyClient {
            client_id: b("7f0000010fa000000005"),
        },
        ApiCall::SendToCurrentClient {
            message: PhpValue::Int(42),
            raw: false,
        },
        ApiCall::GetAllClientCount,
        ApiCall::GetAllGroupIdList,
        ApiCall::SendToCurrentClient {
            message: s("done"),
            raw: false,
        },
    ];
    let got: Vec<&ApiCall> = calls.iter().map(|(c, _)| c).collect();
    assert_eq!(got, expected.iter().collect::<Vec<_>>());
    let binary: Vec<bool> = calls.iter().map(|(_, bin)| *bin).collect();
    assert_eq!(binary.iter().filter(|x| **x).count(), 1);
    assert!(
        binary[1],
        "the binary flag of sendToClient travels beside the call"
    );
}

#[tokio::test]
async fn query_results_come_back_into_the_guest() {
    let (mut w, rec) = worker("apitour");
    w.handle(&message("query")).await.unwrap();
    let reply = json(&rec.reply_texts()[0]);
    assert_eq!(
        reply,
        json(
            r#"{"count":3,"ids":["7f0000010fa000000001","7f0000010fa000000002"],"session":{"name":"ann"}}"#
        )
    );
}

#[tokio::test]
async fn api_errors_reach_the_guest_as_status_codes() {
    let (mut w, rec) = worker("apitour");
    w.handle(&message("errors")).await.unwrap();
    let reply = json(&rec.reply_texts()[0]);
    assert_eq!(reply[0]["code"], -6, "unknown op");
    assert_eq!(reply[1]["code"], -3, "malformed client id from the handler");
    assert_eq!(reply[1]["message"], "malformed client id");
}

#[tokio::test]
async fn session_is_written_back_only_when_the_guest_changed_it() {
    let (mut w, rec) = worker("apitour");
    let mut e = message("session");
    e.session = map(&[("visits", PhpValue::Int(1))]);
    let out = w.handle(&e).await.unwrap();
    assert_eq!(
        out.session_write().cloned(),
        Some(map(&[("visits", PhpValue::Int(2))]))
    );
    assert!(out.fuel_used > 0);

    let mut e = message("plain echo");
    e.session = map(&[("visits", PhpValue::Int(1))]);
    assert_eq!(w.handle(&e).await.unwrap().session_write().cloned(), None);

    // Clearing a session writes back null; clearing a null session changes nothing.
    let mut e = message("session-clear");
    e.session = map(&[("x", PhpValue::Int(1))]);
    assert_eq!(
        w.handle(&e).await.unwrap().session_write().cloned(),
        Some(PhpValue::Null)
    );
    let e = message("session-clear");
    assert_eq!(w.handle(&e).await.unwrap().session_write().cloned(), None);

    // setSession/updateSession on the current client update $_SESSION and need no write-back.
    rec.clear();
    let out = w.handle(&message("session-api")).await.unwrap();
    assert_eq!(out.session_write().cloned(), None);
    assert_eq!(json(&rec.reply_texts()[0]), json(r#"{"a":1,"b":2}"#));
    assert!(matches!(rec.calls()[0].call, ApiCall::SetSession { .. }));
    assert!(matches!(rec.calls()[1].call, ApiCall::UpdateSession { .. }));
}

#[tokio::test]
async fn connect_close_and_websocket_events_reach_their_handlers() {
    let (mut w, rec) = worker("apitour");
    w.handle(&event(EventKind::Connect)).await.unwrap();
    assert_eq!(rec.reply_texts(), vec![format!("hello {CID}")]);

    let data = map(&[
        ("get", map(&[("room", s("7"))])),
        ("server", map(&[("REQUEST_URI", s("/?room=7"))])),
        ("cookie", PhpValue::Array(PhpArray::new())),
    ]);
    rec.clear();
    w.handle(&event(EventKind::WebSocketConnect { data }))
        .await
        .unwrap();
    assert_eq!(
        json(&rec.reply_texts()[0]),
        json(r#"{"get":{"room":"7"},"server":{"REQUEST_URI":"/?room=7"},"cookie":[]}"#)
    );

    rec.clear();
    let mut close = event(EventKind::Close);
    close.session = map(&[("name", s("ann"))]);
    let out = w.handle(&close).await.unwrap();
    // apitour's on_close marks the session; the host reports it as it does for any
    // event, and the worker core writes nothing back after a close (core tests).
    assert_eq!(
        out.session,
        map(&[("name", s("ann")), ("closed", PhpValue::Bool(true))])
    );
    assert_eq!(out.known_session, map(&[("name", s("ann"))]));
    let calls = rec.calls();
    let ApiCall::SendToGroup {
        groups,
        message: PhpValue::Str(m),
        ..
    } = &calls[0].call
    else {
        panic!("{calls:?}");
    };
    assert_eq!(groups, &vec![b("watch")]);
    assert_eq!(
        json(std::str::from_utf8(m).unwrap()),
        json(&format!(r#"{{"bye":"{CID}","session":{{"name":"ann"}}}}"#))
    );
}

#[tokio::test]
async fn guest_sees_client_info_time_and_logs_carry_the_client_id() {
    let (mut w, rec) = worker("apitour");
    w.handle(&message("ctx")).await.unwrap();
    assert_eq!(
        json(&rec.reply_texts()[0]),
        json(&format!(
            r#"{{"info":{{"client_id":"{CID}","remote_addr":"10.0.0.5","remote_port":50123,"gateway_addr":"127.0.0.1","gateway_port":8282}},"now":1700000000123,"starts":1}}"#
        ))
    );
    let logs = rec.logs.lock().unwrap().clone();
    assert_eq!(
        logs,
        vec![(LogLevel::Info, None, "apitour started".to_string())]
    );
}

#[tokio::test]
async fn a_query_suspends_only_its_own_instance() {
    let gate = Arc::new(tokio::sync::Notify::new());
    let rec_a = Recorder {
        gate: Some(gate.clone()),
        ..Recorder::default()
    };
    let (mut a, _) = worker_with("apitour", rec_a);
    let (mut other, rec_b) = worker("echo");
    // A's tour blocks in getAllClientCount until B has served an event: on one thread,
    // that only finishes if A's wait does not block the thread.
    let a_run = async { a.handle(&message("tour")).await };
    let b_run = async {
        other.handle(&message("meanwhile")).await.unwrap();
        gate.notify_one();
    };
    let (ra, ()) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(a_run, b_run)
    })
    .await
    .expect("no deadlock");
    ra.unwrap();
    assert_eq!(rec_b.reply_texts(), vec!["meanwhile"]);
}

#[tokio::test]
async fn runaway_loop_is_stopped_by_fuel_and_the_instance_recreated() {
    let (mut w1, rec1) = worker("spin");
    let (mut w2, rec2) = worker("spin");
    w1.handle(&message("a")).await.unwrap();
    w1.handle(&message("b")).await.unwrap();
    let err = w1.handle(&message("spin")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::OutOfFuel, "{err}");
    // The other instance keeps its state and serves on.
    w2.handle(&message("x")).await.unwrap();
    w2.handle(&message("y")).await.unwrap();
    // The looping one comes back fresh: its counter starts again.
    w1.handle(&message("c")).await.unwrap();
    assert_eq!(rec1.reply_texts(), vec!["a#1", "b#2", "c#1"]);
    assert_eq!(rec2.reply_texts(), vec!["x#1", "y#2"]);
    let stats = w1.stats();
    assert_eq!(
        (stats.events_ok, stats.events_failed, stats.instantiations),
        (3, 1, 2)
    );
}

#[tokio::test]
async fn allocating_without_end_hits_the_memory_limit() {
    let (mut w, rec) = worker("hog");
    w.handle(&message("before")).await.unwrap();
    let err = w.handle(&message("hog")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::MemoryLimit, "{err}");
    w.handle(&message("after")).await.unwrap();
    assert_eq!(rec.reply_texts(), vec!["before", "after"]);
}

#[tokio::test]
async fn panics_and_bad_accesses_trap_and_the_instance_recovers() {
    let (mut w, rec) = worker("crash");
    w.handle(&message("a")).await.unwrap();
    let err = w.handle(&message("panic")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Trap, "{err}");
    let logs = rec.logs.lock().unwrap().clone();
    let panic_line = logs.iter().find(|(_, _, t)| t.contains("asked to panic"));
    let (level, client, _) = panic_line.expect("the panic message reaches the log");
    assert_eq!((*level, client.clone()), (LogLevel::Error, Some(b(CID))));
    w.handle(&message("b")).await.unwrap();
    let err = w.handle(&message("oob")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Trap, "{err}");
    assert!(err.message.contains("out of bounds"), "{err}");
    let err = w.handle(&message("abort")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Trap, "{err}");
    w.handle(&message("c")).await.unwrap();
    assert_eq!(rec.reply_texts(), vec!["ok:a#1", "ok:b#1", "ok:c#1"]);
    assert_eq!(w.stats().instantiations, 4);
}

/// The reload compiles on another thread while events keep flowing; the swap happens
/// between two events. Every event is answered exactly once, by the old module up to the
/// swap and by the new one after it.
#[tokio::test]
async fn hot_reload_swaps_between_events_without_losing_or_doubling_any() {
    let dir = std::env::temp_dir().join(format!("gw-wasm-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let live = dir.join("worker.wasm");
    std::fs::copy(dist("echo"), &live).unwrap();
    let slot = PluginSlot::from_file(host(), &live).unwrap();
    let rec = Recorder::default();
    let mut w = WasmWorker::new(host(), &slot, rec.clone());
    let total = 60;
    let mut reload = None;
    for i in 0..total {
        if i == 10 {
            // Atomic replace: write beside, then rename over.
            let staged = dir.join("worker.wasm.new");
            std::fs::copy(dist("crash"), &staged).unwrap();
            std::fs::rename(&staged, &live).unwrap();
            reload = Some(slot.reload_if_changed().expect("file change noticed"));
        }
        if i == 40 {
            assert_eq!(reload.take().unwrap().wait().unwrap(), 2);
        }
        w.handle(&message(&format!("m{i}"))).await.unwrap();
    }
    let replies = rec.reply_texts();
    assert_eq!(replies.len(), total, "one reply per event: {replies:?}");
    let swap = replies
        .iter()
        .position(|r| r.starts_with("ok:"))
        .expect("the new module ran");
    assert!((10..=40).contains(&swap), "swap at {swap}");
    for (i, r) in replies.iter().enumerate() {
        let want = if i < swap {
            format!("m{i}")
        } else {
            format!("ok:m{i}#{}", i - swap + 1)
        };
        assert_eq!(r, &want);
    }
    assert_eq!(w.stats().reloads, 1);
    assert!(slot.reload_if_changed().is_none(), "no change, no reload");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn a_module_that_breaks_the_abi_is_refused_or_fails_alone() {
    let no_alloc = r#"(module (memory (export "memory") 1)
        (func (export "gw_abi_version") (result i32) (i32.const 1)))"#;
    assert!(matches!(
        host().compile(no_alloc.as_bytes(), "no_alloc"),
        Err(LoadError::Abi(_))
    ));
    let unknown_import = r#"(module (import "gw" "nope" (func))
        (memory (export "memory") 1)
        (func (export "gw_abi_version") (result i32) (i32.const 1))
        (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "gw_free") (param i32 i32)))"#;
    assert!(matches!(
        host().compile(unknown_import.as_bytes(), "unknown_import"),
        Err(LoadError::Link(_))
    ));
    let base = |version: i32, body: &str| {
        format!(
            r#"(module
            (import "gw" "send_to_current_client" (func $send (param i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (func (export "gw_abi_version") (result i32) (i32.add (i32.const 0) (i32.const {version})))
            (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
            (func (export "gw_free") (param i32 i32))
            (func (export "on_message") (param i32 i32 i32 i32 i32) {body}))"#
        )
    };
    // Computed, so only the start sees it (a constant 2 is refused by compile's ABI check).
    let v2 = host().compile(base(2, "").as_bytes(), "v2").unwrap();
    let mut w = WasmWorker::new(host(), &PluginSlot::new(host(), v2), Recorder::default());
    let err = w.handle(&message("x")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Start, "{err}");
    assert!(err.message.contains("ABI version 2"), "{err}");

    let oob = base(
        1,
        "(drop (call $send (i32.const 65530) (i32.const 100) (i32.const 0)))",
    );
    let oob = host().compile(oob.as_bytes(), "oob").unwrap();
    let rec = Recorder::default();
    let mut w = WasmWorker::new(host(), &PluginSlot::new(host(), oob), rec.clone());
    let err = w.handle(&message("x")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Abi, "{err}");
    assert!(rec.calls().is_empty(), "nothing sent for a bad buffer");
}

#[tokio::test]
async fn chat_rooms_nicknames_and_private_messages() {
    let (mut w, rec) = worker("chat");
    let out = w
        .handle(&message(r#"{"type":"login","room":"lobby","name":"ann"}"#))
        .await
        .unwrap();
    let session = map(&[("room", s("lobby")), ("name", s("ann"))]);
    assert_eq!(out.session_write().cloned(), Some(session.clone()));
    let calls: Vec<ApiCall> = rec.calls().into_iter().map(|r| r.call).collect();
    assert_eq!(
        calls[0],
        ApiCall::BindUid {
            client_id: b(CID),
            uid: b("ann")
        }
    );
    assert!(
        matches!(&calls[1], ApiCall::SendToGroup { groups, .. } if groups == &vec![b("lobby")])
    );
    assert_eq!(
        calls[2],
        ApiCall::JoinGroup {
            client_id: b(CID),
            group: b("lobby")
        }
    );
    assert_eq!(
        json(&rec.reply_texts()[0]),
        json(r#"{"type":"welcome","room":"lobby","name":"ann","members":["ann","zed"]}"#)
    );

    rec.clear();
    let mut say = message(r#"{"type":"say","text":"hi all"}"#);
    say.session = session.clone();
    assert_eq!(w.handle(&say).await.unwrap().session_write().cloned(), None);
    let ApiCall::SendToGroup {
        groups,
        message: PhpValue::Str(m),
        exclude: None,
        ..
    } = &rec.calls()[0].call
    else {
        panic!("{:?}", rec.calls());
    };
    assert_eq!(groups, &vec![b("lobby")]);
    assert_eq!(
        json(std::str::from_utf8(m).unwrap()),
        json(r#"{"type":"say","from":"ann","text":"hi all","time":1700000000123}"#)
    );

    rec.clear();
    let mut whisper = message(r#"{"type":"whisper","to":"bob","text":"psst"}"#);
    whisper.session = session.clone();
    w.handle(&whisper).await.unwrap();
    let calls: Vec<ApiCall> = rec.calls().into_iter().map(|r| r.call).collect();
    assert_eq!(calls[0], ApiCall::IsUidOnline { uid: b("bob") });
    assert_eq!(
        calls[1],
        ApiCall::SendToUid {
            uids: vec![b("bob")],
            message: s(r#"{"type":"whisper","from":"ann","text":"psst"}"#),
            raw: false
        }
    );
    assert_eq!(
        rec.reply_texts(),
        vec![r#"{"type":"whispered","to":"bob"}"#]
    );

    rec.clear();
    let mut offline = message(r#"{"type":"whisper","to":"carl","text":"?"}"#);
    offline.session = session.clone();
    w.handle(&offline).await.unwrap();
    assert_eq!(
        rec.reply_texts(),
        vec![r#"{"type":"error","reason":"carl is not online"}"#]
    );

    rec.clear();
    w.handle(&message("not json")).await.unwrap();
    w.handle(&message(r#"{"type":"say","text":"x"}"#))
        .await
        .unwrap();
    assert_eq!(
        rec.reply_texts(),
        vec![
            r#"{"type":"error","reason":"messages are JSON objects"}"#,
            r#"{"type":"error","reason":"login first"}"#
        ]
    );

    rec.clear();
    let mut close = event(EventKind::Close);
    close.session = session;
    w.handle(&close).await.unwrap();
    assert_eq!(
        rec.calls()[0].call,
        ApiCall::SendToGroup {
            groups: vec![b("lobby")],
            message: s(r#"{"type":"leave","room":"lobby","name":"ann"}"#),
            exclude: None,
            raw: false
        }
    );
}

/// Production configuration: the wall-clock epoch deadline stops a loop that has fuel
/// to burn for minutes.
#[tokio::test]
async fn epoch_deadline_is_the_wall_clock_backstop() {
    let config = HostConfig {
        fuel_per_event: u64::MAX / 2,
        epoch_deadline: Some(Duration::from_millis(200)),
        epoch_tick: Duration::from_millis(10),
        ..HostConfig::default()
    };
    let host = WasmHost::new(config).unwrap();
    let plugin = host.load_file(&dist("spin")).unwrap();
    let rec = Recorder::default();
    let mut w = WasmWorker::new(&host, &PluginSlot::new(&host, plugin), rec.clone());
    let started = std::time::Instant::now();
    let err = w.handle(&message("spin")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
    assert!(started.elapsed() < Duration::from_secs(20));
    w.handle(&message("ok")).await.unwrap();
    assert_eq!(rec.reply_texts(), vec!["ok#1"]);

    // Waiting for a slow query is not guest time: the deadline is re-armed after each call.
    let slow = Recorder {
        delay: Some(Duration::from_millis(600)),
        ..Recorder::default()
    };
    let plugin = host.load_file(&dist("apitour")).unwrap();
    let mut w = WasmWorker::new(&host, &PluginSlot::new(&host, plugin), slow.clone());
    w.handle(&message("tour")).await.unwrap();
    assert_eq!(slow.reply_texts().last().unwrap(), "done");
}

/// Rough numbers for the report (run with `--ignored --nocapture`): compile, instantiate
/// (on-demand and pooling), and one echo event host → guest → host.
#[tokio::test]
#[ignore = "measurement, not a check"]
async fn measure_instantiation_and_per_event_overhead() {
    for pooling in [None, Some(16)] {
        let config = HostConfig {
            pooling_instances_max: pooling,
            ..test_config()
        };
        let host = WasmHost::<Recorder>::new(config).unwrap();
        let t = std::time::Instant::now();
        let plugin = host.load_file(&dist("echo")).unwrap();
        let compile = t.elapsed();
        let slot = PluginSlot::new(&host, plugin);
        let rounds = 200u32;
        let t = std::time::Instant::now();
        for _ in 0..rounds {
            let mut w = WasmWorker::new(&host, &slot, Recorder::default());
            w.start(0).await.unwrap();
        }
        let instantiate = t.elapsed() / rounds;
        let mut w = WasmWorker::new(&host, &slot, Recorder::default());
        w.start(0).await.unwrap();
        let e = message("0123456789abcdef0123456789abcdef");
        let events = 20_000u32;
        let t = std::time::Instant::now();
        for _ in 0..events {
            w.handle(&e).await.unwrap();
        }
        let per_event = t.elapsed() / events;
        eprintln!(
            "pooling={pooling:?}: compile echo {compile:?}, instantiate+start {instantiate:?}, \
             echo event {per_event:?}"
        );
    }
}

/// The probe worker (spec/ops.md): request/reply shapes, normalisation, reply-first ops.
#[tokio::test]
async fn probe_speaks_the_op_language() {
    let (mut w, rec) = worker("probe");
    w.handle(&event(EventKind::Connect)).await.unwrap();
    w.handle(&message("just text")).await.unwrap();
    let raw = event(EventKind::Message {
        body: Bytes::from_static(&[0xff, 0xfe, 0x00]),
        binary: true,
    });
    w.handle(&raw).await.unwrap();
    w.handle(&message(
        r#"{"op":"echo","args":{"data":{"a":[1,"x/é"]}},"id":7}"#,
    ))
    .await
    .unwrap();
    w.handle(&message(r#"{"op":"nope","id":"q"}"#))
        .await
        .unwrap();
    w.handle(&message(
        r#"{"op":"getClientIdListByGroup","args":{"group":"g"}}"#,
    ))
    .await
    .unwrap();
    w.handle(&message(
        r#"{"op":"getClientSessionsByGroup","args":{"group":"g"},"id":1}"#,
    ))
    .await
    .unwrap();
    w.handle(&message(
        r#"{"op":"sendToGroup","args":{"group":"","message":"m"},"id":2}"#,
    ))
    .await
    .unwrap();
    w.handle(&message(
        r#"{"op":"multi","args":{"ops":[{"op":"echo","args":{"data":1}},{"op":"isUidOnline","args":{"uid":"bob"}},{"op":"x"}]},"id":3}"#,
    ))
    .await
    .unwrap();
    let md5 = "266e75fcf28db213599bf0f3f46976a8"; // md5(ff fe 00), from Python's hashlib
    let got = rec.reply_texts();
    let expected = [
        format!(r#"{{"event":"connect","client_id":"{CID}"}}"#),
        "just text".to_string(),
        format!(r#"{{"event":"raw_binary","len":3,"md5":"{md5}"}}"#),
        r#"{"id":7,"ok":true,"result":{"a":[1,"x/é"]}}"#.to_string(),
        r#"{"id":"q","ok":false,"error":"unknown op nope"}"#.to_string(),
        r#"{"id":null,"ok":true,"result":["7f0000010fa000000001","7f0000010fa000000002"]}"#
            .to_string(),
        format!(
            // The caller's own entry is its $_SESSION (null here), not the gateway's copy.
            r#"{{"id":1,"ok":true,"result":{{"7f0000010fa000000001":{{"name":"zed"}},"{CID}":{{}}}}}}"#
        ),
        r#"{"id":2,"ok":true,"result":false}"#.to_string(),
        r#"{"id":3,"ok":true,"result":[{"ok":true,"result":1},{"ok":true,"result":1},{"ok":false,"error":"unknown op x"}]}"#
            .to_string(),
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for (g, e) in got.iter().zip(&expected) {
        assert_eq!(g, e);
    }
    // Nothing was sent for the empty group.
    assert!(!rec
        .calls()
        .iter()
        .any(|r| matches!(r.call, ApiCall::SendToGroup { .. })));

    // sleep goes to the handler's clock, clamped to 2 s.
    rec.clear();
    w.handle(&message(r#"{"op":"sleep","args":{"ms":20},"id":8}"#))
        .await
        .unwrap();
    w.handle(&message(r#"{"op":"sleep","args":{"ms":-5},"id":9}"#))
        .await
        .unwrap();
    assert_eq!(
        rec.reply_texts(),
        vec![
            r#"{"id":8,"ok":true,"result":null}"#,
            r#"{"id":9,"ok":true,"result":null}"#
        ]
    );
    assert_eq!(
        *rec.slept.lock().unwrap(),
        vec![Duration::from_millis(20), Duration::ZERO]
    );

    // $_SESSION ops write back; closeCurrentClient replies before closing.
    rec.clear();
    let out = w
        .handle(&message(
            r#"{"op":"sessionSet","args":{"key":"k","value":[1,2]},"id":4}"#,
        ))
        .await
        .unwrap();
    let mut want = PhpArray::new();
    want.insert(
        PhpKey::from_bytes(b"k"),
        list(vec![PhpValue::Int(1), PhpValue::Int(2)]),
    );
    assert_eq!(out.session_write().cloned(), Some(PhpValue::Array(want)));
    w.handle(&message(
        r#"{"op":"closeCurrentClient","args":{"message":"bye"},"id":5}"#,
    ))
    .await
    .unwrap();
    let calls: Vec<ApiCall> = rec.calls().into_iter().map(|r| r.call).collect();
    assert_eq!(
        &calls[1..],
        &[
            ApiCall::SendToCurrentClient {
                message: s(r#"{"id":5,"ok":true,"result":null}"#),
                raw: false
            },
            ApiCall::CloseCurrentClient {
                message: Some(s("bye"))
            }
        ]
    );
}

/// A handler that only records sends: everything else keeps the trait's defaults.
#[derive(Default)]
struct Bare {
    sent: Arc<Mutex<Vec<PhpValue>>>,
}

impl ApiHandler for Bare {
    async fn call(&mut self, request: ApiRequest) -> ApiResult {
        if let ApiCall::SendToCurrentClient { message, .. } = request.call {
            self.sent.lock().unwrap().push(message);
        }
        Ok(PhpValue::Null)
    }
}

/// Pooling allocator, a handler without a clock, and more instantiations than pool slots.
#[tokio::test]
async fn pooled_host_with_a_default_handler() {
    let config = HostConfig {
        pooling_instances_max: Some(2),
        ..test_config()
    };
    let host = WasmHost::<Bare>::new(config).unwrap();
    let probe = host.load_file(&dist("probe")).unwrap();
    let slot = PluginSlot::new(&host, probe);
    let bare = Bare::default();
    let sent = bare.sent.clone();
    let mut w = WasmWorker::new(&host, &slot, bare);
    w.handle(&message(r#"{"op":"sleep","args":{"ms":5},"id":1}"#))
        .await
        .unwrap();
    assert_eq!(
        *sent.lock().unwrap(),
        vec![s(
            r#"{"id":1,"ok":false,"error":"sleep is not offered by this host"}"#
        )]
    );
    // Each crash frees its pool slot: ten recreations through a pool of two.
    let crash = host.load_file(&dist("crash")).unwrap();
    let mut w = WasmWorker::new(&host, &PluginSlot::new(&host, crash), Bare::default());
    for _ in 0..10 {
        w.handle(&message("x")).await.unwrap();
        assert!(w.handle(&message("panic")).await.is_err());
    }
    assert_eq!(w.stats().instantiations, 10);
}

/// A replacement that does not compile leaves the running module in place; the file
/// watcher picks up the next good one.
#[tokio::test]
async fn broken_replacement_keeps_the_old_module_and_the_watcher_reloads() {
    let dir = std::env::temp_dir().join(format!("gw-wasm-watch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let live = dir.join("worker.wasm");
    std::fs::copy(dist("echo"), &live).unwrap();
    let slot = PluginSlot::from_file(host(), &live).unwrap();
    let rec = Recorder::default();
    let mut w = WasmWorker::new(host(), &slot, rec.clone());
    w.handle(&message("a")).await.unwrap();

    std::fs::write(&live, b"\0asm garbage").unwrap();
    assert!(matches!(slot.reload().wait(), Err(LoadError::Compile(_))));
    assert_eq!(slot.generation(), 1);
    w.handle(&message("b")).await.unwrap();

    let _watcher = slot.watch(Duration::from_millis(10));
    let staged = dir.join("next.wasm");
    std::fs::copy(dist("crash"), &staged).unwrap();
    std::fs::rename(&staged, &live).unwrap();
    let waited = std::time::Instant::now();
    while slot.generation() == 1 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "watcher never reloaded"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    w.handle(&message("c")).await.unwrap();
    assert_eq!(rec.reply_texts(), vec!["a", "b", "ok:c#1"]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A module that compiles and links but traps in `on_worker_start`.
fn failing_start(name: &str) -> Plugin<Recorder> {
    let wat = r#"(module
        (memory (export "memory") 1)
        (func (export "gw_abi_version") (result i32) (i32.const 1))
        (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
        (func (export "gw_free") (param i32 i32))
        (func (export "on_worker_start") unreachable)
        (func (export "on_message") (param i32 i32 i32 i32 i32)))"#;
    host().compile(wat.as_bytes(), name).unwrap()
}

#[tokio::test]
async fn a_reloaded_module_that_fails_to_start_is_rolled_back() {
    let slot = PluginSlot::new(host(), plugin("echo"));
    let rec = Recorder::default();
    let mut w = WasmWorker::new(host(), &slot, rec.clone());
    w.handle(&message("a")).await.unwrap();

    // Two broken modules in a row, neither ever started: back to echo, and the event that
    // found the swap is handled by it.
    slot.replace(failing_start("bad1"));
    slot.replace(failing_start("bad2"));
    w.handle(&message("b")).await.unwrap();
    assert_eq!(slot.generation(), 4, "echo again, under a new generation");
    assert_eq!(w.stats().rollbacks, 1);

    // A good module after that is taken, and a broken one after it rolls back to it.
    slot.replace(plugin("crash"));
    w.handle(&message("c")).await.unwrap();
    slot.replace(failing_start("bad3"));
    w.handle(&message("d")).await.unwrap();
    assert_eq!(w.stats().rollbacks, 2);
    assert_eq!(rec.reply_texts(), vec!["a", "b", "ok:c#1", "ok:d#1"]);
    assert_eq!(
        w.stats().events_failed,
        0,
        "no event lost to the broken modules"
    );

    // A module that never started anywhere has nothing to roll back to: its failures are
    // the event's.
    let fresh = PluginSlot::new(host(), failing_start("bad-first"));
    let mut w = WasmWorker::new(host(), &fresh, Recorder::default());
    let err = w.handle(&message("x")).await.unwrap_err();
    assert_eq!(err.kind, FailureKind::Start);
    assert_eq!(w.stats().rollbacks, 0);
}
