//! `ml_gate`: see the library for what it does, its params and its output.

fn main() {
    sandflow_sdk::run(ml_gate::handle)
}
