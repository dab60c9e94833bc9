//! `gatewayworker status`: asks a register for its gateways the way a worker does
//! (`worker_connect`, then one `broadcast_addresses` line), then asks each gateway for its
//! client count with GET_CLIENT_COUNT_BY_GROUP and an empty group (= all its clients),
//! the way GatewayClient does, and prints a table.

use std::io::Write as _;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use gatewayworker::protocol::frame::{
    encode_frame, Command, Header, ReplyDecoder, FLAG_BODY_IS_SCALAR,
};
use gatewayworker::protocol::php::json::{json_encode, JsonEncodeOptions};
use gatewayworker::protocol::php::unserialize::unserialize_lenient;
use gatewayworker::protocol::php::{PhpArray, PhpKey, PhpValue};
use gatewayworker::protocol::register::{decode_from_register, FromRegister, ToRegister};

use super::args::StatusArgs;
use super::error::CliError;

/// Default `--register`.
pub const REGISTER_DEFAULT: &str = "127.0.0.1:1236";
/// Default `--timeout`, the original GatewayClient's wait for the register and for replies.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(5);
/// Longest register line read; the list of a large cluster is a few kilobytes.
pub const REGISTER_LINE_MAX: usize = 1024 * 1024;
/// Largest count reply accepted (`i:<digits>;` is a few bytes).
pub const COUNT_REPLY_MAX: u32 = 1024;

/// One row of the table.
#[derive(Debug)]
struct Row {
    gateway: String,
    clients: Result<i64, String>,
}

/// Runs the query and prints the table; fails when the register cannot be asked, or when
/// a gateway did not answer (after printing what is known).
pub fn run(args: StatusArgs) -> Result<(), CliError> {
    let register = args.register.unwrap_or_else(|| REGISTER_DEFAULT.to_owned());
    let secret = args.secret.unwrap_or_default();
    let timeout = args.timeout.map_or(TIMEOUT_DEFAULT, Duration::from_secs);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::io("starting the runtime", e))?;
    let rows = runtime.block_on(async {
        let gateways = ask_register(&register, &secret, timeout).await?;
        // All gateways at once, so one dead gateway costs one timeout, not one each.
        let mut queries = tokio::task::JoinSet::new();
        for (index, gateway) in gateways.iter().enumerate() {
            let (gateway, secret) = (gateway.clone(), secret.clone());
            queries.spawn(async move { (index, ask_count(&gateway, &secret, timeout).await) });
        }
        let mut counts: Vec<Result<i64, String>> =
            vec![Err("no answer".to_owned()); gateways.len()];
        while let Some(done) = queries.join_next().await {
            if let Ok((index, clients)) = done {
                counts[index] = clients;
            }
        }
        let rows = gateways
            .into_iter()
            .zip(counts)
            .map(|(gateway, clients)| Row { gateway, clients })
            .collect::<Vec<_>>();
        Ok::<_, CliError>(rows)
    })?;
    print_table(&register, &rows);
    let missing = rows.iter().filter(|r| r.clients.is_err()).count();
    if missing > 0 {
        return Err(CliError::GatewaysMissing(missing));
    }
    Ok(())
}

fn print_table(register: &str, rows: &[Row]) {
    let width = rows
        .iter()
        .map(|r| r.gateway.len())
        .chain([7, "total".len()])
        .max()
        .unwrap_or(7);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "register {register}: {} gateway(s)", rows.len());
    let _ = writeln!(out, "{:<width$}  CLIENTS", "GATEWAY");
    let mut total = 0;
    for row in rows {
        match &row.clients {
            Ok(n) => {
                total += n;
                let _ = writeln!(out, "{:<width$}  {n}", row.gateway);
            }
            Err(e) => {
                let _ = writeln!(out, "{:<width$}  ? ({e})", row.gateway);
            }
        }
    }
    let _ = writeln!(out, "{:<width$}  {total}", "total");
}

/// `worker_connect` to the register and one line back: the gateway addresses.
async fn ask_register(
    register: &str,
    secret: &str,
    timeout: Duration,
) -> Result<Vec<String>, CliError> {
    let fail = |message: String| CliError::Register {
        addr: register.to_owned(),
        message,
    };
    let exchange = async {
        let mut stream = TcpStream::connect(register)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let mut line = BytesMut::new();
        ToRegister::WorkerConnect {
            secret_key: secret.to_owned(),
        }
        .encode(&mut line);
        stream
            .write_all(&line)
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        read_line(&mut stream).await
    };
    let line = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {}s", timeout.as_secs())))?
        .map_err(fail)?;
    match decode_from_register(&line) {
        Ok(FromRegister::BroadcastAddresses(addresses)) => Ok(addresses),
        Ok(FromRegister::Other { event }) => Err(fail(format!("unexpected event `{event}`"))),
        Err(e) => Err(fail(e.to_string())),
    }
}

/// Reads up to the first `\n`; a close before it means the register refused us.
async fn read_line(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut line = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            line.truncate(end);
            while line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
        if line.len() > REGISTER_LINE_MAX {
            return Err(format!("answer longer than {REGISTER_LINE_MAX} bytes"));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("cannot read: {e}"))?;
        if n == 0 {
            return Err("closed the connection (wrong secret?)".to_owned());
        }
        line.extend_from_slice(&chunk[..n]);
    }
}

/// GET_CLIENT_COUNT_BY_GROUP with an empty group on one gateway, after the
/// GATEWAY_CLIENT_CONNECT prefix when there is a secret (both in one write, as
/// GatewayClient does).
async fn ask_count(gateway: &str, secret: &str, timeout: Duration) -> Result<i64, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(gateway)
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        stream
            .write_all(&count_request(secret))
            .await
            .map_err(|e| format!("cannot send: {e}"))?;
        let mut input = BytesMut::with_capacity(64);
        let mut decoder = ReplyDecoder::new(COUNT_REPLY_MAX);
        loop {
            match decoder.decode(&mut input) {
                Ok(Some(payload)) => {
                    return match unserialize_lenient(&payload) {
                        PhpValue::Int(n) => Ok(n),
                        other => Err(format!("unexpected reply {other:?}")),
                    }
                }
                Ok(None) => {}
                Err(e) => return Err(e.to_string()),
            }
            let n = stream
                .read_buf(&mut input)
                .await
                .map_err(|e| format!("cannot read: {e}"))?;
            if n == 0 {
                return Err("closed the connection (wrong secret?)".to_owned());
            }
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("no answer within {}s", timeout.as_secs()))?
}

/// The bytes of the request: `[GATEWAY_CLIENT_CONNECT]` + GET_CLIENT_COUNT_BY_GROUP("").
fn count_request(secret: &str) -> BytesMut {
    let mut out = BytesMut::new();
    if !secret.is_empty() {
        let mut header = Header::new(Command::GatewayClientConnect);
        header.flag = FLAG_BODY_IS_SCALAR;
        // GatewayClient json_encodes the key (PHP escaping: `/` as `\/`, `\uXXXX`).
        let body: PhpArray = [(PhpKey::from_bytes(b"secret_key"), PhpValue::str(secret))]
            .into_iter()
            .collect();
        let body =
            json_encode(&PhpValue::Array(body), JsonEncodeOptions::default()).unwrap_or_default();
        encode_frame(&mut out, &header, b"", &body);
    }
    let mut header = Header::new(Command::GetClientCountByGroup);
    header.flag = FLAG_BODY_IS_SCALAR;
    encode_frame(&mut out, &header, b"", b"");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use gatewayworker::testing::vectors::{encode_hex as hex, vector};

    #[test]
    fn auth_prefix_matches_the_vector() {
        let v = vector("sender_api", "auth_prefix");
        let secret = v["input"]["secret_key"].as_str().unwrap();
        let expected = v["expected"]["frame_hex"].as_str().unwrap();
        let request = count_request(secret);
        assert!(hex(&request).starts_with(expected), "{}", hex(&request));
        assert_eq!(request.len(), expected.len() / 2 + 28);
    }

    #[test]
    fn count_query_is_an_empty_scalar_frame() {
        // Like sender_api/getClientIdCountByGroup but with an empty group: 28 bytes, cmd 24, flag 1.
        assert_eq!(
            hex(&count_request("")),
            "0000001c180000000000000000000000000000000001000000000000"
        );
    }
}
