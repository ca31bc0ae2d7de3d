//! Unit tests of DAG parsing and validation.
