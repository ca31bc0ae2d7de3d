#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what is missing, starts one private PostgreSQL
# cluster for the run (scripts/postgres.sh: a temporary directory, a free loopback port) and hands it
# to every test process in SANDFLOW_TEST_POSTGRES_URL, starts one moto S3 server for the run
# (scripts/s3.sh: a kept virtualenv, a free loopback port) and hands its endpoint to every test
# process in SANDFLOW_TEST_S3_ENDPOINT, makes a virtualenv with the official Airflow
# client (scripts/airflow-client.sh: SANDFLOW_TEST_AIRFLOW_PYTHON), builds the web UI into web/dist/
# (scripts/build-web.sh: the API's UI tests and the browser tests of host/api/tests/ui load it),
# installs the plugin toolchains and builds the polyglot examples (scripts/install-toolchains.sh,
# plugins/build-polyglot.sh), runs
# every test, stops the cluster and the S3 server whatever happened, and closes with one line that
# sums the tests up ("tests: N passed, N failed").
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
log=$(mktemp)
pgdir=$(mktemp -d -t sandflow-pg.XXXXXX)
s3venv=$PWD/target/s3-venv
s3dir=$(mktemp -d -t sandflow-s3.XXXXXX)
cleanup() { scripts/postgres.sh stop "$pgdir"; scripts/s3.sh "$s3venv" stop "$s3dir"; rm -f "$log"; }
trap cleanup EXIT
# A signal ends the script through its EXIT trap, so the cluster and the S3 server are stopped then too.
trap 'exit 130' INT
trap 'exit 143' TERM HUP
SANDFLOW_TEST_POSTGRES_URL=$(scripts/postgres.sh start "$pgdir")
export SANDFLOW_TEST_POSTGRES_URL
echo "PostgreSQL for the tests: $SANDFLOW_TEST_POSTGRES_URL (in $pgdir)"
# moto, the S3-compatible server of the blob store's tests (sandflow-test-s3; its venv is kept).
SANDFLOW_TEST_S3_ENDPOINT=$(scripts/s3.sh "$s3venv" start "$s3dir")
export SANDFLOW_TEST_S3_ENDPOINT
echo "S3 (moto) for the tests: $SANDFLOW_TEST_S3_ENDPOINT (in $s3dir)"
# The official Airflow client, for the test that drives /api/v2 with it (kept between runs).
SANDFLOW_TEST_AIRFLOW_PYTHON=$(scripts/airflow-client.sh "$PWD/target/airflow-client-venv")
export SANDFLOW_TEST_AIRFLOW_PYTHON
echo "apache-airflow-client for the tests: $("$SANDFLOW_TEST_AIRFLOW_PYTHON" -m pip show apache-airflow-client 2>/dev/null | awk '/^Version/ {print $2}')"
# The web UI, which the binary embeds and the UI tests load (web/dist/).
scripts/build-web.sh
# The plugin toolchains beyond Rust and C (Zig, AssemblyScript, Go, componentize-py,
# componentize-qjs, under target/toolchains/) and the examples they build, which the CLI's polyglot
# tests run (target/polyglot/: sandflow_test_artifacts::polyglot_dir).
scripts/install-toolchains.sh
plugins/build-polyglot.sh target/polyglot
# The Python and JavaScript SDKs' own unit tests, under CPython and Node (no wasm: the cargo tests
# run the built components).
plugin-sdk/python/test.sh
(cd plugins/js-clean && node --import ../../plugin-sdk/js/sdk/local.mjs --test test.mjs)
set +e
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i == "passed;") p += $(i - 1); if ($i == "failed;") f += $(i - 1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
