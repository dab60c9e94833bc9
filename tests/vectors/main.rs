//! Byte-exact vectors from `spec/vectors.json` and quickcheck properties of the codecs
//! (no sockets).
//!
//! Integration tests are grouped by area, one binary per folder of `tests/`, so the suite
//! links a few binaries instead of one per file (each links wasmtime).
mod client_id;
mod client_vectors;
mod copy;
mod frames;
mod gateway;
mod migration_guide;
mod php;
mod properties_frame;
mod properties_php;
mod public;
mod register;
mod register_vectors;
mod sender_api;
#[path = "../sender_vectors/mod.rs"]
mod sender_vectors;
