//! One test binary for the crate (link time on 2 cores): reading .tar.gz, reading .zip, building.

mod build;
mod support;
mod targz;
mod zipfile;
