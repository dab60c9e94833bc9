//! Test guest: the message "spin" loops forever (to be stopped by fuel); anything else is
//! echoed back, so a test can see the instance serve again after being recreated.

use gw_sdk::{gateway, Events, Message};

#[derive(Default)]
struct Spin {
    handled: u64,
}

impl Events for Spin {
    fn on_message(&mut self, _client_id: &str, message: Message<'_>) {
        if message.data == b"spin" {
            let mut x: u64 = 1;
            loop {
                // Volatile so the optimiser cannot prove the loop empty and drop it.
                x = unsafe { core::ptr::read_volatile(&x) }.wrapping_mul(3);
            }
        }
        self.handled += 1;
        let reply = format!("{}#{}", String::from_utf8_lossy(message.data), self.handled);
        let _ = gateway::send_to_current_client(reply.as_bytes(), false);
    }
}

gw_sdk::export_worker!(Spin);
