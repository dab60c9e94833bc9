//! No allocation per message on the steady-state echo path of the gateway core: client
//! bytes in → event frame to the worker → the worker's SEND_TO_ONE in → websocket frame
//! out, counted by a global allocator that counts calls (its own test binary, so it sees
//! nothing else). The broadcast path is held to one allocation per broadcast (the
//! members list), none per delivery.

#[path = "../benches/hotpath/flow.rs"]
mod flow;

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::allocations;

#[global_allocator]
static ALLOCATOR: counting_alloc::Counting = counting_alloc::Counting;

const WARM_UP: usize = 1_000;
const MESSAGES: usize = 10_000;

fn echo_allocations(size: usize) -> usize {
    let mut path = flow::EchoPath::new(size);
    for _ in 0..WARM_UP {
        path.round();
    }
    allocations(|| {
        for _ in 0..MESSAGES {
            path.round();
        }
    })
}

fn broadcast_allocations(members: usize, broadcasts: usize) -> usize {
    let mut path = flow::FanoutPath::new(members, 64);
    for _ in 0..10 {
        path.round();
    }
    allocations(|| {
        for _ in 0..broadcasts {
            path.round();
        }
    })
}

// One test function runs every case, so the counter is never shared by parallel tests.
#[test]
fn steady_state_paths_do_not_allocate_per_message() {
    for size in [64, 4096] {
        let n = echo_allocations(size);
        eprintln!("echo {size} B: {n} allocations in {MESSAGES} round trips");
        assert_eq!(
            n, 0,
            "echo of {size}-byte messages allocated {n} times in {MESSAGES} round trips"
        );
    }
    // A broadcast allocates a fixed handful (its JSON ext_data decoded, its frame encoded
    // once), whatever the group's size: nothing per delivery.
    let broadcasts = 200;
    let small = broadcast_allocations(10, broadcasts);
    let large = broadcast_allocations(1_000, broadcasts);
    eprintln!(
        "broadcast: {small} allocations to 10 members, {large} to 1000, {broadcasts} broadcasts"
    );
    assert_eq!(small, large, "allocations grow with the group");
    assert!(
        small <= broadcasts * 16,
        "{small} allocations in {broadcasts} broadcasts"
    );
}
