//! The blob store's tests, each run on the local store and on S3 (a moto server:
//! `sandflow_test_s3::fresh_bucket`), and the `/out` scan and `/in` materialisation.

mod common;
mod out;
mod store;
