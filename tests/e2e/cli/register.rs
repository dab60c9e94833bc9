//! The `register` subcommand.

use super::*;

#[test]
fn sigterm_stops_a_register_with_exit_0() {
    let mut register = start_register(free_port(), &[]);
    assert_eq!(register.terminate().code(), Some(0));
    register.wait_for("register stopped");
}
