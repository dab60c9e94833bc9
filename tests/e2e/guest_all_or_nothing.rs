//! An event that fails after making Gateway API calls leaves nothing half-done: over real
//! sockets (register + gateway + worker running `probe.wasm`), an event sends to its own
//! client and joins a group, then exceeds a limit (its fuel, or its time while sleeping).
//! The client receives nothing from that event, the group has no new member, the failure
//! is counted (events failed, frames rolled back), and the client's next event works.

use std::time::Duration;

use gatewayworker::business::metrics::FAILURE_KINDS;
use gatewayworker::business::BusinessSettings;
use gatewayworker::wasm::FailureKind;

use crate::common::ws_send_text;
use crate::system::{guest, next_text, System};

/// Runs the scenario with the worker settings `tweak`, the failing event's ops ending with
/// `exceed` (a JSON list tail of sub-ops that makes the event fail with `kind`).
async fn half_done_event_leaves_nothing(
    tweak: impl FnOnce(&mut BusinessSettings),
    exceed: &str,
    kind: FailureKind,
) {
    let sys = System::start(guest("probe"), 1, 1, tweak).await;
    let mut ws = sys.client().await;
    let hello = next_text(&mut ws).await;
    let id = hello
        .strip_prefix(r#"{"event":"connect","client_id":""#)
        .and_then(|rest| rest.strip_suffix(r#""}"#))
        .unwrap_or_else(|| panic!("connect message first, got {hello}"))
        .to_owned();
    let request = format!(
        r#"{{"op":"multi","args":{{"ops":[{{"op":"sendToCurrentClient","args":{{"message":"half-done"}}}},{{"op":"joinGroup","args":{{"client_id":"{id}","group":"txn"}}}},{exceed}]}},"id":1}}"#
    );
    ws_send_text(&mut ws, &request).await;
    // The client's next event: had the failed event's send gone out, it would come first
    // (one link, one connection: in order).
    ws_send_text(
        &mut ws,
        r#"{"op":"getClientCountByGroup","args":{"group":"txn"},"id":2}"#,
    )
    .await;
    let next = next_text(&mut ws).await;
    assert_eq!(
        next, r#"{"id":2,"ok":true,"result":0}"#,
        "nothing from the failed event, and its join undone"
    );
    // And the client goes on as before.
    ws_send_text(&mut ws, r#"{"op":"echo","args":{"data":"again"},"id":3}"#).await;
    assert_eq!(
        next_text(&mut ws).await,
        r#"{"id":3,"ok":true,"result":"again"}"#
    );
    let stats = sys.worker().stats();
    assert_eq!(stats[0].events_failed, 1);
    let failures = sys.worker().observer().events().failures;
    let at = FAILURE_KINDS
        .iter()
        .position(|k| *k == kind)
        .expect("a kind");
    assert_eq!(failures[at], 1, "failed with {kind:?}: {failures:?}");
    let engine = sys.worker().observer().engine_stats()[0].clone();
    assert_eq!(engine.frames_rolled_back, 2, "the send and the join");
    assert!(engine.bytes_rolled_back > 0);
    sys.stop();
}

/// The failing event runs out of fuel after its calls: `sessionSet` a 20 KB value, then
/// `sessionGet` it 500 times (about 10 MB of result to encode). Measured with an unbounded
/// budget: the whole event takes 625 M fuel, the same event without the `sessionGet`s
/// 2.4 M (calls, parse and reply included); the test allows 20 M per event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_out_of_fuel_after_sending_sends_nothing() {
    let blob = "x".repeat(20_000);
    let mut exceed = format!(r#"{{"op":"sessionSet","args":{{"key":"blob","value":"{blob}"}}}}"#);
    for _ in 0..500 {
        exceed.push_str(r#",{"op":"sessionGet"}"#);
    }
    half_done_event_leaves_nothing(
        |s| {
            s.host.fuel_per_event = 20_000_000;
            s.host.fuel_per_input_byte = 0;
        },
        &exceed,
        FailureKind::OutOfFuel,
    )
    .await;
}

/// The failing event outlives its time limit in a sleep after its calls: the driver does
/// link I/O while the guest sleeps, and still nothing of the event leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_over_its_time_limit_after_sending_sends_nothing() {
    half_done_event_leaves_nothing(
        |s| s.host.epoch_deadline = Some(Duration::from_secs(1)),
        r#"{"op":"sleep","args":{"ms":2000}}"#,
        FailureKind::Deadline,
    )
    .await;
}
