//! Test guest: "panic" panics, "oob" reads outside linear memory, "abort" hits an
//! `unreachable`; anything else is answered "ok:<message>#<count>" so a test can see the
//! state reset after a crash.

use gw_sdk::{gateway, Events, Message};

#[derive(Default)]
struct Crash {
    handled: u64,
}

impl Events for Crash {
    fn on_message(&mut self, _client_id: &str, message: Message<'_>) {
        match message.data {
            b"panic" => panic!("asked to panic"),
            b"oob" => {
                // 4 GiB - 16 is beyond any memory this host allows.
                let p = 0xFFFF_FFF0usize as *const u32;
                let v = unsafe { core::ptr::read_volatile(p) };
                let _ = gateway::send_to_current_client(&v.to_le_bytes(), true);
            }
            b"abort" => std::process::abort(),
            _ => {}
        }
        self.handled += 1;
        let reply = format!(
            "ok:{}#{}",
            String::from_utf8_lossy(message.data),
            self.handled
        );
        let _ = gateway::send_to_current_client(reply.as_bytes(), false);
    }
}

gw_sdk::export_worker!(Crash);
