//! Listen addresses as the original writes them: `websocket://0.0.0.0:8282`,
//! `text://0.0.0.0:1236`, or a bare `HOST:PORT`.

use std::net::{SocketAddr, ToSocketAddrs};

use gatewayworker::gateway::PublicProtocol;

/// Splits `scheme://rest` into the scheme and the rest (`None` when there is no scheme).
fn split_scheme(url: &str) -> (Option<&str>, &str) {
    match url.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, url),
    }
}

/// Resolves `HOST:PORT` (an IP literal or a name) to its first socket address.
pub fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("`{text}` resolves to no address")),
        Err(_) => Err(format!("`{text}` is not HOST:PORT")),
    }
}

/// A gateway's public listen URL: the client protocol and the address.
pub fn public_listen(url: &str) -> Result<(PublicProtocol, SocketAddr), String> {
    let (scheme, rest) = split_scheme(url);
    let protocol = match scheme {
        Some("websocket") | Some("ws") => PublicProtocol::Websocket,
        Some("text") => PublicProtocol::Text,
        Some("frame") => PublicProtocol::Frame,
        Some(other) => {
            return Err(format!(
                "unknown protocol `{other}` (use websocket://, text:// or frame://)"
            ))
        }
        None => {
            return Err(format!(
                "`{url}` has no protocol; write e.g. websocket://{url}"
            ))
        }
    };
    Ok((protocol, socket_addr(rest)?))
}

/// A register's listen address: `text://HOST:PORT` or `HOST:PORT` (the register speaks text).
pub fn register_listen(url: &str) -> Result<SocketAddr, String> {
    match split_scheme(url) {
        (None, rest) | (Some("text"), rest) => socket_addr(rest),
        (Some(other), _) => Err(format!("the register speaks text://, not {other}://")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_urls() {
        let (protocol, addr) = public_listen("websocket://0.0.0.0:8282").unwrap();
        assert_eq!(protocol, PublicProtocol::Websocket);
        assert_eq!(addr, "0.0.0.0:8282".parse().unwrap());
        assert_eq!(
            public_listen("text://127.0.0.1:1").unwrap().0,
            PublicProtocol::Text
        );
        assert_eq!(
            public_listen("frame://127.0.0.1:1").unwrap().0,
            PublicProtocol::Frame
        );
        assert!(public_listen("http://0.0.0.0:1")
            .unwrap_err()
            .contains("`http`"));
        assert!(public_listen("0.0.0.0:1")
            .unwrap_err()
            .contains("no protocol"));
        assert!(public_listen("websocket://0.0.0.0").is_err());
    }

    #[test]
    fn register_urls() {
        assert_eq!(
            register_listen("text://0.0.0.0:1236").unwrap(),
            "0.0.0.0:1236".parse().unwrap()
        );
        assert_eq!(
            register_listen("127.0.0.1:1").unwrap(),
            "127.0.0.1:1".parse().unwrap()
        );
        assert!(register_listen("websocket://0.0.0.0:1").is_err());
    }
}
