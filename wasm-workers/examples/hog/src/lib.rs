//! Test guest: the message "hog" allocates 1 MiB blocks and keeps them until memory runs
//! out (to hit the host's memory limit); anything else is echoed back.

use gw_sdk::{gateway, Events, Message};

#[derive(Default)]
struct Hog {
    kept: Vec<Vec<u8>>,
}

impl Events for Hog {
    fn on_message(&mut self, _client_id: &str, message: Message<'_>) {
        if message.data == b"hog" {
            loop {
                // Reserve without filling: the memory limit, not the fuel spent on memset
                // (a loop on toolchains without bulk memory), must be what stops this.
                let mut block = Vec::with_capacity(1 << 20);
                block.push(1u8);
                self.kept.push(block);
            }
        }
        let _ = gateway::send_to_current_client(message.data, message.binary);
    }
}

gw_sdk::export_worker!(Hog);
