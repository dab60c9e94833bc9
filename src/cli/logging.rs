//! Log output: `tracing` events to stderr, filtered by `RUST_LOG` (default `info`), as
//! text or as one JSON object per line.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::args::LogFormat;
use super::error::CliError;

/// The filter used when `RUST_LOG` is not set.
pub const DEFAULT_FILTER: &str = "info";

/// Installs the global subscriber. A malformed `RUST_LOG` is an error, not a silent default.
pub fn init(format: LogFormat) -> Result<(), CliError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => {
            EnvFilter::try_new(&spec).map_err(|e| CliError::BadSetting {
                setting: "RUST_LOG",
                message: format!("`{spec}`: {e}"),
            })?
        }
        _ => EnvFilter::new(DEFAULT_FILTER),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    // Only fails when a subscriber is already set (never in the binary).
    let _ = result;
    Ok(())
}
