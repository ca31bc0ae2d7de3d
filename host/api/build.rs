//! Reruns the build when the web UI changes, in builds that embed it (release: rust-embed
//! includes web/dist's bytes then). Debug builds read web/dist when they serve, so a rebuilt UI
//! recompiles nothing. Watches web/dist if it exists, else web/ (whose build makes web/dist).

use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var_os("CARGO_CFG_DEBUG_ASSERTIONS").is_some() {
        return;
    }
    let dist = Path::new("../../web/dist");
    let watched = if dist.exists() { dist } else { Path::new("../../web") };
    println!("cargo:rerun-if-changed={}", watched.display());
}
