//! Test support shared by unit tests, `tests/`, `sim/` and `benches/`: not part of the API.

pub mod vectors;
