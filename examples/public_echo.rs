//! A blocking echo server over the public-port codecs, for conformance runs by hand:
//! `cargo run --example public_echo -- 127.0.0.1:9001 [package_size_max]`, then point the
//! Autobahn TestSuite's fuzzingclient (or `kosoku`) at it. Each message comes back as one
//! frame of the same type. Not part of the gateway: one thread per client, no limits.
#![allow(
    clippy::disallowed_methods,
    reason = "an example server: its helper thread is the point"
)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use bytes::BytesMut;
use gatewayworker::protocol::public::{PublicEvent, PublicProtocol, PACKAGE_SIZE_MAX_DEFAULT};

fn serve(mut stream: TcpStream, package_size_max: u32) -> std::io::Result<()> {
    let mut decoder = PublicProtocol::Websocket.decoder(package_size_max);
    let mut input = BytesMut::new();
    let mut scratch = vec![0u8; 64 * 1024];
    loop {
        let n = stream.read(&mut scratch)?;
        if n == 0 {
            return Ok(());
        }
        input.extend_from_slice(&scratch[..n]);
        let mut out = BytesMut::new();
        let mut close = false;
        decoder.decode(&mut input, &mut |event| match event {
            PublicEvent::Handshake { response, .. } => out.extend_from_slice(&response),
            PublicEvent::Message { data, binary } => {
                PublicProtocol::Websocket
                    .encode(&data, binary, &mut out)
                    .expect("websocket encoding cannot fail");
            }
            PublicEvent::Write(bytes) => out.extend_from_slice(&bytes),
            PublicEvent::Close(reason) => {
                eprintln!("close: {reason}");
                close = true;
            }
        });
        stream.write_all(&out)?;
        if close {
            // Send FIN first (the server closes first, RFC 6455 7.1.1), then drain so
            // that unread client bytes do not turn our close into a reset.
            stream.shutdown(std::net::Shutdown::Write)?;
            stream.set_read_timeout(Some(std::time::Duration::from_secs(2)))?;
            while matches!(stream.read(&mut scratch), Ok(n) if n > 0) {}
            return Ok(());
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "127.0.0.1:9001".to_owned());
    let package_size_max = args
        .next()
        .map(|s| s.parse().expect("package_size_max"))
        .unwrap_or(PACKAGE_SIZE_MAX_DEFAULT);
    let listener = TcpListener::bind(&address)?;
    eprintln!("echo on {address}, package_size_max {package_size_max}");
    for stream in listener.incoming() {
        let stream = stream?;
        std::thread::spawn(move || {
            let _ = serve(stream, package_size_max);
        });
    }
    Ok(())
}
