//! A reload whose module compiles and links but fails to start (`on_worker_start` traps)
//! is rolled back to the running module, through the real process path: the worker's
//! module file replaced on disk, `RunningWorker::reload`, a real WebSocket client that
//! keeps being answered by the old module, no event lost.

use crate::common::ws_send_text;
use crate::system::{guest, next_text, System};

/// Passes the load check (the ABI's exports with their signatures), traps at start.
const FAILS_AT_START: &str = r#"(module
    (memory (export "memory") 1)
    (func (export "gw_abi_version") (result i32) (i32.const 1))
    (func (export "gw_alloc") (param i32) (result i32) (i32.const 1024))
    (func (export "gw_free") (param i32 i32))
    (func (export "on_worker_start") unreachable)
    (func (export "on_message") (param i32 i32 i32 i32 i32)))"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_fails_at_start_rolls_back_to_the_running_module() {
    let dir = std::env::temp_dir().join(format!(
        "gw-e2e-rollback-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let module = dir.join("worker.wasm");
    std::fs::copy(guest("echo"), &module).unwrap();
    let sys = System::start(module.clone(), 1, 1, |_| {}).await;
    let mut ws = sys.client().await;
    ws_send_text(&mut ws, "before").await;
    assert_eq!(next_text(&mut ws).await, "before");

    std::fs::write(&module, FAILS_AT_START).unwrap();
    let generation = sys
        .worker()
        .reload()
        .wait()
        .expect("the new module compiles");
    assert_eq!(generation, 2, "swapped in");
    // The next event finds the new module, fails to start it, and is handled by the old
    // one: the client notices nothing.
    for text in ["after", "and after"] {
        ws_send_text(&mut ws, text).await;
        assert_eq!(next_text(&mut ws).await, text);
    }
    assert_eq!(
        sys.worker().generation(),
        3,
        "echo again, as a new generation"
    );
    let stats = sys.worker().stats();
    assert_eq!(stats[0].rollbacks, 1, "{stats:?}");
    assert_eq!(stats[0].events_failed, 0, "{stats:?}");
    sys.stop();
    let _ = std::fs::remove_dir_all(&dir);
}
