//! Runs a gateway hot path in process for N messages, for callgrind (scripts/callgrind):
//!
//! ```sh
//! hotpath echo 64 N        # N echo round trips of 64-byte messages
//! hotpath fanout 1000 N    # N broadcasts to a group of 1000 members (64-byte messages)
//! ```
//!
//! Running it twice with different N and dividing the difference of the instruction
//! counts by the difference of N gives instructions per message (or per delivery),
//! without the setup.

#[path = "flow.rs"]
mod flow;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let arg = |i: usize, default: usize| -> usize {
        args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default)
    };
    match args.first().map(String::as_str) {
        Some("echo") => {
            let mut path = flow::EchoPath::new(arg(1, 64));
            for _ in 0..arg(2, 10_000) {
                path.round();
            }
        }
        Some("fanout") => {
            let mut path = flow::FanoutPath::new(arg(1, 1000), 64);
            let mut deliveries = 0;
            for _ in 0..arg(2, 100) {
                deliveries += path.round();
            }
            println!("{deliveries} deliveries");
        }
        None => {
            // `cargo test --all-targets` runs bench targets without arguments: a smoke run.
            let mut echo = flow::EchoPath::new(64);
            let mut fanout = flow::FanoutPath::new(10, 64);
            for _ in 0..100 {
                echo.round();
                fanout.round();
            }
        }
        Some(other) => {
            eprintln!("usage: hotpath echo SIZE N | hotpath fanout MEMBERS N (not {other})");
            std::process::exit(2);
        }
    }
}
