//! The `probe` guest (`wasm-workers/examples/probe`, built into `wasm-workers/dist/probe.wasm`
//! by `scripts/build-wasm`) against `spec/ops.md`, op group by op group: the exact reply
//! bytes it sends with `sendToCurrentClient` and the exact Gateway API calls it makes, with
//! a scripted handler that answers as the PHP library would.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::php_values::{b, list, map, s};
use bytes::Bytes;
use gatewayworker::api::{ApiCall, ApiResult};
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::testing::vectors::{php, section};
use gatewayworker::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind, HostConfig, Plugin, PluginSlot, WasmHost,
    WasmWorker, WorkerEvent,
};

/// The calling client.
const CID: &str = "7f0000010fa000000009";
/// Another client.
const OTHER: &str = "7f0000010fa000000001";

/// How the scripted gateway answers one call.
type Answer = Arc<dyn Fn(&ApiCall) -> ApiResult + Send + Sync>;

/// A scripted Gateway API: answers with `answer`, records every request in order.
#[derive(Clone)]
struct Script {
    calls: Arc<Mutex<Vec<ApiRequest>>>,
    answer: Answer,
    /// `Some`: `gw.sleep_ms` is offered and recorded here; `None`: not offered.
    slept: Option<Arc<Mutex<Vec<Duration>>>>,
}

impl ApiHandler for Script {
    async fn call(&mut self, request: ApiRequest) -> ApiResult {
        let answer = (self.answer)(&request.call);
        self.calls.lock().unwrap().push(request);
        answer
    }

    async fn sleep(&mut self, duration: Duration) -> bool {
        match &self.slept {
            Some(slept) => {
                slept.lock().unwrap().push(duration);
                true
            }
            None => false,
        }
    }
}

/// What the original library returns for a call nobody scripted: sends `true`, the rest null.
fn library_default(call: &ApiCall) -> ApiResult {
    Ok(match call {
        ApiCall::SendToClient { .. }
        | ApiCall::SendToCurrentClient { .. }
        | ApiCall::CloseClient { .. }
        | ApiCall::DestroyClient { .. }
        | ApiCall::CloseCurrentClient { .. }
        | ApiCall::DestroyCurrentClient => PhpValue::Bool(true),
        _ => PhpValue::Null,
    })
}

fn host() -> &'static WasmHost<Script> {
    static HOST: OnceLock<WasmHost<Script>> = OnceLock::new();
    HOST.get_or_init(|| {
        let config = HostConfig {
            fuel_per_event: 200_000_000,
            memory_size_max: 64 << 20,
            ..HostConfig::deterministic()
        };
        WasmHost::new(config).expect("host")
    })
}

fn plugin() -> Plugin<Script> {
    static PLUGIN: OnceLock<Plugin<Script>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| {
            let path =
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wasm-workers/dist/probe.wasm");
            assert!(
                path.exists(),
                "run scripts/build-wasm to build {}",
                path.display()
            );
            host().load_file(&path).expect("probe.wasm loads")
        })
        .clone()
}

/// A probe instance and the handler it calls.
struct Probe {
    worker: WasmWorker<Script>,
    script: Script,
    /// `$_SESSION` delivered with the next events.
    session: PhpValue,
}

impl Probe {
    fn new() -> Probe {
        Probe::answering(library_default)
    }

    fn answering(answer: impl Fn(&ApiCall) -> ApiResult + Send + Sync + 'static) -> Probe {
        let script = Script {
            calls: Arc::default(),
            answer: Arc::new(answer),
            slept: None,
        };
        let slot = PluginSlot::new(host(), plugin());
        Probe {
            worker: WasmWorker::new(host(), &slot, script.clone()),
            script,
            session: PhpValue::Null,
        }
    }

    /// Runs one event; returns the API requests it made, in order.
    async fn event(&mut self, kind: EventKind) -> Vec<ApiRequest> {
        let event = WorkerEvent {
            kind,
            client: ClientInfo {
                client_id: Bytes::from_static(CID.as_bytes()),
                remote_addr: "10.0.0.5".into(),
                remote_port: 50123,
                gateway_addr: "127.0.0.1".into(),
                gateway_port: 8282,
            },
            session: self.session.clone(),
            now_ms: 1_700_000_000_000,
        };
        self.script.calls.lock().unwrap().clear();
        let outcome = self.worker.handle(&event).await.expect("event runs");
        if let Some(written) = outcome.session_write().cloned() {
            self.session = written;
        }
        std::mem::take(&mut *self.script.calls.lock().unwrap())
    }

    /// Sends `body` as a text message; returns the calls it made.
    async fn send(&mut self, body: &[u8]) -> Vec<ApiRequest> {
        let body = Bytes::copy_from_slice(body);
        self.event(EventKind::Message {
            body,
            binary: false,
        })
        .await
    }

    /// Sends a request; returns the calls other than messages to the caller, and those
    /// messages as text (pushes first, the reply last).
    async fn op(&mut self, request: &str) -> (Vec<ApiCall>, Vec<String>) {
        let calls = self.send(request.as_bytes()).await;
        split(calls)
    }

    /// Sends a request that must make no other call; returns its only message.
    async fn reply(&mut self, request: &str) -> String {
        let (calls, mut texts) = self.op(request).await;
        assert!(calls.is_empty(), "{request}: unexpected calls {calls:?}");
        assert_eq!(texts.len(), 1, "{request}: {texts:?}");
        texts.remove(0)
    }
}

/// Splits requests into other calls and texts sent to the current client.
fn split(calls: Vec<ApiRequest>) -> (Vec<ApiCall>, Vec<String>) {
    let mut other = Vec::new();
    let mut texts = Vec::new();
    for r in calls {
        assert!(!r.binary, "the probe never sends binary frames: {r:?}");
        match r.call {
            ApiCall::SendToCurrentClient {
                message: PhpValue::Str(m),
                raw: false,
            } => texts.push(String::from_utf8(m.to_vec()).expect("replies are UTF-8")),
            call => other.push(call),
        }
    }
    (other, texts)
}

fn empty() -> PhpValue {
    PhpValue::Array(PhpArray::new())
}

// ---------------------------------------------------------------- §1 events

#[tokio::test]
async fn events_connect_websocket_data_and_closewatch() {
    let mut p = Probe::new();
    let (calls, texts) = split(p.event(EventKind::Connect).await);
    assert!(calls.is_empty());
    assert_eq!(
        texts,
        [format!(r#"{{"event":"connect","client_id":"{CID}"}}"#)]
    );

    assert_eq!(
        p.reply(r#"{"op":"getWebSocketData","id":1}"#).await,
        r#"{"id":1,"ok":true,"result":null}"#
    );
    let data = map(&[
        ("get", map(&[("room", s("7")), ("a/b", s("é"))])),
        (
            "server",
            map(&[
                ("REQUEST_METHOD", s("GET")),
                ("QUERY_STRING", s("room=7")),
                ("HTTP_X", map(&[("nested", empty())])),
            ]),
        ),
        ("cookie", empty()),
    ]);
    let calls = p.event(EventKind::WebSocketConnect { data }).await;
    assert!(
        calls.is_empty(),
        "the handshake is stored silently: {calls:?}"
    );
    // Each part normalised like a session: top-level object in PHP order, nested plain.
    assert_eq!(
        p.reply(r#"{"op":"getWebSocketData","id":2}"#).await,
        r#"{"id":2,"ok":true,"result":{"get":{"room":"7","a/b":"é"},"server":{"REQUEST_METHOD":"GET","QUERY_STRING":"room=7","HTTP_X":{"nested":[]}},"cookie":{}}}"#
    );

    p.session = map(&[("name", s("ann")), ("tags", list(vec![s("x")]))]);
    let calls = p.event(EventKind::Close).await;
    assert_eq!(
        calls.into_iter().map(|r| r.call).collect::<Vec<_>>(),
        [ApiCall::SendToGroup {
            groups: vec![b("closewatch")],
            message: s(&format!(
                r#"{{"event":"close","client_id":"{CID}","session":{{"name":"ann","tags":["x"]}}}}"#
            )),
            exclude: None,
            raw: false,
        }]
    );
    // The handshake data is forgotten with the client.
    p.session = PhpValue::Null;
    assert_eq!(
        p.reply(r#"{"op":"getWebSocketData","id":3}"#).await,
        r#"{"id":3,"ok":true,"result":null}"#
    );
    let calls = p.event(EventKind::Close).await;
    assert_eq!(
        calls[0].call,
        ApiCall::SendToGroup {
            groups: vec![b("closewatch")],
            message: s(&format!(
                r#"{{"event":"close","client_id":"{CID}","session":null}}"#
            )),
            exclude: None,
            raw: false,
        }
    );
    p.session = empty();
    let calls = p.event(EventKind::Close).await;
    let ApiCall::SendToGroup { message, .. } = &calls[0].call else {
        panic!("{calls:?}")
    };
    assert_eq!(
        message,
        &s(&format!(
            r#"{{"event":"close","client_id":"{CID}","session":{{}}}}"#
        ))
    );
}

// ---------------------------------------------------------------- §2 plain echo

#[tokio::test]
async fn messages_that_are_not_op_requests_are_echoed() {
    let mut p = Probe::new();
    for text in [
        "hello",
        "",
        "[1,2]",
        r#"{"op":5}"#,
        r#"{"op":null,"args":{}}"#,
        r#"{"Op":"echo"}"#,
        r#"["op","echo"]"#,
        r#"{"op":"echo","args":{"data":01}}"#,
        r#"{"op":"echo"} trailing"#,
        r#"{"op":"echo","args":{"data":1.}}"#,
        "{\"op\":\"echo\",\"s\":\"\\ud800\"}",
        "\u{feff}{\"op\":\"echo\"}",
        "é €",
    ] {
        let (calls, texts) = p.op(text).await;
        assert!(calls.is_empty());
        assert_eq!(texts, [text], "echoed byte for byte");
    }
    // Binary frames are the same bytes: an op request in a binary frame is an op request.
    let calls = p
        .event(EventKind::Message {
            body: b(r#"{"op":"echo","args":{"data":"bin"},"id":1}"#),
            binary: true,
        })
        .await;
    assert_eq!(split(calls).1, [r#"{"id":1,"ok":true,"result":"bin"}"#]);
    // Invalid UTF-8: length and md5 (digests from Python's hashlib).
    let all: Vec<u8> = (0..=255).collect();
    let cases: [(&[u8], &str); 4] = [
        (&[0xff, 0xfe, 0x00], "266e75fcf28db213599bf0f3f46976a8"),
        (&[0x80], "8d39dd7eef115ea6975446ef4082951f"),
        (b"\xc3\x28hello", "3c128ebc21fbe179fc9ff4fbbaf10b5c"),
        (&all, "e2c865db4162bed963bfaa9ef6ac18f0"),
    ];
    for (bytes, md5) in cases {
        for binary in [false, true] {
            let calls = p
                .event(EventKind::Message {
                    body: Bytes::copy_from_slice(bytes),
                    binary,
                })
                .await;
            assert_eq!(
                split(calls).1,
                [format!(
                    r#"{{"event":"raw_binary","len":{},"md5":"{md5}"}}"#,
                    bytes.len()
                )]
            );
        }
    }
}

// ---------------------------------------------------------------- §3 reply shape

#[tokio::test]
async fn replies_echo_the_id_and_keep_member_order() {
    let mut p = Probe::new();
    let cases = [
        (
            r#"{"op":"echo","args":{"data":1},"id":7}"#,
            r#"{"id":7,"ok":true,"result":1}"#,
        ),
        (
            r#"{"id":"x","args":{"data":true},"op":"echo"}"#,
            r#"{"id":"x","ok":true,"result":true}"#,
        ),
        (r#"{"op":"echo"}"#, r#"{"id":null,"ok":true,"result":null}"#),
        (
            r#"{"op":"echo","id":null,"args":[5]}"#,
            r#"{"id":null,"ok":true,"result":null}"#,
        ),
        (
            r#"{"op":"echo","args":"no","id":[1,{"b":1,"a":2}]}"#,
            r#"{"id":[1,{"b":1,"a":2}],"ok":true,"result":null}"#,
        ),
        // json_decode($m, true): an empty object is an empty PHP array, encoded `[]`.
        (
            r#"{"op":"echo","id":{},"args":{"data":{}}}"#,
            r#"{"id":[],"ok":true,"result":[]}"#,
        ),
        (
            r#"{"op":"echo","id":1.0,"args":{"data":{"0":"a","1":"b"}}}"#,
            r#"{"id":1,"ok":true,"result":["a","b"]}"#,
        ),
        (
            r#"{"op":"nope","id":2}"#,
            r#"{"id":2,"ok":false,"error":"unknown op nope"}"#,
        ),
        (
            r#"{"op":"ECHO","id":3}"#,
            r#"{"id":3,"ok":false,"error":"unknown op ECHO"}"#,
        ),
        // Duplicate members: the last wins, as in PHP.
        (
            r#"{"op":"nope","op":"echo","args":{"data":"a\/b \u00e9 \u2028 \ud83d\ude00"},"id":4}"#,
            "{\"id\":4,\"ok\":true,\"result\":\"a/b é \\u2028 😀\"}",
        ),
        (
            " \n{\"op\":\"echo\",\"args\":{\"data\":\"\\b\\f\\n\\r\\t\\u0001\\\"\\\\\"}}\r\n",
            r#"{"id":null,"ok":true,"result":"\b\f\n\r\t\u0001\"\\"}"#,
        ),
        (
            r#"{"op":"echo","args":{"data":[-0,12345678901234567890,-9223372036854775808]}}"#,
            r#"{"id":null,"ok":true,"result":[0,1.2345678901234567e+19,-9223372036854775808]}"#,
        ),
    ];
    for (request, want) in cases {
        assert_eq!(p.reply(request).await, want, "{request}");
    }
}

/// Floats print as PHP's json_encode prints them (vectors `scalar_body_float`, field `json`).
#[tokio::test]
async fn floats_are_encoded_like_php_json_encode() {
    let mut p = Probe::new();
    let mut checked = 0;
    for v in section("scalar_body_float") {
        let (Some(want), Some(literal)) = (
            v["expected"]["json"].as_str(),
            v["input"]["value"]["v"].as_str(),
        ) else {
            continue; // INF and NAN: json_encode fails; no JSON literal either
        };
        let request = format!(r#"{{"op":"echo","args":{{"data":{literal}}}}}"#);
        assert_eq!(
            p.reply(&request).await,
            format!(r#"{{"id":null,"ok":true,"result":{want}}}"#),
            "{}",
            v["name"]
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} float vectors");
    // A float out of range parses to INF (as in PHP), which json_encode refuses: PHP sends
    // json_encode's false, an empty message.
    assert_eq!(p.reply(r#"{"op":"echo","args":{"data":1e400}}"#).await, "");
}

#[tokio::test]
async fn nesting_follows_php_json_limits() {
    let mut p = Probe::new();
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    // The request nests data two levels down: 510 levels decode (512 in all) and echo.
    let request = format!(r#"{{"op":"echo","args":{{"data":{}}}}}"#, nested(510));
    assert_eq!(
        p.reply(&request).await,
        format!(r#"{{"id":null,"ok":true,"result":{}}}"#, nested(510))
    );
    // 513 levels do not decode (json_decode's depth 512): plain echo.
    let request = format!(r#"{{"op":"echo","args":{{"data":{}}}}}"#, nested(511));
    assert_eq!(p.reply(&request).await, request);
}

// ---------------------------------------------------------------- §5.1 plumbing

#[tokio::test]
async fn context_and_sleep() {
    let mut p = Probe::new();
    assert_eq!(
        p.reply(r#"{"op":"context","id":1}"#).await,
        format!(
            r#"{{"id":1,"ok":true,"result":{{"client_id":"{CID}","remote_addr":"10.0.0.5","remote_port":50123,"gateway_addr":"127.0.0.1","gateway_port":8282}}}}"#
        )
    );
    // A handler without a clock offers no sleep: ok:false, nothing faked.
    assert_eq!(
        p.reply(r#"{"op":"sleep","args":{"ms":5},"id":2}"#).await,
        r#"{"id":2,"ok":false,"error":"sleep is not offered by this host"}"#
    );
    let slept = Arc::new(Mutex::new(Vec::new()));
    let mut p = Probe::new();
    p.script.slept = Some(slept.clone());
    let slot = PluginSlot::new(host(), plugin());
    p.worker = WasmWorker::new(host(), &slot, p.script.clone());
    for (ms, id) in [("20", 3), ("-5", 4), ("99999", 5), ("7.9", 6), ("null", 7)] {
        let request = format!(r#"{{"op":"sleep","args":{{"ms":{ms}}},"id":{id}}}"#);
        assert_eq!(
            p.reply(&request).await,
            format!(r#"{{"id":{id},"ok":true,"result":null}}"#)
        );
    }
    let ms = |n| Duration::from_millis(n);
    assert_eq!(
        *slept.lock().unwrap(),
        [ms(20), ms(0), ms(2000), ms(7), ms(0)]
    );
}

#[tokio::test]
async fn multi_runs_sub_ops_in_order_in_one_event() {
    let mut p = Probe::answering(|call| match call {
        ApiCall::IsUidOnline { uid } => Ok(PhpValue::Int((uid == "bob").into())),
        other => library_default(other),
    });
    let (calls, texts) = p
        .op(r#"{"op":"multi","id":9,"args":{"ops":[
            {"op":"echo","args":{"data":[1]}},
            {"op":"sendToCurrentClient","args":{"message":"push"}},
            {"op":"isUidOnline","args":{"uid":"bob"}},
            {"op":"isUidOnline"},
            {"op":"nope"},
            "junk",
            {"args":{}},
            {"op":"multi","args":{"ops":[{"op":"echo","args":{"data":"inner"}}]}},
            {"op":"echo","args":"not an object"}
        ]}}"#)
        .await;
    assert_eq!(calls, [ApiCall::IsUidOnline { uid: b("bob") }]);
    assert_eq!(
        texts,
        [
            "push",
            r#"{"id":9,"ok":true,"result":[{"ok":true,"result":[1]},{"ok":true,"result":true},{"ok":true,"result":1},{"ok":false,"error":"missing argument uid"},{"ok":false,"error":"unknown op nope"},{"ok":false,"error":"a sub-op is {\"op\":..,\"args\":{..}}"},{"ok":false,"error":"a sub-op is {\"op\":..,\"args\":{..}}"},{"ok":true,"result":[{"ok":true,"result":"inner"}]},{"ok":true,"result":null}]}"#
        ]
    );
    assert_eq!(
        p.reply(r#"{"op":"multi","args":{"ops":[]},"id":1}"#).await,
        r#"{"id":1,"ok":true,"result":[]}"#
    );
    for bad in [
        r#"{"op":"multi","id":1}"#,
        r#"{"op":"multi","args":{"ops":"x"},"id":1}"#,
    ] {
        assert!(p
            .reply(bad)
            .await
            .starts_with(r#"{"id":1,"ok":false,"error":"#));
    }
}

// ---------------------------------------------------------------- §5.2 sending

#[tokio::test]
async fn sending_ops_call_the_api_with_php_shapes() {
    let mut p = Probe::answering(|call| match call {
        ApiCall::SendToClient { client_id, .. } if client_id.len() != 20 => {
            Ok(PhpValue::Bool(false))
        }
        ApiCall::SendToClient { client_id, .. } if client_id == "7f0000010fa000000002" => {
            Ok(PhpValue::Null)
        }
        other => library_default(other),
    });
    let msg_cases = [
        (r#""text""#, "text"),
        (r#"{"k":[1],"u":"/é"}"#, r#"{"k":[1],"u":"/é"}"#),
        ("12", "12"),
        ("1.0", "1"),
        ("false", "false"),
        ("[]", "[]"),
    ];
    for (message, sent) in msg_cases {
        let (calls, texts) = p
            .op(&format!(r#"{{"op":"sendToClient","args":{{"client_id":"{OTHER}","message":{message}}},"id":1}}"#))
            .await;
        assert_eq!(
            calls,
            [ApiCall::SendToClient {
                client_id: b(OTHER),
                message: s(sent),
                raw: false
            }]
        );
        assert_eq!(texts, [r#"{"id":1,"ok":true,"result":true}"#]);
    }
    // bool-send: false stays false, anything else (null: a buffered send) is true.
    let (_, texts) = p
        .op(r#"{"op":"sendToClient","args":{"client_id":"bad","message":"m"},"id":2}"#)
        .await;
    assert_eq!(texts, [r#"{"id":2,"ok":true,"result":false}"#]);
    let (_, texts) = p
        .op(r#"{"op":"sendToClient","args":{"client_id":"7f0000010fa000000002","message":"m"},"id":3}"#)
        .await;
    assert_eq!(texts, [r#"{"id":3,"ok":true,"result":true}"#]);
    // Missing (or null) required arguments: ok:false, no call.
    for request in [
        r#"{"op":"sendToClient","args":{"message":"m"},"id":4}"#,
        r#"{"op":"sendToClient","args":{"client_id":"x"},"id":4}"#,
        r#"{"op":"sendToClient","args":{"client_id":"x","message":null},"id":4}"#,
        r#"{"op":"sendToCurrentClient","id":4}"#,
        r#"{"op":"sendToAll","args":{"exclude":"x"},"id":4}"#,
        r#"{"op":"sendToUid","args":{"message":"m"},"id":4}"#,
        r#"{"op":"sendToGroup","args":{"group":"g"},"id":4}"#,
    ] {
        let text = p.reply(request).await;
        assert!(
            text.starts_with(r#"{"id":4,"ok":false,"error":"#),
            "{request}: {text}"
        );
    }

    // sendToCurrentClient: the push goes before the reply.
    let (calls, texts) = p
        .op(r#"{"op":"sendToCurrentClient","args":{"message":{"a":1}},"id":5}"#)
        .await;
    assert!(calls.is_empty());
    assert_eq!(texts, [r#"{"a":1}"#, r#"{"id":5,"ok":true,"result":true}"#]);

    // sendToAll: defaults null, lists and single strings passed on as given.
    let (calls, texts) = p
        .op(r#"{"op":"sendToAll","args":{"message":"all"},"id":6}"#)
        .await;
    assert_eq!(
        calls,
        [ApiCall::SendToAll {
            message: s("all"),
            client_id_list: None,
            exclude: None,
            raw: false
        }]
    );
    assert_eq!(texts, [r#"{"id":6,"ok":true,"result":null}"#]);
    let (calls, _) = p
        .op(&format!(
            r#"{{"op":"sendToAll","args":{{"message":"m","client_id_list":["{OTHER}","{OTHER}","bad"],"exclude":"{CID}"}}}}"#
        ))
        .await;
    assert_eq!(
        calls,
        [ApiCall::SendToAll {
            message: s("m"),
            client_id_list: Some(vec![b(OTHER), b(OTHER), b("bad")]),
            exclude: Some(vec![b(CID)]),
            raw: false
        }]
    );
    let (calls, _) = p
        .op(r#"{"op":"sendToAll","args":{"message":"m","client_id_list":[]}}"#)
        .await;
    assert_eq!(
        calls,
        [ApiCall::SendToAll {
            message: s("m"),
            client_id_list: Some(vec![]),
            exclude: None,
            raw: false
        }]
    );

    // sendToUid: string, int (as its decimal text) or list.
    for (uid, uids) in [
        (r#""u1""#, vec![b("u1")]),
        ("123", vec![b("123")]),
        (r#"["a",7]"#, vec![b("a"), b("7")]),
    ] {
        let (calls, texts) = p
            .op(&format!(
                r#"{{"op":"sendToUid","args":{{"uid":{uid},"message":"m"}},"id":7}}"#
            ))
            .await;
        assert_eq!(
            calls,
            [ApiCall::SendToUid {
                uids,
                message: s("m"),
                raw: false
            }]
        );
        assert_eq!(texts, [r#"{"id":7,"ok":true,"result":null}"#]);
    }

    // sendToGroup: PHP-empty groups answer false without any call; else null.
    for group in [r#""""#, r#""0""#, "0", "[]", "false"] {
        let request =
            format!(r#"{{"op":"sendToGroup","args":{{"group":{group},"message":"m"}},"id":8}}"#);
        assert_eq!(
            p.reply(&request).await,
            r#"{"id":8,"ok":true,"result":false}"#,
            "{group}"
        );
    }
    let (calls, texts) = p
        .op(&format!(r#"{{"op":"sendToGroup","args":{{"group":["g1","0"],"message":"m","exclude":["{CID}"]}},"id":9}}"#))
        .await;
    assert_eq!(
        calls,
        [ApiCall::SendToGroup {
            groups: vec![b("g1"), b("0")],
            message: s("m"),
            exclude: Some(vec![b(CID)]),
            raw: false
        }]
    );
    assert_eq!(texts, [r#"{"id":9,"ok":true,"result":null}"#]);
}

// ---------------------------------------------------------------- §5.3 uids and groups

#[tokio::test]
async fn uid_and_group_membership_ops() {
    let mut p = Probe::new();
    let cases: [(&str, ApiCall); 5] = [
        (
            r#"{"op":"bindUid","args":{"client_id":"C","uid":123},"id":1}"#,
            ApiCall::BindUid {
                client_id: b("C"),
                uid: b("123"),
            },
        ),
        (
            r#"{"op":"unbindUid","args":{"client_id":"C","uid":"u"},"id":1}"#,
            ApiCall::UnbindUid {
                client_id: b("C"),
                uid: b("u"),
            },
        ),
        (
            r#"{"op":"joinGroup","args":{"client_id":"C","group":"g"},"id":1}"#,
            ApiCall::JoinGroup {
                client_id: b("C"),
                group: b("g"),
            },
        ),
        (
            r#"{"op":"leaveGroup","args":{"client_id":"C","group":7},"id":1}"#,
            ApiCall::LeaveGroup {
                client_id: b("C"),
                group: b("7"),
            },
        ),
        (
            r#"{"op":"ungroup","args":{"group":"g"},"id":1}"#,
            ApiCall::Ungroup { group: b("g") },
        ),
    ];
    for (request, call) in cases {
        let (calls, texts) = p.op(request).await;
        assert_eq!(calls, [call], "{request}");
        assert_eq!(texts, [r#"{"id":1,"ok":true,"result":null}"#]);
    }
    // An empty uid or group is the gateway's business (it ignores it): passed on.
    let (calls, _) = p
        .op(r#"{"op":"bindUid","args":{"client_id":"C","uid":""}}"#)
        .await;
    assert_eq!(
        calls,
        [ApiCall::BindUid {
            client_id: b("C"),
            uid: b("")
        }]
    );
    for group in [r#""""#, r#""0""#, "0"] {
        let request = format!(r#"{{"op":"ungroup","args":{{"group":{group}}},"id":2}}"#);
        assert_eq!(
            p.reply(&request).await,
            r#"{"id":2,"ok":true,"result":false}"#
        );
    }
    for request in [
        r#"{"op":"bindUid","args":{"client_id":"C"},"id":3}"#,
        r#"{"op":"joinGroup","args":{"group":"g"},"id":3}"#,
        r#"{"op":"leaveGroup","args":{"client_id":"C","group":null},"id":3}"#,
    ] {
        assert!(
            p.reply(request).await.starts_with(r#"{"id":3,"ok":false,"#),
            "{request}"
        );
    }
    // A float uid is refused by the host's argument check: an API error is ok:false.
    let text = p
        .reply(r#"{"op":"bindUid","args":{"client_id":"C","uid":1.5},"id":4}"#)
        .await;
    assert!(
        text.starts_with(r#"{"id":4,"ok":false,"error":"bad argument"#),
        "{text}"
    );
}

// ---------------------------------------------------------------- §5.4 queries

/// Query answers as the PHP library builds them (keys in gateway order, unsorted).
fn gateway_state(call: &ApiCall) -> ApiResult {
    let ids = |v: &[&str]| {
        let mut a = PhpArray::new();
        for id in v {
            a.insert(PhpKey::from_bytes(id.as_bytes()), s(id));
        }
        PhpValue::Array(a)
    };
    Ok(match call {
        ApiCall::IsOnline { client_id } => PhpValue::Int((client_id == OTHER).into()),
        ApiCall::IsUidOnline { .. } => PhpValue::Int(1),
        ApiCall::GetClientIdByUid { .. } => list(vec![s("7f0000010fa000000003"), s(OTHER)]),
        ApiCall::GetUidByClientId { client_id } if client_id == OTHER => s("u/1"),
        ApiCall::GetUidByClientId { .. } => PhpValue::Null,
        ApiCall::GetClientIdListByGroup { .. } => ids(&["7f0000010fa000000003", OTHER]),
        ApiCall::GetClientSessionsByGroup { .. } | ApiCall::GetAllClientSessions { .. } => map(&[
            (
                "7f0000010fa000000003",
                map(&[
                    ("b", PhpValue::Int(1)),
                    (
                        "a",
                        map(&[("z", empty()), ("y", list(vec![PhpValue::Float(0.5)]))]),
                    ),
                ]),
            ),
            (CID, empty()),
            (OTHER, map(&[("0", s("zero"))])),
        ]),
        ApiCall::GetClientCountByGroup { group } => {
            PhpValue::Int(if group.is_empty() { 5 } else { 2 })
        }
        ApiCall::GetAllClientIdList => ids(&["7f0000010fa000000003", CID, OTHER]),
        ApiCall::GetAllClientCount => PhpValue::Int(3),
        ApiCall::GetAllUidList => {
            let mut a = PhpArray::new();
            for uid in ["bob", "10", "9", "Ann"] {
                let key = PhpKey::from_bytes(uid.as_bytes());
                a.insert(key, s(uid));
            }
            PhpValue::Array(a)
        }
        ApiCall::GetAllUidCount => PhpValue::Int(4),
        ApiCall::GetUidListByGroup { .. } => map(&[("z", s("z")), ("a", s("a"))]),
        ApiCall::GetUidCountByGroup { .. } => PhpValue::Int(2),
        // Numeric group names come back as ints: sorted as strings, kept as ints.
        ApiCall::GetAllGroupIdList => map(&[
            ("7", PhpValue::Int(7)),
            ("g", s("g")),
            ("10", PhpValue::Int(10)),
            ("G", s("G")),
        ]),
        ApiCall::GetAllGroupUidList => map(&[
            ("room", map(&[("u2", s("u2")), ("u1", s("u1"))])),
            ("7", map(&[("5", PhpValue::Int(5))])),
        ]),
        ApiCall::GetAllGroupUidCount => map(&[("room", PhpValue::Int(2)), ("7", PhpValue::Int(1))]),
        ApiCall::GetAllGroupClientIdList => map(&[("b", ids(&[OTHER, CID])), ("a", ids(&[CID]))]),
        ApiCall::GetAllGroupClientIdCount => {
            map(&[("b", PhpValue::Int(2)), ("a", PhpValue::Int(1))])
        }
        other => return library_default(other),
    })
}

#[tokio::test]
async fn queries_normalise_lists_maps_and_sessions() {
    let mut p = Probe::answering(gateway_state);
    let c3 = "7f0000010fa000000003";
    let cases: Vec<(String, ApiCall, String)> = vec![
        (
            format!(r#"{{"op":"isOnline","args":{{"client_id":"{OTHER}"}}}}"#),
            ApiCall::IsOnline {
                client_id: b(OTHER),
            },
            "1".into(),
        ),
        (
            r#"{"op":"isOnline","args":{"client_id":"bad"}}"#.into(),
            ApiCall::IsOnline {
                client_id: b("bad"),
            },
            "0".into(),
        ),
        (
            r#"{"op":"isUidOnline","args":{"uid":5}}"#.into(),
            ApiCall::IsUidOnline { uid: b("5") },
            "1".into(),
        ),
        (
            r#"{"op":"getClientIdByUid","args":{"uid":"u"}}"#.into(),
            ApiCall::GetClientIdByUid { uid: b("u") },
            format!(r#"["{OTHER}","{c3}"]"#),
        ),
        (
            format!(r#"{{"op":"getUidByClientId","args":{{"client_id":"{OTHER}"}}}}"#),
            ApiCall::GetUidByClientId {
                client_id: b(OTHER),
            },
            r#""u/1""#.into(),
        ),
        (
            format!(r#"{{"op":"getUidByClientId","args":{{"client_id":"{CID}"}}}}"#),
            ApiCall::GetUidByClientId { client_id: b(CID) },
            "null".into(),
        ),
        (
            r#"{"op":"getClientIdListByGroup","args":{"group":"g"}}"#.into(),
            ApiCall::GetClientIdListByGroup { group: b("g") },
            format!(r#"["{OTHER}","{c3}"]"#),
        ),
        (
            r#"{"op":"getClientSessionsByGroup","args":{"group":"g"}}"#.into(),
            ApiCall::GetClientSessionsByGroup { group: b("g") },
            format!(
                r#"{{"{OTHER}":{{"0":"zero"}},"{c3}":{{"b":1,"a":{{"z":[],"y":[0.5]}}}},"{CID}":{{}}}}"#
            ),
        ),
        (
            r#"{"op":"getClientCountByGroup"}"#.into(),
            ApiCall::GetClientCountByGroup { group: b("") },
            "5".into(),
        ),
        (
            r#"{"op":"getClientIdCountByGroup","args":{"group":"g"}}"#.into(),
            ApiCall::GetClientCountByGroup { group: b("g") },
            "2".into(),
        ),
        (
            r#"{"op":"getAllClientIdList"}"#.into(),
            ApiCall::GetAllClientIdList,
            format!(r#"["{OTHER}","{c3}","{CID}"]"#),
        ),
        (
            r#"{"op":"getAllClientSessions"}"#.into(),
            ApiCall::GetAllClientSessions { group: b("") },
            format!(
                r#"{{"{OTHER}":{{"0":"zero"}},"{c3}":{{"b":1,"a":{{"z":[],"y":[0.5]}}}},"{CID}":{{}}}}"#
            ),
        ),
        (
            r#"{"op":"getAllClientSessions","args":{"group":"g"}}"#.into(),
            ApiCall::GetAllClientSessions { group: b("g") },
            format!(
                r#"{{"{OTHER}":{{"0":"zero"}},"{c3}":{{"b":1,"a":{{"z":[],"y":[0.5]}}}},"{CID}":{{}}}}"#
            ),
        ),
        (
            r#"{"op":"getAllClientIdCount"}"#.into(),
            ApiCall::GetAllClientCount,
            "3".into(),
        ),
        (
            r#"{"op":"getAllClientCount"}"#.into(),
            ApiCall::GetAllClientCount,
            "3".into(),
        ),
        (
            r#"{"op":"getAllUidList"}"#.into(),
            ApiCall::GetAllUidList,
            r#"["10","9","Ann","bob"]"#.into(),
        ),
        (
            r#"{"op":"getAllUidCount"}"#.into(),
            ApiCall::GetAllUidCount,
            "4".into(),
        ),
        (
            r#"{"op":"getUidListByGroup","args":{"group":"g"}}"#.into(),
            ApiCall::GetUidListByGroup { group: b("g") },
            r#"["a","z"]"#.into(),
        ),
        (
            r#"{"op":"getUidCountByGroup","args":{"group":"g"}}"#.into(),
            ApiCall::GetUidCountByGroup { group: b("g") },
            "2".into(),
        ),
        (
            r#"{"op":"getAllGroupIdList"}"#.into(),
            ApiCall::GetAllGroupIdList,
            r#"[10,7,"G","g"]"#.into(),
        ),
        (
            r#"{"op":"getAllGroupUidList"}"#.into(),
            ApiCall::GetAllGroupUidList,
            r#"{"7":[5],"room":["u1","u2"]}"#.into(),
        ),
        (
            r#"{"op":"getAllGroupUidCount"}"#.into(),
            ApiCall::GetAllGroupUidCount,
            r#"{"7":1,"room":2}"#.into(),
        ),
        (
            r#"{"op":"getAllGroupClientIdList"}"#.into(),
            ApiCall::GetAllGroupClientIdList,
            format!(r#"{{"a":["{CID}"],"b":["{OTHER}","{CID}"]}}"#),
        ),
        (
            r#"{"op":"getAllGroupClientIdCount"}"#.into(),
            ApiCall::GetAllGroupClientIdCount,
            r#"{"a":1,"b":2}"#.into(),
        ),
    ];
    for (request, call, result) in cases {
        let (calls, texts) = p.op(&request).await;
        assert_eq!(calls, [call], "{request}");
        assert_eq!(
            texts,
            [format!(r#"{{"id":null,"ok":true,"result":{result}}}"#)],
            "{request}"
        );
    }
}

/// `getAllClientSessions` / `getClientSessionsByGroup` show the caller's current `$_SESSION`
/// for its own entry, not the gateway's (possibly older) copy.
#[tokio::test]
async fn own_entry_of_session_queries_is_the_current_session() {
    let mut p = Probe::answering(gateway_state);
    p.session = map(&[("mine", PhpValue::Bool(true))]);
    let c3 = "7f0000010fa000000003";
    for request in [
        r#"{"op":"getAllClientSessions","id":1}"#,
        r#"{"op":"getClientSessionsByGroup","args":{"group":"g"},"id":1}"#,
    ] {
        let (calls, texts) = p.op(request).await;
        assert_eq!(calls.len(), 1);
        assert_eq!(
            texts,
            [format!(
                r#"{{"id":1,"ok":true,"result":{{"{OTHER}":{{"0":"zero"}},"{c3}":{{"b":1,"a":{{"z":[],"y":[0.5]}}}},"{CID}":{{"mine":true}}}}}}"#
            )]
        );
    }
    let (_, texts) = p
        .op(r#"{"op":"multi","id":2,"args":{"ops":[{"op":"sessionSet","args":{"key":"k","value":1}},{"op":"getAllClientSessions"}]}}"#)
        .await;
    assert!(
        texts[0].contains(&format!(r#""{CID}":{{"mine":true,"k":1}}"#)),
        "{texts:?}"
    );
}

#[tokio::test]
async fn queries_on_empty_answers_and_guards() {
    // Everything empty: lists `[]`, maps `{}` (never `[]`).
    let mut p = Probe::answering(|call| {
        Ok(match call {
            ApiCall::GetClientCountByGroup { .. }
            | ApiCall::GetAllClientCount
            | ApiCall::GetAllUidCount
            | ApiCall::GetUidCountByGroup { .. }
            | ApiCall::IsOnline { .. } => PhpValue::Int(0),
            _ => empty(),
        })
    });
    for (op, result) in [
        ("getAllClientIdList", "[]"),
        ("getAllUidList", "[]"),
        ("getAllGroupIdList", "[]"),
        ("getAllClientSessions", "{}"),
        ("getAllGroupUidList", "{}"),
        ("getAllGroupUidCount", "{}"),
        ("getAllGroupClientIdList", "{}"),
        ("getAllGroupClientIdCount", "{}"),
        ("getAllClientCount", "0"),
    ] {
        let (calls, texts) = p.op(&format!(r#"{{"op":"{op}","id":1}}"#)).await;
        assert_eq!(calls.len(), 1, "{op}");
        assert_eq!(
            texts,
            [format!(r#"{{"id":1,"ok":true,"result":{result}}}"#)],
            "{op}"
        );
    }
    // Lib\Gateway's own guard (isValidGroupId): an empty group answers without any call.
    for group in [r#""""#, r#""0""#, "0", "[]"] {
        for (op, result) in [
            ("getClientIdListByGroup", "[]"),
            ("getClientSessionsByGroup", "{}"),
            ("getUidListByGroup", "[]"),
            ("getUidCountByGroup", "0"),
        ] {
            let request = format!(r#"{{"op":"{op}","args":{{"group":{group}}},"id":2}}"#);
            assert_eq!(
                p.reply(&request).await,
                format!(r#"{{"id":2,"ok":true,"result":{result}}}"#),
                "{request}"
            );
        }
    }
    // GatewayClient-only calls do not exist in a worker: ok:false, no call.
    for request in [
        r#"{"op":"batchGetClientIdByUid","args":{"uids":["a"]},"id":3}"#,
        r#"{"op":"batchGetClientIdCountByGroup","args":{"groups":["g"]},"id":3}"#,
        r#"{"op":"isUidsOnline","args":{"uids":["a"]},"id":3}"#,
    ] {
        assert!(
            p.reply(request).await.starts_with(r#"{"id":3,"ok":false,"#),
            "{request}"
        );
    }
    for request in [
        r#"{"op":"isOnline","id":4}"#,
        r#"{"op":"getClientIdListByGroup","id":4}"#,
        r#"{"op":"getUidByClientId","id":4}"#,
    ] {
        assert!(
            p.reply(request).await.starts_with(r#"{"id":4,"ok":false,"#),
            "{request}"
        );
    }
}

/// Lists sort with PHP's `sort($v, SORT_STRING)`: by the byte-wise text of each value.
#[tokio::test]
async fn list_sort_is_bytewise_on_php_string_forms() {
    let mut p = Probe::answering(|call| match call {
        ApiCall::GetAllGroupIdList => Ok(list(vec![
            s("é"),
            s("b"),
            PhpValue::Int(-1),
            PhpValue::Int(100),
            s("B"),
            PhpValue::Int(20),
            s(""),
            PhpValue::Float(0.1 + 0.2),
            s("0.3"),
        ])),
        other => library_default(other),
    });
    let (calls, texts) = p.op(r#"{"op":"getAllGroupIdList","id":1}"#).await;
    assert_eq!(calls, [ApiCall::GetAllGroupIdList]);
    assert_eq!(
        texts,
        [r#"{"id":1,"ok":true,"result":["",-1,0.30000000000000004,"0.3",100,20,"B","b","é"]}"#]
    );
}

// ---------------------------------------------------------------- §5.5 sessions via the API

#[tokio::test]
async fn session_api_ops() {
    let mut p = Probe::answering(|call| match call {
        ApiCall::GetSession { client_id } if client_id.len() != 20 => Ok(PhpValue::Bool(false)),
        ApiCall::GetSession { client_id } if client_id == OTHER => Ok(PhpValue::Null),
        ApiCall::GetSession { client_id } if client_id == CID => Ok(empty()),
        ApiCall::GetSession { .. } => Ok(map(&[
            ("k", s("v\u{0}\u{2028}")),
            ("bin", PhpValue::Str(Bytes::from_static(b"a\xff\xe3\x80A"))),
            ("n", list(vec![PhpValue::Int(1), map(&[])])),
        ])),
        other => library_default(other),
    });
    for (client, result) in [
        ("bad", "false"),
        (OTHER, "null"),
        (CID, "{}"),
        (
            "7f0000010fa000000003",
            "{\"k\":\"v\\u0000\\u2028\",\"bin\":\"a\u{fffd}\u{fffd}A\",\"n\":[1,[]]}",
        ),
    ] {
        let (calls, texts) = p
            .op(&format!(
                r#"{{"op":"getSession","args":{{"client_id":"{client}"}},"id":1}}"#
            ))
            .await;
        assert_eq!(
            calls,
            [ApiCall::GetSession {
                client_id: b(client)
            }]
        );
        assert_eq!(
            texts,
            [format!(r#"{{"id":1,"ok":true,"result":{result}}}"#)]
        );
    }
    let session = r#"{"a":{"x":1},"l":[1,2],"7":"seven"}"#;
    let php_session = map(&[
        ("a", map(&[("x", PhpValue::Int(1))])),
        ("l", list(vec![PhpValue::Int(1), PhpValue::Int(2)])),
        ("7", s("seven")),
    ]);
    for (op, call) in [
        (
            "setSession",
            ApiCall::SetSession {
                client_id: b(OTHER),
                session: php_session.clone(),
            },
        ),
        (
            "updateSession",
            ApiCall::UpdateSession {
                client_id: b(OTHER),
                session: php_session.clone(),
            },
        ),
    ] {
        let (calls, texts) = p
            .op(&format!(
                r#"{{"op":"{op}","args":{{"client_id":"{OTHER}","session":{session}}},"id":2}}"#
            ))
            .await;
        assert_eq!(calls, [call]);
        assert_eq!(texts, [r#"{"id":2,"ok":true,"result":null}"#]);
        for bad in [r#""s""#, "1", "null", "true"] {
            let request = format!(
                r#"{{"op":"{op}","args":{{"client_id":"{OTHER}","session":{bad}}},"id":3}}"#
            );
            assert!(
                p.reply(&request)
                    .await
                    .starts_with(r#"{"id":3,"ok":false,"#),
                "{request}"
            );
        }
    }
    // A JSON list decodes to a PHP array as well: accepted as a session.
    let (calls, _) = p
        .op(&format!(
            r#"{{"op":"setSession","args":{{"client_id":"{OTHER}","session":[]}}}}"#
        ))
        .await;
    assert_eq!(
        calls,
        [ApiCall::SetSession {
            client_id: b(OTHER),
            session: empty()
        }]
    );
}

// ---------------------------------------------------------------- §5.6 $_SESSION

#[tokio::test]
async fn current_session_ops_read_change_and_write_back() {
    let mut p = Probe::new();
    assert_eq!(
        p.reply(r#"{"op":"sessionGet","id":1}"#).await,
        r#"{"id":1,"ok":true,"result":null}"#
    );
    assert_eq!(
        p.reply(r#"{"op":"sessionUnset","args":{"key":"k"},"id":2}"#)
            .await,
        r#"{"id":2,"ok":true,"result":null}"#
    );
    assert_eq!(p.session, PhpValue::Null, "nothing to write back");
    assert_eq!(
        p.reply(r#"{"op":"sessionSet","args":{"key":"k","value":{"x":[1]}},"id":3}"#)
            .await,
        r#"{"id":3,"ok":true,"result":{"k":{"x":[1]}}}"#
    );
    assert_eq!(
        p.session,
        map(&[("k", map(&[("x", list(vec![PhpValue::Int(1)]))]))])
    );
    assert_eq!(
        p.reply(r#"{"op":"sessionSet","args":{"key":5},"id":4}"#)
            .await,
        r#"{"id":4,"ok":true,"result":{"k":{"x":[1]},"5":null}}"#
    );
    assert_eq!(
        p.reply(r#"{"op":"sessionSet","args":{"key":"k","value":"again"},"id":5}"#)
            .await,
        r#"{"id":5,"ok":true,"result":{"k":"again","5":null}}"#,
        "an existing key keeps its place"
    );
    assert_eq!(
        p.reply(r#"{"op":"sessionUnset","args":{"key":"5"},"id":6}"#)
            .await,
        r#"{"id":6,"ok":true,"result":{"k":"again"}}"#
    );
    assert_eq!(
        p.reply(r#"{"op":"sessionUnset","args":{"key":"k"},"id":7}"#)
            .await,
        r#"{"id":7,"ok":true,"result":{}}"#
    );
    assert_eq!(p.session, empty());
    assert_eq!(
        p.reply(r#"{"op":"sessionReplace","args":{"session":{"b":2,"a":1}},"id":8}"#)
            .await,
        r#"{"id":8,"ok":true,"result":{"b":2,"a":1}}"#
    );
    assert_eq!(
        p.session,
        map(&[("b", PhpValue::Int(2)), ("a", PhpValue::Int(1))])
    );
    for bad in [
        r#"{"op":"sessionReplace","args":{"session":"x"},"id":9}"#,
        r#"{"op":"sessionSet","id":9}"#,
        r#"{"op":"sessionSet","args":{"key":[1]},"id":9}"#,
    ] {
        assert!(
            p.reply(bad).await.starts_with(r#"{"id":9,"ok":false,"#),
            "{bad}"
        );
    }
    assert_eq!(
        p.reply(r#"{"op":"sessionReplace","args":{"session":null},"id":10}"#)
            .await,
        r#"{"id":10,"ok":true,"result":null}"#
    );
    assert_eq!(
        p.session,
        PhpValue::Null,
        "null written back clears the session"
    );
    // Inside one event, API changes of the own session show in $_SESSION.
    let (calls, texts) = p
        .op(&format!(
            r#"{{"op":"multi","id":11,"args":{{"ops":[{{"op":"setSession","args":{{"client_id":"{CID}","session":{{"a":1}}}}}},{{"op":"sessionGet"}},{{"op":"sessionSet","args":{{"key":"b","value":2}}}}]}}}}"#
        ))
        .await;
    assert_eq!(
        calls,
        [ApiCall::SetSession {
            client_id: b(CID),
            session: map(&[("a", PhpValue::Int(1))])
        }]
    );
    assert_eq!(
        texts,
        [
            r#"{"id":11,"ok":true,"result":[{"ok":true,"result":null},{"ok":true,"result":{"a":1}},{"ok":true,"result":{"a":1,"b":2}}]}"#
        ]
    );
    assert_eq!(
        p.session,
        map(&[("a", PhpValue::Int(1)), ("b", PhpValue::Int(2))])
    );
}

// ---------------------------------------------------------------- §5.7 closing

#[tokio::test]
async fn current_client_closes_reply_first() {
    let mut p = Probe::new();
    let reply = |id: u32| s(&format!(r#"{{"id":{id},"ok":true,"result":null}}"#));
    let to_me = |m: PhpValue| ApiCall::SendToCurrentClient {
        message: m,
        raw: false,
    };
    let cases: [(&str, Vec<ApiCall>); 5] = [
        (
            r#"{"op":"closeCurrentClient","args":{"message":"bye"},"id":1}"#,
            vec![
                to_me(reply(1)),
                ApiCall::CloseCurrentClient {
                    message: Some(s("bye")),
                },
            ],
        ),
        (
            r#"{"op":"closeCurrentClient","args":{"message":{"k":1}},"id":2}"#,
            vec![
                to_me(reply(2)),
                ApiCall::CloseCurrentClient {
                    message: Some(s(r#"{"k":1}"#)),
                },
            ],
        ),
        (
            r#"{"op":"closeCurrentClient","args":{"message":null},"id":3}"#,
            vec![
                to_me(reply(3)),
                ApiCall::CloseCurrentClient { message: None },
            ],
        ),
        (
            r#"{"op":"destroyCurrentClient","id":4}"#,
            vec![to_me(reply(4)), ApiCall::DestroyCurrentClient],
        ),
        (
            r#"{"op":"destoryCurrentClient","id":5}"#,
            vec![to_me(reply(5)), ApiCall::DestroyCurrentClient],
        ),
    ];
    for (request, want) in cases {
        let calls: Vec<ApiCall> = p
            .send(request.as_bytes())
            .await
            .into_iter()
            .map(|r| r.call)
            .collect();
        assert_eq!(calls, want, "{request}");
    }
    // Sub-ops of multi never reply early: the close comes first, the one reply after it.
    let calls: Vec<ApiCall> = p
        .send(br#"{"op":"multi","args":{"ops":[{"op":"closeCurrentClient"},{"op":"echo","args":{"data":1}}]},"id":6}"#)
        .await
        .into_iter()
        .map(|r| r.call)
        .collect();
    assert_eq!(
        calls,
        [
            ApiCall::CloseCurrentClient { message: None },
            to_me(s(
                r#"{"id":6,"ok":true,"result":[{"ok":true,"result":null},{"ok":true,"result":1}]}"#
            )),
        ]
    );
}

#[tokio::test]
async fn closing_other_clients_is_bool_send() {
    let mut p = Probe::answering(|call| match call {
        ApiCall::CloseClient { client_id, .. } | ApiCall::DestroyClient { client_id }
            if client_id.len() != 20 =>
        {
            Ok(PhpValue::Bool(false))
        }
        other => library_default(other),
    });
    let cases: [(String, ApiCall, &str); 6] = [
        (
            format!(
                r#"{{"op":"closeClient","args":{{"client_id":"{OTHER}","message":"bye"}},"id":1}}"#
            ),
            ApiCall::CloseClient {
                client_id: b(OTHER),
                message: Some(s("bye")),
            },
            "true",
        ),
        (
            format!(r#"{{"op":"closeClient","args":{{"client_id":"{OTHER}"}},"id":1}}"#),
            ApiCall::CloseClient {
                client_id: b(OTHER),
                message: None,
            },
            "true",
        ),
        (
            format!(
                r#"{{"op":"closeClient","args":{{"client_id":"{OTHER}","message":""}},"id":1}}"#
            ),
            ApiCall::CloseClient {
                client_id: b(OTHER),
                message: Some(s("")),
            },
            "true",
        ),
        (
            r#"{"op":"closeClient","args":{"client_id":"bad"},"id":1}"#.to_string(),
            ApiCall::CloseClient {
                client_id: b("bad"),
                message: None,
            },
            "false",
        ),
        (
            format!(r#"{{"op":"destroyClient","args":{{"client_id":"{OTHER}"}},"id":1}}"#),
            ApiCall::DestroyClient {
                client_id: b(OTHER),
            },
            "true",
        ),
        (
            r#"{"op":"destoryClient","args":{"client_id":"bad"},"id":1}"#.to_string(),
            ApiCall::DestroyClient {
                client_id: b("bad"),
            },
            "false",
        ),
    ];
    for (request, call, result) in cases {
        let (calls, texts) = p.op(&request).await;
        assert_eq!(calls, [call], "{request}");
        assert_eq!(
            texts,
            [format!(r#"{{"id":1,"ok":true,"result":{result}}}"#)],
            "{request}"
        );
    }
    assert!(p
        .reply(r#"{"op":"closeClient","id":2}"#)
        .await
        .starts_with(r#"{"id":2,"ok":false,"#));
}

/// The vectors' float values through a session: the probe encodes what PHP values hold.
#[tokio::test]
async fn php_floats_from_the_gateway_encode_like_json_encode() {
    let floats: Vec<(PhpValue, Option<String>)> = section("scalar_body_float")
        .iter()
        .map(|v| {
            (
                php(&v["input"]["value"]),
                v["expected"]["json"].as_str().map(String::from),
            )
        })
        .collect();
    for (value, want) in floats {
        let answer = value.clone();
        let mut p = Probe::answering(move |call| match call {
            ApiCall::GetSession { .. } => Ok(map(&[("f", answer.clone())])),
            other => library_default(other),
        });
        let (calls, mut texts) = p
            .op(&format!(
                r#"{{"op":"getSession","args":{{"client_id":"{OTHER}"}}}}"#
            ))
            .await;
        assert_eq!(
            calls,
            [ApiCall::GetSession {
                client_id: b(OTHER)
            }]
        );
        let text = texts.remove(0);
        match want {
            Some(json) => assert_eq!(
                text,
                format!(r#"{{"id":null,"ok":true,"result":{{"f":{json}}}}}"#)
            ),
            None => assert_eq!(text, "", "json_encode fails on {value:?}"),
        }
    }
}
