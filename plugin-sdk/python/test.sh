#!/usr/bin/env bash
# Tests the Python SDK, the template and the py-* examples under plain CPython (no wasm, no toolchain):
# unit tests, then every golden file (tests/*.context.json -> *.expected.json) run through
# `sdk/sandflow.py` and compared as JSON. The wasm builds are checked with `sandflow plugin test`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
sdk=$here/sdk
export PYTHONDONTWRITEBYTECODE=1
pass=0 fail=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

golden() {  # golden DIR MODULE: {"error": TEXT} expects a failure whose message contains TEXT
  local dir=$1 module=$2 ctx want got
  for ctx in "$dir"/tests/*.context.json; do
    want=${ctx%.context.json}.expected.json
    if got=$(cd "$dir" && python3 "$sdk/sandflow.py" "$module" "$ctx" 2>"$scratch/stderr"); then :; else
      got=$(sed -n 's/^task-error: //p' "$scratch/stderr" | python3 -c 'import json,sys; print(json.dumps({"error": sys.stdin.read().strip()}))')
    fi
    if python3 - "$got" "$want" <<'PY'
import json, sys
got, want = json.loads(sys.argv[1]), json.load(open(sys.argv[2]))
if "error" in want:
    sys.exit(not ("error" in got and want["error"] in got["error"]))
sys.exit(got != want)
PY
    then
      pass=$((pass + 1))
    else
      fail=$((fail + 1)); echo "FAIL $ctx: got ${got:-<nothing>}" >&2
    fi
  done
}

PYTHONPATH=$sdk python3 -m unittest discover -s "$here" -p 'test_*.py' -q
for dir in "$root"/plugins/py-*/; do
  (cd "$dir" && PYTHONPATH=$sdk python3 -m unittest discover -s . -p 'test_*.py' -q)
  module=$(sed -n 's/.*componentize \([A-Za-z_][A-Za-z0-9_]*\) .*/\1/p' "$dir/build.sh" | head -n1)
  golden "$dir" "$module"
done

# The template, scaffolded by hand the way `sandflow plugin new --lang python NAME` does it.
scaffold=$scratch/scaffold
mkdir -p "$scaffold/py-tmpl"
cp -r "$here/template/." "$scaffold/py-tmpl/"
find "$scaffold/py-tmpl" -type f -exec sed -i 's/{{name}}/py-tmpl/g; s/{{name_ident}}/py_tmpl/g' {} +
cp -rL "$sdk" "$scaffold/py-tmpl/sdk"
golden "$scaffold/py-tmpl" app
# The default context must succeed too.
if (cd "$scaffold/py-tmpl" && echo '{"abi":1}' | python3 sdk/sandflow.py app) >/dev/null 2>&1; then
  pass=$((pass + 1))
else
  fail=$((fail + 1)); echo 'FAIL template on {"abi":1}' >&2
fi

echo "golden: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
