#!/usr/bin/env bash
# An S3-compatible server for the tests: moto (moto[server] from PyPI) in a virtualenv.
#
#   scripts/s3.sh VENV              make (or reuse) the venv, print the path of its moto_server
#   scripts/s3.sh VENV start DIR    start moto_server on a free loopback port (pid and log in DIR),
#                                   wait until it answers, print its endpoint (http://127.0.0.1:PORT)
#   scripts/s3.sh VENV stop DIR     stop the server started in DIR (if it runs) and remove DIR
#
# scripts/test.sh starts one server for the whole run; the sandflow-test-s3 crate (tests/s3) starts
# one per test process when SANDFLOW_TEST_S3_ENDPOINT is not set. Both go through this script, so
# the venv, the choice of a port and the readiness check live in one place. The venv is kept
# between runs (a second call is instant); test processes that start at the same time wait for
# each other on a lock instead of building it twice. moto keeps everything in memory: stopping the
# server throws its buckets away.
set -euo pipefail

die() { echo "s3.sh: $*" >&2; exit 1; }
usage() { echo "usage: $0 VENV [start|stop DIR]" >&2; exit 2; }
[ $# -eq 1 ] || [ $# -eq 3 ] || usage
venv=$1
cmd=${2:-path}
case $cmd in path | start | stop) ;; *) usage ;; esac

if [ "$cmd" = stop ]; then
  dir=$3
  [ -e "$dir" ] || exit 0
  if [ -f "$dir/pid" ]; then
    pid=$(cat "$dir/pid")
    # Wait until it is gone (5 s, then SIGKILL): once `stop` returns, nothing listens on its port.
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
  exit 0
fi

# The venv, built once under a lock (several test processes may ask at the same moment).
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if ! [ -x "$venv/bin/moto_server" ] || ! "$venv/bin/python" -c "import moto.server, flask" 2>/dev/null; then
  python=/usr/bin/python3
  [ -x "$python" ] || python=$(command -v python3) || die "no python3 to make the moto venv with: install Debian's python3 and python3-venv"
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2 || die "python3 -m venv $venv failed: install Debian's python3-venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]>=5,<6" >&2 ||
    die "pip install 'moto[server]' into $venv failed (it comes from PyPI)"
fi
flock -u 9
moto=$venv/bin/moto_server

if [ "$cmd" = path ]; then
  echo "$moto"
  exit 0
fi

dir=$3
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# A free port: a random one below Linux's ephemeral range (where outgoing connections take theirs),
# not listened on now; if another process takes it before moto binds it, try another.
for _ in $(seq 1 20); do
  port=$((20000 + RANDOM % 12000))
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue
  # setsid: a Ctrl-C to the caller's process group does not kill the server before `stop` does.
  setsid "$moto" -H 127.0.0.1 -p "$port" >"$dir/moto.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/pid"
  # Ready when it answers HTTP (moto's own API, on this server); a minute at most.
  for _ in $(seq 1 300); do
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    if "$venv/bin/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)" \
      "http://127.0.0.1:$port/moto-api/data.json" 2>/dev/null; then
      echo "http://127.0.0.1:$port"
      exit 0
    fi
    sleep 0.1
  done
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -q "Address already in use" "$dir/moto.log" 2>/dev/null ||
    { tail -n 20 "$dir/moto.log" >&2 2>/dev/null || true; die "moto_server did not start on 127.0.0.1:$port"; }
done
die "no free port found for moto_server after 20 tries"
