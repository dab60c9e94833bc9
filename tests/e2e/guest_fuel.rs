//! Fuel per event of the echo and chat examples in each guest language, measured through
//! the real host (`WasmWorker`, default host limits) on messages of growing size: prints
//! the fuel per message byte (the figure a per-byte fuel allowance is sized from), and
//! checks that every language handles the sizes the Rust guest handles within the default
//! budget (same behaviour, not merely the same replies to small messages).

use bytes::Bytes;
use gatewayworker::api::ApiResult;
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind, HostConfig, PluginSlot, WasmHost, WasmWorker,
    WorkerEvent,
};

use crate::guests::{example, LANGUAGES};

/// A gateway that answers every call with null (sends and group changes are accepted).
#[derive(Clone, Default)]
pub(crate) struct Quiet;

impl ApiHandler for Quiet {
    async fn call(&mut self, _request: ApiRequest) -> ApiResult {
        Ok(PhpValue::Null)
    }
}

/// A message event from one fixed client (shared with `guest_limits`).
pub(crate) fn event(body: Vec<u8>, session: PhpValue) -> WorkerEvent {
    WorkerEvent {
        kind: EventKind::Message {
            body: Bytes::from(body),
            binary: false,
        },
        client: ClientInfo {
            client_id: Bytes::from_static(b"7f0000010fa000000009"),
            remote_addr: "10.0.0.5".into(),
            remote_port: 50123,
            gateway_addr: "127.0.0.1".into(),
            gateway_port: 8282,
        },
        session,
        now_ms: 1_700_000_000_123,
    }
}

/// A chat member's session: the `say` path (parse, encode, sendToGroup) runs in full.
pub(crate) fn member() -> PhpValue {
    PhpValue::Array(
        [("room", "lobby"), ("name", "ann")]
            .iter()
            .map(|(k, v)| (PhpKey::from_bytes(k.as_bytes()), PhpValue::str(v)))
            .collect::<PhpArray>(),
    )
}

/// Fuel of one event of `example` in language `suffix` for each body; `None` where it failed.
async fn fuel(
    host: &WasmHost<Quiet>,
    example_name: &str,
    suffix: &str,
    bodies: &[Vec<u8>],
) -> Vec<Option<u64>> {
    let plugin = host
        .load_file(&example(example_name, suffix))
        .expect("module loads");
    let slot = PluginSlot::new(host, plugin);
    let mut w = WasmWorker::new(host, &slot, Quiet);
    let mut out = Vec::new();
    for body in bodies {
        let session = if example_name == "chat" {
            member()
        } else {
            PhpValue::Null
        };
        out.push(
            w.handle(&event(body.clone(), session))
                .await
                .ok()
                .map(|o| o.fuel_used),
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_per_byte_of_echo_and_chat_in_every_language() {
    let config = HostConfig::deterministic();
    let budget = config.fuel_per_event;
    let host = WasmHost::<Quiet>::new(config).expect("host");
    let sizes = [1usize << 10, 16 << 10, 128 << 10];
    for example_name in ["echo", "chat"] {
        let bodies: Vec<Vec<u8>> = sizes
            .iter()
            .map(|&n| match example_name {
                "echo" => vec![b'x'; n],
                // A say whose text mixes ASCII, escapes and multi-byte characters.
                _ => {
                    let text = "ab\u{e9}\\\"\u{1F600}".repeat(n / 10);
                    format!("{{\"type\":\"say\",\"text\":\"{text}\"}}").into_bytes()
                }
            })
            .collect();
        let mut rust = Vec::new();
        for (lang, suffix) in LANGUAGES {
            let used = fuel(&host, example_name, suffix, &bodies).await;
            let per_byte: Vec<String> = used
                .iter()
                .zip(&bodies)
                .map(|(u, b)| match u {
                    Some(u) => format!(
                        "{} B: {u} fuel ({:.1}/B)",
                        b.len(),
                        *u as f64 / b.len() as f64
                    ),
                    None => format!("{} B: failed", b.len()),
                })
                .collect();
            eprintln!("{example_name} {lang}: {}", per_byte.join(", "));
            if suffix.is_empty() {
                rust = used.clone();
            }
            for ((u, r), b) in used.iter().zip(&rust).zip(&bodies) {
                if r.is_some() {
                    assert!(
                        u.is_some(),
                        "{example_name} {lang}: a {} B message fails where Rust's uses {r:?} of {budget} fuel",
                        b.len()
                    );
                }
            }
        }
    }
}
