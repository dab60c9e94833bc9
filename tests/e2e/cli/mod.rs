//! The `gatewayworker` binary as a person runs it: flags, config file, errors, signals,
//! the status query and the metrics endpoint, all over real processes and sockets on
//! 127.0.0.1. Every wait is bounded by `WAIT`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::free_port;

use bytes::BytesMut;
use gatewayworker::protocol::frame::{self, encode_frame, Header, FLAG_BODY_IS_SCALAR};

mod client;
mod gateway;
mod general;
mod limits;
mod memory;
mod register;
mod start;
mod status;

/// Longest a test waits for any one thing.
const WAIT: Duration = Duration::from_secs(10);

fn bin() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gatewayworker"));
    command.env("RUST_LOG", "info");
    command
}

/// Runs a command that is expected to end on its own, killing it after `WAIT`.
fn run(command: &mut Command) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("command did not end within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A long-running subcommand with its stderr lines delivered through a channel.
struct Server {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    fn start(command: &mut Command) -> Server {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Server {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`; panics with what was seen.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no `{needle}` within {WAIT:?}; stderr: {:#?}", self.seen),
            }
        }
    }

    /// Sends SIGTERM and waits (bounded) for the exit.
    fn terminate(&mut self) -> ExitStatus {
        self.signal("-TERM")
    }

    /// Sends `signal` (as `kill` spells it) and waits (bounded) for the exit.
    fn signal(&mut self, signal: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit within {WAIT:?} of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn start_register(port: u16, extra: &[&str]) -> Server {
    let mut server = Server::start(
        bin()
            .args(["register", "--listen"])
            .arg(format!("text://127.0.0.1:{port}"))
            .args(extra),
    );
    server.wait_for("register ready");
    server
}

fn start_gateway(public: u16, lan: u16, register: u16, extra: &[&str]) -> Server {
    let mut server = Server::start(
        bin()
            .args(["gateway", "--listen"])
            .arg(format!("text://127.0.0.1:{public}"))
            .args(["--start-port", &lan.to_string()])
            .args(["--register", &format!("127.0.0.1:{register}")])
            .args(extra),
    );
    server.wait_for("gateway ready");
    server
}

/// Retries `check` until it returns `Some` or `WAIT` passes.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One plain HTTP/1.1 GET; returns the whole response.
fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn write_file(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gatewayworker-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// A worker link: WORKER_CONNECT on the gateway's lan port, so clients get a worker.
/// `secret_json` is the key as JSON text (PHP escapes `/` as `\/`).
fn worker_link(lan: u16, secret_json: &str) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", lan)).unwrap();
    let mut header = Header::new(frame::Command::WorkerConnect);
    header.flag = FLAG_BODY_IS_SCALAR;
    let mut out = BytesMut::new();
    let body = format!(r#"{{"worker_key":"cli-test:0","secret_key":"{secret_json}"}}"#);
    encode_frame(&mut out, &header, b"", body.as_bytes());
    stream.write_all(&out).unwrap();
    stream
}
