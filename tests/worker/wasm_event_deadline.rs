//! The wall-clock bound per event (`HostConfig::epoch_deadline`) against the real `probe`
//! guest: sleeping counts towards it, waiting for a gateway reply does not.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gatewayworker::api::{ApiCall, ApiResult};
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind, FailureKind, HostConfig, LogLevel, PluginSlot,
    WasmHost, WasmWorker, WorkerEvent,
};

/// Answers `getAllClientCount` after `delay` (a slow gateway); sleeps on the real clock.
#[derive(Clone, Default)]
struct Slow {
    delay: Duration,
    replies: Arc<Mutex<Vec<String>>>,
}

impl ApiHandler for Slow {
    async fn call(&mut self, request: ApiRequest) -> ApiResult {
        match request.call {
            ApiCall::GetAllClientCount => {
                tokio::time::sleep(self.delay).await;
                Ok(PhpValue::Int(7))
            }
            ApiCall::SendToCurrentClient {
                message: PhpValue::Str(m),
                ..
            } => {
                let text = String::from_utf8_lossy(&m).into_owned();
                self.replies.lock().unwrap().push(text);
                Ok(PhpValue::Bool(true))
            }
            _ => Ok(PhpValue::Null),
        }
    }

    async fn sleep(&mut self, duration: Duration) -> bool {
        tokio::time::sleep(duration).await;
        true
    }

    fn log(&mut self, _level: LogLevel, _client: Option<&Bytes>, _text: &str) {}
}

fn message(text: &str) -> WorkerEvent {
    WorkerEvent {
        kind: EventKind::Message {
            body: Bytes::copy_from_slice(text.as_bytes()),
            binary: false,
        },
        client: ClientInfo {
            client_id: Bytes::from_static(b"7f0000010fa000000009"),
            remote_addr: "10.0.0.5".into(),
            remote_port: 50123,
            gateway_addr: "127.0.0.1".into(),
            gateway_port: 8282,
        },
        session: PhpValue::Null,
        now_ms: 1_700_000_000_123,
    }
}

fn probe_worker(deadline: Duration, handler: Slow) -> (WasmHost<Slow>, WasmWorker<Slow>) {
    let config = HostConfig {
        epoch_deadline: Some(deadline),
        epoch_tick: Duration::from_millis(10),
        ..HostConfig::default()
    };
    let host = WasmHost::new(config).expect("host");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wasm-workers/dist/probe.wasm");
    let plugin = host.load_file(&path).expect("probe.wasm loads");
    let worker = WasmWorker::new(&host, &PluginSlot::new(&host, plugin), handler);
    (host, worker)
}

/// A guest that sleeps past its event's budget is stopped: the sleep is its own time, not
/// a wait the deadline forgives (before, every `sleep_ms` re-armed the whole budget, so a
/// guest looping on it held its instance forever).
#[tokio::test]
async fn sleeping_counts_towards_the_event_deadline() {
    let handler = Slow::default();
    let (_host, mut w) = probe_worker(Duration::from_millis(300), handler.clone());
    let err = w
        .handle(&message(r#"{"op":"sleep","args":{"ms":1500},"id":1}"#))
        .await
        .expect_err("a 1.5 s sleep in a 300 ms budget fails the event");
    assert_eq!(err.kind, FailureKind::Deadline, "{err}");
    assert!(handler.replies.lock().unwrap().is_empty(), "no reply sent");

    // The instance is recreated and serves the next event; a short sleep fits the budget.
    w.handle(&message(r#"{"op":"sleep","args":{"ms":20},"id":2}"#))
        .await
        .expect("a 20 ms sleep fits");
    assert_eq!(
        handler.replies.lock().unwrap().as_slice(),
        [r#"{"id":2,"ok":true,"result":null}"#]
    );
}

/// Waiting for a gateway reply is given back: a query slower than the whole budget still
/// completes, and the event ends normally.
#[tokio::test]
async fn waiting_for_a_reply_does_not_use_up_the_event_deadline() {
    let handler = Slow {
        delay: Duration::from_millis(700),
        ..Slow::default()
    };
    let (_host, mut w) = probe_worker(Duration::from_millis(300), handler.clone());
    w.handle(&message(r#"{"op":"getAllClientCount","args":{},"id":3}"#))
        .await
        .expect("the query's wait is not the guest's time");
    assert_eq!(
        handler.replies.lock().unwrap().as_slice(),
        [r#"{"id":3,"ok":true,"result":7}"#]
    );
}
