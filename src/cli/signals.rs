//! Waiting for SIGINT or SIGTERM, the two ways a person or a supervisor asks a server to
//! stop. Handlers are installed before any listener opens, so a signal that arrives
//! during start-up is kept, not fatal.

use std::time::Duration;

use tokio::runtime::Runtime;
use tokio::signal::unix::{signal, Signal, SignalKind};

use super::error::CliError;

/// How often [`Termination::wait`] checks whether the server ended on its own.
pub const ENDED_POLL_PERIOD: Duration = Duration::from_millis(200);

/// Installed handlers and the small runtime that waits on them.
pub struct Termination {
    runtime: Runtime,
    interrupt: Signal,
    terminate: Signal,
}

impl Termination {
    /// Installs the SIGINT and SIGTERM handlers.
    pub fn install() -> Result<Termination, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::io("starting the signal runtime", e))?;
        let (interrupt, terminate) = {
            let _guard = runtime.enter();
            let interrupt = signal(SignalKind::interrupt())
                .map_err(|e| CliError::io("installing the SIGINT handler", e))?;
            let terminate = signal(SignalKind::terminate())
                .map_err(|e| CliError::io("installing the SIGTERM handler", e))?;
            (interrupt, terminate)
        };
        Ok(Termination {
            runtime,
            interrupt,
            terminate,
        })
    }

    /// Blocks until SIGINT or SIGTERM arrives (`Some(name)`), or until `ended()` says the
    /// server stopped on its own (`None`), checked every [`ENDED_POLL_PERIOD`].
    pub fn wait(mut self, ended: impl Fn() -> bool) -> Option<&'static str> {
        self.runtime.block_on(async {
            let mut poll = tokio::time::interval(ENDED_POLL_PERIOD);
            loop {
                tokio::select! {
                    biased;
                    _ = self.terminate.recv() => return Some("SIGTERM"),
                    _ = self.interrupt.recv() => return Some("SIGINT"),
                    _ = poll.tick() => {
                        if ended() {
                            return None;
                        }
                    }
                }
            }
        })
    }
}
