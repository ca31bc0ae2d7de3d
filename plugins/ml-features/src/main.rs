//! `ml_features`: see the library for what it does, its params and its output.

fn main() {
    sandflow_sdk::run(ml_features::handle)
}
