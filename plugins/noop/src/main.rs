//! `noop`: does nothing and succeeds. The baseline for scheduler and sandbox benchmarks.

fn main() {
    sandflow_sdk::run(|_ctx| Ok::<(), String>(()))
}
