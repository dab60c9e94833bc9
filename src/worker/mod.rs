//! The business worker: a sans-IO core that links to every gateway, turns client events into
//! handler calls and Gateway API calls into frames, plus its tokio driver.

#[allow(missing_docs)] // Variant fields are the original API's parameters, named as there.
pub mod api;
pub mod core;
pub mod driver;
pub mod gather;
pub mod merge;
pub mod sender;
