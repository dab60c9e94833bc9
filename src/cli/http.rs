//! The small HTTP/1.1 server behind the metrics endpoint and the demo page: one request per
//! connection (`Connection: close`), a bounded request head, a read timeout, and a bounded
//! number of connections at once, on a thread of its own with a current-thread runtime, so
//! that a slow or hostile HTTP client never touches a gateway shard.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use super::error::CliError;
use gatewayworker::net::{AcceptBackoff, ROLE_THREAD_STACK_BYTES};

/// The bounds of one server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest request head read (request line and headers); longer gets a 431.
    pub head_max: usize,
    /// Time a client has to send its head; then the connection is closed unanswered.
    pub timeout: Duration,
    /// Requests served at once; further connections are closed at once.
    pub connections_max: usize,
}

/// An HTTP answer before serialization.
#[derive(Debug)]
pub struct Response {
    /// Status line after the version, e.g. `200 OK`.
    pub status: &'static str,
    /// The `Content-Type` value.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
}

impl Response {
    /// A plain-text answer.
    pub fn text(status: &'static str, body: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.to_owned(),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n\
             Connection: close\r\n\r\n",
            self.status,
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        out.extend_from_slice(self.body.as_bytes());
        out
    }
}

/// What a server answers to a complete request head.
pub trait Handler: Send + Sync + 'static {
    /// The answer to `head` (request line and headers, up to the blank line).
    fn respond(&self, head: &[u8]) -> Response;
}

/// A bound, not yet serving, listener: binding first lets a caller fail early on a port in
/// use and learn the real port before it knows what to serve.
#[derive(Debug)]
pub struct HttpListener {
    listener: std::net::TcpListener,
    /// The bound address (with the real port when 0 was asked).
    pub addr: SocketAddr,
}

impl HttpListener {
    /// Binds `addr`; `what` names the listener in errors.
    pub fn bind(addr: SocketAddr, what: &str) -> Result<HttpListener, CliError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| CliError::bind(addr, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| CliError::io(format!("{what} listener"), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::io(format!("{what} listener"), e))?;
        Ok(HttpListener { listener, addr })
    }

    /// Serves `handler` within `limits` on a thread named `name`.
    pub fn serve(
        self,
        name: &'static str,
        limits: Limits,
        handler: impl Handler,
    ) -> Result<HttpServer, CliError> {
        let (stop, stopped) = watch::channel(false);
        let listener = self.listener;
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .stack_size(ROLE_THREAD_STACK_BYTES)
            .spawn(move || serve_thread(listener, name, limits, Arc::new(handler), stopped))
            .map_err(|e| CliError::io(format!("starting the {name} thread"), e))?;
        Ok(HttpServer {
            addr: self.addr,
            stop,
            thread,
        })
    }
}

/// A running server.
#[derive(Debug)]
pub struct HttpServer {
    /// The address it answers on.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl HttpServer {
    /// Stops answering and waits for the thread.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

fn serve_thread<H: Handler>(
    listener: std::net::TcpListener,
    name: &'static str,
    limits: Limits,
    handler: Arc<H>,
    mut stopped: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, server = name, "http server cannot start");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, server = name, "http server cannot start");
                return;
            }
        };
        let permits = Arc::new(Semaphore::new(limits.connections_max));
        // Accept errors pause the loop (EMFILE and the like) instead of spinning.
        let mut backoff = AcceptBackoff::new(name);
        loop {
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => return,
                (stream, _) = backoff.accept(async || listener.accept().await) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        continue; // over connections_max: drop the socket
                    };
                    let handler = handler.clone();
                    tokio::spawn(async move {
                        let _ = answer(stream, limits, handler.as_ref()).await;
                        drop(permit);
                    });
                }
            }
        }
    });
}

/// Reads one request head and answers it, then closes. A client that sends no complete
/// head within the timeout is closed unanswered.
async fn answer(
    mut stream: tokio::net::TcpStream,
    limits: Limits,
    handler: &impl Handler,
) -> io::Result<()> {
    let read = read_head(&mut stream, limits.head_max);
    let head = match tokio::time::timeout(limits.timeout, read).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let response = match head {
        Some(head) => handler.respond(&head),
        None => Response::text(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
    };
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await
}

/// The request head up to and including its blank line; `None` when no blank line comes
/// within `head_max` bytes. A head cut short by the peer's close is answered as it is.
async fn read_head(
    stream: &mut tokio::net::TcpStream,
    head_max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() >= head_max {
            return Ok(None);
        }
        let room = (head_max - head.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends (past its blank line), accepting bare `\n` line ends too.
pub fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The method and the path (without the query) of a request head.
pub fn request_target(head: &[u8]) -> (String, String) {
    let head = String::from_utf8_lossy(head);
    let request_line = head.lines().next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let path = parts
        .next()
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_owned();
    (method, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\nHost: x\n\nbody"), Some(24));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn the_target_drops_the_query() {
        let (method, path) = request_target(b"GET /metrics?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!((method.as_str(), path.as_str()), ("GET", "/metrics"));
        assert_eq!(request_target(b""), (String::new(), String::new()));
    }

    #[test]
    fn responses_close_the_connection_and_count_their_body() {
        let bytes = Response::text("404 Not Found", "nope\n").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text.contains("\r\nContent-Length: 5\r\n"));
        assert!(text.contains("\r\nConnection: close\r\n\r\nnope\n"));
    }
}
