//! The guest limits' defaults against the bundled guests: every example and test guest of
//! `wasm-workers/dist/` handles a message of the largest size the gateway accepts by
//! default, with the default host limits (fuel per event plus fuel per input byte, memory,
//! wall time); and a 1 MiB JSON echo through `probe.wasm` over real sockets.

use std::time::Instant;

use gatewayworker::protocol::frame::PACKAGE_SIZE_MAX_DEFAULT;
use gatewayworker::protocol::php::PhpValue;
use gatewayworker::wasm::{HostConfig, PluginSlot, WasmHost, WasmWorker};

use crate::common::ws_send_text;
use crate::guest_fuel::{event as message, member, Quiet};
use crate::guests::{example, LANGUAGES};
use crate::system::{guest, next_text, System};

/// A JSON string's contents of about `n` bytes mixing ASCII, escapes and multi-byte
/// characters (the costliest text for the JSON guests).
fn mixed_text(n: usize) -> String {
    "ab\u{e9}\\\"\u{1F600}".repeat(n / 10)
}

/// The largest client message the gateway accepts by default, less the websocket frame
/// header: what a guest must be able to handle with the default limits.
const LARGEST: usize = PACKAGE_SIZE_MAX_DEFAULT as usize - 14;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bundled_guest_handles_the_largest_message_with_the_default_limits() {
    let config = HostConfig::default();
    let host = WasmHost::<Quiet>::new(config.clone()).expect("host");
    let mut cases: Vec<(String, std::path::PathBuf, Vec<u8>, PhpValue)> = Vec::new();
    for (lang, suffix) in LANGUAGES {
        cases.push((
            format!("echo {lang}"),
            example("echo", suffix),
            vec![b'x'; LARGEST],
            PhpValue::Null,
        ));
        // The reply carries the text again with a few more fields: it must fit a frame.
        let say = format!(
            "{{\"type\":\"say\",\"text\":\"{}\"}}",
            mixed_text(LARGEST - 1024)
        );
        cases.push((
            format!("chat {lang}"),
            example("chat", suffix),
            say.into_bytes(),
            member(),
        ));
    }
    let op = format!(
        "{{\"op\":\"echo\",\"args\":{{\"data\":\"{}\"}},\"id\":1}}",
        mixed_text(LARGEST - 64)
    );
    cases.push((
        "probe echo".into(),
        guest("probe"),
        op.into_bytes(),
        PhpValue::Null,
    ));
    for (name, path, body, session) in cases {
        let plugin = host.load_file(&path).expect("module loads");
        let slot = PluginSlot::new(&host, plugin);
        let mut w = WasmWorker::new(&host, &slot, Quiet);
        let len = body.len();
        let started = Instant::now();
        let outcome = w.handle(&message(body, session)).await;
        let elapsed = started.elapsed();
        match outcome {
            Ok(o) => eprintln!(
                "{name}: {len} B, {} fuel ({:.1}/B) of {}, {:.2} s",
                o.fuel_used,
                o.fuel_used as f64 / len as f64,
                config.event_fuel(len + 20),
                elapsed.as_secs_f64()
            ),
            Err(e) => panic!(
                "{name}: a {len} B message failed with the default limits: {:?} {}",
                e.kind,
                e.message.lines().last().unwrap_or("")
            ),
        }
    }
}

/// The issue's report: a 1 MiB JSON message through `probe.wasm` (the op language's
/// `echo`) over real sockets, register + gateway + worker with the default settings, is
/// answered in full. With the old limits (100 M fuel per event whatever the size, 64 MiB
/// of memory) the event ran out of fuel and the client never got an answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_mib_json_echo_through_probe_is_answered_with_the_default_settings() {
    let sys = System::start(guest("probe"), 1, 1, |_| {}).await;
    let mut ws = sys.client().await;
    let hello = next_text(&mut ws).await;
    assert!(hello.starts_with(r#"{"event":"connect""#), "{hello}");
    let data = "0123456789abcdef".repeat(1 << 16);
    ws_send_text(
        &mut ws,
        &format!(r#"{{"op":"echo","args":{{"data":"{data}"}},"id":1}}"#),
    )
    .await;
    let reply = next_text(&mut ws).await;
    assert_eq!(
        reply.len(),
        data.len() + 30,
        "{}",
        &reply[..80.min(reply.len())]
    );
    assert_eq!(reply, format!(r#"{{"id":1,"ok":true,"result":"{data}"}}"#));
    assert_eq!(sys.worker().stats()[0].events_failed, 0);
    sys.stop();
}
