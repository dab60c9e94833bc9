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

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::error::CliError;
use super::http::{request_target, Handler, HttpListener, HttpServer, Limits, Response};

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
    listener: HttpListener,
}

impl DemoListener {
    /// Binds `addr`.
    pub fn bind(addr: SocketAddr) -> Result<DemoListener, CliError> {
        let listener = HttpListener::bind(addr, "demo page")?;
        Ok(DemoListener { listener })
    }

    /// Serves the page, pointing at `gateway`, on a thread of its own.
    pub fn serve(self, gateway: Gateway) -> Result<DemoServer, CliError> {
        let limits = Limits {
            head_max: REQUEST_HEAD_MAX,
            timeout: REQUEST_TIMEOUT,
            connections_max: CONNECTIONS_MAX,
        };
        let server = self.listener.serve("demo-page", limits, gateway)?;
        Ok(DemoServer {
            addr: server.addr,
            server,
        })
    }
}

/// A running demo page server.
pub struct DemoServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    server: HttpServer,
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
        self.server.shutdown();
    }
}

impl Handler for Gateway {
    fn respond(&self, head: &[u8]) -> Response {
        respond(head, self)
    }
}

/// Routes one request head: `GET /` (any query) is the page, the rest is not here.
fn respond(head: &[u8], gateway: &Gateway) -> Response {
    let (method, path) = request_target(head);
    let head = String::from_utf8_lossy(head);
    let host = head
        .lines()
        .skip(1)
        .take_while(|line| !line.trim().is_empty())
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("host"))
        .map(|(_, value)| value.trim());
    match (method.as_str(), path.as_str()) {
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
}
