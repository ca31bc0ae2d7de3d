//! `sensors`: see the library for its modes, params and output.

fn main() {
    let code = sensors::run_stdin(std::time::SystemTime::now());
    std::process::exit(code)
}
