//! The `gatewayworker` command line.

fn main() {
    std::process::exit(gatewayworker_cli_main());
}

fn gatewayworker_cli_main() -> i32 {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None | Some("help") | Some("--help") | Some("-h") => {
            print!("{}", USAGE);
            0
        }
        Some("--version") | Some("-V") => {
            println!("gatewayworker {}", env!("CARGO_PKG_VERSION"));
            0
        }
        Some(other) => {
            eprintln!("gatewayworker: unknown or not yet available subcommand `{other}`");
            eprint!("{}", USAGE);
            2
        }
    }
}

const USAGE: &str = "\
gatewayworker: GatewayWorker-compatible register, gateway and business workers (wasm plugins)

USAGE:
    gatewayworker <SUBCOMMAND> [OPTIONS]

PLANNED SUBCOMMANDS (being built; see README):
    start       register + gateway + workers in one process (runs the chat demo by default)
    register    run a register
    gateway     run a gateway
    worker      run business workers from a .wasm file
    client      call the Gateway API from the shell (send-to-group, online-count, ...)
    status      show the cluster's gateways and counts
";
