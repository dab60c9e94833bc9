//! `gatewayworker check-wasm FILE`: the ABI check the worker runs when it loads a module
//! (`gatewayworker::wasm::check`), before deployment. Prints every problem and warning with
//! its fix and fails (exit 1), or prints one line saying what the module implements.

use gatewayworker::wasm::check;
use gatewayworker::wasm::HostConfig;

use super::args::CheckWasmArgs;
use super::error::CliError;

/// Reads and checks the module.
pub fn run(args: CheckWasmArgs) -> Result<(), CliError> {
    let bytes = std::fs::read(&args.file).map_err(|source| CliError::Io {
        context: format!("reading {}", args.file.display()),
        source,
    })?;
    let limit = match args.memory_mib {
        Some(mib) => mib.checked_mul(1 << 20).ok_or(CliError::BadSetting {
            setting: "--memory-mib",
            message: format!("{mib} MiB is too large"),
        })?,
        None => HostConfig::default().memory_size_max as u64,
    };
    let report = check::check(&bytes, limit);
    let name = args.file.display();
    if report.is_ok() {
        print!("{report}");
        println!("{name}: ok: {}", report.summary());
        return Ok(());
    }
    print!("{report}");
    Err(CliError::BadSetting {
        setting: "check-wasm",
        message: format!(
            "{name} does not fit the gw ABI: {} problem(s), each with its fix above",
            report.problems.len()
        ),
    })
}
