//! Worker event overhead: one client message host → guest → host through the wasm plugin
//! host, with a 100-byte and a 1 KiB message, plus module compile and instantiation time.
//!
//! ```sh
//! cargo bench --bench wasm_event            # release build; bounded: a few seconds
//! ```
//!
//! The guest is the bundled `echo` worker (`wasm-workers/dist/echo.wasm`): it answers each
//! message with `send_to_current_client`, so an event crosses the boundary twice (the
//! message in, the reply out) and the API handler sees one call. The handler here only
//! counts, so the figure is the host's own cost per event (fuel metering included).
#![allow(
    clippy::disallowed_methods,
    reason = "benchmarks measure wall-clock time"
)]

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gatewayworker::api::ApiResult;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::wasm::{
    ApiHandler, ApiRequest, ClientInfo, EventKind, HostConfig, LogLevel, PluginSlot, WasmHost,
    WasmWorker, WorkerEvent,
};

/// Events per measured round, and the wall-clock bound of the whole benchmark.
const EVENTS: u32 = 20_000;
const TIME_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Counter {
    calls: u64,
}

impl ApiHandler for Counter {
    fn call(&mut self, _request: ApiRequest) -> impl Future<Output = ApiResult> + Send + '_ {
        self.calls += 1;
        async { Ok(PhpValue::Null) }
    }

    fn log(&mut self, _level: LogLevel, _client: Option<&Bytes>, _text: &str) {}
}

fn message(len: usize) -> WorkerEvent {
    WorkerEvent {
        kind: EventKind::Message {
            body: Bytes::from(vec![b'x'; len]),
            binary: false,
        },
        client: ClientInfo {
            client_id: Bytes::from_static(b"7f0000010b5400000001"),
            remote_addr: "127.0.0.1".into(),
            remote_port: 50000,
            gateway_addr: "127.0.0.1".into(),
            gateway_port: 8282,
        },
        session: PhpValue::Null,
        now_ms: 0,
    }
}

fn main() {
    let started = Instant::now();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wasm-workers/dist/echo.wasm");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!("| figure | pooling | value |");
    println!("|---|---|---|");
    for pooling in [None, Some(16)] {
        let config = HostConfig {
            pooling_instances_max: pooling,
            ..HostConfig::default()
        };
        let host = WasmHost::<Counter>::new(config).expect("wasm host");
        let t = Instant::now();
        let plugin = host
            .load_file(&path)
            .expect("echo.wasm loads (run scripts/build-wasm)");
        println!("| compile echo.wasm | {pooling:?} | {:?} |", t.elapsed());
        let slot = PluginSlot::new(&host, plugin);
        runtime.block_on(async {
            let rounds = 500u32;
            let t = Instant::now();
            for _ in 0..rounds {
                let mut w = WasmWorker::new(&host, &slot, Counter::default());
                w.start(0).await.expect("start");
            }
            println!(
                "| instantiate + on_worker_start | {pooling:?} | {:?} |",
                t.elapsed() / rounds
            );
            for len in [100usize, 1024] {
                let mut w = WasmWorker::new(&host, &slot, Counter::default());
                w.start(0).await.expect("start");
                let event = message(len);
                for _ in 0..1_000 {
                    w.handle(&event).await.expect("warm-up event");
                }
                let t = Instant::now();
                let mut done = 0u32;
                while done < EVENTS && started.elapsed() < TIME_MAX {
                    w.handle(&event).await.expect("event");
                    done += 1;
                }
                let per_event = t.elapsed() / done.max(1);
                println!("| echo event, {len}-byte message | {pooling:?} | {per_event:?} |");
            }
        });
    }
}
