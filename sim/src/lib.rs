//! The turmoil world for gatewayworker: hosts, workloads, faults and the reference model.
//!
//! Filled by the simulation issue; the crate exists now so that the workspace layout
//! matches the architecture from the start.
