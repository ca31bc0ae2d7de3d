//! Sandflow as a cluster: several `sandflow scheduler` and `sandflow worker` processes on one
//! PostgreSQL database, each with a home of its own, as on separate machines. The tests read
//! what happened from the database (runs, task instances, tries) and assert what the claim
//! protocol promises: one success per instance, interrupted tries recorded as such after a
//! `kill -9`, pools held across workers, clears reaching another process's try, one migration
//! and one run per interval when schedulers start together.
//!
//! The database is a fresh one on the tests' PostgreSQL server (`sandflow_test_postgres`):
//! the one `SANDFLOW_TEST_POSTGRES_URL` names, or a private cluster this process starts.
//! Nothing here asserts a speed; waits poll every 100 ms up to a generous deadline.

mod harness;

mod clear;
mod kills;
mod pools;
mod runs;
mod startup;
