//! The gateway's maps keyed by peer-chosen names (uids, groups) hash with a key the
//! production path draws at random: two gateways started the ordinary way do not share
//! it, so colliding names cannot be computed offline for every deployment at once.

use std::net::{Ipv4Addr, SocketAddr};

use gatewayworker::gateway::shards::GatewaySettings;
use gatewayworker::gateway::{GatewayConfig, HashKey};

fn settings() -> GatewaySettings {
    GatewaySettings::new(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Ipv4Addr::LOCALHOST,
        0,
        1,
    )
}

#[test]
fn gateways_built_by_the_production_path_get_different_random_keys() {
    let a = settings().core.hash_key;
    let b = settings().core.hash_key;
    let c = std::thread::spawn(|| settings().core.hash_key)
        .join()
        .unwrap();
    assert_ne!(a, HashKey::default(), "a random key, not the fixed one");
    assert_ne!(a, b);
    assert_ne!(a, c);
    assert_ne!(b, c);
}

#[test]
fn the_plain_config_keeps_the_fixed_key_for_reproducible_runs() {
    let config = GatewayConfig::new(Ipv4Addr::LOCALHOST, 2000, 8282);
    assert_eq!(config.hash_key, HashKey::default());
}
