//! The whole system on 127.0.0.1 for end-to-end tests: our register, our gateway (shards
//! registering with it) and our BusinessWorker running a guest from `wasm-workers/dist/`.

#![allow(dead_code)] // Each test binary uses a different subset.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use gatewayworker::business::{self, BusinessSettings, RunningWorker};
use gatewayworker::gateway::shards::{GatewaySettings, RunningGateway};
use gatewayworker::register::driver::{self as register, RegisterSettings, RunningRegister};

use crate::common::{start_gateway, ws_connect, ws_next, WsClient, WAIT};

/// The secret every part shares (so the secret checks are exercised too).
pub const SECRET: &str = "e2e-secret";

/// A guest module of `wasm-workers/dist/`; panics with what to do when it is missing.
pub fn guest(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("wasm-workers/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-wasm to build the guests into wasm-workers/dist/",
        path.display()
    );
    path
}

/// A running register + gateway + business worker.
pub struct System {
    /// The register.
    pub register: Option<RunningRegister>,
    /// The gateway.
    pub gateway: Option<RunningGateway>,
    /// The business worker.
    pub worker: Option<RunningWorker>,
    /// Where clients connect.
    pub public: SocketAddr,
}

impl System {
    /// Starts the three parts: `shards` gateway shards, `instances` worker instances running
    /// `wasm` (a path), `tweak` applied to the worker settings; returns once every instance
    /// has a link to every shard.
    pub async fn start(
        wasm: PathBuf,
        shards: usize,
        instances: u32,
        tweak: impl FnOnce(&mut BusinessSettings),
    ) -> System {
        System::start_with(wasm, shards, instances, |_| {}, tweak).await
    }

    /// Like [`System::start`], with `gateway_tweak` applied to the gateway settings too
    /// (after the register address and secret are set).
    pub async fn start_with(
        wasm: PathBuf,
        shards: usize,
        instances: u32,
        gateway_tweak: impl FnOnce(&mut GatewaySettings),
        tweak: impl FnOnce(&mut BusinessSettings),
    ) -> System {
        let register = register::start(RegisterSettings::new(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            SECRET,
        ))
        .expect("register starts");
        let register_addr = register.addr.to_string();
        let gateway = start_gateway(shards, |s| {
            s.core.register_addresses = vec![register_addr.clone()];
            s.core.secret_key = SECRET.into();
            gateway_tweak(s);
        });
        let mut settings = BusinessSettings::new("e2e", instances, vec![register_addr], wasm);
        settings.core.secret_key = SECRET.into();
        tweak(&mut settings);
        let worker = business::start(settings).expect("business worker starts");
        let deadline = Instant::now() + WAIT;
        while worker.connected_gateways().iter().any(|&n| n < shards) {
            assert!(
                Instant::now() < deadline,
                "worker instances linked to {:?} of {shards} gateway shards",
                worker.connected_gateways()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The links are up; give the gateways a moment to process the WORKER_CONNECTs.
        tokio::time::sleep(Duration::from_millis(100)).await;
        System {
            public: gateway.public_addr,
            register: Some(register),
            gateway: Some(gateway),
            worker: Some(worker),
        }
    }

    /// The business worker.
    pub fn worker(&self) -> &RunningWorker {
        self.worker.as_ref().expect("running")
    }

    /// A websocket client on the public port.
    pub async fn client(&self) -> WsClient {
        ws_connect(self.public, "/").await
    }

    /// Stops everything, worker first.
    pub fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().expect("worker stops");
        }
        if let Some(g) = self.gateway.take() {
            g.shutdown().expect("gateway stops");
        }
        if let Some(r) = self.register.take() {
            r.shutdown().expect("register stops");
        }
    }
}

/// The text of the next data message.
pub async fn next_text(ws: &mut WsClient) -> String {
    match ws_next(ws).await {
        tokio_tungstenite::tungstenite::Message::Text(t) => t.to_string(),
        other => panic!("text expected, got {other:?}"),
    }
}
