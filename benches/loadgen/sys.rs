//! Processes and their costs: spawning the servers under test, CPU time and RSS from
//! /proc, the load generator's own CPU from getrusage, and the fd limit.

use std::io;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A set of server processes, killed when dropped.
pub struct Servers {
    children: Vec<(String, Child)>,
}

impl Servers {
    /// No processes yet.
    pub fn new() -> Servers {
        Servers {
            children: Vec::new(),
        }
    }

    /// Starts `program args` with logs at warn level, stdout discarded.
    pub fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> io::Result<u32> {
        let child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| io::Error::other(format!("{}: {e}", program.display())))?;
        let pid = child.id();
        self.children.push((name.to_owned(), child));
        Ok(pid)
    }

    /// The pid of the process named `name`.
    pub fn pid(&self, name: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
    }

    /// Every pid.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(|(_, c)| c.id()).collect()
    }

    /// Fails if a process has exited.
    pub fn check_alive(&mut self) -> io::Result<()> {
        for (name, child) in &mut self.children {
            if let Some(status) = child.try_wait()? {
                return Err(io::Error::other(format!("{name} exited: {status}")));
            }
        }
        Ok(())
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A free loopback port (bound, then released).
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// CPU time (user + system, every thread, live or exited) of process `pid`.
pub fn cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the parenthesised command name: state is index 0, utime 11, stime 12.
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
        return Duration::ZERO;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_nanos(ticks * 1_000_000_000 / hz)
}

/// Write system calls (`write`, `writev`: the `syscw` of `/proc/<pid>/io`) a process has
/// made, all threads; 0 when unreadable. Socket `recv`/`send` calls are not counted
/// there, but every write of ours and of the references is a `writev`/`write`.
pub fn write_calls(pid: u32) -> u64 {
    proc_value(pid, "io", "syscw:").unwrap_or(0)
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    proc_value(pid, "status", "VmRSS:").unwrap_or(0)
}

/// The number after `key` on its line of `/proc/<pid>/<file>`.
fn proc_value(pid: u32, file: &str, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The load generator's own CPU time (getrusage, all its threads).
pub fn self_cpu() -> Duration {
    // SAFETY: getrusage fills the struct we own.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// Raises the soft fd limit to the hard one; returns `(soft, hard)` after, and whether
/// raising the hard limit to `wanted` was refused.
pub fn raise_fd_limit(wanted: u64) -> (u64, u64, Option<String>) {
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        let mut refused = None;
        if lim.rlim_max < wanted {
            let want = libc::rlimit {
                rlim_cur: wanted,
                rlim_max: wanted,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) != 0 {
                refused = Some(format!(
                    "setrlimit(RLIMIT_NOFILE, {wanted}) refused: {} (hard limit {})",
                    io::Error::last_os_error(),
                    lim.rlim_max
                ));
            }
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim);
        (lim.rlim_cur, lim.rlim_max, refused)
    }
}
