//! The `gatewayworker` command line: parses flags and the config file, sets up logs, and
//! runs one subcommand. Each concept has its own file:
//!
//! * `args`: the flags (clap derive); the same structs are the config file's tables.
//! * `config`: the TOML file and its unknown-key check.
//! * `logging`: tracing to stderr, `RUST_LOG` filter, text or JSON.
//! * `http`: the small one-request-per-connection HTTP server of the metrics endpoint and
//!   the demo page (bounded head, timeout, connections).
//! * `metrics`: the Prometheus endpoint and the counters the drivers publish to it.
//! * `demo`: the demo chat page `start` serves.
//! * `signals`: waiting for SIGINT/SIGTERM.
//! * `address`: `websocket://host:port`-style listen addresses.
//! * `error`: every failure as one actionable line and an exit code.
//! * one file per subcommand: `register`, `gateway`, `status`, `worker`, `start`, `client`,
//!   `check_wasm`.
//!
//! To add a subcommand: give its `Command` variant `Args` (serde-deserializable, so it
//! gets a config table), add a table to `config::ConfigFile`, a `<name>.rs` with `run`,
//! and an arm in [`run`].

mod address;
mod args;
mod check_wasm;
mod client;
mod config;
mod demo;
mod error;
mod gateway;
mod http;
mod logging;
mod metrics;
mod register;
mod signals;
mod start;
mod status;
mod worker;

use clap::error::ErrorKind;
use clap::Parser;

use args::{Cli, Command, LogFormat};
use config::ConfigFile;
use error::CliError;

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    match run(cli) {
        Ok(()) => 0,
        Err(e) => {
            // Not through tracing: logs may be JSON or filtered out, and this line must
            // reach a person.
            eprintln!("gatewayworker: {e}");
            e.exit_code()
        }
    }
}

/// Help and version print in full; any other parse error is one line (clap's first),
/// pointing at `--help`.
fn clap_exit(e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            0
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            2
        }
        _ => {
            let rendered = e.render().to_string();
            let mut lines = rendered.lines().skip_while(|l| l.trim().is_empty());
            let first = lines
                .next()
                .unwrap_or("invalid arguments")
                .trim_start_matches("error: ");
            // "the following required arguments were not provided:" is followed by the
            // arguments, one per indented line: name them on the same line.
            let named: Vec<&str> = lines
                .take_while(|l| l.starts_with("  "))
                .map(str::trim)
                .collect();
            let first = if named.is_empty() {
                first.to_owned()
            } else {
                format!("{first} {}", named.join(" "))
            };
            let error = CliError::Usage(format!("{first} (see --help)"));
            eprintln!("gatewayworker: {error}");
            error.exit_code()
        }
    }
}

/// Loads the config file, starts logging, and runs the subcommand.
fn run(cli: Cli) -> Result<(), CliError> {
    let file = match &cli.config {
        Some(path) => ConfigFile::load(path)?,
        None => ConfigFile::default(),
    };
    let log_format = cli
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Text);
    logging::init(log_format)?;
    match cli.command {
        Command::Register(args) => register::run(args.merge(file.register)),
        Command::Gateway(args) => gateway::run(args.merge(file.gateway)),
        Command::Status(args) => status::run(args.merge(file.status)),
        Command::Worker(args) => worker::run(args.merge(file.worker)),
        Command::Client(args) => client::run(args.options.merge(file.client), args.call),
        Command::Start(args) => start::run(args.merge(file.start)),
        Command::CheckWasm(args) => check_wasm::run(args),
    }
}
