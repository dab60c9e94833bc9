//! The demo page of `gatewayworker start`: one HTML file (`web/chat.html`, compiled into the
//! binary) served over plain HTTP/1.1 on its own port, so a browser can try the bundled chat
//! worker without any other web server.
//!
//! The gateway's public port stays pure websocket, byte for byte the original's; the page
//! lives here instead. It must know where the websocket is: the page is sent with the
//! gateway's URL filled in, built from the request's `Host` header (the name the browser
//! used to reach us, so it works from another machine) and the gateway's port.
//!
//! `GET /` answers the page; anything else is a 404 (405 for other methods). One request
//! per connection (`Connection: close`), a bounded head, a read timeout and a bounded
//! number of connections at once: it is a demo, but it still listens on a public address.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};

use super::error::CliError;

/// The page, with [`WEBSOCKET_PLACEHOLDER`] where the gateway's URL goes.
pub const PAGE: &str = include_str!("../../web/chat.html");
/// Replaced in [`PAGE`] by the websocket URL of the gateway.
pub const WEBSOCKET_PLACEHOLDER: &str = "__GW_WEBSOCKET_URL__";
/// Where the demo page listens by default (the original's workerman-chat web server port).
pub const LISTEN_DEFAULT: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 55151);
/// Longest request head read (request line and headers); longer gets a 431.
pub const REQUEST_HEAD_MAX: usize = 8 * 1024;
/// Time a browser has to send its request head before the connection is closed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Requests served at once; further connections are closed at once.
pub const CONNECTIONS_MAX: usize = 64;
/// Longest `Host` name used in the page; a longer one falls back to the gateway's address.
pub const HOST_LEN_MAX: usize = 255;

/// Where the page's websocket connects: the gateway's public port.
#[derive(Debug, Clone)]
pub struct Gateway {
    /// `ws` or `wss`.
    pub scheme: &'static str,
    /// The gateway's public address; its port goes into the URL, and its IP when the
    /// request has no usable `Host` header.
    pub public_addr: SocketAddr,
}

impl Gateway {
    /// The websocket URL for a request that reached us as `host` (a `Host` header value).
    pub fn websocket_url(&self, host: Option<&str>) -> String {
        let host = host
            .and_then(host_name)
            .unwrap_or_else(|| self.fallback_host());
        format!("{}://{}:{}/", self.scheme, host, self.public_addr.port())
    }

    /// The gateway's own IP, or loopback when it listens on every address.
    fn fallback_host(&self) -> String {
        match self.public_addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_owned(),
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        }
    }
}

/// The name part of a `Host` header value (`name`, `name:port`, `[v6]`, `[v6]:port`),
/// or `None` when it is empty, too long, or has a character that does not belong in a
/// host name. The check matters: the name is written into the page's HTML.
fn host_name(value: &str) -> Option<String> {
    let value = value.trim();
    let (name, ok) = match value.strip_prefix('[') {
        // An IPv6 literal: hex digits, colons, dots (an embedded v4), kept in brackets.
        Some(rest) => {
            let inner = &rest[..rest.find(']')?];
            let ok = inner
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
            (format!("[{inner}]"), ok && !inner.is_empty())
        }
        None => {
            let name = value.split(':').next().unwrap_or_default();
            let ok = name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            (name.to_owned(), ok && !name.is_empty())
        }
    };
    (ok && name.len() <= HOST_LEN_MAX).then_some(name)
}

/// The demo page's port, bound before the rest of `start` runs (so a port in use fails
/// early) and served once the gateway's address is known.
pub struct DemoListener {
    listener: std::net::TcpListener,
    /// The bound address (with the real port when 0 was asked).
    pub addr: SocketAddr,
}

impl DemoListener {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> Result<DemoListener, CliError> {
        let listener = std::net::TcpListener::bind(addr).map_err(|e| CliError::bind(addr, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| CliError::io("demo page listener", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| CliError::io("demo page listener", e))?;
        Ok(DemoListener { listener, addr })
    }

    /// Serves the page, pointing at `gateway`, on a thread of its own.
    pub fn serve(self, gateway: Gateway) -> Result<DemoServer, CliError> {
        let (stop, stopped) = watch::channel(false);
        let listener = self.listener;
        let thread = std::thread::Builder::new()
            .name("demo-page".to_owned())
            .spawn(move || serve_thread(listener, gateway, stopped))
            .map_err(|e| CliError::io("starting the demo page thread", e))?;
        Ok(DemoServer {
            addr: self.addr,
            stop,
            thread,
        })
    }
}

/// A running demo page server.
pub struct DemoServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: JoinHandle<()>,
}

impl DemoServer {
    /// The URL to print: loopback when listening on every address.
    pub fn url(&self) -> String {
        let host = match self.addr.ip() {
            ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        format!("http://{host}:{}/", self.addr.port())
    }

    /// Stops answering and waits for the thread.
    pub fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.thread.join();
    }
}

fn serve_thread(
    listener: std::net::TcpListener,
    gateway: Gateway,
    mut stopped: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "demo page cannot start");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                tracing::error!(error = %e, "demo page cannot start");
                return;
            }
        };
        let gateway = Arc::new(gateway);
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        loop {
            tokio::select! {
                biased;
                _ = stopped.wait_for(|stop| *stop) => return,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        continue; // over CONNECTIONS_MAX: drop the socket
                    };
                    let gateway = gateway.clone();
                    tokio::spawn(async move {
                        let _ = answer(stream, &gateway).await;
                        drop(permit);
                    });
                }
            }
        }
    });
}

/// Reads one request head and answers it; the connection is closed after each answer.
/// A client that sends no complete head within [`REQUEST_TIMEOUT`] is closed unanswered.
async fn answer(mut stream: tokio::net::TcpStream, gateway: &Gateway) -> io::Result<()> {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let response = match head {
        Some(head) => respond(&head, gateway),
        None => Response::text(
            "431 Request Header Fields Too Large",
            "request head too large\n",
        ),
    };
    stream.write_all(&response.to_bytes()).await?;
    stream.shutdown().await
}

/// The request head up to and including its blank line; `None` when no blank line comes
/// within [`REQUEST_HEAD_MAX`] bytes. A head cut short by the peer's close is answered
/// as it is.
async fn read_head(stream: &mut tokio::net::TcpStream) -> io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = head_end(&head) {
            head.truncate(end);
            return Ok(Some(head));
        }
        if head.len() >= REQUEST_HEAD_MAX {
            return Ok(None);
        }
        let room = (REQUEST_HEAD_MAX - head.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..room]).await?;
        if n == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&chunk[..n]);
    }
}

/// Where the head ends (past its blank line), accepting bare `\n` line ends too.
fn head_end(bytes: &[u8]) -> Option<usize> {
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

/// An HTTP answer before serialization.
#[derive(Debug)]
struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn text(status: &'static str, body: &str) -> Response {
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

/// Routes one request head: `GET /` (any query) is the page, the rest is not here.
fn respond(head: &[u8], gateway: &Gateway) -> Response {
    let head = String::from_utf8_lossy(head);
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let host = lines
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim());
    match (method, path) {
        ("GET", "/") => Response {
            status: "200 OK",
            content_type: "text/html; charset=utf-8",
            body: PAGE.replace(WEBSOCKET_PLACEHOLDER, &gateway.websocket_url(host)),
        },
        ("GET", _) => Response::text("404 Not Found", "not found: the demo page is at /\n"),
        _ => Response::text("405 Method Not Allowed", "only GET\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(addr: &str) -> Gateway {
        Gateway {
            scheme: "ws",
            public_addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn the_page_has_exactly_one_placeholder() {
        assert_eq!(PAGE.matches(WEBSOCKET_PLACEHOLDER).count(), 1);
    }

    #[test]
    fn the_websocket_url_takes_the_host_header_name_and_the_gateway_port() {
        let g = gateway("0.0.0.0:8282");
        assert_eq!(
            g.websocket_url(Some("example.org:55151")),
            "ws://example.org:8282/"
        );
        assert_eq!(g.websocket_url(Some("10.1.2.3")), "ws://10.1.2.3:8282/");
        assert_eq!(g.websocket_url(Some("[::1]:55151")), "ws://[::1]:8282/");
        assert_eq!(g.websocket_url(None), "ws://127.0.0.1:8282/");
    }

    #[test]
    fn a_host_header_that_could_break_the_page_falls_back_to_the_gateway_address() {
        let g = gateway("203.0.113.7:9000");
        for bad in [
            "",
            "\"><script>alert(1)</script>",
            "a b",
            "[::1",
            "[fe80::1%eth0]",
            "[]",
            &"h".repeat(HOST_LEN_MAX + 1),
        ] {
            assert_eq!(
                g.websocket_url(Some(bad)),
                "ws://203.0.113.7:9000/",
                "{bad:?}"
            );
        }
        let long = "h".repeat(HOST_LEN_MAX);
        assert_eq!(g.websocket_url(Some(&long)), format!("ws://{long}:9000/"));
    }

    #[test]
    fn get_slash_is_the_filled_page_and_the_rest_is_404_or_405() {
        let g = gateway("0.0.0.0:8282");
        let page = respond(b"GET /?x=1 HTTP/1.1\r\nhOsT: chat.test:55151\r\n\r\n", &g);
        assert_eq!(page.status, "200 OK");
        assert!(page.body.contains(r#"content="ws://chat.test:8282/""#));
        assert!(!page.body.contains(WEBSOCKET_PLACEHOLDER));
        let other = respond(b"GET /favicon.ico HTTP/1.1\r\n\r\n", &g);
        assert_eq!(other.status, "404 Not Found");
        let post = respond(b"POST / HTTP/1.1\r\n\r\n", &g);
        assert_eq!(post.status, "405 Method Not Allowed");
        assert_eq!(respond(b"", &g).status, "405 Method Not Allowed");
    }

    #[test]
    fn the_head_ends_at_the_first_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
        assert_eq!(head_end(b"GET /\n\n"), Some(7));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
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
