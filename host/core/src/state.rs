//! States of DAG runs and task instances, and trigger rules.
