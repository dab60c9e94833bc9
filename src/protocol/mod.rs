//! Wire codecs: pure functions and small decoders over bytes, no I/O, no clock.
//!
//! * [`frame`]: the 28-byte-header GatewayProtocol spoken between gateways and workers
//!   (and GatewayClient callers), with its incremental decoder and reply records.
//! * [`client_id`]: the 20-hex-character id that names a client cluster-wide.
//! * [`php`]: the PHP value model (serialize/unserialize, float formatting, array keys,
//!   `array_replace_recursive`, PHP-flavoured JSON).
//! * [`register`]: the JSON text lines of the register protocol.
//! * [`public`]: the client-facing protocols of the gateway public port (websocket, text, frame).

pub mod client_id;
pub mod frame;
pub mod php;
pub mod public;
pub mod register;
