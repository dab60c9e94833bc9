//! Echo: every message goes back to its sender unchanged; binary stays binary.

use gw_sdk::{gateway, Events, Message};

#[derive(Default)]
struct Echo;

impl Events for Echo {
    fn on_message(&mut self, _client_id: &str, message: Message<'_>) {
        let _ = gateway::send_to_current_client(message.data, message.binary);
    }
}

gw_sdk::export_worker!(Echo);
