#!/usr/bin/env bash
# A virtualenv with the official Airflow client (apache-airflow-client, newest 3.x from PyPI), for
# the test that drives Sandflow's /api/v2 with it. Usage: scripts/airflow-client.sh DIR; prints the
# venv's python. Reuses DIR when it already holds the client, so a second call is instant.
set -euo pipefail
dir=${1:?usage: scripts/airflow-client.sh DIR}
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3)
if ! "$dir/bin/python" -c "import airflow_client.client" 2>/dev/null; then
  rm -rf "$dir"
  "$python" -m venv "$dir" >&2
  "$dir/bin/pip" install --quiet --disable-pip-version-check "apache-airflow-client>=3,<4" >&2
fi
echo "$dir/bin/python"
