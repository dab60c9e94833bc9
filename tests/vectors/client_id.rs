//! The `client_id` vectors: formatting, parsing back, gateway address, parse rejections.

use std::net::Ipv4Addr;

use gatewayworker::protocol::client_id::{ClientId, ClientIdParseError};
use gatewayworker::testing::vectors::section;
use serde_json::Value;

fn id_of(fields: &Value) -> ClientId {
    ClientId {
        local_ip: Ipv4Addr::from(fields["local_ip"].as_u64().unwrap() as u32),
        local_port: fields["local_port"].as_u64().unwrap() as u16,
        connection_id: fields["connection_id"].as_u64().unwrap() as u32,
    }
}

#[test]
fn client_id_vectors() {
    let (mut formatted, mut parsed) = (0, 0);
    for v in section("client_id") {
        let name = v["name"].as_str().unwrap();
        let input = &v["input"];
        let expected = &v["expected"];
        if let Some(want) = expected.get("client_id") {
            let id = id_of(input);
            assert_eq!(
                input["local_ip_dotted"].as_str().unwrap(),
                id.local_ip.to_string(),
                "{name}"
            );
            let want = want.as_str().unwrap();
            assert_eq!(id.to_string(), want, "{name}: Display");
            assert_eq!(&id.to_hex()[..], want.as_bytes(), "{name}: to_hex");
            let back = ClientId::parse(want.as_bytes()).unwrap();
            assert_eq!(back, id_of(&expected["parsed_back"]), "{name}: parsed back");
            assert_eq!(
                back.gateway_address().to_string(),
                expected["gateway_address"].as_str().unwrap(),
                "{name}: gateway address"
            );
            formatted += 1;
        } else {
            let text = input["client_id"].as_str().unwrap();
            let got = text.parse::<ClientId>();
            match &expected["parsed"] {
                Value::Bool(false) => assert_eq!(
                    got,
                    Err(ClientIdParseError::WrongLength { len: text.len() }),
                    "{name}"
                ),
                fields => assert_eq!(got, Ok(id_of(fields)), "{name}"),
            }
            parsed += 1;
        }
    }
    assert!(
        formatted >= 5 && parsed >= 3,
        "{formatted} formatted, {parsed} parsed"
    );
}
